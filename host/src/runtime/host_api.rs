//! What the host gives each instance: its store data and the `host` interface
//! (log, config, secret). A plugin sees only its own config and secrets.

use super::bindings::portico::adapter::{directory, host, types};
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
    pub directory: Option<crate::store::Store>,
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
        let store = self.env.directory.clone()?;
        match store.source_key(tenant_id, &kind).await {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(plugin = %self.env.name, correlation_id = %self.correlation_id, "directory lookup failed: {e}");
                None
            }
        }
    }
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
