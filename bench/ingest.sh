#!/usr/bin/env bash
# Durable ingest on a release Portico (SQLite), read as ratios against a bare axum
# "read the body, answer 200" server measured in the same run:
#  1. the bare baseline, Portico Meta and Portico WhatsApp at full speed (closed
#     loop, CONCURRENCY connections): throughput, p50/p99/max, non-2xx; after each
#     Portico run every acknowledged id must be stored within STORE_WAIT s (5);
#  2. Portico Meta in an open loop at half the Meta rate of 1: p99;
#  3. Meta with Graph lead retrieval from a fake Graph API answering after 2 s, at
#     GRAPH_RATE leads/s (5) for GRAPH_SECONDS (10): webhook p99, and how long until
#     every acknowledged lead has its Graph fields (waiting at most GRAPH_WAIT s, 180);
#  4. Portico Meta at full speed on PostgreSQL (a throwaway server of this run,
#     fsync on, on 127.0.0.1), to read against the SQLite run of 1 (set PG=0 to skip);
#  5. peak resident memory (VmHWM) of each portico process, and per run the share of
#     the machine's CPU other processes took (a neighbour's noise: run again);
#  6. the disk's own sync latency (`loadgen --sync-probe`), before 1 and before 3:
#     every 2xx waits for one sync, so its tail is the webhook p99's floor.
#   bench/ingest.sh [SECONDS] [CONCURRENCY]
# Binaries are taken from $CARGO_TARGET_DIR (default target/); only 127.0.0.1 is used.
# Exits non-zero if Portico answered a non-2xx or lost an acknowledged id.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conc=${2:-16}
store_wait=${STORE_WAIT:-5}
graph_rate=${GRAPH_RATE:-5}
graph_secs=${GRAPH_SECONDS:-10}
graph_wait=${GRAPH_WAIT:-180}
page=138124712925158
phone=106540352242922

cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta -p portico-whatsapp
tdir=$(realpath "${CARGO_TARGET_DIR:-target}")
bin=$tdir/release/portico
load=$tdir/release/examples/loadgen

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ -n "${pgdata:-}" ]; then as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# PostgreSQL's server refuses root: run it as the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgbin=$(dirname "$(realpath "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")" 2>/dev/null || true)

# Only the two adapters measured, from the repo's manifest, components from $tdir.
awk '/^\[/ { keep = /^\[(defaults|plugins\.meta|plugins\.whatsapp)[].]/ } keep' plugins.toml |
  sed "s#^path = \"target/#path = \"$tdir/#" >"$work/plugins.toml"
unset META_PAGE_ACCESS_TOKEN META_GRAPH_BASE_URL
export PORTICO_PLUGINS=$work/plugins.toml PORTICO_LOG=warn \
  META_APP_SECRET=s3cret WHATSAPP_APP_SECRET=s3cret WHATSAPP_WEBHOOK_ENABLED=true

free_port() { # a port nobody listens on, from 20000-59999
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    (: >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  return 1
}
wait_port() { # PORT PID: until something listens there (60 s at most)
  for _ in $(seq 600); do
    (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
server=
start_portico() { # DATABASE_URL: a fresh database, one tenant with both sources, then serve
  export DATABASE_URL="$1"
  local tenant
  tenant=$($bin tenant add Bench)
  $bin source add --tenant "$tenant" --kind meta --key "$page" >/dev/null
  $bin source add --tenant "$tenant" --kind whatsapp --key "$phone" >/dev/null
  port=$(free_port)
  $bin serve --listen "127.0.0.1:$port" &
  server=$!
  pids+=("$server")
  purl=http://127.0.0.1:$port
  for _ in $(seq 600); do
    curl -sf "$purl/api/health" >/dev/null && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  echo "portico did not come up" >&2
  return 1
}
stop() { # PID
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
hwm() { awk '/^VmHWM/ { printf "%.0f MB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# CPU time (ticks) of this script's processes, finished children included: user,
# system and the children's of each (fields 14-17 of /proc/PID/stat).
# The PostgreSQL server of the PG run is ours too: its postmaster and backends.
ours() {
  local t=0 p pg=()
  if [ -n "${pgdata:-}" ] && [ -f "$pgdata/postmaster.pid" ]; then
    local pm
    pm=$(head -n 1 "$pgdata/postmaster.pid")
    pg=("$pm" $(ps -o pid= --ppid "$pm" 2>/dev/null))
  fi
  for p in $$ "${pids[@]}" "${pg[@]}"; do
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ s += $12 + $13 + $14 + $15 } END { print s + 0 }')))
  done
  echo "$t"
}
# CPU ticks of the whole machine: "busy total", steal (other VMs) counted as busy.
machine() { awk '/^cpu / { print $2 + $3 + $4 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }

declare -A res chk rss others
fail=0
measure() { # NAME LOADGEN-ARGS...: one run, its RESULT line kept in res[NAME]
  local name=$1 m0 o0 m1 o1
  shift
  m0=$(machine)
  o0=$(ours)
  $load "$@" | tee "$work/$name.out" || true
  m1=$(machine)
  o1=$(ours)
  res[$name]=$(grep '^RESULT' "$work/$name.out" || true)
  # What other processes (and VMs) took meanwhile: figures with much of it are noise.
  others[$name]=$(awk -v m0="$m0" -v m1="$m1" -v o="$((o1 - o0))" 'BEGIN {
    split(m0, a, " "); split(m1, b, " "); t = b[2] - a[2]; x = b[1] - a[1] - o
    printf "%.0f%%", (t > 0 && x > 0) ? 100 * x / t : 0 }')
}
check() { # NAME CHECK-ARGS...: are the ids acknowledged in run NAME stored?
  local name=$1
  shift
  $load --check-stored "$DATABASE_URL" --ids "$work/$name.ids" "$@" | tee "$work/$name.chk" || true
  chk[$name]=$(grep '^RESULT' "$work/$name.chk" || true)
  rss[$name]=$(hwm "$server") # the peak so far, this run included
}
val() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"${res[$1]:-}"; }
num() { local v; v=$(val "$1" "$2"); echo "${v:-0}"; }
cval() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"${chk[$1]:-}"; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
changed=$(git status --porcelain -uno 2>/dev/null | wc -l | tr -d ' ')
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
  "$(free -h | awk '/^Mem:/ { print $2 }') RAM; commit $commit ($changed tracked files changed)"

bport=$(free_port)
$load --baseline "127.0.0.1:$bport" >/dev/null &
base_pid=$!
pids+=("$base_pid")
wait_port "$bport" "$base_pid"
start_portico "sqlite://$work/bench.db"
rss_idle=$(awk '/^VmRSS/ { printf "%.0f MB", $2 / 1024 }' "/proc/$server/status")

echo "== the database disk's sync latency (what every 2xx waits for once)"
measure sync1 --sync-probe "$work"
echo "== bare baseline: $secs s, $conc connections"
measure base --url "http://127.0.0.1:$bport" --target baseline --duration "$secs" --concurrency "$conc" --warmup 2
echo "== Portico Meta: $secs s, $conc connections"
measure meta --url "$purl" --target meta --page "$page" --duration "$secs" --concurrency "$conc" --warmup 2 --ids-out "$work/meta.ids"
check meta --within "$store_wait"
half=$(awk -v r="$(val meta rps)" 'BEGIN { h = int(r / 2); print (h < 1 ? 1 : h) }')
echo "== Portico Meta: $secs s at $half/s (half the rate above), open loop"
measure half --url "$purl" --target meta --page "$page" --duration "$secs" --rate "$half" --ids-out "$work/half.ids"
check half --within "$store_wait"
echo "== Portico WhatsApp: $secs s, $conc connections"
measure wa --url "$purl" --target whatsapp --page "$phone" --duration "$secs" --concurrency "$conc" --warmup 2 --ids-out "$work/wa.ids"
check wa --target whatsapp --within "$store_wait"
rss_base=$(hwm "$base_pid")
stop "$server"

gport=$(free_port)
$load --fake-graph "127.0.0.1:$gport" --graph-delay-ms 2000 >/dev/null &
graph_pid=$!
pids+=("$graph_pid")
wait_port "$gport" "$graph_pid"
export META_GRAPH_BASE_URL=http://127.0.0.1:$gport META_PAGE_ACCESS_TOKEN=bench-token
echo "== the database disk's sync latency again"
measure sync2 --sync-probe "$work"
start_portico "sqlite://$work/graph.db"
echo "== Portico Meta, Graph answering after 2 s: $graph_secs s at $graph_rate/s, open loop"
measure graph --url "$purl" --target meta --page "$page" --duration "$graph_secs" --rate "$graph_rate" --ids-out "$work/graph.ids"
check graph --graph-fields --within "$graph_wait"
stop "$server"

unset META_GRAPH_BASE_URL META_PAGE_ACCESS_TOKEN
if [ "${PG:-1}" != 0 ]; then
  [ -x "$pgbin/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql), or PG=0" >&2; exit 1; }
  pgdata=$work/pg
  mkdir -p "$pgdata"
  [ "$(id -u)" != 0 ] || chown postgres: "$work" "$pgdata"
  pgport=$(free_port)
  as_pg "$pgbin/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 >/dev/null
  as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
    -o "-p $pgport -k $pgdata -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null
  "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres bench
  start_portico "postgres://postgres@127.0.0.1:$pgport/bench"
  echo "== Portico Meta on PostgreSQL: $secs s, $conc connections"
  measure pgmeta --url "$purl" --target meta --page "$page" --duration "$secs" --concurrency "$conc" --warmup 2 --ids-out "$work/pgmeta.ids"
  check pgmeta --within "$store_wait"
  stop "$server"
fi

base_rps=$(val base rps)
echo
echo "== summary (commit $commit, $(nproc) cores; ratios against the bare baseline of this run)"
printf '%-30s %8s %8s %7s %9s %7s %9s %9s %9s %8s %6s  %s\n' run sent 2xx non2xx req/s x-base p50-ms p99-ms max-ms peak-rss others stored
row() { # NAME LABEL
  local stored="-" ratio bad
  # Only a full-speed run's throughput compares with the baseline's.
  ratio=$(awk -v a="$(val "$1" rps)" -v b="$base_rps" -v r="$(val "$1" rate)" \
    'BEGIN { if (b > 0 && a != "" && r == 0) printf "%.3f", a / b; else print "-" }')
  bad=$(($(num "$1" non2xx) + $(num "$1" errors)))
  if [ -n "${chk[$1]:-}" ]; then
    stored="$(cval "$1" stored)/$(cval "$1" expected) in $(cval "$1" secs) s"
    [ "$(cval "$1" missing)" = 0 ] || fail=1
  fi
  if [ "$1" != base ] && { [ -z "${res[$1]:-}" ] || [ "$bad" != 0 ] || [ -z "${chk[$1]:-}" ]; }; then fail=1; fi
  printf '%-30s %8s %8s %7s %9s %7s %9s %9s %9s %8s %6s  %s\n' "$2" "$(val "$1" sent)" "$(val "$1" ok)" "$bad" \
    "$(val "$1" rps)" "$ratio" "$(val "$1" p50_ms)" "$(val "$1" p99_ms)" "$(val "$1" max_ms)" "${rss[$1]:--}" \
    "${others[$1]:--}" "$stored"
}
row base "bare axum baseline"
row meta "portico meta, full speed"
row half "portico meta, $half/s"
row wa "portico whatsapp, full speed"
row graph "meta + Graph 2 s, $graph_rate/s"
# The disk's own tail: a webhook's p99 cannot beat the sync it waits for.
for s in sync1 sync2; do
  printf '%-30s %8s %8s %7s %9s %7s %9s %9s %9s %8s %6s  %s\n' "disk sync ($s)" "$(val $s sent)" - - - - \
    "$(val $s p50_ms)" "$(val $s p99_ms)" "$(val $s max_ms)" - "${others[$s]:--}" "over 50 ms: $(val $s over50)"
done
if [ -n "${res[pgmeta]:-}" ]; then
  row pgmeta "portico meta on postgres"
  awk -v p="$(val pgmeta rps)" -v s="$(val meta rps)" 'BEGIN { if (s > 0) printf "postgres/sqlite, one process, meta full speed: %.2f\n", p / s }'
fi
echo "(non2xx counts transport errors too; x-base: throughput over the baseline's, full-speed runs only;" \
  "peak-rss: the portico process's VmHWM so far; others: the machine's CPU taken by other" \
  "processes during the run (more than a few % and the figures are noise: run again); stored: acknowledged ids in the database," \
  "seconds after the load ended; Graph row: with full_name, waiting at most $graph_wait s;" \
  "disk sync: 4 KiB appended and fdatasync'd, 300 at 50/s, before the Meta runs and before the Graph run)"
echo "resident memory: portico $rss_idle once ready, peak ${rss[wa]:-?} over the meta and whatsapp" \
  "runs (a fresh portico for the Graph run); the bare baseline server's peak $rss_base"
exit "$fail"
