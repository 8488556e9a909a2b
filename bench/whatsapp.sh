#!/usr/bin/env bash
# Signed WhatsApp text deliveries (one message each, 50 customers) on a release Portico:
# inbound messages stored per second at concurrency 8, GET /api/health as the baseline.
#   bench/whatsapp.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-whatsapp
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; sleep 0.2; rm -rf "$work"' EXIT
export DATABASE_URL="sqlite://$work/bench.db" PORTICO_LOG=error WHATSAPP_WEBHOOK_ENABLED=true WHATSAPP_APP_SECRET=s3cret
tenant=$(target/release/portico tenant add Bench)
target/release/portico source add --tenant "$tenant" --kind whatsapp --key 106540352242922 >/dev/null
port=$((20000 + RANDOM % 20000))
target/release/portico serve --listen "127.0.0.1:$port" & server=$!
until curl -sf "http://127.0.0.1:$port/api/health" >/dev/null; do sleep 0.05; done
target/release/examples/loadgen --url "http://127.0.0.1:$port" --secret s3cret --page 106540352242922 --requests "$n" --concurrency 8 --whatsapp
echo "messages: $(sqlite3 "$work/bench.db" 'SELECT COUNT(*) FROM messages'), contacts: $(sqlite3 "$work/bench.db" 'SELECT COUNT(*) FROM contacts'), cases: $(sqlite3 "$work/bench.db" 'SELECT COUNT(*) FROM cases')"
