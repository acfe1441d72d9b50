#!/usr/bin/env bash
# The build steps of the container image (Dockerfile), as a script so they run, and are
# tested, on a machine without Docker too:
#   1. build and pack every public package (scripts/pack.sh);
#   2. install the CLI and the connectors from those tarballs with plain npm, production
#      dependencies only, into OUT/app (what the image copies to /opt/nanosync);
#   3. check the result: `nanosync --version`, and `nanosync serve` answering the health
#      check the image uses (GET /v1/health on the admin API).
#   bash scripts/docker-build.sh OUT
set -euo pipefail
NS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 1 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
mkdir -p "$1"
out="$(cd "$1" && pwd)"
. "$NS_ROOT/scripts/node-env.sh"

bash "$NS_ROOT/scripts/pack.sh" "$out/tarballs" >"$out/packages.tsv"
# The image runs pipelines: the CLI and the connectors, not the connector test kit.
mapfile -t tarballs < <(cut -f2,4 "$out/packages.tsv" | grep -v '^@nanosync/connector-testkit' | cut -f2)

rm -rf "$out/app" && mkdir -p "$out/app"
printf '{ "name": "nanosync-image", "private": true }\n' >"$out/app/package.json"
(cd "$out/app" && npm install --omit=dev --no-audit --no-fund --loglevel=error "${tarballs[@]}") >&2
rm -rf "$out/tarballs"

cli="$out/app/node_modules/.bin/nanosync"
echo "docker-build: nanosync $("$cli" --version) installed in $out/app ($(du -sh "$out/app/node_modules" | cut -f1))" >&2

# The image's health check, against a real server on a free port with throw-away state.
state="$(mktemp -d)"
"$cli" serve --listen 127.0.0.1:0 --state "$state/state.db" 2>"$state/serve.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$state"' EXIT
for _ in $(seq 1 100); do
  grep -q 'admin api listening' "$state/serve.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$state/serve.log" >&2; exit 1; }
  sleep 0.2
done
url="$(grep -o 'url=http://[^ ]*' "$state/serve.log" | head -1 | cut -d= -f2)"
NANOSYNC_HEALTH_URL="$url/v1/health" node "$NS_ROOT/scripts/healthcheck.mjs" ||
  { cat "$state/serve.log" >&2; echo "docker-build: health check failed" >&2; exit 1; }
kill -TERM "$pid" && wait "$pid"
echo "docker-build: ok (serve answered $url/v1/health)" >&2
