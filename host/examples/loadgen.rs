//! Load tool: signed Meta leads and WhatsApp messages against a running Portico.
//!
//! Modes (one per invocation):
//! - `--target meta|whatsapp|baseline|health|conversions`: one measured run, closed
//!   loop (`--concurrency` connections) or open loop (`--rate`), for `--requests`
//!   or `--duration`; prints a `RESULT key=value ...` line for scripts and, with
//!   `--ids-out`, the ids that got a 2xx.
//! - no `--target`: the older comparison, `GET /api/health` then the POSTs
//!   (bench/lead-latency.sh, meta-graph.sh, whatsapp.sh, conversions.sh).
//! - `--check-stored DB_URL --ids FILE`: wait until every id is in the database.
//! - `--baseline ADDR`, `--fake-graph ADDR`, `--fake-google ADDR`: serve until killed.
//!
//! See bench/ingest.sh for a self-contained run and docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Target {
    /// Signed Meta leadgen deliveries, one lead each.
    Meta,
    /// Signed WhatsApp text deliveries, one message each.
    Whatsapp,
    /// The Meta request sent to the bare server of `--baseline`.
    Baseline,
    /// `GET /api/health`.
    Health,
    /// Google offline conversions.
    Conversions,
    /// Signed Standard Webhooks `lead.created` events, one lead each, to
    /// `/api/integrations/{--mount}/webhook` (`--secret` is the `whsec_...` secret).
    Standard,
}

#[derive(Parser)]
struct Args {
    /// Base URL of a running Portico (or of the `--baseline` server).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// META_APP_SECRET (or WHATSAPP_APP_SECRET) of that server.
    #[arg(long, default_value = "s3cret")]
    secret: String,
    /// A page id (or WhatsApp phone number id) mapped to a tenant.
    #[arg(long, default_value = "138124712925158")]
    page: String,
    /// With --target standard: the adapter's mount (standard, standard-py, ...).
    #[arg(long, default_value = "standard")]
    mount: String,
    /// Requests to send (default 1000 unless --duration is given).
    #[arg(long)]
    requests: Option<u64>,
    /// Send for this many seconds instead of a number of requests.
    #[arg(long)]
    duration: Option<f64>,
    /// Connections in the closed loop (with --rate 0).
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// Open loop: start this many requests per second whatever the answers
    /// (latency counted from the scheduled start); 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Open loop: most requests in flight; beyond it sending waits (and that wait counts).
    #[arg(long, default_value_t = 10_000)]
    max_inflight: u32,
    /// Closed-loop seconds sent first and not measured (connections, instance pool).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Per-request timeout; a timeout counts as an error.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// What to send; without it, the health-then-POST comparison.
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// Write the leadgen ids (wamids) that got a 2xx here, one a line.
    #[arg(long)]
    ids_out: Option<PathBuf>,
    /// Write each 2xx's request number and latency in ms here, one a line in
    /// the order they were sent (to see when a slow answer came: the first, or in a burst).
    #[arg(long)]
    latencies_out: Option<PathBuf>,
    /// Instead of sending load, wait until every id of --ids is stored in this
    /// SQLite database (leads.external_id; messages.external_id with --target whatsapp).
    #[arg(long)]
    check_stored: Option<String>,
    /// With --check-stored: the ids, one a line (from --ids-out).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// With --check-stored: seconds to wait before calling ids missing.
    #[arg(long, default_value_t = 5.0)]
    within: f64,
    /// With --check-stored: count a lead only once it has its Graph fields (full_name).
    #[arg(long)]
    graph_fields: bool,
    /// Instead of sending load, serve a bare "read the body, answer 200" server on this address (until killed).
    #[arg(long)]
    baseline: Option<String>,
    /// Instead of sending load, serve a fake Graph API on this address (until killed).
    #[arg(long)]
    fake_graph: Option<String>,
    /// Instead of sending load, time what a commit waits for on this folder's
    /// disk: 4 KiB written at the end of a file then `fdatasync`, 300 times,
    /// 50 a second (a webhook's answer waits for one; their tail is its floor).
    #[arg(long)]
    sync_probe: Option<PathBuf>,
    /// With --fake-graph: every n-th lead GET answers 500 (0: never).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// With --fake-graph: answer each lead GET after this many milliseconds.
    #[arg(long, default_value_t = 0)]
    graph_delay_ms: u64,
    /// Instead of sending load, serve a fake Google Ads API on this address (until killed).
    #[arg(long)]
    fake_google: Option<String>,
    /// Without --target: send offline conversions instead of Meta leads.
    #[arg(long)]
    conversions: bool,
    /// Without --target: send signed WhatsApp text deliveries (to --page as the phone number id).
    #[arg(long)]
    whatsapp: bool,
}

/// The bare baseline: what any HTTP server costs on this machine, nothing else.
async fn baseline(addr: &str) {
    async fn ok(_body: axum::body::Bytes) -> axum::http::StatusCode {
        axum::http::StatusCode::OK
    }
    let app = axum::Router::new().fallback(ok);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!("baseline on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

/// A fake Google: every conversion of a batch is accepted, by either API.
async fn fake_google(addr: &str) {
    async fn upload(body: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        let n = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["conversions"].as_array().map(Vec::len))
            .unwrap_or(0);
        let results: Vec<serde_json::Value> =
            (0..n).map(|_| serde_json::json!({"gclid": "x"})).collect();
        axum::Json(serde_json::json!({"results": results, "jobId": "1"})).into_response()
    }
    // The Data Manager API: every request taken, and SUCCESS for each of its destinations.
    type Requests = Arc<Mutex<HashMap<String, serde_json::Value>>>;
    async fn ingest(
        axum::extract::State(requests): axum::extract::State<Requests>,
        body: String,
    ) -> axum::Json<serde_json::Value> {
        let destinations = serde_json::from_str::<serde_json::Value>(&body)
            .map(|v| v["destinations"].clone())
            .unwrap_or_default();
        let mut requests = requests.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("req-{}", requests.len() + 1);
        requests.insert(id.clone(), destinations);
        axum::Json(serde_json::json!({"requestId": id}))
    }
    async fn status(
        axum::extract::State(requests): axum::extract::State<Requests>,
        axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    ) -> axum::Json<serde_json::Value> {
        let requests = requests.lock().unwrap_or_else(|e| e.into_inner());
        let per: Vec<serde_json::Value> = q
            .get("requestId")
            .and_then(|id| requests.get(id))
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .map(|d| serde_json::json!({"destination": d, "requestStatus": "SUCCESS"}))
                    .collect()
            })
            .unwrap_or_default();
        axum::Json(serde_json::json!({"requestStatusPerDestination": per}))
    }
    let app = axum::Router::new()
        .route("/{v}/customers/{target}", axum::routing::post(upload))
        .route("/v1/events:ingest", axum::routing::post(ingest))
        .route("/v1/requestStatus:retrieve", axum::routing::get(status))
        .with_state(Requests::default());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!(
        "fake Google Ads and Data Manager APIs on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}

/// A fake Graph API: `GET /v{version}/{lead_id}` answers a lead after `delay`,
/// every n-th one a 500.
async fn fake_graph(addr: &str, fail_every: u64, delay: Duration) {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let calls = Arc::new(AtomicU64::new(0));
    async fn lead(
        State((calls, fail_every, delay)): State<(Arc<AtomicU64>, u64, Duration)>,
        Path((_v, id)): Path<(String, String)>,
    ) -> axum::response::Response {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::time::sleep(delay).await;
        if fail_every > 0 && n % fail_every == 0 {
            return (StatusCode::INTERNAL_SERVER_ERROR, "fake outage").into_response();
        }
        let body = format!(
            r#"{{"id":"{id}","created_time":"2026-09-20T15:25:28+0000","ad_id":"1","form_id":"2","field_data":[{{"name":"full_name","values":["Jos\u00e9 P\u00e9rez"]}},{{"name":"email","values":["j@example.com"]}},{{"name":"phone_number","values":["+5511987654321"]}}]}}"#
        );
        ([("content-type", "application/json")], body).into_response()
    }
    let app = axum::Router::new()
        .route("/{v}/{id}", axum::routing::get(lead))
        .with_state((calls, fail_every, delay));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!(
        "fake Graph API on http://{} (answers after {} ms)",
        listener.local_addr().unwrap(),
        delay.as_millis()
    );
    axum::serve(listener, app).await.unwrap();
}

fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `{id}.{ts}.{body}` with the
/// key inside `whsec_<base64>`.
fn standard_signature(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("--secret must be whsec_<base64> for --target standard");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// What every request of a run shares.
#[derive(Clone)]
struct Plan {
    client: reqwest::Client,
    target: Target,
    url: String,
    secret: String,
    page: String,
    mount: String,
    /// Unix microseconds at start: ids stay unique across runs on one database.
    run_id: u128,
}

impl Plan {
    /// The n-th request and the id it carries (leadgen id, wamid or gclid).
    fn request(&self, n: u64) -> (reqwest::RequestBuilder, String) {
        let (url, page, run) = (&self.url, &self.page, self.run_id);
        let signed = |path: &str, body: String| {
            self.client
                .post(format!("{url}{path}"))
                .header("x-hub-signature-256", sign(body.as_bytes(), &self.secret))
                .header("content-type", "application/json")
                .body(body)
        };
        match self.target {
            Target::Meta | Target::Baseline => {
                let id = format!("{run}{n:09}");
                let body = format!(
                    r#"{{"object":"page","entry":[{{"id":"{page}","time":1630087927,"changes":[{{"field":"leadgen","value":{{"leadgen_id":"{id}","form_id":"172036835026334","created_time":1630087926,"page_id":"{page}"}}}}]}}]}}"#
                );
                (signed("/api/integrations/meta/webhook", body), id)
            }
            Target::Whatsapp => {
                let id = format!("wamid.bench{run}{n:09}");
                let body = format!(
                    r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"{page}"}},"contacts":[{{"profile":{{"name":"Bench {c}"}},"wa_id":"5511900{c:06}"}}],"messages":[{{"from":"5511900{c:06}","id":"{id}","timestamp":"1749416383","type":"text","text":{{"body":"Ol\u00e1 {n}"}}}}]}}}}]}}]}}"#,
                    c = n % 50
                );
                (signed("/api/integrations/whatsapp/webhook", body), id)
            }
            Target::Conversions => {
                let id = format!("bench-{run}{n:09}");
                let body = format!(
                    r#"{{"gclid":"{id}","timestamp":"2026-09-20T14:32:05-03:00","value":10.5,"currency":"BRL"}}"#
                );
                let request = self
                    .client
                    .post(format!("{url}/api/integrations/google/offline-conversion"))
                    .header("content-type", "application/json")
                    // The intake route takes the CRM's bearer token.
                    .bearer_auth(std::env::var("PORTICO_INTAKE_TOKEN").unwrap_or_default())
                    .body(body);
                (request, id)
            }
            Target::Standard => {
                let id = format!("std-{run}{n:09}");
                let body = format!(
                    r#"{{"type":"lead.created","timestamp":"2026-11-28T12:00:00Z","data":{{"id":"{id}","source_key":"{page}","full_name":"Ana Silva","email":"ana@example.com","phone":"+5511900000000","fields":{{"city":"Recife"}}}}}}"#
                );
                let msg = format!("msg_{id}");
                let ts = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    .to_string();
                let request = self
                    .client
                    .post(format!("{url}/api/integrations/{}/webhook", self.mount))
                    .header("webhook-id", &msg)
                    .header("webhook-timestamp", &ts)
                    .header(
                        "webhook-signature",
                        standard_signature(&self.secret, &msg, &ts, body.as_bytes()),
                    )
                    .header("content-type", "application/json")
                    .body(body);
                (request, id)
            }
            Target::Health => (self.client.get(format!("{url}/api/health")), n.to_string()),
        }
    }
}

/// What a run saw; shared by the requests in flight.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    /// (request number, latency) of every 2xx, in the order answers came.
    timeline: Vec<(u64, Duration)>,
    wall: Duration,
    non_2xx: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
    acked: Vec<String>,
}

impl Outcome {
    fn failures(&self) -> u64 {
        self.non_2xx + self.errors
    }
}

/// Send one request; `since` is when it was due (open loop) or sent (closed loop).
async fn send(plan: &Plan, n: u64, since: Instant, out: &Mutex<Outcome>) {
    let (request, id) = plan.request(n);
    // Read the whole answer: a 2xx is only an acknowledgement once it is complete.
    let status = match request.send().await {
        Ok(r) => {
            let status = r.status();
            r.bytes().await.ok().map(|_| status)
        }
        Err(_) => None,
    };
    let latency = since.elapsed();
    let mut out = out.lock().unwrap();
    match status {
        Some(s) if s.is_success() => {
            out.latencies.push(latency);
            out.timeline.push((n, latency));
            out.acked.push(id);
        }
        Some(s) => {
            out.non_2xx += 1;
            *out.statuses.entry(s.as_u16()).or_default() += 1;
        }
        None => out.errors += 1,
    }
}

/// One run: closed loop with `concurrency` connections, or open loop at `rate`.
async fn run(
    plan: Arc<Plan>,
    requests: u64,
    duration: Option<Duration>,
    concurrency: u64,
    rate: f64,
    max_inflight: u32,
) -> Outcome {
    let out = Arc::new(Mutex::new(Outcome::default()));
    let started = Instant::now();
    let end = duration.map(|d| started + d);
    let over = move |n: u64, now: Instant| n >= requests || end.is_some_and(|e| now >= e);
    if rate > 0.0 {
        let gate = Arc::new(tokio::sync::Semaphore::new(max_inflight as usize));
        let (handle, out, gate2) = (tokio::runtime::Handle::current(), out.clone(), gate.clone());
        // A thread of its own paces the sends: the runtime's timer has 1 ms
        // steps, which would count up to 1 ms of its own lateness as latency.
        tokio::task::spawn_blocking(move || {
            for n in 0.. {
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                if over(n, due) {
                    break;
                }
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let permit = handle.block_on(gate2.clone().acquire_owned()).unwrap();
                let (plan, out) = (plan.clone(), out.clone());
                handle.spawn(async move {
                    send(&plan, n, due, &out).await;
                    drop(permit);
                });
            }
        })
        .await
        .unwrap();
        // Every request has given its permit back once all permits are free.
        let _all = gate.acquire_many(max_inflight).await.unwrap();
    } else {
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (plan, out, next) = (plan.clone(), out.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if over(n, Instant::now()) {
                        break;
                    }
                    send(&plan, n, Instant::now(), &out).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
    let mut out = std::mem::take(&mut *out.lock().unwrap());
    out.wall = started.elapsed();
    out.latencies.sort();
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The older comparison's line: (median ms, requests per second).
fn report_legacy(name: &str, s: &Outcome) -> (f64, f64) {
    let median = ms(pct(&s.latencies, 0.5));
    let rate = s.latencies.len() as f64 / s.wall.as_secs_f64();
    println!(
        "{name:<22} n={:<6} failed={:<4} median={median:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms  {rate:>9.1} req/s",
        s.latencies.len(),
        s.failures(),
        ms(pct(&s.latencies, 0.99)),
        ms(s.latencies.last().copied().unwrap_or_default()),
    );
    (median, rate)
}

/// A human line and a `RESULT` line the bench scripts parse.
fn report(target: Target, rate: f64, s: &Outcome) {
    let ok = s.latencies.len();
    let sent = ok as u64 + s.failures();
    let rps = ok as f64 / s.wall.as_secs_f64();
    let (p50, p99) = (ms(pct(&s.latencies, 0.5)), ms(pct(&s.latencies, 0.99)));
    let max = ms(s.latencies.last().copied().unwrap_or_default());
    let statuses: Vec<String> = s.statuses.iter().map(|(k, v)| format!("{k}x{v}")).collect();
    println!(
        "{target:?}: {sent} sent in {:.2} s, {ok} 2xx, {} non-2xx [{}], {} errors; {rps:.1} req/s; p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        s.wall.as_secs_f64(),
        s.non_2xx,
        statuses.join(" "),
        s.errors,
    );
    println!(
        "RESULT target={} rate={rate} sent={sent} ok={ok} non2xx={} errors={} secs={:.3} rps={rps:.1} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3}",
        format!("{target:?}").to_lowercase(),
        s.non_2xx,
        s.errors,
        s.wall.as_secs_f64(),
    );
}

enum Db {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

/// Poll the database until every id is stored (with its Graph fields if asked).
async fn check_stored(args: &Args) -> bool {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let url = args.check_stored.as_deref().unwrap();
    let path = args.ids.as_ref().expect("--check-stored needs --ids FILE");
    let text = std::fs::read_to_string(path).unwrap();
    let mut missing: HashSet<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let expected = missing.len();
    // PostgreSQL commits concurrently, so ids do not grow in commit order there:
    // rescan everything each round (SQLite: only rows past the last seen id).
    let postgres = url.starts_with("postgres");
    let mut db = if postgres {
        Db::Pg(
            sqlx::postgres::PgConnectOptions::from_str(url)
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
    } else {
        Db::Sqlite(
            sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
    };
    let messages = args.target == Some(Target::Whatsapp);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.within);
    let (mut last_row, mut first) = (0i64, None);
    loop {
        // Rows only ever appear (SQLite has one writer, so ids grow in commit
        // order); Graph fields may be filled in later, so that case rescans.
        let sql = if messages {
            "SELECT id, external_id FROM messages WHERE id > $1"
        } else if args.graph_fields {
            "SELECT id, external_id FROM leads WHERE full_name IS NOT NULL AND full_name != '' AND id > $1"
        } else {
            "SELECT id, external_id FROM leads WHERE id > $1"
        };
        let rows: Vec<(i64, Option<String>)> = match &mut db {
            Db::Pg(c) => sqlx::query_as(sql).bind(0i64).fetch_all(c).await,
            Db::Sqlite(c) => {
                let after = if args.graph_fields { 0 } else { last_row };
                sqlx::query_as(sql).bind(after).fetch_all(c).await
            }
        }
        .unwrap();
        for (row, id) in rows {
            if !args.graph_fields {
                last_row = last_row.max(row);
            }
            if let Some(id) = id {
                missing.remove(id.as_str());
            }
        }
        let stored = expected - missing.len();
        let at_start = *first.get_or_insert(stored);
        let done = missing.is_empty();
        if done || Instant::now() >= deadline {
            let secs = started.elapsed().as_secs_f64();
            let what = if args.graph_fields {
                "stored with Graph fields"
            } else {
                "stored"
            };
            println!(
                "{what}: {stored} of {expected} acknowledged ids ({at_start} when the check began) after {secs:.2} s"
            );
            if !done {
                let some: Vec<&str> = missing.iter().take(5).copied().collect();
                println!(
                    "missing after {:.1} s, e.g.: {}",
                    args.within,
                    some.join(" ")
                );
            }
            println!(
                "RESULT check expected={expected} stored={stored} at_start={at_start} secs={secs:.3} missing={}",
                missing.len()
            );
            return done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--sync-probe`: the disk's sync latency, as a `RESULT target=sync` line.
fn sync_probe(dir: &std::path::Path) {
    use std::io::Write;
    const SYNCS: usize = 300;
    let path = dir.join(format!("sync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    let mut latencies = Vec::with_capacity(SYNCS);
    let started = Instant::now();
    for n in 0..SYNCS {
        let due = started + Duration::from_millis(20 * n as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        file.write_all(&[b'x'; 4096]).unwrap();
        let t = Instant::now();
        file.sync_data().unwrap();
        latencies.push(t.elapsed());
    }
    let wall = started.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    latencies.sort();
    let over = |ms: u64| {
        latencies
            .iter()
            .filter(|l| **l > Duration::from_millis(ms))
            .count()
    };
    println!(
        "fdatasync of 4 KiB, {SYNCS} at 50/s: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; over 10 ms: {}, over 50 ms: {}",
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99)),
        ms(latencies[SYNCS - 1]),
        over(10),
        over(50)
    );
    println!(
        "RESULT target=sync rate=50 sent={SYNCS} ok={SYNCS} non2xx=0 errors=0 secs={:.3} rps={:.1} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} over50={}",
        wall.as_secs_f64(),
        SYNCS as f64 / wall.as_secs_f64(),
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99)),
        ms(latencies[SYNCS - 1]),
        over(50)
    );
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if let Some(addr) = &args.baseline {
        baseline(addr).await;
        return;
    }
    if let Some(addr) = &args.fake_graph {
        fake_graph(
            addr,
            args.fail_every,
            Duration::from_millis(args.graph_delay_ms),
        )
        .await;
        return;
    }
    if let Some(addr) = &args.fake_google {
        fake_google(addr).await;
        return;
    }
    if let Some(dir) = &args.sync_probe {
        sync_probe(dir);
        return;
    }
    if args.check_stored.is_some() {
        let all = check_stored(&args).await;
        std::process::exit(if all { 0 } else { 1 });
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .unwrap();
    let run_id = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let plan = |target| {
        Arc::new(Plan {
            client: client.clone(),
            target,
            url: args.url.trim_end_matches('/').to_string(),
            secret: args.secret.clone(),
            page: args.page.clone(),
            mount: args.mount.clone(),
            run_id,
        })
    };
    let duration = args.duration.map(Duration::from_secs_f64);
    let requests = args
        .requests
        .unwrap_or(if duration.is_some() { u64::MAX } else { 1000 });

    let Some(target) = args.target else {
        // The older comparison: health then the POSTs, the same number each.
        println!(
            "{requests} requests each at concurrency {} against {}",
            args.concurrency, args.url
        );
        let posts = if args.conversions {
            Target::Conversions
        } else if args.whatsapp {
            Target::Whatsapp
        } else {
            Target::Meta
        };
        // Warm up connections, caches and the instance pool.
        let c = args.concurrency;
        run(plan(Target::Health), 50, None, c, 0.0, 1).await;
        let health = run(
            plan(Target::Health),
            requests,
            duration,
            c,
            args.rate,
            args.max_inflight,
        )
        .await;
        let leads = run(
            plan(posts),
            requests,
            duration,
            c,
            args.rate,
            args.max_inflight,
        )
        .await;
        let (base_median, base_rate) = report_legacy("GET /api/health", &health);
        let name = match posts {
            Target::Conversions => "POST conversion",
            Target::Whatsapp => "POST whatsapp msg",
            _ => "POST signed lead",
        };
        let (lead_median, lead_rate) = report_legacy(name, &leads);
        println!(
            "request/health: median latency x{:.2}, throughput x{:.2}",
            lead_median / base_median,
            lead_rate / base_rate
        );
        if leads.failures() > 0 {
            std::process::exit(1);
        }
        return;
    };

    if args.warmup > 0.0 {
        // Its own run id so warm-up ids never collide with the measured ones.
        let warm = Arc::new(Plan {
            run_id: run_id + 1,
            ..Arc::unwrap_or_clone(plan(target))
        });
        let d = Some(Duration::from_secs_f64(args.warmup));
        run(warm, u64::MAX, d, args.concurrency, 0.0, 1).await;
    }
    let out = run(
        plan(target),
        requests,
        duration,
        args.concurrency,
        args.rate,
        args.max_inflight,
    )
    .await;
    report(target, args.rate, &out);
    if let Some(path) = &args.ids_out {
        let mut text = out.acked.join("\n");
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }
    if let Some(path) = &args.latencies_out {
        let mut timeline = out.timeline.clone();
        timeline.sort();
        let text: String = timeline
            .iter()
            .map(|(n, latency)| format!("{n} {:.3}\n", latency.as_secs_f64() * 1e3))
            .collect();
        std::fs::write(path, text).unwrap();
    }
    if out.failures() > 0 {
        std::process::exit(1);
    }
}
