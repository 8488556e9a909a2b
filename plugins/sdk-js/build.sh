#!/bin/sh
# Build or test a JavaScript adapter with the pinned componentize-js.
#
#   sh plugins/sdk-js/build.sh build plugins/NAME OUT.wasm   # the component (from adapter.js)
#   sh plugins/sdk-js/build.sh test plugins/NAME             # its unit tests (node --test)
#
# The first build installs componentize-js (tools/package-lock.json) into
# target/portico-tools (or $PORTICO_TOOLS_DIR) with `npm ci`: nothing is
# installed by hand and nothing outside the project changes.
set -eu

COMPONENTIZE_JS_VERSION=0.23.0

usage() {
    echo "usage: $0 build ADAPTER_DIR OUT.wasm | test ADAPTER_DIR" >&2
    exit 2
}
[ $# -ge 2 ] || usage
action=$1
adapter=$(cd "$2" && pwd)
sdk=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$sdk/../.." && pwd)
[ -f "$root/wit/adapter.wit" ] || { echo "no wit/adapter.wit above $sdk" >&2; exit 1; }
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
    echo "Node.js 20 or later, with npm, is needed to build JavaScript adapters: install it (e.g. apt-get install nodejs npm)" >&2
    exit 1
}

case "$action" in
test)
    cd "$adapter"
    exec node --test
    ;;
build)
    [ $# -eq 3 ] || usage
    out=$3
    # Up to date: nothing it is built from changed since. The component
    # toolchains do not build byte for byte the same twice, and a new file is a
    # new compilation at load; an unchanged one loads from the host's cache.
    if [ -f "$out" ] && [ -z "${PORTICO_FORCE_BUILD:-}" ] && [ -z "$(find "$adapter" "$sdk/src" "$sdk/componentize.mjs" "$sdk/tools" "$root/wit" -newer "$out" -type f \
        ! -path '*/__pycache__/*' ! -path '*/node_modules/*' 2>/dev/null | head -n 1)" ]; then
        echo "$out is up to date (set PORTICO_FORCE_BUILD=1 to build it anyway)" >&2
        exit 0
    fi
    ;;
*) usage ;;
esac

tools=${PORTICO_TOOLS_DIR:-$root/target/portico-tools}/componentize-js-$COMPONENTIZE_JS_VERSION
mkdir -p "$tools"
# One set-up at a time: builds may run side by side (portico build, tests).
exec 9>"$tools.lock"
flock 9
if [ ! -f "$tools/node_modules/@bytecodealliance/componentize-js/package.json" ]; then
    echo "[set-up] installing componentize-js $COMPONENTIZE_JS_VERSION into $tools (once)" >&2
    cp "$sdk/tools/package.json" "$sdk/tools/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --silent --no-audit --no-fund) >&2
fi
flock -u 9

mkdir -p "$(dirname "$out")"
node "$sdk/componentize.mjs" "$tools" "$adapter/adapter.js" "$root/wit" "$out" >&2
