//! Meta Lead Ads in full: Graph lead retrieval through the allow-listed outbound
//! import, Graph failures and replays, secret rotation, the handshake's edges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sqlx::Row;

both_backends!(
    [flavor = "multi_thread", worker_threads = 2]
    lead_is_filled_from_the_graph_api,
    graph_errors_fail_the_item_and_an_admin_replay_recovers_it,
    cli_replay_all_failed_processes_failed_events_once_graph_is_back,
    a_slow_graph_times_out_the_item_only,
    a_host_not_in_allowed_hosts_is_refused_by_the_host,
    the_answer_never_waits_for_the_graph_api,
);
both_backends!(
    any_rotated_secret_verifies_and_malformed_signatures_are_401,
    the_reference_test_vector_verifies_through_the_server,
    handshake_refuses_when_the_token_is_unset_or_parameters_missing,
    a_batch_of_entries_and_changes_is_processed_change_by_change,
);

const TOKEN: &str = "page-token-xyz";
const ADMIN: &str = "admin-token-123";

fn graph_env(graph: &FakeGraph) -> Vec<(&str, &str)> {
    vec![
        ("META_GRAPH_BASE_URL", graph.base.as_str()),
        ("META_PAGE_ACCESS_TOKEN", TOKEN),
        ("PORTICO_ADMIN_TOKEN", ADMIN),
    ]
}

/// The item's status and error once processed (items are processed after the answer).
async fn item_row(server: &Server, dedup_key: &str) -> (String, Option<String>) {
    let db = server.db().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let row = db
            .query("SELECT status, error FROM webhook_events WHERE kind = 'item' AND dedup_key = ?")
            .bind(dedup_key)
            .fetch_optional(&db.pool)
            .await
            .unwrap();
        if let Some(row) = row {
            let status: String = row.get("status");
            if status != "received" || std::time::Instant::now() > deadline {
                return (status, row.get("error"));
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{dedup_key} never split"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn lead_is_filled_from_the_graph_api() {
    let graph = FakeGraph::start(GraphMode::Ok).await;
    let server = Server::start(&meta_entry(&graph.meta_lines()), &graph_env(&graph));
    server.tenant_with_page(PAGE_ID);
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "1789012345678901"),
        APP_SECRET,
    )
    .await;
    server.processed(response).await;

    let db = server.db().await;
    let lead = db
        .query(
            "SELECT full_name, email, phone, ad_id, campaign_id, form_id, fields_json FROM leads",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(lead.get::<String, _>("full_name"), "José Pérez");
    assert_eq!(lead.get::<String, _>("email"), "jose.perez@example.com");
    assert_eq!(lead.get::<String, _>("phone"), "+5511987654321");
    assert_eq!(lead.get::<String, _>("ad_id"), "120215566778899001");
    assert_eq!(lead.get::<String, _>("campaign_id"), "120215566778899003");
    assert_eq!(lead.get::<String, _>("form_id"), "812345678901234");
    let fields: serde_json::Value =
        serde_json::from_str(&lead.get::<String, _>("fields_json")).unwrap();
    assert_eq!(fields["field_data"]["city"], "São Paulo");
    assert_eq!(fields["custom_disclaimer_responses"][0]["is_checked"], "1");
    assert_eq!(fields["ad_name"], "Spring promo – carousel");
    assert_eq!(graph.state.lock().unwrap().tokens, vec![TOKEN.to_string()]);
    // The token never reaches the logs.
    assert!(!server.log_text().contains(TOKEN));
}

async fn graph_errors_fail_the_item_and_an_admin_replay_recovers_it() {
    let graph = FakeGraph::start(GraphMode::Expired).await;
    let server = Server::start(&meta_entry(&graph.meta_lines()), &graph_env(&graph));
    server.tenant_with_page(PAGE_ID);
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "31"),
        APP_SECRET,
    )
    .await;
    assert_eq!(
        response.status(),
        200,
        "a Graph failure is never the provider's problem"
    );
    let (status, error) = item_row(&server, "leadgen:31").await;
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(
        error.contains("Session has expired") && error.contains("190"),
        "{error}"
    );

    let client = reqwest::Client::new();
    let unauthorized = client
        .post(server.url("/api/admin/dlq/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let listed: serde_json::Value = client
        .get(server.url("/api/admin/dlq?status=failed"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["events"][0]["dedup_key"], "leadgen:31", "{listed}");

    graph.set_mode(GraphMode::Ok);
    let dry: serde_json::Value = client
        .post(server.url("/api/admin/dlq/replay"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"dry_run": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry["matched"], 1, "{dry}");
    assert_eq!(
        count(&server.db().await, "SELECT COUNT(*) FROM leads").await,
        0,
        "a dry run changes nothing"
    );

    let replay: serde_json::Value = client
        .post(server.url("/api/admin/dlq/replay"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["succeeded"], 1, "{replay}");
    assert_eq!(item_row(&server, "leadgen:31").await.0, "processed");
    let db = server.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM leads WHERE full_name = 'José Pérez'"
        )
        .await,
        1
    );

    // Replaying what is already processed creates nothing new.
    let item: i64 = db
        .query_scalar("SELECT id FROM webhook_events WHERE dedup_key = 'leadgen:31'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let again = client
        .post(server.url(&format!("/api/admin/dlq/{item}/replay")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads").await, 1);
}

async fn cli_replay_all_failed_processes_failed_events_once_graph_is_back() {
    let graph = FakeGraph::start(GraphMode::Down).await;
    let server = Server::start(&meta_entry(&graph.meta_lines()), &graph_env(&graph));
    server.tenant_with_page(PAGE_ID);
    for id in ["41", "42"] {
        post_signed(
            &server.url("/api/integrations/meta/webhook"),
            &lead_body(PAGE_ID, id),
            APP_SECRET,
        )
        .await;
    }
    // Items are processed after the answers: wait for both to have failed.
    for key in ["leadgen:41", "leadgen:42"] {
        let (status, error) = item_row(&server, key).await;
        assert_eq!(status, "failed");
        assert!(error.unwrap().contains("HTTP 500"));
    }

    let listed = server.cli(&["dlq", "list", "--status", "failed"]);
    assert!(
        listed.contains("leadgen:41") && listed.contains("leadgen:42"),
        "{listed}"
    );

    graph.set_mode(GraphMode::Ok);
    let out = server.cli(&["dlq", "replay", "--all-failed"]);
    assert!(out.contains("2 processed, 0 still failing"), "{out}");
    assert_eq!(
        count(
            &server.db().await,
            "SELECT COUNT(*) FROM leads WHERE email IS NOT NULL"
        )
        .await,
        2
    );
}

async fn a_slow_graph_times_out_the_item_only() {
    let graph = FakeGraph::start(GraphMode::Slow(8_000)).await;
    let server = Server::start(&meta_entry(&graph.meta_lines()), &graph_env(&graph));
    server.tenant_with_page(PAGE_ID);
    let started = std::time::Instant::now();
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "51"),
        APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(7),
        "answered after {:?}",
        started.elapsed()
    );
    let (status, error) = item_row(&server, "leadgen:51").await;
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("timed out"));
}

async fn a_host_not_in_allowed_hosts_is_refused_by_the_host() {
    let graph = FakeGraph::start(GraphMode::Ok).await;
    // allowed_hosts names only the real Graph host, so the fake is off limits.
    let server = Server::start(
        &meta_entry("allowed_hosts = [\"https://graph.facebook.com\"]\n"),
        &graph_env(&graph),
    );
    server.tenant_with_page(PAGE_ID);
    post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "61"),
        APP_SECRET,
    )
    .await;
    let (status, error) = item_row(&server, "leadgen:61").await;
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(
        error.contains("not allowed for plugin meta") && error.contains("graph.facebook.com"),
        "{error}"
    );
    assert_eq!(graph.requests(), 0, "the fake must never have been called");
}

async fn any_rotated_secret_verifies_and_malformed_signatures_are_401() {
    let server = Server::start(
        &meta_entry(""),
        &[("META_APP_SECRET", "old-secret, new-secret")],
    );
    server.tenant_with_page(PAGE_ID);
    let url = server.url("/api/integrations/meta/webhook");
    assert_eq!(
        post_signed(&url, &lead_body(PAGE_ID, "71"), "old-secret")
            .await
            .status(),
        200
    );
    assert_eq!(
        post_signed(&url, &lead_body(PAGE_ID, "72"), "new-secret")
            .await
            .status(),
        200
    );

    let body = lead_body(PAGE_ID, "73");
    let good = sign(body.as_bytes(), "new-secret");
    let digest = good.trim_start_matches("sha256=");
    for (header, why) in [
        (format!("sha1={digest}"), "must start with"),
        (format!("sha256={}", &digest[..63]), "63 characters"),
        (format!("sha256={}z", &digest[..63]), "not hexadecimal"),
        (format!("sha256={}", "0".repeat(64)), "does not match"),
    ] {
        let r = reqwest::Client::new()
            .post(&url)
            .header("x-hub-signature-256", header.clone())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{header}");
        assert!(r.text().await.unwrap().contains(why), "{header}");
    }
    assert_eq!(
        count(&server.db().await, "SELECT COUNT(*) FROM leads").await,
        2
    );
}

async fn the_reference_test_vector_verifies_through_the_server() {
    // providers.md §A.4: these exact 496 bytes, signed with test_app_secret_123.
    let body =
        std::fs::read(workspace_root().join("host/tests/fixtures/providers-sig-test-body.json"))
            .unwrap();
    assert_eq!(body.len(), 496);
    let server = Server::start(
        &meta_entry(""),
        &[("META_APP_SECRET", "test_app_secret_123")],
    );
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/meta/webhook"))
        .header(
            "x-hub-signature-256",
            "sha256=541d4395b39052c617d54ee9a7f7adcce90805bcde97e3fa9ca592e20fa5d2ba",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    // Verified, stored; the WhatsApp-shaped body is then refused by the Meta parser (dead, not lost).
    let json = server.processed(r).await;
    assert_eq!(json["status"], "dead", "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("unsupported_object")
    );
}

async fn handshake_refuses_when_the_token_is_unset_or_parameters_missing() {
    let unset = Server::start(&meta_entry(""), &[]);
    let r = reqwest::get(unset.url(
        "/api/integrations/meta/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=",
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    let server = Server::start(&meta_entry(""), &[("META_VERIFY_TOKEN", "tok")]);
    let base = server.url("/api/integrations/meta/webhook");
    for query in [
        "",
        "?hub.mode=subscribe&hub.verify_token=tok",
        "?hub.challenge=1&hub.verify_token=tok",
        "?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=tok",
    ] {
        assert_eq!(
            reqwest::get(format!("{base}{query}"))
                .await
                .unwrap()
                .status(),
            403,
            "{query}"
        );
    }
    let opaque = reqwest::get(format!(
        "{base}?hub.mode=subscribe&hub.challenge=ch-%C3%A9_x%2B1&hub.verify_token=tok"
    ))
    .await
    .unwrap();
    assert_eq!(opaque.status(), 200);
    assert_eq!(opaque.text().await.unwrap(), "ch-é_x+1");
}

async fn a_batch_of_entries_and_changes_is_processed_change_by_change() {
    let server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    let body = std::fs::read_to_string(
        workspace_root().join("host/tests/fixtures/meta-leadgen-batch.json"),
    )
    .unwrap();
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
    assert_eq!(
        statuses,
        ["processed", "processed", "processed", "ignored", "failed"],
        "{json}"
    );
    let db = server.db().await;
    let ids: Vec<String> = db
        .query_scalar("SELECT external_id FROM leads ORDER BY external_id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(ids, ["123123123123", "123123123124", "233370042045345"]);
    // The test-tool lead has no ad id.
    let ad: Option<String> = db
        .query_scalar("SELECT ad_id FROM leads WHERE external_id = '233370042045345'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(ad, None);
}

async fn the_answer_never_waits_for_the_graph_api() {
    // Graph holds every lead GET until the test lets it go: an answer that waited
    // for it would never come.
    let graph = FakeGraph::start(GraphMode::Held).await;
    let server = Server::start(&meta_entry(&graph.meta_lines()), &graph_env(&graph));
    server.tenant_with_page(PAGE_ID);
    let mut answers = Vec::new();
    for id in ["501", "502", "503"] {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            post_signed(
                &server.url("/api/integrations/meta/webhook"),
                &lead_body(PAGE_ID, id),
                APP_SECRET,
            ),
        )
        .await
        .expect("the webhook answered while Graph was still holding its lead");
        assert_eq!(answer.status(), 200);
        let json: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(json["status"], "received", "{json}");
        answers.push(json["event_id"].as_i64().unwrap());
    }
    let db = server.db().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leads").await, 0);
    graph.release();
    for id in answers {
        let outcome = server.outcome(id).await;
        assert_eq!(outcome["items"][0]["status"], "processed", "{outcome}");
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM leads WHERE full_name = 'José Pérez'"
        )
        .await,
        3,
        "every lead got its Graph fields"
    );
}
