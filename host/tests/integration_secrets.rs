//! Per-tenant provider accounts: each page's and each number's own token,
//! sealed at rest with PORTICO_SECRET_KEY, changed while serving, and never
//! shown: not in the database file, the logs or any admin answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::extract::{Path as AxPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// 32 bytes of 0x01 and of 0x02, in base64.
const KEY_ONE: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_TWO: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

const PAGE_A: &str = "111111111111111";
const PAGE_B: &str = "222222222222222";
const NUMBER_A: &str = "106540352242922";
const NUMBER_B: &str = "209876543210987";

/// Which token each account takes; what each call carried.
#[derive(Default)]
struct Accounts {
    expected: HashMap<String, String>,
    calls: Vec<(String, String)>,
}

/// A Graph API for leads and Cloud API sends that answers only the right
/// account's token: a lead id starts with its page's first digit, a send names its number.
async fn fake_meta() -> (String, Arc<Mutex<Accounts>>) {
    let state = Arc::new(Mutex::new(Accounts::default()));
    async fn lead(
        State(state): State<Arc<Mutex<Accounts>>>,
        AxPath((_v, id)): AxPath<(String, String)>,
        RawQuery(query): RawQuery,
    ) -> axum::response::Response {
        let token = query
            .unwrap_or_default()
            .split('&')
            .find_map(|p| p.strip_prefix("access_token=").map(str::to_string))
            .unwrap_or_default();
        let page = if id.starts_with('1') { PAGE_A } else { PAGE_B };
        let mut s = state.lock().unwrap();
        s.calls.push((page.to_string(), token.clone()));
        if s.expected.get(page) == Some(&token) {
            ([("content-type", "application/json")], graph_lead_json(&id)).into_response()
        } else {
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/json")],
                r#"{"error":{"message":"(#100) Insufficient permission to access this lead","type":"OAuthException","code":100,"fbtrace_id":"x"}}"#,
            )
                .into_response()
        }
    }
    async fn send(
        State(state): State<Arc<Mutex<Accounts>>>,
        AxPath((_v, number)): AxPath<(String, String)>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_string();
        let mut s = state.lock().unwrap();
        s.calls.push((number.clone(), auth.clone()));
        if s.expected.get(&number) == Some(&auth) {
            let n = s.calls.len();
            axum::Json(json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.OK{n}")}]})).into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}})),
            )
                .into_response()
        }
    }
    let app = axum::Router::new()
        .route("/{v}/{id}", axum::routing::get(lead))
        .route("/{v}/{number}/messages", axum::routing::post(send))
        .with_state(state.clone());
    (serve_fake(app).await, state)
}

fn plugins(base: &str) -> String {
    format!(
        r#"{meta}
[plugins.whatsapp]
path = "{wa}"
allowed_hosts = ["{base}"]
[plugins.whatsapp.config]
api_base_url = "{base}"
api_version = "25.0"
[plugins.whatsapp.secrets]
app_secret = {{ env = "WHATSAPP_APP_SECRET" }}
"#,
        meta = meta_entry(&format!("allowed_hosts = [\"{base}\"]\n")),
        wa = plugin_wasm("portico-whatsapp").display(),
    )
}

/// A tenant owning `kind` source `key` with its own secret `name=value`.
fn tenant_with_secret(server: &Server, tenant: &str, kind: &str, key: &str, secret: &str) -> i64 {
    let id: i64 = server
        .cli(&["tenant", "add", tenant])
        .trim()
        .parse()
        .unwrap();
    server.cli(&[
        "source",
        "add",
        "--tenant",
        &id.to_string(),
        "--kind",
        kind,
        "--key",
        key,
        "--secret",
        secret,
    ]);
    id
}

async fn lead_full_name(server: &Server, leadgen_id: &str) -> Option<String> {
    let db = server.db().await;
    db.query_scalar(&format!(
        "SELECT full_name FROM leads WHERE external_id = '{leadgen_id}'"
    ))
    .fetch_optional(&db.pool)
    .await
    .unwrap()
    .flatten()
}

async fn post_lead(server: &Server, page: &str, leadgen_id: &str) -> Value {
    let r = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(page, leadgen_id),
        APP_SECRET,
    )
    .await;
    server.processed(r).await
}

async fn send(server: &Server, tenant: i64, to: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/whatsapp/send"))
        .bearer_auth("crm-token")
        .json(&json!({"tenant_id": tenant, "to": to, "body": "Hello"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_s_calls_carry_its_own_token_and_no_token_is_ever_shown() {
    let (base, accounts) = fake_meta().await;
    {
        let mut a = accounts.lock().unwrap();
        for (account, token) in [
            (PAGE_A, "page-token-A-0001"),
            (PAGE_B, "page-token-B-0002"),
            (NUMBER_A, "number-token-A-0003"),
            (NUMBER_B, "number-token-B-0004"),
        ] {
            a.expected.insert(account.into(), token.into());
        }
    }
    let env = [
        ("META_GRAPH_BASE_URL", base.as_str()),
        ("PORTICO_SECRET_KEY", KEY_ONE),
        ("PORTICO_INTAKE_TOKEN", "crm-token"),
        ("WHATSAPP_APP_SECRET", "wa-secret"),
        ("NUMBER_B_TOKEN", "number-token-B-0004"),
    ];
    let server = Server::start(&plugins(&base), &env);
    tenant_with_secret(
        &server,
        "A",
        "meta",
        PAGE_A,
        "page_access_token=page-token-A-0001",
    );
    // A secret read from a file and one from a variable.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "page-token-B-0002\n").unwrap();
    tenant_with_secret(
        &server,
        "B",
        "meta",
        PAGE_B,
        &format!("page_access_token=@{}", file.display()),
    );
    let ta = tenant_with_secret(
        &server,
        "A2",
        "whatsapp",
        NUMBER_A,
        "access_token=number-token-A-0003",
    );
    let tb: i64 = server.cli(&["tenant", "add", "B2"]).trim().parse().unwrap();
    server.cli(&[
        "source",
        "add",
        "--tenant",
        &tb.to_string(),
        "--kind",
        "whatsapp",
        "--key",
        NUMBER_B,
        "--secret",
        "access_token=env:NUMBER_B_TOKEN",
        "--setting",
        "label=second number",
    ]);

    // Each page's lead is read with that page's token.
    post_lead(&server, PAGE_A, "1001").await;
    post_lead(&server, PAGE_B, "2001").await;
    assert_eq!(
        lead_full_name(&server, "1001").await.as_deref(),
        Some("José Pérez")
    );
    assert_eq!(
        lead_full_name(&server, "2001").await.as_deref(),
        Some("José Pérez")
    );
    // Each number's send goes out with that number's token.
    let (status, body) = send(&server, ta, "+16505551234").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&server, tb, "+16505559999").await;
    assert_eq!(status, 200, "{body}");
    {
        let a = accounts.lock().unwrap();
        let calls: Vec<(&str, &str)> = a
            .calls
            .iter()
            .map(|(x, y)| (x.as_str(), y.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                (PAGE_A, "page-token-A-0001"),
                (PAGE_B, "page-token-B-0002"),
                (NUMBER_A, "number-token-A-0003"),
                (NUMBER_B, "number-token-B-0004"),
            ]
        );
    }

    // Page A's token changes while serving: the next lead uses the new one.
    accounts
        .lock()
        .unwrap()
        .expected
        .insert(PAGE_A.into(), "page-token-A-0005".into());
    let sources: Value = reqwest::Client::new()
        .get(server.url("/api/admin/lead-sources"))
        .bearer_auth(TEST_ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page_a = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["external_key"] == PAGE_A)
        .unwrap();
    assert_eq!(page_a["secrets"], json!(["page_access_token"]));
    let changed = reqwest::Client::new()
        .patch(server.url(&format!("/api/admin/lead-sources/{}", page_a["id"])))
        .bearer_auth(TEST_ADMIN)
        .json(&json!({"secrets": {"page_access_token": "page-token-A-0005"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["secrets"], json!(["page_access_token"]));
    post_lead(&server, PAGE_A, "1002").await;
    assert_eq!(
        lead_full_name(&server, "1002").await.as_deref(),
        Some("José Pérez")
    );
    assert_eq!(
        accounts.lock().unwrap().calls.last().unwrap().1,
        "page-token-A-0005"
    );

    // A source added through the admin API, with a secret and a setting.
    let tc: i64 = server.cli(&["tenant", "add", "C"]).trim().parse().unwrap();
    let added = reqwest::Client::new()
        .post(server.url("/api/admin/lead-sources"))
        .bearer_auth(TEST_ADMIN)
        .json(&json!({"tenant_id": tc, "kind": "meta", "external_key": "333333333333333", "secrets": {"page_access_token": "page-token-C-0006"}, "settings": {"note": "third"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["secrets"], json!(["page_access_token"]));
    assert_eq!(added["settings"], json!({"note": "third"}));

    // No secret's value anywhere it could be read: every admin answer, the
    // logs, the database file (and its write-ahead log).
    let tokens = [
        "page-token-A-0001",
        "page-token-B-0002",
        "number-token-A-0003",
        "number-token-B-0004",
        "page-token-A-0005",
        "page-token-C-0006",
    ];
    let client = reqwest::Client::new();
    let mut seen = String::new();
    for path in [
        "/api/admin/lead-sources",
        "/api/admin/dlq?status=received,processed,failed,dead,ignored&limit=1000",
        "/api/health",
        "/api/health/ready",
        "/metrics",
        "/api/admin/deliveries/1",
    ] {
        let text = client
            .get(server.url(path))
            .bearer_auth(TEST_ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        seen.push_str(&text);
    }
    seen.push_str(&server.cli(&["source", "list"]));
    seen.push_str(&server.log_text());
    if server.db_url.starts_with("sqlite:") {
        let path = server
            .db_url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap()
            .to_string();
        for file in [path.clone(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                seen.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    assert!(seen.contains("page_access_token"), "the names are shown");
    for token in tokens {
        assert!(!seen.contains(token), "{token} is readable somewhere");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_required_once_a_source_has_secrets_and_rotates_with_rekey() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.toml"), meta_entry("")).unwrap();
    let db = format!("sqlite://{}/p.db", dir.path().display());
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        base_command(dir.path(), &db, &env)
            .args(args)
            .output()
            .unwrap()
    };
    let tenant = String::from_utf8(run(&[], &["tenant", "add", "A"]).stdout).unwrap();
    // A secret without a key: refused, and nothing is stored.
    let out = run(
        &[],
        &[
            "source",
            "add",
            "--tenant",
            tenant.trim(),
            "--kind",
            "meta",
            "--key",
            "p",
            "--secret",
            "page_access_token=t",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PORTICO_SECRET_KEY") && err.contains("openssl rand -base64 32"),
        "{err}"
    );
    // A malformed key: refused, saying how to make one.
    let out = run(
        &[("PORTICO_SECRET_KEY", "c2hvcnQ=")],
        &[
            "source",
            "add",
            "--tenant",
            tenant.trim(),
            "--kind",
            "meta",
            "--key",
            "p",
            "--secret",
            "page_access_token=t",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not 32 bytes"));
    let out = run(
        &[("PORTICO_SECRET_KEY", KEY_ONE)],
        &[
            "source",
            "add",
            "--tenant",
            tenant.trim(),
            "--kind",
            "meta",
            "--key",
            "p",
            "--secret",
            "page_access_token=t",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let serve = |key: Option<&str>| {
        let mut env = vec![];
        if let Some(k) = key {
            env.push(("PORTICO_SECRET_KEY", k));
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // `migrate` does not read secrets; `dlq replay` loads the plugins like serve.
        base_command(dir.path(), &db, &env)
            .args(["dlq", "replay", "--all-failed", "--dry-run"])
            .output()
            .unwrap()
    };
    // `portico serve` itself stops at start-up without the key.
    let mut child = base_command(dir.path(), &db, &[])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("portico serve started without the key its sources need");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !status.success() && err.contains("PORTICO_SECRET_KEY is not set"),
        "{err}"
    );
    // Without the key, or with another one, start-up stops with one line.
    let out = serve(None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("PORTICO_SECRET_KEY is not set"),
        "{err}"
    );
    let out = serve(Some(KEY_TWO));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("portico source rekey"),
        "{err}"
    );
    // Rotation: new key first, old after; rekey; then the new key alone.
    let out = run(
        &[("PORTICO_SECRET_KEY", &format!("{KEY_TWO},{KEY_ONE}"))],
        &["source", "rekey"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 sources sealed again"));
    let out = serve(Some(KEY_TWO));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = serve(Some(KEY_ONE));
    assert!(!out.status.success(), "the old key no longer opens them");
    // A secret removed and a setting set with `source set`.
    let out = run(
        &[("PORTICO_SECRET_KEY", KEY_TWO)],
        &[
            "source",
            "set",
            "--kind",
            "meta",
            "--key",
            "p",
            "--remove",
            "page_access_token",
            "--setting",
            "label=x",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(run(&[], &["source", "list"]).stdout).unwrap();
    let row: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(row["secrets"], json!([]));
    assert_eq!(row["settings"], json!({"label": "x"}));
    // No secrets left: no key needed.
    assert!(serve(None).status.success());
}

/// What a fake Google Ads API saw: (customer, bearer token, conversion actions).
type Uploads = Arc<Mutex<Vec<(String, String, Vec<String>)>>>;

async fn fake_google_ads() -> (String, Uploads) {
    let seen: Uploads = Arc::default();
    async fn upload(
        State(seen): State<Uploads>,
        AxPath((_v, target)): AxPath<(String, String)>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> axum::response::Response {
        let customer = target
            .trim_end_matches(":uploadClickConversions")
            .to_string();
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_string();
        let conversions = body["conversions"].as_array().cloned().unwrap_or_default();
        let actions = conversions
            .iter()
            .map(|c| {
                c["conversionAction"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        seen.lock().unwrap().push((customer, token, actions));
        let results: Vec<Value> = conversions
            .iter()
            .map(|c| json!({"gclid": c["gclid"]}))
            .collect();
        axum::Json(json!({"results": results})).into_response()
    }
    let app = axum::Router::new()
        .route("/{v}/customers/{target}", axum::routing::post(upload))
        .with_state(seen.clone());
    (serve_fake(app).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_s_conversions_go_to_its_own_google_account() {
    let (base, seen) = fake_google_ads().await;
    let toml = format!(
        r#"
[plugins.google-ads]
path = "{}"
mount = "google"
allowed_hosts = ["{base}"]
[plugins.google-ads.config]
upload_enabled = true
upload_api = "ads-api"
api_base_url = "{base}"
api_version = "26"
customer_id = "999"
conversion_action = "9"
[plugins.google-ads.secrets]
access_token = "host-wide-token"
"#,
        plugin_wasm("portico-google-ads").display()
    );
    let server = Server::start(
        &toml,
        &[
            ("PORTICO_SECRET_KEY", KEY_ONE),
            ("PORTICO_INTAKE_TOKEN", "crm-token"),
            ("PORTICO_OUTBOX_POLL_MS", "100"),
        ],
    );
    let mut tenants = Vec::new();
    for (name, customer, action) in [("A", "111", "11"), ("B", "222", "22")] {
        let id: i64 = server.cli(&["tenant", "add", name]).trim().parse().unwrap();
        server.cli(&[
            "source",
            "add",
            "--tenant",
            &id.to_string(),
            "--kind",
            "google",
            "--key",
            customer,
            "--secret",
            &format!("access_token=token-{customer}"),
            "--setting",
            &format!("conversion_action={action}"),
        ]);
        tenants.push(id);
    }
    for (n, tenant) in tenants.iter().chain(tenants.iter()).enumerate() {
        let r = reqwest::Client::new()
            .post(server.url("/api/integrations/google/offline-conversion"))
            .bearer_auth("crm-token")
            .json(&json!({"gclid": format!("g-{n}"), "timestamp": "2026-11-20T10:00:00Z", "value": 1, "currency": "EUR", "tenant_id": tenant}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let db = server.db().await;
    assert_eq!(
        wait_count(
            &db,
            "SELECT COUNT(*) FROM conversion_uploads WHERE status = 'uploaded'",
            4
        )
        .await,
        4
    );
    let seen = seen.lock().unwrap().clone();
    let mut by_customer: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for (customer, token, actions) in seen {
        let entry = by_customer
            .entry(customer)
            .or_insert((token.clone(), Vec::new()));
        assert_eq!(entry.0, token, "one customer, one token");
        entry.1.extend(actions);
    }
    assert_eq!(by_customer.len(), 2, "{by_customer:?}");
    assert_eq!(by_customer["111"].0, "token-111");
    assert_eq!(by_customer["222"].0, "token-222");
    assert!(
        by_customer["111"]
            .1
            .iter()
            .all(|a| a == "customers/111/conversionActions/11")
    );
    assert!(
        by_customer["222"]
            .1
            .iter()
            .all(|a| a == "customers/222/conversionActions/22")
    );
}
