//! WhatsApp Cloud API: the toggle, inbound messages of every type into contacts,
//! cases and messages, statuses that never move backwards, and send through a
//! fake Cloud API on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const WA_SECRET: &str = "wa-secret";
const ADMIN: &str = "admin-token";
const PNID: &str = "106540352242922";

both_backends!(
    [flavor = "multi_thread", worker_threads = 2]
    disabled_by_default_the_routes_answer_503,
    every_inbound_type_lands_in_contacts_cases_and_messages,
    send_persists_the_message_and_statuses_never_move_backwards,
    provider_errors_answer_502_and_the_attempt_is_kept,
    one_idempotency_key_is_one_send_and_a_replay_calls_nothing,
    a_case_of_another_tenant_is_refused_before_anything_is_sent,
    a_send_that_times_out_is_kept_failed_and_never_sent_again,
    a_store_error_after_the_provider_answered_never_sends_again,
    messages_and_their_statuses_are_the_tenant_s_own,
);

#[derive(Default)]
struct FakeCloud {
    sent: Vec<(String, String, Value)>,
    /// Recipients ending in 999000 get their answer while this database
    /// refuses writes for 12 s: the host cannot record what the provider said.
    lock_db: Option<String>,
}

/// Make the database at `db_url` refuse the host's writes for `secs`.
async fn refuse_writes(db_url: &str, secs: u64) {
    if db_url.starts_with("postgres") {
        refuse_connections(db_url, secs).await
    } else {
        hold_write_lock(db_url, secs).await
    }
}

/// Hold SQLite's write lock on `db_url` for `secs` (longer than the host's busy timeout).
async fn hold_write_lock(db_url: &str, secs: u64) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    });
}

/// PostgreSQL has no busy timeout (a lock only makes writers wait), so its
/// equivalent is an outage: the database's connections are cut and new ones
/// refused for `secs`.
async fn refuse_connections(db_url: &str, secs: u64) {
    use sqlx::{AssertSqlSafe, Connection};
    let (server, name) = db_url.rsplit_once('/').unwrap();
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let allow =
        |on: bool| AssertSqlSafe(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {on}"));
    let reopen = allow(true);
    sqlx::query(allow(false)).execute(&mut admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(&mut admin)
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
        sqlx::query(reopen).execute(&mut admin).await.unwrap();
    });
}

/// A fake Cloud API: recipients ending in an error code get that error; others a wamid.
async fn fake_cloud() -> (String, Arc<Mutex<FakeCloud>>) {
    let state = Arc::new(Mutex::new(FakeCloud::default()));
    async fn messages(
        axum::extract::State(state): axum::extract::State<Arc<Mutex<FakeCloud>>>,
        axum::extract::Path((_v, pnid)): axum::extract::Path<(String, String)>,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let body: Value = serde_json::from_str(&body).unwrap();
        let auth = headers["authorization"].to_str().unwrap().to_string();
        let to = body["to"].as_str().unwrap().to_string();
        let lock = {
            let mut s = state.lock().unwrap();
            s.sent.push((pnid, auth, body));
            s.lock_db.clone().filter(|_| to.ends_with("999000"))
        };
        if to.ends_with("555000") {
            // Longer than the adapter's 4 s wait: the provider got it, we never hear.
            tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        }
        if let Some(db) = lock {
            refuse_writes(&db, 12).await;
        }
        let s = state.lock().unwrap();
        let err = |status: u16, code: u64, message: &str, details: &str| {
            let e = json!({"error": {"message": message, "type": "OAuthException", "code": code, "error_data": {"messaging_product": "whatsapp", "details": details}, "fbtrace_id": "Az8or"}});
            (StatusCode::from_u16(status).unwrap(), axum::Json(e)).into_response()
        };
        if to.ends_with("131047") {
            return err(
                400,
                131047,
                "(#131047) Re-engagement message",
                "More than 24 hours have passed since the recipient last replied to the sender number.",
            );
        }
        if to.ends_with("131026") {
            return err(
                400,
                131026,
                "(#131026) Message undeliverable",
                "Unable to deliver message",
            );
        }
        if to.ends_with("190190") {
            return err(
                401,
                190,
                "Error validating access token: Session has expired",
                "Your access token has expired.",
            );
        }
        if to.ends_with("130429") {
            return err(
                429,
                130429,
                "(#130429) Rate limit hit",
                "Cloud API message throughput has been reached.",
            );
        }
        let n = s.sent.len();
        axum::Json(json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to.trim_start_matches('+')}], "messages": [{"id": format!("wamid.SENT{n}")}]})).into_response()
    }
    let app = axum::Router::new()
        .route("/{v}/{pnid}/messages", axum::routing::post(messages))
        .with_state(state.clone());
    (serve_fake(app).await, state)
}

fn whatsapp_entry() -> String {
    format!(
        r#"
[plugins.whatsapp]
path = "{}"
enabled = {{ env = "WHATSAPP_WEBHOOK_ENABLED", default = false }}
allowed_hosts = [{{ env = "WHATSAPP_API_BASE_URL", default = "https://graph.facebook.com" }}]
[plugins.whatsapp.config]
api_base_url = {{ env = "WHATSAPP_API_BASE_URL", default = "https://graph.facebook.com" }}
api_version = "25.0"
[plugins.whatsapp.secrets]
app_secret = {{ env = "WHATSAPP_APP_SECRET" }}
verify_token = {{ env = "WHATSAPP_VERIFY_TOKEN" }}
access_token = {{ env = "WHATSAPP_ACCESS_TOKEN" }}
"#,
        plugin_wasm("portico-whatsapp").display()
    )
}

fn enabled_env(base: &str) -> Vec<(&str, &str)> {
    vec![
        ("WHATSAPP_WEBHOOK_ENABLED", "true"),
        ("WHATSAPP_APP_SECRET", "old-one,wa-secret"),
        ("WHATSAPP_VERIFY_TOKEN", "wa-verify"),
        ("WHATSAPP_ACCESS_TOKEN", "EAAJB-token"),
        ("WHATSAPP_API_BASE_URL", base),
        ("PORTICO_ADMIN_TOKEN", ADMIN),
    ]
}

fn tenant_with_number(server: &Server) -> i64 {
    tenant_with("Acme", PNID, server)
}

/// A tenant named `name` whose WhatsApp number is `pnid`.
fn tenant_with(name: &str, pnid: &str, server: &Server) -> i64 {
    let id: i64 = server.cli(&["tenant", "add", name]).trim().parse().unwrap();
    server.cli(&[
        "source",
        "add",
        "--tenant",
        &id.to_string(),
        "--kind",
        "whatsapp",
        "--key",
        pnid,
    ]);
    id
}

async fn post_delivery(server: &Server, body: &str) -> Value {
    let r = post_signed(
        &server.url("/api/integrations/whatsapp/webhook"),
        body,
        WA_SECRET,
    )
    .await;
    server.processed(r).await
}

async fn send(server: &Server, body: Value, token: Option<&str>) -> (u16, Value) {
    send_as(server, body, token, None).await
}

async fn send_as(
    server: &Server,
    body: Value,
    token: Option<&str>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.url("/api/integrations/whatsapp/send"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn statuses(wamid: &str, list: &[(&str, Option<(u64, &str)>)]) -> String {
    statuses_on(PNID, wamid, list)
}

/// A delivery of statuses for `wamid`, as the number `pnid` reports them.
fn statuses_on(pnid: &str, wamid: &str, list: &[(&str, Option<(u64, &str)>)]) -> String {
    let items: Vec<Value> = list
        .iter()
        .map(|(status, err)| {
            let mut s = json!({"id": wamid, "status": status, "timestamp": "1750030073", "recipient_id": "16505551234"});
            if let Some((code, title)) = err {
                s["errors"] = json!([{"code": code, "title": title, "message": title}]);
            }
            s
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid}, "statuses": items}}]}]}).to_string()
}

async fn disabled_by_default_the_routes_answer_503() {
    let server = Server::start(&whatsapp_entry(), &[]);
    let r = post_signed(
        &server.url("/api/integrations/whatsapp/webhook"),
        "{}",
        WA_SECRET,
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "integration_disabled"
    );
    let health: Value = reqwest::get(server.url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["integrations"]["whatsapp"], false);
}

async fn every_inbound_type_lands_in_contacts_cases_and_messages() {
    let (base, _cloud) = fake_cloud().await;
    let server = Server::start(&whatsapp_entry(), &enabled_env(&base));
    let tenant = tenant_with_number(&server);
    let hs = reqwest::get(server.url("/api/integrations/whatsapp/webhook?hub.mode=subscribe&hub.challenge=abc-123&hub.verify_token=wa-verify")).await.unwrap();
    assert_eq!(hs.status(), 200);
    assert_eq!(hs.text().await.unwrap(), "abc-123");
    let bad = post_signed(
        &server.url("/api/integrations/whatsapp/webhook"),
        "{}",
        "nope",
    )
    .await;
    assert_eq!(bad.status(), 401);

    let body = std::fs::read_to_string(
        workspace_root().join("host/tests/fixtures/whatsapp-every-type.json"),
    )
    .unwrap();
    let json = post_delivery(&server, &body).await;
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 15);
    assert!(items.iter().all(|i| i["status"] == "processed"), "{json}");
    // The same delivery again stores nothing twice.
    let again = post_delivery(&server, &body).await;
    assert!(
        again["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "duplicate")
    );

    let db = server.db().await;
    let bodies: Vec<(String, String, String)> = db
        .query_as("SELECT external_id, kind, body FROM messages ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let body_of = |wamid: &str| {
        bodies
            .iter()
            .find(|(w, _, _)| w == wamid)
            .map(|(_, _, b)| b.clone())
            .unwrap()
    };
    assert_eq!(bodies.len(), 15);
    assert_eq!(body_of("wamid.T1"), "Olá, café?");
    assert_eq!(body_of("wamid.I1"), "Taj Mahal");
    assert_eq!(body_of("wamid.A1"), "[voice message]");
    assert_eq!(body_of("wamid.V1"), "Unboxing");
    assert_eq!(body_of("wamid.D1"), "my receipt");
    assert_eq!(body_of("wamid.S1"), "[sticker]");
    assert_eq!(
        body_of("wamid.L1"),
        "37.44221496582,-122.16165924072 Philz Coffee 101 Forest Ave, Palo Alto, CA 94301"
    );
    assert_eq!(
        body_of("wamid.C1"),
        "Contact: Barbara J. Johnson (+1 (415) 555-0829)"
    );
    assert_eq!(body_of("wamid.B1"), "Cancel");
    assert_eq!(body_of("wamid.LR1"), "Priority Mail Express");
    assert_eq!(body_of("wamid.BT1"), "Unsubscribe");
    assert_eq!(body_of("wamid.R1"), "👍 to wamid.OUT1");
    assert_eq!(
        body_of("wamid.O1"),
        "Order of 1 item(s) from catalog 194836987003835: Love these!"
    );
    assert_eq!(body_of("wamid.U1"), "Message type unknown (edit)");
    assert!(body_of("wamid.SYS1").starts_with("User José Pérez changed"));
    let (media, reply, ts): (Option<String>, Option<String>, Option<i64>) =
        db.query_as("SELECT (SELECT media_id FROM messages WHERE external_id = 'wamid.I1'), (SELECT reply_to FROM messages WHERE external_id = 'wamid.B1'), (SELECT provider_timestamp FROM messages WHERE external_id = 'wamid.T1')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (media.as_deref(), reply.as_deref(), ts),
        (
            Some("1003383421387256"),
            Some("wamid.OUT1"),
            Some(1749416383)
        )
    );

    let contacts: Vec<(String, Option<String>)> = db
        .query_as("SELECT phone, name FROM contacts ORDER BY phone")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    // José's last message says he changed number: his contact moved with him.
    assert_eq!(
        contacts,
        vec![
            ("12195555358".into(), Some("José Pérez".into())),
            ("5511987654321".into(), Some("Ana Souza".into()))
        ]
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM cases WHERE tenant_id = {tenant} AND status = 'open'")
        )
        .await,
        2
    );
    assert_eq!(
        count(&db, "SELECT COUNT(DISTINCT case_id) FROM messages").await,
        2
    );

    // A new profile name replaces the old one.
    let renamed = body
        .replace("Ana Souza", "Ana S. Souza")
        .replace("wamid.", "wamid.2.");
    post_delivery(&server, &renamed).await;
    let name: Option<String> = db
        .query_scalar("SELECT name FROM contacts WHERE phone = '5511987654321'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("Ana S. Souza"));
    // The replay's messages from José's old number made a contact of their
    // own until its "changed number" notice joined it to José's: one open
    // case each (the joined one's case is closed, never deleted).
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM cases WHERE status = 'open'").await,
        2,
        "messages join the open case"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 2);
}

async fn send_persists_the_message_and_statuses_never_move_backwards() {
    let (base, cloud) = fake_cloud().await;
    let server = Server::start(&whatsapp_entry(), &enabled_env(&base));
    let tenant = tenant_with_number(&server);

    let (status, _) = send(
        &server,
        json!({"tenant_id": tenant, "to": "+16505551234", "body": "Hi"}),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, json) = send(&server, json!({"to": "12", "body": ""}), Some(ADMIN)).await;
    assert_eq!(status, 400);
    for field in ["tenant_id", "to", "body"] {
        assert!(json["fields"][field].is_string(), "{field}: {json}");
    }
    let (status, json) = send(
        &server,
        json!({"tenant_id": 999, "to": "+16505551234", "body": "Hi"}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("has no WhatsApp number"),
        "{json}"
    );

    let (status, json) = send(
        &server,
        json!({"tenant_id": tenant, "to": "+16505551234", "body": "Your order shipped"}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let wamid = json["wamid"].as_str().unwrap().to_string();
    assert!(wamid.starts_with("wamid.SENT"));
    {
        let c = cloud.lock().unwrap();
        let (pnid, auth, body) = c.sent.last().unwrap();
        assert_eq!(pnid, PNID);
        assert_eq!(auth, "Bearer EAAJB-token");
        assert_eq!(
            body,
            &json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234", "type": "text", "text": {"body": "Your order shipped"}})
        );
    }
    let db = server.db().await;
    let (direction, st, contact, case): (String, String, Option<i64>, Option<i64>) = db
        .query_as(
            "SELECT direction, status, contact_id, case_id FROM messages WHERE external_id = ?",
        )
        .bind(&wamid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((direction.as_str(), st.as_str()), ("outbound", "sent"));
    assert!(contact.is_some() && case.is_some());

    // One delivery mixing a customer's reply and the status of our message.
    let mut mixed: Value = serde_json::from_str(&statuses(&wamid, &[("sent", None)])).unwrap();
    mixed["entry"][0]["changes"][0]["value"]["contacts"] =
        json!([{"profile": {"name": "José"}, "wa_id": "16505551234"}]);
    mixed["entry"][0]["changes"][0]["value"]["messages"] = json!([{"context": {"from": "15550783881", "id": wamid}, "from": "16505551234", "id": "wamid.REPLY1", "timestamp": "1750030100", "type": "text", "text": {"body": "Thanks!"}}]);
    let j = post_delivery(&server, &mixed.to_string()).await;
    let kinds: Vec<&str> = j["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["processed", "ignored"], "{j}");
    let (reply_case, reply_to): (Option<i64>, Option<String>) = db
        .query_as("SELECT case_id, reply_to FROM messages WHERE external_id = 'wamid.REPLY1'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        (reply_case, reply_to.as_deref()),
        (case, Some(wamid.as_str())),
        "the reply joins the open case"
    );

    // Out of order: read, then a late delivered; then played; then a duplicate read.
    let j = post_delivery(
        &server,
        &statuses(&wamid, &[("read", None), ("delivered", None)]),
    )
    .await;
    assert_eq!(j["items"][1]["status"], "ignored", "{j}");
    assert!(
        j["items"][1]["error"]
            .as_str()
            .unwrap()
            .contains("never move backwards")
    );
    let st: String = db
        .query_scalar("SELECT status FROM messages WHERE external_id = ?")
        .bind(&wamid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(st, "read");
    post_delivery(&server, &statuses(&wamid, &[("played", None)])).await;
    let st: String = db
        .query_scalar("SELECT status FROM messages WHERE external_id = ?")
        .bind(&wamid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(st, "played");

    // failed keeps the code and title; an unknown wamid is ignored with the reason.
    let (_, second) = send(
        &server,
        json!({"tenant_id": tenant, "to": "+16505551234", "body": "Second", "case_id": case}),
        Some(ADMIN),
    )
    .await;
    let second = second["wamid"].as_str().unwrap().to_string();
    post_delivery(
        &server,
        &statuses(
            &second,
            &[(
                "failed",
                Some((
                    131049,
                    "This message was not delivered to maintain healthy ecosystem engagement.",
                )),
            )],
        ),
    )
    .await;
    let (st, err): (String, Option<String>) = db
        .query_as("SELECT status, error FROM messages WHERE external_id = ?")
        .bind(&second)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(st, "failed");
    assert!(
        err.unwrap()
            .starts_with("131049: This message was not delivered")
    );
    let j = post_delivery(&server, &statuses("wamid.NOPE", &[("delivered", None)])).await;
    assert_eq!(j["items"][0]["status"], "ignored");
    assert!(
        j["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unknown message wamid.NOPE")
    );
}

async fn provider_errors_answer_502_and_the_attempt_is_kept() {
    let (base, cloud) = fake_cloud().await;
    let server = Server::start(&whatsapp_entry(), &enabled_env(&base));
    let tenant = tenant_with_number(&server);
    for (to, code) in [
        ("+5511900131047", "131047"),
        ("+5511900131026", "131026"),
        ("+5511900190190", "190"),
        ("+5511900130429", "130429"),
    ] {
        let (status, json) = send(
            &server,
            json!({"tenant_id": tenant, "to": to, "body": "Hi"}),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 502, "{to}: {json}");
        assert_eq!(json["error"], "provider_error");
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{code}: ")),
            "{json}"
        );
        let db = server.db().await;
        let (st, err): (String, Option<String>) = db
            .query_as("SELECT status, error FROM messages WHERE id = ?")
            .bind(json["message_id"].as_i64().unwrap())
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(st, "failed");
        assert!(err.unwrap().starts_with(code));
    }
    assert_eq!(
        cloud.lock().unwrap().sent.len(),
        4,
        "each request sent once"
    );
    let db = server.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM webhook_events WHERE status IN ('failed', 'received')"
        )
        .await,
        0,
        "nothing waits to be sent again"
    );
}

async fn send_with_key(server: &Server, body: Value, key: &str) -> (u16, Value) {
    send_as(server, body, Some(ADMIN), Some(key)).await
}

async fn one_idempotency_key_is_one_send_and_a_replay_calls_nothing() {
    let (base, cloud) = fake_cloud().await;
    let server = Server::start(&whatsapp_entry(), &enabled_env(&base));
    let tenant = tenant_with_number(&server);
    let body = json!({"tenant_id": tenant, "to": "+16505551234", "body": "Once"});
    let (status, first) = send_with_key(&server, body.clone(), "order-42").await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = send_with_key(&server, body.clone(), "order-42").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(first["message_id"], second["message_id"]);
    assert_eq!(first["wamid"], second["wamid"]);
    assert_eq!(
        cloud.lock().unwrap().sent.len(),
        1,
        "the same key is sent once"
    );

    // A replay of the processed send item calls the provider for nothing.
    let db = server.db().await;
    let item: i64 = db
        .query_scalar("SELECT id FROM webhook_events WHERE kind = 'item' AND item_kind = 'send'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let replay: Value = reqwest::Client::new()
        .post(server.url(&format!("/api/admin/dlq/{item}/replay")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["succeeded"], true, "{replay}");
    assert_eq!(
        cloud.lock().unwrap().sent.len(),
        1,
        "a replay sends nothing"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE direction = 'outbound'"
        )
        .await,
        1
    );
    // Another key is another message.
    let (status, third) = send_with_key(&server, body, "order-43").await;
    assert_eq!(status, 200, "{third}");
    assert_ne!(third["message_id"], first["message_id"]);
    assert_eq!(cloud.lock().unwrap().sent.len(), 2);
}

async fn a_case_of_another_tenant_is_refused_before_anything_is_sent() {
    let (base, cloud) = fake_cloud().await;
    let server = Server::start(&whatsapp_entry(), &enabled_env(&base));
    let acme = tenant_with_number(&server);
    let (status, json) = send(
        &server,
        json!({"tenant_id": acme, "to": "+16505551234", "body": "Hi"}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let db = server.db().await;
    let acme_case: i64 = db
        .query_scalar("SELECT case_id FROM messages WHERE id = ?")
        .bind(json["message_id"].as_i64().unwrap())
        .fetch_one(&db.pool)
        .await
        .unwrap();

    let other = tenant_with("Other", "200200200", &server);
    let (status, json) = send(
        &server,
        json!({"tenant_id": other, "to": "+16505551234", "body": "Hi", "case_id": acme_case}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 400, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("does not belong to tenant"),
        "{json}"
    );
    assert_eq!(
        cloud.lock().unwrap().sent.len(),
        1,
        "nothing was sent for it"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM messages").await,
        1,
        "nothing was kept for it"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM outbox").await, 1);
}

async fn a_send_that_times_out_is_kept_failed_and_never_sent_again() {
    let (base, cloud) = fake_cloud().await;
    let mut env = enabled_env(&base);
    env.push(("PORTICO_OUTBOX_POLL_MS", "100"));
    let server = Server::start(&whatsapp_entry(), &env);
    let tenant = tenant_with_number(&server);
    let (status, json) = send(
        &server,
        json!({"tenant_id": tenant, "to": "+5511900555000", "body": "Slow"}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 502, "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("may have accepted it"), "{json}");
    let db = server.db().await;
    let (st, err): (String, String) = db
        .query_as("SELECT status, error FROM messages WHERE id = ?")
        .bind(json["message_id"].as_i64().unwrap())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(st, "failed");
    assert!(err.contains("may have accepted it"), "{err}");
    // The workers have every chance to send it again; they must not.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(cloud.lock().unwrap().sent.len(), 1);
}

async fn a_store_error_after_the_provider_answered_never_sends_again() {
    let (base, cloud) = fake_cloud().await;
    let mut env = enabled_env(&base);
    env.push(("PORTICO_OUTBOX_POLL_MS", "100"));
    env.push(("PORTICO_RETRY_POLL_MS", "100"));
    env.push(("PORTICO_LEASE_SECS", "5"));
    let server = Server::start(&whatsapp_entry(), &env);
    cloud.lock().unwrap().lock_db = Some(server.db_url.clone());
    let tenant = tenant_with_number(&server);
    // Connected before the outage (PostgreSQL refuses new connections during it).
    let db = server.db().await;
    // The provider accepts it, then the database refuses to record that for 12 s.
    let (status, json) = send(
        &server,
        json!({"tenant_id": tenant, "to": "+5511900999000", "body": "Locked out"}),
        Some(ADMIN),
    )
    .await;
    assert!(
        status < 500 || status == 502 || status == 503,
        "{status} {json}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let (st, err) = loop {
        let row: Option<(String, Option<String>)> = db.query_as(
            "SELECT status, error FROM messages WHERE direction = 'outbound' AND to_addr = '5511900999000'",
        )
        .fetch_optional(&db.pool)
        .await
        .unwrap_or(None);
        if let Some((st, err)) = &row
            && st != "pending"
        {
            break (st.clone(), err.clone());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {row:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    // Either the outcome was recorded once the store took writes again (the
    // outbox retries recording for a few seconds), or the attempt was found cut
    // off and is reported as possibly accepted; never sent a second time.
    match st.as_str() {
        "sent" => {}
        "failed" => assert!(err.unwrap_or_default().contains("may have accepted it")),
        other => panic!("unexpected status {other}"),
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        cloud.lock().unwrap().sent.len(),
        1,
        "the provider answered once: it is never called again"
    );
}

/// One inbound text message `wamid` to the number `pnid`.
fn inbound_on(pnid: &str, wamid: &str, text: &str) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid}, "contacts": [{"profile": {"name": "Ana"}, "wa_id": "16505551234"}], "messages": [{"from": "16505551234", "id": wamid, "timestamp": "1750030100", "type": "text", "text": {"body": text}}]}}]}]}).to_string()
}

async fn messages_and_their_statuses_are_the_tenant_s_own() {
    let (base, _cloud) = fake_cloud().await;
    let server = Server::start(&whatsapp_entry(), &enabled_env(&base));
    let ours = tenant_with_number(&server);
    let theirs = tenant_with("Other", "209876543210987", &server);
    let (status, json) = send(
        &server,
        json!({"tenant_id": ours, "to": "+16505551234", "body": "Hello"}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let wamid = json["wamid"].as_str().unwrap().to_string();

    // The other tenant's number reports a status for the same id: not ours to change.
    let foreign = post_delivery(
        &server,
        &statuses_on(
            "209876543210987",
            &wamid,
            &[("failed", Some((131026, "Undeliverable")))],
        ),
    )
    .await;
    let item = &foreign["items"][0];
    assert_eq!(item["status"], "ignored", "{foreign}");
    assert!(
        item["error"].as_str().unwrap().contains("unknown message"),
        "{foreign}"
    );
    let db = server.db().await;
    let status_of = |tenant: i64| {
        format!(
            "SELECT COUNT(*) FROM messages WHERE tenant_id = {tenant} AND external_id = '{wamid}' AND status = 'sent'"
        )
    };
    assert_eq!(count(&db, &status_of(ours)).await, 1);
    // Our own number's status moves our message.
    let own = post_delivery(&server, &statuses(&wamid, &[("delivered", None)])).await;
    assert_eq!(own["items"][0]["status"], "processed", "{own}");
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM messages WHERE tenant_id = {ours} AND external_id = '{wamid}' AND status = 'delivered'")
        )
        .await,
        1
    );
    // The same inbound id on two tenants' numbers: two messages, one per tenant.
    for pnid in [PNID, "209876543210987"] {
        let r = post_delivery(&server, &inbound_on(pnid, "wamid.SHARED", "hi")).await;
        assert_eq!(r["items"][0]["status"], "processed", "{r}");
    }
    for tenant in [ours, theirs] {
        assert_eq!(
            count(
                &db,
                &format!("SELECT COUNT(*) FROM messages WHERE tenant_id = {tenant} AND external_id = 'wamid.SHARED'")
            )
            .await,
            1
        );
    }
}
