//! Health, plugin loading faults and start-up settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test]
async fn health_lists_the_loaded_plugin_without_secrets() {
    let server = Server::start(
        &meta_entry(""),
        &[("META_VERIFY_TOKEN", "very-secret-token")],
    );
    let response = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(APP_SECRET) && !text.contains("very-secret-token"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["integrations"]["meta"], true);
    assert_eq!(json["integrations"]["whatsapp"], false);
    assert_eq!(json["integrations"]["googleAds"], false);
    let meta = &json["plugins"][0];
    assert_eq!(meta["name"], "meta");
    assert_eq!(meta["state"], "loaded");
    assert_eq!(meta["mount"], "/api/integrations/meta");
    assert_eq!(meta["version"], "0.1.0");
    let wasm = std::fs::read(plugin_wasm("portico-meta")).unwrap();
    assert_eq!(meta["sha256"], sha256_hex(&wasm));
    assert!(meta["loaded_at"].as_str().unwrap().ends_with('Z'));
    let routes: Vec<&str> = meta["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        routes.contains(&"POST /api/integrations/meta/webhook"),
        "{routes:?}"
    );

    let ready = reqwest::get(server.url("/api/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_broken_component_is_reported_while_meta_still_serves() {
    let broken_dir = tempfile::tempdir().unwrap();
    let broken = broken_dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm this is not a component").unwrap();
    let toml = format!(
        "{}\n[plugins.broken]\npath = \"{}\"\n",
        meta_entry(""),
        broken.display()
    );
    let server = Server::start(&toml, &[]);
    server.tenant_with_page(PAGE_ID);

    let json: serde_json::Value = reqwest::get(server.url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugins = json["plugins"].as_array().unwrap();
    let broken = plugins.iter().find(|p| p["name"] == "broken").unwrap();
    assert_eq!(broken["state"], "failed");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component"),
        "{broken}"
    );
    let meta = plugins.iter().find(|p| p["name"] == "meta").unwrap();
    assert_eq!(meta["state"], "loaded");

    let lead = post_signed(
        &server.url("/api/integrations/meta/webhook"),
        &lead_body(PAGE_ID, "5"),
        APP_SECRET,
    )
    .await;
    assert_eq!(lead.status(), 200);
    let down = reqwest::Client::new()
        .post(server.url("/api/integrations/broken/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    let ready = reqwest::get(server.url("/api/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("broken"));
}

#[tokio::test]
async fn disabled_signature_check_is_warned_about_at_start() {
    let server = Server::start(&meta_entry(""), &[("META_VERIFY_SIGNATURE", "false")]);
    server.tenant_with_page(PAGE_ID);
    let unsigned = reqwest::Client::new()
        .post(server.url("/api/integrations/meta/webhook"))
        .body(lead_body(PAGE_ID, "8"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 200);
    assert!(
        server.log_text().contains("signature verification is OFF"),
        "{}",
        server.log_text()
    );
}

fn run_portico(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let db = format!("sqlite://{}", dir.join("p.db").display());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    base_command(dir, &db, &env).args(args).output().unwrap()
}

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.toml"), "").unwrap();

    let out = run_portico(dir.path(), &["serve", "--listen", "not-an-address"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("PORTICO_LISTEN"),
        "{err}"
    );

    let out = run_portico(dir.path(), &["serve"], &[("DATABASE_URL", "mysql://x")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));

    std::fs::write(
        dir.path().join("plugins.toml"),
        "[plugins.meta]\npath = \"m.wasm\"\nlimits = { memory_mb = 0 }\n",
    )
    .unwrap();
    let out = run_portico(dir.path(), &["serve"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("plugin \"meta\"") && err.contains("limits.memory_mb = 0"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("plugins.toml"),
        "[plugins.meta]\npath = \"missing.wasm\"\n",
    )
    .unwrap();
    let out = run_portico(dir.path(), &["serve"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin \"meta\"") && err.contains("path = \"missing.wasm\": no such file"),
        "{err}"
    );
}

#[test]
fn tenant_add_prints_only_the_id_and_source_add_checks_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_portico(dir.path(), &["tenant", "add", "Acme"], &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");

    let out = run_portico(
        dir.path(),
        &[
            "source", "add", "--tenant", "7", "--kind", "meta", "--key", "1",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant 7 does not exist"));

    let ok = run_portico(
        dir.path(),
        &[
            "source", "add", "--tenant", "1", "--kind", "meta", "--key", "1",
        ],
        &[],
    );
    assert!(ok.status.success());
    let dup = run_portico(
        dir.path(),
        &[
            "source", "add", "--tenant", "1", "--kind", "meta", "--key", "1",
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already mapped to tenant 1"));
}
