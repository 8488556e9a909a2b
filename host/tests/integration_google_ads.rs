//! Google Ads offline conversions: validated idempotent intake, the logged stub,
//! and the uploader's Google Ads API path (v26) against a fake Google Ads API
//! on 127.0.0.1. The Data Manager path and OAuth: integration_google_uploads.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::*;
use serde_json::{Value, json};
use sqlx::Row;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

both_backends!(
    [flavor = "multi_thread", worker_threads = 2]
    intake_validates_every_field_and_is_idempotent,
    a_batch_uploads_and_one_bad_row_fails_alone,
    a_429_is_retried_after_retry_after,
    a_401_stops_the_uploader_with_the_reason_in_health,
    the_seed_body_is_enough_with_uploads_off_and_a_refused_one_is_refused_again,
);

#[derive(Default)]
struct FakeGoogle {
    /// Statuses to answer first, one per request (e.g. a 429), then normal answers.
    queue: Vec<u16>,
    /// Answer 401 to everything.
    unauthorized: bool,
    requests: Vec<(HeaderMap, Value)>,
}

async fn fake_google() -> (String, Arc<Mutex<FakeGoogle>>) {
    let state = Arc::new(Mutex::new(FakeGoogle::default()));
    async fn upload(
        axum::extract::State(state): axum::extract::State<Arc<Mutex<FakeGoogle>>>,
        axum::extract::Path(target): axum::extract::Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        assert!(target.ends_with(":uploadClickConversions"), "{target}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let mut s = state.lock().unwrap();
        s.requests.push((headers, body.clone()));
        if s.unauthorized {
            let e = json!({"error": {"code": 401, "message": "Request is missing required authentication credential.", "status": "UNAUTHENTICATED"}});
            return (StatusCode::UNAUTHORIZED, axum::Json(e)).into_response();
        }
        if !s.queue.is_empty() {
            let status = s.queue.remove(0);
            let e = "{\"error\":{\"code\":429,\"message\":\"Too many requests\",\"status\":\"RESOURCE_EXHAUSTED\"}}";
            return (
                StatusCode::from_u16(status).unwrap(),
                [("retry-after", "1")],
                e,
            )
                .into_response();
        }
        let mut errors = Vec::new();
        let mut results = Vec::new();
        for (i, c) in body["conversions"].as_array().unwrap().iter().enumerate() {
            if c["gclid"].as_str().is_some_and(|g| g.starts_with("bad")) {
                errors.push(json!({"errorCode": {"conversionUploadError": "UNPARSEABLE_GCLID"}, "message": "The imported gclid could not be decoded.", "location": {"fieldPathElements": [{"fieldName": "conversions", "index": i}]}}));
                results.push(json!({}));
            } else {
                results.push(json!({"gclid": c["gclid"], "conversionAction": c["conversionAction"], "conversionDateTime": c["conversionDateTime"]}));
            }
        }
        let mut answer = json!({"results": results, "jobId": "2147483998"});
        if !errors.is_empty() {
            answer["partialFailureError"] = json!({"code": 3, "message": "partial failure", "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure", "errors": errors, "requestId": "r1"}]});
        }
        axum::Json(answer).into_response()
    }
    let app = axum::Router::new()
        .route("/v26/customers/{target}", axum::routing::post(upload))
        .with_state(state.clone());
    (serve_fake(app).await, state)
}

/// The CRM's bearer token for the intake route.
const INTAKE: &str = "crm-intake-token";

fn google_entry() -> String {
    format!(
        r#"
[plugins.google-ads]
path = "{}"
mount = "google"
allowed_hosts = [{{ env = "GOOGLE_ADS_API_BASE_URL", default = "https://googleads.googleapis.com" }}]
[plugins.google-ads.config]
upload_enabled = {{ env = "GOOGLE_ADS_OFFLINE_ENABLED", default = false }}
upload_api = "ads-api"
api_base_url = {{ env = "GOOGLE_ADS_API_BASE_URL", default = "https://googleads.googleapis.com" }}
api_version = {{ env = "GOOGLE_ADS_API_VERSION", default = "26" }}
customer_id = {{ env = "GOOGLE_ADS_CUSTOMER_ID" }}
login_customer_id = {{ env = "GOOGLE_ADS_LOGIN_CUSTOMER_ID" }}
conversion_action = {{ env = "GOOGLE_ADS_CONVERSION_ACTION" }}
[plugins.google-ads.secrets]
developer_token = {{ env = "GOOGLE_ADS_DEVELOPER_TOKEN" }}
access_token = {{ env = "GOOGLE_ADS_ACCESS_TOKEN" }}
"#,
        plugin_wasm("portico-google-ads").display()
    )
}

fn env_for<'a>(base: &'a str, enabled: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GOOGLE_ADS_OFFLINE_ENABLED", enabled),
        ("GOOGLE_ADS_API_BASE_URL", base),
        ("GOOGLE_ADS_CUSTOMER_ID", "123-456-7890"),
        ("GOOGLE_ADS_LOGIN_CUSTOMER_ID", "9876543210"),
        ("GOOGLE_ADS_CONVERSION_ACTION", "987654321"),
        ("GOOGLE_ADS_DEVELOPER_TOKEN", "dev-token"),
        ("GOOGLE_ADS_ACCESS_TOKEN", "ya29.token"),
        ("PORTICO_OUTBOX_POLL_MS", "100"),
        ("PORTICO_INTAKE_TOKEN", INTAKE),
    ]
}

async fn post(server: &Server, body: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.url("/api/integrations/google/offline-conversion"))
        .bearer_auth(INTAKE)
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn intake_validates_every_field_and_is_idempotent() {
    let (base, _fake) = fake_google().await;
    let server = Server::start(&google_entry(), &env_for(&base, "false"));

    let (status, json) = post(&server, r#"{"gclid":"a","wbraid":"b","timestamp":"2026-13-01T00:00:00Z","value":-3,"currency":"usd"}"#, None).await;
    assert_eq!(status, 400);
    assert_eq!(json["error"], "invalid_request");
    for field in ["wbraid", "timestamp", "value", "currency"] {
        assert!(json["fields"][field].is_string(), "{field}: {json}");
    }
    let (status, json) = post(&server, "{not json", None).await;
    assert_eq!(status, 400);
    assert!(
        json["fields"]["body"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    let (status, json) = post(
        &server,
        r#"{"gclid":"a","timestamp":1758381128,"value":1,"currency":"EUR","tenant_id":999}"#,
        None,
    )
    .await;
    assert_eq!(status, 400, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("tenant 999 does not exist"),
        "{json}"
    );

    let good = r#"{"gclid":"Cj0KCQjw","timestamp":"2026-09-20T14:32:05-03:00","value":1500.0,"currency":"BRL","order_id":"crm-1"}"#;
    let (s1, first) = post(&server, good, None).await;
    let (s2, second) = post(&server, good, None).await;
    assert_eq!((s1, s2), (200, 200), "{first} {second}");
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["status"], "logged", "uploads are off by default");
    let (_, keyed1) = post(
        &server,
        r#"{"gbraid":"G1","timestamp":1758381128,"value":2,"currency":"USD"}"#,
        Some("k-1"),
    )
    .await;
    let (_, keyed2) = post(
        &server,
        r#"{"gbraid":"G2","timestamp":1758381999,"value":3,"currency":"USD"}"#,
        Some("k-1"),
    )
    .await;
    assert_eq!(
        keyed1["id"], keyed2["id"],
        "the Idempotency-Key names the conversion"
    );

    let db = server.db().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM conversion_uploads").await,
        2
    );
    let row = db.query("SELECT conversion_time, conversion_action, status FROM conversion_uploads WHERE order_id = 'crm-1'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        row.get::<String, _>("conversion_time"),
        "2026-09-20 14:32:05-03:00"
    );
    assert_eq!(
        row.get::<String, _>("conversion_action"),
        "customers/1234567890/conversionActions/987654321"
    );
    assert_eq!(row.get::<String, _>("status"), "logged");
    server
        .wait_for_log("the logged-only line", |l| {
            l.contains("not uploaded (GOOGLE_ADS_OFFLINE_ENABLED=false)")
        })
        .await;
    let health: Value = reqwest::get(server.url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["integrations"]["googleAds"], false);
}

async fn wait_until_no_pending(server: &Server, within: Duration) {
    let db = server.db().await;
    let deadline = Instant::now() + within;
    while count(
        &db,
        "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'pending'",
    )
    .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "still pending:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_batch_uploads_and_one_bad_row_fails_alone() {
    let (base, fake) = fake_google().await;
    let server = Server::start(&google_entry(), &env_for(&base, "true"));
    for (i, gclid) in ["good-1", "bad-gclid", "good-2"].iter().enumerate() {
        let body = format!(
            r#"{{"gclid":"{gclid}","timestamp":"2026-09-20T14:3{i}:05-03:00","value":10,"currency":"BRL"}}"#
        );
        let (status, json) = post(&server, &body, None).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["status"], "pending");
    }
    wait_until_no_pending(&server, Duration::from_secs(15)).await;
    let db = server.db().await;
    let rows: Vec<(String, String, Option<String>)> = db
        .query_as("SELECT click_id, status, error FROM conversion_uploads ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows[0].1, "uploaded");
    assert_eq!(rows[2].1, "uploaded");
    assert_eq!(rows[1].1, "failed");
    assert!(
        rows[1]
            .2
            .as_deref()
            .unwrap()
            .starts_with("UNPARSEABLE_GCLID: The imported gclid could not be decoded.")
    );

    let fake = fake.lock().unwrap();
    let (headers, body) = fake.requests.last().unwrap();
    assert_eq!(headers["developer-token"], "dev-token");
    assert_eq!(headers["login-customer-id"], "9876543210");
    assert_eq!(headers["authorization"], "Bearer ya29.token");
    assert_eq!(body["partialFailure"], true);
    assert_eq!(
        body["conversions"][0]["conversionAction"],
        "customers/1234567890/conversionActions/987654321"
    );
    let total: usize = fake
        .requests
        .iter()
        .map(|(_, b)| b["conversions"].as_array().unwrap().len())
        .sum();
    assert_eq!(total, 3, "each row sent once");
}

async fn a_429_is_retried_after_retry_after() {
    let (base, fake) = fake_google().await;
    fake.lock().unwrap().queue = vec![429];
    let server = Server::start(&google_entry(), &env_for(&base, "true"));
    let (status, _) = post(
        &server,
        r#"{"gclid":"g","timestamp":1758381128,"value":1,"currency":"USD"}"#,
        None,
    )
    .await;
    assert_eq!(status, 200);
    wait_until_no_pending(&server, Duration::from_secs(15)).await;
    let db = server.db().await;
    let (status, attempts): (String, i64) = db
        .query_as("SELECT status, attempts FROM conversion_uploads")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("uploaded", 2));
    assert_eq!(fake.lock().unwrap().requests.len(), 2);
}

async fn a_401_stops_the_uploader_with_the_reason_in_health() {
    let (base, fake) = fake_google().await;
    fake.lock().unwrap().unauthorized = true;
    let server = Server::start(&google_entry(), &env_for(&base, "true"));
    for i in 0..3 {
        post(
            &server,
            &format!(r#"{{"gclid":"g{i}","timestamp":1758381128,"value":1,"currency":"USD"}}"#),
            None,
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let health = loop {
        let health: Value = reqwest::get(server.url("/api/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["outbox"]["kinds"][0]["stopped"].is_string() {
            break health;
        }
        assert!(Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["outbox"]["kinds"][0]["plugin"], "google-ads");
    assert_eq!(health["outbox"]["kinds"][0]["kind"], "conversion");
    assert!(
        health["outbox"]["kinds"][0]["stopped"]
            .as_str()
            .unwrap()
            .contains("UNAUTHENTICATED"),
        "{health}"
    );
    assert_eq!(health["integrations"]["googleAds"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health: Value = reqwest::get(server.url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["outbox"]["kinds"][0]["pending"], 3,
        "rows are kept, not burned: {health}"
    );
    assert!(
        fake.lock().unwrap().requests.len() <= 2,
        "a stopped uploader does not hammer the API"
    );
}

async fn the_seed_body_is_enough_with_uploads_off_and_a_refused_one_is_refused_again() {
    let server = Server::start(&google_entry(), &[("PORTICO_INTAKE_TOKEN", INTAKE)]);
    // The seed's stub: a click id, a time, a value, a currency; nothing else set.
    for body in [
        r#"{"gclid":"Cj0KCQ-seed","timestamp":"2026-05-01T12:00:00Z","value":99.5,"currency":"BRL"}"#,
        r#"{"wbraid":"wb-seed","timestamp":1758381128,"value":0,"currency":"USD"}"#,
    ] {
        let (status, json) = post(&server, body, None).await;
        assert_eq!(status, 200, "{body}: {json}");
        assert_eq!(json["status"], "logged", "{json}");
        assert!(json["id"].as_i64().unwrap() > 0);
    }
    let db = server.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'logged' AND conversion_action IS NULL"
        )
        .await,
        2
    );
    // A conversion refused for good is refused again, the same way, when sent again.
    let refused =
        r#"{"gclid":"r","timestamp":1758381128,"value":1,"currency":"EUR","tenant_id":999}"#;
    for _ in 0..3 {
        let (status, json) = post(&server, refused, None).await;
        assert_eq!(status, 400, "{json}");
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .contains("tenant 999 does not exist"),
            "{json}"
        );
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM outbox").await, 0);
}
