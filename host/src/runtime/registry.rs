//! The plugin set: every plugin of plugins.toml with its state, and the route
//! table derived from it, held as one immutable snapshot.
//!
//! Requests read the current snapshot lock-free (`ArcSwap::load_full`) and keep
//! it for their whole life; a reload builds a new snapshot off the request path
//! and swaps it in whole, so in-flight webhooks finish on the version they started with.

use super::engine::{build_engine, build_linker};
use super::host_api::HostState;
use super::plugin::{LoadedPlugin, RouteKind, load};
use crate::config::{PluginSpec, PluginsFile};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// Where a plugin stands.
pub enum SlotState {
    Loaded(Arc<LoadedPlugin>),
    Failed { error: String, at: SystemTime },
    Disabled,
}

/// One entry of plugins.toml and its state.
pub struct PluginSlot {
    pub spec: PluginSpec,
    pub state: SlotState,
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
    Found(&'a Arc<LoadedPlugin>, RouteKind),
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
                Some(route) => Resolved::Found(plugin, route.kind),
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
    http: reqwest::Client,
    current: ArcSwap<PluginSet>,
}

impl Runtime {
    pub fn new() -> anyhow::Result<Runtime> {
        let engine = build_engine()?;
        let linker = build_linker(&engine)?;
        let http = super::outbound::http_client()?;
        Ok(Runtime {
            engine,
            linker,
            http,
            current: ArcSwap::from_pointee(PluginSet::default()),
        })
    }

    /// The snapshot requests should use.
    pub fn snapshot(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// Load every plugin of `file` (a failure is kept in its slot, not returned)
    /// and swap the result in as the current set.
    pub async fn load_all(&self, file: &PluginsFile) -> Arc<PluginSet> {
        let mut slots = Vec::with_capacity(file.plugins.len());
        for spec in &file.plugins {
            slots.push(self.load_slot(spec.clone()).await);
        }
        let set = Arc::new(PluginSet::new(slots));
        self.current.store(set.clone());
        set
    }

    async fn load_slot(&self, spec: PluginSpec) -> PluginSlot {
        if !spec.enabled {
            tracing::info!(plugin = %spec.name, "plugin is disabled in plugins.toml");
            return PluginSlot {
                spec,
                state: SlotState::Disabled,
            };
        }
        let started = std::time::Instant::now();
        match load(&self.engine, &self.linker, &self.http, spec.clone()).await {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %spec.name,
                    version = %plugin.manifest.version,
                    sha256 = %plugin.sha256,
                    mount = %spec.mount,
                    ms = started.elapsed().as_millis() as u64,
                    "plugin loaded"
                );
                for warning in &plugin.manifest.warnings {
                    tracing::warn!(plugin = %spec.name, "{warning}");
                }
                PluginSlot {
                    spec,
                    state: SlotState::Loaded(Arc::new(plugin)),
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
                }
            }
        }
    }
}
