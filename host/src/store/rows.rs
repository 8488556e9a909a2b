//! Reading rows into the seam's types, once for every backend: the columns are
//! the same in each dialect, and [`Timestamp`](super::types::Timestamp) decodes
//! from each (SQLite: RFC 3339 text; PostgreSQL: `timestamptz`), so a backend
//! only names its row type: `row_readers!(SqliteRow)`. Not every reader is used
//! by every row type (a backend's reads and its write transactions read
//! different shapes), hence the `dead_code` allowances.

/// Defines `get_enum`, `event_row`, `event_state`, `outbox_row`,
/// `message_state`, `conversion_state`, `source_row` and `outbox_backlog_row`
/// for rows of type `$row`.
macro_rules! row_readers {
    ($row:ty) => {
        #[allow(dead_code)]
        fn get_enum<E: std::str::FromStr<Err = $crate::store::types::UnknownName>>(
            row: &$row,
            col: &str,
        ) -> Result<E> {
            row.try_get::<String, _>(col)?
                .parse()
                .map_err(|e: $crate::store::types::UnknownName| StoreError::Corrupt(e.to_string()))
        }

        #[allow(dead_code)]
        fn event_row(row: &$row) -> Result<EventRow> {
            let tenant_kind: Option<String> = row.try_get("tenant_kind")?;
            let tenant_key: Option<String> = row.try_get("tenant_key")?;
            Ok(EventRow {
                id: row.try_get("id")?,
                source: row.try_get("source")?,
                kind: get_enum(row, "kind")?,
                parent_id: row.try_get("parent_id")?,
                correlation_id: row.try_get("correlation_id")?,
                payload: row.try_get("payload")?,
                headers_json: row.try_get("headers_json")?,
                dedup_key: row.try_get("dedup_key")?,
                item_kind: row.try_get("item_kind")?,
                tenant: tenant_kind
                    .zip(tenant_key)
                    .map(|(kind, key)| crate::domain::TenantRef { kind, key }),
                status: get_enum(row, "status")?,
                error: row.try_get("error")?,
                attempts: row.try_get("attempts")?,
                next_attempt_at: row.try_get("next_attempt_at")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        #[allow(dead_code)]
        fn event_state(row: &$row) -> Result<EventState> {
            Ok(EventState {
                id: row.try_get("id")?,
                status: get_enum(row, "status")?,
                attempts: row.try_get("attempts")?,
                claimed_by: row.try_get("claimed_by")?,
                lease_until: row.try_get("lease_until")?,
            })
        }

        #[allow(dead_code)]
        fn outbox_row(row: &$row) -> Result<OutboxRow> {
            Ok(OutboxRow {
                id: row.try_get("id")?,
                source: row.try_get("source")?,
                kind: row.try_get("kind")?,
                record_kind: get_enum(row, "record_kind")?,
                record_id: row.try_get("record_id")?,
                payload: row.try_get("payload")?,
                status: get_enum(row, "status")?,
                attempts: row.try_get("attempts")?,
                claimed_by: row.try_get("claimed_by")?,
                lease_until: row.try_get("lease_until")?,
            })
        }

        #[allow(dead_code)]
        fn message_state(row: &$row) -> Result<MessageState> {
            Ok(MessageState {
                id: row.try_get("id")?,
                status: get_enum(row, "status")?,
                external_id: row.try_get("external_id")?,
                error: row.try_get("error")?,
            })
        }

        #[allow(dead_code)]
        fn conversion_state(row: &$row) -> Result<ConversionState> {
            Ok(ConversionState {
                id: row.try_get("id")?,
                status: get_enum(row, "status")?,
                error: row.try_get("error")?,
            })
        }

        #[allow(dead_code)]
        fn source_row(row: &$row) -> Result<SourceRow> {
            Ok(SourceRow {
                id: row.try_get("id")?,
                tenant_id: row.try_get("tenant_id")?,
                kind: row.try_get("kind")?,
                external_key: row.try_get("external_key")?,
                settings_json: row.try_get("settings_json")?,
                secret_names: row.try_get("secret_names")?,
                secrets_sealed: row.try_get("secrets_sealed")?,
                created_at: row.try_get("created_at")?,
            })
        }

        #[allow(dead_code)]
        fn outbox_backlog_row(row: &$row) -> Result<OutboxBacklog> {
            Ok(OutboxBacklog {
                source: row.try_get("source")?,
                kind: row.try_get("kind")?,
                pending: row.try_get("pending")?,
                oldest: row.try_get("oldest")?,
            })
        }
    };
}

pub(super) use row_readers;
