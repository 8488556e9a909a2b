#!/usr/bin/env bash
# Time a replay of N failed events: N signed leads arrive for a page no tenant owns
# (each item fails, retryable), the page is mapped, then `portico dlq replay --all-failed`.
#   bench/replay.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; sleep 0.2; rm -rf "$work"' EXIT
# A long first retry delay keeps the worker out of the way: this measures the replay alone.
export DATABASE_URL="sqlite://$work/bench.db" META_APP_SECRET=s3cret PORTICO_LOG=error PORTICO_RETRY_SCHEDULE_SECS=3600
port=$((20000 + RANDOM % 20000))
target/release/portico serve --listen "127.0.0.1:$port" & server=$!
until curl -sf "http://127.0.0.1:$port/api/health" >/dev/null; do sleep 0.1; done
target/release/examples/loadgen --url "http://127.0.0.1:$port" --secret s3cret --requests "$n" --concurrency 8 | grep POST
echo "failed events: $(sqlite3 "$work/bench.db" "SELECT COUNT(*) FROM webhook_events WHERE status = 'failed'")"
tenant=$(target/release/portico tenant add Bench)
target/release/portico source add --tenant "$tenant" --kind meta --key 138124712925158 >/dev/null
t0=$(date +%s.%N)
target/release/portico dlq replay --all-failed
t1=$(date +%s.%N)
echo "replay of $n failed events: $(python3 -c "print(round($t1 - $t0, 2))") s (process start and plugin load included)"
echo "leads stored: $(sqlite3 "$work/bench.db" 'SELECT COUNT(*) FROM leads')"
