#!/usr/bin/env bash
# Start-up to ready (GET /api/health/ready = 200) of a release Portico with the
# bundled plugins: cold (no compiled-component cache) and warm (cache present),
# RUNS times each, alternating.   bench/startup.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release -q -p portico --bin portico
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DATABASE_URL="sqlite://$work/bench.db" PORTICO_LOG=error PORTICO_CACHE_DIR="$work/cache"
target/release/portico migrate 2>/dev/null

once() { # prints milliseconds to ready
  local port=$((20000 + RANDOM % 20000)) t0 t1 pid
  t0=$(date +%s%N)
  target/release/portico serve --listen "127.0.0.1:$port" & pid=$!
  until curl -sf "http://127.0.0.1:$port/api/health/ready" >/dev/null; do sleep 0.005; done
  t1=$(date +%s%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo $(( (t1 - t0) / 1000000 ))
}
cold=(); warm=()
for _ in $(seq "$runs"); do
  rm -rf "$work/cache"; cold+=("$(once)")
  warm+=("$(once)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "cold start to ready (ms): ${cold[*]}  median $(median "${cold[@]}")"
echo "warm start to ready (ms): ${warm[*]}  median $(median "${warm[@]}")"
