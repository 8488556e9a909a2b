//! Google uploads as they work in late 2026: the Data Manager API path
//! (`events:ingest` and `requestStatus:retrieve`), access tokens minted from
//! refresh tokens, each tenant's own Google Ads account, and the Google Ads
//! API path's allow-list stop, against fake Google servers on 127.0.0.1
//! (token endpoint, Data Manager API, Google Ads API).
//!
//! Every Data Manager request body the adapter sent is read with Google's own
//! published message definitions: the `google.ads.datamanager_v1` types of the
//! PyPI package google-ads-datamanager 0.9.4 (proto-plus `from_json`, which
//! refuses unknown fields and malformed values). The test installs it into a
//! virtualenv under the target directory the first time (python3 and PyPI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const INTAKE: &str = "crm-intake-token";
const CLIENT_ID: &str = "portico-test.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "client-secret-xyz";
const HOST_REFRESH: &str = "1//host-refresh-token";

/// The fake Google: what it issued, what it was sent.
#[derive(Default)]
struct Google {
    /// Seconds each minted access token lives (`expires_in`).
    token_life: u64,
    /// (access token, minted at, the refresh token it came from).
    issued: Vec<(String, Instant, String)>,
    /// Tokens minted before this index are revoked: the APIs answer 401.
    revoked_before: usize,
    /// 401s the APIs answered.
    unauthorized: usize,
    /// (refresh token of the bearer, body) per accepted `events:ingest`.
    ingests: Vec<(String, Value)>,
    /// Every `events:ingest` body, accepted or refused.
    ingest_bodies: Vec<Value>,
    /// Status answers by request id.
    statuses: HashMap<String, Value>,
    status_reads: usize,
    /// (customer, refresh token of the bearer, HTTP status answered) per Ads API call.
    ads_calls: Vec<(String, String, u16)>,
}

type Fake = Arc<Mutex<Google>>;

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            let bytes = v.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        })
    })
}

/// The refresh token behind a live bearer token (None: answer [`unauthorized`]).
fn bearer(g: &mut Google, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let at = g.issued.iter().position(|(t, _, _)| *t == token);
    match at {
        Some(at)
            if at >= g.revoked_before
                && g.issued[at].1.elapsed() < Duration::from_secs(g.token_life) =>
        {
            Some(g.issued[at].2.clone())
        }
        _ => {
            g.unauthorized += 1;
            None
        }
    }
}

fn unauthorized() -> axum::response::Response {
    let e = json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token."}});
    (StatusCode::UNAUTHORIZED, axum::Json(e)).into_response()
}

async fn token(State(fake): State<Fake>, body: String) -> axum::response::Response {
    let mut g = fake.lock().unwrap();
    let field = |n: &str| form_field(&body, n).unwrap_or_default();
    if field("grant_type") != "refresh_token"
        || field("client_id") != CLIENT_ID
        || field("client_secret") != CLIENT_SECRET
    {
        let e = json!({"error": "invalid_client", "error_description": "The OAuth client was not found."});
        return (StatusCode::UNAUTHORIZED, axum::Json(e)).into_response();
    }
    let refresh = field("refresh_token");
    if refresh.contains("revoked") {
        let e = json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."});
        return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response();
    }
    let access = format!("ya29.fake-{}", g.issued.len());
    g.issued.push((access.clone(), Instant::now(), refresh));
    axum::Json(json!({"access_token": access, "expires_in": g.token_life,
        "scope": "https://www.googleapis.com/auth/datamanager", "token_type": "Bearer"}))
    .into_response()
}

fn bad_request(reason: &str, message: &str, violations: Vec<Value>) -> axum::response::Response {
    let mut details = vec![json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason, "domain": "datamanager.googleapis.com"})];
    if !violations.is_empty() {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": violations}));
    }
    let e = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message, "details": details}});
    (StatusCode::BAD_REQUEST, axum::Json(e)).into_response()
}

/// `events:ingest`: customer 444 is refused whole; action 666 and gclids
/// `bad-…` are refused by field; gclids `old-…` fail later, in the status.
async fn ingest(
    State(fake): State<Fake>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let mut g = fake.lock().unwrap();
    let Some(refresh) = bearer(&mut g, &headers) else {
        return unauthorized();
    };
    let body: Value = serde_json::from_str(&body).unwrap();
    g.ingest_bodies.push(body.clone());
    let destinations = body["destinations"].as_array().unwrap().clone();
    let events = body["events"].as_array().unwrap().clone();
    if destinations[0]["operatingAccount"]["accountId"] == "444" {
        return bad_request(
            "INVALID_EVENT",
            "Request contains an invalid argument.",
            vec![],
        );
    }
    let mut violations = Vec::new();
    for (d, dest) in destinations.iter().enumerate() {
        if dest["productDestinationId"] == "666" {
            violations.push(json!({"field": format!("destinations[{d}].product_destination_id"),
                "description": "The conversion action does not exist.", "reason": "INVALID_CONVERSION_ACTION_ID"}));
        }
    }
    for (i, e) in events.iter().enumerate() {
        if e["adIdentifiers"]["gclid"]
            .as_str()
            .unwrap_or("")
            .starts_with("bad-")
        {
            violations.push(json!({"field": format!("events[{i}].ad_identifiers.gclid"),
                "description": "The GCLID is not valid.", "reason": "INVALID_FORMAT"}));
        }
    }
    if !violations.is_empty() {
        return bad_request(
            "INVALID_FORMAT",
            "Request contains an invalid argument.",
            violations,
        );
    }
    let request_id = format!("req-{}", g.ingests.len() + 1);
    let per_destination: Vec<Value> = destinations
        .iter()
        .map(|d| {
            let reference = d["reference"].as_str().unwrap();
            let mine: Vec<&Value> = events
                .iter()
                .filter(|e| e["destinationReferences"][0] == reference)
                .collect();
            let old = mine
                .iter()
                .filter(|e| {
                    e["adIdentifiers"]["gclid"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("old-")
                })
                .count();
            let status = match old {
                0 => "SUCCESS",
                n if n == mine.len() => "FAILED",
                _ => "PARTIAL_SUCCESS",
            };
            let mut entry = json!({"destination": d, "requestStatus": status,
                "eventsIngestionStatus": {"recordCount": mine.len().to_string()}});
            if old > 0 {
                entry["errorInfo"] = json!({"errorCounts": [{"recordCount": old.to_string(),
                    "reason": "PROCESSING_ERROR_REASON_EVENT_TOO_OLD"}]});
            }
            entry
        })
        .collect();
    g.statuses.insert(
        request_id.clone(),
        json!({"requestStatusPerDestination": per_destination}),
    );
    g.ingests.push((refresh, body));
    axum::Json(json!({"requestId": request_id})).into_response()
}

async fn status(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let mut g = fake.lock().unwrap();
    if bearer(&mut g, &headers).is_none() {
        return unauthorized();
    }
    g.status_reads += 1;
    match g
        .statuses
        .get(q.get("requestId").map(String::as_str).unwrap_or(""))
    {
        Some(s) => axum::Json(s.clone()).into_response(),
        None => bad_request("INVALID_REQUEST_ID", "No such request.", vec![]),
    }
}

/// The Google Ads API: customer 333's project is not on the allow-list.
async fn ads_upload(
    State(fake): State<Fake>,
    axum::extract::Path(target): axum::extract::Path<String>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let mut g = fake.lock().unwrap();
    let Some(refresh) = bearer(&mut g, &headers) else {
        return unauthorized();
    };
    let customer = target
        .trim_end_matches(":uploadClickConversions")
        .to_string();
    let refused = customer == "333";
    g.ads_calls
        .push((customer, refresh, if refused { 403 } else { 200 }));
    if refused {
        let e = json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "The caller does not have permission",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"notAllowlistedError": "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"},
                    "message": "Customer is not allowlisted for accessing this feature."}]}]}});
        return (StatusCode::FORBIDDEN, axum::Json(e)).into_response();
    }
    let body: Value = serde_json::from_str(&body).unwrap();
    let results: Vec<Value> = body["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!({"gclid": c["gclid"]}))
        .collect();
    axum::Json(json!({"results": results})).into_response()
}

async fn fake_google(token_life: u64) -> (String, Fake) {
    let fake: Fake = Arc::new(Mutex::new(Google {
        token_life,
        ..Google::default()
    }));
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route("/v1/events:ingest", axum::routing::post(ingest))
        .route("/v1/requestStatus:retrieve", axum::routing::get(status))
        .route("/v26/customers/{target}", axum::routing::post(ads_upload))
        .with_state(fake.clone());
    (serve_fake(app).await, fake)
}

/// The repository's own plugins.toml entry for the adapter, pointed at the fake.
fn google_toml(base: &str, upload_api: &str) -> String {
    format!(
        r#"
[plugins.google-ads]
path = "{}"
mount = "google"
allowed_hosts = ["{base}"]
[plugins.google-ads.config]
upload_enabled = true
upload_api = "{upload_api}"
data_manager_base_url = "{base}"
api_base_url = "{base}"
token_url = "{base}/token"
client_id = "{CLIENT_ID}"
conversion_action = "9"
[plugins.google-ads.secrets]
client_secret = "{CLIENT_SECRET}"
refresh_token = {{ env = "GOOGLE_ADS_REFRESH_TOKEN" }}
"#,
        plugin_wasm("portico-google-ads").display()
    )
}

fn start(base: &str, upload_api: &str, refresh: &str) -> Server {
    start_polling(base, upload_api, refresh, "100")
}

/// With the outbox worker polling every `poll_ms`.
fn start_polling(base: &str, upload_api: &str, refresh: &str, poll_ms: &str) -> Server {
    Server::start(
        &google_toml(base, upload_api),
        &[
            ("PORTICO_SECRET_KEY", KEY),
            ("PORTICO_INTAKE_TOKEN", INTAKE),
            ("PORTICO_OUTBOX_POLL_MS", poll_ms),
            ("GOOGLE_ADS_REFRESH_TOKEN", refresh),
        ],
    )
}

/// A tenant with a `google` source for `customer`, with extra `source add` arguments.
fn tenant_with_google(server: &Server, name: &str, customer: &str, extra: &[&str]) -> i64 {
    let id: i64 = server.cli(&["tenant", "add", name]).trim().parse().unwrap();
    let tenant = id.to_string();
    let mut args = vec![
        "source", "add", "--tenant", &tenant, "--kind", "google", "--key", customer,
    ];
    args.extend_from_slice(extra);
    server.cli(&args);
    id
}

async fn convert(server: &Server, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/google/offline-conversion"))
        .bearer_auth(INTAKE)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn conversion(gclid: &str, tenant: Option<i64>) -> Value {
    let mut c = json!({"gclid": gclid, "timestamp": "2026-11-20T10:00:00-03:00", "value": 15.5, "currency": "BRL"});
    if let Some(t) = tenant {
        c["tenant_id"] = json!(t);
    }
    c
}

/// Wait until no conversion is pending; the rows by status.
async fn settled(server: &Server) -> HashMap<String, (String, Option<String>)> {
    let db = server.db().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = count(
            &db,
            "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'pending'",
        )
        .await;
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} still pending:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = sqlx::query_as::<_, (String, String, Option<String>)>(
        "SELECT click_id, status, error FROM conversion_uploads",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter().map(|(c, s, e)| (c, (s, e))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_s_conversions_reach_its_own_customer_through_the_data_manager() {
    let (base, fake) = fake_google(3600).await;
    let server = start(&base, "data-manager", HOST_REFRESH);
    // Tenant A has its own refresh token and a manager account; B uses the host's.
    let a = tenant_with_google(
        &server,
        "A",
        "111-111-1111",
        &[
            "--secret",
            "refresh_token=1//refresh-of-a",
            "--setting",
            "conversion_action=11",
            "--setting",
            "login_customer_id=999-999-9999",
        ],
    );
    // While A is the only tenant with a Google account, a conversion need not name it.
    let (status, answer) = convert(&server, conversion("implied-1", None)).await;
    assert_eq!(status, 200, "{answer}");
    let b = tenant_with_google(
        &server,
        "B",
        "2222222222",
        &["--setting", "conversion_action=22"],
    );
    // Now there are two: the caller must say which.
    let (status, answer) = convert(&server, conversion("ambiguous", None)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("tenant_id"), "{answer}");

    // C has a static access token of its own: it wins over the host's refresh token.
    fake.lock().unwrap().issued.push((
        "static-of-c".into(),
        Instant::now(),
        "(C's own access token)".into(),
    ));
    let c = tenant_with_google(
        &server,
        "C",
        "3333333333",
        &[
            "--secret",
            "access_token=static-of-c",
            "--setting",
            "conversion_action=33",
        ],
    );
    let (status, answer) = convert(&server, conversion("c-1", Some(c))).await;
    assert_eq!(status, 200, "{answer}");
    let mut with_order = conversion("a-2", Some(a));
    with_order["order_id"] = json!("crm-lead-000123");
    for body in [
        with_order,
        conversion("b-1", Some(b)),
        conversion("b-2", Some(b)),
    ] {
        let (status, answer) = convert(&server, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let rows = settled(&server).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.values().all(|(s, _)| s == "uploaded"), "{rows:?}");
    let db = server.db().await;
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM conversion_uploads WHERE click_id = 'implied-1' AND tenant_id = {a}")).await,
        1,
        "the only Google tenant's"
    );

    let g = fake.lock().unwrap();
    let mut customers = HashMap::new();
    for (refresh, body) in &g.ingests {
        let dest = &body["destinations"][0];
        let customer = dest["operatingAccount"]["accountId"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(body["destinations"].as_array().unwrap().len(), 1, "{body}");
        match customer.as_str() {
            "1111111111" => {
                assert_eq!(refresh, "1//refresh-of-a", "A's own token");
                assert_eq!(dest["productDestinationId"], "11");
                assert_eq!(
                    dest["loginAccount"],
                    json!({"accountType": "GOOGLE_ADS", "accountId": "9999999999"})
                );
            }
            "3333333333" => {
                assert_eq!(refresh, "(C's own access token)");
                assert_eq!(dest["productDestinationId"], "33");
            }
            "2222222222" => {
                assert_eq!(refresh, HOST_REFRESH, "B has none of its own: the host's");
                assert_eq!(dest["productDestinationId"], "22");
                assert!(dest.get("loginAccount").is_none());
            }
            other => panic!("a request for customer {other}: {body}"),
        }
        for e in body["events"].as_array().unwrap() {
            assert_eq!(e["eventTimestamp"], "2026-11-20T10:00:00-03:00");
            assert_eq!(e["eventSource"], "WEB");
            let gclid = e["adIdentifiers"]["gclid"].as_str().unwrap().to_string();
            customers.insert(gclid, (customer.clone(), e["transactionId"].clone()));
        }
    }
    assert_eq!(customers["implied-1"].0, "1111111111");
    assert_eq!(
        customers["a-2"],
        ("1111111111".to_string(), json!("crm-lead-000123"))
    );
    assert_eq!(customers["b-1"].0, "2222222222");
    assert_eq!(customers["b-2"].0, "2222222222");
    // Without an order id: from the idempotency key (a digest of it when long), one per conversion.
    let (t1, t2) = (
        customers["b-1"].1.as_str().unwrap(),
        customers["b-2"].1.as_str().unwrap(),
    );
    assert!(t1 != t2 && !t1.is_empty() && t1.len() <= 64, "{t1} {t2}");
    assert!(
        g.status_reads >= g.ingests.len(),
        "each request's status was read"
    );
    let bodies = g.ingest_bodies.clone();
    drop(g);
    google_library_reads("IngestEventsRequest", &bodies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_run_is_renewed_and_no_row_fails() {
    // Tokens live 10 s; a short-lived one is kept for half its life (5 s).
    let (base, fake) = fake_google(10).await;
    let server = start(&base, "data-manager", HOST_REFRESH);
    tenant_with_google(&server, "A", "1234567890", &[]);
    async fn wave(server: &Server, n: usize) {
        for i in 0..2 {
            let (status, answer) = convert(server, conversion(&format!("w{n}-{i}"), None)).await;
            assert_eq!(status, 200, "{answer}");
        }
        let rows = settled(server).await;
        assert!(
            rows.values().all(|(s, _)| s == "uploaded"),
            "wave {n}: {rows:?}"
        );
    }
    wave(&server, 0).await;
    assert_eq!(fake.lock().unwrap().issued.len(), 1);
    // Past the time it is kept, before it expires: renewed before Google refuses it.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    wave(&server, 1).await;
    {
        let g = fake.lock().unwrap();
        assert_eq!(g.issued.len(), 2, "a new token before the old one expired");
        assert_eq!(g.unauthorized, 0, "no call was made with an expired token");
    }
    // Google revokes the kept token early: one 401, a new token, and on.
    {
        let mut g = fake.lock().unwrap();
        g.revoked_before = g.issued.len();
    }
    wave(&server, 2).await;
    let g = fake.lock().unwrap();
    assert_eq!(g.issued.len(), 3);
    assert_eq!(g.unauthorized, 1, "only the revoked token met a 401, once");
    let events: usize = g
        .ingests
        .iter()
        .map(|(_, b)| b["events"].as_array().unwrap().len())
        .sum();
    assert_eq!(events, 6, "every conversion sent once");
    // No token, refresh token or client secret reaches the log.
    let log = server.log_text();
    for secret in ["ya29.fake", HOST_REFRESH, CLIENT_SECRET] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
    assert!(
        log.contains("minting a new one"),
        "the renewal after the 401 is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_and_partial_failures_end_the_right_rows() {
    let (base, fake) = fake_google(3600).await;
    // The worker idles while the conversions come in, so they go up as one batch.
    let mut server = start_polling(&base, "data-manager", HOST_REFRESH, "600000");
    let a = tenant_with_google(
        &server,
        "A",
        "1111111111",
        &["--setting", "conversion_action=11"],
    );
    let z = tenant_with_google(&server, "Z", "444", &["--setting", "conversion_action=44"]);
    let mut bodies = vec![
        conversion("good-1", Some(a)),
        // Refused by field at ingest: ends alone; the rest are sent again at once.
        conversion("bad-2", Some(a)),
        conversion("good-3", Some(a)),
        // Failed in processing (the request's status), by destination.
        conversion("old-4", Some(a)),
        conversion("old-5", Some(a)),
        // A conversion action Google does not know: its destination's rows only.
        conversion("unknown-action-6", Some(a)),
        // Customer 444's request is refused whole.
        conversion("z-1", Some(z)),
        conversion("z-2", Some(z)),
        // One of two events of a destination failed in processing: Google
        // does not say which, so both are uploaded and the operator warned.
        conversion("old-9", Some(a)),
        conversion("good-10", Some(a)),
    ];
    for (i, action) in [(3, "12"), (4, "12"), (5, "666"), (8, "13"), (9, "13")] {
        bodies[i]["conversion_action"] =
            json!(format!("customers/1111111111/conversionActions/{action}"));
    }
    for body in bodies {
        let (status, answer) = convert(&server, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert!(
        fake.lock().unwrap().ingest_bodies.is_empty(),
        "nothing sent yet"
    );
    server.restart_with(&[("PORTICO_OUTBOX_POLL_MS", "100")]);
    let rows = settled(&server).await;
    let status_of = |c: &str| rows[c].0.as_str();
    let error_of = |c: &str| rows[c].1.clone().unwrap_or_default();
    for good in ["good-1", "good-3"] {
        assert_eq!(status_of(good), "uploaded", "{rows:?}");
    }
    assert_eq!(status_of("bad-2"), "failed");
    assert!(
        error_of("bad-2").contains("ad_identifiers.gclid"),
        "{}",
        error_of("bad-2")
    );
    for old in ["old-4", "old-5"] {
        assert_eq!(status_of(old), "failed", "{rows:?}");
        assert!(error_of(old).contains("EVENT_TOO_OLD"), "{}", error_of(old));
    }
    assert_eq!(status_of("unknown-action-6"), "failed");
    assert!(error_of("unknown-action-6").contains("product_destination_id"));
    for z in ["z-1", "z-2"] {
        assert_eq!(status_of(z), "failed", "{rows:?}");
        assert!(error_of(z).contains("INVALID_EVENT"), "{}", error_of(z));
    }
    for partly in ["old-9", "good-10"] {
        assert_eq!(status_of(partly), "uploaded", "{rows:?}");
    }
    assert!(
        server.log_text().contains("Google recorded 1 of 2 events"),
        "the partial processing is reported:\n{}",
        server.log_text()
    );
    let g = fake.lock().unwrap();
    // Customer 1111111111's first request was refused naming bad-2 and the
    // 666 destination; the same request went again at once without them.
    let gclids = |b: &Value| -> Vec<String> {
        b["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["adIdentifiers"]["gclid"].as_str().unwrap().to_string())
            .collect()
    };
    let for_a: Vec<&Value> = g
        .ingest_bodies
        .iter()
        .filter(|b| b["destinations"][0]["operatingAccount"]["accountId"] == "1111111111")
        .collect();
    assert_eq!(
        for_a.len(),
        2,
        "one refused request and its resend: {for_a:#?}"
    );
    let (first, second) = (gclids(for_a[0]), gclids(for_a[1]));
    assert!(first.contains(&"bad-2".to_string()) && first.contains(&"good-3".to_string()));
    assert!(!second.contains(&"bad-2".to_string()) && second.contains(&"good-3".to_string()));
    assert!(
        for_a[1]["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["productDestinationId"] != "666"),
        "the refused destination is left out"
    );
    let sent: Vec<String> = g
        .ingests
        .iter()
        .flat_map(|(_, b)| b["events"].as_array().unwrap().clone())
        .map(|e| e["adIdentifiers"]["gclid"].as_str().unwrap().to_string())
        .collect();
    for good in ["good-1", "good-3"] {
        assert_eq!(
            sent.iter().filter(|s| *s == good).count(),
            1,
            "{good} taken once: {sent:?}"
        );
    }
    let bodies = g.ingest_bodies.clone();
    let statuses: Vec<Value> = g.statuses.values().cloned().collect();
    drop(g);
    google_library_reads("IngestEventsRequest", &bodies);
    // The fake's own answers are Google's shape too.
    google_library_reads("RetrieveRequestStatusResponse", &statuses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ads_api_stops_on_the_allow_list_with_the_fix_and_the_data_manager_takes_over() {
    let (base, fake) = fake_google(3600).await;
    let server = start(&base, "ads-api", HOST_REFRESH);
    let t = tenant_with_google(&server, "A", "333", &["--setting", "conversion_action=33"]);
    for n in 0..2 {
        let (status, answer) = convert(&server, conversion(&format!("c-{n}"), Some(t))).await;
        assert_eq!(status, 200, "{answer}");
    }
    let stopped = wait_stopped(&server).await;
    assert!(
        stopped.contains("CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE")
            && stopped.contains("GOOGLE_ADS_UPLOAD_API=data-manager"),
        "{stopped}"
    );
    let db = server.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'pending'"
        )
        .await,
        2
    );

    // The operator follows the advice: the waiting conversions go the other way.
    server.write_plugins_toml(&google_toml(&base, "data-manager"));
    let rows = settled(&server).await;
    assert!(rows.values().all(|(s, _)| s == "uploaded"), "{rows:?}");
    let g = fake.lock().unwrap();
    assert!(
        !g.ads_calls.is_empty()
            && g.ads_calls
                .iter()
                .all(|(c, _, status)| c == "333" && *status == 403),
        "{:?}",
        g.ads_calls
    );
    let customers: Vec<&Value> = g
        .ingests
        .iter()
        .map(|(_, b)| &b["destinations"][0]["operatingAccount"]["accountId"])
        .collect();
    assert!(
        !customers.is_empty() && customers.iter().all(|c| *c == "333"),
        "{customers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_stops_the_uploader_with_invalid_grant() {
    let (base, fake) = fake_google(3600).await;
    let server = start(&base, "data-manager", "1//revoked-refresh-token");
    tenant_with_google(&server, "A", "1234567890", &[]);
    let (status, answer) = convert(&server, conversion("c-1", None)).await;
    assert_eq!(status, 200, "{answer}");
    let stopped = wait_stopped(&server).await;
    assert!(
        stopped.contains("invalid_grant") && stopped.contains("refresh token"),
        "{stopped}"
    );
    assert!(
        !stopped.contains("revoked-refresh-token"),
        "no token in health: {stopped}"
    );
    let db = server.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'pending'"
        )
        .await,
        1
    );
    assert!(fake.lock().unwrap().ingest_bodies.is_empty());
}

/// The reason the uploader stopped, once health shows one.
async fn wait_stopped(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health: Value = reqwest::get(server.url("/api/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kinds = health["outbox"]["kinds"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(s) = kinds.iter().find_map(|k| k["stopped"].as_str()) {
            return s.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "never stopped: {health}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The package and version whose message definitions check the bodies.
const GOOGLE_PACKAGE: &str = "google-ads-datamanager==0.9.4";

/// A Python with Google's Data Manager client library, installed once under
/// the target directory.
fn google_python() -> PathBuf {
    static ONCE: Mutex<()> = Mutex::new(());
    let _one = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("google-ads-datamanager-0.9.4");
    let python = venv.join("bin").join("python");
    if python.exists() {
        return python;
    }
    let fresh = venv.with_extension("partial");
    let _ = std::fs::remove_dir_all(&fresh);
    let made = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&fresh)
        .status();
    assert!(
        matches!(made, Ok(s) if s.success()),
        "this test reads request bodies with Google's Python client library: install python3 with venv ({made:?})"
    );
    let pip = std::process::Command::new(fresh.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            GOOGLE_PACKAGE,
        ])
        .output()
        .unwrap();
    assert!(
        pip.status.success(),
        "pip install {GOOGLE_PACKAGE} failed (PyPI must be reachable):\n{}",
        String::from_utf8_lossy(&pip.stderr)
    );
    std::fs::rename(&fresh, &venv).unwrap();
    python
}

/// Each of `bodies` parses as Google's message `name` (strictly: an unknown
/// field or a malformed value fails).
fn google_library_reads(name: &str, bodies: &[Value]) {
    assert!(!bodies.is_empty(), "nothing to check");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        let f = dir.path().join(format!("{i}.json"));
        std::fs::write(&f, b.to_string()).unwrap();
        files.push(f);
    }
    let script = r#"
import sys, pathlib, importlib.metadata
from google.ads import datamanager_v1 as dm
print("google-ads-datamanager", importlib.metadata.version("google-ads-datamanager"))
cls = getattr(dm, sys.argv[1])
for p in sys.argv[2:]:
    cls.from_json(pathlib.Path(p).read_text())
print("read", len(sys.argv) - 2)
"#;
    let out = std::process::Command::new(google_python())
        .args(["-c", script, name])
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Google's {name} refused a body:\n{stdout}\n{}\nbodies: {bodies:#?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("google-ads-datamanager 0.9.4"), "{stdout}");
    assert!(
        stdout.contains(&format!("read {}", bodies.len())),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_s_revoked_token_delays_only_its_own_rows() {
    let (base, fake) = fake_google(3600).await;
    let mut server = start_polling(&base, "data-manager", HOST_REFRESH, "600000");
    let a = tenant_with_google(
        &server,
        "A",
        "1111111111",
        &["--secret", "refresh_token=1//revoked-of-a"],
    );
    let b = tenant_with_google(&server, "B", "2222222222", &[]);
    for (gclid, tenant) in [("a-1", a), ("b-1", b), ("b-2", b)] {
        let (status, answer) = convert(&server, conversion(gclid, Some(tenant))).await;
        assert_eq!(status, 200, "{answer}");
    }
    // All three in one batch.
    server.restart_with(&[("PORTICO_OUTBOX_POLL_MS", "100")]);
    let db = server.db().await;
    assert_eq!(
        wait_count(
            &db,
            "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'uploaded'",
            2
        )
        .await,
        2
    );
    let a_row: Vec<(String, Option<String>)> = db
        .query_as("SELECT status, error FROM conversion_uploads WHERE click_id = 'a-1'")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        a_row[0].0, "pending",
        "A's row waits for A's fix: {a_row:?}"
    );
    let why = a_row[0].1.clone().unwrap_or_default();
    assert!(
        why.contains("invalid_grant") && why.contains("google source 1111111111"),
        "{why}"
    );
    // The uploader did not stop for everyone.
    let health: Value = reqwest::get(server.url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds = health["outbox"]["kinds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(kinds.iter().all(|k| k["stopped"].is_null()), "{health}");
    let g = fake.lock().unwrap();
    assert!(g.ingests.iter().all(|(refresh, _)| refresh == HOST_REFRESH));
}
