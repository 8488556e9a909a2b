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

/// Who a person is to a provider: a phone, the provider's user id for this
/// business, or both; found by either, so one person stays one contact.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContactRef {
    pub phone: Option<String>,
    pub user_id: Option<String>,
    pub parent_user_id: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
}

impl ContactRef {
    /// A phone number and nothing else (what adapters built for WIT 0.2 say).
    pub fn phone(phone: &str) -> ContactRef {
        ContactRef {
            phone: Some(phone.to_string()),
            ..ContactRef::default()
        }
    }

    /// How messages name the person: the phone, else the user id.
    pub fn address(&self) -> Option<&str> {
        self.phone.as_deref().or(self.user_id.as_deref())
    }

    fn size(&self) -> usize {
        [
            &self.phone,
            &self.user_id,
            &self.parent_user_id,
            &self.username,
            &self.name,
        ]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .sum()
    }
}

/// A message a customer sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundMessage {
    pub channel: String,
    pub contact: ContactRef,
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
    /// Who it went to, as the provider names them now (links a phone and a user id).
    pub recipient: Option<ContactRef>,
}

/// What happened to an earlier message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageChangeKind {
    /// Its sender edited it: the new body.
    Edited(String),
    /// Its sender deleted it for everyone.
    Revoked,
}

/// A change to an earlier message of the item's tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageChange {
    pub channel: String,
    pub external_id: String,
    pub change: MessageChangeKind,
    /// Provider time of the change, unix seconds.
    pub at: Option<i64>,
}

/// A contact's identity changed: the contact found by `previous` takes `current`'s.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContactUpdate {
    pub channel: String,
    pub previous: ContactRef,
    pub current: ContactRef,
}

/// A message the business wants sent: committed with an outbox record, then
/// delivered once through the plugin's `deliver`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboundMessage {
    pub channel: String,
    pub tenant_id: i64,
    pub to: ContactRef,
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
    ChangeMessage(MessageChange),
    UpdateContact(ContactUpdate),
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
                m.contact.size()
                    + m.external_id.len()
                    + opt(&m.to_addr)
                    + m.kind.len()
                    + m.body.len()
                    + opt(&m.media_id)
                    + opt(&m.reply_to)
            }
            DomainOp::UpdateStatus(u) => {
                u.external_id.len()
                    + 16
                    + opt(&u.error)
                    + u.recipient.as_ref().map_or(0, ContactRef::size)
            }
            DomainOp::ChangeMessage(c) => {
                c.channel.len()
                    + c.external_id.len()
                    + match &c.change {
                        MessageChangeKind::Edited(body) => body.len(),
                        MessageChangeKind::Revoked => 0,
                    }
                    + 16
            }
            DomainOp::UpdateContact(u) => u.channel.len() + u.previous.size() + u.current.size(),
            DomainOp::SendMessage(m) => {
                m.to.size()
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
        matches!(
            self,
            DomainOp::CreateLead(_)
                | DomainOp::RecordInbound(_)
                | DomainOp::ChangeMessage(_)
                | DomainOp::UpdateContact(_)
        )
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
