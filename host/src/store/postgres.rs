//! PostgreSQL backend: the store of several Portico processes on one database.
//! Only SQL lives here; the rules are in `store::rules`.
//!
//! What differs from SQLite, and why:
//! - claims take rows with `FOR UPDATE SKIP LOCKED`, so two processes polling
//!   at once take different rows and neither waits on the other;
//! - a read that precedes a write of the same row (`item_event`, `message`,
//!   `outbox_row`, …) locks it (`FOR UPDATE`), so the rules' read-then-write
//!   is atomic against other processes too (SQLite gets this from its one writer);
//! - a contact is upserted in one statement, which also locks it until commit,
//!   so two processes cannot open two cases for one contact;
//! - several committers run at once (`writers`): PostgreSQL takes concurrent
//!   writers, and each commit waits on a network round trip.

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
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeInfo, PgValueFormat,
    PgValueRef,
};
use sqlx::{Decode, Encode, Postgres, Row, Transaction, Type};
use std::str::FromStr;
use std::time::Duration;

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

/// Settings Portico reads from a `postgres://` URL's query, besides libpq's own
/// (`sslmode`, `sslrootcert`, `application_name`, …, which go to the driver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `max_connections`: connections this process opens at most (default 10).
    pub max_connections: u32,
    /// `statement_timeout`: PostgreSQL cancels a statement running longer
    /// (default 30s; a number is milliseconds, or give a unit: `5s`, `1min`).
    pub statement_timeout: String,
    /// `acquire_timeout`: how long a request waits for a free connection before
    /// it is answered 503 (default 5s; humantime, e.g. `500ms`).
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            statement_timeout: "30s".into(),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Split a `postgres://` URL into the driver's URL and Portico's pool settings.
/// Errors name the parameter and its form; they never repeat the URL (it may
/// hold a password).
pub fn parse_url(url: &str) -> Result<(String, PoolSettings)> {
    let bad = |what: String| StoreError::BadUrl(what);
    let mut parsed = url::Url::parse(url).map_err(|e| {
        bad(format!(
            "not a URL ({e}): use postgres://USER:PASSWORD@HOST:PORT/DB"
        ))
    })?;
    let mut settings = PoolSettings::default();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "max_connections" | "pool_max_connections" => {
                settings.max_connections = value
                    .parse()
                    .ok()
                    .filter(|n| (2..=1000).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "max_connections={value} is not a number from 2 to 1000"
                        ))
                    })?;
            }
            "statement_timeout" => {
                // No spaces: the value travels in the startup `options`.
                let ok = !value.is_empty()
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
                if !ok {
                    return Err(bad(format!(
                        "statement_timeout={value} is not a duration: use milliseconds or a unit, e.g. 30s"
                    )));
                }
                settings.statement_timeout = value.to_string();
            }
            "acquire_timeout" => {
                settings.acquire_timeout = humantime::parse_duration(&value).map_err(|_| {
                    bad(format!(
                        "acquire_timeout={value} is not a duration: e.g. 5s or 500ms"
                    ))
                })?;
            }
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.to_string(), settings))
}

pub struct PostgresBackend {
    pool: PgPool,
    writers: usize,
}

impl PostgresBackend {
    pub async fn connect(url: &str) -> Result<Self> {
        let (driver_url, settings) = parse_url(url)?;
        let mut options = PgConnectOptions::from_str(&driver_url)?.options([
            ("statement_timeout", settings.statement_timeout.as_str()),
            // A row another process holds is waited for this long, not for the
            // whole statement timeout: the batch then fails and its jobs run
            // alone, instead of every committer queueing behind one lock.
            ("lock_timeout", "5s"),
        ]);
        if options.get_application_name().is_none() {
            options = options.application_name("portico");
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A connection that died with the server is found out before use,
            // so serving resumes by itself once the server is back.
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        // Committers each hold a connection for a whole batch: leave room for
        // reads, claims of the health route and the CLI's.
        let writers = (settings.max_connections as usize / 2).clamp(1, 8);
        Ok(PostgresBackend { pool, writers })
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// `timestamptz`.
const TIMESTAMPTZ: Oid = Oid(1184);

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ)
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        ty.oid() == Some(TIMESTAMPTZ)
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> std::result::Result<IsNull, BoxDynError> {
        let micros = self
            .unix_millis()
            .saturating_mul(1000)
            .saturating_sub(PG_EPOCH_MICROS);
        buf.extend(&micros.to_be_bytes());
        Ok(IsNull::No)
    }
}

impl Decode<'_, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'_>) -> std::result::Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
                let micros = i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_MICROS);
                Ok(Timestamp::from_unix_millis(micros.div_euclid(1000)))
            }
            PgValueFormat::Text => {
                Err("a timestamptz came in text format; Portico reads binary".into())
            }
        }
    }
}

super::rows::row_readers!(PgRow);

/// The columns `source_row` reads.
macro_rules! source_columns {
    () => {
        "id, tenant_id, kind, external_key, settings_json, secret_names, secrets_sealed, created_at"
    };
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    async fn migrate(&self) -> Result<()> {
        // sqlx holds an advisory lock while it migrates: processes starting
        // together apply each migration once, the others wait and find it done.
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn writers(&self) -> usize {
        self.writers
    }

    fn single_process(&self) -> bool {
        false
    }

    async fn begin(&self, durability: Durability) -> Result<Box<dyn Tx>> {
        let mut tx = self.pool.begin().await?;
        if durability == Durability::Deferred {
            // This transaction only: its commit returns before the WAL is
            // flushed; the next synchronous commit flushes it (WAL order).
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(Box::new(PgTx { tx }))
    }

    async fn source_key(&self, tenant_id: i64, kind: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT external_key FROM lead_sources WHERE tenant_id = $1 AND kind = $2 ORDER BY id LIMIT 1",
        )
        .bind(tenant_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn sources_of_kind(&self, kind: &str, limit: u32) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT tenant_id, external_key FROM lead_sources WHERE kind = $1 ORDER BY id LIMIT $2",
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
            " FROM lead_sources WHERE ($1::bigint IS NULL OR tenant_id = $1) ORDER BY id"
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
            " FROM lead_sources WHERE kind = $1 AND external_key = $2"
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
            " FROM webhook_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(event_row).transpose()
    }

    async fn events(&self, f: &EventFilter) -> Result<Vec<EventRow>> {
        let statuses: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_string()).collect();
        macro_rules! select_events {
            ($bound:literal, $order:literal) => {
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM webhook_events
                     WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
                       AND ($2::text IS NULL OR source = $2)
                       AND ($3::timestamptz IS NULL OR created_at >= $3)
                       AND ($4::timestamptz IS NULL OR created_at <= $4)
                       AND ($6::bigint IS NULL OR parent_id = $6)
                       AND ($7::text IS NULL OR kind = $7)
                       AND id ",
                    $bound,
                    " $8
                     ORDER BY ",
                    $order,
                    " LIMIT $5"
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
            .bind(f.since)
            .bind(f.until)
            .bind(if f.limit > 0 { Some(f.limit) } else { None })
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
             WHERE source = $1 AND kind = $2 AND status = 'delivering'
               AND (lease_until IS NULL OR lease_until < $3)
             ORDER BY id"
        ))
        .bind(source)
        .bind(kind)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_row).collect()
    }
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
}

#[async_trait::async_trait]
impl Tx for PgTx {
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
        // SKIP LOCKED: rows another process is claiming (or finishing) right now
        // are left to it; the lease check is redone on the locked row's latest version.
        Ok(sqlx::query_scalar(
            "UPDATE webhook_events SET claimed_by = $1, lease_until = $2
             WHERE id IN (
               SELECT id FROM webhook_events
               WHERE ((status = 'failed' AND next_attempt_at <= $3) OR status = 'received')
                 AND (lease_until IS NULL OR lease_until < $3)
               ORDER BY COALESCE(next_attempt_at, created_at), id
               LIMIT $4
               FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(lease.owner)
        .bind(lease.until)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn release_leases(&mut self, owner: Option<&str>) -> Result<u64> {
        let events = sqlx::query(
            "UPDATE webhook_events SET claimed_by = NULL, lease_until = NULL
             WHERE lease_until IS NOT NULL AND ($1::text IS NULL OR claimed_by = $1)",
        )
        .bind(owner)
        .execute(&mut *self.tx)
        .await?;
        let outbox = sqlx::query(
            "UPDATE outbox SET claimed_by = NULL, lease_until = NULL
             WHERE lease_until IS NOT NULL AND ($1::text IS NULL OR claimed_by = $1)",
        )
        .bind(owner)
        .execute(&mut *self.tx)
        .await?;
        Ok(events.rows_affected() + outbox.rows_affected())
    }

    async fn prune_events(&mut self, before: Timestamp) -> Result<(u64, u64)> {
        let items = sqlx::query(
            "DELETE FROM webhook_events
             WHERE kind = 'item' AND status IN ('processed', 'ignored') AND updated_at < $1",
        )
        .bind(before)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        let deliveries = sqlx::query(
            "DELETE FROM webhook_events d
             WHERE kind = 'delivery' AND status IN ('processed', 'ignored') AND updated_at < $1
               AND NOT EXISTS (SELECT 1 FROM webhook_events c WHERE c.parent_id = d.id)",
        )
        .bind(before)
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
            "UPDATE outbox SET status = 'delivering', claimed_by = $1, lease_until = $2,
                 attempts = attempts + 1, updated_at = $3
             WHERE id IN (
               SELECT id FROM outbox
               WHERE source = $4 AND kind = $5 AND status = 'pending'
                 AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
                 AND (lease_until IS NULL OR lease_until < $3)
               ORDER BY id LIMIT $6
               FOR UPDATE SKIP LOCKED)
             RETURNING ",
            outbox_columns!()
        ))
        .bind(lease.owner)
        .bind(lease.until)
        .bind(now)
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
        Ok(sqlx::query_scalar(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(name)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn tenant_exists(&mut self, id: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(found.is_some())
    }

    async fn source_tenant(&mut self, kind: &str, key: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT tenant_id FROM lead_sources WHERE kind = $1 AND external_key = $2",
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
            "INSERT INTO lead_sources (tenant_id, kind, external_key, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(tenant_id)
        .bind(kind)
        .bind(key)
        .bind(now)
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
            "UPDATE lead_sources SET settings_json = $1, secret_names = $2, secrets_sealed = $3
             WHERE id = $4 AND (NOT $5 OR (settings_json = $6 AND secrets_sealed IS NOT DISTINCT FROM $7))",
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
        Ok(sqlx::query_scalar(
            "INSERT INTO webhook_events
               (source, kind, parent_id, correlation_id, payload_hash, payload, headers_json, dedup_key,
                item_kind, tenant_kind, tenant_key, status, claimed_by, lease_until, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'received', $12, $13, $14, $14)
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
        .bind(e.lease.map(|l| l.until))
        .bind(e.now)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn item_event(&mut self, source: &str, dedup_key: &str) -> Result<Option<EventState>> {
        let row = sqlx::query(
            "SELECT id, status, attempts, claimed_by, lease_until FROM webhook_events
             WHERE source = $1 AND dedup_key = $2 FOR UPDATE",
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
            "SELECT attempts = $4 AND (claimed_by IS NULL OR claimed_by = $2
                                      OR lease_until IS NULL OR lease_until <= $3)
             FROM webhook_events WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .bind(attempts)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(free.unwrap_or(false))
    }

    async fn lease_event(&mut self, id: i64, lease: Lease<'_>) -> Result<()> {
        sqlx::query("UPDATE webhook_events SET claimed_by = $1, lease_until = $2 WHERE id = $3")
            .bind(lease.owner)
            .bind(lease.until)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn end_event(&mut self, id: i64, end: &EventEnd<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_events SET status = $1, error = $2, attempts = attempts + 1,
               next_attempt_at = $3, claimed_by = NULL, lease_until = NULL, updated_at = $4
             WHERE id = $5",
        )
        .bind(end.status.as_str())
        .bind(end.error)
        .bind(end.next_attempt_at)
        .bind(end.now)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
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
        .bind(now)
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
        // One statement that always takes the contact's row lock (DO UPDATE),
        // so whoever comes second for the same contact waits for the first's
        // case to be committed, and joins it.
        let upsert = match key {
            ContactKey::Phone => {
                "INSERT INTO contacts (tenant_id, phone, name, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, phone) DO UPDATE SET name = COALESCE(EXCLUDED.name, contacts.name)
                 RETURNING id"
            }
            ContactKey::UserId => {
                "INSERT INTO contacts (tenant_id, user_id, name, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET name = COALESCE(EXCLUDED.name, contacts.name)
                 RETURNING id"
            }
        };
        Ok(sqlx::query_scalar(upsert)
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
            ContactKey::Phone => {
                "SELECT id FROM contacts WHERE tenant_id = $1 AND phone = $2 FOR UPDATE"
            }
            ContactKey::UserId => {
                "SELECT id FROM contacts WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE"
            }
        };
        Ok(sqlx::query_scalar(select)
            .bind(tenant_id)
            .bind(value)
            .fetch_optional(&mut *self.tx)
            .await?)
    }

    async fn set_contact_identity(&mut self, contact_id: i64, who: &ContactRef) -> Result<()> {
        sqlx::query(
            "UPDATE contacts SET phone = COALESCE($1, phone), user_id = COALESCE($2, user_id),
             parent_user_id = COALESCE($3, parent_user_id), username = COALESCE($4, username),
             name = COALESCE($5, name) WHERE id = $6",
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
            "SELECT id FROM cases WHERE contact_id = $1 AND status = 'open' LIMIT 1",
        )
        .bind(keep)
        .fetch_optional(&mut *self.tx)
        .await?;
        if keep_open.is_some() {
            sqlx::query(
                "UPDATE cases SET status = 'closed' WHERE contact_id = $1 AND status = 'open'",
            )
            .bind(gone)
            .execute(&mut *self.tx)
            .await?;
        }
        for sql in [
            "UPDATE cases SET contact_id = $1 WHERE contact_id = $2",
            "UPDATE messages SET contact_id = $1 WHERE contact_id = $2",
        ] {
            sqlx::query(sql)
                .bind(keep)
                .bind(gone)
                .execute(&mut *self.tx)
                .await?;
        }
        sqlx::query("DELETE FROM contacts WHERE id = $1")
            .bind(gone)
            .execute(&mut *self.tx)
            .await?;
        // What the kept contact lacked, the gone one had.
        sqlx::query(
            "UPDATE contacts SET phone = COALESCE(phone, $1::text), user_id = COALESCE(user_id, $2::text),
             parent_user_id = COALESCE(parent_user_id, $3::text), username = COALESCE(username, $4::text),
             name = COALESCE(name, $5::text) WHERE id = $6",
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
            "SELECT phone, user_id, parent_user_id, username, name FROM contacts WHERE id = $1",
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
            ContactKey::Phone => "UPDATE contacts SET phone = NULL WHERE id = $1",
            ContactKey::UserId => "UPDATE contacts SET user_id = NULL WHERE id = $1",
        };
        sqlx::query(sql)
            .bind(contact_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn lock_contact_keys(
        &mut self,
        tenant_id: i64,
        keys: &[(ContactKey, &str)],
    ) -> Result<()> {
        // Always in the same order, so two transactions cannot deadlock here.
        let mut names: Vec<String> = keys
            .iter()
            .map(|(key, value)| format!("portico:contact:{tenant_id}:{key:?}:{value}"))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(name)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn case_of_tenant(&mut self, case_id: i64, tenant_id: i64) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM cases WHERE id = $1 AND tenant_id = $2")
                .bind(case_id)
                .bind(tenant_id)
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(found.is_some())
    }

    async fn open_case(&mut self, tenant_id: i64, contact_id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM cases WHERE tenant_id = $1 AND contact_id = $2 AND status = 'open'
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
            "INSERT INTO cases (tenant_id, contact_id, status, created_at)
             VALUES ($1, $2, 'open', $3) RETURNING id",
        )
        .bind(tenant_id)
        .bind(contact_id)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO messages (tenant_id, contact_id, case_id, channel, direction, external_id, from_addr,
                to_addr, kind, body, media_id, status, provider_timestamp, reply_to, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
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
        .bind(m.now)
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
            "SELECT id FROM messages WHERE tenant_id = $1 AND channel = $2 AND external_id = $3 FOR UPDATE",
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
               body = CASE WHEN $1::text IS NOT NULL AND (edited_at IS NULL OR edited_at <= $2::timestamptz) THEN $1::text ELSE body END,
               edited_at = CASE WHEN $1::text IS NOT NULL AND (edited_at IS NULL OR edited_at <= $2::timestamptz) THEN $2::timestamptz ELSE edited_at END,
               deleted_at = COALESCE(deleted_at, $3::timestamptz)
             WHERE id = $4",
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
             WHERE tenant_id = $3 AND channel = $1 AND external_id = $2 AND direction = 'outbound'
             FOR UPDATE",
        )
        .bind(channel)
        .bind(external_id)
        .bind(tenant_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(message_state).transpose()
    }

    async fn message(&mut self, id: i64) -> Result<Option<MessageState>> {
        let row = sqlx::query(
            "SELECT id, status, external_id, error FROM messages WHERE id = $1 FOR UPDATE",
        )
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
            "UPDATE messages SET status = $1, external_id = COALESCE($2, external_id),
               error = COALESCE($3, error) WHERE id = $4",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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
        .bind(row.now)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn conversion_by_key(&mut self, key: &str) -> Result<Option<ConversionState>> {
        let row = sqlx::query(
            "SELECT id, status, error FROM conversion_uploads WHERE idempotency_key = $1 FOR UPDATE",
        )
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(conversion_state).transpose()
    }

    async fn conversion(&mut self, id: i64) -> Result<Option<ConversionState>> {
        let row = sqlx::query(
            "SELECT id, status, error FROM conversion_uploads WHERE id = $1 FOR UPDATE",
        )
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
            "UPDATE conversion_uploads SET status = $1, error = $2, attempts = attempts + 1,
               uploaded_at = CASE WHEN $1 = 'uploaded' THEN $3 ELSE uploaded_at END
             WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_outbox(&mut self, row: &NewOutbox<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO outbox (source, kind, idempotency_key, record_kind, record_id, tenant_id, payload,
                status, claimed_by, lease_until, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $10)
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
        .bind(row.lease.map(|l| l.until))
        .bind(row.now)
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
            " FROM outbox WHERE source = $1 AND kind = $2 AND idempotency_key = $3 FOR UPDATE"
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
            " FROM outbox WHERE id = $1 FOR UPDATE"
        ))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(outbox_row).transpose()
    }

    async fn start_outbox(&mut self, id: i64, lease: Lease<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET status = 'delivering', claimed_by = $1, lease_until = $2,
               attempts = attempts + 1 WHERE id = $3",
        )
        .bind(lease.owner)
        .bind(lease.until)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn end_outbox(&mut self, id: i64, end: &OutboxEnd<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET status = $1, error = $2, external_id = COALESCE($3, external_id),
               next_attempt_at = $4, claimed_by = NULL, lease_until = NULL, updated_at = $5,
               attempts = GREATEST(attempts - $7, 0)
             WHERE id = $6",
        )
        .bind(end.status.as_str())
        .bind(end.error)
        .bind(end.external_id)
        .bind(end.next_attempt_at)
        .bind(end.now)
        .bind(id)
        .bind(i64::from(end.uncount_attempt))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_settings_come_off_the_url_and_the_rest_goes_to_the_driver() {
        let (driver, s) = parse_url(
            "postgres://app:s3cret@db:5432/portico?sslmode=require&max_connections=32&statement_timeout=5s",
        )
        .unwrap();
        assert_eq!(
            driver,
            "postgres://app:s3cret@db:5432/portico?sslmode=require"
        );
        assert_eq!(s.max_connections, 32);
        assert_eq!(s.statement_timeout, "5s");
        let (driver, s) = parse_url("postgres://db/portico").unwrap();
        assert_eq!(driver, "postgres://db/portico");
        assert_eq!(s, PoolSettings::default());
    }

    #[test]
    fn a_bad_pool_setting_is_named_and_the_password_is_not_repeated() {
        for bad in [
            "postgres://app:s3cret@db/p?max_connections=lots",
            "postgres://app:s3cret@db/p?statement_timeout=5;drop",
            "postgres://app:s3cret@db/p?acquire_timeout=soon",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
            let key = bad.split('?').nth(1).unwrap().split('=').next().unwrap();
            assert!(e.contains(key), "{e} should name {key}");
        }
    }

    #[test]
    fn timestamps_round_trip_through_postgres_epoch() {
        let t = Timestamp::from_unix_millis(1_764_000_000_123);
        let micros = t.unix_millis() * 1000 - PG_EPOCH_MICROS;
        let back = Timestamp::from_unix_millis((micros + PG_EPOCH_MICROS).div_euclid(1000));
        assert_eq!(back, t);
        let before_2000 = Timestamp::from_unix_millis(-1);
        let micros = before_2000.unix_millis() * 1000 - PG_EPOCH_MICROS;
        assert_eq!(
            Timestamp::from_unix_millis((micros + PG_EPOCH_MICROS).div_euclid(1000)),
            before_2000
        );
    }
}
