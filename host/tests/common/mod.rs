//! Test kit: builds the real plugins once per test binary, starts the real
//! `portico` binary on 127.0.0.1:0 with a fresh database (a temporary SQLite
//! file, or a new database of a throwaway PostgreSQL cluster), and talks to it
//! over HTTP like a provider would.
//!
//! A suite runs a test on both backends with [`both_backends!`]; a test not
//! listed there runs on SQLite.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/pg_cluster.rs"]
pub mod pg_cluster;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use sqlx::any::{Any, AnyArguments, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, FromRow};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

pub const APP_SECRET: &str = "test_app_secret_123";
/// The admin token a test server gets unless the test names its own.
pub const TEST_ADMIN: &str = "test-admin-token";
pub const PAGE_ID: &str = "138124712925158";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The packages every test binary builds once.
const TEST_PLUGINS: [&str; 5] = [
    "portico-meta",
    "portico-whatsapp",
    "portico-standard-webhooks",
    "portico-google-ads",
    "portico-test-misbehaving",
];

/// Build the test plugins into `target/{dir}` with PORTICO_BUILD_TAG=`tag`
/// (own target dir: a nested cargo must not share the outer one's lock).
fn build_plugins(dir: &str, tag: &str) -> PathBuf {
    ensure_wasm_target();
    let target_dir = workspace_root().join("target").join(dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("PORTICO_BUILD_TAG", tag)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    for p in TEST_PLUGINS {
        cmd.args(["-p", p]);
    }
    let status = cmd.status().expect("run cargo to build the plugins");
    assert!(status.success(), "building the test plugins failed");
    target_dir.join("wasm32-wasip2").join("plugin")
}

/// The README's `cargo test --workspace` works with only rustup: the plugins'
/// target is added when missing, as `portico build` does.
fn ensure_wasm_target() {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace_root())
        .output()
    else {
        return; // no rustup: the toolchain came some other way
    };
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return;
    }
    eprintln!("adding the Rust target wasm32-wasip2 the test plugins build for");
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .current_dir(workspace_root())
        .status()
        .expect("run rustup");
    assert!(
        added.success(),
        "the test plugins need the wasm32-wasip2 target: run `rustup target add wasm32-wasip2`"
    );
}

/// A bundled plugin built once per test binary.
pub fn plugin_wasm(package: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_plugins("test-plugins", ""))
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// The same plugin built with PORTICO_BUILD_TAG=b: same code, version "0.1.0+b".
pub fn plugin_wasm_variant_b(package: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_plugins("test-plugins-b", "b"))
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// Replace `to` by `from_bytes` atomically (write aside, rename), as a build would.
pub fn install_file(from_bytes: &[u8], to: &Path) {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::write(&tmp, from_bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

pub fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={digest}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Meta leadgen delivery for one lead of `page`.
pub fn lead_body(page: &str, leadgen_id: &str) -> String {
    format!(
        r#"{{"object":"page","entry":[{{"id":"{page}","time":1630087927,"changes":[{{"value":{{"form_id":"172036835026334","leadgen_id":"{leadgen_id}","created_time":1630087926,"page_id":"{page}"}},"field":"leadgen"}}]}}]}}"#
    )
}

/// The plugins.toml entry of the Meta adapter, with extra lines for its table.
pub fn meta_entry(extra: &str) -> String {
    meta_entry_at(&plugin_wasm("portico-meta"), extra)
}

/// The Meta entry for a component at `path`.
pub fn meta_entry_at(path: &Path, extra: &str) -> String {
    format!(
        r#"
[plugins.meta]
path = "{}"
aliases = {{ "/api/webhooks/meta/leads" = "webhook" }}
{extra}
[plugins.meta.config]
verify_signature = {{ env = "META_VERIFY_SIGNATURE", default = true }}
graph_base_url = {{ env = "META_GRAPH_BASE_URL", default = "https://graph.facebook.com" }}
[plugins.meta.secrets]
app_secret = {{ env = "META_APP_SECRET" }}
verify_token = {{ env = "META_VERIFY_TOKEN" }}
page_access_token = {{ env = "META_PAGE_ACCESS_TOKEN" }}
"#,
        path.display()
    )
}

/// The plugins.toml entry of the test adapter that misbehaves on purpose
/// (`behaviour`: see host/tests/adapters/misbehaving), mounted at `name`.
pub fn misbehaving(name: &str, behaviour: &str, limits: &str) -> String {
    format!(
        "\n[plugins.{name}]\npath = \"{}\"\nlimits = {{ {limits} }}\nconfig = {{ behaviour = \"{behaviour}\" }}\n",
        plugin_wasm("portico-test-misbehaving").display()
    )
}

/// The database a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The backend of the test running on this task (set by [`both_backends!`]).
    static BACKEND: Backend;
}

impl Backend {
    /// The current test's backend: SQLite unless the test runs under [`on_backend`].
    pub fn current() -> Backend {
        BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
    }

    /// The backend a DATABASE_URL names.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// A new, empty database of this backend for a server whose folder is `dir`.
    fn fresh_url(self, dir: &Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite://{}", dir.join("portico.db").display()),
            Backend::Postgres => pg_cluster::shared().fresh_database(),
        }
    }
}

/// Run `test` with `backend` as the backend of every server it starts.
pub async fn on_backend<F: Future>(backend: Backend, test: F) -> F::Output {
    BACKEND.scope(backend, test).await
}

/// For each `async fn name()` listed, a module `name` with two tests, `sqlite`
/// and `postgres`, that run it on that backend (so `cargo test name` selects
/// both). Tokio test arguments, if any, come first in brackets:
///
/// ```ignore
/// both_backends!(a_test, another_test);
/// both_backends!([flavor = "multi_thread", worker_threads = 2] a_threaded_test);
/// ```
#[allow(unused_macros)]
macro_rules! both_backends {
    ([$($tokio:tt)*] $name:ident $(, $rest:ident)* $(,)?) => {
        mod $name {
            #[tokio::test($($tokio)*)]
            async fn sqlite() {
                $crate::common::on_backend($crate::common::Backend::Sqlite, super::$name()).await
            }

            #[tokio::test($($tokio)*)]
            async fn postgres() {
                $crate::common::on_backend($crate::common::Backend::Postgres, super::$name()).await
            }
        }
        $crate::common::both_backends!([$($tokio)*] $($rest),*);
    };
    ([$($tokio:tt)*]) => {};
    ($($name:ident),+ $(,)?) => {
        $crate::common::both_backends!([] $($name),+);
    };
}
#[allow(unused_imports)]
pub(crate) use both_backends;

/// A test's own connection to a server's database, whichever the backend.
/// SQL is written with `?` placeholders, as for SQLite; on PostgreSQL they
/// become `$1, $2…`. Columns PostgreSQL keeps as TIMESTAMPTZ cannot be decoded
/// through sqlx's Any driver: read them as `CAST(col AS TEXT)`.
#[derive(Clone)]
pub struct TestDb {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl TestDb {
    pub async fn connect(url: &str) -> TestDb {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url);
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test database {url}: {e}"));
        TestDb { pool, backend }
    }

    /// `sql` in this backend's dialect (placeholders).
    pub fn sql(&self, sql: &str) -> String {
        match self.backend {
            Backend::Sqlite => sql.to_string(),
            Backend::Postgres => numbered_placeholders(sql),
        }
    }

    /// `sqlite` or `postgres`, whichever this database speaks.
    pub fn pick<'a>(&self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }

    /// `sqlx::query`, placeholders translated; run it on `&db.pool`.
    pub fn query(&self, sql: &str) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query(AssertSqlSafe(self.sql(sql)))
    }

    /// `sqlx::query_as`, placeholders translated; run it on `&db.pool`.
    pub fn query_as<O>(&self, sql: &str) -> sqlx::query::QueryAs<'static, Any, O, AnyArguments>
    where
        O: for<'r> FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as(AssertSqlSafe(self.sql(sql)))
    }

    /// `sqlx::query_scalar`, placeholders translated; run it on `&db.pool`.
    pub fn query_scalar<O>(
        &self,
        sql: &str,
    ) -> sqlx::query::QueryScalar<'static, Any, O, AnyArguments>
    where
        (O,): for<'r> FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_scalar(AssertSqlSafe(self.sql(sql)))
    }

    /// Run a statement without parameters.
    pub async fn execute(&self, sql: &str) {
        self.query(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// `?` placeholders (outside quotes) as `$1, $2…`.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut n = 0;
    for c in sql.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                n += 1;
                out.push_str(&format!("${n}"));
                continue;
            }
            (None, _) => {}
        }
        out.push(c);
    }
    out
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub backend: Backend,
    pub db_url: String,
    db: tokio::sync::OnceCell<TestDb>,
    child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
}

impl Server {
    /// Start `portico serve` with `plugins_toml` and extra env.
    pub fn start(plugins_toml: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db_url = Backend::current().fresh_url(dir.path());
        Server::start_with(dir, db_url, plugins_toml, env)
    }

    /// Start `portico serve` on an existing database (several servers may share
    /// one PostgreSQL database), in a folder of its own.
    pub fn start_on_database(db_url: &str, plugins_toml: &str, env: &[(&str, &str)]) -> Server {
        Server::start_with(
            tempfile::tempdir().unwrap(),
            db_url.into(),
            plugins_toml,
            env,
        )
    }

    fn start_with(
        dir: tempfile::TempDir,
        db_url: String,
        plugins_toml: &str,
        env: &[(&str, &str)],
    ) -> Server {
        // reqwest is built with rustls but no provider: the tests' client needs one too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plugins = dir.path().join("plugins.toml");
        std::fs::write(&plugins, plugins_toml).unwrap();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !env.iter().any(|(k, _)| k == "META_APP_SECRET") {
            env.push(("META_APP_SECRET".into(), APP_SECRET.into()));
        }
        if !env.iter().any(|(k, _)| k == "PORTICO_ADMIN_TOKEN") {
            env.push(("PORTICO_ADMIN_TOKEN".into(), TEST_ADMIN.into()));
        }
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (child, base) = spawn_serve(dir.path(), &db_url, &env, &logs);
        Server {
            dir,
            base,
            backend: Backend::of_url(&db_url),
            db_url,
            db: tokio::sync::OnceCell::new(),
            child,
            logs,
            env,
        }
    }

    /// Start `portico {command}` (serve, dev) in `dir`, whose plugins.toml is already written.
    pub fn start_in(dir: tempfile::TempDir, command: &str, env: &[(&str, &str)]) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let backend = Backend::current();
        let db_url = backend.fresh_url(dir.path());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (child, base) = spawn_command(dir.path(), &db_url, &env, &logs, command);
        Server {
            dir,
            base,
            backend,
            db_url,
            db: tokio::sync::OnceCell::new(),
            child,
            logs,
            env,
        }
    }

    /// kill -9 the server, then start it again on the same database (new port).
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        let (child, base) = spawn_serve(self.dir.path(), &self.db_url, &self.env, &self.logs);
        self.child = child;
        self.base = base;
    }

    /// kill -9 the server, then start it again on the same database with
    /// `env` set on top of what it had.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        for (k, v) in env {
            self.env.retain(|(name, _)| name != k);
            self.env.push((k.to_string(), v.to_string()));
        }
        let (child, base) = spawn_serve(self.dir.path(), &self.db_url, &self.env, &self.logs);
        self.child = child;
        self.base = base;
    }

    /// SIGKILL: no shutdown hook runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The admin token this server was started with.
    pub fn admin_token(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "PORTICO_ADMIN_TOKEN")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| TEST_ADMIN.into())
    }

    /// What became of delivery `event_id` and its items, once processed: the
    /// webhook answers as soon as the delivery is on disk, so this polls
    /// `GET /api/admin/deliveries/{id}` (30 s at most).
    pub async fn outcome(&self, event_id: i64) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = reqwest::Client::new()
                .get(self.url(&format!("/api/admin/deliveries/{event_id}")))
                .bearer_auth(self.admin_token())
                .send()
                .await
                .unwrap();
            let json: serde_json::Value = r.json().await.unwrap_or_default();
            if json["final"] == true {
                return json;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "delivery {event_id} not processed in 30 s: {json}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A webhook's answer (200 with the event id), then what became of its items.
    pub async fn processed(&self, answer: reqwest::Response) -> serde_json::Value {
        assert_eq!(answer.status(), 200);
        let json: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(json["status"], "received", "{json}");
        self.outcome(json["event_id"].as_i64().unwrap()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Run a `portico` subcommand against this server's database; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = base_command(self.dir.path(), &self.db_url, &self.env)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "portico {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A tenant owning Meta page `page`; returns the tenant id.
    pub fn tenant_with_page(&self, page: &str) -> i64 {
        let id: i64 = self.cli(&["tenant", "add", "Acme"]).trim().parse().unwrap();
        self.cli(&[
            "source",
            "add",
            "--tenant",
            &id.to_string(),
            "--kind",
            "meta",
            "--key",
            page,
        ]);
        id
    }

    /// The test's connection to this server's database (one pool per server).
    pub async fn db(&self) -> TestDb {
        self.db
            .get_or_init(|| TestDb::connect(&self.db_url))
            .await
            .clone()
    }

    /// The health entry of plugin `name`.
    pub async fn plugin_health(&self, name: &str) -> serde_json::Value {
        let health: serde_json::Value = reqwest::get(self.url("/api/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// Rewrite this server's plugins.toml (atomically).
    pub fn write_plugins_toml(&self, text: &str) {
        let path = self.dir.path().join("plugins.toml");
        let tmp = self.dir.path().join("plugins.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The log once a line satisfies `wanted` (or panic after 10 s naming
    /// `what`): the server's stderr is read by a thread, so a line written
    /// just before an answer can reach the test just after it.
    pub async fn wait_for_log(&self, what: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let started = std::time::Instant::now();
        loop {
            let lines = self.logs.lock().unwrap().clone();
            if lines.iter().any(|l| wanted(l)) {
                return lines;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what}: not in the log after 10 s:\n{}",
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_serve(
    dir: &Path,
    db_url: &str,
    env: &[(String, String)],
    logs: &Arc<Mutex<Vec<String>>>,
) -> (Child, String) {
    spawn_command(dir, db_url, env, logs, "serve")
}

/// Run `portico {command} --listen 127.0.0.1:0` and wait for it to listen.
fn spawn_command(
    dir: &Path,
    db_url: &str,
    env: &[(String, String)],
    logs: &Arc<Mutex<Vec<String>>>,
    command: &str,
) -> (Child, String) {
    let mut cmd = base_command(dir, db_url, env);
    cmd.args([command, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start portico");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                // Text or JSON log lines: the address ends at a space or a quote.
                let addr: String = line[at + "listening on http://".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                let _ = tx.send(addr);
            }
            sink.lock().unwrap().push(line);
        }
    });
    // Generous: `portico dev` builds its plugins cold before it listens.
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(addr) => (child, format!("http://{addr}")),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "portico did not start; its log:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    }
}

/// A `portico` command with a clean environment for the settings it reads.
pub fn base_command(dir: &Path, db_url: &str, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portico"));
    cmd.current_dir(dir)
        .env("DATABASE_URL", db_url)
        .env("PORTICO_PLUGINS", dir.join("plugins.toml"))
        .env("PORTICO_LOG", "info")
        .stdin(Stdio::null());
    for key in [
        "META_APP_SECRET",
        "META_GRAPH_BASE_URL",
        "META_VERIFY_SIGNATURE",
        "META_VERIFY_TOKEN",
        "META_PAGE_ACCESS_TOKEN",
        "PORTICO_LISTEN",
        "PORTICO_LOG_FORMAT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "PORTICO_ADMIN_TOKEN",
        "PORTICO_INTAKE_TOKEN",
        "PORTICO_SECRET_KEY",
        "PORTICO_HEADER_TIMEOUT_MS",
        "PORTICO_REQUEST_TIMEOUT_MS",
        "PORTICO_MAX_CONNECTIONS",
        "PORTICO_MAX_IN_FLIGHT",
        "PORTICO_ADMIN_MAX_BODY_BYTES",
        "PORTICO_CACHE_DIR",
        "PORTICO_RETRY_SCHEDULE_SECS",
        "PORTICO_RETRY_POLL_MS",
        "PORTICO_RETENTION_DAYS",
        "PORTICO_LEASE_SECS",
        "PORTICO_OUTBOX_POLL_MS",
        "WHATSAPP_WEBHOOK_ENABLED",
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_VERIFY_TOKEN",
        "WHATSAPP_ACCESS_TOKEN",
        "WHATSAPP_API_BASE_URL",
        "STANDARD_WEBHOOK_SECRET",
        "GOOGLE_ADS_OFFLINE_ENABLED",
        "GOOGLE_ADS_API_BASE_URL",
        "GOOGLE_ADS_CUSTOMER_ID",
        "GOOGLE_ADS_LOGIN_CUSTOMER_ID",
        "GOOGLE_ADS_CONVERSION_ACTION",
        "GOOGLE_ADS_DEVELOPER_TOKEN",
        "GOOGLE_ADS_ACCESS_TOKEN",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// POST a signed Meta delivery.
pub async fn post_signed(url: &str, body: &str, secret: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(body.as_bytes(), secret))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The number `sql` (a `SELECT COUNT(*) …`) answers.
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    db.query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Wait until `sql` counts `want` (items are processed after the webhook's answer); 15 s at most.
pub async fn wait_count(db: &TestDb, sql: &str, want: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n = count(db, sql).await;
        if n == want || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serve a fake provider API on 127.0.0.1:0 for the rest of the test; returns its base URL.
pub async fn serve_fake(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// How the fake Graph API answers lead GETs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphMode {
    /// 200 with the lead.
    Ok,
    /// 400 with an expired-token error (code 190).
    Expired,
    /// 500 with a plain text body.
    Down,
    /// Answers after this many milliseconds.
    Slow(u64),
    /// Every n-th request answers 500, the others 200.
    FailEvery(u64),
    /// Holds every request until [`FakeGraph::release`], then answers 200.
    Held,
}

pub struct FakeGraph {
    pub base: String,
    pub state: Arc<Mutex<FakeGraphState>>,
}

pub struct FakeGraphState {
    /// Opened by [`FakeGraph::release`] for GraphMode::Held.
    pub gate: Arc<tokio::sync::Semaphore>,
    pub mode: GraphMode,
    pub requests: u64,
    pub tokens: Vec<String>,
}

/// The Graph answer for a lead: non-ASCII escaped as Meta sends it.
pub fn graph_lead_json(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","created_time":"2026-09-20T15:25:28+0000","ad_id":"120215566778899001","ad_name":"Spring promo \u2013 carousel","campaign_id":"120215566778899003","form_id":"812345678901234","is_organic":false,"platform":"fb","field_data":[{{"name":"full_name","values":["Jos\u00e9 P\u00e9rez"]}},{{"name":"email","values":["jose.perez@example.com"]}},{{"name":"phone_number","values":["+5511987654321"]}},{{"name":"city","values":["S\u00e3o Paulo"]}}],"custom_disclaimer_responses":[{{"checkbox_key":"optional_1","is_checked":"1"}}]}}"#
    )
}

impl FakeGraph {
    pub async fn start(mode: GraphMode) -> FakeGraph {
        use axum::extract::{Path as AxPath, RawQuery, State};
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let state = Arc::new(Mutex::new(FakeGraphState {
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            mode,
            requests: 0,
            tokens: Vec::new(),
        }));
        async fn lead(
            State(state): State<Arc<Mutex<FakeGraphState>>>,
            AxPath((_version, id)): AxPath<(String, String)>,
            RawQuery(query): RawQuery,
        ) -> axum::response::Response {
            let (mode, gate) = {
                let mut s = state.lock().unwrap();
                s.requests += 1;
                let token = query
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|p| p.strip_prefix("access_token=").map(str::to_string))
                    .unwrap_or_default();
                s.tokens.push(token);
                let mode = match s.mode {
                    GraphMode::FailEvery(n) if s.requests % n == 0 => GraphMode::Down,
                    GraphMode::FailEvery(_) => GraphMode::Ok,
                    m => m,
                };
                (mode, s.gate.clone())
            };
            if mode == GraphMode::Held {
                let _ = gate.acquire().await.map(|p| p.forget());
            }
            match mode {
                GraphMode::Ok | GraphMode::FailEvery(_) | GraphMode::Held => {
                    ([("content-type", "application/json")], graph_lead_json(&id)).into_response()
                }
                GraphMode::Expired => (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"error":{"message":"Error validating access token: Session has expired on Sunday, 20-Sep-26 10:00:00 PDT.","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"AbC123dEfGhIjK"}}"#,
                )
                    .into_response(),
                GraphMode::Down => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
                GraphMode::Slow(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    ([("content-type", "application/json")], graph_lead_json(&id)).into_response()
                }
            }
        }
        let app = axum::Router::new()
            .route("/{version}/{id}", axum::routing::get(lead))
            .with_state(state.clone());
        FakeGraph {
            base: serve_fake(app).await,
            state,
        }
    }

    pub fn set_mode(&self, mode: GraphMode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Let every held request (and all later ones) through.
    pub fn release(&self) {
        self.state
            .lock()
            .unwrap()
            .gate
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// The plugins.toml lines that point the Meta adapter at this fake.
    pub fn meta_lines(&self) -> String {
        format!("allowed_hosts = [\"{}\"]\n", self.base)
    }
}
