//! What operators read: `/metrics` parsed as Prometheus parses it, with the
//! counters moved by real traffic; JSON logs, every line an object carrying
//! the span fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One sample of the exposition.
#[derive(Debug)]
struct Sample {
    metric: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// A strict reader of Prometheus' text exposition format (0.0.4): comments
/// (`# HELP`, `# TYPE` with a known type), then `name{label="value",…} value`
/// lines, label values with the `\\`, `\"` and `\n` escapes. Any other line
/// fails the test: what Prometheus could not ingest, this refuses too.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                let [_, name, kind] = words[..] else {
                    return Err(bad("a TYPE line names a metric and a type"));
                };
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(bad("unknown type"));
                }
                typed.insert(name.to_string(), kind.to_string());
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .ok_or_else(|| bad("no value"))?;
        let metric = &line[..name_end];
        if metric.is_empty() || metric.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = HashMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            loop {
                let Some(&(at, c)) = chars.peek() else {
                    return Err(bad("labels never close"));
                };
                if c == '}' {
                    rest = &after[at + 1..];
                    break;
                }
                let start = at;
                while chars
                    .peek()
                    .is_some_and(|&(_, c)| c.is_ascii_alphanumeric() || c == '_')
                {
                    chars.next();
                }
                let end = chars
                    .peek()
                    .map(|&(i, _)| i)
                    .ok_or_else(|| bad("cut label"))?;
                let label = &after[start..end];
                if label.is_empty() || chars.next().map(|(_, c)| c) != Some('=') {
                    return Err(bad("a label is name=\"value\""));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(bad("a label value is quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('"') => break,
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(bad("bad escape")),
                        },
                        Some(c) => value.push(c),
                        None => return Err(bad("unterminated label value")),
                    }
                }
                labels.insert(label.to_string(), value);
                if chars.peek().map(|&(_, c)| c) == Some(',') {
                    chars.next();
                }
            }
        }
        let mut words = rest.split_whitespace();
        let value = words.next().ok_or_else(|| bad("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("the value is not a number"))?,
        };
        if words.next().is_some_and(|t| t.parse::<i64>().is_err()) || words.next().is_some() {
            return Err(bad("after the value only a timestamp may come"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                metric
                    .strip_suffix(suffix)
                    .filter(|f| typed.contains_key(*f))
            })
            .unwrap_or(metric);
        if !typed.contains_key(family) {
            return Err(bad("a sample of a family with no TYPE line"));
        }
        samples.push(Sample {
            metric: metric.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

#[test]
fn the_exposition_reader_refuses_what_prometheus_would() {
    let good =
        "# HELP a_total A.\n# TYPE a_total counter\na_total{route=\"/x/{id}\",q=\"a\\\"b\"} 3\n";
    let samples = parse_exposition(good).unwrap();
    assert_eq!(samples[0].labels["route"], "/x/{id}");
    assert_eq!(samples[0].labels["q"], "a\"b");
    assert_eq!(samples[0].value, 3.0);
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total{route=/x} 1\n",
        "# TYPE a_total counter\na_total{route=\"x} 1\n",
        "# TYPE a_total counter\na_total one\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad}");
    }
}

/// `/metrics`, parsed.
async fn scrape(server: &Server) -> Vec<Sample> {
    let answer = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = answer.text().await.unwrap();
    parse_exposition(&text).unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

/// The value of the sample `metric` whose labels include all of `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_carry_no_tenant_event_or_raw_path() {
    let server = Server::start(
        &meta_entry("limits = { max_body_bytes = 4096 }"),
        &[("PORTICO_RETRY_POLL_MS", "100")],
    );
    server.tenant_with_page(PAGE_ID);
    let before = scrape(&server).await;
    assert_eq!(
        value(&before, "portico_plugin_info", &[("plugin", "meta")]),
        Some(1.0),
        "{:?}",
        before
    );
    let webhook = server.url("/api/integrations/meta/webhook");
    // Two leads accepted and processed; one for a page no tenant owns (its item fails).
    for id in ["71000001", "71000002"] {
        let outcome = server
            .processed(post_signed(&webhook, &lead_body(PAGE_ID, id), APP_SECRET).await)
            .await;
        assert_eq!(outcome["items"][0]["status"], "processed", "{outcome}");
    }
    let outcome = server
        .processed(post_signed(&webhook, &lead_body("4040", "71000003"), APP_SECRET).await)
        .await;
    assert_eq!(outcome["items"][0]["status"], "failed", "{outcome}");
    // A bad signature and a body over the plugin's limit.
    let refused = post_signed(&webhook, &lead_body(PAGE_ID, "71000004"), "wrong").await;
    assert_eq!(refused.status(), 401);
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(8000));
    let too_large = post_signed(&webhook, &big, APP_SECRET).await;
    assert_eq!(too_large.status(), 413);
    // The legacy alias and an unknown path.
    let alias = post_signed(
        &server.url("/api/webhooks/meta/leads"),
        &lead_body(PAGE_ID, "71000005"),
        APP_SECRET,
    )
    .await;
    assert_eq!(alias.status(), 200);
    let nowhere = reqwest::get(server.url("/no/such/path/123")).await.unwrap();
    assert_eq!(nowhere.status(), 404);

    let after = scrape(&server).await;
    let deliveries = |outcome| {
        value(
            &after,
            "portico_webhook_deliveries_total",
            &[("plugin", "meta"), ("outcome", outcome)],
        )
    };
    assert_eq!(deliveries("accepted"), Some(4.0));
    assert_eq!(deliveries("rejected_signature"), Some(1.0));
    assert_eq!(deliveries("too_large"), Some(1.0));
    let items = |status| {
        value(
            &after,
            "portico_items_total",
            &[("plugin", "meta"), ("status", status)],
        )
    };
    assert!(
        items("processed").unwrap_or(0.0) >= 3.0,
        "{:?}",
        items("processed")
    );
    assert_eq!(items("failed"), Some(1.0));
    let route = "/api/integrations/{mount}/{*route}";
    assert_eq!(
        value(
            &after,
            "portico_http_requests_total",
            &[("route", route), ("method", "POST"), ("status", "200")]
        ),
        Some(3.0)
    );
    // The alias is its own route label.
    assert_eq!(
        value(
            &after,
            "portico_http_requests_total",
            &[("route", "/api/webhooks/meta/leads"), ("status", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "portico_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &after,
            "portico_http_request_duration_seconds_count",
            &[("route", route), ("method", "POST")]
        )
        .unwrap_or(0.0)
            >= 5.0
    );
    for phase in ["verify", "parse", "map"] {
        assert!(
            value(
                &after,
                "portico_adapter_call_duration_seconds_count",
                &[("plugin", "meta"), ("phase", phase)]
            )
            .unwrap_or(0.0)
                >= 3.0,
            "{phase}"
        );
    }
    // The failed item waits in the DLQ.
    assert_eq!(
        value(&after, "portico_dlq_events", &[("status", "failed")]),
        Some(1.0)
    );
    assert!(value(&after, "portico_dlq_oldest_failed_age_seconds", &[]).is_some());
    // Low cardinality: no tenant, event id or raw path in any label.
    let mut label_names: HashMap<String, usize> = HashMap::new();
    for sample in &after {
        for (name, value) in &sample.labels {
            *label_names.entry(name.clone()).or_default() += 1;
            assert!(
                !value.contains("7100000")
                    && !value.contains("/no/such")
                    && !value.contains(PAGE_ID),
                "{} has a high-cardinality label {name}={value}",
                sample.metric
            );
        }
    }
    for forbidden in ["tenant", "tenant_id", "event_id", "path", "correlation_id"] {
        assert!(!label_names.contains_key(forbidden), "{label_names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_with_the_span_fields() {
    let server = Server::start(&meta_entry(""), &[("PORTICO_LOG_FORMAT", "json")]);
    server.tenant_with_page(PAGE_ID);
    let answer = reqwest::Client::new()
        .post(server.url("/api/integrations/meta/webhook"))
        .header("x-request-id", "req-json-1")
        .header(
            "x-hub-signature-256",
            sign(lead_body(PAGE_ID, "72000001").as_bytes(), APP_SECRET),
        )
        .body(lead_body(PAGE_ID, "72000001"))
        .send()
        .await
        .unwrap();
    let outcome = server.processed(answer).await;
    let event_id = outcome["event_id"].as_i64().unwrap();
    // And one refused, whose reason quotes what the caller sent.
    let refused = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "72000002"),
        "wrong",
    )
    .await;
    assert_eq!(refused.status(), 401);
    server
        .wait_for_log("the refusal", |l| {
            l.contains("WARN") && l.contains("refused")
        })
        .await;
    // The item's line may follow the outcome the test saw through the API.
    server
        .wait_for_log("the item's line", |l| l.contains("item processed"))
        .await;
    let lines = server.logs.lock().unwrap().clone();
    assert!(!lines.is_empty());
    let mut objects = Vec::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(value.is_object(), "{line}");
        for key in ["time", "level", "target", "message"] {
            assert!(value.get(key).is_some(), "no {key}: {line}");
        }
        objects.push(value);
    }
    // The request's lines carry its correlation id; the processing after the
    // answer carries it too, with the plugin and the event id.
    let stored = objects
        .iter()
        .find(|o| o["message"] == "delivery stored")
        .expect("a 'delivery stored' line");
    assert_eq!(stored["correlation_id"], "req-json-1", "{stored}");
    assert_eq!(stored["plugin"], "meta", "{stored}");
    assert_eq!(stored["event_id"], event_id, "{stored}");
    let processed = objects
        .iter()
        .find(|o| o["message"] == "item processed")
        .expect("an 'item processed' line");
    assert_eq!(processed["correlation_id"], "req-json-1", "{processed}");
    assert_eq!(processed["plugin"], "meta", "{processed}");
    assert!(processed["event_id"].is_i64(), "{processed}");
    assert!(
        objects.iter().any(
            |o| o["level"] == "WARN" && o["message"].as_str().unwrap_or("").contains("refused")
        ),
        "the refusal is logged"
    );
}

#[test]
fn a_bad_log_format_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = base_command(
        dir.path(),
        &format!("sqlite://{}", dir.path().join("p.db").display()),
        &[("PORTICO_LOG_FORMAT".to_string(), "yaml".to_string())],
    )
    .arg("migrate")
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PORTICO_LOG_FORMAT") && err.contains("json"),
        "{err}"
    );
}

/// One export a receiver got: its content type and body.
type Export = (String, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_receiver_and_continue_the_callers_trace() {
    // A local OTLP/HTTP receiver: keeps what it is sent.
    let received: Arc<Mutex<Vec<Export>>> = Arc::default();
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    sink.lock().unwrap().push((kind, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let endpoint = serve_fake(receiver).await;
    let server = Server::start(
        &meta_entry(""),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    server.tenant_with_page(PAGE_ID);
    // The caller's trace, as a W3C traceparent.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = lead_body(PAGE_ID, "73000001");
    let answer = reqwest::Client::new()
        .post(server.url("/api/integrations/meta/webhook"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-hub-signature-256", sign(body.as_bytes(), APP_SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    server.processed(answer).await;
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let wanted: [&[u8]; 6] = [
        b"adapter.verify",
        b"adapter.parse",
        b"adapter.map",
        b"store.write",
        b"portico",
        &trace_bytes,
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let all: Vec<u8> = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|w| !contains(&all, w))
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans not received in 20 s; missing {missing:?} in {} exports",
            received.lock().unwrap().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kinds: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        kinds.iter().all(|k| k == "application/x-protobuf"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_host_route_and_the_loaded_mounts() {
    let server = Server::start(&meta_entry(""), &[]);
    let doc: serde_json::Value = reqwest::get(server.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/health",
        "/api/health/ready",
        "/metrics",
        "/api/openapi.json",
        "/api/admin/dlq",
        "/api/admin/dlq/replay",
        "/api/admin/dlq/{id}/replay",
        "/api/admin/deliveries/{id}",
        "/api/admin/tenants",
        "/api/admin/lead-sources",
        "/api/integrations/{mount}/{route}",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    let mount = doc["paths"]["/api/integrations/{mount}/{route}"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mount")
        .unwrap()
        .clone();
    assert_eq!(
        mount["schema"]["enum"],
        serde_json::json!(["meta"]),
        "{mount}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
