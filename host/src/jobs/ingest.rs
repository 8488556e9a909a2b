//! The way of a webhook after verify and the durable store (design.md §2):
//! parse the delivery into items, record them (deduplicated), then map and
//! apply each item on its own. An item that fails never fails the others, and
//! nothing here can make the provider see anything but the 2xx it was promised.

use super::retry::delay_after;
use crate::domain::ParsedItem;
use crate::runtime::Session;
use crate::runtime::session::{AdapterError, AdapterRequest, CallError};
use crate::store::{Applied, FailState, ItemSlot, RecordRef, Store, StoreError};
use serde::Serialize;

/// What became of one item, as the webhook's answer reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    pub event_id: i64,
    pub dedup_key: String,
    /// processed | ignored | duplicate | failed | dead
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows the item made or found (conversions report theirs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordRef>,
}

/// What became of a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    pub event_id: i64,
    /// processed | failed | dead (the delivery itself: whether it could be split)
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub items: Vec<ItemReport>,
}

/// Why an item or a delivery failed, and whether a retry may help.
struct Failure {
    message: String,
    retryable: bool,
}

impl From<AdapterError> for Failure {
    fn from(e: AdapterError) -> Self {
        Failure {
            message: e.to_string(),
            retryable: e.retryable,
        }
    }
}

impl From<CallError> for Failure {
    // A trap or timeout may be fixed by a new plugin version: keep it retryable.
    fn from(e: CallError) -> Self {
        Failure {
            message: e.to_string(),
            retryable: true,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure {
            retryable: e.is_retryable(),
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
            retry_in_secs: ((secs as f64) * (0.8 + 0.4 * fastrand::f64())).round() as u64,
        },
        None => {
            f.message = format!("gave up after {attempts} attempts: {}", f.message);
            FailState::Dead
        }
    }
}

fn status_name(state: FailState) -> &'static str {
    match state {
        FailState::Failed { .. } => "failed",
        FailState::Dead => "dead",
    }
}

/// Parse a stored delivery and process its items.
pub async fn process_delivery(
    store: &Store,
    session: &mut Session,
    source: &str,
    correlation_id: &str,
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
        Err(f) => {
            return failed_delivery(store, event_id, correlation_id, attempts_before, f).await;
        }
    };
    let slots = match store
        .split_delivery(event_id, source, correlation_id, &items)
        .await
    {
        Ok(slots) => slots,
        Err(e) => {
            return failed_delivery(
                store,
                event_id,
                correlation_id,
                attempts_before,
                Failure::from(e),
            )
            .await;
        }
    };
    let mut reports = Vec::with_capacity(items.len());
    for (item, slot) in items.iter().zip(slots) {
        let report = match slot {
            ItemSlot::Duplicate { id, .. } => ItemReport {
                event_id: id,
                dedup_key: item.dedup_key.clone(),
                status: "duplicate",
                error: None,
                records: Vec::new(),
            },
            ItemSlot::New(id) => {
                process_item(store, session, source, correlation_id, id, 0, item).await
            }
            ItemSlot::Again { id, attempts } => {
                process_item(store, session, source, correlation_id, id, attempts, item).await
            }
        };
        reports.push(report);
    }
    DeliveryReport {
        event_id,
        status: "processed",
        error: None,
        items: reports,
    }
}

async fn failed_delivery(
    store: &Store,
    event_id: i64,
    correlation_id: &str,
    attempts_before: i64,
    mut f: Failure,
) -> DeliveryReport {
    let state = fail_state(&mut f, attempts_before);
    tracing::warn!(
        correlation_id,
        event_id,
        retryable = f.retryable,
        "delivery not processed: {}",
        f.message
    );
    if let Err(e) = store.fail_event(event_id, state, &f.message).await {
        // The delivery row stays `received`: recovery will pick it up.
        tracing::error!(
            correlation_id,
            event_id,
            "cannot record the delivery's failure: {e}"
        );
    }
    DeliveryReport {
        event_id,
        status: status_name(state),
        error: Some(f.message),
        items: Vec::new(),
    }
}

/// Map and apply one item; record its outcome on its event row.
#[allow(clippy::too_many_arguments)]
pub async fn process_item(
    store: &Store,
    session: &mut Session,
    source: &str,
    correlation_id: &str,
    event_id: i64,
    attempts_before: i64,
    item: &ParsedItem,
) -> ItemReport {
    let outcome = match session.map_to_domain(item).await {
        Ok(Ok(ops)) => store
            .apply_item(event_id, source, item.tenant.as_ref(), &ops)
            .await
            .map_err(Failure::from),
        Ok(Err(e)) => Err(Failure::from(e)),
        Err(e) => Err(Failure::from(e)),
    };
    let mut report = ItemReport {
        event_id,
        dedup_key: item.dedup_key.clone(),
        status: "processed",
        error: None,
        records: Vec::new(),
    };
    match outcome {
        Ok(Applied::Processed { created, records }) => {
            report.records = records;
            tracing::info!(correlation_id, event_id, dedup_key = %item.dedup_key, created, "item processed");
        }
        Ok(Applied::Ignored(reason)) => {
            tracing::info!(correlation_id, event_id, dedup_key = %item.dedup_key, "item ignored: {reason}");
            report.status = "ignored";
            report.error = Some(reason);
        }
        Err(mut f) => {
            let state = fail_state(&mut f, attempts_before);
            tracing::warn!(correlation_id, event_id, dedup_key = %item.dedup_key, retryable = f.retryable, attempt = attempts_before + 1, "item failed: {}", f.message);
            if let Err(e) = store.fail_event(event_id, state, &f.message).await {
                tracing::error!(
                    correlation_id,
                    event_id,
                    "cannot record the item's failure: {e}"
                );
            }
            report.status = status_name(state);
            report.error = Some(f.message);
        }
    }
    report
}
