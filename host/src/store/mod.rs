//! Persistence: the rules, written once over a small backend seam.
//!
//! - `backend.rs`: the [`Backend`] and [`Tx`] traits, primitives of one statement or so;
//! - `sqlite/`: the SQLite backend (only SQL): one process, one file; reads on an
//!   sqlx pool, writes on one connection the committer's thread drives (`writer.rs`);
//! - `postgres.rs`: the PostgreSQL backend (only SQL): several processes, one database;
//! - `rules.rs`: what Portico means by applying an item, a send, an outbox outcome;
//! - `types.rs`: statuses as enums, time as a type.
//!
//! Invariants the rest of the host relies on:
//! - a delivery row is committed before the HTTP handler answers 2xx;
//! - an item's domain writes and its event status change commit in one transaction,
//!   so an item is either fully applied and `processed`, or not applied at all;
//! - every write of a domain row is idempotent (unique keys), so a replayed or
//!   re-delivered item never creates a second row;
//! - whatever calls a provider is an outbox record committed before the call, and
//!   an attempt is committed as `delivering` before the provider hears of it;
//! - a write is on disk when it returns, except a [`Durability::Deferred`] one (an
//!   item's split and outcome after its delivery was stored), which the next
//!   synced commit that writes flushes: every lease before an outbox delivery is
//!   such a commit, so no send or upload rests on a write that a crash of the
//!   machine (or of the PostgreSQL server) could undo.

pub mod backend;
mod batch;
#[cfg(test)]
mod contract;
mod postgres;
mod rows;
mod rules;
mod sqlite;
pub mod types;

pub use backend::{Durability, EventFilter, EventRow, OutboxRow, SourceRow};
pub use rules::{
    Applied, DlqStats, FailState, ItemContext, ItemSlot, MAY_HAVE_BEEN_ACCEPTED, NewDelivery,
    OutboxBacklogView, OutboxOutcome, StoredCredentials,
};
pub use types::Timestamp;

use backend::Backend;
use std::sync::Arc;

/// Errors of the store, with what the operator or caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// From SQLite's write connection (`store::sqlite::writer`).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("cannot start the store's writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the write was not committed: {0}")]
    Batch(String),
    #[error("the store's writer has stopped")]
    Closed,
    #[error("the database did not answer within {0:?}")]
    Slow(std::time::Duration),
    #[error("the database holds a value this version cannot read: {0}")]
    Corrupt(String),
    #[error(
        "unsupported DATABASE_URL scheme {0:?}: use sqlite://FILE (created if missing, e.g. sqlite://portico.db) or postgres://USER:PASSWORD@HOST:PORT/DB"
    )]
    UnsupportedUrl(String),
    #[error("DATABASE_URL: {0}")]
    BadUrl(String),
    #[error(
        "event {event_id} is held by another process now (this attempt's lease ran out): its outcome is left to that process"
    )]
    LeaseLost { event_id: i64 },
    #[error(
        "no tenant is mapped to {kind} key {key:?}: add one with `portico source add --tenant ID --kind {kind} --key {key}`"
    )]
    UnknownTenant { kind: String, key: String },
    #[error("the adapter gave no tenant for this item, and its operations need one")]
    MissingTenant,
    #[error(
        "the adapter named a contact with neither a phone nor a user id: a contact needs one of them"
    )]
    NoContactIdentity,
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
        matches!(
            self,
            StoreError::Db(_)
                | StoreError::Sqlite(_)
                | StoreError::Batch(_)
                | StoreError::Closed
                | StoreError::Slow(_)
                | StoreError::UnknownTenant { .. }
        )
    }

    /// The error as a caller may read it: the database's own words (which
    /// may name tables, hosts or files) stay in the logs and the DLQ.
    pub fn public(&self) -> String {
        match self {
            StoreError::Db(_)
            | StoreError::Sqlite(_)
            | StoreError::WriterThread(_)
            | StoreError::Migrate(_)
            | StoreError::Batch(_)
            | StoreError::Closed
            | StoreError::Slow(_)
            | StoreError::Corrupt(_)
            | StoreError::BadUrl(_) => {
                "the database could not take the request now; retry later".into()
            }
            other => other.to_string(),
        }
    }
}

/// `read`, or [`StoreError::Slow`] after `limit`: for figures (health,
/// metrics) that must answer quickly even when the database does not.
pub async fn within<T>(
    limit: std::time::Duration,
    read: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(StoreError::Slow(limit)))
}

/// How long health and metrics wait on the database for their figures.
pub const FIGURES_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Lower-case hex sha256 of a payload.
pub fn payload_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The database behind Portico: its rules over one backend.
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Backend>,
    /// Every write goes through it (group commit).
    writer: Arc<batch::GroupCommit>,
    /// Sources as the adapters' directory reads them, for a moment.
    sources: Arc<SourceCache>,
}

/// How long a source read for the directory is reused. Changes made through
/// this process are seen at once (the cache is dropped); through another
/// process (the CLI, another server), within this time.
pub const SOURCE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Sources read recently, by (kind, key): the directory is asked on every item
/// (a page's token for each lead), and the answer rarely changes.
#[derive(Default)]
struct SourceCache {
    entries: std::sync::Mutex<std::collections::HashMap<SourceId, CachedSource>>,
}

/// A source's (kind, key).
type SourceId = (String, String);
/// When a source was read, and what was found.
type CachedSource = (std::time::Instant, Option<SourceRow>);

/// Most entries kept; past that the cache starts afresh (an adapter may ask for any key).
const SOURCE_CACHE_ENTRIES: usize = 10_000;

impl SourceCache {
    fn get(&self, kind: &str, key: &str) -> Option<Option<SourceRow>> {
        let entries = self.entries.lock().ok()?;
        let (at, row) = entries.get(&(kind.to_string(), key.to_string()))?;
        (at.elapsed() < SOURCE_CACHE_TTL).then(|| row.clone())
    }

    fn put(&self, kind: &str, key: &str, row: Option<SourceRow>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= SOURCE_CACHE_ENTRIES {
                entries.clear();
            }
            entries.insert(
                (kind.to_string(), key.to_string()),
                (std::time::Instant::now(), row),
            );
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open the database a URL names (creating a SQLite file when missing) and migrate it.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let db: Arc<dyn Backend> = if url.starts_with("sqlite:") {
            Arc::new(sqlite::SqliteBackend::connect(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(postgres::PostgresBackend::connect(url).await?)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(StoreError::UnsupportedUrl(scheme.to_string()));
        };
        let writer = Arc::new(batch::GroupCommit::start(db.clone(), db.writers())?);
        let store = Store {
            db,
            writer,
            sources: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    /// The key `tenant_id` mapped for `kind`, if any (the adapters' directory).
    pub async fn source_key(
        &self,
        tenant_id: i64,
        kind: &str,
    ) -> Result<Option<String>, StoreError> {
        self.db.source_key(tenant_id, kind).await
    }

    /// The first `limit` sources of `kind`, oldest first: (tenant id, key).
    pub async fn sources_of_kind(
        &self,
        kind: &str,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.db.sources_of_kind(kind, limit).await
    }

    /// Every source, or one tenant's.
    pub async fn sources(&self, tenant_id: Option<i64>) -> Result<Vec<SourceRow>, StoreError> {
        self.db.sources(tenant_id).await
    }

    /// The source `kind` + `key`.
    pub async fn source(&self, kind: &str, key: &str) -> Result<Option<SourceRow>, StoreError> {
        self.db.source(kind, key).await
    }

    /// The source `kind` + `key` as the adapters' directory reads it: reused
    /// for [`SOURCE_CACHE_TTL`], dropped at once when this process changes a source.
    pub async fn source_for_directory(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<SourceRow>, StoreError> {
        if let Some(row) = self.sources.get(kind, key) {
            return Ok(row);
        }
        let row = self.db.source(kind, key).await?;
        self.sources.put(kind, key, row.clone());
        Ok(row)
    }

    /// Forget the sources read for the directory (after a change here).
    pub(crate) fn sources_changed(&self) {
        self.sources.clear();
    }

    /// Every tenant, oldest first: (id, name, created at).
    pub async fn tenants(&self) -> Result<Vec<(i64, String, Timestamp)>, StoreError> {
        self.db.tenants().await
    }

    /// Events matching `filter`, oldest first.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        self.db.events(filter).await
    }

    pub async fn get_event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
        self.db.event(id).await
    }

    /// Drop this process's own leases (at a clean stop): its unfinished work is
    /// taken over by the other processes now, not when the leases expire. An
    /// attempt still running here then cannot record anything over theirs
    /// (see `Tx::free_for`).
    pub async fn release_own_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let owner: Arc<str> = owner.into();
        self.writer
            .write(move |tx| {
                let owner = owner.clone();
                Box::pin(async move { tx.release_leases(Some(&owner)).await })
            })
            .await
    }

    /// Whether this process is the only one on its database (see
    /// [`Backend::single_process`]).
    pub fn single_process(&self) -> bool {
        self.db.single_process()
    }

    /// Drop every lease: at start-up of the one process that owns a SQLite file,
    /// nothing can still be working on an event or an outbox record. Never on a
    /// shared database: there a lease may be a live process's, and an expired
    /// one is taken over by the claims anyway.
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        if !self.single_process() {
            return Ok(0);
        }
        self.writer
            .write(|tx| Box::pin(async move { tx.release_leases(None).await }))
            .await
    }
}
