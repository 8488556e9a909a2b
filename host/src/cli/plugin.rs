//! `portico plugin check | call`: the adapter author's tools (`new` is in scaffold.rs).

use crate::config::PluginSpec;
use crate::config::limits::Limits;
use crate::config::plugins::{FileCheck, load_plugins_file};
use crate::runtime::Runtime;
use crate::runtime::engine::Recompile;
use crate::runtime::session::{AdapterRequest, Verdict};
use crate::runtime::{Session, SlotState};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::Path;

/// The WIT package this host speaks.
pub const WIT_PACKAGE: &str = "portico:adapter";
use crate::runtime::{
    WHAT_0_2_1_ADDED, WHAT_0_2_2_ADDED, WHAT_0_2_CHANGED, WHAT_0_3_CHANGED, WIT_VERSION,
};

/// The `portico:adapter` interfaces a component imports or exports, with versions.
fn wit_versions(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> Vec<String> {
    let ty = component.component_type();
    let mut names: Vec<String> = ty
        .imports(engine)
        .map(|(n, _)| n.to_string())
        .chain(ty.exports(engine).map(|(n, _)| n.to_string()))
        .filter(|n| n.starts_with(WIT_PACKAGE))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether `portico:adapter/x@V` is a contract this host loads: its own
/// (0.3.x), or 0.2.x through the compatibility bindings.
fn compatible(name: &str) -> bool {
    let Some((_, version)) = name.split_once('@') else {
        return false;
    };
    let mine: Vec<&str> = WIT_VERSION.split('.').collect();
    let theirs: Vec<&str> = version.split('.').collect();
    match (mine.as_slice(), theirs.as_slice()) {
        (["0", m, ..], ["0", t, ..]) => m == t || *t == "2",
        ([m, ..], [t, ..]) => m == t && *m != "0",
        _ => false,
    }
}

/// The WIT version the adapter's own `plugin` export names (else this host's).
fn built_version(interfaces: &[String]) -> String {
    interfaces
        .iter()
        .find(|n| n.contains("/plugin@"))
        .and_then(|n| n.split_once('@'))
        .map_or_else(|| WIT_VERSION.to_string(), |(_, v)| v.to_string())
}

/// What a compatible adapter built against an older WIT cannot do.
fn notes(interfaces: &[String]) -> Vec<&'static str> {
    let built_for = |v: &str| interfaces.iter().any(|n| n.ends_with(v));
    let mut notes = Vec::new();
    if built_for("@0.2.0") {
        notes.push(WHAT_0_2_1_ADDED);
    }
    if built_for("@0.2.0") || built_for("@0.2.1") {
        notes.push(WHAT_0_2_2_ADDED);
    }
    if interfaces.iter().any(|n| n.contains("@0.2.")) {
        notes.push(WHAT_0_3_CHANGED);
    }
    notes
}

/// `portico plugin check FILE.wasm`
///
/// The component is compiled once, through the cache of `plugins_toml`'s folder
/// (or PORTICO_CACHE_DIR): checking a 20 MB component then serving it
/// compiles it once.
pub async fn check(plugins_toml: &Path, file: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let base = std::path::absolute(plugins_toml)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cache_dir = crate::config::PluginsFile::cache_dir_for(&base);
    let runtime = Runtime::new(cache_dir, None, Recompile::Whole)?;
    let component = runtime.compile(bytes.clone()).await.map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid WebAssembly component: {e:#}",
            file.display()
        )
    })?;
    let interfaces = wit_versions(runtime.engine(), &component);
    if interfaces.is_empty() {
        bail!(
            "{} does not use the {WIT_PACKAGE} package at all: it is not a Portico adapter",
            file.display()
        );
    }
    if let Some(bad) = interfaces.iter().find(|n| !compatible(n)) {
        bail!(
            "{} was built against {bad}; this host speaks {WIT_PACKAGE}@{WIT_VERSION} (and still loads 0.2.x).{} Rebuild it against this host's wit/ (with portico-sdk from this repository: `cargo build --profile plugin --target wasm32-wasip2 -p YOUR_PLUGIN`)",
            file.display(),
            if bad.contains("@0.1.") {
                WHAT_0_2_CHANGED
            } else {
                ""
            }
        );
    }
    let spec = PluginSpec {
        name: file
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', "-"))
            .unwrap_or_default(),
        wasm_path: std::path::absolute(file)?,
        build: None,
        mount: "check".into(),
        enabled: true,
        aliases: Default::default(),
        allowed_hosts: Vec::new(),
        allow_private_networks: false,
        source_kinds: Vec::new(),
        watch: Vec::new(),
        config: Default::default(),
        secrets: Default::default(),
        limits: Limits::default(),
    };
    let plugin = runtime
        .load_one(spec)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let m = &plugin.manifest;
    let out = json!({
        "file": file.display().to_string(),
        "ok": true,
        // The contract it was built against (0.2.x load through compatibility bindings).
        "world": format!("{WIT_PACKAGE}/adapter@{}", built_version(&interfaces)),
        "interfaces": interfaces,
        "notes": notes(&interfaces),
        "sha256": plugin.sha256,
        "bytes": bytes.len(),
        "manifest": {
            "name": m.name,
            "version": m.version,
            "routes": m.routes.iter().map(|r| json!({"method": r.method, "path": r.path, "kind": r.kind})).collect::<Vec<_>>(),
            "warnings": m.warnings,
        }
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `portico plugin call NAME --body FILE [--header K:V]...`: verify, parse and map offline.
pub async fn call(
    plugins_toml: &Path,
    name: &str,
    body: &Path,
    headers: &[String],
    route: &str,
) -> anyhow::Result<()> {
    let file = load_plugins_file(plugins_toml, FileCheck::Skip)?;
    let Some(spec) = file.plugins.iter().find(|p| p.name == name).cloned() else {
        let names: Vec<&str> = file.plugins.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no plugin {name:?} in {}; it has: {}",
            plugins_toml.display(),
            names.join(", ")
        );
    };
    let body = std::fs::read(body)
        .with_context(|| format!("cannot read the body file {}", body.display()))?;
    let mut parsed_headers = Vec::new();
    for h in headers {
        let Some((k, v)) = h.split_once(':') else {
            bail!("--header {h:?} must look like 'Name: value'");
        };
        parsed_headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let runtime = Runtime::new(file.cache_dir(), None, Recompile::Whole)?;
    let set = runtime
        .load_all(&crate::config::PluginsFile {
            plugins: vec![spec.clone()],
            ..file.clone()
        })
        .await;
    let plugin = match set.slot(name).map(|s| &s.state) {
        Some(SlotState::Loaded(p)) => p.clone(),
        Some(SlotState::Failed { error, .. }) => bail!("{error}"),
        _ => bail!("plugin {name} is disabled in {}", plugins_toml.display()),
    };
    let request = AdapterRequest {
        method: "POST".into(),
        route: route.to_string(),
        query: String::new(),
        headers: parsed_headers,
        body,
    };
    let mut session = Session::start(&plugin, "plugin-call").await?;
    let verdict = session.verify(&request).await?;
    let mut out = json!({"plugin": name, "version": plugin.manifest.version});
    if let Verdict::Reject(why) = verdict {
        out["verify"] = json!({"accepted": false, "reason": why});
        println!("{}", serde_json::to_string_pretty(&out)?);
        bail!("verify refused the request: {why}");
    }
    out["verify"] = json!({"accepted": true});
    let items = match session.parse(&request).await? {
        Ok(items) => items,
        Err(e) => {
            out["parse"] = json!({"error": e.code, "message": e.message, "retryable": e.retryable});
            println!("{}", serde_json::to_string_pretty(&out)?);
            bail!("parse failed: {e}");
        }
    };
    let mut rendered = Vec::new();
    for item in &items {
        let mapped = match session.map_to_domain(item).await {
            Ok(Ok(ops)) => json!({"operations": ops}),
            Ok(Err(e)) => json!({"error": e.code, "message": e.message, "retryable": e.retryable}),
            Err(e) => json!({"error": "call_failed", "message": e.to_string()}),
        };
        rendered.push(json!({
            "dedup_key": item.dedup_key,
            "tenant": item.tenant.as_ref().map(|t| json!({"kind": t.kind, "key": t.key})),
            "kind": item.kind,
            "payload": payload_text(&item.payload),
            "map": mapped,
        }));
    }
    out["items"] = Value::from(rendered);
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn payload_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}
