#!/usr/bin/env bash
# Two Portico builds against each other, in turns, in one run: the way to tell a
# change's effect from this machine's noise (a neighbour, the disk's sync tail),
# which moves single runs of bench/ingest.sh by more than most changes do.
#   bench/compare.sh A B [ROUNDS] [SECONDS] [RATE]
# A and B: a portico binary, or a git revision (built with `cargo build --release`
# in a worktree under target/compare, with its own target folder there; the
# current tree's binary is `target/release/portico` after a release build).
# Each round runs A then B (the order swaps every round), each on a fresh SQLite
# database beside nothing that is watched: signed Meta leads for SECONDS (8) at
# full speed with 16 connections after a 2 s warm-up, then SECONDS in an open loop
# at RATE leads/s (default: half of A's first full-speed rate). Prints each run,
# then the medians of each build and the ratios B/A.
# BESIDE=1 puts each database in the folder of plugins.toml, which the server
# watches for hot reload (the default setup: ./portico.db beside ./plugins.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
rounds=${3:-5}
secs=${4:-8}
rate=${5:-}

cargo build --release -q -p portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta
tdir=$(realpath "${CARGO_TARGET_DIR:-target}")
load=$tdir/release/examples/loadgen

binary() { # A or B: the binary to run
  if [ -x "$1" ] && [ -f "$1" ]; then
    realpath "$1"
    return
  fi
  local rev wt
  rev=$(git rev-parse --short "$1^{commit}") || { echo "$1: neither a binary nor a git revision" >&2; exit 2; }
  wt=$tdir/compare/$rev
  [ -d "$wt" ] || git worktree add -q --detach "$wt" "$rev" >&2
  echo "building $rev in $wt (first time: a full release build)" >&2
  (cd "$wt" && CARGO_TARGET_DIR=$tdir/compare/target cargo build --release -q -p portico --bin portico >&2)
  cp "$tdir/compare/target/release/portico" "$tdir/compare/portico-$rev"
  echo "$tdir/compare/portico-$rev"
}
bin_a=$(binary "$1")
bin_b=$(binary "$2")

work=$(mktemp -d)
server=
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/db"
awk '/^\[/ { keep = /^\[(defaults|plugins\.meta)[].]/ } keep' plugins.toml |
  sed "s#^path = \"target/#path = \"$tdir/#" >"$work/plugins.toml"
export PORTICO_PLUGINS=$work/plugins.toml PORTICO_LOG=warn META_APP_SECRET=s3cret
page=138124712925158

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
one() { # NAME BINARY: one full-speed run and one open-loop run on a fresh database
  local bin=$2 tenant port full half
  local dir=$work/db
  [ "${BESIDE:-0}" = 0 ] || dir=$work
  export DATABASE_URL="sqlite://$dir/$1-$RANDOM.db"
  tenant=$("$bin" tenant add Bench)
  "$bin" source add --tenant "$tenant" --kind meta --key "$page" >/dev/null
  port=$((20000 + RANDOM % 40000))
  "$bin" serve --listen "127.0.0.1:$port" 2>>"$work/serve.log" &
  server=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 0.1; done
  full=$("$load" --url "http://127.0.0.1:$port" --target meta --page "$page" --duration "$secs" \
    --concurrency 16 --warmup 2 | grep '^RESULT')
  [ -n "$rate" ] || rate=$(awk -v r="$(field "$full" rps)" 'BEGIN { printf "%d", r / 2 }')
  half=$("$load" --url "http://127.0.0.1:$port" --target meta --page "$page" --duration "$secs" \
    --rate "$rate" | grep '^RESULT')
  kill "$server"
  wait "$server" 2>/dev/null || true
  printf '%-2s full %8s req/s  p99 %7s ms | %s/s  p50 %7s ms  p99 %7s ms  max %7s ms\n' "$1" \
    "$(field "$full" rps)" "$(field "$full" p99_ms)" "$rate" "$(field "$half" p50_ms)" \
    "$(field "$half" p99_ms)" "$(field "$half" max_ms)" | tee -a "$work/runs"
}

echo "A: $bin_a"
echo "B: $bin_b"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then one A "$bin_a"; one B "$bin_b"; else one B "$bin_b"; one A "$bin_a"; fi
done
awk '
  function median(list, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && list[j - 1] > list[j]; j--) { t = list[j]; list[j] = list[j - 1]; list[j - 1] = t }
    return n % 2 ? list[(n + 1) / 2] : (list[n / 2] + list[n / 2 + 1]) / 2
  }
  { n[$1]++; rps[$1, n[$1]] = $3; p99[$1, n[$1]] = $14 }
  END {
    for (b in n) {
      for (i = 1; i <= n[b]; i++) { x[i] = rps[b, i]; y[i] = p99[b, i] }
      mr[b] = median(x, n[b]); mp[b] = median(y, n[b])
      printf "%s: median full-speed %.1f req/s, median p99 at the fixed rate %.3f ms (%d runs)\n", b, mr[b], mp[b], n[b]
    }
    if (mr["A"] > 0 && mp["A"] > 0)
      printf "B/A: throughput x%.3f, p99 at the fixed rate x%.3f\n", mr["B"] / mr["A"], mp["B"] / mp["A"]
  }' "$work/runs"
