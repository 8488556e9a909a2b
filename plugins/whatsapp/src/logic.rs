//! WhatsApp Cloud API logic, free of host calls.
//!
//! A delivery is `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
//! "value":{"metadata":{"phone_number_id"},"contacts","messages","statuses"}}]}]}`. Every message
//! and every status is its own item; each message type gets a body a person can read.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const CHANNEL: &str = "whatsapp";
pub const TENANT_KIND: &str = "whatsapp";

/// A problem with the body; retrying the same bytes cannot help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        code,
        message: message.into(),
    }
}

/// An inbound message, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inbound {
    pub from: String,
    pub name: Option<String>,
    pub wamid: String,
    pub to: Option<String>,
    pub kind: String,
    pub body: String,
    pub media_id: Option<String>,
    pub timestamp: Option<i64>,
    pub reply_to: Option<String>,
}

/// A status of an outbound message, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub wamid: String,
    pub status: String,
    pub error: Option<String>,
}

/// One item of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub dedup_key: String,
    pub phone_number_id: Option<String>,
    pub kind: &'static str,
    pub payload: Vec<u8>,
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
        .map_err(|e| bad("invalid_json", format!("body is not valid JSON: {e}")))?;
    match root["object"].as_str() {
        Some("whatsapp_business_account") => {}
        Some(other) => {
            return Err(bad(
                "unsupported_object",
                format!("`object` is {other:?}; this adapter takes \"whatsapp_business_account\""),
            ));
        }
        None => return Err(bad("invalid_shape", "missing string field `object`")),
    }
    let entries = root["entry"]
        .as_array()
        .ok_or_else(|| bad("invalid_shape", "missing array field `entry`"))?;
    let mut items = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        let changes = entry["changes"]
            .as_array()
            .ok_or_else(|| bad("invalid_shape", format!("entry[{e}].changes is missing")))?;
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
            let names: Vec<(String, String)> = value["contacts"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| Some((s(&c["wa_id"])?, s(&c["profile"]["name"])?)))
                        .collect()
                })
                .unwrap_or_default();
            for (m, msg) in value["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(wamid) = s(&msg["id"]) else {
                    return Err(bad(
                        "invalid_shape",
                        format!("{path}.value.messages[{m}].id is missing"),
                    ));
                };
                let from = s(&msg["from"]).unwrap_or_else(|| "unknown".into());
                let kind = s(&msg["type"]).unwrap_or_else(|| "unknown".into());
                let (body, media_id) = readable(&kind, msg);
                let inbound = Inbound {
                    name: names
                        .iter()
                        .find(|(id, _)| *id == from)
                        .map(|(_, n)| n.clone()),
                    from,
                    wamid: wamid.clone(),
                    to: display.clone(),
                    kind,
                    body,
                    media_id,
                    timestamp: s(&msg["timestamp"]).and_then(|t| t.parse().ok()),
                    reply_to: s(&msg["context"]["id"]),
                };
                items.push(Parsed {
                    dedup_key: format!("msg:{wamid}"),
                    phone_number_id: pnid.clone(),
                    kind: "message",
                    payload: serde_json::to_vec(&inbound).unwrap_or_default(),
                });
            }
            for (i, st) in value["statuses"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let (Some(wamid), Some(status)) = (s(&st["id"]), s(&st["status"])) else {
                    return Err(bad(
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
                let item = Status {
                    wamid: wamid.clone(),
                    status: status.clone(),
                    error,
                };
                items.push(Parsed {
                    dedup_key: format!("status:{wamid}:{status}"),
                    phone_number_id: pnid.clone(),
                    kind: "status",
                    payload: serde_json::to_vec(&item).unwrap_or_default(),
                });
            }
            for err in value["errors"].as_array().into_iter().flatten() {
                let why = format!(
                    "WhatsApp reported an error for the number: {} {}",
                    s(&err["code"]).unwrap_or_default(),
                    s(&err["title"]).unwrap_or_default()
                );
                items.push(ignored(&path, pnid.clone(), why, err));
            }
        }
    }
    Ok(items)
}

fn ignored(path: &str, pnid: Option<String>, why: String, raw: &Value) -> Parsed {
    let digest =
        portico_sdk::signature::hmac_sha256_hex(b"portico-dedup", raw.to_string().as_bytes());
    Parsed {
        dedup_key: format!("ignored:{}", &digest[..32]),
        phone_number_id: pnid,
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
            s(&i[t.as_str()]["title"]).unwrap_or_else(|| format!("[{t}]"))
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
        t.chars().filter(char::is_ascii_digit).count() >= 6
            && t.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c))
    });
    if to.is_none() {
        problems.push((
            "to".into(),
            "is required: the recipient's phone number with country code, e.g. +5511987654321"
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

/// The Cloud API request body for a text message.
pub fn send_body(send: &Send) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": send.to, "type": "text", "text": {"body": send.body}})
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one(msg: Value) -> Inbound {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
            "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
            "contacts":[{"profile":{"name":"Ana"},"wa_id":"16505551234"}],"messages":[msg]}}]}]});
        let items = parse_delivery(body.to_string().as_bytes()).unwrap();
        assert_eq!(items[0].phone_number_id.as_deref(), Some("106540352242922"));
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
        let mut u = base("unsupported", json!({"type":"edit"}));
        u["errors"] = json!([{"code":131051,"title":"Message type unknown"}]);
        assert_eq!(one(u).body, "Message type unknown (edit)");
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
        let sys: Inbound = serde_json::from_slice(&items[0].payload).unwrap();
        assert_eq!(
            (sys.body.as_str(), sys.name.as_deref()),
            ("User changed number", None)
        );
        assert_eq!(items[1].dedup_key, "status:wamid.O:failed");
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
}
