#!/usr/bin/env bash
# The console's DLQ pages with N failed events (default 10,000): N signed leads arrive
# for a page no tenant owns (each item fails), then the pages the console asks for are
# timed against a static file of the console (GET /console/console.css) in the same run:
# the newest page, a page deep in the list by cursor (newest and oldest first), and one
# event's detail. GET /api/health is shown too: it counts the DLQ on every call.
#   bench/dlq-pages.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; sleep 0.2; rm -rf "$work"' EXIT
export DATABASE_URL="sqlite://$work/bench.db" META_APP_SECRET=s3cret PORTICO_LOG=error \
  PORTICO_RETRY_SCHEDULE_SECS=86400 PORTICO_ADMIN_TOKEN=bench-admin
port=$((20000 + RANDOM % 20000))
target/release/portico serve --listen "127.0.0.1:$port" & server=$!
base="http://127.0.0.1:$port"
until curl -sf "$base/api/health" >/dev/null; do sleep 0.1; done
target/release/examples/loadgen --url "$base" --secret s3cret --requests "$n" --concurrency 8 | grep POST
failed=$(sqlite3 "$work/bench.db" "SELECT COUNT(*) FROM webhook_events WHERE status = 'failed'")
echo "failed events: $failed"
mid=$(sqlite3 "$work/bench.db" "SELECT id FROM webhook_events WHERE status = 'failed' ORDER BY id LIMIT 1 OFFSET $((failed / 2))")
# Median of 30 calls, in ms.
time_ms() {
  for _ in $(seq 30); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer bench-admin" "$1"
  done | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)] * 1000}'
}
health=$(time_ms "$base/console/console.css")
printf '%-52s %8s ms\n' "GET /console/console.css (baseline)" "$health"
for path in \
  "/api/health" \
  "/api/admin/dlq?order=newest&limit=50" \
  "/api/admin/dlq?order=newest&limit=50&before=$mid" \
  "/api/admin/dlq?order=oldest&limit=50&after=$mid" \
  "/api/admin/dlq/$mid"; do
  ms=$(time_ms "$base$path")
  printf '%-52s %8s ms  %s× the baseline\n' "$path" "$ms" "$(python3 -c "print(round($ms / $health, 1))")"
done
