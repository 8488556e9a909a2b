//! WhatsApp Cloud API logic, free of host calls.
//!
//! A delivery is `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
//! "value":{"metadata":{"phone_number_id"},"contacts","messages","statuses"}}]}]}`. Every message
//! and every status is its own item; each message type gets a body a person can read.

use portico_sdk::outbound::{OutboundError, describe};
use portico_sdk::{
    ContactRef, ContactUpdate, DeliveryStatus, DomainOp, InboundMessage, MessageChange,
    MessageChangeKind, OutboundMessage, ParseError, Parsed, RecordRef, Response, RowOutcome,
    StatusUpdate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const CHANNEL: &str = "whatsapp";
pub const TENANT_KIND: &str = "whatsapp";
/// The outbox kind sends are delivered under.
pub const OUTBOX_KIND: &str = "message";
/// What a send whose fate is unknown is kept failed with.
pub const MAY_HAVE_SENT: &str = "the provider may have accepted it";

/// A WhatsApp user as a webhook names them: a phone (`wa_id`), a
/// business-scoped user id (BSUID), or both, with a username and a parent id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Person {
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub parent_user_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

impl Person {
    pub fn is_empty(&self) -> bool {
        self.phone.is_none() && self.user_id.is_none()
    }

    pub fn contact(&self) -> ContactRef {
        ContactRef {
            phone: self.phone.clone(),
            user_id: self.user_id.clone(),
            parent_user_id: self.parent_user_id.clone(),
            username: self.username.clone(),
            name: self.name.clone(),
        }
    }

    /// Fill what this one lacks from `other` (a contacts[] entry).
    fn with(mut self, other: &Person) -> Person {
        self.phone = self.phone.or_else(|| other.phone.clone());
        self.user_id = self.user_id.or_else(|| other.user_id.clone());
        self.parent_user_id = self.parent_user_id.or_else(|| other.parent_user_id.clone());
        self.username = self.username.or_else(|| other.username.clone());
        self.name = self.name.or_else(|| other.name.clone());
        self
    }
}

/// A business-scoped user id: "US.13491208655302741918", or a parent one
/// "US.ENT.11815799212886844830" (a phone `wa_id` is digits only).
pub fn is_bsuid(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() < 4 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() || b[2] != b'.' {
        return false;
    }
    let rest = id[3..].strip_prefix("ENT.").unwrap_or(&id[3..]);
    !rest.is_empty() && rest.len() <= 128 && rest.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// An inbound message, normalised. (`from`/`name` are the phone and name of
/// payloads stored before 0.3; `contact` replaces them.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inbound {
    #[serde(default)]
    pub contact: Person,
    #[serde(default, skip_serializing)]
    pub from: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    pub wamid: String,
    pub to: Option<String>,
    pub kind: String,
    pub body: String,
    pub media_id: Option<String>,
    pub timestamp: Option<i64>,
    pub reply_to: Option<String>,
}

impl Inbound {
    /// Who sent it (older payloads: their phone and name).
    pub fn sender(&self) -> Person {
        let legacy = Person {
            phone: self.from.clone().filter(|f| f != "unknown"),
            name: self.name.clone(),
            ..Person::default()
        };
        self.contact.clone().with(&legacy)
    }

    pub fn op(&self) -> DomainOp {
        DomainOp::RecordInbound(InboundMessage {
            channel: CHANNEL.into(),
            contact: self.sender().contact(),
            external_id: self.wamid.clone(),
            to_addr: self.to.clone(),
            kind: self.kind.clone(),
            body: self.body.clone(),
            media_id: self.media_id.clone(),
            sent_at: self.timestamp,
            reply_to: self.reply_to.clone(),
        })
    }
}

/// A status of an outbound message, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub wamid: String,
    pub status: String,
    pub error: Option<String>,
    /// Who it went to, as WhatsApp names them now (absent before 0.3).
    #[serde(default)]
    pub recipient: Option<Person>,
}

/// An edit or a revoke of an earlier message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The changed message's wamid.
    pub original: String,
    /// The new body of an edit; none for a revoke.
    pub edited: Option<String>,
    pub timestamp: Option<i64>,
}

impl Change {
    pub fn op(&self) -> DomainOp {
        DomainOp::ChangeMessage(MessageChange {
            channel: CHANNEL.into(),
            external_id: self.original.clone(),
            change: match &self.edited {
                Some(body) => MessageChangeKind::Edited(body.clone()),
                None => MessageChangeKind::Revoked,
            },
            at: self.timestamp,
        })
    }
}

/// A user's new number or new user id (a system message), and the message itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub previous: Person,
    pub current: Person,
    pub message: Inbound,
}

impl Identity {
    /// The contact takes its new identifiers first; the notice is then filed under it.
    pub fn ops(&self) -> Vec<DomainOp> {
        let mut notice = self.message.clone();
        notice.contact = self.current.clone().with(&Person {
            name: self.previous.name.clone(),
            ..Person::default()
        });
        vec![
            DomainOp::UpdateContact(ContactUpdate {
                channel: CHANNEL.into(),
                previous: self.previous.contact(),
                current: self.current.contact(),
            }),
            notice.op(),
        ]
    }
}

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(x) if !x.trim().is_empty() => Some(x.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Split a delivery into message, status and ignored items.
pub fn parse_delivery(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new("invalid_json", format!("body is not valid JSON: {e}")))?;
    match root["object"].as_str() {
        Some("whatsapp_business_account") => {}
        Some(other) => {
            return Err(ParseError::new(
                "unsupported_object",
                format!("`object` is {other:?}; this adapter takes \"whatsapp_business_account\""),
            ));
        }
        None => {
            return Err(ParseError::new(
                "invalid_shape",
                "missing string field `object`",
            ));
        }
    }
    let entries = root["entry"]
        .as_array()
        .ok_or_else(|| ParseError::new("invalid_shape", "missing array field `entry`"))?;
    let mut items = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        let changes = entry["changes"].as_array().ok_or_else(|| {
            ParseError::new("invalid_shape", format!("entry[{e}].changes is missing"))
        })?;
        for (c, change) in changes.iter().enumerate() {
            let path = format!("entry[{e}].changes[{c}]");
            let value = &change["value"];
            let pnid = s(&value["metadata"]["phone_number_id"]);
            if change["field"].as_str() != Some("messages") {
                items.push(ignored(
                    &path,
                    pnid,
                    format!(
                        "field {:?} is not handled",
                        change["field"].as_str().unwrap_or("(none)")
                    ),
                    change,
                ));
                continue;
            }
            let display = s(&value["metadata"]["display_phone_number"]);
            let people: Vec<Person> = value["contacts"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| Person {
                            phone: s(&c["wa_id"]),
                            user_id: s(&c["user_id"]),
                            parent_user_id: s(&c["parent_user_id"]),
                            username: s(&c["profile"]["username"]),
                            name: s(&c["profile"]["name"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            // The contacts[] entry of a user named by phone or user id (or the only one).
            let known = |who: &Person| -> Person {
                let found = people.iter().find(|p| {
                    (who.phone.is_some() && p.phone == who.phone)
                        || (who.user_id.is_some() && p.user_id == who.user_id)
                });
                match (found, people.as_slice()) {
                    (Some(p), _) => who.clone().with(p),
                    (None, [only]) if who.is_empty() => only.clone(),
                    _ => who.clone(),
                }
            };
            // Errors of the whole value: they belong to its messages, when it has some.
            let value_error = value["errors"].as_array().and_then(|e| e.first()).map(|e| {
                s(&e["title"])
                    .or_else(|| s(&e["message"]))
                    .unwrap_or_else(|| "error".into())
            });
            for (m, msg) in value["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(wamid) = s(&msg["id"]) else {
                    return Err(ParseError::new(
                        "invalid_shape",
                        format!("{path}.value.messages[{m}].id is missing"),
                    ));
                };
                let sender = known(&Person {
                    phone: s(&msg["from"]),
                    user_id: s(&msg["from_user_id"]),
                    parent_user_id: s(&msg["from_parent_user_id"]),
                    ..Person::default()
                });
                let kind = s(&msg["type"]).unwrap_or_else(|| "unknown".into());
                let (mut body, media_id) = readable(&kind, msg);
                // An interactive message that came with only an error: its title.
                if kind == "interactive"
                    && !msg["interactive"].is_object()
                    && let Some(title) = msg["errors"]
                        .as_array()
                        .and_then(|e| e.first())
                        .and_then(|e| s(&e["title"]))
                        .or_else(|| value_error.clone())
                {
                    body = title;
                }
                let timestamp = s(&msg["timestamp"]).and_then(|t| t.parse().ok());
                // Scoped by the number: two tenants' numbers may see the same id.
                let dedup_key = format!("msg:{}:{wamid}", pnid.as_deref().unwrap_or("-"));
                // An edit or a revoke needs only the original's id; a message its sender.
                if sender.is_empty() && !matches!(kind.as_str(), "edit" | "revoke") {
                    let why =
                        format!("message {wamid} names no sender (neither from nor from_user_id)");
                    items.push(ignored(&path, pnid.clone(), why, msg));
                    continue;
                }
                let inbound = Inbound {
                    contact: sender.clone(),
                    from: None,
                    name: None,
                    wamid: wamid.clone(),
                    to: display.clone(),
                    kind: kind.clone(),
                    body,
                    media_id,
                    timestamp,
                    reply_to: s(&msg["context"]["id"]),
                };
                let (item_kind, payload) = match kind.as_str() {
                    "edit" | "revoke" => match s(&msg[kind.as_str()]["original_message_id"]) {
                        Some(original) => {
                            // Edits change a text or a media caption; anything
                            // else is a shape this adapter does not know.
                            let edited = (kind == "edit").then(|| {
                                let inner = &msg["edit"]["message"];
                                let t = s(&inner["type"]).unwrap_or_else(|| "text".into());
                                if EDITABLE.contains(&t.as_str()) {
                                    readable(&t, inner).0
                                } else {
                                    String::new()
                                }
                            });
                            // An edit whose new content cannot be read changes nothing.
                            if edited.as_deref().is_some_and(|b| b.trim().is_empty()) {
                                let why = format!(
                                    "edit {wamid} of {original} carries no content this adapter can read: the original message is unchanged"
                                );
                                items.push(ignored(&path, pnid.clone(), why, msg));
                                continue;
                            }
                            let change = Change {
                                original,
                                edited,
                                timestamp,
                            };
                            ("change", serde_json::to_vec(&change).unwrap_or_default())
                        }
                        None => {
                            let why = format!("{kind} {wamid} names no original_message_id");
                            items.push(ignored(&path, pnid.clone(), why, msg));
                            continue;
                        }
                    },
                    "system" => match identity_change(msg, &sender) {
                        Some((previous, current)) => {
                            let identity = Identity {
                                previous,
                                current,
                                message: inbound,
                            };
                            (
                                "identity",
                                serde_json::to_vec(&identity).unwrap_or_default(),
                            )
                        }
                        None => ("message", serde_json::to_vec(&inbound).unwrap_or_default()),
                    },
                    _ => ("message", serde_json::to_vec(&inbound).unwrap_or_default()),
                };
                items.push(Parsed {
                    dedup_key,
                    tenant_key: pnid.clone(),
                    kind: item_kind,
                    payload,
                });
            }
            for (i, st) in value["statuses"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let (Some(wamid), Some(status)) = (s(&st["id"]), s(&st["status"])) else {
                    return Err(ParseError::new(
                        "invalid_shape",
                        format!("{path}.value.statuses[{i}] needs id and status"),
                    ));
                };
                let error = st["errors"].as_array().and_then(|es| es.first()).map(|e| {
                    let code = s(&e["code"]).unwrap_or_default();
                    let title = s(&e["title"])
                        .or_else(|| s(&e["message"]))
                        .unwrap_or_default();
                    format!("{code}: {title}")
                });
                // Parent id: Meta's pages print three names for it; all are read.
                let recipient = known(&Person {
                    phone: s(&st["recipient_id"]),
                    user_id: s(&st["recipient_user_id"]),
                    parent_user_id: s(&st["recipient_parent_user_id"])
                        .or_else(|| s(&st["parent_recipient_user_id"]))
                        .or_else(|| s(&st["parent_user_id"])),
                    ..Person::default()
                });
                let item = Status {
                    wamid: wamid.clone(),
                    status: status.clone(),
                    error,
                    recipient: (!recipient.is_empty()).then_some(recipient),
                };
                items.push(Parsed {
                    dedup_key: format!(
                        "status:{}:{wamid}:{status}",
                        pnid.as_deref().unwrap_or("-")
                    ),
                    tenant_key: pnid.clone(),
                    kind: "status",
                    payload: serde_json::to_vec(&item).unwrap_or_default(),
                });
            }
            // Errors of the value as such (with messages, they were read into them above).
            let has_messages = value["messages"].as_array().is_some_and(|m| !m.is_empty());
            for err in value["errors"].as_array().into_iter().flatten() {
                let details = s(&err["error_data"]["details"])
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let why = format!(
                    "WhatsApp reported a webhook error{}: {} {}{details}",
                    if has_messages {
                        " with its messages"
                    } else {
                        ""
                    },
                    s(&err["code"]).unwrap_or_default(),
                    s(&err["title"])
                        .or_else(|| s(&err["message"]))
                        .unwrap_or_default()
                );
                items.push(ignored(&path, pnid.clone(), why, err));
            }
        }
    }
    Ok(items)
}

/// Message types an edit can change (a text, or a media message's caption).
const EDITABLE: [&str; 6] = ["text", "image", "video", "audio", "document", "sticker"];

/// A system message that changes who the user is: (before, after).
/// `user_changed_number` carries the new phone (and new user id);
/// `user_changed_user_id` only the new user id; `customer_changed_number`
/// with `new_wa_id` is the older name of the first.
fn identity_change(msg: &Value, sender: &Person) -> Option<(Person, Person)> {
    let system = &msg["system"];
    let kind = s(&system["type"])?;
    let current = match kind.as_str() {
        "user_changed_number" | "customer_changed_number" => Person {
            phone: s(&system["wa_id"]).or_else(|| s(&system["new_wa_id"])),
            user_id: s(&system["user_id"]),
            parent_user_id: s(&system["parent_user_id"]),
            ..Person::default()
        },
        "user_changed_user_id" => Person {
            user_id: s(&system["user_id"]),
            parent_user_id: s(&system["parent_user_id"]),
            ..Person::default()
        },
        _ => return None,
    };
    if current.is_empty() || sender.is_empty() {
        return None;
    }
    Some((sender.clone(), current))
}

fn ignored(path: &str, pnid: Option<String>, why: String, raw: &Value) -> Parsed {
    let digest =
        portico_sdk::signature::hmac_sha256_hex(b"portico-dedup", raw.to_string().as_bytes());
    Parsed {
        dedup_key: format!("ignored:{}", &digest[..32]),
        tenant_key: pnid,
        kind: "ignored",
        payload: format!("{path}: {why}").into_bytes(),
    }
}

/// The body a person reads in the CRM, and the media id, for each type.
pub fn readable(kind: &str, msg: &Value) -> (String, Option<String>) {
    let part = &msg[kind];
    let media = s(&part["id"]);
    let text = match kind {
        "text" => s(&part["body"]).unwrap_or_default(),
        "image" | "video" | "audio" | "sticker" | "document" => {
            let label = s(&part["caption"]).or_else(|| s(&part["filename"]));
            match (kind, label) {
                (_, Some(l)) => l,
                ("audio", None) if part["voice"].as_bool() == Some(true) => {
                    "[voice message]".into()
                }
                (k, None) => format!("[{k}]"),
            }
        }
        "location" => {
            let coords = format!("{},{}", part["latitude"], part["longitude"]);
            [Some(coords), s(&part["name"]), s(&part["address"])]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        }
        "contacts" => {
            let cards: Vec<String> = msg["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let name =
                        s(&c["name"]["formatted_name"]).unwrap_or_else(|| "(no name)".into());
                    let phones: Vec<String> = c["phones"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| s(&p["phone"]))
                        .collect();
                    if phones.is_empty() {
                        name
                    } else {
                        format!("{name} ({})", phones.join(", "))
                    }
                })
                .collect();
            format!("Contact: {}", cards.join("; "))
        }
        "interactive" => {
            let i = &msg["interactive"];
            let t = s(&i["type"]).unwrap_or_default();
            match t.as_str() {
                "nfm_reply" => flow_reply(&i["nfm_reply"]),
                "call_permission_reply" => call_permission(&i["call_permission_reply"]),
                _ => s(&i[t.as_str()]["title"]).unwrap_or_else(|| format!("[{t}]")),
            }
        }
        "button" => s(&part["text"])
            .or_else(|| s(&part["payload"]))
            .unwrap_or_else(|| "[button]".into()),
        "reaction" => {
            let target = s(&part["message_id"]).unwrap_or_default();
            match s(&part["emoji"]) {
                Some(emoji) => format!("{emoji} to {target}"),
                None => format!("reaction removed from {target}"),
            }
        }
        "order" => {
            let n = part["product_items"].as_array().map_or(0, Vec::len);
            let catalog = s(&part["catalog_id"]).unwrap_or_default();
            match s(&part["text"]) {
                Some(t) => format!("Order of {n} item(s) from catalog {catalog}: {t}"),
                None => format!("Order of {n} item(s) from catalog {catalog}"),
            }
        }
        "system" => s(&msg["system"]["body"]).unwrap_or_else(|| "[system]".into()),
        _ => {
            let title = msg["errors"]
                .as_array()
                .and_then(|e| e.first())
                .and_then(|e| s(&e["title"]));
            let sub = s(&msg["unsupported"]["type"]);
            match (title, sub) {
                (Some(t), Some(sub)) => format!("{t} ({sub})"),
                (Some(t), None) => t,
                (None, Some(sub)) => format!("Unsupported message ({sub})"),
                (None, None) => format!("Unsupported message ({kind})"),
            }
        }
    };
    let media = if matches!(kind, "image" | "video" | "audio" | "sticker" | "document") {
        media
    } else {
        None
    };
    (text, media)
}

/// A Flow's reply: its name and the fields it returned (`response_json` is a
/// JSON string; `flow_token` is Portico's own, not the user's answer).
fn flow_reply(reply: &Value) -> String {
    let name = s(&reply["name"]).unwrap_or_else(|| "flow".into());
    let fields: Vec<String> = reply["response_json"]
        .as_str()
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
        .and_then(|v| v.as_object().cloned())
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.as_str() != "flow_token")
                .map(|(k, v)| match v {
                    Value::String(text) => format!("{k}: {text}"),
                    other => format!("{k}: {other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    match (fields.is_empty(), s(&reply["body"])) {
        (false, _) => format!("Flow reply ({name}): {}", fields.join("; ")),
        (true, Some(body)) => format!("Flow reply ({name}): {body}"),
        (true, None) => format!("Flow reply ({name})"),
    }
}

/// A call permission answer: accepted or rejected, and for how long.
fn call_permission(reply: &Value) -> String {
    let verdict = match s(&reply["response"]).as_deref() {
        Some("accept") => "accepted",
        Some("reject") => "rejected",
        Some(other) => return format!("Call permission: {other}"),
        None => return "Call permission reply".into(),
    };
    let mut text = format!("Call permission {verdict}");
    if reply["is_permanent"].as_bool() == Some(true) {
        text.push_str(" permanently");
    } else if let Some(until) = s(&reply["expiration_timestamp"]) {
        text.push_str(&format!(" until {until} (unix time)"));
    }
    if s(&reply["response_source"]).as_deref() == Some("automatic") {
        text.push_str(" (automatic)");
    }
    text
}

/// A send request, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Send {
    pub tenant_id: i64,
    pub to: String,
    pub body: String,
    pub case_id: Option<i64>,
}

/// Validate `{tenant_id, to, body, case_id?}`; every problem by field.
pub fn validate_send(body: &[u8]) -> Result<Send, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let root: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Err(vec![("body".into(), format!("is not valid JSON: {e}"))]),
    };
    let tenant_id = root["tenant_id"].as_i64().filter(|t| *t > 0);
    if tenant_id.is_none() {
        problems.push((
            "tenant_id".into(),
            "is required: a tenant id (positive integer)".into(),
        ));
    }
    let to = s(&root["to"]).filter(|t| {
        is_bsuid(t)
            || (t.chars().filter(char::is_ascii_digit).count() >= 6
                && t.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c)))
    });
    if to.is_none() {
        problems.push((
            "to".into(),
            "is required: the recipient's phone number with country code (e.g. +5511987654321) or their business-scoped user id (e.g. US.13491208655302741918)"
                .into(),
        ));
    }
    let text = root["body"]
        .as_str()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    match &text {
        None => problems.push(("body".into(), "is required: the text to send".into())),
        Some(b) if b.chars().count() > 4096 => problems.push((
            "body".into(),
            "is longer than WhatsApp's 4096 characters".into(),
        )),
        _ => {}
    }
    let case_id = match &root["case_id"] {
        Value::Null => None,
        v => match v.as_i64().filter(|c| *c > 0) {
            Some(c) => Some(c),
            None => {
                problems.push(("case_id".into(), "must be a positive integer".into()));
                None
            }
        },
    };
    match (tenant_id, to, text) {
        (Some(tenant_id), Some(to), Some(body)) if problems.is_empty() => Ok(Send {
            tenant_id,
            to,
            body,
            case_id,
        }),
        _ => Err(problems),
    }
}

/// A phone number as WhatsApp ids write it: digits only ("+1 (650) 555-1234" → "16505551234").
pub fn phone_digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// The Cloud API request body for a text message: `to` a phone, or
/// `recipient` a business-scoped user id (then no `to`: it would win).
pub fn send_body(send: &Send) -> Value {
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "type": "text", "text": {"body": send.body}});
    if is_bsuid(&send.to) {
        body["recipient"] = json!(send.to);
    } else {
        body["to"] = json!(send.to);
    }
    body
}

/// Who a send goes to, as the contact is keyed: a user id, or wa_id digits.
pub fn send_contact(send: &Send) -> ContactRef {
    if is_bsuid(&send.to) {
        ContactRef::by_user_id(send.to.clone())
    } else {
        ContactRef::by_phone(phone_digits(&send.to))
    }
}

/// The wamid of an accepted send, or the provider's "code: message".
pub fn read_send_answer(status: u16, body: &[u8]) -> Result<String, String> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if (200..300).contains(&status)
        && let Some(id) = s(&json["messages"][0]["id"])
    {
        return Ok(id);
    }
    let e = &json["error"];
    match (s(&e["code"]), s(&e["message"])) {
        (Some(code), Some(message)) => {
            let details = s(&e["error_data"]["details"])
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            Err(format!("{code}: {message}{details}"))
        }
        _ => Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(body)
                .chars()
                .take(300)
                .collect::<String>()
        )),
    }
}

/// The status item as a domain operation; a status WhatsApp may add later is ignored
/// with the reason rather than failing the delivery.
pub fn status_op(status: Status) -> DomainOp {
    match DeliveryStatus::parse(&status.status) {
        Some(st) => DomainOp::UpdateStatus(StatusUpdate {
            channel: CHANNEL.into(),
            external_id: status.wamid,
            status: st,
            error: status.error,
            recipient: status.recipient.as_ref().map(Person::contact),
        }),
        None => DomainOp::Ignore(format!(
            "unknown status {:?} for wamid {}",
            status.status, status.wamid
        )),
    }
}

/// A send's dedup key: the caller's Idempotency-Key, scoped to the tenant (two tenants
/// may pick the same key); without one, `unique` (every request is its own send).
pub fn send_dedup_key(send: &Send, idempotency_key: Option<&str>, unique: &str) -> String {
    match idempotency_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => format!("send:key:{}:{key}", send.tenant_id),
        None => format!("send:{unique}"),
    }
}

/// What `deliver` reads back for one message: where to send it from, and the Cloud API body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub phone_number_id: String,
    pub request: Value,
}

/// The send as a queued message: nothing leaves here; `deliver` sends it.
pub fn send_op(send: &Send, phone_number_id: &str, idempotency_key: String) -> DomainOp {
    let delivery = Delivery {
        phone_number_id: phone_number_id.to_string(),
        request: send_body(send),
    };
    DomainOp::SendMessage(OutboundMessage {
        channel: CHANNEL.into(),
        tenant_id: send.tenant_id,
        // The contact is keyed like inbound ones: wa_id digits, no '+' or spaces.
        to: send_contact(send),
        from_addr: Some(phone_number_id.to_string()),
        body: send.body.clone(),
        case_id: send.case_id,
        idempotency_key,
        outbox_kind: OUTBOX_KIND.into(),
        payload: serde_json::to_vec(&delivery).unwrap_or_default(),
    })
}

/// An outbox row's payload, or the row's end when it cannot be read.
pub fn read_delivery(payload: &[u8]) -> Result<Delivery, RowOutcome> {
    let unreadable = |why: String| {
        RowOutcome::Rejected((
            "invalid_row".into(),
            format!("the stored message could not be read: {why}"),
        ))
    };
    let delivery: Delivery =
        serde_json::from_slice(payload).map_err(|e| unreadable(e.to_string()))?;
    if delivery.phone_number_id.trim().is_empty() {
        return Err(unreadable("phone_number_id is empty".into()));
    }
    Ok(delivery)
}

/// How a message ended from the Cloud API's answer. Every answer is final: a send is not
/// idempotent at WhatsApp, and even a 429 is not retried (the caller hears it at once).
pub fn answer_outcome(status: u16, body: &[u8]) -> RowOutcome {
    match read_send_answer(status, body) {
        Ok(wamid) => RowOutcome::Delivered(Some(wamid)),
        // Accepted, but with no id to track it by: it may well be on its way.
        Err(why) if (200..300).contains(&status) => {
            RowOutcome::Unknown(format!("{MAY_HAVE_SENT}: {why}"))
        }
        Err(why) => {
            let (code, message) = why.split_once(": ").unwrap_or(("provider_error", &why));
            RowOutcome::Rejected((code.to_string(), message.to_string()))
        }
    }
}

/// How a message ended when no answer came: refused by the host before it left, or
/// unknown (a timeout or broken connection may come after WhatsApp accepted it).
pub fn error_outcome(error: &OutboundError) -> RowOutcome {
    match error {
        OutboundError::NotAllowed(why) => RowOutcome::Rejected(("not_allowed".into(), why.clone())),
        OutboundError::Timeout(_) | OutboundError::Failed(_) => {
            RowOutcome::Unknown(format!("{MAY_HAVE_SENT}: {}", describe(error)))
        }
    }
}

/// The answer to a send: 502 when WhatsApp refused it, 202 while it is still queued,
/// else 200 with the wamid; `None` when the request made no message.
pub fn send_response(records: &[RecordRef]) -> Option<Response> {
    let m = records.iter().find(|r| r.kind == "message")?;
    Some(match m.status.as_str() {
        "failed" => Response::json(
            502,
            &json!({"error": "provider_error", "message": m.error, "message_id": m.id}),
        ),
        "pending" => Response::json(
            202,
            &json!({"message_id": m.id, "wamid": null, "status": "pending"}),
        ),
        status => Response::json(
            200,
            &json!({"message_id": m.id, "wamid": m.external_id, "status": status}),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(msg: Value) -> Inbound {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
            "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
            "contacts":[{"profile":{"name":"Ana"},"wa_id":"16505551234"}],"messages":[msg]}}]}]});
        let items = parse_delivery(body.to_string().as_bytes()).unwrap();
        assert_eq!(items[0].tenant_key.as_deref(), Some("106540352242922"));
        serde_json::from_slice(&items[0].payload).unwrap()
    }

    #[test]
    fn every_type_reads_well() {
        let base = |t: &str, part: Value| {
            let mut m =
                json!({"from":"16505551234","id":"wamid.X","timestamp":"1749416383","type":t});
            m[t] = part;
            m
        };
        assert_eq!(one(base("text", json!({"body":"Hi"}))).body, "Hi");
        let img = one(base("image", json!({"caption":"Taj Mahal","id":"m1"})));
        assert_eq!(
            (img.body.as_str(), img.media_id.as_deref()),
            ("Taj Mahal", Some("m1"))
        );
        assert_eq!(
            one(base("document", json!({"filename":"receipt.pdf","id":"d"}))).body,
            "receipt.pdf"
        );
        assert_eq!(
            one(base("audio", json!({"id":"a","voice":true}))).body,
            "[voice message]"
        );
        assert_eq!(one(base("sticker", json!({"id":"s"}))).body, "[sticker]");
        assert_eq!(one(base("video", json!({"id":"v"}))).body, "[video]");
        assert_eq!(
            one(base("location", json!({"latitude":37.44221496582,"longitude":-122.16165924072,"name":"Philz Coffee","address":"101 Forest Ave"}))).body,
            "37.44221496582,-122.16165924072 Philz Coffee 101 Forest Ave"
        );
        let mut c = json!({"from":"16505551234","id":"wamid.C","timestamp":"1","type":"contacts"});
        c["contacts"] = json!([{"name":{"formatted_name":"Barbara J. Johnson"},"phones":[{"phone":"+1 (415) 555-0829"}]}]);
        assert_eq!(
            one(c).body,
            "Contact: Barbara J. Johnson (+1 (415) 555-0829)"
        );
        let mut i = base(
            "interactive",
            json!({"type":"button_reply","button_reply":{"id":"x","title":"Cancel"}}),
        );
        i["context"] = json!({"from":"15550783881","id":"wamid.ORIG"});
        let i = one(i);
        assert_eq!(
            (i.body.as_str(), i.reply_to.as_deref()),
            ("Cancel", Some("wamid.ORIG"))
        );
        assert_eq!(
            one(base(
                "interactive",
                json!({"type":"list_reply","list_reply":{"id":"p","title":"Priority Mail Express"}})
            ))
            .body,
            "Priority Mail Express"
        );
        assert_eq!(
            one(base(
                "button",
                json!({"payload":"Unsubscribe","text":"Unsubscribe"})
            ))
            .body,
            "Unsubscribe"
        );
        assert_eq!(
            one(base(
                "reaction",
                json!({"message_id":"wamid.T","emoji":"👍"})
            ))
            .body,
            "👍 to wamid.T"
        );
        assert_eq!(
            one(base("reaction", json!({"message_id":"wamid.T"}))).body,
            "reaction removed from wamid.T"
        );
        assert_eq!(
            one(base(
                "order",
                json!({"catalog_id":"194","text":"Love these!","product_items":[{},{}]})
            ))
            .body,
            "Order of 2 item(s) from catalog 194: Love these!"
        );
        let mut u = base("unsupported", json!({"type":"video_note"}));
        u["errors"] = json!([{"code":131051,"title":"Message type unknown"}]);
        assert_eq!(one(u).body, "Message type unknown (video_note)");
        assert_eq!(
            one(base("unknown", json!({}))).body,
            "Unsupported message (unknown)"
        );
    }

    #[test]
    fn statuses_and_systems_without_contacts() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P"},
            "messages":[{"from":"16505551234","id":"wamid.S","timestamp":"1750269342","system":{"body":"User changed number","type":"user_changed_number"},"type":"system"}],
            "statuses":[{"id":"wamid.O","status":"failed","timestamp":"1","recipient_id":"1","errors":[{"code":131047,"title":"Re-engagement message"}]}]}}]}]}"#;
        let items = parse_delivery(body).unwrap();
        assert_eq!(items.len(), 2);
        // A changed number without the new one named is kept as a message.
        let sys: Inbound = serde_json::from_slice(&items[0].payload).unwrap();
        assert_eq!(
            (sys.body.as_str(), sys.contact.name.as_deref()),
            ("User changed number", None)
        );
        assert_eq!(
            items[1].dedup_key,
            format!(
                "status:{}:wamid.O:failed",
                items[1].tenant_key.as_deref().unwrap_or("-")
            )
        );
        let st: Status = serde_json::from_slice(&items[1].payload).unwrap();
        assert_eq!(st.error.as_deref(), Some("131047: Re-engagement message"));
    }

    #[test]
    fn sends_are_validated_by_field() {
        assert_eq!(
            validate_send(br#"{"tenant_id":1,"to":"+5511987654321","body":"Oi"}"#)
                .unwrap()
                .to,
            "+5511987654321"
        );
        let problems =
            validate_send(br#"{"tenant_id":"x","to":"abc","body":"","case_id":-1}"#).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["tenant_id", "to", "body", "case_id"]);
        assert_eq!(
            read_send_answer(200, br#"{"messages":[{"id":"wamid.OK"}]}"#),
            Ok("wamid.OK".into())
        );
        let e = read_send_answer(400, br#"{"error":{"message":"(#131047) Re-engagement message","code":131047,"error_data":{"details":"More than 24 hours"}}}"#).unwrap_err();
        assert_eq!(
            e,
            "131047: (#131047) Re-engagement message (More than 24 hours)"
        );
    }

    fn send() -> Send {
        validate_send(br#"{"tenant_id":7,"to":"+55 11 98765-4321","body":"Oi","case_id":3}"#)
            .unwrap()
    }

    fn rejected(o: RowOutcome) -> (String, String) {
        match o {
            RowOutcome::Rejected(pair) => pair,
            other => panic!("not rejected: {other:?}"),
        }
    }

    fn unknown(o: RowOutcome) -> String {
        match o {
            RowOutcome::Unknown(why) => why,
            other => panic!("not unknown: {other:?}"),
        }
    }

    #[test]
    fn a_send_is_queued_with_what_deliver_needs() {
        let op = send_op(&send(), "106540352242922", "send:key:7:k".into());
        let DomainOp::SendMessage(m) = op else {
            panic!("not a send")
        };
        assert_eq!(
            (m.to.phone.as_deref(), m.from_addr.as_deref(), m.case_id),
            (Some("5511987654321"), Some("106540352242922"), Some(3))
        );
        assert_eq!(
            (m.outbox_kind.as_str(), m.idempotency_key.as_str()),
            ("message", "send:key:7:k")
        );
        let d = read_delivery(&m.payload).unwrap();
        assert_eq!(d.phone_number_id, "106540352242922");
        assert_eq!(d.request, send_body(&send()));
        assert_eq!(d.request["to"], "+55 11 98765-4321");
        let (code, _) = rejected(read_delivery(b"{}").unwrap_err());
        assert_eq!(code, "invalid_row");
    }

    #[test]
    fn idempotency_keys_are_scoped_per_tenant() {
        assert_eq!(send_dedup_key(&send(), Some(" k1 "), "u"), "send:key:7:k1");
        assert_eq!(send_dedup_key(&send(), Some(""), "u"), "send:u");
        assert_eq!(send_dedup_key(&send(), None, "u"), "send:u");
    }

    #[test]
    fn answers_end_the_row() {
        assert!(matches!(
            answer_outcome(200, br#"{"messages":[{"id":"wamid.OK"}]}"#),
            RowOutcome::Delivered(Some(w)) if w == "wamid.OK"
        ));
        let body = br#"{"error":{"message":"(#131047) Re-engagement message","code":131047,"error_data":{"details":"More than 24 hours"}}}"#;
        assert_eq!(
            rejected(answer_outcome(400, body)),
            (
                "131047".into(),
                "(#131047) Re-engagement message (More than 24 hours)".into()
            )
        );
        let limited = br#"{"error":{"message":"(#130429) Rate limit hit","code":130429}}"#;
        assert_eq!(rejected(answer_outcome(429, limited)).0, "130429");
        assert_eq!(
            rejected(answer_outcome(500, b"oops")),
            ("HTTP 500".into(), "oops".into())
        );
        assert!(unknown(answer_outcome(200, b"{}")).starts_with(MAY_HAVE_SENT));
    }

    #[test]
    fn lost_answers_are_unknown_and_refusals_rejected() {
        let t = unknown(error_outcome(&OutboundError::Timeout("4000 ms".into())));
        assert_eq!(
            t,
            "the provider may have accepted it: outbound request timed out: 4000 ms"
        );
        assert!(
            unknown(error_outcome(&OutboundError::Failed("reset".into())))
                .starts_with(MAY_HAVE_SENT)
        );
        assert_eq!(
            rejected(error_outcome(&OutboundError::NotAllowed(
                "x.example".into()
            ))),
            ("not_allowed".into(), "x.example".into())
        );
    }

    #[test]
    fn statuses_map_to_the_enum_or_are_ignored() {
        let st = |status: &str| Status {
            wamid: "wamid.A".into(),
            status: status.into(),
            error: None,
            recipient: None,
        };
        assert!(matches!(
            status_op(st("played")),
            DomainOp::UpdateStatus(u) if u.status == DeliveryStatus::Played
        ));
        assert!(matches!(
            status_op(st("deleted")),
            DomainOp::Ignore(why) if why == "unknown status \"deleted\" for wamid wamid.A"
        ));
    }

    #[test]
    fn send_answers_follow_the_message() {
        let record = |status: &str, external_id: Option<&str>, error: Option<&str>| RecordRef {
            kind: "message".into(),
            id: 9,
            status: status.into(),
            external_id: external_id.map(str::to_string),
            error: error.map(str::to_string),
        };
        let body =
            |r: Response| -> (u16, Value) { (r.status, serde_json::from_slice(&r.body).unwrap()) };
        assert_eq!(
            body(send_response(&[record("sent", Some("wamid.S"), None)]).unwrap()),
            (
                200,
                json!({"message_id": 9, "wamid": "wamid.S", "status": "sent"})
            )
        );
        assert_eq!(
            body(send_response(&[record("pending", None, None)]).unwrap()),
            (
                202,
                json!({"message_id": 9, "wamid": null, "status": "pending"})
            )
        );
        assert_eq!(
            body(send_response(&[record("failed", None, Some("190: expired"))]).unwrap()),
            (
                502,
                json!({"error": "provider_error", "message": "190: expired", "message_id": 9})
            )
        );
        assert!(send_response(&[]).is_none());
    }

    fn parsed(value: Value) -> Vec<Parsed> {
        let mut value = value;
        value["metadata"] = json!({"display_phone_number": "15550783881", "phone_number_id": "P"});
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value": value}]}]});
        parse_delivery(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn users_are_known_by_phone_user_id_or_both() {
        assert!(is_bsuid("US.13491208655302741918"));
        assert!(is_bsuid("US.ENT.11815799212886844830"));
        assert!(
            !is_bsuid("16505551234")
                && !is_bsuid("us.123")
                && !is_bsuid("US.")
                && !is_bsuid("US.12-3")
        );
        // WA-BSUID's incoming message: a username and a BSUID, no phone.
        let items = parsed(json!({
            "contacts":[{"profile":{"name":"Sheena Nelson","username":"@realsheenanelson"},"user_id":"US.13491208655302741918"}],
            "messages":[{"from_user_id":"US.13491208655302741918","id":"wamid.B","timestamp":"1749416383","type":"text","text":{"body":"Hi"}}]}));
        let m: Inbound = serde_json::from_slice(&items[0].payload).unwrap();
        let who = m.sender();
        assert_eq!(
            (
                who.phone,
                who.user_id.as_deref(),
                who.username.as_deref(),
                who.name.as_deref()
            ),
            (
                None,
                Some("US.13491208655302741918"),
                Some("@realsheenanelson"),
                Some("Sheena Nelson")
            )
        );
        // A status to a BSUID names its recipient.
        let items = parsed(json!({
            "contacts":[{"profile":{"name":"Pablo M.","username":"@pablomorales"},"user_id":"US.1"}],
            "statuses":[{"id":"wamid.S","status":"delivered","timestamp":"1","recipient_user_id":"US.1","parent_recipient_user_id":"US.ENT.2"}]}));
        let st: Status = serde_json::from_slice(&items[0].payload).unwrap();
        let r = st.recipient.unwrap();
        assert_eq!(
            (
                r.user_id.as_deref(),
                r.parent_user_id.as_deref(),
                r.username.as_deref()
            ),
            (Some("US.1"), Some("US.ENT.2"), Some("@pablomorales"))
        );
        // Payloads stored before 0.3 still read: their phone and name.
        let old: Inbound = serde_json::from_str(r#"{"from":"16505551234","name":"Ana","wamid":"w","to":null,"kind":"text","body":"b","media_id":null,"timestamp":null,"reply_to":null}"#).unwrap();
        assert_eq!(
            (old.sender().phone.as_deref(), old.sender().name.as_deref()),
            (Some("16505551234"), Some("Ana"))
        );
    }

    #[test]
    fn edits_revokes_and_identity_changes_are_their_own_items() {
        let items = parsed(json!({"messages":[
            {"from":"1","id":"wamid.E","timestamp":"5","type":"edit","edit":{"original_message_id":"wamid.O","message":{"type":"text","text":{"body":"fixed"}}}},
            {"from":"1","id":"wamid.R","timestamp":"6","type":"revoke","revoke":{"original_message_id":"wamid.O2"}},
            {"from":"1","id":"wamid.Y","timestamp":"7","type":"system","system":{"body":"changed","wa_id":"2","type":"user_changed_number"}},
            {"from":"1","id":"wamid.Z","timestamp":"8","type":"revoke","revoke":{}},
            {"from":"1","id":"wamid.Q","timestamp":"9","type":"edit","edit":{"original_message_id":"wamid.O","message":{"type":"mystery"}}},
            {"id":"wamid.N","timestamp":"10","type":"revoke","revoke":{"original_message_id":"wamid.O3"}}]}));
        let kinds: Vec<&str> = items.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            [
                "change", "change", "identity", "ignored", "ignored", "change"
            ]
        );
        let edit: Change = serde_json::from_slice(&items[0].payload).unwrap();
        assert_eq!(
            (edit.original.as_str(), edit.edited.as_deref()),
            ("wamid.O", Some("fixed"))
        );
        let revoke: Change = serde_json::from_slice(&items[1].payload).unwrap();
        assert_eq!(revoke.edited, None);
        let id: Identity = serde_json::from_slice(&items[2].payload).unwrap();
        assert_eq!(
            (id.previous.phone.as_deref(), id.current.phone.as_deref()),
            (Some("1"), Some("2"))
        );
        assert!(matches!(&id.ops()[0], DomainOp::UpdateContact(_)));
    }

    #[test]
    fn flows_and_call_permissions_read_well() {
        let msg = |interactive: Value| json!({"type":"interactive","interactive": interactive});
        assert_eq!(
            readable("interactive", &msg(json!({"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\"flow_token\":\"x\",\"size\":\"M\"}"}}))).0,
            "Flow reply (flow): size: M"
        );
        assert_eq!(
            readable(
                "interactive",
                &msg(
                    json!({"type":"nfm_reply","nfm_reply":{"name":"address_message","body":"Sent"}})
                )
            )
            .0,
            "Flow reply (address_message): Sent"
        );
        assert_eq!(
            readable("interactive", &msg(json!({"type":"call_permission_reply","call_permission_reply":{"response":"accept","is_permanent":true}}))).0,
            "Call permission accepted permanently"
        );
        assert_eq!(
            readable("interactive", &msg(json!({"type":"call_permission_reply","call_permission_reply":{"response":"reject","response_source":"automatic"}}))).0,
            "Call permission rejected (automatic)"
        );
    }

    #[test]
    fn a_send_to_a_user_id_names_the_recipient_not_to() {
        let send = validate_send(br#"{"tenant_id":7,"to":"US.13491208655302741918","body":"Oi"}"#)
            .unwrap();
        let body = send_body(&send);
        assert_eq!(body["recipient"], "US.13491208655302741918");
        assert!(body.get("to").is_none());
        let c = send_contact(&send);
        assert_eq!(
            (c.phone, c.user_id.as_deref()),
            (None, Some("US.13491208655302741918"))
        );
    }
}
