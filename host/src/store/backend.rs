//! The seam between the store's rules and a database: small primitives, each
//! one statement or close to it. Rules (tenant resolution, case joining,
//! idempotent writes, statuses that never move backwards, outbox leases) live
//! above this in `store::rules`, written once; a backend only speaks its SQL.
//!
//! Every write happens inside a [`Tx`], a write transaction: a backend must
//! make it serialisable with respect to other writers of the same rows
//! (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: row locks and unique constraints).
//! Reads and single-statement claims run on the backend directly.

use super::StoreError;
pub use super::batch::Durability;
use super::types::{
    ConversionStatus, Direction, EventKind, EventStatus, MessageStatus, OutboxStatus, RecordKind,
    Timestamp,
};
use crate::domain::{ContactRef, NewConversion, NewLead, TenantRef};

pub type Result<T> = std::result::Result<T, StoreError>;

/// A lease: who holds a row, and until when.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub until: Timestamp,
}

/// A webhook event to insert (a delivery, or one of its items).
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub source: &'a str,
    pub kind: EventKind,
    pub parent_id: Option<i64>,
    pub correlation_id: &'a str,
    pub payload_hash: &'a str,
    pub payload: &'a [u8],
    pub headers_json: &'a str,
    pub dedup_key: Option<&'a str>,
    pub item_kind: Option<&'a str>,
    pub tenant: Option<&'a TenantRef>,
    pub lease: Option<Lease<'a>>,
    pub now: Timestamp,
}

/// An event's state, as a re-delivery or a claim needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventState {
    pub id: i64,
    pub status: EventStatus,
    pub attempts: i64,
    pub claimed_by: Option<String>,
    pub lease_until: Option<Timestamp>,
}

/// How an attempt at an event ended: counts one attempt and drops the lease.
#[derive(Debug, Clone)]
pub struct EventEnd<'a> {
    pub status: EventStatus,
    pub error: Option<&'a str>,
    pub next_attempt_at: Option<Timestamp>,
    pub now: Timestamp,
}

/// A stored event, whole (for listings and replays).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub source: String,
    pub kind: EventKind,
    pub parent_id: Option<i64>,
    pub correlation_id: String,
    #[serde(skip)]
    pub payload: Vec<u8>,
    pub headers_json: String,
    pub dedup_key: Option<String>,
    pub item_kind: Option<String>,
    #[serde(skip)]
    pub tenant: Option<TenantRef>,
    pub status: EventStatus,
    pub error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl EventRow {
    /// The item this row stands for (item rows only).
    pub fn as_item(&self) -> Option<crate::domain::ParsedItem> {
        Some(crate::domain::ParsedItem {
            dedup_key: self.dedup_key.clone()?,
            tenant: self.tenant.clone(),
            kind: self.item_kind.clone()?,
            payload: self.payload.clone(),
        })
    }
}

/// Which events to list. Empty `statuses` means any status.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub statuses: Vec<EventStatus>,
    pub source: Option<String>,
    /// created_at bounds (inclusive).
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only the items of this delivery.
    pub parent_id: Option<i64>,
    /// Only deliveries, or only items.
    pub kind: Option<EventKind>,
    /// Only events after this id (a page's cursor).
    pub after_id: Option<i64>,
    /// Newest first (else oldest first).
    pub newest_first: bool,
    /// 0: no limit.
    pub limit: i64,
}

/// The id bound a filter's page starts from: its cursor, else no bound at all.
pub fn cursor_bound(f: &EventFilter) -> i64 {
    match (f.after_id, f.newest_first) {
        (Some(id), _) => id,
        (None, true) => i64::MAX,
        (None, false) => i64::MIN,
    }
}

/// Counts behind the DLQ block of health.
#[derive(Debug, Clone, Default)]
pub struct EventCounts {
    pub failed: i64,
    pub dead: i64,
    pub oldest_failed: Option<Timestamp>,
}

/// The identifier a contact is found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKey {
    Phone,
    /// The provider's user id for this business (WhatsApp's business-scoped user id).
    UserId,
}

/// A message row to insert.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub tenant_id: i64,
    pub contact_id: i64,
    pub case_id: i64,
    pub channel: &'a str,
    pub direction: Direction,
    pub external_id: Option<&'a str>,
    pub from_addr: Option<&'a str>,
    pub to_addr: Option<&'a str>,
    pub kind: &'a str,
    pub body: &'a str,
    pub media_id: Option<&'a str>,
    pub status: MessageStatus,
    pub provider_timestamp: Option<i64>,
    pub reply_to: Option<&'a str>,
    pub now: Timestamp,
}

/// What a status update or a send needs to know of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    pub id: i64,
    pub status: MessageStatus,
    pub external_id: Option<String>,
    pub error: Option<String>,
}

/// A conversion row to insert.
#[derive(Debug, Clone)]
pub struct NewConversionRow<'a> {
    pub tenant_id: Option<i64>,
    pub conversion: &'a NewConversion,
    pub status: ConversionStatus,
    /// The plugin that recorded it (and uploads it).
    pub source: &'a str,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionState {
    pub id: i64,
    pub status: ConversionStatus,
    pub error: Option<String>,
}

/// An outbox record to insert.
#[derive(Debug, Clone)]
pub struct NewOutbox<'a> {
    pub source: &'a str,
    pub kind: &'a str,
    pub idempotency_key: &'a str,
    pub record_kind: RecordKind,
    pub record_id: i64,
    pub tenant_id: Option<i64>,
    pub payload: &'a [u8],
    /// Held by the process that will deliver it at once (immediate kinds).
    pub lease: Option<Lease<'a>>,
    pub now: Timestamp,
}

/// An outbox record as a delivery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub record_kind: RecordKind,
    pub record_id: i64,
    pub payload: Vec<u8>,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub claimed_by: Option<String>,
    pub lease_until: Option<Timestamp>,
}

/// How an outbox record's attempt ended; drops its lease.
#[derive(Debug, Clone)]
pub struct OutboxEnd<'a> {
    pub status: OutboxStatus,
    pub error: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub next_attempt_at: Option<Timestamp>,
    /// The attempt this end closes does not count (the provider asked to wait).
    pub uncount_attempt: bool,
    pub now: Timestamp,
}

/// Records waiting in the outbox, by plugin and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBacklog {
    pub source: String,
    pub kind: String,
    pub pending: i64,
    pub oldest: Option<Timestamp>,
}

/// A lead source as stored: its settings in clear, its secrets' names in
/// clear and their values sealed (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    pub id: i64,
    pub tenant_id: i64,
    pub kind: String,
    pub external_key: String,
    /// A JSON object of strings.
    pub settings_json: String,
    /// A JSON array of names.
    pub secret_names: String,
    pub secrets_sealed: Option<Vec<u8>>,
    pub created_at: Timestamp,
}

/// A source's settings and sealed secrets, as written.
#[derive(Debug, Clone, Copy)]
pub struct SourceCredentials<'a> {
    pub settings_json: &'a str,
    pub secret_names: &'a str,
    pub secrets_sealed: Option<&'a [u8]>,
}

/// A database behind Portico.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Apply the migrations of this dialect.
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    /// How many write transactions may run at once (group committers): SQLite
    /// has one writer; a server database takes several.
    fn writers(&self) -> usize {
        1
    }
    /// Whether a write transaction's calls block the thread that makes them
    /// (SQLite's writer, which calls into SQLite directly): its committers
    /// then run on threads of their own, off the async runtime.
    fn writes_block(&self) -> bool {
        false
    }
    /// Whether one process owns the database, so that leases found at its
    /// start can only be a dead process's (SQLite); false where several
    /// processes share it and a lease may be a live neighbour's (PostgreSQL).
    fn single_process(&self) -> bool {
        true
    }
    /// A write transaction whose commit waits for the disk, or not
    /// ([`Durability::Deferred`]: SQLite's synchronous=NORMAL, PostgreSQL's
    /// `synchronous_commit = off`, for this transaction only).
    async fn begin(&self, durability: Durability) -> Result<Box<dyn Tx>>;

    // Reads.
    async fn source_key(&self, tenant_id: i64, kind: &str) -> Result<Option<String>>;
    /// Every source, or one tenant's, in the order they were added.
    async fn sources(&self, tenant_id: Option<i64>) -> Result<Vec<SourceRow>>;
    /// The first `limit` sources of `kind`, oldest first: (tenant id, key).
    async fn sources_of_kind(&self, kind: &str, limit: u32) -> Result<Vec<(i64, String)>>;
    /// The source `kind` + `key`.
    async fn source(&self, kind: &str, key: &str) -> Result<Option<SourceRow>>;
    async fn event(&self, id: i64) -> Result<Option<EventRow>>;
    /// Oldest first.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>>;
    /// Every tenant, oldest first: (id, name, created at).
    async fn tenants(&self) -> Result<Vec<(i64, String, Timestamp)>>;
    async fn event_counts(&self) -> Result<EventCounts>;
    async fn outbox_backlog(&self) -> Result<Vec<OutboxBacklog>>;

    // Sweeps (reads).
    /// Records of one plugin's kind left `delivering` with an expired (or dropped) lease:
    /// attempts cut off by a dead process.
    async fn cut_off_outbox(
        &self,
        source: &str,
        kind: &str,
        now: Timestamp,
    ) -> Result<Vec<OutboxRow>>;
}

/// Primitives inside one write transaction. Dropping it without `commit` rolls back.
#[async_trait::async_trait]
pub trait Tx: Send {
    async fn commit(self: Box<Self>) -> Result<()>;

    // Claims and lease sweeps: writes, so they go through the committer like
    // every other write (no second writer contending for the lock).
    /// Lease up to `limit` events that are due: failed with next_attempt_at passed,
    /// or received; in both cases with no live lease.
    async fn claim_events(
        &mut self,
        lease: Lease<'_>,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<i64>>;
    /// Drop the leases of events and outbox records: all of them (`None`), or
    /// one owner's. A `delivering` record keeps its status: its attempt was cut off.
    async fn release_leases(&mut self, owner: Option<&str>) -> Result<u64>;
    /// Delete finished events last updated before `before`: (items, deliveries).
    async fn prune_events(&mut self, before: Timestamp) -> Result<(u64, u64)>;
    /// Lease up to `limit` pending, due, unleased records of one plugin's kind and
    /// mark them `delivering` (an attempt starts), in one statement.
    async fn claim_outbox(
        &mut self,
        source: &str,
        kind: &str,
        lease: Lease<'_>,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<OutboxRow>>;
    // Tenants and sources.
    async fn insert_tenant(&mut self, name: &str, now: Timestamp) -> Result<i64>;
    async fn tenant_exists(&mut self, id: i64) -> Result<bool>;
    /// The tenant lead_sources maps `kind` + `key` to.
    async fn source_tenant(&mut self, kind: &str, key: &str) -> Result<Option<i64>>;
    async fn insert_source(
        &mut self,
        tenant_id: i64,
        kind: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<i64>;
    /// Replace a source's settings and secrets, if they are still `expected`
    /// (when given: a compare-and-swap, so two concurrent changes cannot
    /// lose one); false when there is no such source or it changed meanwhile.
    async fn set_source_credentials(
        &mut self,
        id: i64,
        credentials: &SourceCredentials<'_>,
        expected: Option<&SourceCredentials<'_>>,
    ) -> Result<bool>;

    // Events.
    /// Insert an event; `None` when an item's (source, dedup_key) exists already.
    async fn insert_event(&mut self, event: &NewEvent<'_>) -> Result<Option<i64>>;
    async fn item_event(&mut self, source: &str, dedup_key: &str) -> Result<Option<EventState>>;
    /// Whether `owner` may finish the attempt of event `id` that started after
    /// `attempts` recorded attempts: no attempt was recorded since (the count
    /// is the fencing token: another process may have taken the event over and
    /// finished it), and no other owner holds a live lease on it. Locks the row
    /// where the backend has row locks.
    async fn free_for(
        &mut self,
        id: i64,
        owner: &str,
        attempts: i64,
        now: Timestamp,
    ) -> Result<bool>;
    async fn lease_event(&mut self, id: i64, lease: Lease<'_>) -> Result<()>;
    async fn end_event(&mut self, id: i64, end: &EventEnd<'_>) -> Result<()>;

    // Leads.
    /// Insert a lead; false when (tenant, source, external id) exists already.
    async fn insert_lead(&mut self, tenant_id: i64, lead: &NewLead, now: Timestamp)
    -> Result<bool>;

    // Contacts and cases.
    /// The tenant's contact with this phone (or user id), created when
    /// missing; a new name replaces the old. On PostgreSQL it holds the
    /// contact's row lock, so a second process waits and joins the same case.
    async fn upsert_contact(
        &mut self,
        tenant_id: i64,
        key: ContactKey,
        value: &str,
        name: Option<&str>,
        now: Timestamp,
    ) -> Result<i64>;
    /// The tenant's contact with this phone (or user id), locked for the
    /// transaction on PostgreSQL.
    async fn contact_by(
        &mut self,
        tenant_id: i64,
        key: ContactKey,
        value: &str,
    ) -> Result<Option<i64>>;
    /// Take the identifiers `who` gives (each given one replaces the stored one).
    async fn set_contact_identity(&mut self, contact_id: i64, who: &ContactRef) -> Result<()>;
    /// Move `gone`'s cases and messages to `keep` (its open cases closed
    /// when `keep` has one: one person, one open case; no case is deleted),
    /// delete `gone`, and keep what `keep` lacked of its identity.
    async fn merge_contact(&mut self, keep: i64, gone: i64) -> Result<()>;
    /// A contact's identifiers.
    async fn contact_identity(&mut self, contact_id: i64) -> Result<Option<ContactRef>>;
    /// Take an identifier away from a contact (it now belongs to someone else).
    async fn release_contact_key(&mut self, contact_id: i64, key: ContactKey) -> Result<()>;
    /// Hold the tenant's contact identifiers `keys` until the transaction
    /// ends, so another process cannot create them meanwhile (PostgreSQL;
    /// SQLite has one writer).
    async fn lock_contact_keys(
        &mut self,
        tenant_id: i64,
        keys: &[(ContactKey, &str)],
    ) -> Result<()>;
    async fn case_of_tenant(&mut self, case_id: i64, tenant_id: i64) -> Result<bool>;
    /// The contact's newest open case.
    async fn open_case(&mut self, tenant_id: i64, contact_id: i64) -> Result<Option<i64>>;
    async fn insert_case(&mut self, tenant_id: i64, contact_id: i64, now: Timestamp)
    -> Result<i64>;

    // Messages.
    /// Insert a message; `None` when (tenant, channel, external id) exists already.
    async fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<Option<i64>>;
    /// A tenant's message (either direction) by its provider id.
    async fn message_by_external_id(
        &mut self,
        tenant_id: i64,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<i64>>;
    /// An edit (new body, `edited_at`; an older edit than the last applied
    /// changes nothing) or a revoke (`deleted_at`, the first one kept) of a message.
    async fn change_message(
        &mut self,
        id: i64,
        edited: Option<(&str, Timestamp)>,
        deleted_at: Option<Timestamp>,
    ) -> Result<()>;
    /// A tenant's outbound message by its provider id.
    async fn outbound_message(
        &mut self,
        tenant_id: i64,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<MessageState>>;
    async fn message(&mut self, id: i64) -> Result<Option<MessageState>>;
    async fn set_message(
        &mut self,
        id: i64,
        status: MessageStatus,
        external_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()>;

    // Conversions.
    /// Insert a conversion; `None` when its idempotency key exists already.
    async fn insert_conversion(&mut self, c: &NewConversionRow<'_>) -> Result<Option<i64>>;
    async fn conversion_by_key(&mut self, key: &str) -> Result<Option<ConversionState>>;
    async fn conversion(&mut self, id: i64) -> Result<Option<ConversionState>>;
    /// Record an upload attempt's end (counts an attempt).
    async fn set_conversion(
        &mut self,
        id: i64,
        status: ConversionStatus,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<()>;

    // Outbox.
    async fn insert_outbox(&mut self, row: &NewOutbox<'_>) -> Result<i64>;
    async fn outbox_by_key(
        &mut self,
        source: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<OutboxRow>>;
    async fn outbox_row(&mut self, id: i64) -> Result<Option<OutboxRow>>;
    /// Start an attempt: `delivering`, leased, attempts + 1.
    async fn start_outbox(&mut self, id: i64, lease: Lease<'_>) -> Result<()>;
    async fn end_outbox(&mut self, id: i64, end: &OutboxEnd<'_>) -> Result<()>;
}
