//! Domain operations the host applies on an adapter's behalf.
//!
//! These mirror the WIT `domain-op` variant but belong to the host: the store
//! speaks these types, never the generated bindings, so a WIT revision touches
//! one conversion (runtime::session) and not the SQL.

use crate::store::types::{MessageStatus, RecordKind};

/// Names a tenant through lead_sources: `kind` + the provider's `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRef {
    pub kind: String,
    pub key: String,
}

impl std::fmt::Display for TenantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}

/// A lead to create (idempotent on tenant, source and external id).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewLead {
    pub source: String,
    pub external_id: String,
    pub form_id: Option<String>,
    pub ad_id: Option<String>,
    pub campaign_id: Option<String>,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fields_json: String,
}

/// An offline conversion to record (idempotent on its key) and maybe upload.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewConversion {
    pub click_id_kind: String,
    pub click_id: String,
    /// "yyyy-mm-dd hh:mm:ss+hh:mm", as Google takes it.
    pub conversion_time: String,
    pub value: f64,
    pub currency: String,
    /// None: recorded without one (uploads off).
    pub conversion_action: Option<String>,
    pub order_id: Option<String>,
    pub idempotency_key: String,
    pub tenant_id: Option<i64>,
    /// false: `logged` only; true: `pending` for the uploader.
    pub upload: bool,
}

/// A message a customer sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundMessage {
    pub channel: String,
    pub contact_phone: String,
    pub contact_name: Option<String>,
    pub external_id: String,
    pub to_addr: Option<String>,
    pub kind: String,
    pub body: String,
    pub media_id: Option<String>,
    pub sent_at: Option<i64>,
    pub reply_to: Option<String>,
}

/// A delivery status of a message the business sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusUpdate {
    pub channel: String,
    pub external_id: String,
    pub status: MessageStatus,
    pub error: Option<String>,
}

/// A message the business wants sent: committed with an outbox record, then
/// delivered once through the plugin's `deliver`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboundMessage {
    pub channel: String,
    pub tenant_id: i64,
    pub to_addr: String,
    pub from_addr: Option<String>,
    pub body: String,
    pub case_id: Option<i64>,
    /// One message per key, per plugin and outbox kind.
    pub idempotency_key: String,
    pub outbox_kind: String,
    /// What `deliver` receives for it.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// A record an item made or found (its idempotency made it the same record).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordRef {
    pub kind: RecordKind,
    pub id: i64,
    /// The record's status by its own table's names (pending, sent, logged, ...).
    pub status: String,
    /// The provider's id of the record, once it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One thing an item asks of the host.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DomainOp {
    CreateLead(NewLead),
    QueueConversion(NewConversion),
    RecordInbound(InboundMessage),
    UpdateStatus(StatusUpdate),
    SendMessage(OutboundMessage),
    /// Nothing to do; the reason goes on the event.
    Ignore {
        reason: String,
    },
}

impl DomainOp {
    /// Bytes of text the op carries (for output limits).
    pub fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        match self {
            DomainOp::CreateLead(l) => {
                l.source.len()
                    + l.external_id.len()
                    + opt(&l.form_id)
                    + opt(&l.ad_id)
                    + opt(&l.campaign_id)
                    + opt(&l.full_name)
                    + opt(&l.email)
                    + opt(&l.phone)
                    + l.fields_json.len()
            }
            DomainOp::QueueConversion(c) => {
                c.click_id.len()
                    + c.conversion_time.len()
                    + c.currency.len()
                    + opt(&c.conversion_action)
                    + opt(&c.order_id)
                    + c.idempotency_key.len()
                    + 32
            }
            DomainOp::RecordInbound(m) => {
                m.contact_phone.len()
                    + opt(&m.contact_name)
                    + m.external_id.len()
                    + opt(&m.to_addr)
                    + m.kind.len()
                    + m.body.len()
                    + opt(&m.media_id)
                    + opt(&m.reply_to)
            }
            DomainOp::UpdateStatus(u) => u.external_id.len() + 16 + opt(&u.error),
            DomainOp::SendMessage(m) => {
                m.to_addr.len()
                    + opt(&m.from_addr)
                    + m.body.len()
                    + m.idempotency_key.len()
                    + m.outbox_kind.len()
                    + m.payload.len()
                    + 64
            }
            DomainOp::Ignore { reason } => reason.len(),
        }
    }

    /// Whether applying this op needs the item's tenant (a conversion may have none).
    pub fn needs_tenant(&self) -> bool {
        matches!(self, DomainOp::CreateLead(_) | DomainOp::RecordInbound(_))
    }
}

/// An item as parse returned it, owned by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedItem {
    pub dedup_key: String,
    pub tenant: Option<TenantRef>,
    pub kind: String,
    pub payload: Vec<u8>,
}
