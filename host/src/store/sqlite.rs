//! SQLite backend: one file in WAL mode, synchronous=FULL so a committed
//! delivery survives a power cut, a busy timeout so writers queue instead of failing.

use super::{
    Applied, Backlog, DlqStats, EventFilter, EventRow, FailState, ItemSlot, NewDelivery, RecordRef,
    RowEnd, StoreError,
};
use crate::domain::{DomainOp, ParsedItem, TenantRef};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// The current time as stored: UTC RFC 3339 with milliseconds (a literal so SQL stays static).
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// The columns of an [`EventRow`], in one place.
macro_rules! event_columns {
    () => {
        "id, source, kind, parent_id, correlation_id, payload, headers_json, dedup_key, item_kind,
         tenant_kind, tenant_key, status, error, attempts, next_attempt_at, created_at, updated_at"
    };
}

/// Write transactions take SQLite's write lock up front. A deferred transaction
/// that reads and then writes fails at once with SQLITE_BUSY (no busy wait) when
/// another writer committed in between; an immediate one waits its turn.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// Lower-case hex sha256 of a payload.
pub fn payload_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn create_tenant(&self, name: &str) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar("INSERT INTO tenants (name) VALUES (?) RETURNING id")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    pub async fn source_key(
        &self,
        tenant_id: i64,
        kind: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = sqlx::query_scalar("SELECT external_key FROM lead_sources WHERE tenant_id = ? AND kind = ? ORDER BY id LIMIT 1")
            .bind(tenant_id)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?;
        Ok(key)
    }

    pub async fn add_lead_source(
        &self,
        tenant_id: i64,
        kind: &str,
        key: &str,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = ?")
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::TenantNotFound(tenant_id));
        }
        let owner: Option<i64> = sqlx::query_scalar(
            "SELECT tenant_id FROM lead_sources WHERE kind = ? AND external_key = ?",
        )
        .bind(kind)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(owner) = owner {
            return Err(StoreError::DuplicateSource {
                kind: kind.to_string(),
                key: key.to_string(),
                tenant_id: owner,
            });
        }
        let id = sqlx::query_scalar(
            "INSERT INTO lead_sources (tenant_id, kind, external_key) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(tenant_id)
        .bind(kind)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn insert_delivery(&self, d: &NewDelivery<'_>) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO webhook_events (source, kind, correlation_id, payload_hash, payload, headers_json, status,
                                         claimed_by, lease_until)
             VALUES (?, 'delivery', ?, ?, ?, ?, 'received', ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?))
             RETURNING id",
        )
        .bind(d.source)
        .bind(d.correlation_id)
        .bind(payload_hash(d.payload))
        .bind(d.payload)
        .bind(&d.headers_json)
        .bind(d.lease_owner)
        .bind(format!("+{} seconds", d.lease_secs))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn split_delivery(
        &self,
        delivery_id: i64,
        source: &str,
        correlation_id: &str,
        items: &[ParsedItem],
    ) -> Result<Vec<ItemSlot>, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let mut slots = Vec::with_capacity(items.len());
        for item in items {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO webhook_events
                   (source, kind, parent_id, correlation_id, payload_hash, payload, dedup_key,
                    item_kind, tenant_kind, tenant_key, status, claimed_by, lease_until)
                 SELECT ?1, 'item', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'received', p.claimed_by, p.lease_until
                 FROM webhook_events p WHERE p.id = ?2
                 ON CONFLICT (source, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
                 RETURNING id",
            )
            .bind(source)
            .bind(delivery_id)
            .bind(correlation_id)
            .bind(payload_hash(&item.payload))
            .bind(&item.payload)
            .bind(&item.dedup_key)
            .bind(&item.kind)
            .bind(item.tenant.as_ref().map(|t| t.kind.as_str()))
            .bind(item.tenant.as_ref().map(|t| t.key.as_str()))
            .fetch_optional(&mut *tx)
            .await?;
            let slot = match inserted {
                Some(id) => ItemSlot::New(id),
                None => existing_slot(&mut tx, source, &item.dedup_key).await?,
            };
            slots.push(slot);
        }
        sqlx::query(concat!(
            "UPDATE webhook_events SET status = 'processed', error = NULL, attempts = attempts + 1,
               next_attempt_at = NULL, claimed_by = NULL, lease_until = NULL, updated_at = ",
            now!(),
            " WHERE id = ?"
        ))
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(slots)
    }

    pub async fn apply_item(
        &self,
        event_id: i64,
        source: &str,
        tenant: Option<&TenantRef>,
        ops: &[DomainOp],
    ) -> Result<Applied, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // The item's tenant through lead_sources: required for leads, optional for conversions.
        let mapped: Option<i64> = match tenant {
            Some(t) => {
                sqlx::query_scalar(
                    "SELECT tenant_id FROM lead_sources WHERE kind = ? AND external_key = ?",
                )
                .bind(&t.kind)
                .bind(&t.key)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let tenant_id = if ops.iter().any(DomainOp::needs_tenant) {
            let t = tenant.ok_or(StoreError::MissingTenant)?;
            Some(mapped.ok_or_else(|| StoreError::UnknownTenant {
                kind: t.kind.clone(),
                key: t.key.clone(),
            })?)
        } else {
            mapped
        };
        let mut records = Vec::new();
        let mut created = 0;
        let mut ignored = Vec::new();
        let mut ignored_owned: Vec<String> = Vec::new();
        for op in ops {
            match op {
                DomainOp::CreateLead(lead) => {
                    let r = sqlx::query(
                        "INSERT INTO leads (tenant_id, source, external_id, form_id, ad_id, campaign_id,
                            full_name, email, phone, fields_json)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
                    .execute(&mut *tx)
                    .await?;
                    created += r.rows_affected();
                }
                DomainOp::QueueConversion(c) => {
                    let owner = match c.tenant_id {
                        Some(id) => {
                            let exists: Option<i64> =
                                sqlx::query_scalar("SELECT id FROM tenants WHERE id = ?")
                                    .bind(id)
                                    .fetch_optional(&mut *tx)
                                    .await?;
                            Some(exists.ok_or(StoreError::TenantNotFound(id))?)
                        }
                        None => tenant_id,
                    };
                    let status = if c.upload { "pending" } else { "logged" };
                    let r = sqlx::query(
                        "INSERT INTO conversion_uploads (tenant_id, click_id_kind, click_id, conversion_time, value,
                            currency, conversion_action, order_id, idempotency_key, status, source)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                         ON CONFLICT (idempotency_key) DO NOTHING",
                    )
                    .bind(owner)
                    .bind(&c.click_id_kind)
                    .bind(&c.click_id)
                    .bind(&c.conversion_time)
                    .bind(c.value)
                    .bind(&c.currency)
                    .bind(&c.conversion_action)
                    .bind(&c.order_id)
                    .bind(&c.idempotency_key)
                    .bind(status)
                    .bind(source)
                    .execute(&mut *tx)
                    .await?;
                    created += r.rows_affected();
                    let row = sqlx::query(
                        "SELECT id, status FROM conversion_uploads WHERE idempotency_key = ?",
                    )
                    .bind(&c.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await?;
                    records.push(RecordRef {
                        table: "conversion_uploads",
                        id: row.try_get("id")?,
                        status: Some(row.try_get("status")?),
                        external_id: None,
                        error: None,
                    });
                }
                DomainOp::RecordInbound(m) => {
                    let tenant = tenant_id.ok_or(StoreError::MissingTenant)?;
                    let contact = upsert_contact(
                        &mut tx,
                        tenant,
                        &m.contact_phone,
                        m.contact_name.as_deref(),
                    )
                    .await?;
                    let case = open_case(&mut tx, tenant, contact, None).await?;
                    let r = sqlx::query(
                        "INSERT INTO messages (tenant_id, contact_id, case_id, channel, direction, external_id, from_addr,
                            to_addr, kind, body, media_id, status, provider_timestamp, reply_to)
                         VALUES (?, ?, ?, ?, 'inbound', ?, ?, ?, ?, ?, ?, 'received', ?, ?)
                         ON CONFLICT (channel, external_id) DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(contact)
                    .bind(case)
                    .bind(&m.channel)
                    .bind(&m.external_id)
                    .bind(&m.contact_phone)
                    .bind(&m.to_addr)
                    .bind(&m.kind)
                    .bind(&m.body)
                    .bind(&m.media_id)
                    .bind(m.sent_at)
                    .bind(&m.reply_to)
                    .execute(&mut *tx)
                    .await?;
                    created += r.rows_affected();
                }
                DomainOp::UpdateStatus(u) => {
                    // Statuses arrive out of order: only ever move forward.
                    let r = sqlx::query(
                        "UPDATE messages SET status = ?, error = COALESCE(?, error)
                         WHERE channel = ? AND external_id = ? AND direction = 'outbound'
                           AND (CASE ? WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3
                                       WHEN 'played' THEN 4 WHEN 'failed' THEN 5 ELSE 0 END)
                             > (CASE COALESCE(status, '') WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3
                                       WHEN 'played' THEN 4 WHEN 'failed' THEN 5 ELSE 0 END)",
                    )
                    .bind(&u.status)
                    .bind(&u.error)
                    .bind(&u.channel)
                    .bind(&u.external_id)
                    .bind(&u.status)
                    .execute(&mut *tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        let current: Option<Option<String>> = sqlx::query_scalar(
                            "SELECT status FROM messages WHERE channel = ? AND external_id = ? AND direction = 'outbound'",
                        )
                        .bind(&u.channel)
                        .bind(&u.external_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        ignored_owned.push(match current {
                            None => format!("status {:?} for unknown message {}: no outbound message has that id", u.status, u.external_id),
                            Some(now) => format!(
                                "status {:?} for {} arrived after {:?}: statuses never move backwards",
                                u.status,
                                u.external_id,
                                now.unwrap_or_default()
                            ),
                        });
                    }
                }
                DomainOp::RecordOutbound(m) => {
                    let contact = upsert_contact(&mut tx, m.tenant_id, &m.to_addr, None).await?;
                    let case = open_case(&mut tx, m.tenant_id, contact, m.case_id).await?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO messages (tenant_id, contact_id, case_id, channel, direction, external_id, from_addr,
                            to_addr, kind, body, status, error)
                         VALUES (?, ?, ?, ?, 'outbound', ?, ?, ?, 'text', ?, ?, ?)
                         ON CONFLICT (channel, external_id) DO UPDATE SET status = messages.status
                         RETURNING id",
                    )
                    .bind(m.tenant_id)
                    .bind(contact)
                    .bind(case)
                    .bind(&m.channel)
                    .bind(&m.external_id)
                    .bind(&m.from_addr)
                    .bind(&m.to_addr)
                    .bind(&m.body)
                    .bind(&m.status)
                    .bind(&m.error)
                    .fetch_one(&mut *tx)
                    .await?;
                    created += 1;
                    records.push(RecordRef {
                        table: "messages",
                        id,
                        status: Some(m.status.clone()),
                        external_id: m.external_id.clone(),
                        error: m.error.clone(),
                    });
                }
                DomainOp::Ignore { reason } => ignored.push(reason.as_str()),
            }
        }

        let mut ignored: Vec<String> = ignored.into_iter().map(str::to_string).collect();
        ignored.extend(ignored_owned);
        let only_ignored = !ops.is_empty() && ignored.len() == ops.len();
        let (status, note) = if only_ignored || ops.is_empty() {
            let reason = if ops.is_empty() {
                "the adapter returned no operations for this item".to_string()
            } else {
                ignored.join("; ")
            };
            ("ignored", Some(reason))
        } else {
            ("processed", None)
        };
        sqlx::query(concat!(
            "UPDATE webhook_events SET status = ?, error = ?, attempts = attempts + 1,
               next_attempt_at = NULL, claimed_by = NULL, lease_until = NULL, updated_at = ",
            now!(),
            " WHERE id = ?"
        ))
        .bind(status)
        .bind(&note)
        .bind(event_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match note {
            Some(reason) if status == "ignored" => Applied::Ignored(reason),
            _ => Applied::Processed { created, records },
        })
    }

    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        let statuses = serde_json::to_string(&f.statuses).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM webhook_events
             WHERE (json_array_length(?1) = 0 OR status IN (SELECT value FROM json_each(?1)))
               AND (?2 IS NULL OR source = ?2)
               AND (?3 IS NULL OR created_at >= ?3)
               AND (?4 IS NULL OR created_at <= ?4)
             ORDER BY id LIMIT ?5"
        ))
        .bind(&statuses)
        .bind(&f.source)
        .bind(&f.since)
        .bind(&f.until)
        .bind(if f.limit > 0 { f.limit } else { i64::MAX })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    pub async fn get_event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
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

    pub async fn due_conversions(
        &self,
        source: &str,
        limit: i64,
    ) -> Result<Vec<(i64, Vec<u8>, i64)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT id, click_id_kind, click_id, conversion_time, value, currency, conversion_action,
                    order_id, attempts
             FROM conversion_uploads
             WHERE source = ? AND status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ",
            now!(),
            ") ORDER BY id LIMIT ?"
        ))
        .bind(source)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let payload = serde_json::json!({
                    "id": r.try_get::<i64, _>("id")?,
                    "click_id_kind": r.try_get::<String, _>("click_id_kind")?,
                    "click_id": r.try_get::<String, _>("click_id")?,
                    "conversion_time": r.try_get::<String, _>("conversion_time")?,
                    "value": r.try_get::<Option<f64>, _>("value")?,
                    "currency": r.try_get::<Option<String>, _>("currency")?,
                    "conversion_action": r.try_get::<Option<String>, _>("conversion_action")?,
                    "order_id": r.try_get::<Option<String>, _>("order_id")?,
                });
                Ok((
                    r.try_get("id")?,
                    payload.to_string().into_bytes(),
                    r.try_get("attempts")?,
                ))
            })
            .collect()
    }

    pub async fn end_conversions(&self, ends: &[(i64, RowEnd)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        for (id, end) in ends {
            let (status, error, later): (&str, Option<&str>, Option<String>) = match end {
                RowEnd::Uploaded => ("uploaded", None, None),
                RowEnd::Failed(e) => ("failed", Some(e.as_str()), None),
                RowEnd::Later { secs, error } => (
                    "pending",
                    Some(error.as_str()),
                    Some(format!("+{secs} seconds")),
                ),
            };
            sqlx::query(concat!(
                "UPDATE conversion_uploads SET status = ?, error = ?, attempts = attempts + 1,
                   uploaded_at = CASE WHEN ? = 'uploaded' THEN ",
                now!(),
                " ELSE uploaded_at END,
                   next_attempt_at = CASE WHEN ? IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) END
                 WHERE id = ?"
            ))
            .bind(status)
            .bind(error)
            .bind(status)
            .bind(&later)
            .bind(&later)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn conversion_backlog(&self) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending,
                    (julianday('now') - julianday(MIN(created_at))) * 86400.0 AS oldest
             FROM conversion_uploads WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            pending: row.try_get("pending")?,
            oldest_pending_age_seconds: row.try_get("oldest")?,
        })
    }

    pub async fn claim_due(
        &self,
        owner: &str,
        lease_secs: u64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        // One statement: the claim is atomic. PostgreSQL's version selects the ids
        // FOR UPDATE SKIP LOCKED so concurrent workers pass over each other's rows.
        let ids = sqlx::query_scalar(concat!(
            "UPDATE webhook_events SET claimed_by = ?1, lease_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2)
             WHERE id IN (
               SELECT id FROM webhook_events
               WHERE ((status = 'failed' AND next_attempt_at <= ",
            now!(),
            ") OR status = 'received')
                 AND (lease_until IS NULL OR lease_until < ",
            now!(),
            ")
               ORDER BY COALESCE(next_attempt_at, created_at), id
               LIMIT ?3)
             RETURNING id"
        ))
        .bind(owner)
        .bind(format!("+{lease_secs} seconds"))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE webhook_events SET claimed_by = NULL, lease_until = NULL WHERE lease_until IS NOT NULL")
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn dlq_stats(&self) -> Result<DlqStats, StoreError> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM webhook_events WHERE status = 'failed') AS failed,
               (SELECT COUNT(*) FROM webhook_events WHERE status = 'dead') AS dead,
               (SELECT (julianday('now') - julianday(MIN(created_at))) * 86400.0
                  FROM webhook_events WHERE status = 'failed') AS oldest",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(DlqStats {
            failed: row.try_get("failed")?,
            dead: row.try_get("dead")?,
            oldest_failed_age_seconds: row.try_get("oldest")?,
        })
    }

    pub async fn prune(&self, days: u32) -> Result<(u64, u64), StoreError> {
        let cutoff = format!("-{days} days");
        let items = sqlx::query(
            "DELETE FROM webhook_events
             WHERE kind = 'item' AND status IN ('processed', 'ignored')
               AND updated_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
        )
        .bind(&cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let deliveries = sqlx::query(
            "DELETE FROM webhook_events
             WHERE kind = 'delivery' AND status IN ('processed', 'ignored')
               AND updated_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)
               AND NOT EXISTS (SELECT 1 FROM webhook_events c WHERE c.parent_id = webhook_events.id)",
        )
        .bind(&cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((items, deliveries))
    }

    pub async fn fail_event(
        &self,
        event_id: i64,
        state: FailState,
        error: &str,
    ) -> Result<(), StoreError> {
        let (status, next) = match state {
            FailState::Failed { retry_in_secs } => {
                ("failed", Some(format!("+{retry_in_secs} seconds")))
            }
            FailState::Dead => ("dead", None),
        };
        sqlx::query(concat!(
            "UPDATE webhook_events SET status = ?, error = ?, attempts = attempts + 1,
               next_attempt_at = CASE WHEN ? IS NULL THEN NULL
                                      ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) END,
               claimed_by = NULL, lease_until = NULL, updated_at = ",
            now!(),
            " WHERE id = ?"
        ))
        .bind(status)
        .bind(error)
        .bind(&next)
        .bind(&next)
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn event_row(row: &SqliteRow) -> Result<EventRow, StoreError> {
    let tenant_kind: Option<String> = row.try_get("tenant_kind")?;
    let tenant_key: Option<String> = row.try_get("tenant_key")?;
    Ok(EventRow {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        kind: row.try_get("kind")?,
        parent_id: row.try_get("parent_id")?,
        correlation_id: row.try_get("correlation_id")?,
        payload: row.try_get("payload")?,
        headers_json: row.try_get("headers_json")?,
        dedup_key: row.try_get("dedup_key")?,
        item_kind: row.try_get("item_kind")?,
        tenant: tenant_kind
            .zip(tenant_key)
            .map(|(kind, key)| TenantRef { kind, key }),
        status: row.try_get("status")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The contact with this phone for the tenant, created when missing; a new name replaces the old.
async fn upsert_contact(
    tx: &mut Transaction<'_, Sqlite>,
    tenant_id: i64,
    phone: &str,
    name: Option<&str>,
) -> Result<i64, StoreError> {
    let id = sqlx::query_scalar(
        "INSERT INTO contacts (tenant_id, phone, name) VALUES (?, ?, ?)
         ON CONFLICT (tenant_id, phone) DO UPDATE SET name = COALESCE(excluded.name, contacts.name)
         RETURNING id",
    )
    .bind(tenant_id)
    .bind(phone)
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// The case to file a message under: `wanted` (checked to be the tenant's), else the
/// contact's open case, else a new open case.
async fn open_case(
    tx: &mut Transaction<'_, Sqlite>,
    tenant_id: i64,
    contact_id: i64,
    wanted: Option<i64>,
) -> Result<i64, StoreError> {
    if let Some(case_id) = wanted {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM cases WHERE id = ? AND tenant_id = ?")
                .bind(case_id)
                .bind(tenant_id)
                .fetch_optional(&mut **tx)
                .await?;
        return found.ok_or(StoreError::CaseNotFound { case_id, tenant_id });
    }
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM cases WHERE tenant_id = ? AND contact_id = ? AND status = 'open' ORDER BY id DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(contact_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = open {
        return Ok(id);
    }
    let id = sqlx::query_scalar(
        "INSERT INTO cases (tenant_id, contact_id, status) VALUES (?, ?, 'open') RETURNING id",
    )
    .bind(tenant_id)
    .bind(contact_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

async fn existing_slot(
    tx: &mut Transaction<'_, Sqlite>,
    source: &str,
    dedup_key: &str,
) -> Result<ItemSlot, StoreError> {
    let row =
        sqlx::query("SELECT id, status FROM webhook_events WHERE source = ? AND dedup_key = ?")
            .bind(source)
            .bind(dedup_key)
            .fetch_one(&mut **tx)
            .await?;
    let id: i64 = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    Ok(match status.as_str() {
        "processed" | "ignored" => ItemSlot::Duplicate { id, status },
        _ => ItemSlot::Again {
            id,
            attempts: row.try_get("attempts")?,
        },
    })
}
