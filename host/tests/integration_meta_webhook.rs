//! The way of a Meta lead webhook through the real server (README, "How a webhook goes").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sqlx::Row;

both_backends!(
    signed_lead_is_stored_with_its_raw_event,
    correlation_id_is_generated_when_not_sent,
    wrong_or_missing_signature_is_401_and_nothing_is_stored,
    duplicate_delivery_makes_one_lead,
    unknown_page_fails_its_item_and_still_answers_200,
    one_bad_change_does_not_hold_back_the_others,
    legacy_route_behaves_like_the_canonical_one,
    handshake_echoes_the_challenge_only_for_the_right_token,
    body_above_the_plugin_limit_is_413,
    store_that_cannot_be_written_answers_503,
    unknown_routes_answer_json_404,
    a_delivery_sent_again_after_its_item_failed_stores_the_lead,
);

async fn signed_lead_is_stored_with_its_raw_event() {
    let server = Server::start(&meta_entry(""), &[]);
    let tenant = server.tenant_with_page(PAGE_ID);
    let body = lead_body(PAGE_ID, "233370042045345");

    let response = reqwest::Client::new()
        .post(server.url("/api/integrations/meta/webhook"))
        .header("x-hub-signature-256", sign(body.as_bytes(), APP_SECRET))
        .header("x-request-id", "req-abc-123")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-abc-123");
    server.processed(response).await;

    let db = server.db().await;
    let lead = db
        .query("SELECT tenant_id, source, external_id, form_id, fields_json FROM leads")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(lead.get::<i64, _>("tenant_id"), tenant);
    assert_eq!(lead.get::<String, _>("source"), "Meta");
    assert_eq!(lead.get::<String, _>("external_id"), "233370042045345");
    assert_eq!(lead.get::<String, _>("form_id"), "172036835026334");

    let delivery = db.query(
        "SELECT source, correlation_id, payload, payload_hash, status FROM webhook_events WHERE kind = 'delivery'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(delivery.get::<String, _>("source"), "meta");
    assert_eq!(delivery.get::<String, _>("correlation_id"), "req-abc-123");
    assert_eq!(delivery.get::<Vec<u8>, _>("payload"), body.as_bytes());
    assert_eq!(
        delivery.get::<String, _>("payload_hash"),
        sha256_hex(body.as_bytes())
    );
    let item_status: String =
        db.query_scalar("SELECT status FROM webhook_events WHERE kind = 'item' AND dedup_key = 'leadgen:233370042045345'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(item_status, "processed");
}

async fn correlation_id_is_generated_when_not_sent() {
    let server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "1"),
        APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36, "a uuid: {id}");
    let db = server.db().await;
    let stored: String = db
        .query_scalar("SELECT correlation_id FROM webhook_events WHERE kind = 'delivery'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, id);
}

async fn wrong_or_missing_signature_is_401_and_nothing_is_stored() {
    let server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    let url = server.url("/api/integrations/meta/webhook");
    let body = lead_body(PAGE_ID, "42");

    let wrong = post_signed(&url, &body, "not-the-secret").await;
    assert_eq!(wrong.status(), 401);
    let json: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(json["error"], "invalid_signature");
    assert!(
        json["message"].as_str().unwrap().contains("does not match"),
        "{json}"
    );

    let missing = reqwest::Client::new()
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let json: serde_json::Value = missing.json().await.unwrap();
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("missing X-Hub-Signature-256"),
        "{json}"
    );

    let db = server.db().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM webhook_events").await, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads").await, 0);
}

async fn duplicate_delivery_makes_one_lead() {
    let server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    let url = server.url("/api/integrations/meta/webhook");
    let body = lead_body(PAGE_ID, "777");

    let first = post_signed(&url, &body, APP_SECRET).await;
    let json = server.processed(first).await;
    assert_eq!(json["items"][0]["status"], "processed", "{json}");
    let second = post_signed(&url, &body, APP_SECRET).await;
    let json = server.processed(second).await;
    assert_eq!(json["items"][0]["status"], "duplicate", "{json}");

    let db = server.db().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads").await, 1);
    // Both deliveries are kept as received; the item exists once.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM webhook_events WHERE kind = 'delivery'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM webhook_events WHERE kind = 'item'"
        )
        .await,
        1
    );
}

async fn unknown_page_fails_its_item_and_still_answers_200() {
    let server = Server::start(&meta_entry(""), &[]);
    let url = server.url("/api/integrations/meta/webhook");
    let response = post_signed(&url, &lead_body("999000999", "555"), APP_SECRET).await;
    let json = server.processed(response).await;
    assert_eq!(json["items"][0]["status"], "failed", "{json}");

    let db = server.db().await;
    let row = db
        .query("SELECT status, error, CAST(next_attempt_at AS TEXT) AS next_attempt_at FROM webhook_events WHERE kind = 'item'")
        .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("status"), "failed");
    let error: String = row.get("error");
    assert!(
        error.contains("no tenant is mapped to meta key \"999000999\"")
            && error.contains("portico source add"),
        "{error}"
    );
    assert!(row.get::<Option<String>, _>("next_attempt_at").is_some());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads").await, 0);
}

async fn one_bad_change_does_not_hold_back_the_others() {
    let server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    // Two pages: one mapped, one not; plus a change of a field the adapter ignores.
    let body = format!(
        r#"{{"object":"page","entry":[
            {{"id":"{PAGE_ID}","time":1,"changes":[{{"field":"leadgen","value":{{"leadgen_id":"1001","page_id":"{PAGE_ID}","form_id":"9"}}}},
                                              {{"field":"feed","value":{{"item":"post"}}}}]}},
            {{"id":"424242","time":1,"changes":[{{"field":"leadgen","value":{{"leadgen_id":1002,"page_id":424242,"form_id":9}}}}]}}]}}"#
    );
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &body,
        APP_SECRET,
    )
    .await;
    let json = server.processed(response).await;
    let statuses: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["processed", "ignored", "failed"], "{json}");
    let db = server.db().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM leads WHERE external_id = '1001'").await,
        1
    );
}

async fn legacy_route_behaves_like_the_canonical_one() {
    let server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    let url = server.url("/api/webhooks/meta/leads");
    let bad = post_signed(&url, &lead_body(PAGE_ID, "9"), "wrong").await;
    assert_eq!(bad.status(), 401);
    let good = post_signed(&url, &lead_body(PAGE_ID, "9"), APP_SECRET).await;
    server.processed(good).await;
    let db = server.db().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM leads WHERE external_id = '9'").await,
        1
    );
}

async fn handshake_echoes_the_challenge_only_for_the_right_token() {
    let server = Server::start(&meta_entry(""), &[("META_VERIFY_TOKEN", "my-verify-token")]);
    let base = server.url("/api/integrations/meta/webhook");
    let ok = reqwest::get(format!(
        "{base}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my-verify-token"
    ))
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = reqwest::get(format!(
        "{base}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope"
    ))
    .await
    .unwrap();
    assert_eq!(wrong.status(), 403);
}

async fn body_above_the_plugin_limit_is_413() {
    let server = Server::start(&meta_entry("limits = { max_body_bytes = 2048 }"), &[]);
    let big = "x".repeat(4096);
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &big,
        APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 413);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["error"], "payload_too_large");
    assert!(
        json["message"].as_str().unwrap().contains("max_body_bytes"),
        "{json}"
    );
}

async fn store_that_cannot_be_written_answers_503() {
    let server = Server::start(&meta_entry(""), &[]);
    let db = server.db().await;
    db.execute("DROP TABLE webhook_events").await;
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "1"),
        APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 503);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["error"], "store_unavailable");
}

async fn unknown_routes_answer_json_404() {
    let server = Server::start(&meta_entry(""), &[]);
    for path in [
        "/nope",
        "/api/integrations/nothing/webhook",
        "/api/integrations/meta/other",
    ] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "not_found", "{path}");
    }
}

async fn a_delivery_sent_again_after_its_item_failed_stores_the_lead() {
    let server = Server::start(&meta_entry(""), &[]);
    let url = server.url("/api/integrations/meta/webhook");
    let body = lead_body(PAGE_ID, "777001");
    // First: the page is not mapped yet, so the item fails (and waits for a retry).
    let json = server
        .processed(post_signed(&url, &body, APP_SECRET).await)
        .await;
    assert_eq!(json["items"][0]["status"], "failed", "{json}");
    let item_id = json["items"][0]["event_id"].as_i64().unwrap();

    // The operator maps the page; Meta sends the same delivery again.
    server.tenant_with_page(PAGE_ID);
    let response = post_signed(&url, &body, APP_SECRET).await;
    let json = server.processed(response).await;
    assert_eq!(json["items"][0]["status"], "processed", "{json}");
    assert_eq!(
        json["items"][0]["event_id"], item_id,
        "the resend lands on the item's first row"
    );
    let db = server.db().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads").await, 1);
    let (status, attempts): (String, i64) = db
        .query_as("SELECT status, attempts FROM webhook_events WHERE id = ?")
        .bind(item_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("processed", 2));

    // A third time: processed already, a no-op.
    let json = server
        .processed(post_signed(&url, &body, APP_SECRET).await)
        .await;
    assert_eq!(json["items"][0]["status"], "duplicate", "{json}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM webhook_events WHERE status IN ('failed', 'received', 'dead')"
        )
        .await,
        0
    );
}
