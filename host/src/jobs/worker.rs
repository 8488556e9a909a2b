//! The retry worker inside `portico serve`.
//!
//! Every poll it claims due events with a lease (claimed_by, lease_until) in one
//! statement, so two workers never run one row. Due means: `failed` with next_attempt_at
//! passed, or `received` with no live lease (a delivery whose process died
//! between storing it and splitting it). Each claimed event goes through
//! [`replay_event`], exactly the path of a manual replay, and every status write
//! clears the lease. Once an hour (and at start) it prunes old finished events.

use super::pipeline::Pipeline;
use super::replay::{ReplayOutcome, Replayer, replay_event};
use crate::config::limits::Tunables;
use crate::runtime::PluginSet;
use crate::runtime::Runtime;
use crate::store::{Durability, Store};
use std::sync::Arc;
use std::time::Instant;

/// Run the worker until the process ends.
pub fn spawn(
    store: Store,
    runtime: Arc<Runtime>,
    tunables: Tunables,
    owner: String,
    pipeline: Pipeline,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_prune: Option<Instant> = None;
        tracing::info!(
            owner = %owner,
            poll_ms = tunables.retry_poll.as_millis() as u64,
            retention_days = tunables.retention_days,
            "retry worker started"
        );
        loop {
            if last_prune.is_none_or(|t| t.elapsed() >= tunables.prune_every) {
                last_prune = Some(Instant::now());
                match store.prune(tunables.retention_days).await {
                    Ok((0, 0)) => {}
                    Ok((items, deliveries)) => tracing::info!(
                        items,
                        deliveries,
                        "pruned finished events older than {} days",
                        tunables.retention_days
                    ),
                    Err(e) => tracing::warn!("pruning old events failed: {e}"),
                }
            }
            let claimed = match store
                .claim_due(&owner, tunables.lease, tunables.retry_batch)
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!("retry worker cannot claim events: {e}");
                    tokio::time::sleep(tunables.retry_poll).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::time::sleep(tunables.retry_poll).await;
                continue;
            }
            // Claimed events run side by side: an item waiting on a slow provider
            // API must not hold the others back.
            let plugins = runtime.snapshot();
            let mut running = tokio::task::JoinSet::new();
            for id in claimed {
                let (store, plugins, owner, pipeline) = (
                    store.clone(),
                    plugins.clone(),
                    owner.clone(),
                    pipeline.clone(),
                );
                let lease = tunables.lease;
                running.spawn(async move {
                    retry_one(&store, &plugins, id, &owner, lease, &pipeline).await;
                });
            }
            while running.join_next().await.is_some() {}
        }
    })
}

/// One claimed event through the path of a manual replay.
async fn retry_one(
    store: &Store,
    plugins: &PluginSet,
    id: i64,
    owner: &str,
    lease: std::time::Duration,
    pipeline: &Pipeline,
) {
    let event = match store.get_event(id).await {
        Ok(Some(e)) => e,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(event_id = id, "retry worker cannot read event: {e}");
            return;
        }
    };
    let delivery = event.kind == crate::store::types::EventKind::Delivery;
    if delivery {
        pipeline.begin(id);
    }
    let outcome = replay_event(
        store,
        plugins,
        &event,
        Replayer {
            owner,
            lease,
            durability: Durability::Deferred,
        },
    )
    .await;
    tracing::info!(
        correlation_id = %event.correlation_id,
        event_id = id,
        attempt = event.attempts + 1,
        ok = outcome.succeeded(),
        "retry attempt finished"
    );
    match outcome {
        ReplayOutcome::Skipped { reason, event_id } => {
            // Its lease stays: the event comes back when the lease runs out.
            tracing::warn!(correlation_id = %event.correlation_id, event_id, "retry skipped: {reason}");
            if delivery {
                pipeline.forget(event_id);
            }
        }
        ReplayOutcome::Delivery(report) => pipeline.record(report),
        ReplayOutcome::Item(_) => {}
    }
}
