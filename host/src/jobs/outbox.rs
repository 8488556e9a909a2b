//! The outbox: everything that calls a provider on Portico's behalf (a send, a
//! conversion upload) is a record committed first, then handed to the plugin
//! that declared its kind, through `deliver`, under a lease.
//!
//! Invariants:
//! - an attempt is committed (`delivering`, attempts + 1) before `deliver` runs,
//!   so an attempt cut off by a dead process is known as such: records of an
//!   `idempotent` kind go back to pending, the others end failed as "the
//!   provider may have accepted it" and are never sent twice;
//! - `unknown` (a timeout after the request went out) is final for the same reason;
//! - `retry` is only for what certainly did not reach the provider; it waits
//!   the provider's Retry-After, else the retry schedule, then gives up;
//! - a batch-wide `stop` (bad credentials) parks that plugin's kind until the
//!   plugin is reloaded (new config or secrets), with the reason in health, and
//!   puts the batch back untouched.
//!
//! Records of `immediate` kinds made by an intake request are delivered by that
//! request, right after their commit ([`deliver_now`]); the worker ([`spawn`])
//! delivers the rest, and anything an immediate delivery left pending.

use super::ingest::Pass;
use super::retry::delay_after;
use crate::domain::RecordRef;
use crate::runtime::plugin::OutboxDecl;
use crate::runtime::session::{BatchError, CallError, RowOutcome};
use crate::runtime::{LoadedPlugin, Runtime, Session, SlotState};
use crate::store::{OutboxOutcome, OutboxRow, Store, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What health shows about outbox delivery.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutboxStatus {
    /// "plugin/kind" → why its delivery is stopped (and since when).
    pub stopped: HashMap<String, String>,
    pub delivered: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// Shared view of the outbox worker for health.
pub type SharedStatus = Arc<Mutex<OutboxStatus>>;

/// How one batch went.
struct BatchResult {
    records: Vec<RecordRef>,
    delivered: u64,
    failed: u64,
    /// The plugin said to stop delivering this kind.
    stop: Option<String>,
}

/// Deliver records an item just committed for immediate delivery, on the item's
/// own instance. Returns the records as they now stand (sent, failed or still
/// pending for the worker).
pub async fn deliver_now(pass: Pass<'_>, session: &mut Session, ids: &[i64]) -> Vec<RecordRef> {
    let rows = match pass.store.start_outbox(ids, pass.owner, pass.lease).await {
        Ok(rows) => rows,
        Err(e) => {
            // Still pending and leased to us: the worker delivers them when the lease ends.
            tracing::warn!(
                correlation_id = pass.correlation_id,
                "cannot start immediate delivery: {e}"
            );
            return Vec::new();
        }
    };
    let mut records = Vec::new();
    for decl in &pass.plugin.manifest.outbox {
        let batch: Vec<OutboxRow> = rows
            .iter()
            .filter(|r| r.kind == decl.kind)
            .cloned()
            .collect();
        for chunk in batch.chunks(decl.max_batch.max(1) as usize) {
            let result = deliver_batch(
                pass.store,
                session,
                pass.plugin,
                decl,
                chunk,
                pass.correlation_id,
            )
            .await;
            records.extend(result.records);
        }
    }
    records
}

/// Call `deliver` for records whose attempt has started, and record how each ended.
async fn deliver_batch(
    store: &Store,
    session: &mut Session,
    plugin: &LoadedPlugin,
    decl: &OutboxDecl,
    rows: &[OutboxRow],
    correlation_id: &str,
) -> BatchResult {
    let name = &plugin.spec.name;
    let started = std::time::Instant::now();
    let batch: Vec<(i64, Vec<u8>)> = rows.iter().map(|r| (r.id, r.payload.clone())).collect();
    let answer = session.deliver(&decl.kind, &batch).await;
    let mut stop = None;
    let outcomes: Vec<OutboxOutcome> = match answer {
        Ok(Ok(outcomes)) => rows
            .iter()
            .enumerate()
            .map(|(i, row)| match outcomes.get(i) {
                Some(RowOutcome::Delivered(external_id)) => OutboxOutcome::Delivered {
                    external_id: external_id.clone(),
                },
                Some(RowOutcome::Rejected { code, message }) => {
                    OutboxOutcome::Rejected(format!("{code}: {message}"))
                }
                Some(RowOutcome::Unknown(message)) => OutboxOutcome::Unknown(message.clone()),
                Some(RowOutcome::Retry(message)) => later(row, None, message),
                // Asked again later, at least a few seconds on; not an attempt.
                Some(RowOutcome::Wait {
                    message,
                    after_secs,
                }) => OutboxOutcome::Waiting {
                    note: message.clone(),
                    at: Timestamp::now().plus(Duration::from_secs(u64::from(
                        (*after_secs).max(MIN_WAIT_SECS),
                    ))),
                },
                None => later(row, None, "the plugin returned no outcome for this record"),
            })
            .collect(),
        Ok(Err(BatchError::Retry {
            message,
            after_secs,
        })) => {
            tracing::warn!(plugin = %name, correlation_id, rows = rows.len(), "outbox batch deferred: {message}");
            rows.iter()
                .map(|r| later(r, after_secs, &message))
                .collect()
        }
        Ok(Err(BatchError::Stop(message))) => {
            tracing::error!(plugin = %name, kind = %decl.kind, correlation_id, "outbox delivery stopped until the plugin is fixed and reloaded: {message}");
            // Nothing was sent: the records wait for the fix.
            let now = Timestamp::now();
            let outcomes = rows
                .iter()
                .map(|_| OutboxOutcome::Later {
                    error: message.clone(),
                    at: now,
                })
                .collect();
            stop = Some(message);
            outcomes
        }
        Err(e) => rows.iter().map(|r| after_fault(decl, r, &e)).collect(),
    };
    let (mut delivered, mut failed) = (0, 0);
    for o in &outcomes {
        match o {
            OutboxOutcome::Delivered { .. } => delivered += 1,
            OutboxOutcome::Rejected(_) | OutboxOutcome::Unknown(_) => failed += 1,
            OutboxOutcome::Later { .. } | OutboxOutcome::Waiting { .. } => {}
        }
    }
    let ends: Vec<(&OutboxRow, OutboxOutcome)> = rows.iter().zip(outcomes).collect();
    let records = match record_outcomes(store, &ends).await {
        Ok(records) => records,
        Err(e) => {
            // The records stay `delivering`: when their lease ends they are
            // recovered as cut off (never silently sent again).
            tracing::error!(plugin = %name, correlation_id, "cannot record outbox outcomes: {e}");
            Vec::new()
        }
    };
    tracing::info!(plugin = %name, kind = %decl.kind, correlation_id, rows = rows.len(), delivered, failed, ms = started.elapsed().as_millis() as u64, "outbox batch done");
    BatchResult {
        records,
        delivered,
        failed,
        stop,
    }
}

/// The guest call itself failed (trap, timeout, busy): whether the provider was
/// reached is unknown, unless the call never started.
fn after_fault(decl: &OutboxDecl, row: &OutboxRow, e: &CallError) -> OutboxOutcome {
    let never_ran = matches!(e, CallError::Busy(_) | CallError::Instantiate(_));
    if never_ran || decl.idempotent {
        later(row, None, &e.to_string())
    } else {
        OutboxOutcome::Unknown(format!("{e}; {}", crate::store::MAY_HAVE_BEEN_ACCEPTED))
    }
}

/// The shortest wait an adapter may ask for (no record is asked again at once).
const MIN_WAIT_SECS: u32 = 5;

/// Back to pending: after what the provider asked, else the retry schedule; or
/// failed for good once the schedule is spent.
fn later(row: &OutboxRow, after_secs: Option<u32>, error: &str) -> OutboxOutcome {
    let attempts = u32::try_from(row.attempts.max(1)).unwrap_or(u32::MAX);
    let secs = match after_secs {
        Some(s) => Some(u64::from(s)),
        None => delay_after(attempts),
    };
    match secs {
        Some(secs) => OutboxOutcome::Later {
            error: error.to_string(),
            at: Timestamp::now().plus(Duration::from_secs(secs)),
        },
        None => OutboxOutcome::Rejected(format!("gave up after {attempts} attempts: {error}")),
    }
}

/// Run the outbox worker until the process ends.
pub fn spawn(
    store: Store,
    runtime: Arc<Runtime>,
    poll: Duration,
    owner: String,
    lease: Duration,
) -> SharedStatus {
    let status: SharedStatus = Arc::default();
    let shared = status.clone();
    tokio::spawn(async move {
        // "plugin/kind" → the load of the plugin that said stop.
        let mut stopped_at: HashMap<String, String> = HashMap::new();
        loop {
            let mut busy = false;
            for slot in &runtime.snapshot().slots {
                let SlotState::Loaded(plugin) = &slot.state else {
                    continue;
                };
                for decl in &plugin.manifest.outbox {
                    busy |= poll_kind(
                        &store,
                        plugin,
                        decl,
                        &owner,
                        lease,
                        &mut stopped_at,
                        &shared,
                    )
                    .await;
                }
            }
            if !busy {
                tokio::time::sleep(poll).await;
            }
        }
    });
    status
}

/// One round for one plugin's kind; true when it delivered something.
async fn poll_kind(
    store: &Store,
    plugin: &Arc<LoadedPlugin>,
    decl: &OutboxDecl,
    owner: &str,
    lease: Duration,
    stopped_at: &mut HashMap<String, String>,
    shared: &SharedStatus,
) -> bool {
    let name = &plugin.spec.name;
    let key = format!("{name}/{}", decl.kind);
    match store
        .recover_cut_off(name, &decl.kind, decl.idempotent)
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(plugin = %name, kind = %decl.kind, records = n, "outbox attempts cut off by a stopped process recovered")
        }
        Err(e) => tracing::warn!(plugin = %name, "cannot recover cut-off outbox attempts: {e}"),
    }
    // A new load (new code, or a plugins.toml change to its config or
    // secrets) is what an operator does to act on a stop: it tries again.
    let this_load = format!("{} {:?}", plugin.sha256, plugin.loaded_at);
    if stopped_at.get(&key) == Some(&this_load) {
        return false;
    }
    if stopped_at.remove(&key).is_some()
        && let Ok(mut s) = shared.lock()
    {
        s.stopped.remove(&key);
    }
    let rows = match store
        .claim_outbox(name, &decl.kind, owner, lease, i64::from(decl.max_batch))
        .await
    {
        Ok(rows) if rows.is_empty() => return false,
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(plugin = %name, "outbox worker cannot claim records: {e}");
            return false;
        }
    };
    let cid = format!("outbox-{}", uuid::Uuid::new_v4().simple());
    let result = match Session::start(plugin, &cid).await {
        Ok(mut session) => deliver_batch(store, &mut session, plugin, decl, &rows, &cid).await,
        Err(e) => {
            let outcomes: Vec<(&OutboxRow, OutboxOutcome)> = rows
                .iter()
                .map(|r| (r, later(r, None, &e.to_string())))
                .collect();
            if let Err(e) = record_outcomes(store, &outcomes).await {
                tracing::error!(plugin = %name, "cannot put outbox records back: {e}");
            }
            return false;
        }
    };
    if let Ok(mut s) = shared.lock() {
        s.delivered += result.delivered;
        s.failed += result.failed;
        if let Some(message) = &result.stop {
            let since = humantime::format_rfc3339_seconds(SystemTime::now());
            s.stopped
                .insert(key.clone(), format!("{message} (since {since})"));
            s.last_error = Some(message.clone());
        }
    }
    if result.stop.is_some() {
        stopped_at.insert(key, this_load);
        return false;
    }
    true
}

/// Record how attempts ended, trying again over a few seconds when the store
/// fails for a moment (a deadlock, a failover): an outcome the provider gave is
/// worth keeping, and only the attempt still on record can end, so a second
/// try never records anything twice.
async fn record_outcomes(
    store: &Store,
    ends: &[(&OutboxRow, OutboxOutcome)],
) -> Result<Vec<crate::domain::RecordRef>, crate::store::StoreError> {
    let mut pause = std::time::Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match store.end_outbox(ends).await {
            Ok(records) => return Ok(records),
            Err(e) if e.is_retryable() && tries < 4 => {
                tracing::warn!("recording outbox outcomes failed, trying again: {e}");
                tokio::time::sleep(pause).await;
                pause *= 3;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
