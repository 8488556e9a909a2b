#!/usr/bin/env bash
# Follows docs/adapters.md against a running Portico and times it: from
# `portico plugin new` to the new route answering 200 (the host is not rebuilt).
# Works in a throwaway copy of the workspace skeleton.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q -p portico --bin portico
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta
bin="$root/target/debug/portico"
ws=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$ws"' EXIT
mkdir -p "$ws/plugins" "$ws/wit"
cp Cargo.lock wit/adapter.wit "$ws/" && mv "$ws/adapter.wit" "$ws/wit/"
cp -r plugins/sdk "$ws/plugins/sdk"
sed -e 's#members = \["host", "plugins/\*", "host/tests/adapters/\*"\]#members = ["plugins/*"]#' -e '/default-members/d' Cargo.toml > "$ws/Cargo.toml"
echo "" > "$ws/plugins.toml"
export CARGO_TARGET_DIR="$root/target/bench-new-adapter" DATABASE_URL="sqlite://$ws/p.db" PORTICO_LOG=warn ACME_CRM_SIGNING_SECRET=s3cret
cd "$ws"
port=$((20000 + RANDOM % 20000))
"$bin" serve --listen "127.0.0.1:$port" & server=$!
until curl -sf "http://127.0.0.1:$port/api/health" >/dev/null; do sleep 0.1; done
tenant=$("$bin" tenant add Acme); "$bin" source add --tenant "$tenant" --kind acme-crm --key acme >/dev/null

t0=$(date +%s.%N)
"$bin" plugin new acme-crm > new.txt
cargo test -q -p portico-acme-crm 2>&1 | tail -1
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-acme-crm
wasm="$CARGO_TARGET_DIR/wasm32-wasip2/plugin/portico_acme_crm.wasm"
"$bin" plugin check "$wasm" >/dev/null
sed -n '/^\[plugins.acme-crm\]/,$p' new.txt | sed "s#^path = .*#path = \"$wasm\"#" >> plugins.toml
body='{"id":"1","source_key":"acme","full_name":"Ana","email":"ana@example.com"}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac s3cret | awk '{print $NF}')
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/integrations/acme-crm/webhook" -H "X-Signature: sha256=$sig" -d "$body")" = 200 ]; do sleep 0.05; done
t1=$(date +%s.%N)
echo "plugin new -> route answering 200: $(python3 -c "print(round($t1 - $t0, 1))") s (cold plugin build included)"
