//! Adapters written in Python and JavaScript, built with their guest libraries
//! (plugins/sdk-python, plugins/sdk-js) by the pinned componentize-py and
//! componentize-js, serving next to the Rust adapter they port, and the
//! authoring loop in those languages: `portico plugin new --lang`, the
//! templates' own tests, `portico build`, `plugin check`/`call`, `portico dev`.
//!
//! Needs python3 (with venv) and Node.js 20 with npm; the first build installs
//! the pinned tools into target/portico-tools.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The leads' `fields`, as the Rust adapter stores them: keys sorted, text as UTF-8.
const FIELDS: &str =
    r#"{"a":"ünïcode \"quoted\"","b":{"a":true,"y":[1,2.5,null]},"city":"São Paulo","n":1}"#;

/// source, external_id, full_name, phone, fields_json, tenant_id
type LeadRow = (String, String, Option<String>, Option<String>, String, i64);

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Where the pinned component toolchains are installed, once for every test.
fn tools_dir() -> PathBuf {
    workspace_root().join("target").join("portico-tools")
}

fn succeeds(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", command])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Python 3 with venv and Node.js with npm, which the guest libraries' builds
/// run. On a fresh Debian machine, as root, they are installed first (as the
/// PostgreSQL tests install their server), so the README's `cargo test
/// --workspace` needs nothing set up by hand.
fn ensure_language_tools() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let present = || {
            succeeds("python3 -c 'import venv, ensurepip'")
                && succeeds("node --version")
                && succeeds("npm --version")
        };
        if present() {
            return;
        }
        if succeeds("[ \"$(id -u)\" = 0 ] && apt-get --version") {
            eprintln!(
                "installing Python 3 and Node.js for the adapters in those languages: apt-get install python3 python3-venv nodejs npm"
            );
            succeeds(
                "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
                 apt-get install -y -qq --no-install-recommends python3 python3-venv nodejs npm",
            );
        }
        assert!(
            present(),
            "the Python and JavaScript adapter tests need python3 (with venv) and Node.js 20+ with npm: install them, e.g. `apt-get install python3 python3-venv nodejs npm` (.ci/run does this when they are missing)"
        );
    });
}

/// Run a guest library's build.sh (`build DIR OUT` or `test DIR`) in `root`.
fn guest_tool(root: &Path, sdk: &str, args: &[&str]) -> std::process::Output {
    ensure_language_tools();
    let out = Command::new("sh")
        .current_dir(root)
        .arg(format!("plugins/{sdk}/build.sh"))
        .args(args)
        .env("PORTICO_TOOLS_DIR", tools_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sh plugins/{sdk}/build.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An adapter folder built with its guest library's build.sh into
/// target/test-polyglot, once per test binary.
fn built(sdk: &str, dir: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, out)) = built.iter().find(|(d, _)| d == dir) {
        return out.clone();
    }
    let root = workspace_root();
    let name = Path::new(dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace('-', "_");
    let out = root
        .join("target/test-polyglot")
        .join(format!("{name}.wasm"));
    let started = Instant::now();
    guest_tool(&root, sdk, &["build", dir, out.to_str().unwrap()]);
    eprintln!("{dir}: built (or up to date) in {:?}", started.elapsed());
    built.push((dir.to_string(), out.clone()));
    out
}

/// The Python and JavaScript ports of Standard Webhooks.
fn ported(lang: &str) -> PathBuf {
    match lang {
        "python" => built("sdk-python", "plugins/standard-webhooks-py"),
        _ => built("sdk-js", "plugins/standard-webhooks-js"),
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn standard_signature(id: &str, ts: i64, body: &str) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(WHSEC.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", b64(&mac.finalize().into_bytes()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One line of what a mount answered and made, with ids taken out: the three
/// adapters must write the same transcript.
async fn post(
    server: &Server,
    mount: &str,
    id: &str,
    ts: i64,
    body: &str,
    signature: Option<&str>,
) -> String {
    let mut request = reqwest::Client::new()
        .post(server.url(&format!("/api/integrations/{mount}/webhook")))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("webhook-signature", signature);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    if status != 200 {
        let text = answer.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        return format!("{status} {} {}", json["error"], json["message"]);
    }
    let outcome = server.processed(answer).await;
    let items: Vec<String> = outcome["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{} {} {}", i["dedup_key"], i["status"], i["error"]))
        .collect();
    format!(
        "{status} {} {} {}",
        outcome["status"],
        outcome["error"],
        items.join("; ")
    )
}

/// The same end-to-end run against one mount: signed events to leads, a
/// provider's retry stored once, refusals with their reasons, ignored types,
/// and bad payloads named.
async fn standard_run(server: &Server, mount: &str) -> Vec<String> {
    let ts = now();
    let lead = |id: &str, name: &str| {
        format!(
            r#"{{"type":"lead.created","timestamp":"2026-11-28T12:00:00Z","data":{{"id":"{id}","source_key":"acme-site","full_name":"{name}","email":"ana@example.com","phone":"+5511900000000","fields":{{"city":"São Paulo","n":1,"b":{{"y":[1,2.5,null],"a":true}},"a":"ünïcode \"quoted\""}}}}}}"#
        )
    };
    // Lead ids are the mount's own: a lead is unique per tenant, source and id.
    let first = lead(&format!("{mount}-1"), "Ana Silva");
    let second = lead(&format!("{mount}-2"), "Bruno Lima");
    let other = r#"{"type":"lead.deleted","data":{"id":"L-1","source_key":"acme-site"}}"#;
    let unnamed = r#"{"type":"lead.created","data":{"id":"L-3"}}"#;
    let sign = |id: &str, body: &str| standard_signature(id, ts, body);
    let lines = vec![
        post(
            server,
            mount,
            "msg_1",
            ts,
            &first,
            Some(&sign("msg_1", &first)),
        )
        .await,
        // The provider's retry of msg_1: stored once.
        post(
            server,
            mount,
            "msg_1",
            ts,
            &first,
            Some(&sign("msg_1", &first)),
        )
        .await,
        post(
            server,
            mount,
            "msg_2",
            ts,
            &second,
            Some(&sign("msg_2", &second)),
        )
        .await,
        post(server, mount, "msg_3", ts, &first, Some("v1,AAAA")).await,
        post(server, mount, "msg_4", ts, &first, None).await,
        post(
            server,
            mount,
            "msg_5",
            ts - 600,
            &first,
            Some(&standard_signature("msg_5", ts - 600, &first)),
        )
        .await,
        post(
            server,
            mount,
            "msg_6",
            ts,
            &first,
            Some(&sign("msg_1", &first)),
        )
        .await,
        post(
            server,
            mount,
            "msg_7",
            ts,
            other,
            Some(&sign("msg_7", other)),
        )
        .await,
        post(
            server,
            mount,
            "msg_8",
            ts,
            unnamed,
            Some(&sign("msg_8", unnamed)),
        )
        .await,
        post(
            server,
            mount,
            "msg_9",
            ts,
            "{\"type\":",
            Some(&sign("msg_9", "{\"type\":")),
        )
        .await,
    ];
    // The skew of the stale timestamp is a second more when the clock ticks mid-run.
    let skew = |l: String| match (l.find("timestamp is "), l.find(" s from now")) {
        (Some(a), Some(b)) if a < b => format!("{}timestamp is SKEW{}", &l[..a], &l[b..]),
        _ => l,
    };
    lines
        .into_iter()
        .map(|l| skew(l.replace(mount, "MOUNT")))
        .collect()
}

fn entry(name: &str, mount: &str, wasm: &Path) -> String {
    format!(
        "\n[plugins.{name}]\npath = \"{}\"\nmount = \"{mount}\"\nsource_kinds = [\"standard\"]\n[plugins.{name}.secrets]\nsigning_secret = {{ env = \"STANDARD_WEBHOOK_SECRET\" }}\n",
        wasm.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_in_rust_python_and_javascript_answer_and_store_alike() {
    let plugins = [
        entry(
            "standard-webhooks",
            "standard",
            &plugin_wasm("portico-standard-webhooks"),
        ),
        entry("standard-webhooks-py", "standard-py", &ported("python")),
        entry("standard-webhooks-js", "standard-js", &ported("javascript")),
    ]
    .concat();
    let server = Server::start(
        &plugins,
        &[
            ("STANDARD_WEBHOOK_SECRET", WHSEC),
            ("PORTICO_CACHE_DIR", &shared_cache()),
        ],
    );
    let tenant = server.cli(&["tenant", "add", "Acme"]).trim().to_string();
    server.cli(&[
        "source",
        "add",
        "--tenant",
        &tenant,
        "--kind",
        "standard",
        "--key",
        "acme-site",
    ]);
    for name in [
        "standard-webhooks",
        "standard-webhooks-py",
        "standard-webhooks-js",
    ] {
        let health = server.plugin_health(name).await;
        assert_eq!(
            health["state"],
            "loaded",
            "{name}: {health}\n{}",
            server.log_text()
        );
    }

    let rust = standard_run(&server, "standard").await;
    let expected = [
        r#"200 "processed" null "lead:MOUNT-1" "processed" null"#,
        r#"200 "processed" null "lead:MOUNT-1" "duplicate" null"#,
        r#"200 "processed" null "lead:MOUNT-2" "processed" null"#,
        r#"401 "invalid_signature" "no v1 signature in webhook-signature matches""#,
        r#"401 "invalid_signature" "missing webhook-signature header""#,
        r#"401 "invalid_signature" "webhook-timestamp is SKEW s from now; at most 300 s is accepted""#,
        r#"401 "invalid_signature" "no v1 signature in webhook-signature matches""#,
        r#"200 "processed" null "msg:msg_7" "ignored" "event type \"lead.deleted\" is not handled (only lead.created)""#,
        r#"200 "dead" "invalid_payload: data.source_key is missing" "#,
        r#"200 "dead" "invalid_payload: $ is not valid JSON"#,
    ];
    assert_eq!(rust.len(), expected.len());
    for (line, want) in rust.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "{line:?} is not {want:?}:\n{rust:#?}"
        );
    }
    let python = standard_run(&server, "standard-py").await;
    let javascript = standard_run(&server, "standard-js").await;
    // The parser's own words for broken JSON differ by language: the path does not.
    let same = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                l.split(" is not valid JSON")
                    .next()
                    .unwrap_or(l)
                    .to_string()
            })
            .collect()
    };
    assert_eq!(same(&python), same(&rust), "Python differs from Rust");
    assert_eq!(
        same(&javascript),
        same(&rust),
        "JavaScript differs from Rust"
    );

    // Each adapter made the same two leads, once each, for the tenant.
    let db = server.db().await;
    let leads: Vec<LeadRow> = db
        .query_as(
            "SELECT source, external_id, full_name, phone, fields_json, tenant_id FROM leads ORDER BY id",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let tenant: i64 = tenant.parse().unwrap();
    let made = |mount: &str| -> Vec<_> {
        leads
            .iter()
            .filter(|l| [format!("{mount}-1"), format!("{mount}-2")].contains(&l.1))
            .map(|l| {
                (
                    l.0.clone(),
                    l.1.replace(mount, "MOUNT"),
                    l.2.clone(),
                    l.3.clone(),
                    l.4.clone(),
                    l.5,
                )
            })
            .collect()
    };
    let rust_leads = made("standard");
    assert_eq!(
        rust_leads,
        [
            (
                "Standard".to_string(),
                "MOUNT-1".to_string(),
                Some("Ana Silva".to_string()),
                Some("+5511900000000".to_string()),
                FIELDS.to_string(),
                tenant
            ),
            (
                "Standard".to_string(),
                "MOUNT-2".to_string(),
                Some("Bruno Lima".to_string()),
                Some("+5511900000000".to_string()),
                FIELDS.to_string(),
                tenant
            ),
        ]
    );
    assert_eq!(made("standard-py"), rust_leads);
    assert_eq!(made("standard-js"), rust_leads);
    assert_eq!(leads.len(), 6, "{leads:?}");
}

/// Where every test here keeps compiled components: a 10–20 MB component is
/// compiled by the first server that loads it, and loaded from here by the rest.
fn shared_cache() -> String {
    workspace_root()
        .join("target/test-polyglot/component-cache")
        .display()
        .to_string()
}

/// Copy `from` into `to`, leaving out what tests and tools write beside sources.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["__pycache__", "node_modules"].contains(&name.to_str().unwrap_or("")) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// A folder an author works in: wit/, the guest libraries, an empty plugins.toml.
fn author_workspace() -> tempfile::TempDir {
    let root = workspace_root();
    let ws = tempfile::tempdir().unwrap();
    for rel in ["wit", "plugins/sdk-python", "plugins/sdk-js"] {
        copy_tree(&root.join(rel), &ws.path().join(rel));
    }
    std::fs::write(ws.path().join("plugins.toml"), "").unwrap();
    ws
}

fn portico(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portico"))
        .current_dir(dir)
        .args(args)
        .env("PORTICO_TOOLS_DIR", tools_dir())
        .env("PORTICO_CACHE_DIR", shared_cache())
        .output()
        .unwrap()
}

fn assert_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The plugins.toml entry `plugin new` printed, with a secret filled in.
fn printed_entry(printed: &str, name: &str) -> String {
    let from = printed.find(&format!("[plugins.{name}]")).unwrap();
    let entry = &printed[from..];
    let secrets = entry.find(&format!("[plugins.{name}.secrets]")).unwrap();
    format!(
        "{}[plugins.{name}.secrets]\nsigning_secret = \"s3cret\"\n",
        &entry[..secrets]
    )
}

#[test]
fn python_and_javascript_templates_build_pass_their_tests_and_run_offline() {
    ensure_language_tools();
    let ws = author_workspace();
    let mut plugins = String::new();
    for (name, lang, sdk) in [
        ("acme-py", "python", "sdk-python"),
        ("acme-js", "javascript", "sdk-js"),
    ] {
        let printed = assert_ok(&portico(
            ws.path(),
            &["plugin", "new", name, "--lang", lang],
        ));
        assert!(
            printed.contains(&format!("sh plugins/{sdk}/build.sh build plugins/{name}")),
            "{printed}"
        );
        // Its own tests, in its language's runner, without a host.
        let tested = guest_tool(ws.path(), sdk, &["test", &format!("plugins/{name}")]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&tested.stdout),
            String::from_utf8_lossy(&tested.stderr)
        );
        assert!(
            said.contains("Ran 2 tests")
                || (said.contains("# pass 2") && said.contains("# fail 0")),
            "{said}"
        );
        plugins.push_str(&printed_entry(&printed, name));
        // Scaffolding twice is refused.
        assert!(
            !portico(ws.path(), &["plugin", "new", name, "--lang", lang])
                .status
                .success()
        );
    }
    std::fs::write(ws.path().join("plugins.toml"), &plugins).unwrap();

    // `portico build` builds both with their pinned toolchains.
    let built = portico(ws.path(), &["build"]);
    assert_ok(&built);
    assert!(String::from_utf8_lossy(&built.stderr).contains("built 2 plugin(s)"));

    let body = br#"{"id":"42","source_key":"acme","full_name":"Ana","fields":{"plan":"pro"}}"#;
    std::fs::write(ws.path().join("event.json"), body).unwrap();
    let signature = format!("X-Signature: {}", sign(body, "s3cret"));
    for (name, wasm) in [("acme-py", "acme_py"), ("acme-js", "acme_js")] {
        let file = format!("target/wasm32-wasip2/plugin/{wasm}.wasm");
        let checked = assert_ok(&portico(ws.path(), &["plugin", "check", &file]));
        assert!(
            checked.contains(&format!("\"name\": \"{name}\"")),
            "{checked}"
        );
        assert!(
            checked.contains("portico:adapter/adapter@0.3.0"),
            "{checked}"
        );
        let called = assert_ok(&portico(
            ws.path(),
            &[
                "plugin",
                "call",
                name,
                "--body",
                "event.json",
                "--header",
                &signature,
            ],
        ));
        let json: serde_json::Value = serde_json::from_str(&called).unwrap();
        let op = &json["items"][0]["map"]["operations"][0];
        assert_eq!(
            (
                op["op"].as_str(),
                op["external_id"].as_str(),
                op["source"].as_str()
            ),
            (Some("create_lead"), Some("42"), Some(name)),
            "{json}"
        );
        assert_eq!(op["fields_json"], r#"{"plan":"pro"}"#, "{json}");
        let refused = portico(
            ws.path(),
            &[
                "plugin",
                "call",
                name,
                "--body",
                "event.json",
                "--header",
                "X-Signature: sha256=00",
            ],
        );
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr)
                .contains("X-Signature does not match the body"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portico_dev_serves_an_edited_python_adapter_and_keeps_serving_through_a_broken_edit() {
    ensure_language_tools();
    let ws = author_workspace();
    let printed = assert_ok(&portico(
        ws.path(),
        &["plugin", "new", "acme-py", "--lang", "python"],
    ));
    std::fs::write(
        ws.path().join("plugins.toml"),
        printed_entry(&printed, "acme-py"),
    )
    .unwrap();
    let logic = ws.path().join("plugins/acme-py/logic.py");
    let server = Server::start_in(
        ws,
        "dev",
        &[
            ("PORTICO_TOOLS_DIR", tools_dir().to_str().unwrap()),
            ("PORTICO_CACHE_DIR", &shared_cache()),
            ("PORTICO_ADMIN_TOKEN", TEST_ADMIN),
        ],
    );
    let first = server.plugin_health("acme-py").await;
    assert_eq!(first["state"], "loaded", "{first}\n{}", server.log_text());
    let tenant = server.cli(&["tenant", "add", "Acme"]).trim().to_string();
    server.cli(&[
        "source", "add", "--tenant", &tenant, "--kind", "acme-py", "--key", "acme",
    ]);
    let post = |id: &'static str| {
        let body = format!(r#"{{"id":"{id}","source_key":"acme","full_name":"Ana"}}"#);
        let signature = sign(body.as_bytes(), "s3cret");
        let url = server.url("/api/integrations/acme-py/webhook");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    server.processed(post("1").await).await;
    let db = server.db().await;
    let source_of = |id: &'static str| {
        let db = &db;
        async move {
            let source: String = db
                .query_scalar(&format!(
                    "SELECT source FROM leads WHERE external_id = '{id}'"
                ))
                .fetch_one(&db.pool)
                .await
                .unwrap();
            source
        }
    };
    assert_eq!(source_of("1").await, "acme-py");

    // Save an edit; time it until the new version answers.
    let text = std::fs::read_to_string(&logic).unwrap();
    let edited = text.replace(
        "LEAD_SOURCE = \"acme-py\"",
        "LEAD_SOURCE = \"Acme (edited)\"",
    );
    assert_ne!(edited, text);
    let saved = Instant::now();
    std::fs::write(&logic, &edited).unwrap();
    let first_sha = first["sha256"].as_str().unwrap().to_string();
    loop {
        let h = server.plugin_health("acme-py").await;
        if h["sha256"] != first_sha.as_str() && h["state"] == "loaded" {
            break;
        }
        assert!(
            saved.elapsed() < Duration::from_secs(180),
            "no reload:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let serving = saved.elapsed();
    server.processed(post("2").await).await;
    assert_eq!(source_of("2").await, "Acme (edited)");
    let log = server.log_text();
    let reload = log
        .lines()
        .rfind(|l| l.contains("plugin loaded") && l.contains("acme-py"))
        .unwrap_or_default()
        .to_string();
    let rebuilt = log
        .lines()
        .rfind(|l| l.contains("rebuilt acme-py in"))
        .unwrap_or_default()
        .to_string();
    eprintln!("save to serving: {serving:?}\n  {rebuilt}\n  {reload}");

    // A broken edit: the build's error is shown and the edited version keeps serving.
    std::fs::write(&logic, format!("{edited}\ndef broken(:\n")).unwrap();
    // (A rebuild takes seconds to tens of seconds in a debug host under load.)
    let deadline = Instant::now() + Duration::from_secs(180);
    let log = loop {
        let log = server.log_text();
        if log.contains("the running version of acme-py keeps serving") {
            break log;
        }
        assert!(Instant::now() < deadline, "no failed build:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(log.contains("building plugin acme-py failed"), "{log}");
    assert!(
        log.contains("SyntaxError") || log.contains("invalid syntax"),
        "{log}"
    );
    server.processed(post("3").await).await;
    assert_eq!(source_of("3").await, "Acme (edited)");
}

/// A test adapter of host/tests/polyglot.
fn probe(lang: &str) -> PathBuf {
    match lang {
        "python" => built("sdk-python", "host/tests/polyglot/probe-py"),
        _ => built("sdk-js", "host/tests/polyglot/probe-js"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_libraries_reach_config_secrets_the_cache_the_log_and_outbound_http() {
    use axum::routing::post;
    let fake = serve_fake(axum::Router::new().route(
        "/hook",
        post(|headers: axum::http::HeaderMap, body: String| async move {
            let got: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let probe = headers
                .get("x-probe")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (
                axum::http::StatusCode::CREATED,
                axum::Json(serde_json::json!({"got": got, "probe": probe})),
            )
        }),
    ))
    .await;
    let mut plugins = String::new();
    for (name, lang) in [("probe-py", "python"), ("probe-js", "javascript")] {
        plugins.push_str(&format!(
            "[plugins.{name}]\npath = \"{}\"\nallowed_hosts = [\"{fake}\"]\nconfig = {{ target_url = \"{fake}/hook\" }}\nsecrets = {{ token = \"t0k\" }}\n",
            probe(lang).display()
        ));
    }
    let server = Server::start(&plugins, &[("PORTICO_CACHE_DIR", &shared_cache())]);
    for (name, language) in [("probe-py", "python"), ("probe-js", "javascript")] {
        let get = |to: &str| {
            let url = server.url(&format!("/api/integrations/{name}/probe?to={to}"));
            async move {
                let r = reqwest::get(url).await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap(),
                )
            }
        };
        let (status, first) = get("allowed").await;
        assert_eq!(status, 200, "{name}: {first}\n{}", server.log_text());
        assert_eq!(first["status"], 201, "{first}");
        assert_eq!(
            first["answer"]["got"]["hello"],
            format!("from {language}"),
            "{first}"
        );
        assert_eq!(first["answer"]["probe"], &name[6..], "{first}");
        assert_eq!(first["content_type"], "application/json", "{first}");
        assert_eq!(first["secret_set"], true, "{first}");
        // The cache outlives the instance: each call runs in a fresh one.
        let (_, second) = get("allowed").await;
        assert_eq!(
            (first["hits"].as_i64(), second["hits"].as_i64()),
            (Some(1), Some(2))
        );
        let (status, denied) = get("denied").await;
        assert_eq!(status, 502, "{denied}");
        assert_eq!(denied["error"], "not_allowed", "{denied}");
        assert!(
            denied["message"]
                .as_str()
                .unwrap()
                .contains("is not allowed for plugin"),
            "{denied}"
        );
        server
            .wait_for_log("the adapter's log line", |l| {
                l.contains("probe call 3") && l.contains(&format!("plugin=\"{name}\""))
            })
            .await;
    }
}

#[test]
fn the_guest_libraries_and_the_ports_pass_their_own_unit_tests() {
    let root = workspace_root();
    for (sdk, dir, at_least) in [
        ("sdk-python", "plugins/sdk-python/tests", 12),
        ("sdk-python", "plugins/standard-webhooks-py", 5),
        ("sdk-js", "plugins/sdk-js", 12),
        ("sdk-js", "plugins/standard-webhooks-js", 5),
    ] {
        let out = guest_tool(&root, sdk, &["test", dir]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // unittest: "Ran N tests" then "OK"; node --test: "# pass N", "# fail 0".
        let count = |prefix: &str| {
            said.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u32>().ok())
        };
        let ran = count("Ran ").or_else(|| count("# pass ")).unwrap_or(0);
        assert!(
            ran >= at_least,
            "{dir}: {ran} tests ran, expected {at_least}:\n{said}"
        );
        assert!(
            said.contains("\nOK") || said.contains("# fail 0"),
            "{dir}:\n{said}"
        );
    }
}
