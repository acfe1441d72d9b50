#!/usr/bin/env bash
# Builds every public workspace package and packs it with `pnpm pack` into DEST, which
# rewrites `workspace:` and `catalog:` ranges into real versions; fails if one is left.
# Prints one line per package on stdout: folder, name, version, tarball (tab-separated).
#   bash scripts/pack.sh DEST
#   npm install -g DEST/*.tgz        # then: nanosync --help
set -euo pipefail
NS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$NS_ROOT/scripts/node-env.sh"
[ $# -eq 1 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
mkdir -p "$1"
dest="$(cd "$1" && pwd)"

if [ ! -d "$NS_ROOT/node_modules/.pnpm" ] || [ "$NS_ROOT/pnpm-lock.yaml" -nt "$NS_ROOT/node_modules/.modules.yaml" ]; then
  pnpm --dir "$NS_ROOT" install --frozen-lockfile --reporter=silent >&2
fi

mapfile -t packages < <(cd "$NS_ROOT" && node -e '
  const { globSync, readFileSync } = require("node:fs");
  for (const file of ["packages", "connectors", "apps"].flatMap((r) => globSync(`${r}/*/package.json`)).sort()) {
    const pkg = JSON.parse(readFileSync(file, "utf8"));
    if (!pkg.private) console.log([file.replace(/\/package\.json$/, ""), pkg.name, pkg.version].join("\t"));
  }')
[ "${#packages[@]}" -gt 0 ] || { echo "pack: no public packages found" >&2; exit 1; }

filters=()
for line in "${packages[@]}"; do filters+=("--filter=$(cut -f2 <<<"$line")"); done
(cd "$NS_ROOT" && pnpm exec turbo run build "${filters[@]}" --output-logs=errors-only) >&2

for line in "${packages[@]}"; do
  IFS=$'\t' read -r dir name version <<<"$line"
  tarball="$(cd "$NS_ROOT/$dir" && pnpm pack --pack-destination "$dest" | tail -1)"
  tarball="$dest/$(basename "$tarball")"
  [ -f "$tarball" ] || { echo "pack: pnpm pack in $dir made no tarball" >&2; exit 1; }
  if tar -xzOf "$tarball" package/package.json | grep -nE '"(workspace|catalog):' >&2; then
    echo "pack: $(basename "$tarball") still has workspace:/catalog: ranges" >&2
    exit 1
  fi
  files="$(tar -tzf "$tarball")"
  for doc in LICENSE README.md CHANGELOG.md; do
    grep -qx "package/$doc" <<<"$files" || echo "pack: warning: $(basename "$tarball") has no $doc" >&2
  done
  printf '%s\t%s\t%s\t%s\n' "$dir" "$name" "$version" "$tarball"
done
