//! Loading one plugin: read, hash, compile once, pre-link, ask its manifest.
//!
//! Everything that can be checked about a component is checked here, at load,
//! off the request path; a plugin that fails any step is reported (health) and
//! never serves.

use super::bindings::portico::adapter::types;
use super::cache::ComponentCache;
use super::compat::{AdapterPre, World};
use super::host_api::{HostState, PluginEnv};
use super::session::Session;
use crate::config::PluginSpec;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("does not implement the portico:adapter world: {0}")]
    Link(String),
    #[error("manifest() failed: {0}")]
    Manifest(String),
    #[error("manifest is invalid: {0}")]
    BadManifest(String),
}

/// How a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Webhook,
    Intake,
    Custom,
}

/// A route a plugin declared, inside its mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecl {
    pub method: String,
    pub path: String,
    pub kind: RouteKind,
    /// Whether the host demands the admin bearer token before the plugin sees the request.
    pub admin_only: bool,
}

/// What a plugin says about itself.
#[derive(Debug, Clone)]
pub struct PluginManifest {
    pub name: String,
    pub version: String,
    pub routes: Vec<RouteDecl>,
    pub warnings: Vec<String>,
    /// Record kinds this plugin delivers from the outbox.
    pub outbox: Vec<OutboxDecl>,
}

/// An outbox kind a plugin delivers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxDecl {
    pub kind: String,
    /// Most records per `deliver` call.
    pub max_batch: u32,
    /// Delivered at once while an intake request waits.
    pub immediate: bool,
    /// The provider deduplicates: a cut-off attempt may be sent again.
    pub idempotent: bool,
}

/// A plugin ready to serve: compiled, linked, described.
pub struct LoadedPlugin {
    pub spec: PluginSpec,
    pub env: Arc<PluginEnv>,
    pub engine: Engine,
    pub(super) pre: AdapterPre,
    pub manifest: PluginManifest,
    pub sha256: String,
    pub loaded_at: SystemTime,
    /// Whether the compiled code came from the disk cache (no compilation).
    pub from_cache: bool,
    /// The bulkhead: at most limits.max_concurrency guest calls at once.
    pub gate: Arc<tokio::sync::Semaphore>,
    /// At most limits.max_instances instances of this plugin alive at once, so a
    /// flood on one plugin's routes cannot take the whole pool from the others.
    pub instances: Arc<tokio::sync::Semaphore>,
}

impl LoadedPlugin {
    /// The declared route for `method` and `path`, if any.
    pub fn route(&self, method: &str, path: &str) -> Option<&RouteDecl> {
        self.manifest
            .routes
            .iter()
            .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
    }

    /// Whether any method is declared for `path`.
    pub fn has_path(&self, path: &str) -> bool {
        self.manifest.routes.iter().any(|r| r.path == path)
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The compiled component of `bytes` (whose sha256 is `sha256`), from the
/// disk cache when it holds it (true), else compiled and kept there (false).
pub async fn compile(
    engine: &Engine,
    cache: &ComponentCache,
    sha256: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<(Component, bool)> {
    let (engine, cache, sha256) = (engine.clone(), cache.clone(), sha256.to_string());
    tokio::task::spawn_blocking(move || {
        if let Some(component) = cache.load(&engine, &sha256) {
            return Ok((component, true));
        }
        let component = Component::from_binary(&engine, &bytes)?;
        cache.store(&sha256, &component);
        Ok::<_, wasmtime::Error>((component, false))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e:#}"))
}

/// Load one plugin from its spec.
pub async fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    http: &super::outbound::Clients,
    cache: &ComponentCache,
    directory: Option<super::host_api::Directory>,
    spec: PluginSpec,
) -> Result<LoadedPlugin, LoadError> {
    let bytes = tokio::fs::read(&spec.wasm_path)
        .await
        .map_err(|source| LoadError::Read {
            path: spec.wasm_path.display().to_string(),
            source,
        })?;
    let sha256 = sha256_hex(&bytes);
    // Compiling is CPU-heavy (tens of ms to seconds): keep it off the async
    // workers, and skip it when the disk cache has this exact component.
    let (component, from_cache) = compile(engine, cache, &sha256, bytes)
        .await
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
        let ty = component.component_type();
        let old_wit = ty
            .imports(engine)
            .map(|(n, _)| n.to_string())
            .chain(ty.exports(engine).map(|(n, _)| n.to_string()))
            .any(|n| n.starts_with("portico:adapter/") && n.contains("@0.1."));
        if old_wit {
            LoadError::Link(format!(
                "built against portico:adapter@0.1; this host speaks @{}.{} Rebuild it against this host's wit/ (`portico plugin check FILE.wasm` says the same)",
                super::WIT_VERSION,
                super::WHAT_0_2_CHANGED
            ))
        } else {
            LoadError::Link(format!("{e:#}"))
        }
    })?;
    let world = World::of(engine, &component);
    if world == World::V0_2 {
        tracing::info!(plugin = %spec.name, "built against portico:adapter@0.2: loaded as it was (`portico plugin check` says what it lacks)");
    }
    let pre =
        AdapterPre::new(world, instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;

    let spec_concurrency = spec.limits.max_concurrency as usize;
    let spec_instances = spec.limits.max_instances as usize;
    let env = Arc::new(PluginEnv {
        name: spec.name.clone(),
        config: spec.config.clone(),
        secrets: spec.secrets.clone(),
        allowed_hosts: spec.allowed_hosts.clone(),
        http: http.for_spec(&spec).clone(),
        directory,
        source_kinds: spec.source_kinds.clone(),
        values: Default::default(),
    });
    let mut plugin = LoadedPlugin {
        spec,
        env,
        engine: engine.clone(),
        pre,
        manifest: PluginManifest {
            name: String::new(),
            version: String::new(),
            routes: Vec::new(),
            warnings: Vec::new(),
            outbox: Vec::new(),
        },
        sha256,
        loaded_at: SystemTime::now(),
        from_cache,
        gate: Arc::new(tokio::sync::Semaphore::new(spec_concurrency)),
        instances: Arc::new(tokio::sync::Semaphore::new(spec_instances)),
    };
    let manifest = {
        let mut session = Session::start(&plugin, "load")
            .await
            .map_err(|e| LoadError::Manifest(e.to_string()))?;
        session
            .manifest()
            .await
            .map_err(|e| LoadError::Manifest(e.to_string()))?
    };
    plugin.manifest = check_manifest(manifest)?;
    Ok(plugin)
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn check_manifest(m: types::PluginManifest) -> Result<PluginManifest, LoadError> {
    if m.name.trim().is_empty() {
        return Err(LoadError::BadManifest("name is empty".into()));
    }
    if m.routes.is_empty() {
        return Err(LoadError::BadManifest("declares no routes".into()));
    }
    let mut seen = HashSet::new();
    let mut routes = Vec::with_capacity(m.routes.len());
    for r in m.routes {
        let method = r.method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(LoadError::BadManifest(format!(
                "route {:?} has method {:?}; use one of {}",
                r.path,
                r.method,
                METHODS.join(", ")
            )));
        }
        let path = r.path.trim_matches('/').to_string();
        if path.is_empty() || path.contains("..") || path.contains(char::is_whitespace) {
            return Err(LoadError::BadManifest(format!(
                "route path {:?} is not a plain relative path",
                r.path
            )));
        }
        if !seen.insert((method.clone(), path.clone())) {
            return Err(LoadError::BadManifest(format!(
                "route {method} {path} is declared twice"
            )));
        }
        let kind = match r.kind {
            types::RouteKind::Webhook => RouteKind::Webhook,
            types::RouteKind::Intake => RouteKind::Intake,
            types::RouteKind::Custom => RouteKind::Custom,
        };
        let admin_only = matches!(r.auth, types::RouteAuth::Admin);
        routes.push(RouteDecl {
            method,
            path,
            kind,
            admin_only,
        });
    }
    Ok(PluginManifest {
        name: m.name,
        version: m.version,
        routes,
        warnings: m.warnings,
        outbox: m
            .outbox
            .into_iter()
            .map(|o| OutboxDecl {
                kind: o.kind,
                max_batch: o.max_batch.max(1),
                immediate: o.immediate,
                idempotent: o.idempotent,
            })
            .collect(),
    })
}
