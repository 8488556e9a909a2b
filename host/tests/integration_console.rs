//! The operator console in headless Chromium, driving the real server: sign in
//! (a wrong token says so), see the plugins, find a failed event, open it,
//! replay it and see it processed; deliveries, the outbox and tenants too.
//!
//! The browser is Debian's `chromium` driven through `chromedriver`'s W3C
//! WebDriver API (plain HTTP, so no browser crate): `.ci/run` installs both.
//! Without them the test says so and passes, unless PORTICO_REQUIRE_BROWSER is
//! set (CI sets it). With PORTICO_CONSOLE_SCREENSHOTS=DIR it writes a PNG of
//! each screen there (docs/console holds the committed ones).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    shots: Option<PathBuf>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(binary: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(binary.to_ascii_uppercase().replace('-', "_")) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Driver {
    /// chromedriver on a free port with a headless Chromium session, or None
    /// (and a line saying why) when they are not installed.
    async fn start() -> Option<Driver> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chromedriver = find(
            "chromedriver",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let chromium = find(
            "chromium",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
            let why = "the console's browser test needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)";
            assert!(
                std::env::var_os("PORTICO_REQUIRE_BROWSER").is_none(),
                "{why}"
            );
            eprintln!("skipped: {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                ready.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // The flags keep Chromium off this machine's closed network.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}}}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        let shots = std::env::var_os("PORTICO_CONSOLE_SCREENSHOTS").map(PathBuf::from);
        Some(Driver {
            child,
            base,
            session,
            http,
            _profile: profile,
            shots,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        r["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element `css` names, waiting for it (10 s).
    async fn element(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let v = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no element {css}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{id}/click"),
                Some(json!({})),
            )
            .await;
        assert!(v.is_null(), "click on {css}: {v}");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until the text of `css` contains `wanted` (10 s); that text.
    async fn wait_text(&self, css: &str, wanted: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css).await;
            if text.contains(wanted) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{css} never said {wanted:?}; it says:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Run `script` in the page; its return value.
    async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Press a key (a WebDriver key code such as "\u{E014}", arrow right) in `css`.
    async fn press(&self, css: &str, key: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": key})),
        )
        .await;
    }

    async fn attribute(&self, css: &str, name: &str) -> Value {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/attribute/{name}"),
            None,
        )
        .await
    }

    /// A screenshot of the page, which must show some text (a blank page fails here).
    async fn shot(&self, name: &str) {
        let shown = self
            .script("return document.body.innerText.trim().length")
            .await;
        assert!(
            shown.as_u64().unwrap_or(0) > 40,
            "{name}: the page shows nothing"
        );
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "no screenshot of {name}");
        if let Some(dir) = &self.shots {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_failed_event_and_replays_it_in_the_console() {
    let Some(browser) = Driver::start().await else {
        return;
    };
    let server = Server::start(&meta_entry(""), &[]);
    // Leads for two pages no tenant has mapped: stored, then failed.
    const OTHER_PAGE: &str = "555000111222333";
    for (page, lead) in [(PAGE_ID, "91000001"), (OTHER_PAGE, "91000002")] {
        let answer = post_signed(
            &server.url("/api/integrations/meta/webhook"),
            &lead_body(page, lead),
            APP_SECRET,
        )
        .await;
        let outcome = server.processed(answer).await;
        assert_eq!(outcome["items"][0]["status"], "failed", "{outcome}");
    }

    browser.go(&server.url("/console")).await;
    browser.wait_text("h1", "Portico console").await;
    browser.shot("1-sign-in").await;
    // A wrong token says so.
    browser.type_into("#token", "not-the-token").await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser.wait_text("#sign-in-error", "refused").await;
    browser.type_into("#token", TEST_ADMIN).await;
    browser.click("#sign-in-form button[type=submit]").await;

    // The plugins, with their state.
    let plugins = browser.wait_text("#plugins-table", "meta").await;
    assert!(plugins.contains("loaded"), "{plugins}");
    browser.shot("2-plugins").await;

    // The tabs answer the keyboard: arrow right from Plugins opens Dead letters.
    browser.press("#tab-plugins", "\u{E014}").await;
    assert_eq!(browser.attribute("#tab-dlq", "aria-selected").await, "true");

    // The failed events, newest first; open the older one: error and payload.
    browser.wait_text("#dlq-table", "no tenant is mapped").await;
    browser.wait_text("#dlq-count", "2 shown").await;
    browser.shot("3-dead-letters").await;
    browser
        .click("#dlq-table tbody tr:last-child button.row-open")
        .await;
    let facts = browser.wait_text("#event-facts", "failed").await;
    assert!(
        facts.contains("Correlation id") && facts.contains("leadgen:91000001"),
        "{facts}"
    );
    browser.wait_text("#event-payload", "91000001").await;
    let headers = browser.text("#event-headers").await;
    assert!(
        headers.contains("[redacted]"),
        "the signature is hidden: {headers}"
    );
    assert!(!headers.contains("sha256="), "{headers}");
    browser.shot("4-event").await;

    // The operator fixes the cause, then replays it from the page.
    server.tenant_with_page(PAGE_ID);
    browser.click("#replay-one").await;
    browser
        .wait_text("#replay-result", "Replayed: processed")
        .await;
    browser.wait_text("#event-facts", "processed").await;
    browser
        .wait_text("#dlq-table tbody tr:last-child", "processed")
        .await;
    browser.shot("5-replayed").await;
    let db = server.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM leads WHERE external_id = '91000001'"
        )
        .await,
        1
    );

    // The other page mapped too: a filter's replay shows its dry run's count
    // first, then what became of each event.
    let other: i64 = server
        .cli(&["tenant", "add", "Other"])
        .trim()
        .parse()
        .unwrap();
    server.cli(&[
        "source",
        "add",
        "--tenant",
        &other.to_string(),
        "--kind",
        "meta",
        "--key",
        OTHER_PAGE,
    ]);
    browser.click("#dlq-filter button[type=submit]").await;
    browser.wait_text("#dlq-count", "1 shown").await;
    browser.click("#replay-filter").await;
    browser
        .wait_text("#replay-confirm-text", "1 event(s) match")
        .await;
    browser.click("#replay-filter-go").await;
    browser.wait_text("#replay-report-list", "processed").await;
    browser.wait_text("#status", "1 succeeded").await;
    browser.wait_text("#dlq-count", "No events match").await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM leads WHERE external_id = '91000002'"
        )
        .await,
        1
    );

    // Deliveries, the outbox, tenants (and adding one).
    browser.click("#tab-deliveries").await;
    browser.wait_text("#deliveries-table", "meta").await;
    browser.shot("6-deliveries").await;
    browser.click("#tab-outbox").await;
    browser.wait_text("#outbox-totals", "Delivered").await;
    browser
        .wait_text("#status", "No loaded plugin declares an outbox")
        .await;
    browser.shot("7-outbox").await;
    browser.click("#tab-tenants").await;
    browser.wait_text("#tenants-table", PAGE_ID).await;
    browser.type_into("#tenant-name", "Beta Ltd").await;
    browser.click("#add-tenant button[type=submit]").await;
    browser.wait_text("#tenants-table", "Beta Ltd").await;
    browser.shot("8-tenants").await;

    // Readable on a phone.
    browser.size(390, 844).await;
    browser.click("#tab-dlq").await;
    browser
        .click("#dlq-filter select[name=status] option[value=processed]")
        .await;
    browser.click("#dlq-filter button[type=submit]").await;
    browser.wait_text("#dlq-table", "processed").await;
    browser.shot("9-phone").await;

    // Signing out forgets the token: a reload asks for it again.
    browser.click("#sign-out").await;
    browser.wait_text("#sign-in-title", "Sign in").await;
    assert_eq!(
        browser.script("return sessionStorage.length").await,
        json!(0)
    );
    browser.go(&server.url("/console")).await;
    assert_eq!(
        browser
            .script("return document.getElementById('app').hidden")
            .await,
        json!(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_api_pages_and_redacts_for_the_console() {
    let server = Server::start(&meta_entry(""), &[]);
    for n in 0..5 {
        let r = post_signed(
            &server.url("/api/integrations/meta/webhook"),
            &lead_body(PAGE_ID, &format!("9200000{n}")),
            APP_SECRET,
        )
        .await;
        server.processed(r).await;
    }
    let admin = |path: String| {
        let server = &server;
        async move {
            reqwest::Client::new()
                .get(server.url(&path))
                .bearer_auth(TEST_ADMIN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = admin("/api/admin/dlq?limit=3".into()).await;
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    let after = first["next_after"]
        .as_i64()
        .expect("a full page has a cursor");
    let second = admin(format!("/api/admin/dlq?limit=3&after={after}")).await;
    let ids: Vec<i64> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["events"].as_array().unwrap())
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "{second}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(
        second["next_after"].is_null(),
        "the last page has no cursor"
    );
    let one = admin(format!("/api/admin/dlq/{}", ids[0])).await;
    assert_eq!(one["headers"]["x-hub-signature-256"], "[redacted]", "{one}");
    assert_eq!(one["payload_json"]["leadgen_id"], "92000000", "{one}");
    let deliveries = admin("/api/admin/deliveries?limit=2".into()).await;
    let list = deliveries["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list[0]["id"].as_i64() > list[1]["id"].as_i64(),
        "newest first"
    );
    let tenants = admin("/api/admin/tenants".into()).await;
    assert!(
        tenants["tenants"].as_array().unwrap().is_empty(),
        "{tenants}"
    );
}
