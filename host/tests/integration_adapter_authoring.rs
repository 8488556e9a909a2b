//! Integration authors: a new adapter goes into a running host that is not
//! rebuilt; the offline tools; the scaffold builds and passes its own tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn standard_signature(id: &str, ts: i64, body: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let key = base64_decode(WHSEC.trim_start_matches("whsec_"));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", base64_encode(&mac.finalize().into_bytes()))
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                T[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        acc = (acc << 6) | T.iter().position(|&t| t == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn standard_entry() -> String {
    format!(
        "\n[plugins.standard-webhooks]\npath = \"{}\"\nmount = \"standard\"\n[plugins.standard-webhooks.secrets]\nsigning_secret = {{ env = \"STANDARD_WEBHOOK_SECRET\" }}\n",
        plugin_wasm("portico-standard-webhooks").display()
    )
}

async fn post_standard(
    server: &Server,
    id: &str,
    ts: i64,
    body: &str,
    signature: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/api/integrations/standard/webhook"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_adapter_is_added_to_a_running_host_whose_binary_is_unchanged() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_portico")).unwrap();
    let binary_sha = sha256_hex(&binary);
    let standard = plugin_wasm("portico-standard-webhooks");
    assert!(standard.is_file());

    let server = Server::start(&meta_entry(""), &[("STANDARD_WEBHOOK_SECRET", WHSEC)]);
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
    let before = reqwest::Client::new()
        .post(server.url("/api/integrations/standard/webhook"))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), 404);

    // Add the adapter to plugins.toml of the running host.
    let added = Instant::now();
    server.write_plugins_toml(&format!("{}{}", meta_entry(""), standard_entry()));
    loop {
        if server.plugin_health("standard-webhooks").await["state"] == "loaded" {
            break;
        }
        assert!(
            added.elapsed() < Duration::from_secs(10),
            "{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("plugins.toml edit to route serving: {:?}", added.elapsed());

    let body = r#"{"type":"lead.created","timestamp":"2026-11-28T12:00:00Z","data":{"id":"L-1","source_key":"acme-site","full_name":"Ana Silva","email":"ana@example.com","phone":"+5511900000000","fields":{"city":"Recife"}}}"#;
    let ts = now();
    let ok = post_standard(
        &server,
        "msg_1",
        ts,
        body,
        &standard_signature("msg_1", ts, body),
    )
    .await;
    server.processed(ok).await;
    let db = server.db().await;
    let row: (String, String, String) = db
        .query_as("SELECT source, external_id, fields_json FROM leads")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        row,
        (
            "Standard".into(),
            "L-1".into(),
            r#"{"city":"Recife"}"#.into()
        )
    );

    // A bad signature, or a timestamp outside the 5-minute tolerance, is 401.
    let bad = post_standard(&server, "msg_2", ts, body, "v1,AAAA").await;
    assert_eq!(bad.status(), 401);
    let old = ts - 600;
    let stale = post_standard(
        &server,
        "msg_3",
        old,
        body,
        &standard_signature("msg_3", old, body),
    )
    .await;
    assert_eq!(stale.status(), 401);
    assert!(stale.text().await.unwrap().contains("at most 300 s"));

    let after = sha256_hex(&std::fs::read(env!("CARGO_BIN_EXE_portico")).unwrap());
    assert_eq!(after, binary_sha, "the host binary must not change");
}

fn portico(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    base_command(dir, &format!("sqlite://{}/p.db", dir.display()), &[])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn plugin_check_reports_the_world_and_refuses_what_is_not_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let out = portico(
        dir.path(),
        &[
            "plugin",
            "check",
            plugin_wasm("portico-standard-webhooks").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["manifest"]["name"], "standard-webhooks");
    assert_eq!(json["world"], "portico:adapter/adapter@0.3.0");

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = portico(dir.path(), &["plugin", "check", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a valid WebAssembly component"));
}

#[test]
fn plugin_check_refuses_another_wit_major_version() {
    // The same adapter with its WIT package renumbered 0.3.0 -> 0.4.0 (same length, so
    // the binary stays well formed): what a component built against a future WIT looks like.
    let err = check_renumbered("0.4.0");
    assert!(
        err.contains("portico:adapter/host@0.4.0")
            && err.contains("this host speaks portico:adapter@0.3.0"),
        "{err}"
    );
}

#[test]
fn plugin_check_says_what_an_adapter_built_for_0_1_lacks() {
    let err = check_renumbered("0.1.0");
    assert!(
        err.contains("portico:adapter/host@0.1.0")
            && err.contains("Since 0.1: adapters export `respond`")
            && err.contains("Rebuild it"),
        "{err}"
    );
}

/// `portico plugin check` of the standard-webhooks adapter renumbered to `version`; its stderr.
fn check_renumbered(version: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = renumbered(dir.path(), "portico:adapter/host@", version);
    let out = portico(dir.path(), &["plugin", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The standard-webhooks adapter with every `{prefix}0.3.0` renumbered to
/// `{prefix}{version}`, written into `dir`.
fn renumbered(dir: &Path, prefix: &str, version: &str) -> PathBuf {
    renumber(
        &plugin_wasm("portico-standard-webhooks"),
        "0.3.0",
        dir,
        prefix,
        version,
    )
}

/// The standard-webhooks adapter as built against WIT 0.2.2 (commit 0cef4e9,
/// before 0.3.0): a real older component, kept as a fixture.
fn built_against_0_2_2() -> PathBuf {
    workspace_root().join("host/tests/fixtures/standard_webhooks_wit_0_2_2.wasm")
}

/// `file` with every `{prefix}{from}` renumbered to `{prefix}{version}`, written into `dir`.
fn renumber(file: &Path, from: &str, dir: &Path, prefix: &str, version: &str) -> PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    let from = format!("{prefix}{from}").into_bytes();
    let to = format!("{prefix}{version}").into_bytes();
    let mut replaced = 0;
    for i in 0..bytes.len().saturating_sub(from.len()) {
        if bytes[i..i + from.len()] == from[..] {
            bytes[i..i + from.len()].copy_from_slice(&to);
            replaced += 1;
        }
    }
    assert!(replaced > 0);
    let file = dir.join("renumbered.wasm");
    std::fs::write(&file, &bytes).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_built_against_0_2_0_loads_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    // A real 0.2.2 build: plugin check loads it, and says what 0.3 added.
    let out = portico(
        dir.path(),
        &["plugin", "check", built_against_0_2_2().to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes: Vec<&str> = json["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.len() == 1 && notes[0].starts_with("Since 0.3.0"),
        "{json}"
    );
    // Every interface of it renumbered to 0.2.0: what a component built
    // before 0.2.1 (no source-secret, no source-setting) looks like.
    let file = renumber(&built_against_0_2_2(), "0.2.2", dir.path(), "@", "0.2.0");
    let out = portico(dir.path(), &["plugin", "check", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.as_str().unwrap().ends_with("@0.2.0")),
        "{json}"
    );
    assert!(
        json["notes"][0].as_str().unwrap().contains("Since 0.2.1")
            && json["notes"][1].as_str().unwrap().contains("Since 0.2.2")
            && json["notes"][2].as_str().unwrap().contains("Since 0.3.0"),
        "{json}"
    );
    // And it serves in a running 0.3 host, as it did.
    let server = Server::start(
        &format!(
            "[plugins.standard-webhooks]\npath = \"{}\"\nmount = \"standard\"\n[plugins.standard-webhooks.secrets]\nsigning_secret = {{ env = \"STANDARD_WEBHOOK_SECRET\" }}\n",
            file.display()
        ),
        &[("STANDARD_WEBHOOK_SECRET", WHSEC)],
    );
    let tenant = server.cli(&["tenant", "add", "Old"]).trim().to_string();
    server.cli(&[
        "source", "add", "--tenant", &tenant, "--kind", "standard", "--key", "crm-1",
    ]);
    let body = r#"{"type":"lead.created","timestamp":"2026-11-28T12:00:00Z","data":{"id":"OLD-1","source_key":"crm-1","full_name":"Ana Silva"}}"#;
    let ts = now();
    let answer = post_standard(
        &server,
        "msg_old_1",
        ts,
        body,
        &standard_signature("msg_old_1", ts, body),
    )
    .await;
    let outcome = server.processed(answer).await;
    assert_eq!(outcome["items"][0]["status"], "processed", "{outcome}");
}

#[test]
fn plugin_call_runs_the_three_phases_offline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.toml"), meta_entry("")).unwrap();
    let body = dir.path().join("body.json");
    let text = lead_body(PAGE_ID, "123");
    std::fs::write(&body, &text).unwrap();
    let header = format!("X-Hub-Signature-256: {}", sign(text.as_bytes(), APP_SECRET));
    let env = vec![("META_APP_SECRET".to_string(), APP_SECRET.to_string())];
    let out = base_command(dir.path(), "sqlite:///nonexistent/never-opened.db", &env)
        .args([
            "plugin",
            "call",
            "meta",
            "--body",
            body.to_str().unwrap(),
            "--header",
            &header,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verify"]["accepted"], true);
    assert_eq!(json["items"][0]["dedup_key"], "leadgen:123");
    assert_eq!(
        json["items"][0]["map"]["operations"][0]["op"],
        "create_lead"
    );
    assert_eq!(
        json["items"][0]["map"]["operations"][0]["external_id"],
        "123"
    );

    let out = base_command(dir.path(), "sqlite:///nonexistent/never-opened.db", &env)
        .args(["plugin", "call", "meta", "--body", body.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing X-Hub-Signature-256"));
}

/// A copy of the workspace's skeleton (root manifest, lock, wit/, sdk) in a temp dir,
/// with an empty plugins.toml: where an author runs `portico plugin new`.
fn scaffold_workspace() -> tempfile::TempDir {
    let root = workspace_root();
    let ws = tempfile::tempdir().unwrap();
    let copy = |rel: &str| {
        let (from, to) = (root.join(rel), ws.path().join(rel));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    for rel in [
        "Cargo.toml",
        "Cargo.lock",
        "wit/adapter.wit",
        "plugins/sdk/Cargo.toml",
    ] {
        copy(rel);
    }
    for entry in std::fs::read_dir(root.join("plugins/sdk/src")).unwrap() {
        let name = entry.unwrap().file_name();
        copy(&format!("plugins/sdk/src/{}", name.to_string_lossy()));
    }
    // Only the SDK and the new plugin are members here.
    let manifest = std::fs::read_to_string(ws.path().join("Cargo.toml")).unwrap();
    let manifest: Vec<String> = manifest
        .lines()
        .filter(|l| !l.starts_with("default-members") && !l.starts_with("exclude"))
        .map(|l| {
            if l.starts_with("members = ") {
                r#"members = ["plugins/*"]"#.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(ws.path().join("Cargo.toml"), manifest.join("\n")).unwrap();
    std::fs::write(ws.path().join("plugins.toml"), "").unwrap();
    ws
}

#[test]
fn the_scaffold_builds_as_a_component_and_passes_its_own_tests() {
    let root = workspace_root();
    let ws = scaffold_workspace();

    let out = portico(ws.path(), &["plugin", "new", "acme-crm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("[plugins.acme-crm]") && printed.contains("portico_acme_crm.wasm"),
        "{printed}"
    );
    let again = portico(ws.path(), &["plugin", "new", "acme-crm"]);
    assert!(!again.status.success());

    let target = root.join("target").join("test-scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let run = |args: &[&str]| {
        let status = std::process::Command::new(&cargo)
            .current_dir(ws.path())
            .args(args)
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cargo {args:?} failed in the scaffolded workspace"
        );
    };
    run(&["test", "-q", "-p", "portico-acme-crm"]);
    run(&[
        "build",
        "-q",
        "--profile",
        "plugin",
        "--target",
        "wasm32-wasip2",
        "-p",
        "portico-acme-crm",
    ]);
    let wasm = target.join("wasm32-wasip2/plugin/portico_acme_crm.wasm");
    let out = portico(ws.path(), &["plugin", "check", wasm.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"name\": \"acme-crm\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portico_dev_rebuilds_a_changed_plugin_and_keeps_serving_through_a_broken_build() {
    let ws = scaffold_workspace();
    let out = portico(ws.path(), &["plugin", "new", "acme-dev"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = workspace_root().join("target").join("test-scaffold");
    let plugins = format!(
        "[plugins.acme-dev]\npath = \"{}\"\nbuild = \"cargo build --profile plugin --target wasm32-wasip2 -p portico-acme-dev --target-dir {}\"\nwatch = [\"plugins/acme-dev\"]\nsecrets = {{ signing_secret = \"s3cret\" }}\n",
        target
            .join("wasm32-wasip2/plugin/portico_acme_dev.wasm")
            .display(),
        target.display()
    );
    std::fs::write(ws.path().join("plugins.toml"), plugins).unwrap();
    let logic = ws.path().join("plugins/acme-dev/src/logic.rs");
    let server = Server::start_in(ws, "dev", &[]);
    let first = server.plugin_health("acme-dev").await;
    assert_eq!(first["state"], "loaded", "{}", server.log_text());
    let first_sha = first["sha256"].as_str().unwrap().to_string();

    // An edit is rebuilt and swapped in.
    let text = std::fs::read_to_string(&logic).unwrap();
    std::fs::write(
        &logic,
        text.replace(
            "pub const LEAD_SOURCE: &str = \"acme-dev\";",
            "pub const LEAD_SOURCE: &str = \"Acme Dev\";",
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let second_sha = loop {
        let h = server.plugin_health("acme-dev").await;
        if h["sha256"] != first_sha.as_str() && h["state"] == "loaded" {
            break h["sha256"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rebuild:\n{}",
            server.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(server.log_text().contains("rebuilding plugin acme-dev"));

    // A broken edit: the build error is printed in full and the last good version serves.
    std::fs::write(
        &logic,
        format!(
            "{}\nfn broken( {{\n",
            std::fs::read_to_string(&logic).unwrap()
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !server
        .log_text()
        .contains("building plugin acme-dev failed")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed build:\n{}",
            server.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = server
        .wait_for_log("the keeps-serving line", |l| {
            l.contains("the running version of acme-dev keeps serving")
        })
        .await
        .join("\n");
    assert!(log.contains("error"), "{log}");
    let h = server.plugin_health("acme-dev").await;
    assert_eq!(
        (h["state"].as_str(), h["sha256"].as_str()),
        (Some("loaded"), Some(second_sha.as_str()))
    );
}
