//! The outbox uploader: sends queued records (pending conversions) through the
//! plugin that declared their kind, in batches of at most its `max-batch`.
//!
//! Each row ends by itself from the plugin's answer: uploaded, failed with the
//! provider's code and message, or back to pending with a delay. A batch-wide
//! retry (429, 5xx, timeout) waits what the provider asked (Retry-After) or the
//! retry schedule; a stop (401, 403) parks the uploader for that plugin version,
//! with the error in health, instead of burning every row. A reload of the
//! plugin (new token in its config, say) lifts the stop.

use super::retry::delay_after;
use crate::runtime::session::{BatchError, RowOutcome};
use crate::runtime::{Runtime, Session, SlotState};
use crate::store::{RowEnd, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The outbox kind conversions travel under.
pub const CONVERSION: &str = "conversion";

/// What health shows about the uploader.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UploaderStatus {
    /// Plugin name → why it is stopped (and since when).
    pub stopped: HashMap<String, String>,
    pub uploaded: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// Shared view of the uploader for health.
pub type SharedStatus = Arc<Mutex<UploaderStatus>>;

/// Run the uploader until the process ends.
pub fn spawn(store: Store, runtime: Arc<Runtime>, poll: Duration) -> SharedStatus {
    let status: SharedStatus = Arc::default();
    let shared = status.clone();
    tokio::spawn(async move {
        // Plugin name → sha256 of the version that was told to stop.
        let mut stopped_at: HashMap<String, String> = HashMap::new();
        loop {
            let mut busy = false;
            for slot in &runtime.snapshot().slots {
                let SlotState::Loaded(plugin) = &slot.state else {
                    continue;
                };
                let Some(&(_, max)) = plugin.manifest.outbox.iter().find(|(k, _)| k == CONVERSION)
                else {
                    continue;
                };
                let name = plugin.spec.name.clone();
                if stopped_at.get(&name) == Some(&plugin.sha256) {
                    continue;
                }
                if stopped_at.remove(&name).is_some()
                    && let Ok(mut s) = shared.lock()
                {
                    s.stopped.remove(&name);
                }
                let rows = match store.due_conversions(&name, i64::from(max)).await {
                    Ok(rows) if rows.is_empty() => continue,
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(plugin = %name, "uploader cannot read pending conversions: {e}");
                        continue;
                    }
                };
                busy = true;
                let cid = format!("upload-{}", uuid::Uuid::new_v4().simple());
                let started = std::time::Instant::now();
                let batch: Vec<(i64, Vec<u8>)> =
                    rows.iter().map(|(id, p, _)| (*id, p.clone())).collect();
                let attempts = rows.iter().map(|r| r.2).max().unwrap_or(0);
                let answer = match Session::start(plugin, &cid).await {
                    Ok(mut session) => session.deliver(CONVERSION, &batch).await,
                    Err(e) => Err(e),
                };
                let ends: Vec<(i64, RowEnd)> = match answer {
                    Ok(Ok(outcomes)) => {
                        let mut ends = Vec::with_capacity(batch.len());
                        for (i, (id, _)) in batch.iter().enumerate() {
                            let end = match outcomes.get(i) {
                                Some(RowOutcome::Delivered) => RowEnd::Uploaded,
                                Some(RowOutcome::Rejected { code, message }) => {
                                    RowEnd::Failed(format!("{code}: {message}"))
                                }
                                Some(RowOutcome::Retry(message)) => {
                                    later(attempts, None, message.clone())
                                }
                                None => later(
                                    attempts,
                                    None,
                                    "the plugin returned no outcome for this row".into(),
                                ),
                            };
                            ends.push((*id, end));
                        }
                        ends
                    }
                    Ok(Err(BatchError::Retry {
                        message,
                        after_secs,
                    })) => {
                        tracing::warn!(plugin = %name, correlation_id = %cid, rows = batch.len(), "upload batch deferred: {message}");
                        batch
                            .iter()
                            .map(|(id, _)| (*id, later(attempts, after_secs, message.clone())))
                            .collect()
                    }
                    Ok(Err(BatchError::Stop(message))) => {
                        tracing::error!(plugin = %name, correlation_id = %cid, "uploader stopped until the plugin is fixed and reloaded: {message}");
                        stopped_at.insert(name.clone(), plugin.sha256.clone());
                        if let Ok(mut s) = shared.lock() {
                            let since = humantime::format_rfc3339_seconds(SystemTime::now());
                            s.stopped
                                .insert(name.clone(), format!("{message} (since {since})"));
                            s.last_error = Some(message);
                        }
                        continue;
                    }
                    Err(e) => {
                        let message = e.to_string();
                        tracing::warn!(plugin = %name, correlation_id = %cid, "upload batch failed: {message}");
                        batch
                            .iter()
                            .map(|(id, _)| (*id, later(attempts, None, message.clone())))
                            .collect()
                    }
                };
                let (ok, failed) = ends.iter().fold((0u64, 0u64), |(o, f), (_, e)| match e {
                    RowEnd::Uploaded => (o + 1, f),
                    RowEnd::Failed(_) => (o, f + 1),
                    RowEnd::Later { .. } => (o, f),
                });
                tracing::info!(plugin = %name, correlation_id = %cid, rows = ends.len(), uploaded = ok, failed, ms = started.elapsed().as_millis() as u64, "upload batch done");
                if let Err(e) = store.end_conversions(&ends).await {
                    tracing::error!(plugin = %name, "cannot record upload outcomes (rows stay pending): {e}");
                }
                if let Ok(mut s) = shared.lock() {
                    s.uploaded += ok;
                    s.failed += failed;
                }
            }
            if !busy {
                tokio::time::sleep(poll).await;
            }
        }
    });
    status
}

/// Back to pending: after what the provider asked, else the retry schedule.
fn later(attempts: i64, after_secs: Option<u32>, error: String) -> RowEnd {
    let n = u32::try_from(attempts.max(0) + 1).unwrap_or(u32::MAX);
    let secs = after_secs
        .map(u64::from)
        .or_else(|| delay_after(n))
        .unwrap_or(86_400);
    RowEnd::Later { secs, error }
}
