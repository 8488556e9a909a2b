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
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1 || {
    echo "python3 3.10 or later is needed to build Python adapters: install it (e.g. apt-get install python3 python3-venv)" >&2
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
    # Up to date: nothing it is built from changed since the last build began
    # (the output carries that time, so an edit saved during a build is newer).
    # The component toolchains do not build byte for byte the same twice, and a
    # new file is a new compilation at load; an unchanged one loads from the
    # host's cache. Folders count too: a deleted module changes its folder.
    if [ -f "$out" ] && [ -z "${PORTICO_FORCE_BUILD:-}" ] && [ -z "$(find "$adapter" "$sdk" "$root/wit" \
        \( -name __pycache__ -o -name node_modules \) -prune -o -newer "$out" -print 2>/dev/null | head -n 1)" ]; then
        echo "$out is up to date (set PORTICO_FORCE_BUILD=1 to build it anyway)" >&2
        exit 0
    fi
    ;;
*) usage ;;
esac

tools=${PORTICO_TOOLS_DIR:-$root/target/portico-tools}/componentize-py-$COMPONENTIZE_PY_VERSION
mkdir -p "$tools"
# One set-up at a time: builds may run side by side (portico build, tests).
# (flock is util-linux's; without it, e.g. on macOS, builds are not serialized.)
exec 9>"$tools.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
# Installed means: this version, completely (the marker is written last), by a
# python3 that still runs.
marker="componentize-py==$COMPONENTIZE_PY_VERSION"
if [ "$(cat "$tools/.installed" 2>/dev/null)" != "$marker" ] || ! "$tools/bin/python" -c '' 2>/dev/null; then
    echo "[set-up] installing componentize-py $COMPONENTIZE_PY_VERSION into $tools (once)" >&2
    rm -rf "$tools"
    python3 -m venv "$tools" || {
        echo "cannot create a virtualenv: install python3-venv" >&2
        exit 1
    }
    "$tools/bin/pip" install --quiet --disable-pip-version-check "$marker"
    echo "$marker" >"$tools/.installed"
fi
if command -v flock >/dev/null 2>&1; then flock -u 9; fi

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
# app.py's `Plugin` class is the export; the SDK and the adapter's own modules
# are bundled, with the standard library modules they import.
stamp="$out.started.$$"
trap 'rm -f "$tmp" "$stamp"' EXIT
touch "$stamp"
"$tools/bin/componentize-py" -d "$root/wit" -w adapter componentize app \
    -p "$adapter" -p "$sdk" -o "$tmp" >&2
mv "$tmp" "$out"
# The output carries the time the build began (see the up-to-date check).
touch -r "$stamp" "$out"
