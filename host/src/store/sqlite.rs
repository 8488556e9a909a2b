//! SQLite backend: one file in WAL mode, synchronous=FULL so a committed
//! delivery survives a power cut, a busy timeout so writers queue instead of
//! failing. Only SQL lives here; the rules are in `store::rules`.
//!
//! Times are stored as RFC 3339 UTC text with milliseconds (the format of the
//! schema's `strftime` defaults), so text order is time order.

use super::StoreError;
use super::backend::{
    Backend, ContactKey, ConversionState, Durability, EventCounts, EventEnd, EventFilter, EventRow,
    EventState, Lease, MessageState, NewConversionRow, NewEvent, NewMessage, NewOutbox,
    OutboxBacklog, OutboxEnd, OutboxRow, Result, SourceCredentials, SourceRow, Tx, cursor_bound,
};
use super::types::Timestamp;
use crate::domain::{ContactRef, NewLead};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, Row, Sqlite, Transaction, Type};
use std::str::FromStr;
use std::time::Duration;

/// Write transactions take SQLite's write lock up front. A deferred transaction
/// that reads and then writes fails at once with SQLITE_BUSY (no busy wait) when
/// another writer committed in between; an immediate one waits its turn.
///
/// The sync level is set on every begin, in the same call to SQLite (it cannot
/// change inside a transaction), so the writer is never left in NORMAL for a
/// write that must be synced, whatever ran on it before.
const BEGIN_SYNCED: &str = "PRAGMA synchronous = FULL; BEGIN IMMEDIATE";
/// A [`Durability::Deferred`] write: committed without waiting for the disk;
/// the next FULL commit (or checkpoint) flushes it with its own, since both
/// are in the one write-ahead log.
const BEGIN_DEFERRED: &str = "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE";

/// The columns of an [`EventRow`], in one place (a literal: sqlx takes static SQL only).
macro_rules! event_columns {
    () => {
        "id, source, kind, parent_id, correlation_id, payload, headers_json, dedup_key, item_kind,
         tenant_kind, tenant_key, status, error, attempts, next_attempt_at, created_at, updated_at"
    };
}

/// The columns of an [`OutboxRow`].
macro_rules! outbox_columns {
    () => {
        "id, source, kind, record_kind, record_id, payload, status, attempts, claimed_by, lease_until"
    };
}

pub struct SqliteBackend {
    /// Reads (and migrations).
    pool: SqlitePool,
    /// The one connection every write transaction runs on (the committer runs
    /// one at a time). One connection keeps its page cache warm: SQLite drops
    /// a connection's whole cache when another connection wrote since its last
    /// transaction, and writes spread over the pool's connections paid for it
    /// with a read of every page they touched.
    writer: SqlitePool,
}

impl SqliteBackend {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // No check before each acquire: a connection to a file cannot have
        // dropped, and the check is one more round trip to SQLite's worker
        // thread per transaction and per read (sqlx still pings on release).
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteBackend { pool, writer })
    }
}

fn ts(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn opt_ts(t: Option<Timestamp>) -> Option<String> {
    t.map(ts)
}

super::rows::row_readers!(SqliteRow);

/// The columns `source_row` reads.
macro_rules! source_columns {
    () => {
        "id, tenant_id, kind, external_key, settings_json, secret_names, secrets_sealed, created_at"
    };
}

/// Times are RFC 3339 text with milliseconds: text order is time order.
impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(
        &self,
        args: &mut SqliteArgumentsBuffer,
    ) -> std::result::Result<IsNull, BoxDynError> {
        <String as Encode<'_, Sqlite>>::encode(self.to_rfc3339(), args)
    }
}

impl Decode<'_, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'_>) -> std::result::Result<Self, BoxDynError> {
        let text = <String as Decode<'_, Sqlite>>::decode(value)?;
        Ok(Timestamp::parse(&text)?)
    }
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self, durability: Durability) -> Result<Box<dyn Tx>> {
        let begin = match durability {
            Durability::Synced => BEGIN_SYNCED,
            Durability::Deferred => BEGIN_DEFERRED,
        };
        let tx = self.writer.begin_with(begin).await?;
        Ok(Box::new(SqliteTx { tx }))
    }

    async fn source_key(&self, tenant_id: i64, kind: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT external_key FROM lead_sources WHERE tenant_id = ? AND kind = ? ORDER BY id LIMIT 1",
        )
        .bind(tenant_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn sources_of_kind(&self, kind: &str, limit: u32) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT tenant_id, external_key FROM lead_sources WHERE kind = ? ORDER BY id LIMIT ?",
        )
        .bind(kind)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn sources(&self, tenant_id: Option<i64>) -> Result<Vec<SourceRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            source_columns!(),
            " FROM lead_sources WHERE (?1 IS NULL OR tenant_id = ?1) ORDER BY id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(source_row).collect()
    }

    async fn source(&self, kind: &str, key: &str) -> Result<Option<SourceRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            source_columns!(),
            " FROM lead_sources WHERE kind = ? AND external_key = ?"
        ))
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(source_row).transpose()
    }

    async fn event(&self, id: i64) -> Result<Option<EventRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM webhook_events WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(event_row).transpose()
    }

    async fn events(&self, f: &EventFilter) -> Result<Vec<EventRow>> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let statuses = serde_json::Value::from(statuses).to_string();
        macro_rules! select_events {
            ($bound:literal, $order:literal) => {
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM webhook_events
                     WHERE (json_array_length(?1) = 0 OR status IN (SELECT value FROM json_each(?1)))
                       AND (?2 IS NULL OR source = ?2)
                       AND (?3 IS NULL OR created_at >= ?3)
                       AND (?4 IS NULL OR created_at <= ?4)
                       AND (?6 IS NULL OR parent_id = ?6)
                       AND (?7 IS NULL OR kind = ?7)
                       AND id ",
                    $bound,
                    " ?8
                     ORDER BY ",
                    $order,
                    " LIMIT ?5"
                )
            };
        }
        // The cursor is a plain bound on the key, so a deep page is a range scan.
        let sql = if f.newest_first {
            select_events!("<", "id DESC")
        } else {
            select_events!(">", "id")
        };
        let rows = sqlx::query(sql)
            .bind(&statuses)
            .bind(&f.source)
            .bind(opt_ts(f.since))
            .bind(opt_ts(f.until))
            .bind(if f.limit > 0 { f.limit } else { i64::MAX })
            .bind(f.parent_id)
            .bind(f.kind.map(|k| k.as_str()))
            .bind(cursor_bound(f))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_row).collect()
    }

    async fn tenants(&self) -> Result<Vec<(i64, String, Timestamp)>> {
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM tenants ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn event_counts(&self) -> Result<EventCounts> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM webhook_events WHERE status = 'failed') AS failed,
               (SELECT COUNT(*) FROM webhook_events WHERE status = 'dead') AS dead,
               (SELECT MIN(created_at) FROM webhook_events WHERE status = 'failed') AS oldest",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(EventCounts {
            failed: row.try_get("failed")?,
            dead: row.try_get("dead")?,
            oldest_failed: row.try_get("oldest")?,
        })
    }

    async fn outbox_backlog(&self) -> Result<Vec<OutboxBacklog>> {
        let rows = sqlx::query(
            "SELECT source, kind, COUNT(*) AS pending, MIN(created_at) AS oldest
             FROM outbox WHERE status IN ('pending', 'delivering')
             GROUP BY source, kind ORDER BY source, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_backlog_row).collect()
    }

    async fn cut_off_outbox(
        &self,
        source: &str,
        kind: &str,
        now: Timestamp,
    ) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            outbox_columns!(),
            " FROM outbox
             WHERE source = ?1 AND kind = ?2 AND status = 'delivering'
               AND (lease_until IS NULL OR lease_until < ?3)
             ORDER BY id"
        ))
        .bind(source)
        .bind(kind)
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_row).collect()
    }
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait::async_trait]
impl Tx for SqliteTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn claim_events(
        &mut self,
        lease: Lease<'_>,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<i64>> {
        // One statement: the claim is atomic (SQLite has one writer at a time).
        Ok(sqlx::query_scalar(
            "UPDATE webhook_events SET claimed_by = ?1, lease_until = ?2
             WHERE id IN (
               SELECT id FROM webhook_events
               WHERE ((status = 'failed' AND next_attempt_at <= ?3) OR status = 'received')
                 AND (lease_until IS NULL OR lease_until < ?3)
               ORDER BY COALESCE(next_attempt_at, created_at), id
               LIMIT ?4)
             RETURNING id",
        )
        .bind(lease.owner)
        .bind(ts(lease.until))
        .bind(ts(now))
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn release_leases(&mut self, owner: Option<&str>) -> Result<u64> {
        let events = sqlx::query(
            "UPDATE webhook_events SET claimed_by = NULL, lease_until = NULL
             WHERE lease_until IS NOT NULL AND (?1 IS NULL OR claimed_by = ?1)",
        )
        .bind(owner)
        .execute(&mut *self.tx)
        .await?;
        let outbox = sqlx::query(
            "UPDATE outbox SET claimed_by = NULL, lease_until = NULL
             WHERE lease_until IS NOT NULL AND (?1 IS NULL OR claimed_by = ?1)",
        )
        .bind(owner)
        .execute(&mut *self.tx)
        .await?;
        Ok(events.rows_affected() + outbox.rows_affected())
    }

    async fn prune_events(&mut self, before: Timestamp) -> Result<(u64, u64)> {
        let cutoff = ts(before);
        let items = sqlx::query(
            "DELETE FROM webhook_events
             WHERE kind = 'item' AND status IN ('processed', 'ignored') AND updated_at < ?",
        )
        .bind(&cutoff)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        let deliveries = sqlx::query(
            "DELETE FROM webhook_events
             WHERE kind = 'delivery' AND status IN ('processed', 'ignored') AND updated_at < ?
               AND NOT EXISTS (SELECT 1 FROM webhook_events c WHERE c.parent_id = webhook_events.id)",
        )
        .bind(&cutoff)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok((items, deliveries))
    }

    async fn claim_outbox(
        &mut self,
        source: &str,
        kind: &str,
        lease: Lease<'_>,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(concat!(
            "UPDATE outbox SET status = 'delivering', claimed_by = ?1, lease_until = ?2,
                 attempts = attempts + 1, updated_at = ?3
             WHERE id IN (
               SELECT id FROM outbox
               WHERE source = ?4 AND kind = ?5 AND status = 'pending'
                 AND (next_attempt_at IS NULL OR next_attempt_at <= ?3)
                 AND (lease_until IS NULL OR lease_until < ?3)
               ORDER BY id LIMIT ?6)
             RETURNING ",
            outbox_columns!()
        ))
        .bind(lease.owner)
        .bind(ts(lease.until))
        .bind(ts(now))
        .bind(source)
        .bind(kind)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut claimed: Vec<OutboxRow> = rows.iter().map(outbox_row).collect::<Result<_>>()?;
        claimed.sort_by_key(|r| r.id);
        Ok(claimed)
    }

    async fn insert_tenant(&mut self, name: &str, now: Timestamp) -> Result<i64> {
        Ok(
            sqlx::query_scalar("INSERT INTO tenants (name, created_at) VALUES (?, ?) RETURNING id")
                .bind(name)
                .bind(ts(now))
                .fetch_one(&mut *self.tx)
                .await?,
        )
    }

    async fn tenant_exists(&mut self, id: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(found.is_some())
    }

    async fn source_tenant(&mut self, kind: &str, key: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT tenant_id FROM lead_sources WHERE kind = ? AND external_key = ?",
        )
        .bind(kind)
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn insert_source(
        &mut self,
        tenant_id: i64,
        kind: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO lead_sources (tenant_id, kind, external_key, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(tenant_id)
        .bind(kind)
        .bind(key)
        .bind(ts(now))
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn set_source_credentials(
        &mut self,
        id: i64,
        c: &SourceCredentials<'_>,
        expected: Option<&SourceCredentials<'_>>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE lead_sources SET settings_json = ?1, secret_names = ?2, secrets_sealed = ?3
             WHERE id = ?4 AND (?5 = 0 OR (settings_json = ?6 AND secrets_sealed IS ?7))",
        )
        .bind(c.settings_json)
        .bind(c.secret_names)
        .bind(c.secrets_sealed)
        .bind(id)
        .bind(expected.is_some())
        .bind(expected.map(|e| e.settings_json))
        .bind(expected.and_then(|e| e.secrets_sealed))
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_event(&mut self, e: &NewEvent<'_>) -> Result<Option<i64>> {
        let now = ts(e.now);
        Ok(sqlx::query_scalar(
            "INSERT INTO webhook_events
               (source, kind, parent_id, correlation_id, payload_hash, payload, headers_json, dedup_key,
                item_kind, tenant_kind, tenant_key, status, claimed_by, lease_until, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'received', ?, ?, ?, ?)
             ON CONFLICT (source, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .bind(e.source)
        .bind(e.kind.as_str())
        .bind(e.parent_id)
        .bind(e.correlation_id)
        .bind(e.payload_hash)
        .bind(e.payload)
        .bind(e.headers_json)
        .bind(e.dedup_key)
        .bind(e.item_kind)
        .bind(e.tenant.map(|t| t.kind.as_str()))
        .bind(e.tenant.map(|t| t.key.as_str()))
        .bind(e.lease.map(|l| l.owner))
        .bind(e.lease.map(|l| ts(l.until)))
        .bind(&now)
        .bind(&now)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn item_event(&mut self, source: &str, dedup_key: &str) -> Result<Option<EventState>> {
        let row = sqlx::query(
            "SELECT id, status, attempts, claimed_by, lease_until FROM webhook_events
             WHERE source = ? AND dedup_key = ?",
        )
        .bind(source)
        .bind(dedup_key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(event_state).transpose()
    }

    async fn free_for(
        &mut self,
        id: i64,
        owner: &str,
        attempts: i64,
        now: Timestamp,
    ) -> Result<bool> {
        let free: Option<bool> = sqlx::query_scalar(
            "SELECT attempts = ?4 AND (claimed_by IS NULL OR claimed_by = ?2
                                      OR lease_until IS NULL OR lease_until <= ?3)
             FROM webhook_events WHERE id = ?1",
        )
        .bind(id)
        .bind(owner)
        .bind(ts(now))
        .bind(attempts)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(free.unwrap_or(false))
    }

    async fn lease_event(&mut self, id: i64, lease: Lease<'_>) -> Result<()> {
        sqlx::query("UPDATE webhook_events SET claimed_by = ?, lease_until = ? WHERE id = ?")
            .bind(lease.owner)
            .bind(ts(lease.until))
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn end_event(&mut self, id: i64, end: &EventEnd<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_events SET status = ?, error = ?, attempts = attempts + 1,
               next_attempt_at = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?
             WHERE id = ?",
        )
        .bind(end.status.as_str())
        .bind(end.error)
        .bind(opt_ts(end.next_attempt_at))
        .bind(ts(end.now))
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_lead(
        &mut self,
        tenant_id: i64,
        lead: &NewLead,
        now: Timestamp,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO leads (tenant_id, source, external_id, form_id, ad_id, campaign_id,
                full_name, email, phone, fields_json, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id, source, external_id) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(&lead.source)
        .bind(&lead.external_id)
        .bind(&lead.form_id)
        .bind(&lead.ad_id)
        .bind(&lead.campaign_id)
        .bind(&lead.full_name)
        .bind(&lead.email)
        .bind(&lead.phone)
        .bind(&lead.fields_json)
        .bind(ts(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn upsert_contact(
        &mut self,
        tenant_id: i64,
        key: ContactKey,
        value: &str,
        name: Option<&str>,
        now: Timestamp,
    ) -> Result<i64> {
        // Look first: an upsert that conflicts would still consume an id.
        if let Some(id) = self.contact_by(tenant_id, key, value).await? {
            if name.is_some() {
                sqlx::query("UPDATE contacts SET name = ? WHERE id = ?")
                    .bind(name)
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?;
            }
            return Ok(id);
        }
        let insert = match key {
            ContactKey::Phone => {
                "INSERT INTO contacts (tenant_id, phone, name, created_at) VALUES (?, ?, ?, ?) RETURNING id"
            }
            ContactKey::UserId => {
                "INSERT INTO contacts (tenant_id, user_id, name, created_at) VALUES (?, ?, ?, ?) RETURNING id"
            }
        };
        Ok(sqlx::query_scalar(insert)
            .bind(tenant_id)
            .bind(value)
            .bind(name)
            .bind(now)
            .fetch_one(&mut *self.tx)
            .await?)
    }

    async fn contact_by(
        &mut self,
        tenant_id: i64,
        key: ContactKey,
        value: &str,
    ) -> Result<Option<i64>> {
        let select = match key {
            ContactKey::Phone => "SELECT id FROM contacts WHERE tenant_id = ? AND phone = ?",
            ContactKey::UserId => "SELECT id FROM contacts WHERE tenant_id = ? AND user_id = ?",
        };
        Ok(sqlx::query_scalar(select)
            .bind(tenant_id)
            .bind(value)
            .fetch_optional(&mut *self.tx)
            .await?)
    }

    async fn set_contact_identity(&mut self, contact_id: i64, who: &ContactRef) -> Result<()> {
        sqlx::query(
            "UPDATE contacts SET phone = COALESCE(?, phone), user_id = COALESCE(?, user_id),
             parent_user_id = COALESCE(?, parent_user_id), username = COALESCE(?, username),
             name = COALESCE(?, name) WHERE id = ?",
        )
        .bind(who.phone.as_deref())
        .bind(who.user_id.as_deref())
        .bind(who.parent_user_id.as_deref())
        .bind(who.username.as_deref())
        .bind(who.name.as_deref())
        .bind(contact_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn merge_contact(&mut self, keep: i64, gone: i64) -> Result<()> {
        let theirs = self.contact_identity(gone).await?.unwrap_or_default();
        // One person has one open case: the gone contact's open cases close
        // when the kept one has one (the CRM may hold their ids: none is deleted).
        let keep_open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM cases WHERE contact_id = ? AND status = 'open' LIMIT 1",
        )
        .bind(keep)
        .fetch_optional(&mut *self.tx)
        .await?;
        if keep_open.is_some() {
            sqlx::query(
                "UPDATE cases SET status = 'closed' WHERE contact_id = ? AND status = 'open'",
            )
            .bind(gone)
            .execute(&mut *self.tx)
            .await?;
        }
        for sql in [
            "UPDATE cases SET contact_id = ? WHERE contact_id = ?",
            "UPDATE messages SET contact_id = ? WHERE contact_id = ?",
        ] {
            sqlx::query(sql)
                .bind(keep)
                .bind(gone)
                .execute(&mut *self.tx)
                .await?;
        }
        sqlx::query("DELETE FROM contacts WHERE id = ?")
            .bind(gone)
            .execute(&mut *self.tx)
            .await?;
        // What the kept contact lacked, the gone one had.
        sqlx::query(
            "UPDATE contacts SET phone = COALESCE(phone, ?), user_id = COALESCE(user_id, ?),
             parent_user_id = COALESCE(parent_user_id, ?), username = COALESCE(username, ?),
             name = COALESCE(name, ?) WHERE id = ?",
        )
        .bind(theirs.phone)
        .bind(theirs.user_id)
        .bind(theirs.parent_user_id)
        .bind(theirs.username)
        .bind(theirs.name)
        .bind(keep)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn contact_identity(&mut self, contact_id: i64) -> Result<Option<ContactRef>> {
        let row: Option<(
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(
            "SELECT phone, user_id, parent_user_id, username, name FROM contacts WHERE id = ?",
        )
        .bind(contact_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(
            |(phone, user_id, parent_user_id, username, name)| ContactRef {
                phone,
                user_id,
                parent_user_id,
                username,
                name,
            },
        ))
    }

    async fn release_contact_key(&mut self, contact_id: i64, key: ContactKey) -> Result<()> {
        let sql = match key {
            ContactKey::Phone => "UPDATE contacts SET phone = NULL WHERE id = ?",
            ContactKey::UserId => "UPDATE contacts SET user_id = NULL WHERE id = ?",
        };
        sqlx::query(sql)
            .bind(contact_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn lock_contact_keys(
        &mut self,
        _tenant_id: i64,
        _keys: &[(ContactKey, &str)],
    ) -> Result<()> {
        // One writer: nothing else can create a contact meanwhile.
        Ok(())
    }

    async fn case_of_tenant(&mut self, case_id: i64, tenant_id: i64) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM cases WHERE id = ? AND tenant_id = ?")
                .bind(case_id)
                .bind(tenant_id)
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(found.is_some())
    }

    async fn open_case(&mut self, tenant_id: i64, contact_id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM cases WHERE tenant_id = ? AND contact_id = ? AND status = 'open'
             ORDER BY id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(contact_id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn insert_case(
        &mut self,
        tenant_id: i64,
        contact_id: i64,
        now: Timestamp,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO cases (tenant_id, contact_id, status, created_at) VALUES (?, ?, 'open', ?) RETURNING id",
        )
        .bind(tenant_id)
        .bind(contact_id)
        .bind(ts(now))
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO messages (tenant_id, contact_id, case_id, channel, direction, external_id, from_addr,
                to_addr, kind, body, media_id, status, provider_timestamp, reply_to, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id, channel, external_id) DO NOTHING
             RETURNING id",
        )
        .bind(m.tenant_id)
        .bind(m.contact_id)
        .bind(m.case_id)
        .bind(m.channel)
        .bind(m.direction.as_str())
        .bind(m.external_id)
        .bind(m.from_addr)
        .bind(m.to_addr)
        .bind(m.kind)
        .bind(m.body)
        .bind(m.media_id)
        .bind(m.status.as_str())
        .bind(m.provider_timestamp)
        .bind(m.reply_to)
        .bind(ts(m.now))
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn message_by_external_id(
        &mut self,
        tenant_id: i64,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM messages WHERE tenant_id = ? AND channel = ? AND external_id = ?",
        )
        .bind(tenant_id)
        .bind(channel)
        .bind(external_id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn change_message(
        &mut self,
        id: i64,
        edited: Option<(&str, Timestamp)>,
        deleted_at: Option<Timestamp>,
    ) -> Result<()> {
        // Edits may arrive out of order: only a later one than the last applied counts.
        sqlx::query(
            "UPDATE messages SET
               body = CASE WHEN ?1 IS NOT NULL AND (edited_at IS NULL OR edited_at <= ?2) THEN ?1 ELSE body END,
               edited_at = CASE WHEN ?1 IS NOT NULL AND (edited_at IS NULL OR edited_at <= ?2) THEN ?2 ELSE edited_at END,
               deleted_at = COALESCE(deleted_at, ?3)
             WHERE id = ?4",
        )
        .bind(edited.map(|(body, _)| body))
        .bind(edited.map(|(_, at)| at))
        .bind(deleted_at)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn outbound_message(
        &mut self,
        tenant_id: i64,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<MessageState>> {
        let row = sqlx::query(
            "SELECT id, status, external_id, error FROM messages
             WHERE tenant_id = ? AND channel = ? AND external_id = ? AND direction = 'outbound'",
        )
        .bind(tenant_id)
        .bind(channel)
        .bind(external_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(message_state).transpose()
    }

    async fn message(&mut self, id: i64) -> Result<Option<MessageState>> {
        let row = sqlx::query("SELECT id, status, external_id, error FROM messages WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(message_state).transpose()
    }

    async fn set_message(
        &mut self,
        id: i64,
        status: crate::store::types::MessageStatus,
        external_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET status = ?, external_id = COALESCE(?, external_id),
               error = COALESCE(?, error) WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(external_id)
        .bind(error)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_conversion(&mut self, row: &NewConversionRow<'_>) -> Result<Option<i64>> {
        let c = row.conversion;
        Ok(sqlx::query_scalar(
            "INSERT INTO conversion_uploads (tenant_id, click_id_kind, click_id, conversion_time, value,
                currency, conversion_action, order_id, idempotency_key, status, source, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING id",
        )
        .bind(row.tenant_id)
        .bind(&c.click_id_kind)
        .bind(&c.click_id)
        .bind(&c.conversion_time)
        .bind(c.value)
        .bind(&c.currency)
        .bind(&c.conversion_action)
        .bind(&c.order_id)
        .bind(&c.idempotency_key)
        .bind(row.status.as_str())
        .bind(row.source)
        .bind(ts(row.now))
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn conversion_by_key(&mut self, key: &str) -> Result<Option<ConversionState>> {
        let row = sqlx::query(
            "SELECT id, status, error FROM conversion_uploads WHERE idempotency_key = ?",
        )
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(conversion_state).transpose()
    }

    async fn conversion(&mut self, id: i64) -> Result<Option<ConversionState>> {
        let row = sqlx::query("SELECT id, status, error FROM conversion_uploads WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(conversion_state).transpose()
    }

    async fn set_conversion(
        &mut self,
        id: i64,
        status: crate::store::types::ConversionStatus,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE conversion_uploads SET status = ?1, error = ?2, attempts = attempts + 1,
               uploaded_at = CASE WHEN ?1 = 'uploaded' THEN ?3 ELSE uploaded_at END
             WHERE id = ?4",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(ts(now))
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_outbox(&mut self, row: &NewOutbox<'_>) -> Result<i64> {
        let now = ts(row.now);
        Ok(sqlx::query_scalar(
            "INSERT INTO outbox (source, kind, idempotency_key, record_kind, record_id, tenant_id, payload,
                status, claimed_by, lease_until, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
             RETURNING id",
        )
        .bind(row.source)
        .bind(row.kind)
        .bind(row.idempotency_key)
        .bind(row.record_kind.as_str())
        .bind(row.record_id)
        .bind(row.tenant_id)
        .bind(row.payload)
        .bind(row.lease.map(|l| l.owner))
        .bind(row.lease.map(|l| ts(l.until)))
        .bind(&now)
        .bind(&now)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn outbox_by_key(
        &mut self,
        source: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<OutboxRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            outbox_columns!(),
            " FROM outbox WHERE source = ? AND kind = ? AND idempotency_key = ?"
        ))
        .bind(source)
        .bind(kind)
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(outbox_row).transpose()
    }

    async fn outbox_row(&mut self, id: i64) -> Result<Option<OutboxRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            outbox_columns!(),
            " FROM outbox WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(outbox_row).transpose()
    }

    async fn start_outbox(&mut self, id: i64, lease: Lease<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET status = 'delivering', claimed_by = ?, lease_until = ?,
               attempts = attempts + 1 WHERE id = ?",
        )
        .bind(lease.owner)
        .bind(ts(lease.until))
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn end_outbox(&mut self, id: i64, end: &OutboxEnd<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET status = ?, error = ?, external_id = COALESCE(?, external_id),
               next_attempt_at = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?,
               attempts = MAX(attempts - ?, 0)
             WHERE id = ?",
        )
        .bind(end.status.as_str())
        .bind(end.error)
        .bind(end.external_id)
        .bind(opt_ts(end.next_attempt_at))
        .bind(ts(end.now))
        .bind(i64::from(end.uncount_attempt))
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod upgrade_tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use std::str::FromStr;

    /// Migration 0007 rebuilds `contacts` with foreign keys off: on a database
    /// with rows, every contact keeps its id and every case and message its
    /// contact, and foreign keys hold (and are on) afterwards.
    #[tokio::test]
    async fn contacts_keep_their_rows_and_ids_across_the_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("up.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        let mut before = sqlx::migrate!("../migrations/sqlite");
        before.migrations = std::borrow::Cow::Owned(
            before
                .migrations
                .iter()
                .filter(|m| m.version <= 6)
                .cloned()
                .collect(),
        );
        before.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO tenants (id, name) VALUES (1, 'Acme')",
            "INSERT INTO contacts (id, tenant_id, phone, name) VALUES (7, 1, '16505551234', 'Ana'), (9, 1, '5511987654321', NULL)",
            "INSERT INTO cases (id, tenant_id, contact_id) VALUES (3, 1, 7), (4, 1, 9)",
            "INSERT INTO messages (tenant_id, contact_id, case_id, channel, direction, external_id, kind, body, status)
             VALUES (1, 7, 3, 'whatsapp', 'inbound', 'wamid.A', 'text', 'hi', 'received'),
                    (1, 9, 4, 'whatsapp', 'inbound', 'wamid.B', 'text', 'oi', 'received')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = crate::store::Store::open(&url).await.unwrap();
        drop(store);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let contacts: Vec<(i64, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT id, phone, name FROM contacts ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            contacts,
            vec![
                (7, Some("16505551234".into()), Some("Ana".into())),
                (9, Some("5511987654321".into()), None)
            ]
        );
        let links: Vec<(i64, i64)> =
            sqlx::query_as("SELECT contact_id, case_id FROM messages ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(links, vec![(7, 3), (9, 4)]);
        let broken: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(broken.is_empty(), "{broken:?}");
        // The new shape: a contact by user id alone, and foreign keys enforced.
        sqlx::query("INSERT INTO contacts (tenant_id, user_id) VALUES (1, 'US.1')")
            .execute(&pool)
            .await
            .unwrap();
        assert!(
            sqlx::query("INSERT INTO cases (tenant_id, contact_id) VALUES (1, 999)")
                .execute(&pool)
                .await
                .is_err(),
            "foreign keys are on again"
        );
        let edited: Option<String> = sqlx::query_scalar("SELECT edited_at FROM messages LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(edited, None);
    }
}

#[cfg(test)]
mod durability_tests {
    use super::{Backend, Durability, SqliteBackend};
    use crate::store::types::Timestamp;

    /// Every write runs on the one writer connection, at the sync level its
    /// durability asks for (set at each begin, whatever the last one was); the
    /// read pool stays FULL; and a deferred commit is a commit: seen by other
    /// connections at once and kept when the process closes its database
    /// (only a machine crash may undo it).
    #[tokio::test]
    async fn each_write_commits_at_its_own_sync_level_on_the_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let db = SqliteBackend::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        // 2 = FULL, 1 = NORMAL: the writer's level as its last begin left it.
        let level = |pool: &sqlx::SqlitePool| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let mut names = Vec::new();
        for (n, durability, expected) in [
            (1, Durability::Deferred, 1),
            (2, Durability::Deferred, 1),
            (3, Durability::Synced, 2),
            (4, Durability::Deferred, 1),
            (5, Durability::Synced, 2),
        ] {
            let mut tx = db.begin(durability).await.unwrap();
            let name = format!("tenant {n}");
            tx.insert_tenant(&name, Timestamp::now()).await.unwrap();
            tx.commit().await.unwrap();
            names.push(name);
            assert_eq!(level(&db.writer).await, expected, "after write {n}");
            assert_eq!(level(&db.pool).await, 2, "the read pool stays FULL");
            let seen: Vec<String> = db
                .tenants()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.1)
                .collect();
            assert_eq!(
                seen, names,
                "a write is seen by the read pool once committed"
            );
        }
        db.pool.close().await;
        db.writer.close().await;

        let again = SqliteBackend::connect(&url).await.unwrap();
        let kept: Vec<String> = again
            .tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(kept, names);
    }
}
