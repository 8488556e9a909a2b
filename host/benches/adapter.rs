//! The Meta adapter's verify + parse + map, natively and as the host runs it.
//!
//! Two functions, one group, the same signed deliveries, one run:
//! - `native`: the adapter's pure logic called directly (plugins/meta/src/logic.rs
//!   and the SDK's signature check), doing what the component's exports do;
//! - `wasm`: the component built from plugins/meta, loaded through `Runtime`
//!   (the engine and pooling allocator `portico serve` uses) from the
//!   repository's plugins.toml entry resolved with META_APP_SECRET set
//!   (signature verification on, no Graph token so map makes no outbound call;
//!   no compile cache and no store, which Meta's calls never reach), and per
//!   delivery what the webhook path does: a fresh `Session` (one instance per
//!   delivery), `verify`, `parse`, `map_to_domain` of each item, drop.
//!
//! Run: `cargo bench -p portico --bench adapter` (add `--target-dir DIR` as you
//! build). The component is built first with
//! `cargo build --profile plugin --target wasm32-wasip2 -p portico-meta` into
//! `target/bench-plugins` (its own target dir: a nested cargo must not share the
//! outer one's lock); a no-op when it is up to date. `PORTICO_BENCH_META_WASM=FILE`
//! uses a component you built instead.
//!
//! Criterion prints each function's time; then, per delivery, the median time
//! per iteration of both over criterion's samples and the ratio wasm / native
//! (the target is ≤ 1.5×), and where the wasm time goes (instantiate, each
//! call, drop). The ratio is a figure to read, never a test: nothing fails on it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion};
use portico::config::plugins::{FileCheck, resolve};
use portico::config::{PluginSpec, PluginsFile};
use portico::domain::DomainOp;
use portico::runtime::session::{AdapterRequest, Verdict};
use portico::runtime::{LoadedPlugin, Resolved, RouteKind, Runtime, Session};
use portico_meta::logic::{self, Mapped};
use portico_sdk::signature::hmac_sha256_hex;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP_SECRET: &str = "test_app_secret_123";
const GROUP: &str = "meta_verify_parse_map";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The Meta component, built from the current sources unless PORTICO_BENCH_META_WASM names one.
fn meta_wasm() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTICO_BENCH_META_WASM") {
        return PathBuf::from(path);
    }
    let root = workspace_root();
    let target_dir = root.join("target").join("bench-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .args(["-p", "portico-meta", "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("PORTICO_BUILD_TAG")
        .status()
        .expect("run cargo to build plugins/meta");
    assert!(
        status.success(),
        "building plugins/meta for wasm32-wasip2 failed"
    );
    target_dir
        .join("wasm32-wasip2")
        .join("plugin")
        .join("portico_meta.wasm")
}

/// The Meta entry of the repository's plugins.toml, resolved as `portico serve`
/// resolves it with META_APP_SECRET set, pointing at `wasm`.
fn meta_spec(wasm: &Path) -> PluginsFile {
    let path = workspace_root().join("plugins.toml");
    let text = std::fs::read_to_string(&path).expect("read plugins.toml");
    let env = |key: &str| (key == "META_APP_SECRET").then(|| APP_SECRET.to_string());
    let mut file = resolve(&path, &text, FileCheck::Skip, &env).expect("resolve plugins.toml");
    let mut meta: PluginSpec = file
        .plugins
        .into_iter()
        .find(|p| p.name == "meta")
        .expect("plugins.toml has a meta entry");
    meta.wasm_path = wasm.to_path_buf();
    assert_eq!(
        meta.config.get("verify_signature").map(String::as_str),
        Some("true")
    );
    assert!(!meta.secrets.contains_key("page_access_token"));
    file.plugins = vec![meta];
    file
}

fn header_pairs(signature: &str, body: &[u8]) -> Vec<(String, String)> {
    [
        ("host", "portico.example.com"),
        ("user-agent", "facebookexternalua"),
        ("content-type", "application/json"),
        ("accept", "*/*"),
        ("x-forwarded-for", "173.252.127.1"),
        ("x-hub-signature-256", signature),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("content-length".to_string(), body.len().to_string())])
    .collect()
}

/// A signed delivery, as the adapter sees it (host side and guest side).
struct Delivery {
    name: &'static str,
    host: AdapterRequest,
    guest: portico_sdk::Request,
}

impl Delivery {
    fn new(name: &'static str, body: String) -> Delivery {
        let body = body.into_bytes();
        let signature = format!("sha256={}", hmac_sha256_hex(APP_SECRET.as_bytes(), &body));
        let headers = header_pairs(&signature, &body);
        Delivery {
            name,
            host: AdapterRequest {
                method: "POST".into(),
                route: "webhook".into(),
                query: String::new(),
                headers: headers.clone(),
                body: body.clone(),
            },
            guest: portico_sdk::Request {
                method: "POST".into(),
                route: "webhook".into(),
                query: String::new(),
                headers,
                body,
            },
        }
    }
}

/// Meta's test tool delivery: one lead (host/tests/common `lead_body`).
fn one_lead() -> String {
    r#"{"object":"page","entry":[{"id":"138124712925158","time":1630087927,"changes":[{"value":{"form_id":"172036835026334","leadgen_id":"233370042045345","created_time":1630087926,"page_id":"138124712925158"},"field":"leadgen"}]}]}"#.to_string()
}

/// A batched delivery: two pages, three leads (numeric and string ids, with and
/// without ad ids) and one change the adapter ignores.
fn batch() -> String {
    r#"{"object":"page","entry":[{"id":"138124712925158","time":1630087927,"changes":[{"value":{"form_id":"172036835026334","leadgen_id":"233370042045345","created_time":1630087926,"page_id":"138124712925158","ad_id":"120215566778899001","adgroup_id":"120215566778899002"},"field":"leadgen"},{"value":{"form_id":"172036835026334","leadgen_id":"233370042045346","created_time":1630087931,"page_id":"138124712925158"},"field":"leadgen"}]},{"id":153125381133,"time":1438292065,"changes":[{"field":"leadgen","value":{"leadgen_id":123123123123,"page_id":153125381133,"form_id":12312312312,"adgroup_id":12312312312,"ad_id":12312312312,"created_time":1440120384}},{"field":"feed","value":{"item":"status","verb":"add","post_id":"153125381133_1"}}]}]}"#.to_string()
}

/// What the component's verify, parse and map_to_domain do, natively (no host
/// calls: the config and secret the host would hand over are passed in).
fn native_delivery(
    req: &portico_sdk::Request,
    verify_flag: &str,
    app_secret: &str,
) -> Vec<portico_sdk::DomainOp> {
    // verify
    if portico_sdk::host::parse_bool(verify_flag).unwrap_or(true) {
        let secrets = portico_sdk::host::split_list(app_secret);
        let header = portico_sdk::http::header(req, "x-hub-signature-256");
        portico_sdk::signature::verify_hub_sha256(header, &secrets, &req.body)
            .expect("signature matches");
    }
    // parse
    let parsed = logic::parse_delivery(&req.body).expect("parses");
    let items = portico_sdk::into_items(parsed, logic::TENANT_KIND);
    // map, item by item (no page token: no Graph call)
    let mut ops = Vec::with_capacity(items.len());
    for item in &items {
        let op = match logic::map_item(&item.kind, &item.payload).expect("maps") {
            Mapped::Ignore(reason) => portico_sdk::DomainOp::Ignore(reason),
            Mapped::Lead(lead) => portico_meta::lead_op(lead),
        };
        ops.push(op);
    }
    ops
}

/// The host's view of a guest op, to compare the two paths (native only makes these two).
fn host_op(op: portico_sdk::DomainOp) -> DomainOp {
    match op {
        portico_sdk::DomainOp::CreateLead(l) => DomainOp::CreateLead(portico::domain::NewLead {
            source: l.source,
            external_id: l.external_id,
            form_id: l.form_id,
            ad_id: l.ad_id,
            campaign_id: l.campaign_id,
            full_name: l.full_name,
            email: l.email,
            phone: l.phone,
            fields_json: l.fields_json,
        }),
        portico_sdk::DomainOp::Ignore(reason) => DomainOp::Ignore { reason },
        _ => panic!("the Meta adapter makes leads and ignores only"),
    }
}

/// One delivery through the component, as the webhook path runs it.
async fn wasm_delivery(plugin: &LoadedPlugin, req: &AdapterRequest) -> Vec<DomainOp> {
    let mut session = Session::start(plugin, "bench").await.expect("instantiate");
    match session.verify(req).await.expect("verify runs") {
        Verdict::Accept => {}
        Verdict::Reject(why) => panic!("verify refused the delivery: {why}"),
    }
    let items = session
        .parse(req)
        .await
        .expect("parse runs")
        .expect("parse accepts");
    let mut ops = Vec::with_capacity(items.len());
    for item in &items {
        ops.extend(
            session
                .map_to_domain(item)
                .await
                .expect("map runs")
                .expect("map accepts"),
        );
    }
    ops
}

/// Where one delivery's wasm time goes: the median of each phase over `n` deliveries.
async fn wasm_phases(plugin: &LoadedPlugin, req: &AdapterRequest, n: usize) -> [f64; 5] {
    let mut times: [Vec<f64>; 5] = Default::default();
    for _ in 0..n {
        let t0 = Instant::now();
        let mut session = Session::start(plugin, "bench").await.expect("instantiate");
        let t1 = Instant::now();
        let verdict = session.verify(req).await.expect("verify runs");
        assert_eq!(verdict, Verdict::Accept);
        let t2 = Instant::now();
        let items = session
            .parse(req)
            .await
            .expect("parse runs")
            .expect("parses");
        let t3 = Instant::now();
        for item in &items {
            let ops = session.map_to_domain(item).await.expect("map runs");
            black_box(ops.expect("maps"));
        }
        let t4 = Instant::now();
        drop(session);
        let t5 = Instant::now();
        for (i, (a, b)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]
            .into_iter()
            .enumerate()
        {
            times[i].push((b - a).as_secs_f64() * 1e6);
        }
    }
    times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    })
}

fn op_summary(ops: &[DomainOp]) -> Vec<String> {
    ops.iter()
        .map(|op| match op {
            DomainOp::CreateLead(l) => format!(
                "lead {} {:?} {:?} {:?} {}",
                l.external_id, l.form_id, l.ad_id, l.campaign_id, l.fields_json
            ),
            DomainOp::Ignore { reason } => format!("ignore {reason}"),
            _ => "other".into(),
        })
        .collect()
}

/// (function, delivery) → (iterations, elapsed) of every batch criterion asked for.
type Samples = RefCell<BTreeMap<(String, String), Vec<(u64, Duration)>>>;

fn record(samples: &Samples, function: &str, delivery: &str, iters: u64, took: Duration) {
    samples
        .borrow_mut()
        .entry((function.to_string(), delivery.to_string()))
        .or_default()
        .push((iters, took));
}

/// Median time per iteration over the last `n` batches (criterion's samples come
/// after its warm-up batches).
fn median_per_iter(batches: &[(u64, Duration)], n: usize) -> Option<f64> {
    let from = batches.len().saturating_sub(n);
    let mut per_iter: Vec<f64> = batches[from..]
        .iter()
        .filter(|(iters, _)| *iters > 0)
        .map(|(iters, took)| took.as_secs_f64() * 1e6 / *iters as f64)
        .collect();
    if per_iter.is_empty() {
        return None;
    }
    per_iter.sort_by(f64::total_cmp);
    Some(per_iter[per_iter.len() / 2])
}

const SAMPLE_SIZE: usize = 30;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let wasm = meta_wasm();
    let file = meta_spec(&wasm);
    let verify_flag = file.plugins[0].config["verify_signature"].clone();
    let runtime =
        Runtime::new(None, None, portico::runtime::engine::Recompile::Whole).expect("wasm runtime");
    let set = rt.block_on(runtime.load_all(&file));
    let plugin: Arc<LoadedPlugin> = match set.resolve("meta", "POST", "webhook") {
        Resolved::Found(plugin, RouteKind::Webhook, false) => plugin.clone(),
        _ => panic!("meta did not load or does not serve POST webhook"),
    };

    let deliveries = [
        Delivery::new("1_lead", one_lead()),
        Delivery::new("3_leads_1_ignored", batch()),
    ];
    // Both paths must do the same work before their times mean anything.
    for d in &deliveries {
        let native: Vec<DomainOp> = native_delivery(&d.guest, &verify_flag, APP_SECRET)
            .into_iter()
            .map(host_op)
            .collect();
        let wasm = rt.block_on(wasm_delivery(&plugin, &d.host));
        assert_eq!(op_summary(&native), op_summary(&wasm), "{}", d.name);
    }

    let samples: Samples = RefCell::new(BTreeMap::new());
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    for d in &deliveries {
        group.bench_with_input(BenchmarkId::new("native", d.name), d, |b, d| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(native_delivery(
                        black_box(&d.guest),
                        &verify_flag,
                        APP_SECRET,
                    ));
                }
                let took = start.elapsed();
                record(&samples, "native", d.name, iters, took);
                took
            })
        });
        group.bench_with_input(BenchmarkId::new("wasm", d.name), d, |b, d| {
            b.iter_custom(|iters| {
                let took = rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(wasm_delivery(&plugin, black_box(&d.host)).await);
                    }
                    start.elapsed()
                });
                record(&samples, "wasm", d.name, iters, took);
                took
            })
        });
    }
    group.finish();
    c.final_summary();

    let samples = samples.into_inner();
    let mut lines = Vec::new();
    for d in &deliveries {
        let get = |f: &str| {
            samples
                .get(&(f.to_string(), d.name.to_string()))
                .and_then(|b| median_per_iter(b, SAMPLE_SIZE))
        };
        if let (Some(native), Some(wasm)) = (get("native"), get("wasm")) {
            lines.push(format!(
                "{GROUP}/{:<18} native {native:8.2} µs   wasm {wasm:8.2} µs   wasm/native {:5.2}x (target ≤ 1.50x)",
                d.name,
                wasm / native
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    println!("\nmedian per delivery over criterion's last {SAMPLE_SIZE} samples of each:");
    for line in lines {
        println!("{line}");
    }
    println!(
        "\nwasm phases, µs: the lowest of 5 medians over 1000 deliveries each (a busy machine inflates single rounds);\ninstantiate = Session::start, drop = store and pool slot released:"
    );
    for d in &deliveries {
        let mut best = [f64::INFINITY; 5];
        for _ in 0..5 {
            let round = rt.block_on(wasm_phases(&plugin, &d.host, 1000));
            for (b, r) in best.iter_mut().zip(round) {
                *b = b.min(r);
            }
        }
        let [start, verify, parse, map, drop] = best;
        println!(
            "{GROUP}/{:<18} instantiate {start:6.2}  verify {verify:6.2}  parse {parse:6.2}  map (all items) {map:6.2}  drop {drop:6.2}",
            d.name
        );
    }
}
