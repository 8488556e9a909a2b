//! Persistence. All SQL lives below this module, one sibling file per backend
//! (`sqlite.rs` now; `postgres.rs` joins it behind the same methods).
//!
//! Invariants the rest of the host relies on:
//! - a delivery row is committed before the HTTP handler answers 2xx;
//! - an item's domain writes and its event status change commit in one transaction,
//!   so an item is either fully applied and `processed`, or not applied at all;
//! - every write of a domain row is idempotent (unique keys + ON CONFLICT DO NOTHING),
//!   so a replayed or re-delivered item never creates a second row.

mod sqlite;

use crate::domain::{DomainOp, ParsedItem, TenantRef};
pub use sqlite::SqliteStore;

/// Errors of the store, with what the operator can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "no tenant is mapped to {kind} key {key:?}: add one with `portico source add --tenant ID --kind {kind} --key {key}`"
    )]
    UnknownTenant { kind: String, key: String },
    #[error("the adapter gave no tenant for this item, and its operations need one")]
    MissingTenant,
    #[error("tenant {0} does not exist: create it with `portico tenant add NAME`")]
    TenantNotFound(i64),
    #[error(
        "case {case_id} does not belong to tenant {tenant_id}: leave case_id out to use the contact's open case"
    )]
    CaseNotFound { case_id: i64, tenant_id: i64 },
    #[error("{kind} key {key:?} is already mapped to tenant {tenant_id}")]
    DuplicateSource {
        kind: String,
        key: String,
        tenant_id: i64,
    },
}

impl StoreError {
    /// Whether trying the same work later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Db(_) | StoreError::UnknownTenant { .. })
    }
}

/// A verified delivery, as received.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub source: &'a str,
    pub correlation_id: &'a str,
    pub payload: &'a [u8],
    pub headers_json: String,
    /// Who processes it inline, and for how long the retry worker must keep off.
    pub lease_owner: &'a str,
    pub lease_secs: u64,
}

/// Where an item stands after its delivery was split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemSlot {
    /// First time seen: process it.
    New(i64),
    /// Seen before and not finished (failed, dead or still received): process it again.
    Again { id: i64, attempts: i64 },
    /// Already processed or ignored: nothing to do.
    Duplicate { id: i64, status: String },
}

/// A domain row an item made or found (its idempotency made it the same row).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordRef {
    pub table: &'static str,
    pub id: i64,
    pub status: Option<String>,
    /// The provider's id of the row (a message's wamid), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What applying an item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Processed {
        created: u64,
        records: Vec<RecordRef>,
    },
    Ignored(String),
}

/// Conversions waiting for upload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_pending_age_seconds: Option<f64>,
}

/// The end of one outbox row after a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowEnd {
    Uploaded,
    Failed(String),
    /// Try again after this many seconds.
    Later {
        secs: u64,
        error: String,
    },
}

/// Final states an event can be put in after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailState {
    /// Will be retried at `retry_in_secs`.
    Failed { retry_in_secs: u64 },
    /// Will not be retried without a replay.
    Dead,
}

/// What health says about the DLQ.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DlqStats {
    pub failed: i64,
    pub dead: i64,
    /// Age of the oldest failed event, in seconds.
    pub oldest_failed_age_seconds: Option<f64>,
}

/// A stored event, whole (for replays).
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub source: String,
    /// delivery | item
    pub kind: String,
    pub parent_id: Option<i64>,
    pub correlation_id: String,
    pub payload: Vec<u8>,
    pub headers_json: String,
    pub dedup_key: Option<String>,
    pub item_kind: Option<String>,
    pub tenant: Option<TenantRef>,
    pub status: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl EventRow {
    /// The item this row stands for (item rows only).
    pub fn as_item(&self) -> Option<ParsedItem> {
        Some(ParsedItem {
            dedup_key: self.dedup_key.clone()?,
            tenant: self.tenant.clone(),
            kind: self.item_kind.clone()?,
            payload: self.payload.clone(),
        })
    }
}

/// Which events to list or replay. Empty `statuses` means any status.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub statuses: Vec<String>,
    pub source: Option<String>,
    /// created_at bounds, RFC 3339 (inclusive).
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
}

/// The database behind Portico.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Sqlite(_) => f.write_str("Store::Sqlite"),
        }
    }
}

impl Store {
    /// Open (creating a SQLite file when missing) and migrate.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::Sqlite(SqliteStore::connect(url).await?);
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.migrate().await,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
        }
    }

    pub async fn create_tenant(&self, name: &str) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.create_tenant(name).await,
        }
    }

    /// The key `tenant_id` mapped for `kind`, if any (the adapters' directory).
    pub async fn source_key(
        &self,
        tenant_id: i64,
        kind: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.source_key(tenant_id, kind).await,
        }
    }

    pub async fn add_lead_source(
        &self,
        tenant_id: i64,
        kind: &str,
        key: &str,
    ) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.add_lead_source(tenant_id, kind, key).await,
        }
    }

    /// Store a verified delivery; returns its event id. Must succeed before any 2xx.
    pub async fn insert_delivery(&self, d: &NewDelivery<'_>) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_delivery(d).await,
        }
    }

    /// Record the items of a delivery (deduplicated) and mark the delivery processed, atomically.
    pub async fn split_delivery(
        &self,
        delivery_id: i64,
        source: &str,
        correlation_id: &str,
        items: &[ParsedItem],
    ) -> Result<Vec<ItemSlot>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.split_delivery(delivery_id, source, correlation_id, items)
                    .await
            }
        }
    }

    /// Apply an item's operations and mark its event, in one transaction.
    pub async fn apply_item(
        &self,
        event_id: i64,
        source: &str,
        tenant: Option<&TenantRef>,
        ops: &[DomainOp],
    ) -> Result<Applied, StoreError> {
        match self {
            Store::Sqlite(s) => s.apply_item(event_id, source, tenant, ops).await,
        }
    }

    /// Events matching `filter`, oldest first.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_events(filter).await,
        }
    }

    pub async fn get_event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.get_event(id).await,
        }
    }

    /// Claim up to `limit` due events for `owner` (failed and due, or received with no live lease).
    pub async fn claim_due(
        &self,
        owner: &str,
        lease_secs: u64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_due(owner, lease_secs, limit).await,
        }
    }

    /// Drop every lease: at start-up of the one process that owns a SQLite file,
    /// nothing can still be working on an event.
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.release_leases().await,
        }
    }

    pub async fn dlq_stats(&self) -> Result<DlqStats, StoreError> {
        match self {
            Store::Sqlite(s) => s.dlq_stats().await,
        }
    }

    /// Delete processed and ignored events older than `days`; returns (items, deliveries).
    pub async fn prune(&self, days: u32) -> Result<(u64, u64), StoreError> {
        match self {
            Store::Sqlite(s) => s.prune(days).await,
        }
    }

    /// Up to `limit` conversions of `source` due for upload: (id, JSON payload, attempts).
    pub async fn due_conversions(
        &self,
        source: &str,
        limit: i64,
    ) -> Result<Vec<(i64, Vec<u8>, i64)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.due_conversions(source, limit).await,
        }
    }

    /// Record what became of uploaded rows.
    pub async fn end_conversions(&self, ends: &[(i64, RowEnd)]) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.end_conversions(ends).await,
        }
    }

    pub async fn conversion_backlog(&self) -> Result<Backlog, StoreError> {
        match self {
            Store::Sqlite(s) => s.conversion_backlog().await,
        }
    }

    /// Mark an event failed (to be retried) or dead, with the error that explains why.
    pub async fn fail_event(
        &self,
        event_id: i64,
        state: FailState,
        error: &str,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.fail_event(event_id, state, error).await,
        }
    }
}
