//! Replays: run failed (or dead) events through their plugin again, exactly as
//! the first attempt did. Dedup keys and idempotent writes make a replay of
//! something already applied a no-op.

use super::ingest::{self, DeliveryReport, ItemReport, Pass};
use crate::runtime::session::AdapterRequest;
use crate::runtime::{PluginSet, Session, SlotState};
use crate::store::types::EventKind;
use crate::store::{Durability, EventFilter, EventRow, Store, StoreError};
use serde::Serialize;
use std::time::Duration;
use tracing::Instrument;

/// Who replays, as leases name it, and for how long it holds what it takes.
#[derive(Debug, Clone, Copy)]
pub struct Replayer<'a> {
    pub owner: &'a str,
    pub lease: Duration,
    /// Synced for an operator (the report says what is stored), deferred for
    /// the retry worker (see [`Pass::durability`]).
    pub durability: Durability,
}

/// What one replayed event came to.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReplayOutcome {
    Item(ItemReport),
    Delivery(DeliveryReport),
    /// The event could not be run (its plugin is not loaded, say); it is left as it was.
    Skipped {
        event_id: i64,
        reason: String,
    },
}

impl ReplayOutcome {
    /// Whether the event ended processed, ignored or duplicate.
    pub fn succeeded(&self) -> bool {
        match self {
            ReplayOutcome::Item(i) => i.status.succeeded(),
            ReplayOutcome::Delivery(d) => d.succeeded(),
            ReplayOutcome::Skipped { .. } => false,
        }
    }
}

/// The result of a replay by filter.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub matched: usize,
    pub dry_run: bool,
    pub succeeded: usize,
    pub failed: usize,
    /// The events that would be replayed (dry run) or were.
    pub event_ids: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<ReplayOutcome>,
}

/// Replay one event through the plugin named by its source (its logs carry
/// the event's correlation id, plugin and id).
pub async fn replay_event(
    store: &Store,
    plugins: &PluginSet,
    event: &EventRow,
    by: Replayer<'_>,
) -> ReplayOutcome {
    let span = tracing::info_span!(
        "event",
        correlation_id = %event.correlation_id,
        plugin = %event.source,
        event_id = event.id
    );
    replay_in_span(store, plugins, event, by)
        .instrument(span)
        .await
}

async fn replay_in_span(
    store: &Store,
    plugins: &PluginSet,
    event: &EventRow,
    by: Replayer<'_>,
) -> ReplayOutcome {
    let skipped = |reason: String| ReplayOutcome::Skipped {
        event_id: event.id,
        reason,
    };
    let plugin = match plugins.slot(&event.source).map(|s| &s.state) {
        Some(SlotState::Loaded(p)) => p.clone(),
        Some(SlotState::Disabled) => {
            return skipped(format!("plugin {} is disabled", event.source));
        }
        Some(SlotState::Failed { error, .. }) => {
            return skipped(format!("plugin {} is not loaded: {error}", event.source));
        }
        None => return skipped(format!("no plugin named {} in plugins.toml", event.source)),
    };
    let cid = event.correlation_id.as_str();
    tracing::info!(correlation_id = cid, event_id = event.id, plugin = %plugin.spec.name, attempt = event.attempts + 1, "replaying event");
    let mut session = match Session::start(&plugin, cid).await {
        Ok(s) => s,
        Err(e) => return skipped(format!("plugin {} cannot start: {e}", plugin.spec.name)),
    };
    let pass = Pass {
        store,
        plugin: &plugin,
        correlation_id: cid,
        owner: by.owner,
        lease: by.lease,
        durability: by.durability,
    };
    if event.kind == EventKind::Item {
        match event.as_item() {
            Some(item) => ReplayOutcome::Item(
                ingest::process_item(pass, &mut session, event.id, event.attempts, &item).await,
            ),
            None => skipped("item row has no dedup key or kind".into()),
        }
    } else {
        let headers: Vec<(String, String)> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&event.headers_json)
                .map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
        let request = AdapterRequest {
            method: "POST".into(),
            route: String::new(),
            query: String::new(),
            headers,
            body: event.payload.clone(),
        };
        ReplayOutcome::Delivery(
            ingest::process_delivery(pass, &mut session, event.id, event.attempts, &request).await,
        )
    }
}

/// Replay every event matching `filter` (or only list them, on a dry run).
pub async fn replay_matching(
    store: &Store,
    plugins: &PluginSet,
    filter: &EventFilter,
    dry_run: bool,
    by: Replayer<'_>,
) -> Result<ReplayReport, StoreError> {
    let events = store.list_events(filter).await?;
    let mut report = ReplayReport {
        matched: events.len(),
        dry_run,
        succeeded: 0,
        failed: 0,
        event_ids: events.iter().map(|e| e.id).collect(),
        outcomes: Vec::new(),
    };
    if dry_run {
        return Ok(report);
    }
    let started = std::time::Instant::now();
    for (n, event) in events.iter().enumerate() {
        let outcome = replay_event(store, plugins, event, by).await;
        if outcome.succeeded() {
            report.succeeded += 1;
        } else {
            report.failed += 1;
        }
        report.outcomes.push(outcome);
        if (n + 1) % 100 == 0 {
            tracing::info!(
                "replay progress: {}/{} ({} ok, {} still failing)",
                n + 1,
                events.len(),
                report.succeeded,
                report.failed
            );
        }
    }
    tracing::info!(
        matched = report.matched,
        succeeded = report.succeeded,
        failed = report.failed,
        ms = started.elapsed().as_millis() as u64,
        "replay finished"
    );
    Ok(report)
}
