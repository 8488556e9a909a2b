#!/usr/bin/env bash
# Offline conversions on a release Portico: accepted per second at concurrency 8
# (GET /api/health in the same run is the baseline), then the outbox worker's rows per
# second against a fake Google on 127.0.0.1, through the Data Manager API (the default;
# UPLOAD_API=ads-api for the Google Ads API).   bench/conversions.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
cargo build --release -q -p portico --bin portico --example loadgen
cargo build -q --profile plugin --target wasm32-wasip2 -p portico-google-ads
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.2; rm -rf "$work"' EXIT
cat > "$work/plugins.toml" <<TOML
[plugins.google-ads]
path = "$PWD/target/wasm32-wasip2/plugin/portico_google_ads.wasm"
mount = "google"
allowed_hosts = [{ env = "GOOGLE_ADS_API_BASE_URL" }]
[plugins.google-ads.config]
upload_enabled = true
upload_api = "${UPLOAD_API:-data-manager}"
api_base_url = { env = "GOOGLE_ADS_API_BASE_URL" }
data_manager_base_url = { env = "GOOGLE_ADS_API_BASE_URL" }
customer_id = "1234567890"
conversion_action = "987654321"
[plugins.google-ads.secrets]
developer_token = "dev"
access_token = "token"
TOML
gport=$((20000 + RANDOM % 10000)); port=$((30000 + RANDOM % 10000))
target/release/examples/loadgen --fake-google "127.0.0.1:$gport" >/dev/null & pids+=($!)
export PORTICO_INTAKE_TOKEN=bench-intake-token DATABASE_URL="sqlite://$work/bench.db" PORTICO_LOG=error PORTICO_PLUGINS="$work/plugins.toml" GOOGLE_ADS_API_BASE_URL="http://127.0.0.1:$gport"
# Intake with the outbox worker idle (a 10-minute poll): this run measures intake alone.
PORTICO_OUTBOX_POLL_MS=600000 target/release/portico serve --listen "127.0.0.1:$port" & server=$!
until curl -sf "http://127.0.0.1:$port/api/health" >/dev/null; do sleep 0.05; done
target/release/examples/loadgen --url "http://127.0.0.1:$port" --requests "$n" --concurrency 8 --conversions
kill "$server"; wait "$server" 2>/dev/null || true
pending() { sqlite3 "$work/bench.db" "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'pending'"; }
echo "pending before upload: $(pending)"
t0=$(date +%s.%N)
PORTICO_OUTBOX_POLL_MS=50 target/release/portico serve --listen "127.0.0.1:$port" & pids+=($!)
until [ "$(pending)" = 0 ]; do sleep 0.05; done
t1=$(date +%s.%N)
echo "uploaded $(sqlite3 "$work/bench.db" "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'uploaded'") rows in $(python3 -c "print(round($t1 - $t0, 2))") s: $(python3 -c "print(round($n / ($t1 - $t0)))") rows/s (start-up included)"
