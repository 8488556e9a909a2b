//! WhatsApp as it speaks in late 2026, through the real server and the
//! bundled adapter: users known by a business-scoped user id (BSUID) and a
//! username with no phone, sends to a BSUID, edits and revokes of earlier
//! messages, Flow replies, call permission replies, an interactive message
//! that came with only an error, and changed numbers that move a contact.
//!
//! The payloads are built from the documented fields; each names its source:
//! - WA-BSUID: Meta, "Business-scoped user IDs",
//!   developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids
//!   (incoming message and status examples, "Send message requests", system messages);
//! - WA-EDIT / WA-REVOKE: Meta webhook references `…/whatsapp/webhooks/reference/messages/{edit,revoke}`;
//! - WA-FLOW: Meta, "Receiving Flow Response" (`nfm_reply`);
//! - PYWA: github.com/david-lev/pywa tests/data/updates (`call_permission_update.json`,
//!   `message.json` key `interactive_message_with_err`);
//! - WA-SYS: Meta webhook reference `…/messages/system` (`user_changed_number`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const WA_SECRET: &str = "wa-secret";
const PNID: &str = "106540352242922";
const BSUID: &str = "US.13491208655302741918";

both_backends!(
    [flavor = "multi_thread", worker_threads = 2]
    a_username_only_user_is_one_contact_by_user_id_and_gets_replies,
    edits_and_revokes_change_the_original_message,
    flow_call_permission_and_error_only_messages_read_well,
    a_changed_number_moves_the_contact_and_never_forks_it,
    a_recycled_number_is_another_person,
);

fn entry() -> String {
    format!(
        r#"
[plugins.whatsapp]
path = "{}"
allowed_hosts = [{{ env = "WHATSAPP_API_BASE_URL" }}]
[plugins.whatsapp.config]
api_base_url = {{ env = "WHATSAPP_API_BASE_URL" }}
api_version = "25.0"
[plugins.whatsapp.secrets]
app_secret = {{ env = "WHATSAPP_APP_SECRET" }}
access_token = {{ env = "WHATSAPP_ACCESS_TOKEN" }}
"#,
        plugin_wasm("portico-whatsapp").display()
    )
}

/// phone, user id, username, name.
type ContactRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What a fake Cloud API was sent.
type Sent = Arc<Mutex<Vec<Value>>>;

/// A fake Cloud API answering as WA-BSUID documents for a send to a BSUID.
async fn fake_cloud() -> (String, Sent) {
    let sent: Sent = Arc::default();
    async fn messages(
        axum::extract::State(sent): axum::extract::State<Sent>,
        body: String,
    ) -> axum::Json<Value> {
        let body: Value = serde_json::from_str(&body).unwrap();
        let mut sent = sent.lock().unwrap();
        sent.push(body.clone());
        let input = body["recipient"]
            .as_str()
            .or(body["to"].as_str())
            .unwrap_or("");
        let contact = if body.get("recipient").is_some() {
            json!({"input": input, "user_id": input})
        } else {
            json!({"input": input, "wa_id": input})
        };
        axum::Json(
            json!({"messaging_product": "whatsapp", "contacts": [contact],
            "messages": [{"id": format!("wamid.SENT{}", sent.len())}]}),
        )
    }
    let app = axum::Router::new()
        .route("/{v}/{pnid}/messages", axum::routing::post(messages))
        .with_state(sent.clone());
    (serve_fake(app).await, sent)
}

fn start(base: &str) -> Server {
    let server = Server::start(
        &entry(),
        &[
            ("WHATSAPP_APP_SECRET", WA_SECRET),
            ("WHATSAPP_ACCESS_TOKEN", "EAAJB-token"),
            ("WHATSAPP_API_BASE_URL", base),
            ("PORTICO_INTAKE_TOKEN", "crm"),
        ],
    );
    let id = server.cli(&["tenant", "add", "Acme"]).trim().to_string();
    server.cli(&[
        "source", "add", "--tenant", &id, "--kind", "whatsapp", "--key", PNID,
    ]);
    server
}

/// A delivery of one `value` (contacts, messages, statuses, errors) for the number.
fn delivery(value: Value) -> String {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({"display_phone_number": "15550783881", "phone_number_id": PNID});
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": value}]}]})
    .to_string()
}

async fn post(server: &Server, value: Value) -> Value {
    let r = post_signed(
        &server.url("/api/integrations/whatsapp/webhook"),
        &delivery(value),
        WA_SECRET,
    )
    .await;
    assert_eq!(r.status(), 200);
    server.processed(r).await
}

async fn rows<T>(server: &Server, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let db = server.db().await;
    db.query_as::<T>(sql)
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn a_username_only_user_is_one_contact_by_user_id_and_gets_replies() {
    let (base, sent) = fake_cloud().await;
    let server = start(&base);
    // WA-BSUID "Incoming messages webhooks": a username, a BSUID, no wa_id, no from.
    let incoming = json!({
        "contacts": [{"profile": {"name": "Sheena Nelson", "username": "@realsheenanelson"}, "user_id": BSUID}],
        "messages": [{"from_user_id": BSUID, "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}}]
    });
    let answer = post(&server, incoming).await;
    assert!(
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "processed"),
        "{answer}"
    );
    let contacts: Vec<ContactRow> = rows(
        &server,
        "SELECT phone, user_id, username, name FROM contacts",
    )
    .await;
    assert_eq!(
        contacts,
        vec![(
            None,
            Some(BSUID.into()),
            Some("@realsheenanelson".into()),
            Some("Sheena Nelson".into())
        )]
    );
    let from: Vec<(Option<String>, String)> =
        rows(&server, "SELECT from_addr, body FROM messages").await;
    assert_eq!(
        from,
        vec![(Some(BSUID.into()), "Does it come in another color?".into())]
    );

    // A reply to that user: `recipient` is the BSUID, no `to` (WA-BSUID "Send message requests").
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/whatsapp/send"))
        .bearer_auth("crm")
        .json(&json!({"tenant_id": 1, "to": BSUID, "body": "Yes, in blue."}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    {
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["recipient"], BSUID);
        assert!(sent[0].get("to").is_none(), "{}", sent[0]);
        assert_eq!(sent[0]["recipient_type"], "individual");
    }
    // The reply is filed under the same contact and case.
    let linked: Vec<(i64, i64)> = rows(
        &server,
        "SELECT COUNT(DISTINCT contact_id), COUNT(DISTINCT case_id) FROM messages",
    )
    .await;
    assert_eq!(linked, vec![(1, 1)]);

    // WA-BSUID status example: delivered, to the BSUID, contacts[] with the username.
    let status = json!({
        "contacts": [{"profile": {"name": "Sheena Nelson", "username": "@realsheenanelson"}, "user_id": BSUID}],
        "statuses": [{"id": "wamid.SENT1", "status": "delivered", "timestamp": "1750030073",
            "recipient_user_id": BSUID, "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"}}]
    });
    let answer = post(&server, status).await;
    assert_eq!(answer["items"][0]["status"], "processed", "{answer}");
    let status: Vec<(String,)> = rows(
        &server,
        "SELECT status FROM messages WHERE external_id = 'wamid.SENT1'",
    )
    .await;
    assert_eq!(status, vec![("delivered".to_string(),)]);

    // Later the user shares the number too: one contact with both, never two.
    let both = json!({
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234", "user_id": BSUID}],
        "messages": [{"from": "16505551234", "from_user_id": BSUID, "id": "wamid.BOTH", "timestamp": "1749416400",
            "type": "text", "text": {"body": "My number is this one"}}]
    });
    post(&server, both).await;
    let contacts: Vec<(Option<String>, Option<String>)> =
        rows(&server, "SELECT phone, user_id FROM contacts").await;
    assert_eq!(
        contacts,
        vec![(Some("16505551234".into()), Some(BSUID.into()))]
    );
    // A message by phone alone finds the same contact.
    let by_phone = json!({
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [{"from": "16505551234", "id": "wamid.PHONE", "timestamp": "1749416500",
            "type": "text", "text": {"body": "By phone"}}]
    });
    post(&server, by_phone).await;
    let linked: Vec<(i64, i64)> = rows(
        &server,
        "SELECT COUNT(DISTINCT contact_id), COUNT(DISTINCT case_id) FROM messages",
    )
    .await;
    assert_eq!(linked, vec![(1, 1)]);
}

async fn edits_and_revokes_change_the_original_message() {
    let (base, _sent) = fake_cloud().await;
    let server = start(&base);
    let contacts =
        json!([{"profile": {"name": "Pablo Morales"}, "wa_id": "16505551234", "user_id": BSUID}]);
    // Two messages, then an edit of the first (WA-EDIT: an image whose caption
    // changed) and a revoke of the second (WA-REVOKE).
    post(&server, json!({"contacts": contacts, "messages": [
        {"from": "16505551234", "id": "wamid.IMG", "timestamp": "1739321024", "type": "image",
         "image": {"caption": "Blue jacket", "mime_type": "image/jpeg", "sha256": "abc", "id": "1003383421387256"}},
        {"from": "16505551234", "id": "wamid.TXT", "timestamp": "1739321025", "type": "text", "text": {"body": "ignore that"}}
    ]})).await;
    let answer = post(&server, json!({"contacts": contacts, "messages": [
        {"from": "16505551234", "id": "wamid.EDIT1", "timestamp": "1739321100", "type": "edit",
         "edit": {"original_message_id": "wamid.IMG", "message": {"context": {"id": "wamid.IMG"}, "type": "image",
            "image": {"caption": "Blue jacket, size M", "mime_type": "image/jpeg", "sha256": "abc", "id": "1003383421387256", "url": "https://lookaside.fbsbx.com/x"}}}},
        {"from": "16505551234", "id": "wamid.REVOKE1", "timestamp": "1739321200", "type": "revoke",
         "revoke": {"original_message_id": "wamid.TXT"}},
        // An edit and a revoke of messages Portico never saw.
        {"from": "16505551234", "id": "wamid.EDIT2", "timestamp": "1739321300", "type": "edit",
         "edit": {"original_message_id": "wamid.NEVER", "message": {"type": "text", "text": {"body": "x"}}}},
        {"from": "16505551234", "id": "wamid.REVOKE2", "timestamp": "1739321400", "type": "revoke",
         "revoke": {"original_message_id": "wamid.NEVER2"}}
    ]})).await;
    let items = answer["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "processed", "{answer}");
    assert_eq!(items[1]["status"], "processed", "{answer}");
    for (at, original) in [
        (2, "an edit of message wamid.NEVER,"),
        (3, "a revoke of message wamid.NEVER2,"),
    ] {
        assert_eq!(items[at]["status"], "ignored", "{answer}");
        assert!(
            items[at]["error"].as_str().unwrap_or("").contains(original),
            "the unknown original is named: {answer}"
        );
    }
    // The changes carry WhatsApp's own times, not the time they were applied.
    let db = server.db().await;
    let times: Vec<(i64, i64)> = db
        .query_as(db.pick(
            "SELECT CAST(COALESCE(strftime('%s', edited_at), 0) AS BIGINT), CAST(COALESCE(strftime('%s', deleted_at), 0) AS BIGINT) FROM messages ORDER BY id",
            "SELECT CAST(COALESCE(EXTRACT(EPOCH FROM edited_at), 0) AS BIGINT), CAST(COALESCE(EXTRACT(EPOCH FROM deleted_at), 0) AS BIGINT) FROM messages ORDER BY id",
        ))
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(times, vec![(1739321100, 0), (0, 1739321200)]);

    let messages: Vec<(String, String, i64, i64)> = rows(
        &server,
        "SELECT external_id, body, CAST(CASE WHEN edited_at IS NULL THEN 0 ELSE 1 END AS BIGINT),
         CAST(CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM messages ORDER BY id",
    )
    .await;
    assert_eq!(
        messages,
        vec![
            ("wamid.IMG".into(), "Blue jacket, size M".into(), 1, 0),
            ("wamid.TXT".into(), "ignore that".into(), 0, 1),
        ],
        "the edit and the revoke are not messages of their own"
    );
}

async fn flow_call_permission_and_error_only_messages_read_well() {
    let (base, _sent) = fake_cloud().await;
    let server = start(&base);
    let contacts = json!([{"profile": {"name": "Ana"}, "wa_id": "5511987654321"}]);
    let answer = post(&server, json!({"contacts": contacts, "messages": [
        // WA-FLOW: a Flow completion; response_json is a JSON string.
        {"context": {"from": "15550783881", "id": "wamid.FLOWSENT"}, "from": "5511987654321", "id": "wamid.FLOW",
         "timestamp": "1750000000", "type": "interactive",
         "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
            "response_json": "{\"flow_token\":\"t-1\",\"appointment_date\":\"2026-12-01\",\"party_size\":4}"}}},
        // WA-BSUID "Call permission request webhooks" / PYWA call_permission_update.json.
        {"from": "5511987654321", "id": "wamid.CALL", "timestamp": "1750000001", "type": "interactive",
         "interactive": {"type": "call_permission_reply", "call_permission_reply":
            {"response": "accept", "expiration_timestamp": 1753186982, "response_source": "user_action"}}},
        {"from": "5511987654321", "id": "wamid.CALLNO", "timestamp": "1750000002", "type": "interactive",
         "interactive": {"type": "call_permission_reply", "call_permission_reply": {"response": "reject", "response_source": "user_action"}}},
        // PYWA interactive_message_with_err: no interactive object; the error is the value's.
        {"from": "5511987654321", "id": "wamid.ERR", "timestamp": "1750000003", "type": "interactive"}
    ], "errors": [{"code": 131000, "title": "Something went wrong", "message": "Something went wrong",
        "error_data": {"details": "Unsupported webhook payload"}}]})).await;
    let bodies: Vec<(String, String)> = rows(
        &server,
        "SELECT external_id, body FROM messages ORDER BY id",
    )
    .await;
    let body = |w: &str| {
        bodies
            .iter()
            .find(|(id, _)| id == w)
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    assert_eq!(
        body("wamid.FLOW"),
        "Flow reply (flow): appointment_date: 2026-12-01; party_size: 4"
    );
    assert_eq!(
        body("wamid.CALL"),
        "Call permission accepted until 1753186982 (unix time)"
    );
    assert_eq!(body("wamid.CALLNO"), "Call permission rejected");
    assert_eq!(body("wamid.ERR"), "Something went wrong");
    // The value-level error is recorded as what it is, not as the number's.
    assert!(
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["status"] == "ignored"
                && i["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("webhook error with its messages: 131000 Something went wrong")),
        "{answer}"
    );
}

async fn a_changed_number_moves_the_contact_and_never_forks_it() {
    let (base, _sent) = fake_cloud().await;
    let server = start(&base);
    post(&server, json!({"contacts": [{"profile": {"name": "José"}, "wa_id": "16505551234", "user_id": BSUID}],
        "messages": [{"from": "16505551234", "from_user_id": BSUID, "id": "wamid.OLD", "timestamp": "1749000000",
            "type": "text", "text": {"body": "Hi"}}]})).await;
    // WA-SYS + WA-BSUID "System status messages webhooks": the new number and the new BSUID.
    post(&server, json!({"messages": [{"from": "16505551234", "from_user_id": BSUID, "id": "wamid.SYS",
        "timestamp": "1749000100", "type": "system",
        "system": {"body": "User José changed from 16505551234 to 12195555358", "wa_id": "12195555358",
            "user_id": "US.99990000111122223333", "type": "user_changed_number"}}]})).await;
    post(&server, json!({"contacts": [{"profile": {"name": "José"}, "wa_id": "12195555358", "user_id": "US.99990000111122223333"}],
        "messages": [{"from": "12195555358", "from_user_id": "US.99990000111122223333", "id": "wamid.NEW",
            "timestamp": "1749000200", "type": "text", "text": {"body": "New number"}}]})).await;
    let contacts: Vec<(Option<String>, Option<String>, Option<String>)> =
        rows(&server, "SELECT phone, user_id, name FROM contacts").await;
    assert_eq!(
        contacts,
        vec![(
            Some("12195555358".into()),
            Some("US.99990000111122223333".into()),
            Some("José".into())
        )]
    );
    let linked: Vec<(i64, i64, i64)> = rows(
        &server,
        "SELECT COUNT(*), COUNT(DISTINCT contact_id), COUNT(DISTINCT case_id) FROM messages",
    )
    .await;
    assert_eq!(
        linked,
        vec![(3, 1, 1)],
        "one contact, one case, and the notice kept as a message"
    );
}

async fn a_recycled_number_is_another_person() {
    let (base, _sent) = fake_cloud().await;
    let server = start(&base);
    // The number's first owner, with their own BSUID.
    post(&server, json!({"contacts": [{"profile": {"name": "Old owner"}, "wa_id": "16505550000", "user_id": "US.111"}],
        "messages": [{"from": "16505550000", "from_user_id": "US.111", "id": "wamid.R1", "timestamp": "1749000000",
            "type": "text", "text": {"body": "first owner"}}]})).await;
    // Years later, the number belongs to someone else (another BSUID).
    post(&server, json!({"contacts": [{"profile": {"name": "New owner"}, "wa_id": "16505550000", "user_id": "US.222"}],
        "messages": [{"from": "16505550000", "from_user_id": "US.222", "id": "wamid.R2", "timestamp": "1749900000",
            "type": "text", "text": {"body": "second owner"}}]})).await;
    let contacts: Vec<(Option<String>, Option<String>, Option<String>)> = rows(
        &server,
        "SELECT phone, user_id, name FROM contacts ORDER BY id",
    )
    .await;
    assert_eq!(
        contacts,
        vec![
            (None, Some("US.111".into()), Some("Old owner".into())),
            (
                Some("16505550000".into()),
                Some("US.222".into()),
                Some("New owner".into())
            ),
        ],
        "two people, the number with its current owner"
    );
}

/// The WhatsApp adapter as built against WIT 0.2.2 (commit 0cef4e9, before
/// 0.3.0), kept as a fixture: the host converts its messages, statuses,
/// sends, deliveries and answers at the edge, and its imports (outbound,
/// directory) work under their 0.2 names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_adapter_built_against_0_2_still_serves() {
    let (base, sent) = fake_cloud().await;
    let old = workspace_root().join("host/tests/fixtures/whatsapp_wit_0_2_2.wasm");
    let toml = entry().replace(
        &plugin_wasm("portico-whatsapp").display().to_string(),
        &old.display().to_string(),
    );
    let server = Server::start(
        &toml,
        &[
            ("WHATSAPP_APP_SECRET", WA_SECRET),
            ("WHATSAPP_ACCESS_TOKEN", "EAAJB-token"),
            ("WHATSAPP_API_BASE_URL", &base),
            ("PORTICO_INTAKE_TOKEN", "crm"),
        ],
    );
    let id = server.cli(&["tenant", "add", "Acme"]).trim().to_string();
    server.cli(&[
        "source", "add", "--tenant", &id, "--kind", "whatsapp", "--key", PNID,
    ]);
    let answer = post(&server, json!({"contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511987654321"}],
        "messages": [{"from": "5511987654321", "id": "wamid.OLD1", "timestamp": "1749416383", "type": "text", "text": {"body": "Oi"}}]})).await;
    assert_eq!(answer["items"][0]["status"], "processed", "{answer}");
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/whatsapp/send"))
        .bearer_auth("crm")
        .json(&json!({"tenant_id": 1, "to": "+55 11 98765-4321", "body": "Olá"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(sent.lock().unwrap()[0]["to"], "+55 11 98765-4321");
    let answer = post(&server, json!({"statuses": [{"id": "wamid.SENT1", "status": "read", "timestamp": "1750030073", "recipient_id": "5511987654321"}]})).await;
    assert_eq!(answer["items"][0]["status"], "processed", "{answer}");
    let messages: Vec<(String, Option<String>, String)> = rows(
        &server,
        "SELECT direction, external_id, status FROM messages ORDER BY id",
    )
    .await;
    assert_eq!(
        messages,
        vec![
            (
                "inbound".into(),
                Some("wamid.OLD1".into()),
                "received".into()
            ),
            ("outbound".into(), Some("wamid.SENT1".into()), "read".into()),
        ]
    );
    let contacts: Vec<(Option<String>, Option<String>)> =
        rows(&server, "SELECT phone, user_id FROM contacts").await;
    assert_eq!(contacts, vec![(Some("5511987654321".into()), None)]);
    // plugin check names the contract it was built against and what 0.3 added.
    let out = server.cli(&["plugin", "check", old.to_str().unwrap()]);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["world"], "portico:adapter/adapter@0.2.2", "{json}");
    assert!(
        json["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("Since 0.3.0"),
        "{json}"
    );
}
