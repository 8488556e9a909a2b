//! Test kit: builds the real plugins once per test binary, starts the real
//! `portico` binary on 127.0.0.1:0 with a temporary SQLite database, and talks
//! to it over HTTP like a provider would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

pub const APP_SECRET: &str = "test_app_secret_123";
pub const PAGE_ID: &str = "138124712925158";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Build the bundled plugins once (own target dir: a nested cargo must not share ours).
pub fn plugin_wasm(package: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target_dir = workspace_root().join("target").join("test-plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--profile",
                "plugin",
                "--target",
                "wasm32-wasip2",
                "-p",
                "portico-meta",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo to build the plugins");
        assert!(status.success(), "building the test plugins failed");
        target_dir.join("wasm32-wasip2").join("plugin")
    });
    dir.join(format!("{}.wasm", package.replace('-', "_")))
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
    format!(
        r#"
[plugins.meta]
path = "{}"
aliases = {{ "/api/webhooks/meta/leads" = "webhook" }}
{extra}
[plugins.meta.config]
verify_signature = {{ env = "META_VERIFY_SIGNATURE", default = true }}
[plugins.meta.secrets]
app_secret = {{ env = "META_APP_SECRET" }}
verify_token = {{ env = "META_VERIFY_TOKEN" }}
"#,
        plugin_wasm("portico-meta").display()
    )
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub db_url: String,
    child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
}

impl Server {
    /// Start `portico serve` with `plugins_toml` and extra env.
    pub fn start(plugins_toml: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins.toml");
        std::fs::write(&plugins, plugins_toml).unwrap();
        let db_url = format!("sqlite://{}", dir.path().join("portico.db").display());
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !env.iter().any(|(k, _)| k == "META_APP_SECRET") {
            env.push(("META_APP_SECRET".into(), APP_SECRET.into()));
        }
        let mut cmd = base_command(dir.path(), &db_url, &env);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start portico");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let _ = tx.send(line[at + "listening on http://".len()..].trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "portico did not start; its log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            dir,
            base: format!("http://{addr}"),
            db_url,
            child,
            logs,
            env,
        }
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

    pub async fn db(&self) -> SqlitePool {
        SqlitePool::connect(&self.db_url).await.unwrap()
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        "META_VERIFY_SIGNATURE",
        "META_VERIFY_TOKEN",
        "META_PAGE_ACCESS_TOKEN",
        "PORTICO_LISTEN",
        "PORTICO_ADMIN_TOKEN",
        "WHATSAPP_WEBHOOK_ENABLED",
        "GOOGLE_ADS_OFFLINE_ENABLED",
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

pub async fn count(db: &SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db)
        .await
        .unwrap()
}
