#!/usr/bin/env bash
# The same adapter in three languages, in one run: Standard Webhooks in Rust
# (plugins/standard-webhooks), Python (plugins/standard-webhooks-py) and
# JavaScript (plugins/standard-webhooks-js), each alone on a release Portico
# (SQLite), one after the other:
#  - component size; load time with an empty compile cache, then on a restart
#    (from the cache);
#  - per-webhook latency at concurrency 1 (REQUESTS signed lead.created events,
#    after WARMUP unmeasured ones): p50, p99, req/s; and throughput at
#    concurrency CONC for SECONDS;
#  - the process's resident memory after loading, and its peak (VmHWM) at the end;
#  - ratios against the Rust adapter of the same run (the machine is shared).
#   bench/adapters.sh [REQUESTS] [CONC] [SECONDS]
# Needs python3 and Node.js (the Python and JavaScript builds install their
# pinned tools into target/portico-tools on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
conc=${2:-4}
secs=${3:-10}
warmup=${WARMUP:-200}
whsec=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-standard-webhooks
tdir=$(realpath "${CARGO_TARGET_DIR:-target}")
bin=$tdir/release/portico
load=$tdir/release/examples/loadgen
wasm_dir=$tdir/wasm32-wasip2/plugin
sh plugins/sdk-python/build.sh build plugins/standard-webhooks-py "$wasm_dir/standard_webhooks_py.wasm"
sh plugins/sdk-js/build.sh build plugins/standard-webhooks-js "$wasm_dir/standard_webhooks_js.wasm"

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  return 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# Start Portico in $dir; sets $server, $port and $load_ms (its plugin's load time).
start() {
  local dir=$1
  port=$(free_port)
  (cd "$dir" && PORTICO_LOG=info exec "$bin" serve --listen "127.0.0.1:$port" >"$dir/log" 2>&1) &
  server=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break
    sleep 0.1
  done
  load_ms=$(sed -n 's/.*plugin loaded.* ms=\([0-9]*\).*/\1/p' "$dir/log" | tail -n 1)
  : >"$dir/log"
}
stop() {
  kill "$server"; wait "$server" 2>/dev/null || true; server=
}

printf '%-11s %9s %9s %8s %8s %8s %9s %9s %9s %9s\n' adapter "size MB" "load ms" "cached" "p50 ms" "p99 ms" "req/s c1" "req/s c$conc" "RSS MB" "peak MB"
declare -A result
for lang in rust python javascript; do
  case $lang in
    rust) file=portico_standard_webhooks.wasm ;;
    python) file=standard_webhooks_py.wasm ;;
    javascript) file=standard_webhooks_js.wasm ;;
  esac
  dir=$work/$lang
  mkdir -p "$dir"
  cat >"$dir/plugins.toml" <<TOML
[plugins.standard]
path = "$wasm_dir/$file"
mount = "standard"
source_kinds = ["standard"]
secrets = { signing_secret = "$whsec" }
TOML
  export DATABASE_URL="sqlite://$dir/bench.db" PORTICO_PLUGINS=$dir/plugins.toml PORTICO_CACHE_DIR=$dir/cache
  tenant=$("$bin" tenant add Bench 2>/dev/null)
  "$bin" source add --tenant "$tenant" --kind standard --key acme-site >/dev/null 2>&1
  start "$dir"; cold=$load_ms; stop
  start "$dir"; cached=$load_ms
  rss=$(( $(rss_kb "$server") / 1024 ))
  common=(--url "http://127.0.0.1:$port" --target standard --mount standard --secret "$whsec" --page acme-site)
  "$load" "${common[@]}" --requests "$warmup" --concurrency 1 >/dev/null
  one=$("$load" "${common[@]}" --requests "$requests" --concurrency 1 | grep '^RESULT')
  many=$("$load" "${common[@]}" --duration "$secs" --concurrency "$conc" | grep '^RESULT')
  peak=$(( $(hwm_kb "$server") / 1024 ))
  stored=$(sqlite3 "$dir/bench.db" 'SELECT COUNT(*) FROM leads' 2>/dev/null || echo '?')
  stop
  size=$(awk -v b="$(stat -c %s "$wasm_dir/$file")" 'BEGIN { printf "%.2f", b / 1048576 }')
  p50=$(field p50_ms "$one"); p99=$(field p99_ms "$one"); rps1=$(field rps "$one"); rpsn=$(field rps "$many")
  result[$lang]="$p50 $p99 $rps1 $rpsn $rss $peak $cold"
  printf '%-11s %9s %9s %8s %8s %8s %9s %9s %9s %9s  (%s leads stored)\n' "$lang" "$size" "$cold" "$cached" "$p50" "$p99" "$rps1" "$rpsn" "$rss" "$peak" "$stored"
done

echo
echo "against the Rust adapter of this run:"
read -r rp50 rp99 rrps1 rrpsn rrss rpeak rcold <<<"${result[rust]}"
for lang in python javascript; do
  read -r p50 p99 rps1 rpsn rss peak cold <<<"${result[$lang]}"
  awk -v l="$lang" -v a="$p50" -v b="$rp50" -v c="$p99" -v d="$rp99" -v e="$rpsn" -v f="$rrpsn" \
      -v g="$rss" -v h="$rrss" -v i="$peak" -v j="$rpeak" -v k="$cold" -v m="$rcold" 'BEGIN {
    printf "  %-11s p50 x%.2f, p99 x%.2f, req/s at c'"$conc"' x%.2f, RSS +%d MB, peak +%d MB, cold load x%.0f\n",
      l, a / b, c / d, e / f, g - h, i - j, (m > 0 ? k / m : 0)
  }'
done
