//! SQLite backend: one file in WAL mode, synchronous=FULL so a committed
//! delivery survives a power cut, a busy timeout so writers queue instead of
//! failing. Only SQL lives here; the rules are in `store::rules`. Reads and
//! migrations go through an sqlx pool; write transactions through one
//! connection of their own ([`writer`]).
//!
//! Times are stored as RFC 3339 UTC text with milliseconds (the format of the
//! schema's `strftime` defaults), so text order is time order.

use super::StoreError;
use super::backend::{
    Backend, ConversionState, Durability, EventCounts, EventFilter, EventRow, EventState,
    MessageState, OutboxBacklog, OutboxRow, Result, SourceRow, Tx, cursor_bound,
};
use super::types::Timestamp;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, Row, Sqlite, Type};
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

mod writer;

/// How long a write waits for SQLite's lock held by another process (a CLI
/// command) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteBackend {
    /// Reads (and migrations).
    pool: SqlitePool,
    /// The one connection every write transaction runs on (the committer runs
    /// one at a time). One connection keeps its page cache warm: SQLite drops
    /// a connection's whole cache when another connection wrote since its last
    /// transaction, and writes spread over the pool's connections paid for it
    /// with a read of every page they touched.
    writer: writer::Writer,
}

impl SqliteBackend {
    pub async fn connect(url: &str) -> Result<Self> {
        let open = writer::Open::from_url(url)?;
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
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
        // After the pool: its first connection created the file and set WAL.
        let writer = writer::Writer::open(options.get_filename(), &open, BUSY_TIMEOUT)?;
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

    fn writes_block(&self) -> bool {
        true
    }

    async fn begin(&self, durability: Durability) -> Result<Box<dyn Tx>> {
        self.writer.begin(durability).await
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
        // 2 = FULL, 1 = NORMAL.
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
            assert_eq!(db.writer.sync_level().await, expected, "after write {n}");
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
        drop(db);

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

    /// `sqlite::memory:` is one database for the read pool and the writer
    /// (sqlx names it and shares it through SQLite's shared cache; the writer
    /// opens that same name).
    #[tokio::test]
    async fn an_in_memory_database_is_one_database_for_reads_and_writes() {
        for url in ["sqlite::memory:", "sqlite::memory:?cache=shared"] {
            let db = SqliteBackend::connect(url).await.unwrap();
            db.migrate().await.unwrap();
            let mut tx = db.begin(Durability::Synced).await.unwrap();
            tx.insert_tenant("in memory", Timestamp::now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let seen: Vec<String> = db
                .tenants()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.1)
                .collect();
            assert_eq!(seen, vec!["in memory".to_string()], "{url}");
        }
    }
}
