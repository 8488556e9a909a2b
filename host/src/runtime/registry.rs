//! The plugin set: every plugin of plugins.toml with its state, and the route
//! table derived from it, held as one immutable snapshot.
//!
//! Requests read the current snapshot lock-free (`ArcSwap::load_full`) and keep
//! it for their whole life; a reload builds a new snapshot off the request path
//! and swaps it in whole, so in-flight webhooks finish on the version they
//! started with. Reloads are serialised by one lock; the request path never takes it.
//!
//! A reload never makes things worse: a component that fails to compile, link
//! or describe itself leaves the last good version serving (its error is kept
//! for health), and an invalid plugins.toml edit is refused as a whole.

use super::cache::ComponentCache;
use super::engine::{Recompile, build_engine, build_linker};
use super::host_api::HostState;
use super::plugin::{LoadedPlugin, RouteKind, load};
use crate::config::plugins::{FileCheck, load_plugins_file};
use crate::config::{PluginSpec, PluginsFile};
use crate::telemetry::metrics::{self, ReloadResult};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// Where a plugin stands.
#[derive(Clone)]
pub enum SlotState {
    Loaded(Arc<LoadedPlugin>),
    Failed { error: String, at: SystemTime },
    Disabled,
}

/// One entry of plugins.toml and its state.
#[derive(Clone)]
pub struct PluginSlot {
    pub spec: PluginSpec,
    pub state: SlotState,
    /// Successful reloads since start.
    pub reloads: u32,
    /// The last reload that was refused, while an older version keeps serving.
    pub last_error: Option<(String, SystemTime)>,
    /// The sha256 of the file content last tried: the same bytes are never tried twice.
    pub tried_sha: Option<String>,
}

/// An immutable view of every plugin and its routes.
#[derive(Default)]
pub struct PluginSet {
    pub slots: Vec<PluginSlot>,
    by_mount: HashMap<String, usize>,
    by_alias: HashMap<String, (usize, String)>,
}

/// What a request path resolves to.
pub enum Resolved<'a> {
    /// No plugin is mounted there.
    NoMount,
    Disabled(&'a PluginSpec),
    Unavailable(&'a PluginSpec, &'a str),
    /// The plugin serves the path, but not with this method.
    MethodNotAllowed(&'a LoadedPlugin),
    /// The plugin does not declare this path.
    NoRoute(&'a LoadedPlugin),
    /// The plugin, how the route is served, and whether it is admin-only.
    Found(&'a Arc<LoadedPlugin>, RouteKind, bool),
}

impl PluginSet {
    pub fn new(slots: Vec<PluginSlot>) -> Self {
        let mut by_mount = HashMap::new();
        let mut by_alias = HashMap::new();
        for (i, slot) in slots.iter().enumerate() {
            by_mount.insert(slot.spec.mount.clone(), i);
            for (alias, route) in &slot.spec.aliases {
                by_alias.insert(alias.trim_end_matches('/').to_string(), (i, route.clone()));
            }
        }
        PluginSet {
            slots,
            by_mount,
            by_alias,
        }
    }

    /// Resolve `/api/integrations/{mount}/{path}`.
    pub fn resolve(&self, mount: &str, method: &str, path: &str) -> Resolved<'_> {
        match self.by_mount.get(mount) {
            Some(&i) => self.resolve_slot(i, method, path),
            None => Resolved::NoMount,
        }
    }

    /// Resolve a legacy alias path; `None` when no plugin claims it.
    /// Also returns the plugin route the alias stands for.
    pub fn resolve_alias(&self, full_path: &str, method: &str) -> Option<(Resolved<'_>, &str)> {
        let (i, route) = self.by_alias.get(full_path.trim_end_matches('/'))?;
        Some((self.resolve_slot(*i, method, route), route.as_str()))
    }

    fn resolve_slot(&self, i: usize, method: &str, path: &str) -> Resolved<'_> {
        let slot = &self.slots[i];
        match &slot.state {
            SlotState::Disabled => Resolved::Disabled(&slot.spec),
            SlotState::Failed { error, .. } => Resolved::Unavailable(&slot.spec, error),
            SlotState::Loaded(plugin) => match plugin.route(method, path) {
                Some(route) => Resolved::Found(plugin, route.kind, route.admin_only),
                None if plugin.has_path(path) => Resolved::MethodNotAllowed(plugin),
                None => Resolved::NoRoute(plugin),
            },
        }
    }

    /// The plugin named `name`, if it is in the set.
    pub fn slot(&self, name: &str) -> Option<&PluginSlot> {
        self.slots.iter().find(|s| s.spec.name == name)
    }
}

/// The engine, the linker and the current plugin set.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    http: super::outbound::Clients,
    cache: ComponentCache,
    directory: Option<super::host_api::Directory>,
    current: ArcSwap<PluginSet>,
    /// The manifest the current set came from (for reloads).
    manifest_path: std::sync::Mutex<Option<PathBuf>>,
    reload: tokio::sync::Mutex<()>,
}

/// Why a plugins.toml edit was refused.
#[derive(Debug, thiserror::Error)]
#[error("plugins.toml edit refused, the running set stays: {0}")]
pub struct ManifestRefused(pub String);

impl Runtime {
    /// `cache_dir`: where compiled components are kept between runs (None: nowhere).
    /// `directory`: the store adapters' lookups read (None offline).
    pub fn new(
        cache_dir: Option<PathBuf>,
        directory: Option<super::host_api::Directory>,
        recompile: Recompile,
    ) -> anyhow::Result<Runtime> {
        let engine = build_engine(recompile)?;
        let linker = build_linker(&engine)?;
        let http = super::outbound::Clients::new()?;
        let cache = ComponentCache::open(&engine, cache_dir)?;
        Ok(Runtime {
            engine,
            linker,
            http,
            cache,
            directory,
            current: ArcSwap::from_pointee(PluginSet::default()),
            manifest_path: std::sync::Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile `bytes` through this runtime's disk cache (a later load of the
    /// same file is then a cache hit).
    pub async fn compile(&self, bytes: Vec<u8>) -> anyhow::Result<wasmtime::component::Component> {
        let sha256 = super::plugin::sha256_hex(&bytes);
        Ok(
            super::plugin::compile(&self.engine, &self.cache, &sha256, bytes)
                .await?
                .0,
        )
    }

    /// Load one plugin outside any set (for `portico plugin check`).
    pub async fn load_one(
        &self,
        spec: PluginSpec,
    ) -> Result<LoadedPlugin, super::plugin::LoadError> {
        load(
            &self.engine,
            &self.linker,
            &self.http,
            &self.cache,
            self.directory.clone(),
            spec,
        )
        .await
    }

    /// The snapshot requests should use.
    pub fn snapshot(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// Load every plugin of `file` (a failure is kept in its slot, not returned)
    /// and swap the result in as the current set.
    pub async fn load_all(&self, file: &PluginsFile) -> Arc<PluginSet> {
        let _guard = self.reload.lock().await;
        if let Ok(mut path) = self.manifest_path.lock() {
            *path = Some(file.path.clone());
        }
        let mut slots = Vec::with_capacity(file.plugins.len());
        for spec in &file.plugins {
            slots.push(self.load_slot(spec.clone(), None).await);
        }
        let set = Arc::new(PluginSet::new(slots));
        self.current.store(set.clone());
        set
    }

    /// Re-read plugins.toml and apply it: add, remove, enable, disable, re-mount,
    /// re-limit and re-configure plugins. Unchanged plugins are kept as they are.
    pub async fn reload_manifest(&self) -> Result<Arc<PluginSet>, ManifestRefused> {
        let _guard = self.reload.lock().await;
        let path = self
            .manifest_path
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .ok_or_else(|| ManifestRefused("no plugins.toml was loaded".into()))?;
        let file = load_plugins_file(&path, FileCheck::Require)
            .map_err(|e| ManifestRefused(e.to_string()))?;
        let old = self.snapshot();
        let mut slots = Vec::with_capacity(file.plugins.len());
        for spec in file.plugins {
            let previous = old.slot(&spec.name).cloned();
            let slot = match previous {
                Some(prev)
                    if prev.spec == spec && !matches!(prev.state, SlotState::Failed { .. }) =>
                {
                    // Same entry: keep it unless its file changed under it.
                    match (&prev.state, sha_of(&spec.wasm_path).await) {
                        (SlotState::Loaded(p), Some(sha)) if p.sha256 == sha => prev,
                        (SlotState::Disabled, _) => prev,
                        _ => self.replace_slot(prev, spec).await,
                    }
                }
                Some(prev) => self.replace_slot(prev, spec).await,
                None => {
                    tracing::info!(plugin = %spec.name, "plugin added by a plugins.toml edit");
                    self.load_slot(spec, None).await
                }
            };
            slots.push(slot);
        }
        for gone in old
            .slots
            .iter()
            .filter(|s| !slots.iter().any(|n| n.spec.name == s.spec.name))
        {
            tracing::info!(plugin = %gone.spec.name, "plugin removed by a plugins.toml edit");
        }
        let set = Arc::new(PluginSet::new(slots));
        self.current.store(set.clone());
        Ok(set)
    }

    /// Reload one plugin because its .wasm changed. A no-op when the content did not.
    pub async fn reload_plugin(&self, name: &str) {
        let _guard = self.reload.lock().await;
        let old = self.snapshot();
        let Some(prev) = old.slot(name).cloned() else {
            return;
        };
        if matches!(prev.state, SlotState::Disabled) {
            return;
        }
        let sha = sha_of(&prev.spec.wasm_path).await;
        if sha.is_some() && sha == prev.tried_sha {
            return;
        }
        let spec = prev.spec.clone();
        let mut slot = self.replace_slot(prev, spec).await;
        slot.tried_sha = sha;
        let slots = old
            .slots
            .iter()
            .map(|s| {
                if s.spec.name == name {
                    slot.clone()
                } else {
                    s.clone()
                }
            })
            .collect();
        self.current.store(Arc::new(PluginSet::new(slots)));
    }

    /// Load `spec` to replace `prev`; on failure a loaded `prev` keeps serving.
    async fn replace_slot(&self, prev: PluginSlot, spec: PluginSpec) -> PluginSlot {
        let mut next = self.load_slot(spec.clone(), Some(&prev)).await;
        match (&next.state, &prev.state) {
            (SlotState::Failed { error, at }, SlotState::Loaded(_))
                if prev.spec.wasm_path == spec.wasm_path =>
            {
                tracing::error!(plugin = %spec.name, "reload refused, the previous version keeps serving: {error}");
                metrics::plugin_reload(&spec.name, ReloadResult::Refused);
                PluginSlot {
                    last_error: Some((error.clone(), *at)),
                    ..prev
                }
            }
            (SlotState::Loaded(p), _) => {
                next.reloads = prev.reloads + 1;
                tracing::info!(plugin = %spec.name, version = %p.manifest.version, sha256 = %p.sha256, reloads = next.reloads, "plugin reloaded");
                metrics::plugin_reload(&spec.name, ReloadResult::Loaded);
                next
            }
            _ => {
                if matches!(next.state, SlotState::Failed { .. }) {
                    metrics::plugin_reload(&spec.name, ReloadResult::Refused);
                }
                next.reloads = prev.reloads;
                next
            }
        }
    }

    async fn load_slot(&self, spec: PluginSpec, prev: Option<&PluginSlot>) -> PluginSlot {
        if !spec.enabled {
            tracing::info!(plugin = %spec.name, "plugin is disabled in plugins.toml");
            return PluginSlot {
                spec,
                state: SlotState::Disabled,
                reloads: prev.map_or(0, |p| p.reloads),
                last_error: None,
                tried_sha: None,
            };
        }
        let started = std::time::Instant::now();
        match load(
            &self.engine,
            &self.linker,
            &self.http,
            &self.cache,
            self.directory.clone(),
            spec.clone(),
        )
        .await
        {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %spec.name,
                    version = %plugin.manifest.version,
                    sha256 = %plugin.sha256,
                    mount = %spec.mount,
                    from_cache = plugin.from_cache,
                    ms = started.elapsed().as_millis() as u64,
                    "plugin loaded"
                );
                for warning in &plugin.manifest.warnings {
                    tracing::warn!(plugin = %spec.name, "{warning}");
                }
                PluginSlot {
                    spec,
                    tried_sha: Some(plugin.sha256.clone()),
                    state: SlotState::Loaded(Arc::new(plugin)),
                    reloads: 0,
                    last_error: None,
                }
            }
            Err(e) => {
                let error = format!("{} ({}): {e}", spec.name, spec.wasm_path.display());
                tracing::error!(plugin = %spec.name, "plugin failed to load: {e}");
                PluginSlot {
                    spec,
                    state: SlotState::Failed {
                        error,
                        at: SystemTime::now(),
                    },
                    reloads: 0,
                    last_error: None,
                    tried_sha: None,
                }
            }
        }
    }
}

/// The sha256 of a file, or None when it cannot be read.
async fn sha_of(path: &Path) -> Option<String> {
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(super::plugin::sha256_hex(&bytes))
}
