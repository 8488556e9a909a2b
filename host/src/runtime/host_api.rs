//! What the host gives each instance: its store data and the `host` interface
//! (log, config, secret). A plugin sees only its own config and secrets.

use super::bindings::portico::adapter::{cache, directory, host, types};
use crate::config::plugins::{HostRule, Secret};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A plugin's name, config and secrets, as resolved from plugins.toml.
#[derive(Debug)]
pub struct PluginEnv {
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    pub allowed_hosts: Vec<HostRule>,
    /// The process's shared HTTP client, for the outbound interface.
    pub http: reqwest::Client,
    /// The store behind the directory interface (none offline: lookups find nothing).
    pub directory: Option<Directory>,
    /// Kinds of sources whose secrets and settings this plugin may read.
    pub source_kinds: Vec<String>,
    /// What the plugin keeps between calls (the `cache` interface).
    pub values: super::value_cache::ValueCache,
}

/// What the directory interface reads: the store, and the keys that open
/// sources' secrets (none when PORTICO_SECRET_KEY is unset).
#[derive(Clone, Debug)]
pub struct Directory {
    pub store: crate::store::Store,
    pub keys: Option<Arc<crate::secrets::SecretKeys>>,
}

/// The data of one store (one instance, one webhook).
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    env: Arc<PluginEnv>,
    correlation_id: String,
    /// What the guest wrote to stderr (a Rust panic message, say): shown with its trap.
    pub(super) stderr: MemoryOutputPipe,
    /// The current call must finish by then.
    pub(super) deadline: Instant,
    /// Set when the deadline interrupted the guest, to tell timeouts from other traps.
    pub(super) timed_out: bool,
    /// The plugin's bulkhead, and the place held in it while the guest runs.
    pub(super) gate: Option<Arc<tokio::sync::Semaphore>>,
    pub(super) permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl HostState {
    pub fn new(
        env: Arc<PluginEnv>,
        correlation_id: String,
        limits: StoreLimits,
        stderr_bytes: usize,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(stderr_bytes);
        // No preopens, env, args or sockets: the builder's defaults deny them all.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            env,
            correlation_id,
            stderr,
            deadline: Instant::now(),
            timed_out: false,
            gate: None,
            permit: None,
        }
    }
}

impl HostState {
    pub(super) fn env(&self) -> &Arc<PluginEnv> {
        &self.env
    }

    pub(super) fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl directory::Host for HostState {
    async fn source_key(&mut self, tenant_id: i64, kind: String) -> Option<String> {
        let directory = self.env.directory.clone()?;
        match directory.store.source_key(tenant_id, &kind).await {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(plugin = %self.env.name, correlation_id = %self.correlation_id, "directory lookup failed: {e}");
                None
            }
        }
    }

    async fn source_secret(
        &mut self,
        kind: String,
        key: String,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        let Some(row) =
            own_source(self.env.clone(), self.correlation_id.clone(), &kind, &key).await?
        else {
            return Ok(None);
        };
        if !crate::secrets::secret_names_of(&row).contains(&name) {
            return Ok(None);
        }
        let keys = self.env.directory.as_ref().and_then(|d| d.keys.clone());
        // Read fresh for every call: a secret changed while serving is used by the next item.
        match crate::secrets::secrets_of(keys.as_deref(), &row) {
            Ok(mut secrets) => Ok(secrets.remove(&name)),
            Err(e) => {
                tracing::error!(plugin = %self.env.name, correlation_id = %self.correlation_id, source_kind = %kind, "cannot open the source's secrets: {e}");
                Err(wasmtime::Error::msg(format!(
                    "the {kind} source's secret {name:?} cannot be opened: {e}"
                )))
            }
        }
    }

    async fn source_setting(
        &mut self,
        kind: String,
        key: String,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        let row = own_source(self.env.clone(), self.correlation_id.clone(), &kind, &key).await?;
        Ok(row.and_then(|row| crate::secrets::settings_of(&row).remove(&name)))
    }

    async fn sources(
        &mut self,
        kind: String,
        limit: u32,
    ) -> wasmtime::Result<Vec<directory::SourceRef>> {
        if !self.env.source_kinds.contains(&kind) {
            tracing::warn!(plugin = %self.env.name, correlation_id = %self.correlation_id, "refused a listing of {kind:?} sources: this plugin reads only sources of kind {:?} (source_kinds in plugins.toml)", self.env.source_kinds);
            return Ok(Vec::new());
        }
        let Some(directory) = self.env.directory.as_ref() else {
            return Ok(Vec::new());
        };
        let rows = directory
            .store
            .sources_of_kind(&kind, limit.min(MAX_SOURCES_LISTED))
            .await
            .map_err(|e| {
                tracing::warn!(plugin = %self.env.name, correlation_id = %self.correlation_id, "directory lookup failed: {e}");
                wasmtime::Error::msg(format!("the directory cannot be read now: {e}"))
            })?;
        Ok(rows
            .into_iter()
            .map(|(tenant_id, key)| directory::SourceRef { tenant_id, key })
            .collect())
    }
}

/// Most sources one `directory.sources` call lists.
const MAX_SOURCES_LISTED: u32 = 100;

impl cache::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.env.values.get(&key)
    }

    fn put(&mut self, key: String, value: String, ttl_ms: u32) {
        self.env.values.put(
            key,
            value,
            std::time::Duration::from_millis(u64::from(ttl_ms)),
        );
    }

    fn remove(&mut self, key: String) {
        self.env.values.remove(&key);
    }
}

/// The source `kind` + `key`, if the plugin of `env` may read its kind; an
/// error (the call traps, the item is retried) when the store cannot answer.
async fn own_source(
    env: Arc<PluginEnv>,
    correlation_id: String,
    kind: &str,
    key: &str,
) -> wasmtime::Result<Option<crate::store::SourceRow>> {
    if !env.source_kinds.iter().any(|k| k == kind) {
        tracing::warn!(
            plugin = %env.name,
            correlation_id = %correlation_id,
            "refused a read of a {kind:?} source: this plugin reads only sources of kind {:?} (source_kinds in plugins.toml)",
            env.source_kinds
        );
        return Ok(None);
    }
    let Some(directory) = env.directory.as_ref() else {
        return Ok(None);
    };
    directory.store.source_for_directory(kind, key).await.map_err(|e| {
        tracing::warn!(plugin = %env.name, correlation_id = %correlation_id, "directory lookup failed: {e}");
        wasmtime::Error::msg(format!("the directory cannot be read now: {e}"))
    })
}

/// Longest adapter log line kept; the rest is cut so a chatty plugin cannot flood the logs.
const MAX_LOG_LINE: usize = 4096;

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("…[cut]");
        }
        let plugin = self.env.name.as_str();
        let cid = self.correlation_id.as_str();
        match level {
            host::Level::Trace => tracing::trace!(plugin, correlation_id = cid, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, correlation_id = cid, "{message}"),
            host::Level::Info => tracing::info!(plugin, correlation_id = cid, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, correlation_id = cid, "{message}"),
            host::Level::Error => tracing::error!(plugin, correlation_id = cid, "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.env.config.get(&key).cloned()
    }

    fn secret(&mut self, key: String) -> Option<String> {
        self.env.secrets.get(&key).map(|s| s.expose().to_string())
    }
}
