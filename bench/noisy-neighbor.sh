#!/usr/bin/env bash
# Meta lead latency (p50/p99) on a release Portico, alone and while a plugin that
# loops forever is hit by 4 clients without pause (each call dies at its 1 s deadline).
#   bench/noisy-neighbor.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-meta -p portico-test-misbehaving
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/plugins.toml" <<TOML
[plugins.meta]
path = "$PWD/target/wasm32-wasip2/plugin/portico_meta.wasm"
secrets = { app_secret = { env = "META_APP_SECRET" } }
[plugins.looping]
path = "$PWD/target/wasm32-wasip2/plugin/portico_test_misbehaving.wasm"
config = { behaviour = "loop" }
limits = { call_timeout_ms = 1000 }
TOML
export DATABASE_URL="sqlite://$work/bench.db" META_APP_SECRET=s3cret PORTICO_LOG=error PORTICO_PLUGINS="$work/plugins.toml"
tenant=$(target/release/portico tenant add Bench)
target/release/portico source add --tenant "$tenant" --kind meta --key 138124712925158 >/dev/null
port=$((20000 + RANDOM % 20000))
target/release/portico serve --listen "127.0.0.1:$port" & pids+=($!)
until curl -sf "http://127.0.0.1:$port/api/health" >/dev/null; do sleep 0.1; done
echo "== Meta alone"
target/release/examples/loadgen --url "http://127.0.0.1:$port" --secret s3cret --requests "$requests" --concurrency 1 | grep -E "POST|GET"
for c in 1 2 3 4; do
  (while true; do curl -s -o /dev/null -X POST "http://127.0.0.1:$port/api/integrations/looping/webhook" -d "{\"c\":$c,\"t\":\"$RANDOM$RANDOM\"}"; done) & pids+=($!)
done
sleep 1
echo "== Meta while the looping plugin is hit by 4 clients"
target/release/examples/loadgen --url "http://127.0.0.1:$port" --secret s3cret --requests "$requests" --concurrency 1 | grep -E "POST|GET"
