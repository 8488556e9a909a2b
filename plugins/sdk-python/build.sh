#!/bin/sh
# Build or test a Python adapter with the pinned componentize-py.
#
#   sh plugins/sdk-python/build.sh build plugins/NAME OUT.wasm   # the component
#   sh plugins/sdk-python/build.sh test plugins/NAME             # its unit tests
#
# The first build installs componentize-py into target/portico-tools (or
# $PORTICO_TOOLS_DIR) in a virtualenv of its own: nothing is installed by hand
# and nothing outside the project changes.
set -eu

COMPONENTIZE_PY_VERSION=0.25.1

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
command -v python3 >/dev/null 2>&1 || {
    echo "python3 (3.10 or later) is needed to build Python adapters: install it (e.g. apt-get install python3 python3-venv)" >&2
    exit 1
}

case "$action" in
test)
    cd "$adapter"
    PYTHONPATH="$sdk${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m unittest discover -s "$adapter" -p 'test_*.py'
    ;;
build)
    [ $# -eq 3 ] || usage
    out=$3
    # Up to date: nothing it is built from changed since. The component
    # toolchains do not build byte for byte the same twice, and a new file is a
    # new compilation at load; an unchanged one loads from the host's cache.
    if [ -f "$out" ] && [ -z "${PORTICO_FORCE_BUILD:-}" ] && [ -z "$(find "$adapter" "$sdk" "$root/wit" -newer "$out" -type f \
        ! -path '*/__pycache__/*' ! -path '*/node_modules/*' 2>/dev/null | head -n 1)" ]; then
        echo "$out is up to date (set PORTICO_FORCE_BUILD=1 to build it anyway)" >&2
        exit 0
    fi
    ;;
*) usage ;;
esac

tools=${PORTICO_TOOLS_DIR:-$root/target/portico-tools}/componentize-py-$COMPONENTIZE_PY_VERSION
mkdir -p "$tools"
# One set-up at a time: builds may run side by side (portico build, tests).
exec 9>"$tools.lock"
flock 9
if [ ! -x "$tools/bin/componentize-py" ]; then
    echo "[set-up] installing componentize-py $COMPONENTIZE_PY_VERSION into $tools (once)" >&2
    python3 -m venv "$tools" || {
        echo "cannot create a virtualenv: install python3-venv" >&2
        exit 1
    }
    "$tools/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
flock -u 9

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# app.py's `Plugin` class is the export; the SDK and the adapter's own modules
# are bundled, with the standard library modules they import.
"$tools/bin/componentize-py" -d "$root/wit" -w adapter componentize app \
    -p "$adapter" -p "$sdk" -o "$tmp" >&2
mv "$tmp" "$out"
