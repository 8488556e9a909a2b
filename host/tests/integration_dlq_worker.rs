//! The retry worker: backoff, giving up, health's DLQ figures, retention.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sqlx::Row;
use std::time::{Duration, Instant};

both_backends!(
    [flavor = "multi_thread", worker_threads = 2]
    a_failed_item_is_retried_once_the_operator_fixes_the_cause,
    an_item_out_of_attempts_goes_dead_and_health_counts_it,
    unparseable_payloads_go_dead_at_once,
    old_finished_events_are_pruned_and_failures_kept,
);

async fn wait_for_status(
    server: &Server,
    dedup_key: &str,
    want: &str,
    within: Duration,
) -> (String, Option<String>, i64) {
    let db = server.db().await;
    let deadline = Instant::now() + within;
    loop {
        let row = db
            .query("SELECT status, error, attempts FROM webhook_events WHERE dedup_key = ?")
            .bind(dedup_key)
            .fetch_optional(&db.pool)
            .await
            .unwrap();
        if let Some(row) = row {
            let status: String = row.get("status");
            if status == want || Instant::now() > deadline {
                return (status, row.get("error"), row.get("attempts"));
            }
        }
        assert!(Instant::now() < deadline, "{dedup_key} was never split");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_failed_item_is_retried_once_the_operator_fixes_the_cause() {
    let server = Server::start(
        &meta_entry(""),
        &[
            ("PORTICO_RETRY_POLL_MS", "100"),
            ("PORTICO_RETRY_SCHEDULE_SECS", "1,1,1,1,1"),
        ],
    );
    post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body("31415", "81"),
        APP_SECRET,
    )
    .await;
    let (status, error, _) =
        wait_for_status(&server, "leadgen:81", "failed", Duration::from_secs(1)).await;
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("no tenant is mapped"));

    let health: serde_json::Value = reqwest::get(server.url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["dlq"]["failed"], 1, "{health}");
    assert!(health["dlq"]["oldest_failed_age_seconds"].as_f64().unwrap() >= 0.0);

    // The operator maps the page; the worker's next attempt succeeds.
    server.tenant_with_page("31415");
    let (status, _, attempts) =
        wait_for_status(&server, "leadgen:81", "processed", Duration::from_secs(15)).await;
    assert_eq!(status, "processed");
    assert!(attempts >= 2, "attempts = {attempts}");
    assert_eq!(
        count(
            &server.db().await,
            "SELECT COUNT(*) FROM leads WHERE external_id = '81'"
        )
        .await,
        1
    );
    let log = server
        .wait_for_log("the retry's line", |l| l.contains("retry attempt finished"))
        .await
        .join("\n");
    assert!(log.contains("correlation_id"), "{log}");
}

async fn an_item_out_of_attempts_goes_dead_and_health_counts_it() {
    let server = Server::start(
        &meta_entry(""),
        &[
            ("PORTICO_RETRY_POLL_MS", "100"),
            ("PORTICO_RETRY_SCHEDULE_SECS", "1"),
        ],
    );
    post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body("27182", "82"),
        APP_SECRET,
    )
    .await;
    let (status, error, attempts) =
        wait_for_status(&server, "leadgen:82", "dead", Duration::from_secs(15)).await;
    assert_eq!(status, "dead");
    assert_eq!(attempts, 2);
    assert!(
        error
            .unwrap()
            .starts_with("gave up after 2 attempts: no tenant is mapped")
    );
    let health: serde_json::Value = reqwest::get(server.url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["dlq"]["dead"], 1, "{health}");
    assert_eq!(health["dlq"]["failed"], 0, "{health}");

    // Dead waits for a replay: with the page mapped, `--all-failed --include-dead` brings it in.
    server.tenant_with_page("27182");
    let dry = server.cli(&[
        "dlq",
        "replay",
        "--all-failed",
        "--include-dead",
        "--dry-run",
    ]);
    assert!(dry.contains("would replay 1 event"), "{dry}");
    let out = server.cli(&["dlq", "replay", "--all-failed", "--include-dead"]);
    assert!(out.contains("1 processed"), "{out}");
}

async fn unparseable_payloads_go_dead_at_once() {
    let server = Server::start(&meta_entry(""), &[("PORTICO_RETRY_POLL_MS", "100")]);
    let response = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        "{\"object\":\"page\"",
        APP_SECRET,
    )
    .await;
    // Verified bytes are kept, whatever they hold.
    let json = server.processed(response).await;
    assert_eq!(json["status"], "dead");
    assert!(json["error"].as_str().unwrap().contains("invalid_json"));
}

async fn old_finished_events_are_pruned_and_failures_kept() {
    let mut server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    for (page, lead) in [(PAGE_ID, "91"), ("404404", "92")] {
        let answer = post_signed(
            &server.url("/api/integrations/meta/webhook"),
            &lead_body(page, lead),
            APP_SECRET,
        )
        .await;
        server.processed(answer).await;
    }
    let db = server.db().await;
    db.execute(db.pick(
        "UPDATE webhook_events SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-20 days'), next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 day')",
        "UPDATE webhook_events SET updated_at = now() - interval '20 days', next_attempt_at = now() + interval '1 day'",
    ))
    .await;
    // Pruning runs when the worker starts.
    server.crash_and_restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &db,
        "SELECT COUNT(*) FROM webhook_events WHERE dedup_key = 'leadgen:91'",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "processed item was not pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM webhook_events WHERE dedup_key = 'leadgen:92' AND status = 'failed'").await, 1);
    // The lead itself stays, and its delivery (whose item is gone) too is pruned.
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM leads WHERE external_id = '91'").await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM webhook_events WHERE kind = 'delivery'"
        )
        .await,
        1
    );
}
