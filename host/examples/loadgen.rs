//! Load tool: signed Meta leads against a running Portico, with a baseline.
//!
//! It first measures `GET /api/health` (HTTP and runtime overhead only) and then
//! signed lead POSTs, each the same number of times at the same concurrency, so the
//! figures can be read as a ratio measured in one run on a noisy machine.
//! See bench/lead-latency.sh for a self-contained run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Base URL of a running Portico.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// META_APP_SECRET of that server.
    #[arg(long, default_value = "s3cret")]
    secret: String,
    /// A page id mapped to a tenant.
    #[arg(long, default_value = "138124712925158")]
    page: String,
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// Instead of sending load, serve a fake Graph API on this address (until killed).
    #[arg(long)]
    fake_graph: Option<String>,
    /// With --fake-graph: every n-th lead GET answers 500 (0: never).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Instead of sending load, serve a fake Google Ads API on this address (until killed).
    #[arg(long)]
    fake_google: Option<String>,
    /// Send offline conversions instead of Meta leads.
    #[arg(long)]
    conversions: bool,
    /// Send signed WhatsApp text deliveries (to --page as the phone number id) instead of Meta leads.
    #[arg(long)]
    whatsapp: bool,
}

/// A fake Google Ads API: every conversion of a batch is accepted.
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
    let app = axum::Router::new().route("/{v}/customers/{target}", axum::routing::post(upload));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!(
        "fake Google Ads API on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}

/// A fake Graph API: `GET /v{version}/{lead_id}` answers a lead, every n-th one a 500.
async fn fake_graph(addr: &str, fail_every: u64) {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let calls = Arc::new(AtomicU64::new(0));
    async fn lead(
        State((calls, fail_every)): State<(Arc<AtomicU64>, u64)>,
        Path((_v, id)): Path<(String, String)>,
    ) -> axum::response::Response {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
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
        .with_state((calls, fail_every));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!(
        "fake Graph API on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}

struct Stats {
    latencies: Vec<Duration>,
    wall: Duration,
    failures: u64,
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

async fn run(args: &Args, leads: bool) -> Stats {
    let conversions = args.conversions;
    let whatsapp = args.whatsapp;
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let run_id =
        std::process::id() as u64 * 1_000_000_000 + Instant::now().elapsed().as_nanos() as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let next = next.clone();
        let (url, secret, page, total) = (
            args.url.clone(),
            args.secret.clone(),
            args.page.clone(),
            args.requests,
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let t = Instant::now();
                let response = if leads && conversions {
                    let body = format!(
                        r#"{{"gclid":"bench-{}","timestamp":"2026-09-20T14:32:05-03:00","value":10.5,"currency":"BRL"}}"#,
                        run_id + n
                    );
                    client
                        .post(format!("{url}/api/integrations/google/offline-conversion"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                } else if leads && whatsapp {
                    let body = format!(
                        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"{page}"}},"contacts":[{{"profile":{{"name":"Bench {c}"}},"wa_id":"5511900{c:06}"}}],"messages":[{{"from":"5511900{c:06}","id":"wamid.bench{}","timestamp":"1749416383","type":"text","text":{{"body":"Ol\u00e1 {n}"}}}}]}}}}]}}]}}"#,
                        run_id + n,
                        c = n % 50
                    );
                    client
                        .post(format!("{url}/api/integrations/whatsapp/webhook"))
                        .header("x-hub-signature-256", sign(body.as_bytes(), &secret))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                } else if leads {
                    let body = format!(
                        r#"{{"object":"page","entry":[{{"id":"{page}","time":1630087927,"changes":[{{"field":"leadgen","value":{{"leadgen_id":"{}","form_id":"172036835026334","created_time":1630087926,"page_id":"{page}"}}}}]}}]}}"#,
                        run_id + n
                    );
                    client
                        .post(format!("{url}/api/integrations/meta/webhook"))
                        .header("x-hub-signature-256", sign(body.as_bytes(), &secret))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                } else {
                    client.get(format!("{url}/api/health")).send().await
                };
                let ok = match response {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    latencies.sort();
    Stats {
        latencies,
        wall: started.elapsed(),
        failures,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, s: &Stats) -> (f64, f64) {
    let median = pct(&s.latencies, 0.5).as_secs_f64() * 1e3;
    let rate = s.latencies.len() as f64 / s.wall.as_secs_f64();
    println!(
        "{name:<22} n={:<6} failed={:<4} median={median:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms  {rate:>9.1} req/s",
        s.latencies.len(),
        s.failures,
        pct(&s.latencies, 0.99).as_secs_f64() * 1e3,
        s.latencies
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
    );
    (median, rate)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if let Some(addr) = &args.fake_graph {
        fake_graph(addr, args.fail_every).await;
        return;
    }
    if let Some(addr) = &args.fake_google {
        fake_google(addr).await;
        return;
    }
    println!(
        "{} requests each at concurrency {} against {}",
        args.requests, args.concurrency, args.url
    );
    // Warm up connections, caches and the instance pool.
    let warm = Args {
        requests: 50,
        ..Args::parse()
    };
    run(&warm, false).await;
    let baseline = run(&args, false).await;
    let leads = run(&args, true).await;
    let (base_median, base_rate) = report("GET /api/health", &baseline);
    let name = if args.conversions {
        "POST conversion"
    } else if args.whatsapp {
        "POST whatsapp msg"
    } else {
        "POST signed lead"
    };
    let (lead_median, lead_rate) = report(name, &leads);
    println!(
        "request/health: median latency x{:.2}, throughput x{:.2}",
        lead_median / base_median,
        lead_rate / base_rate
    );
    if leads.failures > 0 {
        std::process::exit(1);
    }
}
