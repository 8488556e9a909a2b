//! The rules of Portico's data, in plain Rust over the backend seam: tenant
//! resolution, joining a contact's open case, idempotent writes, statuses that
//! never move backwards, and the outbox (commit first, deliver under a lease,
//! at most once per idempotency key). No SQL here.

use super::backend::{
    ContactKey, Durability, EventEnd, Lease, NewConversionRow, NewEvent, NewMessage, NewOutbox,
    OutboxEnd, OutboxRow, Tx,
};
use super::types::{
    ConversionStatus, Direction, EventKind, EventStatus, MessageStatus, OutboxStatus, RecordKind,
    Timestamp,
};
use super::{Store, StoreError, payload_hash};
use crate::domain::{
    ContactRef, DomainOp, MessageChangeKind, OutboundMessage, ParsedItem, RecordRef, TenantRef,
};
use std::sync::Arc;
use std::time::Duration;

type Result<T> = std::result::Result<T, StoreError>;

/// A verified delivery, as received.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub source: &'a str,
    pub correlation_id: &'a str,
    pub payload: &'a [u8],
    pub headers_json: String,
    /// Who processes it inline, and for how long the retry worker must keep off.
    pub lease_owner: &'a str,
    pub lease: Duration,
}

/// Where an item stands after its delivery was split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemSlot {
    /// First time seen: process it.
    New(i64),
    /// Seen before and not finished (failed, dead or received): process it again.
    Again { id: i64, attempts: i64 },
    /// Already processed or ignored: nothing to do.
    Duplicate {
        id: i64,
        status: EventStatus,
        /// Attempts recorded (an intake applies a repeat again, as the next one).
        attempts: i64,
    },
    /// A live lease is on it (another pass, here or in another process): it is
    /// being processed there.
    InProgress { id: i64 },
}

/// What an item is applied with.
#[derive(Debug, Clone, Copy)]
pub struct ItemContext<'a> {
    pub event_id: i64,
    /// The plugin the item came through.
    pub source: &'a str,
    pub tenant: Option<&'a TenantRef>,
    /// Who applies it; new outbox records of `immediate_kinds` are leased to it.
    pub owner: &'a str,
    /// Attempts recorded before this one (the fencing token, see [`Tx::free_for`]).
    pub attempts_before: i64,
    pub lease: Duration,
    /// Outbox kinds the plugin delivers at once, while the caller waits.
    pub immediate_kinds: &'a [String],
}

/// What applying an item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Processed {
        created: u64,
        records: Vec<RecordRef>,
        /// New outbox records leased to the caller for immediate delivery.
        deliver_now: Vec<i64>,
    },
    Ignored(String),
}

/// States an event can be put in after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailState {
    /// Will be retried after `retry_in`.
    Failed { retry_in: Duration },
    /// Will not be retried without a replay.
    Dead,
}

impl FailState {
    pub fn status(self) -> EventStatus {
        match self {
            FailState::Failed { .. } => EventStatus::Failed,
            FailState::Dead => EventStatus::Dead,
        }
    }
}

/// What health says about the DLQ.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DlqStats {
    pub failed: i64,
    pub dead: i64,
    /// Age of the oldest failed event, in seconds.
    pub oldest_failed_age_seconds: Option<f64>,
}

/// Records waiting in one plugin's outbox kind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxBacklogView {
    pub plugin: String,
    pub kind: String,
    /// Pending or being delivered.
    pub pending: i64,
    pub oldest_pending_age_seconds: Option<f64>,
}

/// How a delivery attempt of one outbox record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxOutcome {
    /// The provider accepted it (with its id for it, when it gives one).
    Delivered { external_id: Option<String> },
    /// Refused for good: "code: message".
    Rejected(String),
    /// No answer after the request went out: failed, never sent again.
    Unknown(String),
    /// Certainly not delivered: try again at `at`.
    Later { error: String, at: Timestamp },
    /// Not final: the provider is still working on it. Asked again at `at`;
    /// waiting does not use up the record's attempts.
    Waiting { note: String, at: Timestamp },
}

/// The phrase every record that may have reached its provider carries.
pub const MAY_HAVE_BEEN_ACCEPTED: &str = "the provider may have accepted it";

/// A source's settings and sealed secrets, owned (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub settings_json: String,
    pub secret_names: String,
    pub secrets_sealed: Option<Vec<u8>>,
}

impl StoredCredentials {
    /// What `row` holds now (to compare against when changing it).
    pub fn of(row: &super::SourceRow) -> StoredCredentials {
        StoredCredentials {
            settings_json: row.settings_json.clone(),
            secret_names: row.secret_names.clone(),
            secrets_sealed: row.secrets_sealed.clone(),
        }
    }

    fn as_written(&self) -> super::backend::SourceCredentials<'_> {
        super::backend::SourceCredentials {
            settings_json: &self.settings_json,
            secret_names: &self.secret_names,
            secrets_sealed: self.secrets_sealed.as_deref(),
        }
    }
}

impl Store {
    pub async fn create_tenant(&self, name: &str) -> Result<i64> {
        let name: Arc<str> = name.into();
        self.writer
            .write(move |tx| {
                let name = name.clone();
                Box::pin(async move { Store::create_tenant_in(tx, &name).await })
            })
            .await
    }

    pub async fn add_lead_source(&self, tenant_id: i64, kind: &str, key: &str) -> Result<i64> {
        self.add_lead_source_with(tenant_id, kind, key, None).await
    }

    /// Add a source with its settings and sealed secrets, in one transaction.
    pub async fn add_lead_source_with(
        &self,
        tenant_id: i64,
        kind: &str,
        key: &str,
        credentials: Option<StoredCredentials>,
    ) -> Result<i64> {
        let data = Arc::new((kind.to_string(), key.to_string(), credentials));
        let added = self
            .writer
            .write(move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (kind, key, credentials) = &*data;
                    let id = Store::add_lead_source_in(tx, tenant_id, kind, key).await?;
                    if let Some(c) = credentials {
                        tx.set_source_credentials(id, &c.as_written(), None).await?;
                    }
                    Ok(id)
                })
            })
            .await;
        self.sources_changed();
        added
    }

    /// Replace source `id`'s settings and secrets if they are still
    /// `expected` (when given); false when it does not exist or changed meanwhile.
    pub async fn set_source_credentials(
        &self,
        id: i64,
        credentials: StoredCredentials,
        expected: Option<StoredCredentials>,
    ) -> Result<bool> {
        let data = Arc::new((credentials, expected));
        let changed = self
            .writer
            .write(move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (credentials, expected) = &*data;
                    let expected = expected.as_ref().map(StoredCredentials::as_written);
                    tx.set_source_credentials(id, &credentials.as_written(), expected.as_ref())
                        .await
                })
            })
            .await;
        self.sources_changed();
        changed
    }

    /// Store a verified delivery, leased to its receiver; must succeed before any 2xx.
    pub async fn insert_delivery(&self, d: &NewDelivery<'_>) -> Result<i64> {
        let lease = d.lease;
        let data = Arc::new((
            d.source.to_string(),
            d.correlation_id.to_string(),
            d.payload.to_vec(),
            d.headers_json.clone(),
            d.lease_owner.to_string(),
        ));
        self.writer
            .write(move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (source, cid, payload, headers, owner) = &*data;
                    let d = NewDelivery {
                        source,
                        correlation_id: cid,
                        payload,
                        headers_json: headers.clone(),
                        lease_owner: owner,
                        lease,
                    };
                    Store::insert_delivery_in(tx, &d).await
                })
            })
            .await
    }

    /// Record the items of a delivery (deduplicated, leased to `owner`) and mark
    /// the delivery processed, atomically. An item seen before and not finished
    /// (its first attempt failed, say) is processed again: a provider's resend
    /// after a failure works.
    #[allow(clippy::too_many_arguments)]
    pub async fn split_delivery(
        &self,
        delivery_id: i64,
        source: &str,
        correlation_id: &str,
        items: &[ParsedItem],
        owner: &str,
        lease: Duration,
        durability: Durability,
    ) -> Result<Vec<ItemSlot>> {
        let data = Arc::new((
            source.to_string(),
            correlation_id.to_string(),
            items.to_vec(),
            owner.to_string(),
        ));
        self.writer
            .write_with(durability, move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (source, cid, items, owner) = &*data;
                    Store::split_delivery_in(tx, delivery_id, source, cid, items, owner, lease)
                        .await
                })
            })
            .await
    }

    /// Apply an item's operations and mark its event, in one transaction.
    pub async fn apply_item(
        &self,
        ctx: &ItemContext<'_>,
        ops: &[DomainOp],
        durability: Durability,
    ) -> Result<Applied> {
        let (event_id, lease, attempts_before) = (ctx.event_id, ctx.lease, ctx.attempts_before);
        let data = Arc::new((
            ctx.source.to_string(),
            ctx.tenant.cloned(),
            ctx.owner.to_string(),
            ctx.immediate_kinds.to_vec(),
            ops.to_vec(),
        ));
        self.writer
            .write_with(durability, move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (source, tenant, owner, immediate, ops) = &*data;
                    let ctx = ItemContext {
                        event_id,
                        source,
                        tenant: tenant.as_ref(),
                        owner,
                        attempts_before,
                        lease,
                        immediate_kinds: immediate,
                    };
                    Store::apply_item_in(tx, &ctx, ops).await
                })
            })
            .await
    }

    /// End this process's lease on an event now, so the retry worker takes it
    /// at its next poll (the ingest pipeline is full).
    pub async fn hand_over(&self, event_id: i64) -> Result<()> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let lease = Lease {
                        owner: "handed-over",
                        until: Timestamp::now(),
                    };
                    tx.lease_event(event_id, lease).await
                })
            })
            .await
    }

    /// Mark an event failed (to be retried) or dead, with the error that explains why.
    /// Refused ([`StoreError::LeaseLost`]) when another process holds the event
    /// now, or recorded an attempt since this one started.
    pub async fn fail_event(
        &self,
        event_id: i64,
        owner: &str,
        attempts_before: i64,
        state: FailState,
        error: &str,
    ) -> Result<()> {
        let data: Arc<(String, String)> = Arc::new((owner.to_string(), error.to_string()));
        self.writer
            .write(move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (owner, error) = &*data;
                    Store::fail_event_in(tx, event_id, owner, attempts_before, state, error).await
                })
            })
            .await
    }

    /// Start the attempts of records leased to `owner` at commit (immediate
    /// kinds). A record no longer pending, or leased to another, is left alone.
    pub async fn start_outbox(
        &self,
        ids: &[i64],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<OutboxRow>> {
        let data = Arc::new((ids.to_vec(), owner.to_string()));
        self.writer
            .write(move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (ids, owner) = &*data;
                    Store::start_outbox_in(tx, ids, owner, lease).await
                })
            })
            .await
    }

    /// Record how attempts ended, on the outbox and on each record it delivers
    /// (a message's status and provider id, a conversion's upload status);
    /// returns the records as they now stand. An attempt no longer on record
    /// (recovered or taken over by another process meanwhile) is skipped.
    pub async fn end_outbox(&self, ends: &[(&OutboxRow, OutboxOutcome)]) -> Result<Vec<RecordRef>> {
        let owned: Arc<Vec<(OutboxRow, OutboxOutcome)>> = Arc::new(
            ends.iter()
                .map(|(row, outcome)| ((*row).clone(), outcome.clone()))
                .collect(),
        );
        self.writer
            .write(move |tx| {
                let owned = owned.clone();
                Box::pin(async move {
                    let ends: Vec<(&OutboxRow, OutboxOutcome)> =
                        owned.iter().map(|(r, o)| (r, o.clone())).collect();
                    Store::end_outbox_in(tx, &ends).await
                })
            })
            .await
    }

    async fn create_tenant_in(tx: &mut dyn Tx, name: &str) -> Result<i64> {
        let id = tx.insert_tenant(name, Timestamp::now()).await?;
        Ok(id)
    }

    async fn add_lead_source_in(
        tx: &mut dyn Tx,
        tenant_id: i64,
        kind: &str,
        key: &str,
    ) -> Result<i64> {
        if !tx.tenant_exists(tenant_id).await? {
            return Err(StoreError::TenantNotFound(tenant_id));
        }
        if let Some(owner) = tx.source_tenant(kind, key).await? {
            return Err(StoreError::DuplicateSource {
                kind: kind.to_string(),
                key: key.to_string(),
                tenant_id: owner,
            });
        }
        let id = tx
            .insert_source(tenant_id, kind, key, Timestamp::now())
            .await?;
        Ok(id)
    }

    async fn insert_delivery_in(tx: &mut dyn Tx, d: &NewDelivery<'_>) -> Result<i64> {
        let now = Timestamp::now();
        let hash = payload_hash(d.payload);
        let id = tx
            .insert_event(&NewEvent {
                source: d.source,
                kind: EventKind::Delivery,
                parent_id: None,
                correlation_id: d.correlation_id,
                payload_hash: &hash,
                payload: d.payload,
                headers_json: &d.headers_json,
                dedup_key: None,
                item_kind: None,
                tenant: None,
                lease: Some(Lease {
                    owner: d.lease_owner,
                    until: now.plus(d.lease),
                }),
                now,
            })
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt("a delivery without a dedup key conflicted".into())
            })?;
        Ok(id)
    }

    async fn split_delivery_in(
        tx: &mut dyn Tx,
        delivery_id: i64,
        source: &str,
        correlation_id: &str,
        items: &[ParsedItem],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<ItemSlot>> {
        let now = Timestamp::now();
        let lease = Lease {
            owner,
            until: now.plus(lease),
        };
        let mut slots = Vec::with_capacity(items.len());
        for item in items {
            let hash = payload_hash(&item.payload);
            let inserted = tx
                .insert_event(&NewEvent {
                    source,
                    kind: EventKind::Item,
                    parent_id: Some(delivery_id),
                    correlation_id,
                    payload_hash: &hash,
                    payload: &item.payload,
                    headers_json: "{}",
                    dedup_key: Some(&item.dedup_key),
                    item_kind: Some(&item.kind),
                    tenant: item.tenant.as_ref(),
                    lease: Some(lease),
                    now,
                })
                .await?;
            let slot = match inserted {
                Some(id) => ItemSlot::New(id),
                None => {
                    let state = tx
                        .item_event(source, &item.dedup_key)
                        .await?
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "item {} conflicted but cannot be found",
                                item.dedup_key
                            ))
                        })?;
                    // A live lease, ours or another process's: someone is on it now.
                    let held_elsewhere = state.lease_until.is_some_and(|t| t > now);
                    if state.status.is_done() {
                        ItemSlot::Duplicate {
                            id: state.id,
                            status: state.status,
                            attempts: state.attempts,
                        }
                    } else if held_elsewhere {
                        ItemSlot::InProgress { id: state.id }
                    } else {
                        tx.lease_event(state.id, lease).await?;
                        ItemSlot::Again {
                            id: state.id,
                            attempts: state.attempts,
                        }
                    }
                }
            };
            slots.push(slot);
        }
        tx.end_event(
            delivery_id,
            &EventEnd {
                status: EventStatus::Processed,
                error: None,
                next_attempt_at: None,
                now,
            },
        )
        .await?;
        Ok(slots)
    }

    async fn apply_item_in(
        tx: &mut dyn Tx,
        ctx: &ItemContext<'_>,
        ops: &[DomainOp],
    ) -> Result<Applied> {
        let now = Timestamp::now();
        if !tx
            .free_for(ctx.event_id, ctx.owner, ctx.attempts_before, now)
            .await?
        {
            return Err(StoreError::LeaseLost {
                event_id: ctx.event_id,
            });
        }
        // The item's tenant through lead_sources: required for leads and inbound
        // messages, optional for the rest.
        let mapped = match ctx.tenant {
            Some(t) => tx.source_tenant(&t.kind, &t.key).await?,
            None => None,
        };
        let tenant_id = if ops.iter().any(DomainOp::needs_tenant) {
            let t = ctx.tenant.ok_or(StoreError::MissingTenant)?;
            Some(mapped.ok_or_else(|| StoreError::UnknownTenant {
                kind: t.kind.clone(),
                key: t.key.clone(),
            })?)
        } else {
            mapped
        };
        let mut created = 0u64;
        let mut records = Vec::new();
        let mut deliver_now = Vec::new();
        let mut ignored: Vec<String> = Vec::new();
        for op in ops {
            match op {
                DomainOp::CreateLead(lead) => {
                    let tenant = tenant_id.ok_or(StoreError::MissingTenant)?;
                    if tx.insert_lead(tenant, lead, now).await? {
                        created += 1;
                    }
                }
                DomainOp::QueueConversion(c) => {
                    let owner = match c.tenant_id {
                        Some(id) if !tx.tenant_exists(id).await? => {
                            return Err(StoreError::TenantNotFound(id));
                        }
                        Some(id) => Some(id),
                        None => tenant_id,
                    };
                    let status = if c.upload {
                        ConversionStatus::Pending
                    } else {
                        ConversionStatus::Logged
                    };
                    let row = NewConversionRow {
                        tenant_id: owner,
                        conversion: c,
                        status,
                        source: ctx.source,
                        now,
                    };
                    let record = match tx.insert_conversion(&row).await? {
                        Some(id) => {
                            created += 1;
                            if c.upload {
                                let payload = conversion_payload(id, owner, c);
                                tx.insert_outbox(&NewOutbox {
                                    source: ctx.source,
                                    kind: RecordKind::Conversion.as_str(),
                                    idempotency_key: &c.idempotency_key,
                                    record_kind: RecordKind::Conversion,
                                    record_id: id,
                                    tenant_id: owner,
                                    payload: &payload,
                                    lease: None,
                                    now,
                                })
                                .await?;
                            }
                            RecordRef {
                                kind: RecordKind::Conversion,
                                id,
                                status: status.as_str().into(),
                                external_id: None,
                                error: None,
                            }
                        }
                        None => {
                            let found = tx
                                .conversion_by_key(&c.idempotency_key)
                                .await?
                                .ok_or_else(|| {
                                    StoreError::Corrupt(
                                        "a conversion conflicted but cannot be found".into(),
                                    )
                                })?;
                            RecordRef {
                                kind: RecordKind::Conversion,
                                id: found.id,
                                status: found.status.as_str().into(),
                                external_id: None,
                                error: found.error,
                            }
                        }
                    };
                    records.push(record);
                }
                DomainOp::RecordInbound(m) => {
                    let tenant = tenant_id.ok_or(StoreError::MissingTenant)?;
                    let contact = contact_for(&mut *tx, tenant, &m.contact, now).await?;
                    let case = case_for(&mut *tx, tenant, contact, None, now).await?;
                    let inserted = tx
                        .insert_message(&NewMessage {
                            tenant_id: tenant,
                            contact_id: contact,
                            case_id: case,
                            channel: &m.channel,
                            direction: Direction::Inbound,
                            external_id: Some(&m.external_id),
                            from_addr: m.contact.address(),
                            to_addr: m.to_addr.as_deref(),
                            kind: &m.kind,
                            body: &m.body,
                            media_id: m.media_id.as_deref(),
                            status: MessageStatus::Received,
                            provider_timestamp: m.sent_at,
                            reply_to: m.reply_to.as_deref(),
                            now,
                        })
                        .await?;
                    if inserted.is_some() {
                        created += 1;
                    }
                }
                DomainOp::UpdateStatus(u) => {
                    // A status names its number: only that number's tenant's
                    // messages can match (another tenant may hold the same id).
                    let Some(tenant) = mapped else {
                        ignored.push(match ctx.tenant {
                            Some(t) => format!(
                                "status \"{}\" for {}: no tenant is mapped to {} key {:?}; add one with `portico source add --tenant ID --kind {} --key {}`",
                                u.status, u.external_id, t.kind, t.key, t.kind, t.key
                            ),
                            None => format!(
                                "status \"{}\" for {}: the adapter named no tenant for it",
                                u.status, u.external_id
                            ),
                        });
                        continue;
                    };
                    // Statuses arrive out of order: only ever move forward.
                    match tx
                        .outbound_message(tenant, &u.channel, &u.external_id)
                        .await?
                    {
                        None => ignored.push(format!(
                            "status \"{}\" for unknown message {}: no outbound message has that id",
                            u.status, u.external_id
                        )),
                        Some(m) if u.status.rank() > m.status.rank() => {
                            tx.set_message(m.id, u.status, None, u.error.as_deref())
                                .await?;
                            link_recipient(&mut *tx, tenant, u.recipient.as_ref(), now).await?;
                        }
                        Some(m) => ignored.push(format!(
                            "status \"{}\" for {} arrived after \"{}\": statuses never move backwards",
                            u.status, u.external_id, m.status
                        )),
                    }
                }
                DomainOp::SendMessage(m) => {
                    let (record, new_row) = queue_send(&mut *tx, ctx, m, now).await?;
                    if let Some(id) = new_row {
                        created += 1;
                        deliver_now.push(id);
                    }
                    records.push(record);
                }
                DomainOp::ChangeMessage(c) => {
                    let tenant = tenant_id.ok_or(StoreError::MissingTenant)?;
                    let Some(id) = tx
                        .message_by_external_id(tenant, &c.channel, &c.external_id)
                        .await?
                    else {
                        let what = match c.change {
                            MessageChangeKind::Edited(_) => "an edit",
                            MessageChangeKind::Revoked => "a revoke",
                        };
                        ignored.push(format!(
                            "{what} of message {}, which this tenant does not have (it came before Portico, or to another number)",
                            c.external_id
                        ));
                        continue;
                    };
                    // A provider's time, if it is one (else now: never a failed write).
                    let at =
                        c.at.and_then(Timestamp::from_provider_seconds)
                            .unwrap_or(now);
                    match &c.change {
                        MessageChangeKind::Edited(body) => {
                            tx.change_message(id, Some((body, at)), None).await?
                        }
                        MessageChangeKind::Revoked => tx.change_message(id, None, Some(at)).await?,
                    }
                    created += 1;
                }
                DomainOp::UpdateContact(u) => {
                    let tenant = tenant_id.ok_or(StoreError::MissingTenant)?;
                    match update_contact(&mut *tx, tenant, &u.previous, &u.current).await? {
                        Some(_) => created += 1,
                        None => ignored.push(format!(
                            "a changed identity of a contact this tenant does not have ({})",
                            u.previous.address().unwrap_or("no identifier")
                        )),
                    }
                }
                DomainOp::Ignore { reason } => ignored.push(reason.clone()),
            }
        }
        let outcome = if ops.is_empty() {
            Applied::Ignored("the adapter returned no operations for this item".into())
        } else if ignored.len() == ops.len() {
            Applied::Ignored(ignored.join("; "))
        } else {
            Applied::Processed {
                created,
                records,
                deliver_now,
            }
        };
        let (status, note) = match &outcome {
            Applied::Ignored(reason) => (EventStatus::Ignored, Some(reason.as_str())),
            Applied::Processed { .. } => (EventStatus::Processed, None),
        };
        tx.end_event(
            ctx.event_id,
            &EventEnd {
                status,
                error: note,
                next_attempt_at: None,
                now,
            },
        )
        .await?;
        Ok(outcome)
    }

    async fn fail_event_in(
        tx: &mut dyn Tx,
        event_id: i64,
        owner: &str,
        attempts_before: i64,
        state: FailState,
        error: &str,
    ) -> Result<()> {
        let now = Timestamp::now();
        if !tx.free_for(event_id, owner, attempts_before, now).await? {
            return Err(StoreError::LeaseLost { event_id });
        }
        let next_attempt_at = match state {
            FailState::Failed { retry_in } => Some(now.plus(retry_in)),
            FailState::Dead => None,
        };
        tx.end_event(
            event_id,
            &EventEnd {
                status: state.status(),
                error: Some(error),
                next_attempt_at,
                now,
            },
        )
        .await
    }

    /// Claim up to `limit` due events for `owner` (failed and due, or received with no live lease).
    pub async fn claim_due(&self, owner: &str, lease: Duration, limit: i64) -> Result<Vec<i64>> {
        let owner: Arc<str> = owner.into();
        self.writer
            .write(move |tx| {
                let owner = owner.clone();
                Box::pin(async move {
                    let now = Timestamp::now();
                    let lease = Lease {
                        owner: &owner,
                        until: now.plus(lease),
                    };
                    tx.claim_events(lease, now, limit).await
                })
            })
            .await
    }

    pub async fn dlq_stats(&self) -> Result<DlqStats> {
        let counts = self.db.event_counts().await?;
        let now = Timestamp::now();
        Ok(DlqStats {
            failed: counts.failed,
            dead: counts.dead,
            oldest_failed_age_seconds: counts.oldest_failed.map(|t| t.seconds_until(now)),
        })
    }

    /// Delete processed and ignored events older than `days`; returns (items, deliveries).
    pub async fn prune(&self, days: u32) -> Result<(u64, u64)> {
        let before = Timestamp::now().minus(Duration::from_secs(u64::from(days) * 86_400));
        self.writer
            .write(move |tx| Box::pin(async move { tx.prune_events(before).await }))
            .await
    }

    /// Records waiting in every outbox, by plugin and kind.
    pub async fn outbox_backlog(&self) -> Result<Vec<OutboxBacklogView>> {
        let now = Timestamp::now();
        Ok(self
            .db
            .outbox_backlog()
            .await?
            .into_iter()
            .map(|b| OutboxBacklogView {
                plugin: b.source,
                kind: b.kind,
                pending: b.pending,
                oldest_pending_age_seconds: b.oldest.map(|t| t.seconds_until(now)),
            })
            .collect())
    }

    /// Claim up to `limit` due records of one plugin's outbox kind; each claimed
    /// record's attempt has started (committed) when this returns.
    pub async fn claim_outbox(
        &self,
        source: &str,
        kind: &str,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let data = Arc::new((source.to_string(), kind.to_string(), owner.to_string()));
        self.writer
            .write(move |tx| {
                let data = data.clone();
                Box::pin(async move {
                    let (source, kind, owner) = &*data;
                    let now = Timestamp::now();
                    let lease = Lease {
                        owner,
                        until: now.plus(lease),
                    };
                    tx.claim_outbox(source, kind, lease, now, limit).await
                })
            })
            .await
    }

    async fn start_outbox_in(
        tx: &mut dyn Tx,
        ids: &[i64],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<OutboxRow>> {
        let now = Timestamp::now();
        let lease = Lease {
            owner,
            until: now.plus(lease),
        };
        let mut started = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(row) = tx.outbox_row(id).await? else {
                continue;
            };
            let ours = row.claimed_by.as_deref() == Some(owner)
                || row.lease_until.is_none_or(|t| t <= now);
            if row.status == OutboxStatus::Pending && ours {
                tx.start_outbox(id, lease).await?;
                started.push(OutboxRow {
                    status: OutboxStatus::Delivering,
                    attempts: row.attempts + 1,
                    claimed_by: Some(owner.to_string()),
                    lease_until: Some(lease.until),
                    ..row
                });
            }
        }
        Ok(started)
    }

    async fn end_outbox_in(
        tx: &mut dyn Tx,
        ends: &[(&OutboxRow, OutboxOutcome)],
    ) -> Result<Vec<RecordRef>> {
        let now = Timestamp::now();
        let mut records = Vec::with_capacity(ends.len());
        for (row, outcome) in ends {
            // Only the attempt that is still on record may end: one recovered
            // or taken over meanwhile by another process is left to it.
            let current = tx.outbox_row(row.id).await?;
            let same_attempt = current.is_some_and(|c| {
                c.status == OutboxStatus::Delivering
                    && c.attempts == row.attempts
                    && c.claimed_by == row.claimed_by
            });
            if !same_attempt {
                tracing::warn!(
                    outbox_id = row.id,
                    "an outbox attempt ended after another process took the record over; its outcome is not recorded"
                );
                continue;
            }
            let (status, error, external_id, next) = match outcome {
                OutboxOutcome::Delivered { external_id } => {
                    (OutboxStatus::Delivered, None, external_id.as_deref(), None)
                }
                OutboxOutcome::Rejected(e) | OutboxOutcome::Unknown(e) => {
                    (OutboxStatus::Failed, Some(e.as_str()), None, None)
                }
                OutboxOutcome::Later { error, at } => {
                    (OutboxStatus::Pending, Some(error.as_str()), None, Some(*at))
                }
                OutboxOutcome::Waiting { note, at } => {
                    (OutboxStatus::Pending, Some(note.as_str()), None, Some(*at))
                }
            };
            tx.end_outbox(
                row.id,
                &OutboxEnd {
                    status,
                    error,
                    external_id,
                    next_attempt_at: next,
                    uncount_attempt: matches!(outcome, OutboxOutcome::Waiting { .. }),
                    now,
                },
            )
            .await?;
            records.push(end_record(&mut *tx, row, outcome, now).await?);
        }
        Ok(records)
    }

    /// End the attempts a dead process cut off: back to pending where the provider
    /// deduplicates (`idempotent`), else failed as possibly accepted, never re-sent.
    pub async fn recover_cut_off(
        &self,
        source: &str,
        kind: &str,
        idempotent: bool,
    ) -> Result<usize> {
        let now = Timestamp::now();
        let rows = self.db.cut_off_outbox(source, kind, now).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let outcome = if idempotent {
            OutboxOutcome::Later {
                error: "the delivery attempt was cut off (the process stopped); trying again"
                    .into(),
                at: now,
            }
        } else {
            OutboxOutcome::Unknown(format!(
                "the process stopped while the provider was being called: {MAY_HAVE_BEEN_ACCEPTED}, so it is not sent again"
            ))
        };
        let ends: Vec<(&OutboxRow, OutboxOutcome)> =
            rows.iter().map(|r| (r, outcome.clone())).collect();
        self.end_outbox(&ends).await?;
        Ok(rows.len())
    }
}

/// The tenant's contact for `who`, created when missing. It is found by its
/// user id or its phone, and keeps what `who` adds (a phone seen later, a
/// username): a person first seen by phone and later with both is one
/// contact; two contacts that turn out to be one person are merged.
async fn contact_for(
    tx: &mut dyn Tx,
    tenant_id: i64,
    who: &ContactRef,
    now: Timestamp,
) -> Result<i64> {
    let name = who.name.as_deref();
    let extras = who.parent_user_id.is_some() || who.username.is_some();
    let id = match (who.user_id.as_deref(), who.phone.as_deref()) {
        (None, None) => return Err(StoreError::NoContactIdentity),
        // The common case, one statement (and the row lock on PostgreSQL).
        (None, Some(phone)) => {
            let id = tx
                .upsert_contact(tenant_id, ContactKey::Phone, phone, name, now)
                .await?;
            if !extras {
                return Ok(id);
            }
            id
        }
        (Some(user_id), None) => {
            tx.upsert_contact(tenant_id, ContactKey::UserId, user_id, name, now)
                .await?
        }
        (Some(user_id), Some(phone)) => {
            // Two identifiers: another process must not create either meanwhile.
            tx.lock_contact_keys(
                tenant_id,
                &[(ContactKey::UserId, user_id), (ContactKey::Phone, phone)],
            )
            .await?;
            let by_user = tx
                .contact_by(tenant_id, ContactKey::UserId, user_id)
                .await?;
            let by_phone = tx.contact_by(tenant_id, ContactKey::Phone, phone).await?;
            match (by_user, by_phone) {
                (Some(a), Some(b)) if a != b => join(tx, a, b, Some(user_id)).await?,
                (Some(id), _) => id,
                (None, Some(holder)) => {
                    let theirs = tx.contact_identity(holder).await?.unwrap_or_default();
                    if theirs.user_id.as_deref().is_some_and(|u| u != user_id) {
                        // A recycled number: its old holder is someone else.
                        tx.release_contact_key(holder, ContactKey::Phone).await?;
                        tx.upsert_contact(tenant_id, ContactKey::UserId, user_id, name, now)
                            .await?
                    } else {
                        holder
                    }
                }
                (None, None) => {
                    tx.upsert_contact(tenant_id, ContactKey::UserId, user_id, name, now)
                        .await?
                }
            }
        }
    };
    tx.set_contact_identity(id, who).await?;
    Ok(id)
}

/// `holder` has the phone that now belongs to `person` (whose user id is
/// `user_id`). If `holder` is known by another user id, they are two people
/// (a recycled number): only the phone moves. Otherwise they are one person:
/// merged into the older contact. Returns the contact that is the person now.
async fn join(tx: &mut dyn Tx, person: i64, holder: i64, user_id: Option<&str>) -> Result<i64> {
    let theirs = tx.contact_identity(holder).await?.unwrap_or_default();
    let two_people = matches!((theirs.user_id.as_deref(), user_id), (Some(a), Some(b)) if a != b);
    if two_people {
        tx.release_contact_key(holder, ContactKey::Phone).await?;
        return Ok(person);
    }
    let (keep, gone) = (person.min(holder), person.max(holder));
    tx.merge_contact(keep, gone).await?;
    Ok(keep)
}

/// A status names who got the message: a phone and a user id seen together
/// belong to one contact.
async fn link_recipient(
    tx: &mut dyn Tx,
    tenant_id: i64,
    recipient: Option<&ContactRef>,
    now: Timestamp,
) -> Result<()> {
    if let Some(who) = recipient
        && who.user_id.is_some()
        && (who.phone.is_some() || who.username.is_some())
    {
        contact_for(tx, tenant_id, who, now).await?;
    }
    Ok(())
}

/// The contact `previous` names takes `current`'s identifiers; one already
/// holding them is the same person (merged) or, when they conflict, gives
/// the identifier up. None when the tenant has no such contact.
async fn update_contact(
    tx: &mut dyn Tx,
    tenant_id: i64,
    previous: &ContactRef,
    current: &ContactRef,
) -> Result<Option<i64>> {
    let mut keys: Vec<(ContactKey, &str)> = Vec::new();
    for who in [previous, current] {
        if let Some(u) = who.user_id.as_deref() {
            keys.push((ContactKey::UserId, u));
        }
        if let Some(p) = who.phone.as_deref() {
            keys.push((ContactKey::Phone, p));
        }
    }
    tx.lock_contact_keys(tenant_id, &keys).await?;
    let mut found = None;
    if let Some(user_id) = previous.user_id.as_deref() {
        found = tx
            .contact_by(tenant_id, ContactKey::UserId, user_id)
            .await?;
    }
    if found.is_none()
        && let Some(phone) = previous.phone.as_deref()
    {
        found = tx.contact_by(tenant_id, ContactKey::Phone, phone).await?;
    }
    let Some(mut id) = found else {
        return Ok(None);
    };
    // A contact holding the new user id is this person (a user id is one
    // person's): merged. One holding the new phone may be someone else.
    if let Some(user_id) = current.user_id.as_deref()
        && let Some(other) = tx
            .contact_by(tenant_id, ContactKey::UserId, user_id)
            .await?
        && other != id
    {
        let (keep, gone) = (id.min(other), id.max(other));
        tx.merge_contact(keep, gone).await?;
        id = keep;
    }
    if let Some(phone) = current.phone.as_deref()
        && let Some(other) = tx.contact_by(tenant_id, ContactKey::Phone, phone).await?
        && other != id
    {
        let mine = match current.user_id.clone() {
            Some(u) => Some(u),
            None => tx.contact_identity(id).await?.and_then(|c| c.user_id),
        };
        id = join(tx, id, other, mine.as_deref()).await?;
    }
    // The new identifiers replace the old ones.
    tx.set_contact_identity(id, current).await?;
    Ok(Some(id))
}

/// The case to file a message under: `wanted` (checked to be the tenant's), else
/// the contact's open case, else a new open case.
async fn case_for(
    tx: &mut dyn Tx,
    tenant_id: i64,
    contact_id: i64,
    wanted: Option<i64>,
    now: Timestamp,
) -> Result<i64> {
    if let Some(case_id) = wanted {
        return if tx.case_of_tenant(case_id, tenant_id).await? {
            Ok(case_id)
        } else {
            Err(StoreError::CaseNotFound { case_id, tenant_id })
        };
    }
    match tx.open_case(tenant_id, contact_id).await? {
        Some(id) => Ok(id),
        None => tx.insert_case(tenant_id, contact_id, now).await,
    }
}

/// Commit a send: the message (`pending`) and its outbox record, once per
/// idempotency key. Tenant and case are checked first, so nothing is committed
/// (and so nothing sent) for a wrong one. Returns the message and, when new, its
/// outbox record id if it is to be delivered at once.
async fn queue_send(
    tx: &mut dyn Tx,
    ctx: &ItemContext<'_>,
    m: &OutboundMessage,
    now: Timestamp,
) -> Result<(RecordRef, Option<i64>)> {
    if let Some(row) = tx
        .outbox_by_key(ctx.source, &m.outbox_kind, &m.idempotency_key)
        .await?
    {
        let message = tx.message(row.record_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("outbox record {} has no message", row.id))
        })?;
        return Ok((message_ref(message), None));
    }
    if !tx.tenant_exists(m.tenant_id).await? {
        return Err(StoreError::TenantNotFound(m.tenant_id));
    }
    let contact = contact_for(tx, m.tenant_id, &m.to, now).await?;
    let case = case_for(tx, m.tenant_id, contact, m.case_id, now).await?;
    let id = tx
        .insert_message(&NewMessage {
            tenant_id: m.tenant_id,
            contact_id: contact,
            case_id: case,
            channel: &m.channel,
            direction: Direction::Outbound,
            external_id: None,
            from_addr: m.from_addr.as_deref(),
            to_addr: m.to.address(),
            kind: "text",
            body: &m.body,
            media_id: None,
            status: MessageStatus::Pending,
            provider_timestamp: None,
            reply_to: None,
            now,
        })
        .await?
        .ok_or_else(|| StoreError::Corrupt("a message without a provider id conflicted".into()))?;
    let immediate = ctx.immediate_kinds.contains(&m.outbox_kind);
    let outbox_id = tx
        .insert_outbox(&NewOutbox {
            source: ctx.source,
            kind: &m.outbox_kind,
            idempotency_key: &m.idempotency_key,
            record_kind: RecordKind::Message,
            record_id: id,
            tenant_id: Some(m.tenant_id),
            payload: &m.payload,
            lease: immediate.then_some(Lease {
                owner: ctx.owner,
                until: now.plus(ctx.lease),
            }),
            now,
        })
        .await?;
    let record = RecordRef {
        kind: RecordKind::Message,
        id,
        status: MessageStatus::Pending.as_str().into(),
        external_id: None,
        error: None,
    };
    Ok((record, immediate.then_some(outbox_id)))
}

fn message_ref(m: super::backend::MessageState) -> RecordRef {
    RecordRef {
        kind: RecordKind::Message,
        id: m.id,
        status: m.status.as_str().into(),
        external_id: m.external_id,
        error: m.error,
    }
}

/// Carry an outbox outcome onto the record it delivers.
async fn end_record(
    tx: &mut dyn Tx,
    row: &OutboxRow,
    outcome: &OutboxOutcome,
    now: Timestamp,
) -> Result<RecordRef> {
    let missing = || {
        StoreError::Corrupt(format!(
            "outbox record {} points at a missing {} {}",
            row.id, row.record_kind, row.record_id
        ))
    };
    match row.record_kind {
        RecordKind::Message => {
            let current = tx.message(row.record_id).await?.ok_or_else(missing)?;
            let change = match outcome {
                // A status webhook may have moved it on already: never backwards.
                OutboxOutcome::Delivered { external_id } => Some((
                    MessageStatus::Sent.max_by_rank(current.status),
                    external_id.as_deref(),
                    None,
                )),
                OutboxOutcome::Rejected(e) | OutboxOutcome::Unknown(e) => {
                    Some((MessageStatus::Failed, None, Some(e.as_str())))
                }
                OutboxOutcome::Later { .. } | OutboxOutcome::Waiting { .. } => None,
            };
            if let Some((status, external_id, error)) = change {
                tx.set_message(row.record_id, status, external_id, error)
                    .await?;
            }
            let now_row = tx.message(row.record_id).await?.ok_or_else(missing)?;
            Ok(message_ref(now_row))
        }
        RecordKind::Conversion => {
            let (status, error) = match outcome {
                OutboxOutcome::Delivered { .. } => (ConversionStatus::Uploaded, None),
                OutboxOutcome::Rejected(e) | OutboxOutcome::Unknown(e) => {
                    (ConversionStatus::Failed, Some(e.as_str()))
                }
                OutboxOutcome::Later { error, .. } | OutboxOutcome::Waiting { note: error, .. } => {
                    (ConversionStatus::Pending, Some(error.as_str()))
                }
            };
            tx.set_conversion(row.record_id, status, error, now).await?;
            let c = tx.conversion(row.record_id).await?.ok_or_else(missing)?;
            Ok(RecordRef {
                kind: RecordKind::Conversion,
                id: c.id,
                status: c.status.as_str().into(),
                external_id: None,
                error: c.error,
            })
        }
        RecordKind::Lead => Err(StoreError::Corrupt(format!(
            "outbox record {} delivers a lead, which nothing sends",
            row.id
        ))),
    }
}

/// What `deliver` receives for a conversion: its stored fields as JSON.
fn conversion_payload(
    id: i64,
    tenant_id: Option<i64>,
    c: &crate::domain::NewConversion,
) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "tenant_id": tenant_id,
        "idempotency_key": c.idempotency_key,
        "click_id_kind": c.click_id_kind,
        "click_id": c.click_id,
        "conversion_time": c.conversion_time,
        "value": c.value,
        "currency": c.currency,
        "conversion_action": c.conversion_action,
        "order_id": c.order_id,
    })
    .to_string()
    .into_bytes()
}
