//! Prometheus metrics (`GET /metrics`), recorded through the `metrics` facade
//! and rendered by its Prometheus exporter in the text exposition format.
//!
//! Labels are low-cardinality by construction: route templates, plugin names,
//! and the enums below, never a tenant, an event or a raw path. Counters and
//! histograms are recorded where things happen; the gauges that describe the
//! database (DLQ, outbox) and the loaded plugins are read at scrape time.

use crate::runtime::registry::{PluginSet, SlotState};
use crate::store::Store;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets (seconds) of every `_seconds` histogram: 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A phase of an adapter call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Manifest,
    Verify,
    Parse,
    Map,
    Respond,
    Deliver,
    Handle,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Manifest => "manifest",
            Phase::Verify => "verify",
            Phase::Parse => "parse",
            Phase::Map => "map",
            Phase::Respond => "respond",
            Phase::Deliver => "deliver",
            Phase::Handle => "handle",
        }
    }
}

/// How an adapter call failed on the host's side of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Timeout,
    Memory,
    Trap,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Timeout => "timeout",
            Fault::Memory => "memory",
            Fault::Trap => "trap",
        }
    }
}

/// What became of a webhook delivery at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Stored and answered 2xx.
    Accepted,
    RejectedSignature,
    TooLarge,
    StoreUnavailable,
    /// Anything else (a plugin fault or a busy plugin before the store).
    Failed,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Accepted => "accepted",
            DeliveryOutcome::RejectedSignature => "rejected_signature",
            DeliveryOutcome::TooLarge => "too_large",
            DeliveryOutcome::StoreUnavailable => "store_unavailable",
            DeliveryOutcome::Failed => "failed",
        }
    }
}

/// Whether a plugin's reload was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Loaded,
    Refused,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Loaded => "loaded",
            ReloadResult::Refused => "refused",
        }
    }
}

/// Install the process-wide recorder (once; later calls do nothing). Until it
/// is installed, recording is a no-op: tests and CLI commands pay nothing.
pub fn install() -> anyhow::Result<()> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        // Scrape-time gauges are set again before each render; a series not
        // set for a while (a plugin version replaced) goes away.
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(120)))
        .install_recorder()?;
    describe();
    let _ = HANDLE.set(handle);
    Ok(())
}

fn describe() {
    describe_counter!(
        "portico_http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "portico_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route template and method"
    );
    describe_counter!(
        "portico_webhook_deliveries_total",
        "Webhook deliveries by plugin and what became of them at the door"
    );
    describe_counter!(
        "portico_items_total",
        "Items processed (first pass, retries and replays), by plugin and outcome"
    );
    describe_histogram!(
        "portico_adapter_call_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one adapter call, by plugin and phase"
    );
    describe_counter!(
        "portico_adapter_faults_total",
        "Adapter calls stopped by the sandbox, by plugin and kind (timeout, memory, trap)"
    );
    describe_gauge!(
        "portico_dlq_events",
        "Events waiting in the dead-letter queue, by status (failed: to be retried; dead)"
    );
    describe_gauge!(
        "portico_dlq_oldest_failed_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest failed event (0 when there is none)"
    );
    describe_gauge!(
        "portico_outbox_pending",
        "Outbox records not delivered yet (pending or being delivered), by plugin and kind"
    );
    describe_gauge!(
        "portico_plugin_info",
        "1 for each loaded plugin, with its version and component sha256"
    );
    describe_counter!(
        "portico_plugin_reloads_total",
        "Plugin reloads by result (loaded, refused)"
    );
    describe_counter!(
        "portico_http_refused_total",
        "Connections and requests refused with 503 over a server cap, by reason (connections, in_flight)"
    );
}

/// Bounded method labels: the usual methods, else "other".
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

pub fn http_request(route: &str, method: &str, status: u16, took: Duration) {
    let method = method_label(method);
    counter!(
        "portico_http_requests_total",
        "route" => route.to_string(),
        "method" => method,
        "status" => status.to_string()
    )
    .increment(1);
    histogram!(
        "portico_http_request_duration_seconds",
        "route" => route.to_string(),
        "method" => method
    )
    .record(took.as_secs_f64());
}

/// A connection answered 503 over PORTICO_MAX_CONNECTIONS.
pub fn connection_refused() {
    counter!("portico_http_refused_total", "reason" => "connections").increment(1);
}

/// A request answered 503 over PORTICO_MAX_IN_FLIGHT.
pub fn request_refused() {
    counter!("portico_http_refused_total", "reason" => "in_flight").increment(1);
}

pub fn webhook_delivery(plugin: &str, outcome: DeliveryOutcome) {
    counter!(
        "portico_webhook_deliveries_total",
        "plugin" => plugin.to_string(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
}

pub fn item(plugin: &str, status: &'static str) {
    counter!(
        "portico_items_total",
        "plugin" => plugin.to_string(),
        "status" => status
    )
    .increment(1);
}

pub fn adapter_call(plugin: &str, phase: Phase, took: Duration) {
    histogram!(
        "portico_adapter_call_duration_seconds",
        "plugin" => plugin.to_string(),
        "phase" => phase.as_str()
    )
    .record(took.as_secs_f64());
}

pub fn adapter_fault(plugin: &str, fault: Fault) {
    counter!(
        "portico_adapter_faults_total",
        "plugin" => plugin.to_string(),
        "kind" => fault.as_str()
    )
    .increment(1);
}

pub fn plugin_reload(plugin: &str, result: ReloadResult) {
    counter!(
        "portico_plugin_reloads_total",
        "plugin" => plugin.to_string(),
        "result" => result.as_str()
    )
    .increment(1);
}

/// Times an adapter call; records it when dropped.
pub struct CallTimer {
    plugin: std::sync::Arc<str>,
    phase: Phase,
    started: std::time::Instant,
}

impl CallTimer {
    pub fn start(plugin: std::sync::Arc<str>, phase: Phase) -> CallTimer {
        CallTimer {
            plugin,
            phase,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        adapter_call(&self.plugin, self.phase, self.started.elapsed());
    }
}

/// The exposition text: the scrape-time gauges read now, then everything.
/// A database that does not answer leaves its gauges out (the store's own
/// health is `/api/health/ready`'s business), never fails the scrape.
pub async fn render(store: &Store, plugins: &PluginSet) -> String {
    let Some(handle) = HANDLE.get() else {
        return String::new();
    };
    match crate::store::within(crate::store::FIGURES_WAIT, store.dlq_stats()).await {
        Ok(dlq) => {
            gauge!("portico_dlq_events", "status" => "failed").set(dlq.failed as f64);
            gauge!("portico_dlq_events", "status" => "dead").set(dlq.dead as f64);
            gauge!("portico_dlq_oldest_failed_age_seconds")
                .set(dlq.oldest_failed_age_seconds.unwrap_or(0.0).max(0.0));
        }
        Err(e) => tracing::debug!("metrics: DLQ counts unavailable: {e}"),
    }
    match crate::store::within(crate::store::FIGURES_WAIT, store.outbox_backlog()).await {
        Ok(backlog) => {
            // Every declared kind shows, drained ones as 0.
            for slot in &plugins.slots {
                if let SlotState::Loaded(p) = &slot.state {
                    for decl in &p.manifest.outbox {
                        let pending = backlog
                            .iter()
                            .find(|b| b.plugin == slot.spec.name && b.kind == decl.kind)
                            .map_or(0, |b| b.pending);
                        gauge!(
                            "portico_outbox_pending",
                            "plugin" => slot.spec.name.clone(),
                            "kind" => decl.kind.clone()
                        )
                        .set(pending as f64);
                    }
                }
            }
        }
        Err(e) => tracing::debug!("metrics: outbox backlog unavailable: {e}"),
    }
    for slot in &plugins.slots {
        if let SlotState::Loaded(p) = &slot.state {
            gauge!(
                "portico_plugin_info",
                "plugin" => slot.spec.name.clone(),
                "version" => p.manifest.version.clone(),
                "sha256" => p.sha256.clone()
            )
            .set(1.0);
        }
    }
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_bounded_set() {
        assert_eq!(method_label("POST"), "POST");
        assert_eq!(method_label("BREW"), "other");
    }
}
