//! Hostile requests through the real server: authenticated intake, bounded
//! bodies, slow clients and floods, escaped logs, no machine details in error
//! bodies, a flooded plugin that leaves the others serving, a cache folder
//! others could write, outbound calls pinned to scheme, port and public
//! addresses, and permanent failures that go dead at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn google_entry() -> String {
    format!(
        r#"
[plugins.google-ads]
path = "{}"
mount = "google"
[plugins.google-ads.config]
upload_enabled = false
"#,
        plugin_wasm("portico-google-ads").display()
    )
}

const CONVERSION: &str =
    r#"{"gclid":"Cj0KCQ","timestamp":"2026-11-20T10:00:00Z","value":12.5,"currency":"EUR"}"#;

async fn convert(
    server: &Server,
    body: &str,
    token: Option<&str>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.url("/api/integrations/google/offline-conversion"))
        .body(body.to_string());
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

/// Write `head` (and `body`) on a raw connection; the status line of the answer, within `wait`.
async fn raw(addr: &str, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no answer within {wait:?}"))
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn addr(server: &Server) -> String {
    server.url("").trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_routes_take_only_bearer_tokens_and_keys_are_the_tenant_s() {
    // Neither token set: intake routes are closed, and say which variable opens them.
    let closed = Server::start(&google_entry(), &[("PORTICO_ADMIN_TOKEN", "")]);
    let (status, body) = convert(&closed, CONVERSION, Some("anything"), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("PORTICO_INTAKE_TOKEN"),
        "{body}"
    );
    drop(closed);

    let server = Server::start(
        &google_entry(),
        &[("PORTICO_INTAKE_TOKEN", "crm-new, crm-old")],
    );
    let t1 = server.cli(&["tenant", "add", "One"]).trim().to_string();
    let t2 = server.cli(&["tenant", "add", "Two"]).trim().to_string();
    for token in [None, Some("wrong"), Some("crm"), Some("")] {
        let (status, body) = convert(&server, CONVERSION, token, None).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    // Rotation: both tokens work, and so does the admin token.
    for token in ["crm-new", "crm-old", TEST_ADMIN] {
        let (status, body) = convert(&server, CONVERSION, Some(token), Some(token)).await;
        assert_eq!(status, 200, "{token}: {body}");
    }
    // An intake token never opens the admin API.
    let r = reqwest::Client::new()
        .get(server.url("/api/admin/dlq"))
        .bearer_auth("crm-new")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Without a token nothing is said about tenants: one that exists and one that does not
    // get the same 401 (intake tokens are host-wide: a holder may address any tenant).
    let of = |t: &str| CONVERSION.replace('}', &format!(r#","tenant_id":{t}}}"#));
    let (s1, b1) = convert(&server, &of(&t1), None, None).await;
    let (s2, b2) = convert(&server, &of("987654"), None, None).await;
    assert_eq!((s1, &b1), (s2, &b2));

    // One Idempotency-Key, two tenants: two conversions; again from the first: its own.
    let (s, first) = convert(&server, &of(&t1), Some("crm-new"), Some("order-7")).await;
    assert_eq!(s, 200, "{first}");
    let (s, second) = convert(&server, &of(&t2), Some("crm-new"), Some("order-7")).await;
    assert_eq!(s, 200, "{second}");
    assert_ne!(first["id"], second["id"], "{first} {second}");
    let (_, again) = convert(&server, &of(&t1), Some("crm-old"), Some("order-7")).await;
    assert_eq!(again["id"], first["id"]);
    let db = server.db().await;
    let owners = count(
        &db,
        &format!(
            "SELECT COUNT(DISTINCT tenant_id) FROM conversion_uploads WHERE tenant_id IN ({t1}, {t2})"
        ),
    )
    .await;
    assert_eq!(owners, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_refused_before_they_are_read() {
    let server = Server::start(
        &[meta_entry(""), google_entry()].concat(),
        &[("PORTICO_INTAKE_TOKEN", "crm")],
    );
    let at = addr(&server);
    let head = |path: &str, auth: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 67108864\r\n{auth}\r\n{{\"name\":"
        )
    };
    // 64 MiB announced, a few bytes sent: the answer comes at once, unread.
    let started = Instant::now();
    let answer = raw(
        &at,
        head("/api/admin/tenants", "").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let with_token = format!("authorization: Bearer {TEST_ADMIN}\r\n");
    let answer = raw(
        &at,
        head("/api/admin/tenants", &with_token).as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("PORTICO_ADMIN_MAX_BODY_BYTES"), "{answer}");
    let answer = raw(
        &at,
        head("/api/integrations/google/offline-conversion", "").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let answer = raw(
        &at,
        head("/api/integrations/meta/webhook", "").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A body without a length (chunked) is cut at the limit as it is read.
    let mut s = TcpStream::connect(&at).await.unwrap();
    s.write_all(
        format!("POST /api/admin/tenants HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{with_token}transfer-encoding: chunked\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
    for _ in 0..48 {
        // The server may answer and close before all of it is written.
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Within the limit, the admin API works as before.
    let r = reqwest::Client::new()
        .post(server.url("/api/admin/tenants"))
        .bearer_auth(TEST_ADMIN)
        .json(&json!({"name": "Fine"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// Health latencies in ms (sorted) over `n` sequential requests.
async fn health_latencies(server: &Server, n: usize) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let r = client.get(server.url("/api/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_and_health_keeps_answering() {
    let server = Server::start(&meta_entry(""), &[("PORTICO_HEADER_TIMEOUT_MS", "1500")]);
    let at = addr(&server);
    let quiet = health_latencies(&server, 50).await;

    // 200 clients trickle their headers, one byte every 100 ms.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&at).await.unwrap();
        s.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        let mut closed = 0usize;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            for s in slow.iter_mut() {
                let _ = s.write_all(b"x").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // By now the server has closed every one of them.
        for mut s in slow {
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
                Ok(Ok(_)) => {
                    // An answer (408 or similar) followed by the close also counts.
                    closed += 1
                }
                Err(_) => {}
            }
        }
        closed
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = health_latencies(&server, 50).await;
    let closed = trickle.await.unwrap();
    let p = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "health while 200 slow connections trickle headers: p50 {:.2} ms, p99 {:.2} ms (quiet: p50 {:.2} ms, p99 {:.2} ms)",
        p(&busy, 0.5),
        p(&busy, 0.99),
        p(&quiet, 0.5),
        p(&quiet, 0.99)
    );
    assert_eq!(
        closed, 200,
        "every trickling connection is closed by the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_requests_over_their_caps_get_503_with_retry_after() {
    let server = Server::start(
        &meta_entry(""),
        &[
            ("PORTICO_MAX_CONNECTIONS", "6"),
            ("PORTICO_MAX_IN_FLIGHT", "2"),
            ("PORTICO_REQUEST_TIMEOUT_MS", "1500"),
        ],
    );
    let at = addr(&server);
    // Two requests whose bodies never finish: both in flight.
    let started = Instant::now();
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&at).await.unwrap();
        s.write_all(b"POST /api/integrations/meta/webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\":")
            .await
            .unwrap();
        stuck.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/meta/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "overloaded");
    // Health is served whatever the load.
    let health = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    // The stuck ones end at the request deadline (receiving the body): 408.
    for mut s in stuck {
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("request_timeout") && answer.contains("PORTICO_REQUEST_TIMEOUT_MS"),
            "{answer}"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(1400));

    // Six connections open (idle): the seventh is answered 503 and closed.
    // The stuck ones' places may not be given back yet when these arrive (a
    // busy machine): then the last of them are refused, and would leave the
    // seventh room once the stuck ones are gone. Keep six that were let in: a
    // refused one has its 503 waiting to be read; replace it.
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..50 {
        while idle.len() < 6 {
            idle.push(TcpStream::connect(&at).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut kept = Vec::new();
        for mut s in idle {
            let mut byte = [0u8; 1];
            if tokio::time::timeout(Duration::from_millis(20), s.read(&mut byte))
                .await
                .is_err()
            {
                kept.push(s);
            }
        }
        idle = kept;
        if idle.len() == 6 {
            break;
        }
    }
    assert_eq!(idle.len(), 6, "six idle connections let in");
    let answer = raw(
        &at,
        b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("retry-after: 1") && answer.contains("PORTICO_MAX_CONNECTIONS"),
        "{answer}"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(health.status(), 200, "serving again once they are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_fields_neither_forge_log_lines_nor_flood_them() {
    let server = Server::start(&google_entry(), &[("PORTICO_INTAKE_TOKEN", "crm")]);
    let forged =
        "evil\n2026-01-01T00:00:00.000000Z  INFO portico: admin token accepted for mallory";
    let huge = "k".repeat(200_000);
    let body = json!({
        "gclid": "x", "timestamp": "2026-11-20T10:00:00Z", "value": 1, "currency": "EUR",
        forged: 1, huge.as_str(): 2,
    })
    .to_string();
    let (status, answer) = convert(&server, &body, Some("crm"), None).await;
    assert_eq!(status, 400, "{answer}");
    let logs = server
        .wait_for_log("the refusal, its newline escaped", |l| {
            l.contains("evil\\n2026-01-01")
        })
        .await
        .join("\n");
    for line in logs.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00"),
            "forged line: {line}"
        );
        assert!(line.len() < 16 * 1024, "a line of {} bytes", line.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_s_details_stay_in_the_log_and_permanent_failures_go_dead_at_once() {
    let server = Server::start(
        &[
            misbehaving("trapping", "verify-trap", "call_timeout_ms = 2000"),
            misbehaving("flooding", "many-items", "call_timeout_ms = 5000"),
        ]
        .concat(),
        &[],
    );
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/trapping/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("/home/builder") && !body.contains("stderr"),
        "{body}"
    );
    assert!(body.contains("server log"), "{body}");
    // The operator still sees it (the log is read as the server writes it).
    let seen = Instant::now();
    while !server.log_text().contains("/home/builder/secret") {
        assert!(
            seen.elapsed() < Duration::from_secs(5),
            "the trap is not in the log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One item more than the host takes from a delivery: that never fits.
    let r = reqwest::Client::new()
        .post(server.url("/api/integrations/flooding/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let outcome = server.processed(r).await;
    assert_eq!(outcome["status"], "dead", "{outcome}");
    let list: Value = reqwest::Client::new()
        .get(server.url("/api/admin/dlq?status=dead"))
        .bearer_auth(TEST_ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = &list["events"][0];
    assert_eq!(event["attempts"], 1, "{list}");
    assert!(
        event["error"].as_str().unwrap().contains("10000 items"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooded_plugin_leaves_the_instance_pool_to_the_others() {
    // Every request to `stuck` holds an instance until its deadline; far more
    // of them than the shared pool has slots arrive at once.
    let server = Server::start(
        &[
            meta_entry(""),
            misbehaving("stuck", "verify-loop", "call_timeout_ms = 300"),
        ]
        .concat(),
        &[
            ("PORTICO_MAX_IN_FLIGHT", "4096"),
            ("PORTICO_MAX_CONNECTIONS", "4096"),
        ],
    );
    server.tenant_with_page(PAGE_ID);
    let flood_until = Instant::now() + Duration::from_secs(4);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(400)
        .build()
        .unwrap();
    let mut flood = Vec::new();
    for _ in 0..320 {
        let client = client.clone();
        let url = server.url("/api/integrations/stuck/webhook");
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < flood_until {
                match client.post(&url).body("{}").send().await {
                    Ok(r) => statuses.push(r.status().as_u16()),
                    Err(_) => statuses.push(0),
                }
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut answers = Vec::new();
    for n in 0..10 {
        let r = post_signed(
            &server.url("/api/integrations/meta/webhook"),
            &lead_body(PAGE_ID, &format!("flood-{n}")),
            APP_SECRET,
        )
        .await;
        let status = r.status().as_u16();
        answers.push((status, r.text().await.unwrap()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut flooded = Vec::new();
    for f in flood {
        flooded.extend(f.await.unwrap());
    }
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "Meta must keep serving while another plugin is flooded: {answers:?}"
    );
    let busy = flooded.iter().filter(|s| **s == 503).count();
    assert!(
        busy > 0,
        "the flooded plugin sheds load with 503: {flooded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_folder_others_can_write_stops_start_up() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.toml"), meta_entry("")).unwrap();
    let cache = dir.path().join("shared-cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let db = format!("sqlite://{}/p.db", dir.path().display());
    let env = vec![("PORTICO_CACHE_DIR".to_string(), cache.display().to_string())];
    let out = base_command(dir.path(), &db, &env)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by others") && err.contains("chmod 700"),
        "{err}"
    );

    // A folder it makes itself is this user's alone.
    let fresh = dir.path().join("fresh").join("cache");
    let env = vec![("PORTICO_CACHE_DIR".to_string(), fresh.display().to_string())];
    let out = base_command(dir.path(), &db, &env)
        .args([
            "plugin",
            "check",
            &plugin_wasm("portico-meta").display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(
        &meta_entry(""),
        &[("PORTICO_CACHE_DIR", &fresh.display().to_string())],
    );
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    drop(server);

    // Owned by someone else (only root can arrange that).
    if rustix_is_root() {
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let env = vec![(
            "PORTICO_CACHE_DIR".to_string(),
            theirs.display().to_string(),
        )];
        let out = base_command(dir.path(), &db, &env)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("belongs to user 65534"),
            "{err}"
        );
    }
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_keep_to_scheme_port_and_public_addresses() {
    let graph = FakeGraph::start(GraphMode::Ok).await;
    let port = graph.base.rsplit(':').next().unwrap().to_string();
    let run = |allowed: String, base: String, extra: &'static str| async move {
        let server = Server::start(
            &meta_entry(&format!("allowed_hosts = [\"{allowed}\"]\n{extra}")),
            &[
                ("META_GRAPH_BASE_URL", base.as_str()),
                ("META_PAGE_ACCESS_TOKEN", "page-token"),
            ],
        );
        server.tenant_with_page(PAGE_ID);
        let r = post_signed(
            &server.url("/api/integrations/meta/webhook"),
            &lead_body(PAGE_ID, "501"),
            APP_SECRET,
        )
        .await;
        let outcome = server.processed(r).await;
        (outcome["items"][0].clone(), server)
    };
    // The fake speaks http: a rule for https on the same host and port does not cover it.
    let before = graph.requests();
    let (item, _s) = run(
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
        "",
    )
    .await;
    assert!(
        item["error"].as_str().unwrap_or("").contains("not allowed"),
        "{item}"
    );
    // Another port of an allowed host is refused too.
    let (item, _s) = run(
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
        format!("http://127.0.0.1:{port}"),
        "",
    )
    .await;
    assert!(
        item["error"].as_str().unwrap_or("").contains("not allowed"),
        "{item}"
    );
    assert_eq!(graph.requests(), before, "nothing reached the fake");
    // A name that resolves to the loopback is refused after resolution...
    let (item, _s) = run(
        format!("http://localhost:{port}"),
        format!("http://localhost:{port}"),
        "",
    )
    .await;
    let error = item["error"].as_str().unwrap_or("");
    assert!(error.contains("allow_private_networks"), "{item}");
    assert_eq!(graph.requests(), before);
    // ...unless plugins.toml says so for this plugin.
    let (item, _s) = run(
        format!("http://localhost:{port}"),
        format!("http://localhost:{port}"),
        "allow_private_networks = true\n",
    )
    .await;
    assert_eq!(item["status"], "processed", "{item}");
    assert!(graph.requests() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_answers_and_the_server_stays_up() {
    let server = Server::start(&meta_entry(""), &[]);
    server.tenant_with_page(PAGE_ID);
    let client = reqwest::Client::new();
    let webhook = server.url("/api/integrations/meta/webhook");
    let body = lead_body(PAGE_ID, "900");
    // Signatures: missing, empty, wrong algorithm, wrong length, wrong secret, other body.
    let good = sign(body.as_bytes(), APP_SECRET);
    for signature in [
        None,
        Some(String::new()),
        Some(good.replace("sha256=", "sha1=")),
        Some(format!("{good}00")),
        Some(sign(body.as_bytes(), "not-the-secret")),
        Some(sign(b"another body", APP_SECRET)),
        Some("sha256=".to_string() + &"zz".repeat(32)),
    ] {
        let mut req = client.post(&webhook).body(body.clone());
        if let Some(s) = &signature {
            req = req.header("x-hub-signature-256", s);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{signature:?}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_signature");
    }
    // Deep nesting and invalid UTF-8, correctly signed: stored, and the item fails alone.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = post_signed(&webhook, &nested, APP_SECRET).await;
    let outcome = server.processed(r).await;
    assert_eq!(outcome["status"], "dead", "{outcome}");
    let invalid_utf8: Vec<u8> = [b"{\"entry\":\"".as_slice(), &[0xff, 0xfe, 0xc0], b"\"}"].concat();
    let r = client
        .post(&webhook)
        .header("x-hub-signature-256", sign(&invalid_utf8, APP_SECRET))
        .body(invalid_utf8)
        .send()
        .await
        .unwrap();
    let outcome = server.processed(r).await;
    assert_eq!(outcome["status"], "dead", "{outcome}");
    // Path tricks never reach the admin API or a file.
    for path in [
        "/api/integrations/meta/../../admin/dlq",
        "/api/integrations/meta/%2e%2e/%2e%2e/admin/dlq",
        "/api/integrations/%2e%2e/admin/dlq",
        "//api/admin/dlq",
        "/api/integrations/meta/webhook/../../../../etc/passwd",
        "/api/integrations/meta/..%2f..%2fadmin%2fdlq",
    ] {
        let answer = raw(
            &addr(&server),
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        let status: u16 = answer[9..12].parse().unwrap();
        assert!([400, 401, 404, 405].contains(&status), "{path}: {answer}");
        assert!(!answer.contains("\"events\""), "{path}: {answer}");
    }
    // Admin tokens: wrong schemes, cases, padding, prefixes.
    for auth in [
        "".to_string(),
        "Bearer".to_string(),
        format!("Basic {TEST_ADMIN}"),
        format!("Bearer {}", TEST_ADMIN.to_uppercase()),
        format!("Bearer {TEST_ADMIN}x"),
        format!("Bearer {}", &TEST_ADMIN[..TEST_ADMIN.len() - 1]),
        format!("Token {TEST_ADMIN}"),
    ] {
        let r = client
            .get(server.url("/api/admin/dlq"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
    }
    let r = client
        .get(server.url("/api/admin/dlq"))
        .header("authorization", format!("bearer   {TEST_ADMIN}  "))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the scheme is case-insensitive and spaces are trimmed"
    );
    // A header block over hyper's limit, and a bad request line.
    let big = format!(
        "GET /api/health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = raw(&addr(&server), big.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    let answer = raw(
        &addr(&server),
        b"\x00\x01\x02 / HTTP/9.9\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // Still serving, and the good delivery goes through.
    let r = post_signed(&webhook, &body, APP_SECRET).await;
    let outcome = server.processed(r).await;
    assert_eq!(outcome["items"][0]["status"], "processed", "{outcome}");
}
