#!/usr/bin/env bash
# `portico dev` (release build) on a Python adapter scaffolded by
# `portico plugin new --lang python` in a temporary workspace: EDITS times, save an
# edit of its logic.py and time until the new version serves (GET /api/health shows
# the new sha256 loaded and a signed webhook makes a lead with the edited source),
# with what the dev log says the build and the reload's compile took.
#   bench/dev-reload.sh [EDITS]
# Needs python3 (the build installs the pinned componentize-py into target/portico-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
edits=${1:-3}
root=$(pwd)
cargo build --release -q -p portico --bin portico
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/portico

ws=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$ws"
}
trap cleanup EXIT
cp -r wit "$ws/"
mkdir -p "$ws/plugins"
cp -r plugins/sdk-python "$ws/plugins/"
cd "$ws"
: >plugins.toml
"$bin" plugin new acme-py --lang python >new.txt
sed -n '/^\[plugins.acme-py\]/,/^\[plugins.acme-py.secrets\]/p' new.txt >plugins.toml
echo 'signing_secret = "s3cret"' >>plugins.toml
export PORTICO_TOOLS_DIR=$root/target/portico-tools DATABASE_URL=sqlite://$ws/dev.db PORTICO_LOG=info
tenant=$("$bin" tenant add Dev)
"$bin" source add --tenant "$tenant" --kind acme-py --key acme >/dev/null
port=$((20000 + RANDOM % 40000))
"$bin" dev --listen "127.0.0.1:$port" >dev.log 2>&1 &
server=$!
for _ in $(seq 1200); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 0.1; done
sha() { curl -sf "http://127.0.0.1:$port/api/health" | python3 -c 'import json,sys; print([p["sha256"] for p in json.load(sys.stdin)["plugins"] if p["name"]=="acme-py" and p["state"]=="loaded"][0])'; }
post() {
  local body="{\"id\":\"$1\",\"source_key\":\"acme\",\"full_name\":\"Ana\"}"
  local sig
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac s3cret | awk '{print $NF}')
  curl -sf -o /dev/null -X POST -H "X-Signature: sha256=$sig" --data "$body" "http://127.0.0.1:$port/api/integrations/acme-py/webhook"
}
source_of() { sqlite3 "$ws/dev.db" "SELECT source FROM leads WHERE external_id = '$1'" 2>/dev/null; }
echo "first load: $(sed -n 's/.*plugin loaded.* ms=\([0-9]*\).*/\1 ms/p' dev.log | head -n 1)"
for i in $(seq "$edits"); do
  before=$(sha)
  sed -i "s/^LEAD_SOURCE = .*/LEAD_SOURCE = \"edit $i\"/" plugins/acme-py/logic.py
  start=$(date +%s.%N)
  while [ "$(sha 2>/dev/null || echo "$before")" = "$before" ]; do sleep 0.05; done
  loaded=$(date +%s.%N)
  post "e$i"
  for _ in $(seq 100); do [ "$(source_of "e$i")" = "edit $i" ] && break; sleep 0.05; done
  stored=$(source_of "e$i")
  build=$(grep -o 'rebuilt acme-py in [0-9.]*s' dev.log | tail -n 1 | awk '{print $4}')
  compile=$(sed -n 's/.*plugin loaded.* ms=\([0-9]*\).*/\1/p' dev.log | tail -n 1)
  awk -v a="$start" -v b="$loaded" -v s="$stored" -v bu="$build" -v c="$compile" -v i="$i" \
    'BEGIN { printf "edit %d: save to serving %.1f s (build %s, reload compile %s ms); the next lead says source=\"%s\"\n", i, b - a, bu, c, s }'
done
