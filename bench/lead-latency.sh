#!/usr/bin/env bash
# Signed Meta lead POSTs against a release build of Portico on SQLite, with
# GET /api/health measured in the same run as the baseline.
#   bench/lead-latency.sh [REQUESTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
concurrency=${2:-1}
cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
export DATABASE_URL="sqlite://$work/bench.db" META_APP_SECRET=s3cret PORTICO_LOG=warn
tenant=$(target/release/portico tenant add Bench)
target/release/portico source add --tenant "$tenant" --kind meta --key 138124712925158 >/dev/null
port=$((20000 + RANDOM % 20000))
target/release/portico serve --listen "127.0.0.1:$port" &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 0.1; done
target/release/examples/loadgen --url "http://127.0.0.1:$port" --secret s3cret \
  --requests "$requests" --concurrency "$concurrency"
echo "leads stored: $(sqlite3 "$work/bench.db" 'SELECT COUNT(*) FROM leads' 2>/dev/null || echo '(sqlite3 not installed)')"
