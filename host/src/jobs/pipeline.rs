//! The ingest pipeline: a delivery is acknowledged as soon as it is on disk, and
//! processed right after the answer, in process, on the instance that verified
//! it (parse, split, map, apply: one instance for all of its phases). Outbound
//! calls an item needs (Graph lead retrieval) therefore never hold a webhook's
//! answer, and the pipeline's writes share commits with everything else in
//! flight (group commit in the store).
//!
//! Bounded: at most `slots` deliveries are processed at once. A delivery that
//! finds no slot is handed to the retry worker at once (its lease is ended), so
//! overload never drops work and never holds an answer: it only waits in the
//! durable queue.
//!
//! What became of recent deliveries is kept in memory for the admin API
//! (`GET /api/admin/deliveries/{id}`); older ones are read from the store.

use super::ingest::{self, DeliveryReport, Pass};
use crate::runtime::session::AdapterRequest;
use crate::runtime::{LoadedPlugin, Session};
use crate::store::{Durability, Store};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Reports kept in memory.
const RECENT_REPORTS: usize = 10_000;

#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    owner: String,
    lease: Duration,
    slots: Arc<Semaphore>,
    recent: Mutex<Recent>,
    /// Deliveries handed over since the last warning, and when that was: under
    /// a sustained overload one line every few seconds, not one per delivery.
    overflow: Mutex<(u64, Option<std::time::Instant>)>,
}

/// At most one "pipeline full" warning this often.
const OVERFLOW_WARN_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Recent {
    order: VecDeque<i64>,
    reports: HashMap<i64, DeliveryReport>,
    /// Deliveries being processed here now.
    running: HashSet<i64>,
}

/// A stored delivery, with the instance that verified it.
pub struct StoredDelivery {
    pub plugin: Arc<LoadedPlugin>,
    pub session: Session,
    pub correlation_id: String,
    pub event_id: i64,
    pub request: AdapterRequest,
}

impl Pipeline {
    pub fn new(store: Store, owner: String, lease: Duration, slots: usize) -> Pipeline {
        Pipeline {
            inner: Arc::new(Inner {
                store,
                owner,
                lease,
                slots: Arc::new(Semaphore::new(slots.max(1))),
                recent: Mutex::new(Recent::default()),
                overflow: Mutex::new((0, None)),
            }),
        }
    }

    /// Process a stored delivery after the answer; never waits.
    ///
    /// With every slot busy the delivery is left, leased to no one, to the
    /// retry workers (of any process on the database).
    pub fn submit(&self, delivery: StoredDelivery) {
        let inner = self.inner.clone();
        let Ok(permit) = inner.slots.clone().try_acquire_owned() else {
            let event_id = delivery.event_id;
            tracing::debug!(
                correlation_id = %delivery.correlation_id,
                event_id,
                "ingest pipeline full: the delivery waits for the retry worker"
            );
            inner.note_overflow();
            drop(delivery);
            tokio::spawn(async move {
                if let Err(e) = inner.store.hand_over(event_id).await {
                    // Its lease runs out by itself; the worker takes it then.
                    tracing::warn!(event_id, "cannot hand the delivery over now: {e}");
                }
            });
            return;
        };
        let pipeline = self.clone();
        pipeline.begin(delivery.event_id);
        // The request's span has ended with its answer: the processing gets its own.
        let span = tracing::info_span!(
            "delivery",
            correlation_id = %delivery.correlation_id,
            plugin = %delivery.plugin.spec.name,
            event_id = delivery.event_id
        );
        let work = async move {
            let StoredDelivery {
                plugin,
                mut session,
                correlation_id,
                event_id,
                request,
            } = delivery;
            let pass = Pass {
                store: &inner.store,
                plugin: &plugin,
                correlation_id: &correlation_id,
                owner: &inner.owner,
                lease: inner.lease,
                // The delivery is on disk and leased: its items' writes are
                // done again from it if a machine crash undoes them.
                durability: Durability::Deferred,
            };
            let report = ingest::process_delivery(pass, &mut session, event_id, 0, &request).await;
            drop(session);
            drop(permit);
            pipeline.record(report);
        };
        tokio::spawn(work.instrument(span));
    }

    /// A delivery is being processed here (by the pipeline or the retry worker).
    pub fn begin(&self, event_id: i64) {
        if let Ok(mut recent) = self.inner.recent.lock() {
            recent.running.insert(event_id);
        }
    }

    /// Whether a delivery is being processed here now.
    pub fn is_running(&self, event_id: i64) -> bool {
        self.inner
            .recent
            .lock()
            .is_ok_and(|r| r.running.contains(&event_id))
    }

    /// A delivery is no longer being processed here, with nothing to report.
    pub fn forget(&self, event_id: i64) {
        if let Ok(mut recent) = self.inner.recent.lock() {
            recent.running.remove(&event_id);
        }
    }

    /// Keep what became of a delivery for the admin API.
    pub fn record(&self, report: DeliveryReport) {
        let Ok(mut recent) = self.inner.recent.lock() else {
            return;
        };
        let id = report.event_id;
        recent.running.remove(&id);
        if recent.reports.insert(id, report).is_none() {
            recent.order.push_back(id);
        }
        while recent.order.len() > RECENT_REPORTS {
            if let Some(old) = recent.order.pop_front() {
                recent.reports.remove(&old);
            }
        }
    }

    /// What became of a recent delivery, if it is known here.
    pub fn report(&self, event_id: i64) -> Option<DeliveryReport> {
        self.inner
            .recent
            .lock()
            .ok()
            .and_then(|r| r.reports.get(&event_id).cloned())
    }
}

impl Inner {
    /// Count a delivery handed over; warn with the count at most every few seconds.
    fn note_overflow(&self) {
        let Ok(mut overflow) = self.overflow.lock() else {
            return;
        };
        overflow.0 += 1;
        let now = std::time::Instant::now();
        if overflow
            .1
            .is_none_or(|last| now.duration_since(last) >= OVERFLOW_WARN_EVERY)
        {
            tracing::warn!(
                deliveries = overflow.0,
                "ingest pipeline full (PORTICO_INGEST_SLOTS): deliveries stored and left to the retry worker"
            );
            *overflow = (0, Some(now));
        }
    }
}
