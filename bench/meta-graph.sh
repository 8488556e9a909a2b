#!/usr/bin/env bash
# Meta leads with Graph lead retrieval against a fake Graph API on 127.0.0.1:
#  1. leads stored per second at concurrency 8, Graph always answering
#     (GET /api/health at the same concurrency is the baseline);
#  2. a 1000-lead run where every 10th Graph call fails, then one
#     `portico dlq replay --all-failed`: the share of leads stored before and after.
#   bench/meta-graph.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta
bin=target/release/portico
load=target/release/examples/loadgen
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

run() { # $1: fail-every
  local work; work=$(mktemp -d)
  local gport=$((20000 + RANDOM % 10000)) port=$((30000 + RANDOM % 10000))
  $load --fake-graph "127.0.0.1:$gport" --fail-every "$1" >/dev/null & pids+=($!)
  export DATABASE_URL="sqlite://$work/bench.db" META_APP_SECRET=s3cret PORTICO_LOG=error \
         META_GRAPH_BASE_URL="http://127.0.0.1:$gport" META_PAGE_ACCESS_TOKEN=bench-token
  local tenant; tenant=$($bin tenant add Bench)
  $bin source add --tenant "$tenant" --kind meta --key 138124712925158 >/dev/null
  $bin serve --listen "127.0.0.1:$port" & pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 0.1; done
  $load --url "http://127.0.0.1:$port" --secret s3cret --requests "$requests" --concurrency 8 || true
  leads() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from leads').fetchone()[0])" "$work/bench.db"; }
  echo "leads stored: $(leads) of $requests"
  if [ "$1" != 0 ]; then
    local t0; t0=$(date +%s.%N)
    $bin dlq replay --all-failed
    echo "replay took $(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 2))") s"
    echo "leads stored after one replay: $(leads) of $requests"
  fi
}
echo "== Graph always answers"
run 0
echo "== every 10th Graph call fails, then one replay"
run 10
