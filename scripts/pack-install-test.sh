#!/usr/bin/env bash
# Release check: the packages as a user gets them.
#   1. builds and packs every public workspace package with `pnpm pack`, and checks that no
#      `workspace:` or `catalog:` range is left in the packed manifests;
#   2. installs the tarballs with plain npm into an empty folder, with a fresh npm cache;
#   3. from there: `npx nanosync --version`, `npx nanosync validate`, the runtime dependency
#      tree (no test infrastructure; the Kafka client is @platformatic/kafka, not kafkajs),
#      and a real PostgreSQL -> file pipeline run with `nanosync run` until LIVE_CDC, with
#      one change delivered after the snapshot; then SIGTERM, which must exit 0.
# Needs the npm registry (for the packages' own dependencies) and PostgreSQL server binaries.
#   bash scripts/pack-install-test.sh [--keep]     (--keep leaves the work folder for a look)
set -euo pipefail
NS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$NS_ROOT/scripts/node-env.sh"
keep=0
[ "${1:-}" = --keep ] && keep=1

work="$(mktemp -d "${TMPDIR:-/tmp}/ns-pack-install.XXXXXX")"
run_pid=""
testenv_dir="$work/testenv"
step() { printf '\n== %s\n' "$*" >&2; }
fail() { echo "pack-install-test: FAILED: $*" >&2; exit 1; }
cleanup() {
  local code=$?
  [ -n "$run_pid" ] && kill -KILL "$run_pid" 2>/dev/null || true
  if [ -f "$testenv_dir/state.json" ]; then
    NANOSYNC_TESTENV_DIR="$testenv_dir" bash "$NS_ROOT/scripts/ns" testenv down >/dev/null 2>&1 || true
  fi
  if [ "$keep" = 1 ] || [ "$code" != 0 ]; then echo "pack-install-test: work folder kept: $work" >&2
  else rm -rf "$work"; fi
  exit "$code"
}
trap cleanup EXIT

if [ ! -d "$NS_ROOT/node_modules/.pnpm" ] || [ "$NS_ROOT/pnpm-lock.yaml" -nt "$NS_ROOT/node_modules/.modules.yaml" ]; then
  pnpm --dir "$NS_ROOT" install --frozen-lockfile --reporter=silent
fi

step "build and pack every public package"
bash "$NS_ROOT/scripts/pack.sh" "$work/tarballs" >"$work/packages.tsv" || fail "scripts/pack.sh"
mapfile -t packages <"$work/packages.tsv"

step "npm install (fresh cache) into an empty folder"
app="$work/app"
mkdir -p "$app"
cd "$app"
printf '{ "name": "ns-pack-install-test", "private": true }\n' >package.json
npm_flags=(--cache "$work/npm-cache" --no-audit --no-fund --loglevel=error)
npm install "${npm_flags[@]}" "$work"/tarballs/*.tgz >&2 || fail "npm install of the tarballs"

step "npx nanosync --version"
cli_version="$(grep -P '\tnanosync\t' <<<"$(printf '%s\n' "${packages[@]}")" | cut -f3)"
got="$(npx --no-install nanosync --version)"
[ "$got" = "$cli_version" ] || fail "nanosync --version printed '$got', expected '$cli_version'"
echo "  $got" >&2

step "runtime dependencies of the installed CLI"
npm ls --omit=dev --all >"$work/deps.txt" 2>&1 || true
npm ls --omit=dev --all --json 2>/dev/null | node -e '
  // Every package the CLI pulls in at run time (the tree under "nanosync"), one per line.
  const tree = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
  const names = new Set();
  const walk = (deps) => { for (const [name, node] of Object.entries(deps ?? {})) { if (!names.has(name)) { names.add(name); walk(node.dependencies); } } };
  walk({ nanosync: tree.dependencies.nanosync });
  console.log([...names].sort().join("\n"));' >"$work/cli-deps.txt"
if grep -nxE '@nanosync/testcontainers|testcontainers|dockerode|docker-modem|ssh2|cpu-features|vitest|tsx|typescript' "$work/cli-deps.txt" >&2; then
  fail "test infrastructure in the CLI's runtime dependencies"
fi
# The Kafka sink produces with @platformatic/kafka (installed); kafkajs is only a test dependency.
node -e '
  const pkg = require(process.argv[1] + "/node_modules/@nanosync/sink-kafka/package.json");
  const deps = pkg.dependencies ?? {};
  if (!deps["@platformatic/kafka"]) { console.error("@nanosync/sink-kafka does not depend on @platformatic/kafka"); process.exit(1); }
  if (deps.kafkajs) { console.error("@nanosync/sink-kafka depends on kafkajs"); process.exit(1); }
  const installed = require(process.argv[1] + "/node_modules/@platformatic/kafka/package.json").version;
  if (installed !== deps["@platformatic/kafka"]) { console.error(`@platformatic/kafka ${installed} installed, ${deps["@platformatic/kafka"]} pinned`); process.exit(1); }
' "$app" >&2 || fail "the Kafka sink's client dependency"
echo "  the CLI pulls in $(grep -c '' "$work/cli-deps.txt") packages at run time; node_modules is $(du -sh "$app/node_modules" | cut -f1)" >&2

step "a PostgreSQL for the pipeline"
eval "$(NANOSYNC_TESTENV_DIR="$testenv_dir" bash "$NS_ROOT/scripts/ns" testenv up postgres)"
pg_url="${NANOSYNC_TEST_PG_URL:?testenv printed no NANOSYNC_TEST_PG_URL}"
sql() { PG_URL="$pg_url" node -e '
  const pg = require("pg");
  const c = new pg.Client({ connectionString: process.env.PG_URL });
  c.connect().then(() => c.query(process.argv[1])).then(() => c.end(), (e) => { console.error(e.message); process.exit(1); });' "$1"; }
sql "DROP TABLE IF EXISTS public.pack_test; CREATE TABLE public.pack_test (id int PRIMARY KEY, note text);
     INSERT INTO public.pack_test SELECT g, 'row ' || g FROM generate_series(1, 3) g;" || fail "seeding the table"

step "npx nanosync validate"
cat >"$app/pipelines.yaml" <<EOF
connections:
  - name: db
    type: postgres
    dsn: "\${env:PACK_TEST_PG_URL}"
  - name: files
    type: file
    properties:
      path: ./output
pipelines:
  - name: pack-test
    replication_type: cdc_backfill
    source:
      connection: db
      tables: [public.pack_test]
    sink:
      connection: files
EOF
export PACK_TEST_PG_URL="$pg_url"
npx --no-install nanosync validate --file pipelines.yaml >&2 || fail "validate"

step "npx nanosync run: PostgreSQL -> file until LIVE_CDC, then one change"
state="$work/state/state.db"
# The installed bin itself rather than npx, so SIGTERM reaches nanosync and not a wrapper.
./node_modules/.bin/nanosync run --file pipelines.yaml --state "$state" --listen 127.0.0.1:0 >"$work/run.out" 2>"$work/run.err" &
run_pid=$!
wait_for() { # wait_for SECONDS WHAT COMMAND…
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    kill -0 "$run_pid" 2>/dev/null || { cat "$work/run.err" >&2; fail "nanosync run exited while waiting for $what"; }
    [ "$SECONDS" -lt "$deadline" ] || { cat "$work/run.err" >&2; fail "timed out waiting for $what"; }
    sleep 0.5
  done
}
wait_for 60 "the admin API" grep -q 'admin api listening' "$work/run.err"
server="$(grep -o 'url=http://[^ ]*' "$work/run.err" | head -1 | sed 's#url=http://##')"
is_live() { npx --no-install nanosync list pipelines --server "$server" --state "$state" 2>/dev/null | grep -qE '^pack-test +LIVE_CDC'; }
wait_for 90 "LIVE_CDC" is_live
sql "INSERT INTO public.pack_test VALUES (4, 'inserted after the snapshot')" || fail "inserting the change"
delivered() { grep -q 'inserted after the snapshot' "$app/output/public.pack_test.jsonl" 2>/dev/null; }
wait_for 60 "the change in output/public.pack_test.jsonl" delivered
snapshot_rows="$(grep -c '"op":"read"' "$app/output/public.pack_test.jsonl" || true)"
[ "$snapshot_rows" = 3 ] || fail "expected 3 snapshot rows in the output, found $snapshot_rows"
kill -TERM "$run_pid"
code=0
wait "$run_pid" || code=$?
run_pid=""
[ "$code" = 0 ] || { cat "$work/run.err" >&2; fail "nanosync run exited $code after SIGTERM"; }
echo "  3 snapshot rows and the change delivered; clean stop (exit 0)" >&2

echo "pack-install-test: ok (${#packages[@]} packages)" >&2
