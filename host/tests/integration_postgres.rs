//! Several `portico serve` processes on one PostgreSQL database, as operators
//! run them behind a load balancer (design.md §8):
//! - one of three killed with SIGKILL under signed Meta load and restarted:
//!   every acknowledged lead stored exactly once, no event left `received`;
//! - failing items retried by the workers of all three: each attempt runs once;
//! - the database stopped for 10 s under load: only 503s, then 2xx again by
//!   themselves, nothing acknowledged lost;
//! - and what running on a server database needs besides: migrations applied
//!   once by processes starting together, TLS as the URL asks, a password that
//!   shows nowhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pg_cluster::{self, Cluster};
use common::*;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the load saw: acknowledged lead ids and every status (0: no answer).
#[derive(Default)]
struct Seen {
    acked: Vec<String>,
    statuses: BTreeMap<u16, usize>,
    /// Statuses in order of answer, to see 2xx come back after the 503s.
    timeline: Vec<u16>,
}

/// Signed leads from `clients` clients, spread over `urls` in turn, until `stop`.
async fn load(
    urls: Arc<Mutex<Vec<String>>>,
    prefix: &str,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (urls, stop, seen, next) = (urls.clone(), stop.clone(), seen.clone(), next.clone());
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("{prefix}{c:02}{n:06}");
                let body = lead_body(PAGE_ID, &id);
                let url = {
                    let urls = urls.lock().unwrap();
                    urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()].clone()
                };
                let answer = client
                    .post(format!("{url}/api/integrations/meta/webhook"))
                    .header("x-hub-signature-256", sign(body.as_bytes(), APP_SECRET))
                    .body(body)
                    .send()
                    .await;
                let status = answer.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                {
                    let mut seen = seen.lock().unwrap();
                    *seen.statuses.entry(status).or_default() += 1;
                    seen.timeline.push(status);
                    if (200..300).contains(&status) {
                        seen.acked.push(id);
                    }
                }
                if status != 200 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(seen)
        .ok()
        .expect("every client is done")
        .into_inner()
        .unwrap()
}

/// Stop the load and see what it saw.
async fn end_load(stop: &AtomicBool, traffic: tokio::task::JoinHandle<Seen>) -> Seen {
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.await.unwrap();
    eprintln!(
        "statuses: {:?}, acknowledged: {}",
        seen.statuses,
        seen.acked.len()
    );
    seen
}

async fn pg_count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// Poll `sql` until it counts `want` (90 s at most); returns the last count.
async fn pg_wait(db: &PgPool, sql: &'static str, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = pg_count(db, sql).await;
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged lead is stored, none twice, and no event is left
/// unprocessed. With `one_attempt`, every item was also processed by exactly
/// one recorded attempt: a process that took an item over never ran it on top
/// of another's (an attempt cut off by a kill records nothing).
async fn assert_all_stored_once(db: &PgPool, acked: &[String], one_attempt: bool) {
    let acked: HashSet<&String> = acked.iter().collect();
    assert!(!acked.is_empty(), "the load got no 2xx at all");
    // Settled: nothing received, nothing leased (a killed process's leases expire).
    let open = pg_wait(
        db,
        "SELECT COUNT(*) FROM webhook_events WHERE status = 'received' OR lease_until IS NOT NULL",
        0,
    )
    .await;
    assert_eq!(open, 0, "events left received or leased");
    let stored: Vec<String> = sqlx::query_scalar("SELECT external_id FROM leads")
        .fetch_all(db)
        .await
        .unwrap();
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a lead was stored twice");
    let missing: Vec<&&String> = acked.iter().filter(|id| !unique.contains(**id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged leads are not stored, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let failed = pg_count(
        db,
        "SELECT COUNT(*) FROM webhook_events WHERE status IN ('failed', 'dead')",
    )
    .await;
    if one_attempt {
        let other = pg_count(
            db,
            "SELECT COUNT(*) FROM webhook_events WHERE kind = 'item' AND attempts <> 1",
        )
        .await;
        assert_eq!(
            other, 0,
            "items processed by more or fewer than one attempt"
        );
    }
    assert_eq!(failed, 0, "no event should have failed");
}

fn fleet_env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![
        // A killed process's leases are taken over after 5 s, not the default 300.
        ("PORTICO_LEASE_SECS", "5"),
        ("PORTICO_RETRY_POLL_MS", "100"),
    ];
    env.extend_from_slice(extra);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_one_killed_mid_load_store_every_acknowledged_lead_once() {
    let db_url = pg_cluster::shared().fresh_database();
    let env = fleet_env(&[]);
    let mut fleet: Vec<Server> = (0..3)
        .map(|_| Server::start_on_database(&db_url, &meta_entry(""), &env))
        .collect();
    fleet[0].tenant_with_page(PAGE_ID);
    let urls = Arc::new(Mutex::new(
        fleet.iter().map(|s| s.base.clone()).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(urls.clone(), "7", 9, stop.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // SIGKILL mid-load: whatever it had acknowledged and not processed is
    // under its lease; the other two take it over when the lease expires.
    fleet[1].kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet[1].crash_and_restart();
    urls.lock().unwrap()[1] = fleet[1].base.clone();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let seen = end_load(&stop, traffic).await;
    // Only the killed process's in-flight requests may have gone unanswered.
    assert!(
        seen.statuses.keys().all(|s| matches!(s, 0 | 200)),
        "{:?}",
        seen.statuses
    );
    let db = PgPool::connect(&db_url).await.unwrap();
    assert_all_stored_once(&db, &seen.acked, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_items_are_retried_by_all_three_and_each_attempt_runs_once() {
    failing_items_retried_by_three(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_items_retried_by_three_with_one_killed_mid_retries_still_run_each_attempt_once() {
    failing_items_retried_by_three(true).await;
}

/// Thirty items that always fail (a page no tenant owns), posted to three
/// processes whose workers retry them: 1 s apart, three retries, then dead.
/// With `kill`, the second process is killed with SIGKILL among the retries
/// and started again.
async fn failing_items_retried_by_three(kill: bool) {
    let db_url = pg_cluster::shared().fresh_database();
    let env = fleet_env(&[("PORTICO_RETRY_SCHEDULE_SECS", "1,1,1")]);
    let mut fleet: Vec<Server> = (0..3)
        .map(|_| Server::start_on_database(&db_url, &meta_entry(""), &env))
        .collect();
    const ITEMS: usize = 30;
    const ATTEMPTS: u32 = 4;
    for n in 0..ITEMS {
        let body = lead_body("999", &format!("55{n:04}"));
        let url = fleet[n % 3].url("/api/integrations/meta/webhook");
        let answer = post_signed(&url, &body, APP_SECRET).await;
        assert_eq!(answer.status(), 200);
    }
    // Lines the killed process wrote before it died: an attempt it had started
    // and not committed runs again elsewhere, and that is the only rerun allowed.
    let mut lines_before_kill = 0;
    if kill {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        fleet[1].kill9();
        // Its last lines are still in the pipe: let the reader drain it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        lines_before_kill = fleet[1].logs.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        fleet[1].crash_and_restart();
    }
    let db = PgPool::connect(&db_url).await.unwrap();
    let dead = pg_wait(
        &db,
        "SELECT COUNT(*) FROM webhook_events WHERE kind = 'item' AND status = 'dead'",
        ITEMS as i64,
    )
    .await;
    assert_eq!(dead, ITEMS as i64);
    // Each attempt counted once.
    let attempts: Vec<i64> =
        sqlx::query_scalar("SELECT attempts FROM webhook_events WHERE kind = 'item'")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(
        attempts.iter().all(|&a| a == i64::from(ATTEMPTS)),
        "{attempts:?}"
    );
    // Each attempt of each item ran in one process: the logs together hold one
    // "item failed" line per (item, attempt), but for a run the kill cut off.
    // (item, attempt) → (runs in live processes, runs by the killed one)
    let mut runs: BTreeMap<(String, u32), (usize, usize)> = BTreeMap::new();
    let mut by_process = Vec::new();
    for (n, server) in fleet.iter().enumerate() {
        let lines = server.logs.lock().unwrap().clone();
        let mut mine = 0;
        for (at, line) in lines.iter().enumerate() {
            if !line.contains("item failed") {
                continue;
            }
            let key = field(line, "dedup_key").unwrap_or_default();
            let attempt: u32 = field(line, "attempt")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let entry = runs.entry((key, attempt)).or_default();
            if kill && n == 1 && at < lines_before_kill {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
            if attempt > 1 {
                mine += 1;
            }
        }
        by_process.push(mine);
    }
    eprintln!("retries run by each process: {by_process:?}");
    assert_eq!(runs.len(), ITEMS * ATTEMPTS as usize, "{runs:?}");
    let twice: Vec<_> = runs
        .iter()
        .filter(|(_, (live, killed))| *live > 1 || *killed > 1)
        .collect();
    assert!(twice.is_empty(), "attempts that ran twice: {twice:?}");
    let rerun = runs
        .values()
        .filter(|(live, killed)| *live == 1 && *killed == 1)
        .count();
    eprintln!("attempts cut off by the kill and run again: {rerun}");
    assert!(
        by_process.iter().filter(|&&n| n > 0).count() >= 2,
        "the retries should be shared by the processes' workers: {by_process:?}"
    );
}

/// `key=value` from a log line (values end at a space).
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    Some(
        line[at..]
            .split(' ')
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_down_for_10_s_means_503s_then_2xx_again_and_nothing_lost() {
    // A cluster of its own: this test stops it.
    let cluster = tokio::task::spawn_blocking(Cluster::start_new)
        .await
        .unwrap();
    let db_url = cluster.fresh_database();
    let served_url = format!("{db_url}?acquire_timeout=1s");
    let env = fleet_env(&[]);
    let fleet: Vec<Server> = (0..2)
        .map(|_| Server::start_on_database(&served_url, &meta_entry(""), &env))
        .collect();
    fleet[0].tenant_with_page(PAGE_ID);
    let urls = Arc::new(Mutex::new(
        fleet.iter().map(|s| s.base.clone()).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(urls, "8", 6, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cluster = Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop()).await.unwrap();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Readiness says why.
    let ready = reqwest::get(fleet[0].url("/api/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let why: serde_json::Value = ready.json().await.unwrap();
    assert!(
        why["message"].as_str().unwrap_or("").contains("database"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed())).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start())
        .await
        .unwrap();
    // Back up: no restart of Portico; give the pools a moment, then load on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = end_load(&stop, traffic).await;
    assert!(
        seen.statuses.keys().all(|s| matches!(s, 200 | 503)),
        "only 2xx and 503 while the database was down: {:?}",
        seen.statuses
    );
    assert!(
        seen.statuses.get(&503).copied().unwrap_or(0) > 0,
        "{:?}",
        seen.statuses
    );
    // The last answers are 2xx again.
    let tail: Vec<u16> = seen.timeline.iter().rev().take(20).copied().collect();
    assert!(
        tail.iter().all(|&s| s == 200),
        "not serving again: {tail:?}"
    );
    let ready = reqwest::get(fleet[1].url("/api/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let db = PgPool::connect(&db_url).await.unwrap();
    // An item whose first attempt met the stopped database was retried.
    assert_all_stored_once(&db, &seen.acked, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_apply_each_migration_once() {
    let db_url = pg_cluster::shared().fresh_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.toml"), "").unwrap();
    let runs: Vec<std::process::Child> = (0..3)
        .map(|_| {
            base_command(dir.path(), &db_url, &[])
                .arg("migrate")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "portico migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = PgPool::connect(&db_url).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&db)
            .await
            .unwrap();
    let files = std::fs::read_dir(workspace_root().join("migrations/postgres"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    assert_eq!(applied.len(), files, "{applied:?}");
    assert_eq!(applied, (1..=files as i64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_shows_nowhere() {
    const PASSWORD: &str = "pw-8f3kq-do-not-print";
    let cluster = pg_cluster::shared();
    // The throwaway cluster trusts 127.0.0.1, so any password connects.
    let db_url = cluster.fresh_database();
    let with_password = db_url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    let server = Server::start_on_database(&with_password, &meta_entry(""), &[]);
    for route in ["/api/health", "/api/health/ready"] {
        let body = reqwest::get(server.url(route))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.contains(PASSWORD), "{route}: {body}");
    }
    assert!(
        !server.log_text().contains(PASSWORD),
        "{}",
        server.log_text()
    );
    let dir = tempfile::tempdir().unwrap();
    let migrated = base_command(dir.path(), &with_password, &[])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let said = String::from_utf8_lossy(&migrated.stderr).to_string();
    assert!(
        said.contains("migrations applied to postgres://postgres:***@"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");
    // --help shows where the setting comes from, never its value.
    let help = base_command(dir.path(), &with_password, &[])
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    assert!(help.contains("DATABASE_URL"), "{help}");
    assert!(!help.contains(PASSWORD), "{help}");
    // An error names the database without the password: a database that is not there.
    let missing = with_password.rsplit_once('/').unwrap().0.to_string() + "/no_such_db";
    let failed = base_command(dir.path(), &missing, &[])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr).to_string();
    assert!(err.contains("postgres:***@"), "{err}");
    assert!(err.contains("no_such_db"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority `{name}-ca.crt` and a certificate for 127.0.0.1 it
/// signed, `{name}.crt` with its key `{name}.key`, in `dir`.
fn certificates(dir: &std::path::Path, name: &str) {
    let (ca, ca_key) = (format!("{name}-ca.crt"), format!("{name}-ca.key"));
    let (crt, key, csr) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        dir,
    );
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
        dir,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_and_the_root_certificate_come_from_the_url() {
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::start_new_with(|dir| {
            certificates(dir, "server");
            let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
            // PostgreSQL reads its key only if no one else can.
            let mut chmod = std::process::Command::new("chmod");
            assert!(chmod.arg("600").arg(&key).status().unwrap().success());
            if pg_cluster::is_root() {
                let mut chown = std::process::Command::new("chown");
                chown.arg("postgres:postgres").arg(&crt).arg(&key);
                assert!(chown.status().unwrap().success());
            }
            format!(
                "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                crt.display(),
                key.display()
            )
        })
    })
    .await
    .unwrap();
    let db_url = cluster.fresh_database();
    let ca = cluster.dir.join("server-ca.crt");
    let verified = format!("{db_url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let server = Server::start_on_database(&verified, &meta_entry(""), &[]);
    let ready = reqwest::get(server.url("/api/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    // Every connection Portico holds is encrypted.
    let db = PgPool::connect(&db_url).await.unwrap();
    let (all, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.ssl)
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.application_name = 'portico'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        all > 0 && encrypted == all,
        "{encrypted} of {all} connections use TLS"
    );
    // A server whose certificate the given root did not sign is refused.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path(), "stranger");
    let stranger = other.path().join("stranger-ca.crt");
    let wrong = format!(
        "{db_url}?sslmode=verify-full&sslrootcert={}",
        stranger.display()
    );
    let refused = base_command(other.path(), &wrong, &[])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a server with an unknown certificate was trusted"
    );
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_size_and_statement_timeout_come_from_the_url() {
    let db_url = pg_cluster::shared().fresh_database();
    let dir = tempfile::tempdir().unwrap();
    // A statement timeout of 1 ms: PostgreSQL cancels the migrations' statements.
    let hasty = base_command(dir.path(), &format!("{db_url}?statement_timeout=1"), &[])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!hasty.status.success());
    let err = String::from_utf8_lossy(&hasty.stderr).to_string();
    assert!(err.contains("statement timeout"), "{err}");
    // A bad pool setting is named before anything connects.
    let bad = base_command(dir.path(), &format!("{db_url}?max_connections=lots"), &[])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(err.contains("max_connections=lots"), "{err}");
    // Three connections at most, whatever the load.
    let server = Server::start_on_database(
        &format!("{db_url}?max_connections=3&statement_timeout=10s"),
        &meta_entry(""),
        &[],
    );
    server.tenant_with_page(PAGE_ID);
    let mut posts = Vec::new();
    for n in 0..60 {
        let url = server.url("/api/integrations/meta/webhook");
        posts.push(tokio::spawn(async move {
            post_signed(&url, &lead_body(PAGE_ID, &format!("66{n:04}")), APP_SECRET)
                .await
                .status()
        }));
    }
    let db = PgPool::connect(&db_url).await.unwrap();
    let mut most = 0i64;
    for post in posts {
        assert_eq!(post.await.unwrap(), 200);
        let now: i64 = sqlx::query_scalar(
            // This test's database only: other tests share the cluster.
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE application_name = 'portico' AND datname = current_database()",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        most = most.max(now);
    }
    assert!((1..=3).contains(&most), "portico held {most} connections");
    assert_eq!(
        pg_wait(&db, "SELECT COUNT(*) FROM leads", 60).await,
        60,
        "every lead stored through three connections"
    );
}
