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
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' >/dev/null 2>&1 &&
    command -v npm >/dev/null 2>&1 || {
    echo "Node.js 20 or later, with npm, is needed to build JavaScript adapters: install it (https://nodejs.org, or your system's nodejs and npm packages)" >&2
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
    # Up to date: nothing it is built from changed since the last build began
    # (the output carries that time, so an edit saved during a build is newer).
    # The component toolchains do not build byte for byte the same twice, and a
    # new file is a new compilation at load; an unchanged one loads from the
    # host's cache. Folders count too: a deleted module changes its folder.
    if [ -f "$out" ] && [ -z "${PORTICO_FORCE_BUILD:-}" ] && [ -z "$(find "$adapter" "$sdk/src" "$sdk/componentize.mjs" "$sdk/tools" "$root/wit" \
        \( -name __pycache__ -o -name node_modules \) -prune -o -newer "$out" -print 2>/dev/null | head -n 1)" ]; then
        echo "$out is up to date (set PORTICO_FORCE_BUILD=1 to build it anyway)" >&2
        exit 0
    fi
    ;;
*) usage ;;
esac

tools=${PORTICO_TOOLS_DIR:-$root/target/portico-tools}/componentize-js-$COMPONENTIZE_JS_VERSION
mkdir -p "$tools"
# One set-up at a time: builds may run side by side (portico build, tests).
# (flock is util-linux's; without it, e.g. on macOS, builds are not serialized.)
exec 9>"$tools.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
# Installed means: this very lockfile, completely (the marker is written last).
marker=$(cksum <"$sdk/tools/package-lock.json")
if [ "$(cat "$tools/.installed" 2>/dev/null)" != "$marker" ]; then
    echo "[set-up] installing componentize-js $COMPONENTIZE_JS_VERSION into $tools (once)" >&2
    rm -f "$tools/.installed"
    cp "$sdk/tools/package.json" "$sdk/tools/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --silent --no-audit --no-fund) >&2
    echo "$marker" >"$tools/.installed"
fi
if command -v flock >/dev/null 2>&1; then flock -u 9; fi

mkdir -p "$(dirname "$out")"
stamp="$out.started.$$"
trap 'rm -f "$stamp"' EXIT
touch "$stamp"
node "$sdk/componentize.mjs" "$tools" "$adapter/adapter.js" "$root/wit" "$out" >&2
# The output carries the time the build began (see the up-to-date check).
touch -r "$stamp" "$out"
