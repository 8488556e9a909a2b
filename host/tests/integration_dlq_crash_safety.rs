//! Nothing acknowledged is lost: kill -9 the server under concurrent signed
//! webhooks, restart it, let the retry worker finish; every 2xx has its lead and
//! nothing is stored twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 6;
const CYCLES: usize = 3;

/// Send signed leads from several clients until `stop`; return the acknowledged ids.
async fn send_until(
    url: String,
    prefix: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, usize) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (url, prefix, stop, acked, sent) = (
            url.clone(),
            prefix.clone(),
            stop.clone(),
            acked.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = format!("{prefix}{c}{n:06}");
                let body = lead_body(PAGE_ID, &id);
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let response = client
                    .post(&url)
                    .header("x-hub-signature-256", sign(body.as_bytes(), APP_SECRET))
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    (acked, sent.load(std::sync::atomic::Ordering::Relaxed))
}

both_backends!([flavor = "multi_thread", worker_threads = 4] kill_9_under_load_loses_no_acknowledged_webhook);

async fn kill_9_under_load_loses_no_acknowledged_webhook() {
    let mut env = vec![("PORTICO_RETRY_POLL_MS", "100")];
    if Backend::current() == Backend::Postgres {
        // A PostgreSQL database may be shared by several processes, so a restart
        // cannot release the dead one's leases: they are taken over once they
        // expire (5 s here, not the default 300).
        env.push(("PORTICO_LEASE_SECS", "5"));
    }
    let mut server = Server::start(&meta_entry(""), &env);
    server.tenant_with_page(PAGE_ID);
    let mut all_acked: Vec<String> = Vec::new();
    let started = Instant::now();
    for cycle in 0..CYCLES {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = tokio::spawn(send_until(
            server.url("/api/integrations/meta/webhook"),
            format!("9{cycle}"),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (acked, sent) = load.await.unwrap();
        eprintln!(
            "cycle {cycle}: {sent} sent, {} acknowledged before kill -9",
            acked.len()
        );
        assert!(!acked.is_empty(), "the load never got through");
        all_acked.extend(acked);
        server.crash_and_restart();
    }

    // Let the worker finish anything a crash left half done.
    let db = server.db().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = count(
            &db,
            "SELECT COUNT(*) FROM webhook_events WHERE status IN ('received', 'failed')",
        )
        .await;
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} events still pending:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let stored: Vec<String> = db
        .query_scalar("SELECT external_id FROM leads")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), stored_set.len(), "a lead was stored twice");
    let lost: Vec<&String> = all_acked
        .iter()
        .filter(|id| !stored_set.contains(id))
        .collect();
    eprintln!(
        "{} cycles in {:?}: {} acknowledged, {} leads stored, {} lost",
        CYCLES,
        started.elapsed(),
        all_acked.len(),
        stored.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let dead = count(
        &db,
        "SELECT COUNT(*) FROM webhook_events WHERE status = 'dead'",
    )
    .await;
    assert_eq!(dead, 0);
}
