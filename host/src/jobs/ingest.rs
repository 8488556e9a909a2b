//! The way of a webhook after verify and the durable store: parse the delivery
//! into items, record them (deduplicated), then map and apply each item on its
//! own. An item that fails never fails the others, and nothing here can make
//! the provider see anything but the 2xx it was promised. Outbox records an
//! item makes for immediate delivery are delivered here, after their commit.

use super::outbox;
use super::retry::delay_after;
use crate::domain::{ParsedItem, RecordRef};
use crate::runtime::session::{AdapterError, AdapterRequest, CallError};
use crate::runtime::{LoadedPlugin, Session};
use crate::store::types::EventStatus;
use crate::store::{Applied, Durability, FailState, ItemContext, ItemSlot, Store, StoreError};
use crate::telemetry::metrics;
use serde::Serialize;
use std::time::Duration;

/// Who processes work, and with what lease: shared by the first pass, the retry
/// worker and replays, so all three behave alike.
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    pub store: &'a Store,
    pub plugin: &'a LoadedPlugin,
    pub correlation_id: &'a str,
    /// This process, as it signs leases.
    pub owner: &'a str,
    pub lease: Duration,
    /// How the items' writes are committed: [`Durability::Deferred`] where the
    /// delivery is already stored (webhooks, retries), so a write undone by a
    /// crash of the machine is done again from it; synced where an answer
    /// reports them (intake routes, an operator's replay).
    pub durability: Durability,
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Processed,
    Ignored,
    /// Processed before: nothing done.
    Duplicate,
    /// Another worker is processing it right now.
    InProgress,
    Failed,
    Dead,
}

impl ItemStatus {
    /// The name reports and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Processed => "processed",
            ItemStatus::Ignored => "ignored",
            ItemStatus::Duplicate => "duplicate",
            ItemStatus::InProgress => "in_progress",
            ItemStatus::Failed => "failed",
            ItemStatus::Dead => "dead",
        }
    }

    /// Whether the item is as done as it will be without a fix.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            ItemStatus::Processed | ItemStatus::Ignored | ItemStatus::Duplicate
        )
    }
}

impl From<FailState> for ItemStatus {
    fn from(s: FailState) -> Self {
        match s {
            FailState::Failed { .. } => ItemStatus::Failed,
            FailState::Dead => ItemStatus::Dead,
        }
    }
}

/// What became of one item, as the webhook's answer reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    pub event_id: i64,
    pub dedup_key: String,
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error in words fit for the caller of an intake route: an adapter's
    /// own message, never a trap's stderr or a path on this machine.
    #[serde(skip)]
    pub public_error: Option<String>,
    /// Records the item made or found (conversions and messages report theirs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordRef>,
}

/// What became of a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    pub event_id: i64,
    /// The delivery itself: whether it could be split (processed, failed or dead).
    pub status: EventStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub items: Vec<ItemReport>,
}

impl DeliveryReport {
    pub fn succeeded(&self) -> bool {
        self.status == EventStatus::Processed && self.items.iter().all(|i| i.status.succeeded())
    }
}

/// Why an item or a delivery failed, and whether a retry may help.
pub struct Failure {
    /// For operators: the DLQ and the logs.
    pub message: String,
    /// For the caller of an intake route.
    pub public: String,
    pub retryable: bool,
}

impl From<AdapterError> for Failure {
    fn from(e: AdapterError) -> Self {
        Failure {
            message: e.to_string(),
            public: e.to_string(),
            retryable: e.retryable,
        }
    }
}

impl From<CallError> for Failure {
    // A trap or timeout may be fixed by a new plugin version: keep it
    // retryable. An output over the host's limits never fits: dead at once.
    fn from(e: CallError) -> Self {
        Failure {
            message: e.to_string(),
            public: e.public(),
            retryable: !e.is_permanent(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure {
            retryable: e.is_retryable(),
            public: e.public(),
            message: e.to_string(),
        }
    }
}

/// Failed with the next delay of the schedule (±20% jitter so a burst of failures
/// does not come back as one burst), or dead when permanent or out of attempts.
fn fail_state(f: &mut Failure, attempts_before: i64) -> FailState {
    if !f.retryable {
        return FailState::Dead;
    }
    let attempts = u32::try_from(attempts_before.max(0) + 1).unwrap_or(u32::MAX);
    match delay_after(attempts) {
        Some(secs) => FailState::Failed {
            retry_in: Duration::from_secs_f64(secs as f64 * (0.8 + 0.4 * fastrand::f64())),
        },
        None => {
            f.message = format!("gave up after {attempts} attempts: {}", f.message);
            FailState::Dead
        }
    }
}

/// Parse a stored delivery and process its items.
pub async fn process_delivery(
    pass: Pass<'_>,
    session: &mut Session,
    event_id: i64,
    attempts_before: i64,
    request: &AdapterRequest,
) -> DeliveryReport {
    let parsed = match session.parse(request).await {
        Ok(Ok(items)) => Ok(items),
        Ok(Err(e)) => Err(Failure::from(e)),
        Err(e) => Err(Failure::from(e)),
    };
    let items = match parsed {
        Ok(items) => items,
        Err(f) => return failed_delivery(pass, event_id, attempts_before, f).await,
    };
    let slots = match split(pass, event_id, &items).await {
        Ok(slots) => slots,
        Err(e) => {
            return failed_delivery(pass, event_id, attempts_before, Failure::from(e)).await;
        }
    };
    let mut reports = Vec::with_capacity(items.len());
    for (item, slot) in items.iter().zip(slots) {
        let report = match slot {
            ItemSlot::Duplicate { id, .. } => {
                metrics::item(&pass.plugin.spec.name, ItemStatus::Duplicate.as_str());
                skipped(id, item, ItemStatus::Duplicate)
            }
            ItemSlot::InProgress { id } => {
                metrics::item(&pass.plugin.spec.name, ItemStatus::InProgress.as_str());
                skipped(id, item, ItemStatus::InProgress)
            }
            ItemSlot::New(id) => process_item(pass, session, id, 0, item).await,
            ItemSlot::Again { id, attempts } => {
                process_item(pass, session, id, attempts, item).await
            }
        };
        reports.push(report);
    }
    DeliveryReport {
        event_id,
        status: EventStatus::Processed,
        error: None,
        items: reports,
    }
}

/// Record a delivery's items and mark it processed.
pub async fn split(
    pass: Pass<'_>,
    event_id: i64,
    items: &[ParsedItem],
) -> Result<Vec<ItemSlot>, StoreError> {
    pass.store
        .split_delivery(
            event_id,
            &pass.plugin.spec.name,
            pass.correlation_id,
            items,
            pass.owner,
            pass.lease,
            pass.durability,
        )
        .await
}

fn skipped(event_id: i64, item: &ParsedItem, status: ItemStatus) -> ItemReport {
    ItemReport {
        event_id,
        dedup_key: item.dedup_key.clone(),
        status,
        error: None,
        public_error: None,
        records: Vec::new(),
    }
}

async fn failed_delivery(
    pass: Pass<'_>,
    event_id: i64,
    attempts_before: i64,
    mut f: Failure,
) -> DeliveryReport {
    let state = fail_state(&mut f, attempts_before);
    let correlation_id = pass.correlation_id;
    tracing::warn!(
        correlation_id,
        event_id,
        retryable = f.retryable,
        "delivery not processed: {}",
        f.message
    );
    if let Err(e) = pass
        .store
        .fail_event(event_id, pass.owner, attempts_before, state, &f.message)
        .await
    {
        // The delivery row stays `received`: recovery will pick it up.
        tracing::error!(
            correlation_id,
            event_id,
            "cannot record the delivery's failure: {e}"
        );
    }
    DeliveryReport {
        event_id,
        status: state.status(),
        error: Some(f.message),
        items: Vec::new(),
    }
}

/// Map and apply one item; record its outcome on its event row; deliver at once
/// what it queued for immediate delivery.
pub async fn process_item(
    pass: Pass<'_>,
    session: &mut Session,
    event_id: i64,
    attempts_before: i64,
    item: &ParsedItem,
) -> ItemReport {
    let report = apply_one(pass, session, event_id, attempts_before, item).await;
    metrics::item(&pass.plugin.spec.name, report.status.as_str());
    report
}

async fn apply_one(
    pass: Pass<'_>,
    session: &mut Session,
    event_id: i64,
    attempts_before: i64,
    item: &ParsedItem,
) -> ItemReport {
    let immediate: Vec<String> = pass
        .plugin
        .manifest
        .outbox
        .iter()
        .filter(|d| d.immediate)
        .map(|d| d.kind.clone())
        .collect();
    let ctx = ItemContext {
        event_id,
        source: &pass.plugin.spec.name,
        tenant: item.tenant.as_ref(),
        owner: pass.owner,
        attempts_before,
        lease: pass.lease,
        immediate_kinds: &immediate,
    };
    let outcome = match session.map_to_domain(item).await {
        Ok(Ok(ops)) => match pass.store.apply_item(&ctx, &ops, pass.durability).await {
            Err(StoreError::LeaseLost { .. }) => {
                // Our lease ran out and another process took the item: its
                // attempt counts, not this one.
                tracing::warn!(correlation_id = pass.correlation_id, event_id, dedup_key = %item.dedup_key, "item taken over by another process while this one mapped it; its result is dropped");
                return skipped(event_id, item, ItemStatus::InProgress);
            }
            other => other.map_err(Failure::from),
        },
        Ok(Err(e)) => Err(Failure::from(e)),
        Err(e) => Err(Failure::from(e)),
    };
    let mut report = skipped(event_id, item, ItemStatus::Processed);
    let correlation_id = pass.correlation_id;
    match outcome {
        Ok(Applied::Processed {
            created,
            records,
            deliver_now,
        }) => {
            report.records = records;
            tracing::info!(correlation_id, event_id, dedup_key = %item.dedup_key, created, "item processed");
            if !deliver_now.is_empty() {
                let delivered = outbox::deliver_now(pass, session, &deliver_now).await;
                for fresh in delivered {
                    if let Some(r) = report
                        .records
                        .iter_mut()
                        .find(|r| r.kind == fresh.kind && r.id == fresh.id)
                    {
                        *r = fresh;
                    }
                }
            }
        }
        Ok(Applied::Ignored(reason)) => {
            tracing::info!(correlation_id, event_id, dedup_key = %item.dedup_key, "item ignored: {reason}");
            report.status = ItemStatus::Ignored;
            report.error = Some(reason);
        }
        Err(mut f) => {
            let state = fail_state(&mut f, attempts_before);
            tracing::warn!(correlation_id, event_id, dedup_key = %item.dedup_key, retryable = f.retryable, attempt = attempts_before + 1, "item failed: {}", f.message);
            if let Err(e) = pass
                .store
                .fail_event(event_id, pass.owner, attempts_before, state, &f.message)
                .await
            {
                tracing::error!(
                    correlation_id,
                    event_id,
                    "cannot record the item's failure: {e}"
                );
            }
            report.status = state.into();
            report.error = Some(f.message);
            report.public_error = Some(f.public);
        }
    }
    report
}
