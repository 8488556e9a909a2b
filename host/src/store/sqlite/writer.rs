//! SQLite's write transactions, on one connection the committer drives
//! directly from its own thread.
//!
//! Why not through sqlx like the reads: sqlx runs each SQLite connection on a
//! worker thread of its own, and every statement is a round trip to it (two
//! thread switches). A lead costs about seven statements, and under load those
//! switches and their futex wake-ups took more CPU than everything else the
//! ingest path does (`perf`: the worker thread alone was a third of the
//! samples, SQLite's own code 2%). Here a statement is a function call, and
//! the only hand-offs left are one per batch (the committer's queue) and one
//! per job (its answer).
//!
//! The calls block their thread, fsync included, so the committer of a
//! SQLite store runs on a thread of its own (see
//! [`Backend::writes_block`](super::super::backend::Backend::writes_block)).
//! Every write transaction of the process is on this one connection (only
//! migrations run on the read pool), which keeps its page cache warm: SQLite drops a connection's whole cache when another connection
//! wrote since its last transaction.

use super::super::StoreError;
use super::super::backend::{
    ContactKey, ConversionState, Durability, EventEnd, EventRow, EventState, Lease, MessageState,
    NewConversionRow, NewEvent, NewMessage, NewOutbox, OutboxBacklog, OutboxEnd, OutboxRow, Result,
    SourceCredentials, SourceRow, Tx,
};
use super::super::types::{MessageStatus, Timestamp};
use crate::domain::{ContactRef, NewLead};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, RowIndex, params};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The sync level is set on every begin, before `BEGIN` (SQLite refuses a
/// change inside a transaction), so the writer is never left in NORMAL for a
/// write that must be synced, whatever ran on it before.
const SYNC_FULL: &str = "PRAGMA synchronous = FULL";
/// A [`Durability::Deferred`] write: committed without waiting for the disk;
/// the next FULL commit (or checkpoint) flushes it with its own, since both
/// are in the one write-ahead log.
const SYNC_NORMAL: &str = "PRAGMA synchronous = NORMAL";
/// Write transactions take SQLite's write lock up front. A deferred transaction
/// that reads and then writes fails at once with SQLITE_BUSY (no busy wait)
/// when another writer committed in between; an immediate one waits its turn.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// Distinct statements the write path prepares (about fifty), with room.
const STATEMENT_CACHE: usize = 128;

/// The columns of an [`OutboxRow`](super::super::backend::OutboxRow).
macro_rules! outbox_columns {
    () => {
        "id, source, kind, record_kind, record_id, payload, status, attempts, claimed_by, lease_until"
    };
}

/// How the writer opens the database: as the read pool does, from the
/// DATABASE_URL's query (`mode`, `cache`, `vfs`, `immutable`), which sqlx
/// reads for the pool but does not hand back.
#[derive(Debug, Default)]
pub(super) struct Open {
    /// An in-memory database (`sqlite::memory:`), shared with the read pool
    /// through SQLite's shared cache.
    memory: bool,
    vfs: Option<String>,
}

impl Open {
    pub(super) fn from_url(url: &str) -> Result<Open> {
        let (database, query) = match url.split_once('?') {
            Some((database, query)) => (database, query),
            None => (url, ""),
        };
        let mut open = Open {
            memory: database.ends_with(":memory:"),
            vfs: None,
        };
        let mut private_cache = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (key, value) {
                // SQLite shares a database so named between connections only
                // as a `file:` URI; sqlx passes this one as a plain name, so
                // every connection of the pool would get a database of its own.
                ("mode", "memory") => {
                    return Err(StoreError::BadUrl(
                        "mode=memory gives each connection a database of its own: for a database in memory use sqlite::memory:".into(),
                    ));
                }
                ("mode", "ro") | ("immutable", "true" | "1") => {
                    return Err(StoreError::BadUrl(format!(
                        "{key}={value} opens the database read-only, and Portico writes to it: leave it out"
                    )));
                }
                ("cache", "private") => private_cache = true,
                ("vfs", name) => open.vfs = Some(name.to_string()),
                // The rest is sqlx's to accept or refuse (with its own message).
                _ => {}
            }
        }
        if open.memory && private_cache {
            return Err(StoreError::BadUrl(
                "cache=private gives each connection its own in-memory database, and Portico reads and writes on different connections: leave it out".into(),
            ));
        }
        Ok(open)
    }
}

/// The one write connection.
pub(super) struct Writer {
    conn: Arc<Mutex<Connection>>,
}

impl Writer {
    /// Open the database file `path` names (sqlx's options give it; the read
    /// pool opened it first, so it exists and is in WAL mode).
    pub(super) fn open(path: &Path, how: &Open, busy_timeout: Duration) -> Result<Writer> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // The name and flags sqlx opens it with, so both find the same one.
        if how.memory {
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let conn = match &how.vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs.as_str())?,
            None => Connection::open_with_flags(path, flags)?,
        };
        conn.busy_timeout(busy_timeout)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Writer {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(super) async fn begin(&self, durability: Durability) -> Result<Box<dyn Tx>> {
        let conn = self.conn.clone().lock_owned().await;
        // A transaction a failed rollback left open would refuse every later
        // begin (the sync level cannot change inside it): end it first.
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?;
        }
        let sync = match durability {
            Durability::Synced => SYNC_FULL,
            Durability::Deferred => SYNC_NORMAL,
        };
        conn.prepare_cached(sync)?.execute([])?;
        conn.prepare_cached(BEGIN)?.execute([])?;
        Ok(Box::new(WriteTx { conn }))
    }

    /// The writer's sync level as its last begin left it (2 FULL, 1 NORMAL).
    #[cfg(test)]
    pub(super) async fn sync_level(&self) -> i64 {
        let conn = self.conn.lock().await;
        conn.pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap_or(-1)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// Times are RFC 3339 text with milliseconds: text order is time order.
impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_rfc3339()))
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Timestamp::parse(value.as_str()?).map_err(|e| FromSqlError::Other(e.into()))
    }
}

/// A row, read the way `row_readers!` reads one.
struct Row<'r, 's>(&'r rusqlite::Row<'s>);

impl Row<'_, '_> {
    fn try_get<T: FromSql, I: RowIndex>(&self, column: I) -> rusqlite::Result<T> {
        self.0.get(column)
    }
}

super::super::rows::row_readers!(Row<'_, '_>);

/// A write transaction: holds the connection until it commits or drops.
struct WriteTx {
    conn: OwnedMutexGuard<Connection>,
}

impl WriteTx {
    /// Run `sql`; how many rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> Result<u64> {
        let changed = self.conn.prepare_cached(sql)?.execute(params)?;
        Ok(changed as u64)
    }

    /// The first column of the first row `sql` gives, if any.
    fn scalar<T: FromSql>(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Option<T>> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(params, |row| row.get(0))
            .optional()?)
    }

    /// The first column of the row `sql` must give.
    fn scalar_one<T: FromSql>(&self, sql: &str, params: &[&dyn ToSql]) -> Result<T> {
        self.scalar(sql, params)?
            .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
    }

    /// The first row `sql` gives, read by `read`.
    fn row<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        read: impl FnOnce(&Row<'_, '_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        match rows.next()? {
            Some(row) => Ok(Some(read(&Row(row))?)),
            None => Ok(None),
        }
    }

    /// Every row `sql` gives, each read by `read`.
    fn rows<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        read: impl Fn(&Row<'_, '_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        let mut all = Vec::new();
        while let Some(row) = rows.next()? {
            all.push(read(&Row(row))?);
        }
        Ok(all)
    }
}

impl Drop for WriteTx {
    /// Not committed: roll back (a failed statement may already have ended
    /// the transaction; then there is nothing to undo).
    fn drop(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!("rolling back a write transaction failed: {e}");
        }
    }
}

#[async_trait::async_trait]
impl Tx for WriteTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.execute("COMMIT", params![])?;
        Ok(())
    }

    async fn claim_events(
        &mut self,
        lease: Lease<'_>,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<i64>> {
        // One statement: the claim is atomic (SQLite has one writer at a time).
        self.rows(
            "UPDATE webhook_events SET claimed_by = ?1, lease_until = ?2
             WHERE id IN (
               SELECT id FROM webhook_events
               WHERE ((status = 'failed' AND next_attempt_at <= ?3) OR status = 'received')
                 AND (lease_until IS NULL OR lease_until < ?3)
               ORDER BY COALESCE(next_attempt_at, created_at), id
               LIMIT ?4)
             RETURNING id",
            params![lease.owner, lease.until, now, limit],
            |row| Ok(row.try_get(0)?),
        )
    }

    async fn release_leases(&mut self, owner: Option<&str>) -> Result<u64> {
        let events = self.execute(
            "UPDATE webhook_events SET claimed_by = NULL, lease_until = NULL
             WHERE lease_until IS NOT NULL AND (?1 IS NULL OR claimed_by = ?1)",
            params![owner],
        )?;
        let outbox = self.execute(
            "UPDATE outbox SET claimed_by = NULL, lease_until = NULL
             WHERE lease_until IS NOT NULL AND (?1 IS NULL OR claimed_by = ?1)",
            params![owner],
        )?;
        Ok(events + outbox)
    }

    async fn prune_events(&mut self, before: Timestamp) -> Result<(u64, u64)> {
        let items = self.execute(
            "DELETE FROM webhook_events
             WHERE kind = 'item' AND status IN ('processed', 'ignored') AND updated_at < ?",
            params![before],
        )?;
        let deliveries = self.execute(
            "DELETE FROM webhook_events
             WHERE kind = 'delivery' AND status IN ('processed', 'ignored') AND updated_at < ?
               AND NOT EXISTS (SELECT 1 FROM webhook_events c WHERE c.parent_id = webhook_events.id)",
            params![before],
        )?;
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
        let mut claimed = self.rows(
            concat!(
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
            ),
            params![lease.owner, lease.until, now, source, kind, limit],
            outbox_row,
        )?;
        claimed.sort_by_key(|r| r.id);
        Ok(claimed)
    }

    async fn insert_tenant(&mut self, name: &str, now: Timestamp) -> Result<i64> {
        self.scalar_one(
            "INSERT INTO tenants (name, created_at) VALUES (?, ?) RETURNING id",
            params![name, now],
        )
    }

    async fn tenant_exists(&mut self, id: i64) -> Result<bool> {
        let found: Option<i64> = self.scalar("SELECT id FROM tenants WHERE id = ?", params![id])?;
        Ok(found.is_some())
    }

    async fn source_tenant(&mut self, kind: &str, key: &str) -> Result<Option<i64>> {
        self.scalar(
            "SELECT tenant_id FROM lead_sources WHERE kind = ? AND external_key = ?",
            params![kind, key],
        )
    }

    async fn insert_source(
        &mut self,
        tenant_id: i64,
        kind: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<i64> {
        self.scalar_one(
            "INSERT INTO lead_sources (tenant_id, kind, external_key, created_at) VALUES (?, ?, ?, ?) RETURNING id",
            params![tenant_id, kind, key, now],
        )
    }

    async fn set_source_credentials(
        &mut self,
        id: i64,
        c: &SourceCredentials<'_>,
        expected: Option<&SourceCredentials<'_>>,
    ) -> Result<bool> {
        let done = self.execute(
            "UPDATE lead_sources SET settings_json = ?1, secret_names = ?2, secrets_sealed = ?3
             WHERE id = ?4 AND (?5 = 0 OR (settings_json = ?6 AND secrets_sealed IS ?7))",
            params![
                c.settings_json,
                c.secret_names,
                c.secrets_sealed,
                id,
                expected.is_some(),
                expected.map(|e| e.settings_json),
                expected.and_then(|e| e.secrets_sealed),
            ],
        )?;
        Ok(done == 1)
    }

    async fn insert_event(&mut self, e: &NewEvent<'_>) -> Result<Option<i64>> {
        self.scalar(
            "INSERT INTO webhook_events
               (source, kind, parent_id, correlation_id, payload_hash, payload, headers_json, dedup_key,
                item_kind, tenant_kind, tenant_key, status, claimed_by, lease_until, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'received', ?, ?, ?, ?)
             ON CONFLICT (source, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
             RETURNING id",
            params![
                e.source,
                e.kind.as_str(),
                e.parent_id,
                e.correlation_id,
                e.payload_hash,
                e.payload,
                e.headers_json,
                e.dedup_key,
                e.item_kind,
                e.tenant.map(|t| t.kind.as_str()),
                e.tenant.map(|t| t.key.as_str()),
                e.lease.map(|l| l.owner),
                e.lease.map(|l| l.until),
                e.now,
                e.now,
            ],
        )
    }

    async fn item_event(&mut self, source: &str, dedup_key: &str) -> Result<Option<EventState>> {
        self.row(
            "SELECT id, status, attempts, claimed_by, lease_until FROM webhook_events
             WHERE source = ? AND dedup_key = ?",
            params![source, dedup_key],
            event_state,
        )
    }

    async fn free_for(
        &mut self,
        id: i64,
        owner: &str,
        attempts: i64,
        now: Timestamp,
    ) -> Result<bool> {
        let free: Option<bool> = self.scalar(
            "SELECT attempts = ?4 AND (claimed_by IS NULL OR claimed_by = ?2
                                      OR lease_until IS NULL OR lease_until <= ?3)
             FROM webhook_events WHERE id = ?1",
            params![id, owner, now, attempts],
        )?;
        Ok(free.unwrap_or(false))
    }

    async fn lease_event(&mut self, id: i64, lease: Lease<'_>) -> Result<()> {
        self.execute(
            "UPDATE webhook_events SET claimed_by = ?, lease_until = ? WHERE id = ?",
            params![lease.owner, lease.until, id],
        )?;
        Ok(())
    }

    async fn end_event(&mut self, id: i64, end: &EventEnd<'_>) -> Result<()> {
        self.execute(
            "UPDATE webhook_events SET status = ?, error = ?, attempts = attempts + 1,
               next_attempt_at = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?
             WHERE id = ?",
            params![
                end.status.as_str(),
                end.error,
                end.next_attempt_at,
                end.now,
                id
            ],
        )?;
        Ok(())
    }

    async fn insert_lead(
        &mut self,
        tenant_id: i64,
        lead: &NewLead,
        now: Timestamp,
    ) -> Result<bool> {
        let inserted = self.execute(
            "INSERT INTO leads (tenant_id, source, external_id, form_id, ad_id, campaign_id,
                full_name, email, phone, fields_json, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id, source, external_id) DO NOTHING",
            params![
                tenant_id,
                lead.source,
                lead.external_id,
                lead.form_id,
                lead.ad_id,
                lead.campaign_id,
                lead.full_name,
                lead.email,
                lead.phone,
                lead.fields_json,
                now,
            ],
        )?;
        Ok(inserted > 0)
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
                self.execute(
                    "UPDATE contacts SET name = ? WHERE id = ?",
                    params![name, id],
                )?;
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
        self.scalar_one(insert, params![tenant_id, value, name, now])
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
        self.scalar(select, params![tenant_id, value])
    }

    async fn set_contact_identity(&mut self, contact_id: i64, who: &ContactRef) -> Result<()> {
        self.execute(
            "UPDATE contacts SET phone = COALESCE(?, phone), user_id = COALESCE(?, user_id),
             parent_user_id = COALESCE(?, parent_user_id), username = COALESCE(?, username),
             name = COALESCE(?, name) WHERE id = ?",
            params![
                who.phone,
                who.user_id,
                who.parent_user_id,
                who.username,
                who.name,
                contact_id
            ],
        )?;
        Ok(())
    }

    async fn merge_contact(&mut self, keep: i64, gone: i64) -> Result<()> {
        let theirs = self.contact_identity(gone).await?.unwrap_or_default();
        // One person has one open case: the gone contact's open cases close
        // when the kept one has one (the CRM may hold their ids: none is deleted).
        let keep_open: Option<i64> = self.scalar(
            "SELECT id FROM cases WHERE contact_id = ? AND status = 'open' LIMIT 1",
            params![keep],
        )?;
        if keep_open.is_some() {
            self.execute(
                "UPDATE cases SET status = 'closed' WHERE contact_id = ? AND status = 'open'",
                params![gone],
            )?;
        }
        for sql in [
            "UPDATE cases SET contact_id = ? WHERE contact_id = ?",
            "UPDATE messages SET contact_id = ? WHERE contact_id = ?",
        ] {
            self.execute(sql, params![keep, gone])?;
        }
        self.execute("DELETE FROM contacts WHERE id = ?", params![gone])?;
        // What the kept contact lacked, the gone one had.
        self.execute(
            "UPDATE contacts SET phone = COALESCE(phone, ?), user_id = COALESCE(user_id, ?),
             parent_user_id = COALESCE(parent_user_id, ?), username = COALESCE(username, ?),
             name = COALESCE(name, ?) WHERE id = ?",
            params![
                theirs.phone,
                theirs.user_id,
                theirs.parent_user_id,
                theirs.username,
                theirs.name,
                keep
            ],
        )?;
        Ok(())
    }

    async fn contact_identity(&mut self, contact_id: i64) -> Result<Option<ContactRef>> {
        self.row(
            "SELECT phone, user_id, parent_user_id, username, name FROM contacts WHERE id = ?",
            params![contact_id],
            |row| {
                Ok(ContactRef {
                    phone: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    parent_user_id: row.try_get(2)?,
                    username: row.try_get(3)?,
                    name: row.try_get(4)?,
                })
            },
        )
    }

    async fn release_contact_key(&mut self, contact_id: i64, key: ContactKey) -> Result<()> {
        let sql = match key {
            ContactKey::Phone => "UPDATE contacts SET phone = NULL WHERE id = ?",
            ContactKey::UserId => "UPDATE contacts SET user_id = NULL WHERE id = ?",
        };
        self.execute(sql, params![contact_id])?;
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
        let found: Option<i64> = self.scalar(
            "SELECT id FROM cases WHERE id = ? AND tenant_id = ?",
            params![case_id, tenant_id],
        )?;
        Ok(found.is_some())
    }

    async fn open_case(&mut self, tenant_id: i64, contact_id: i64) -> Result<Option<i64>> {
        self.scalar(
            "SELECT id FROM cases WHERE tenant_id = ? AND contact_id = ? AND status = 'open'
             ORDER BY id DESC LIMIT 1",
            params![tenant_id, contact_id],
        )
    }

    async fn insert_case(
        &mut self,
        tenant_id: i64,
        contact_id: i64,
        now: Timestamp,
    ) -> Result<i64> {
        self.scalar_one(
            "INSERT INTO cases (tenant_id, contact_id, status, created_at) VALUES (?, ?, 'open', ?) RETURNING id",
            params![tenant_id, contact_id, now],
        )
    }

    async fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<Option<i64>> {
        self.scalar(
            "INSERT INTO messages (tenant_id, contact_id, case_id, channel, direction, external_id, from_addr,
                to_addr, kind, body, media_id, status, provider_timestamp, reply_to, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id, channel, external_id) DO NOTHING
             RETURNING id",
            params![
                m.tenant_id,
                m.contact_id,
                m.case_id,
                m.channel,
                m.direction.as_str(),
                m.external_id,
                m.from_addr,
                m.to_addr,
                m.kind,
                m.body,
                m.media_id,
                m.status.as_str(),
                m.provider_timestamp,
                m.reply_to,
                m.now,
            ],
        )
    }

    async fn message_by_external_id(
        &mut self,
        tenant_id: i64,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<i64>> {
        self.scalar(
            "SELECT id FROM messages WHERE tenant_id = ? AND channel = ? AND external_id = ?",
            params![tenant_id, channel, external_id],
        )
    }

    async fn change_message(
        &mut self,
        id: i64,
        edited: Option<(&str, Timestamp)>,
        deleted_at: Option<Timestamp>,
    ) -> Result<()> {
        // Edits may arrive out of order: only a later one than the last applied counts.
        self.execute(
            "UPDATE messages SET
               body = CASE WHEN ?1 IS NOT NULL AND (edited_at IS NULL OR edited_at <= ?2) THEN ?1 ELSE body END,
               edited_at = CASE WHEN ?1 IS NOT NULL AND (edited_at IS NULL OR edited_at <= ?2) THEN ?2 ELSE edited_at END,
               deleted_at = COALESCE(deleted_at, ?3)
             WHERE id = ?4",
            params![
                edited.map(|(body, _)| body),
                edited.map(|(_, at)| at),
                deleted_at,
                id
            ],
        )?;
        Ok(())
    }

    async fn outbound_message(
        &mut self,
        tenant_id: i64,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<MessageState>> {
        self.row(
            "SELECT id, status, external_id, error FROM messages
             WHERE tenant_id = ? AND channel = ? AND external_id = ? AND direction = 'outbound'",
            params![tenant_id, channel, external_id],
            message_state,
        )
    }

    async fn message(&mut self, id: i64) -> Result<Option<MessageState>> {
        self.row(
            "SELECT id, status, external_id, error FROM messages WHERE id = ?",
            params![id],
            message_state,
        )
    }

    async fn set_message(
        &mut self,
        id: i64,
        status: MessageStatus,
        external_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        self.execute(
            "UPDATE messages SET status = ?, external_id = COALESCE(?, external_id),
               error = COALESCE(?, error) WHERE id = ?",
            params![status.as_str(), external_id, error, id],
        )?;
        Ok(())
    }

    async fn insert_conversion(&mut self, row: &NewConversionRow<'_>) -> Result<Option<i64>> {
        let c = row.conversion;
        self.scalar(
            "INSERT INTO conversion_uploads (tenant_id, click_id_kind, click_id, conversion_time, value,
                currency, conversion_action, order_id, idempotency_key, status, source, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING id",
            params![
                row.tenant_id,
                c.click_id_kind,
                c.click_id,
                c.conversion_time,
                c.value,
                c.currency,
                c.conversion_action,
                c.order_id,
                c.idempotency_key,
                row.status.as_str(),
                row.source,
                row.now,
            ],
        )
    }

    async fn conversion_by_key(&mut self, key: &str) -> Result<Option<ConversionState>> {
        self.row(
            "SELECT id, status, error FROM conversion_uploads WHERE idempotency_key = ?",
            params![key],
            conversion_state,
        )
    }

    async fn conversion(&mut self, id: i64) -> Result<Option<ConversionState>> {
        self.row(
            "SELECT id, status, error FROM conversion_uploads WHERE id = ?",
            params![id],
            conversion_state,
        )
    }

    async fn set_conversion(
        &mut self,
        id: i64,
        status: crate::store::types::ConversionStatus,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        self.execute(
            "UPDATE conversion_uploads SET status = ?1, error = ?2, attempts = attempts + 1,
               uploaded_at = CASE WHEN ?1 = 'uploaded' THEN ?3 ELSE uploaded_at END
             WHERE id = ?4",
            params![status.as_str(), error, now, id],
        )?;
        Ok(())
    }

    async fn insert_outbox(&mut self, row: &NewOutbox<'_>) -> Result<i64> {
        self.scalar_one(
            "INSERT INTO outbox (source, kind, idempotency_key, record_kind, record_id, tenant_id, payload,
                status, claimed_by, lease_until, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
             RETURNING id",
            params![
                row.source,
                row.kind,
                row.idempotency_key,
                row.record_kind.as_str(),
                row.record_id,
                row.tenant_id,
                row.payload,
                row.lease.map(|l| l.owner),
                row.lease.map(|l| l.until),
                row.now,
                row.now,
            ],
        )
    }

    async fn outbox_by_key(
        &mut self,
        source: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<OutboxRow>> {
        self.row(
            concat!(
                "SELECT ",
                outbox_columns!(),
                " FROM outbox WHERE source = ? AND kind = ? AND idempotency_key = ?"
            ),
            params![source, kind, key],
            outbox_row,
        )
    }

    async fn outbox_row(&mut self, id: i64) -> Result<Option<OutboxRow>> {
        self.row(
            concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE id = ?"),
            params![id],
            outbox_row,
        )
    }

    async fn start_outbox(&mut self, id: i64, lease: Lease<'_>) -> Result<()> {
        self.execute(
            "UPDATE outbox SET status = 'delivering', claimed_by = ?, lease_until = ?,
               attempts = attempts + 1 WHERE id = ?",
            params![lease.owner, lease.until, id],
        )?;
        Ok(())
    }

    async fn end_outbox(&mut self, id: i64, end: &OutboxEnd<'_>) -> Result<()> {
        self.execute(
            "UPDATE outbox SET status = ?, error = ?, external_id = COALESCE(?, external_id),
               next_attempt_at = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?,
               attempts = MAX(attempts - ?, 0)
             WHERE id = ?",
            params![
                end.status.as_str(),
                end.error,
                end.external_id,
                end.next_attempt_at,
                end.now,
                i64::from(end.uncount_attempt),
                id
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Open;

    #[test]
    fn the_url_says_how_the_writer_opens_the_database() {
        assert!(!Open::from_url("sqlite://portico.db").unwrap().memory);
        assert!(Open::from_url("sqlite::memory:").unwrap().memory);
        let vfs = Open::from_url("sqlite://x.db?mode=rwc&vfs=unix-dotfile").unwrap();
        assert_eq!(vfs.vfs.as_deref(), Some("unix-dotfile"));
        for (url, named) in [
            ("sqlite://x.db?mode=ro", "mode=ro"),
            ("sqlite://x.db?immutable=1", "immutable=1"),
            ("sqlite::memory:?cache=private", "cache=private"),
        ] {
            let e = Open::from_url(url).unwrap_err().to_string();
            assert!(
                e.contains(named) && e.contains("leave it out"),
                "{url}: {e}"
            );
        }
    }
}
