//! Meta Lead Ads logic, free of host calls so it is unit-tested natively.
//!
//! A delivery is `{"object":"page","entry":[{"id","time","changes":[{"field","value"}]}]}`.
//! Every change is one item: `leadgen` changes become leads, other fields are ignored
//! with a reason. Ids arrive as strings on the wire and as numbers in Meta's docs:
//! both are accepted.

use portico_sdk::{ParseError, Parsed};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `source` column of leads created by this adapter.
pub const LEAD_SOURCE: &str = "Meta";
/// The lead_sources kind that maps a page id to a tenant.
pub const TENANT_KIND: &str = "meta";
/// Item kind of a lead change.
pub const KIND_LEADGEN: &str = "leadgen";
/// Item kind of a change this adapter does not act on.
pub const KIND_IGNORED: &str = "ignored";

/// The payload of a leadgen item: the change's ids, normalised to strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadgenChange {
    pub leadgen_id: String,
    pub page_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adgroup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

/// The payload of an ignored item: why it was not acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IgnoredChange {
    pub reason: String,
}

/// The lead an item maps to, before it becomes a WIT record.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedLead {
    pub external_id: String,
    pub form_id: Option<String>,
    pub ad_id: Option<String>,
    pub campaign_id: Option<String>,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Everything else worth keeping, stored as fields_json.
    pub fields: serde_json::Map<String, Value>,
}

impl MappedLead {
    pub fn fields_json(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }
}

/// What one item turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    Lead(MappedLead),
    Ignore(String),
}

/// Split a delivery into items, one per change.
pub fn parse_delivery(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new("invalid_json", format!("body is not valid JSON: {e}")))?;
    let object = root
        .get("object")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::new("invalid_shape", "missing string field `object`"))?;
    if object != "page" {
        return Err(ParseError::new(
            "unsupported_object",
            format!(
                "`object` is {object:?}; this adapter takes Page deliveries (\"page\") with leadgen changes"
            ),
        ));
    }
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError::new("invalid_shape", "missing array field `entry`"))?;

    let mut items = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        let entry_id = id_string(entry.get("id"));
        let time = entry.get("time").and_then(Value::as_i64);
        let changes = entry
            .get("changes")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ParseError::new(
                    "invalid_shape",
                    format!(
                        "entry[{e}].changes is missing: enable \"Include Values\" for the leadgen subscription"
                    ),
                )
            })?;
        for (c, change) in changes.iter().enumerate() {
            let path = format!("entry[{e}].changes[{c}]");
            let field = change.get("field").and_then(Value::as_str).unwrap_or("");
            if field == KIND_LEADGEN {
                items.push(leadgen_item(
                    change.get("value"),
                    entry_id.as_deref(),
                    &path,
                )?);
            } else {
                items.push(ignored_item(
                    field,
                    entry_id.as_deref(),
                    time,
                    &path,
                    change,
                )?);
            }
        }
    }
    Ok(items)
}

fn leadgen_item(
    value: Option<&Value>,
    entry_id: Option<&str>,
    path: &str,
) -> Result<Parsed, ParseError> {
    let value = value
        .filter(|v| v.is_object())
        .ok_or_else(|| ParseError::new("invalid_shape", format!("{path}.value is missing")))?;
    let leadgen_id = id_string(value.get("leadgen_id")).ok_or_else(|| {
        ParseError::new(
            "invalid_shape",
            format!("{path}.value.leadgen_id is missing"),
        )
    })?;
    let page_id = id_string(value.get("page_id"))
        .or_else(|| entry_id.map(str::to_string))
        .ok_or_else(|| {
            ParseError::new(
                "invalid_shape",
                format!("{path}.value.page_id is missing and the entry has no id"),
            )
        })?;
    let change = LeadgenChange {
        leadgen_id,
        page_id,
        form_id: id_string(value.get("form_id")),
        ad_id: id_string(value.get("ad_id")),
        adgroup_id: id_string(value.get("adgroup_id")),
        campaign_id: id_string(value.get("campaign_id")),
        created_time: value.get("created_time").and_then(Value::as_i64),
    };
    Ok(Parsed {
        dedup_key: format!("leadgen:{}", change.leadgen_id),
        tenant_key: Some(change.page_id.clone()),
        kind: KIND_LEADGEN,
        payload: to_json(&change)?,
    })
}

fn ignored_item(
    field: &str,
    entry_id: Option<&str>,
    time: Option<i64>,
    path: &str,
    change: &Value,
) -> Result<Parsed, ParseError> {
    let field = if field.is_empty() { "(none)" } else { field };
    let reason = format!("{path}: field {field:?} is not handled by the Meta Lead Ads adapter");
    // Stable across provider retries of the same delivery: the change's own bytes.
    let digest = portico_sdk::signature::to_hex(&short_digest(change.to_string().as_bytes()));
    Ok(Parsed {
        dedup_key: format!(
            "{field}:{}:{}:{digest}",
            entry_id.unwrap_or("-"),
            time.unwrap_or_default()
        ),
        tenant_key: entry_id.map(str::to_string),
        kind: KIND_IGNORED,
        payload: to_json(&IgnoredChange { reason })?,
    })
}

fn short_digest(bytes: &[u8]) -> [u8; 8] {
    let full = portico_sdk::signature::hmac_sha256(b"portico-dedup", bytes);
    let mut out = [0; 8];
    out.copy_from_slice(&full[..8]);
    out
}

/// Turn an item back into what the host should do with it.
pub fn map_item(kind: &str, payload: &[u8]) -> Result<Mapped, ParseError> {
    match kind {
        KIND_LEADGEN => {
            let change: LeadgenChange = serde_json::from_slice(payload).map_err(|e| {
                ParseError::new("invalid_item", format!("leadgen item payload: {e}"))
            })?;
            let mut fields = serde_json::Map::new();
            fields.insert("page_id".into(), Value::String(change.page_id.clone()));
            if let Some(adgroup) = &change.adgroup_id {
                fields.insert("adgroup_id".into(), Value::String(adgroup.clone()));
            }
            if let Some(t) = change.created_time {
                fields.insert("created_time".into(), Value::from(t));
            }
            Ok(Mapped::Lead(MappedLead {
                external_id: change.leadgen_id,
                form_id: change.form_id,
                ad_id: change.ad_id,
                campaign_id: change.campaign_id,
                full_name: None,
                email: None,
                phone: None,
                fields,
            }))
        }
        KIND_IGNORED => {
            let ignored: IgnoredChange = serde_json::from_slice(payload).map_err(|e| {
                ParseError::new("invalid_item", format!("ignored item payload: {e}"))
            })?;
            Ok(Mapped::Ignore(ignored.reason))
        }
        other => Err(ParseError::new(
            "unknown_item_kind",
            format!("item kind {other:?} was not produced by this adapter"),
        )),
    }
}

/// Lead fields asked of the Graph API (always name them: the default set is tiny).
pub const GRAPH_FIELDS: &str = "id,created_time,ad_id,ad_name,adset_id,adset_name,campaign_id,campaign_name,form_id,is_organic,platform,field_data,custom_disclaimer_responses";

/// `GET {base}/v{version}/{leadgen_id}?fields=...&access_token=...`
pub fn graph_lead_url(base: &str, version: &str, leadgen_id: &str, token: &str) -> String {
    format!(
        "{}?fields={GRAPH_FIELDS}&access_token={}",
        portico_sdk::outbound::api_url(base, version, &url_escape(leadgen_id)),
        url_escape(token)
    )
}

fn url_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a Graph lead could not be read: code, message (Graph's own), retryable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphFailure {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
}

/// What Graph says about a lead, ready to merge into the webhook's lead.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphLead {
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub form_id: Option<String>,
    pub ad_id: Option<String>,
    pub campaign_id: Option<String>,
    pub extra: serde_json::Map<String, Value>,
}

/// Read Graph's answer to a lead GET: the lead, or a classified failure.
///
/// Expired tokens (190), rate limits (4, 17, 32, 613), transient errors (1, 2) and
/// 5xx are retryable: an operator renews the token or waits, then replays. A lead
/// Graph says does not exist (code 100) is not.
pub fn read_graph_answer(status: u16, body: &[u8]) -> Result<GraphLead, GraphFailure> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(err) = json.as_ref().and_then(|j| j.get("error")) {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or_default();
        let subcode = err.get("error_subcode").and_then(Value::as_i64);
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        let kind = err
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("GraphError");
        let trace = err.get("fbtrace_id").and_then(Value::as_str).unwrap_or("-");
        let sub = subcode
            .map(|s| format!(", subcode {s}"))
            .unwrap_or_default();
        let (short, retryable) = match code {
            190 | 102 => ("graph_token_invalid", true),
            4 | 17 | 32 | 613 | 80001 => ("graph_rate_limited", true),
            100 => ("graph_lead_not_found", false),
            _ => ("graph_error", true),
        };
        return Err(GraphFailure {
            code: short,
            message: format!(
                "Graph API {kind} {code}{sub} (HTTP {status}): {message} [fbtrace_id {trace}]"
            ),
            retryable,
        });
    }
    if !(200..300).contains(&status) {
        let snippet: String = String::from_utf8_lossy(body).chars().take(300).collect();
        return Err(GraphFailure {
            code: "graph_http_error",
            message: format!("Graph API answered HTTP {status}: {snippet}"),
            retryable: status >= 500 || status == 429 || status == 408,
        });
    }
    let Some(Value::Object(lead)) = json else {
        return Err(GraphFailure {
            code: "graph_bad_answer",
            message: "Graph API answered 2xx with a body that is not a JSON object".into(),
            retryable: true,
        });
    };
    Ok(graph_lead(lead))
}

fn graph_lead(mut lead: serde_json::Map<String, Value>) -> GraphLead {
    let mut out = GraphLead::default();
    let mut answers = serde_json::Map::new();
    let mut first_name = None;
    let mut last_name = None;
    if let Some(Value::Array(fields)) = lead.remove("field_data") {
        for field in fields {
            let Some(name) = field.get("name").and_then(Value::as_str) else {
                continue;
            };
            let values: Vec<String> = field
                .get("values")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let single = values.first().cloned().filter(|v| !v.trim().is_empty());
            match name {
                "full_name" => out.full_name = single,
                "first_name" => first_name = single,
                "last_name" => last_name = single,
                "email" => out.email = single,
                "phone_number" => out.phone = single,
                _ => {}
            }
            let value = if values.len() == 1 {
                Value::String(values[0].clone())
            } else {
                Value::from(values)
            };
            answers.insert(name.to_string(), value);
        }
    }
    if out.full_name.is_none() {
        let joined = [first_name, last_name]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        out.full_name = Some(joined).filter(|s| !s.is_empty());
    }
    out.form_id = id_string(lead.get("form_id"));
    out.ad_id = id_string(lead.get("ad_id"));
    out.campaign_id = id_string(lead.get("campaign_id"));
    lead.remove("id");
    out.extra
        .insert("field_data".into(), Value::Object(answers));
    for (k, v) in lead {
        if !matches!(k.as_str(), "form_id" | "ad_id" | "campaign_id") {
            out.extra.insert(k, v);
        }
    }
    out
}

/// Merge what Graph said into the lead mapped from the webhook (Graph wins where it speaks).
pub fn enrich(lead: &mut MappedLead, graph: GraphLead) {
    lead.full_name = graph.full_name.or(lead.full_name.take());
    lead.email = graph.email.or(lead.email.take());
    lead.phone = graph.phone.or(lead.phone.take());
    lead.form_id = graph.form_id.or(lead.form_id.take());
    lead.ad_id = graph.ad_id.or(lead.ad_id.take());
    lead.campaign_id = graph.campaign_id.or(lead.campaign_id.take());
    lead.fields.extend(graph.extra);
}

/// Ids are strings on the wire, numbers in some docs: accept both, keep digits exact.
fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ParseError> {
    serde_json::to_vec(value).map_err(|e| ParseError::new("internal", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SAMPLE: &str = r#"{"object":"page","entry":[{"id":153125381133,"time":1438292065,"changes":[
        {"field":"leadgen","value":{"leadgen_id":123123123123,"page_id":123123123,"form_id":12312312312,"adgroup_id":12312312312,"ad_id":12312312312,"created_time":1440120384}},
        {"field":"leadgen","value":{"leadgen_id":123123123124,"page_id":123123123,"form_id":12312312312,"adgroup_id":12312312312,"ad_id":12312312312,"created_time":1440120384}}]}]}"#;

    // Meta's test tool: string ids, no ad_id.
    const TEST_TOOL: &str = r#"{"object":"page","entry":[{"id":"138124712925158","time":1630087927,"changes":[{"value":{"form_id":"172036835026334","leadgen_id":"233370042045345","created_time":1630087926,"page_id":"138124712925158"},"field":"leadgen"}]}]}"#;

    #[test]
    fn numeric_ids_become_exact_strings() {
        let items = parse_delivery(DOC_SAMPLE.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].dedup_key, "leadgen:123123123123");
        assert_eq!(items[1].dedup_key, "leadgen:123123123124");
        assert_eq!(items[0].tenant_key.as_deref(), Some("123123123"));
        let Mapped::Lead(lead) = map_item(items[0].kind, &items[0].payload).unwrap() else {
            panic!("expected a lead")
        };
        assert_eq!(lead.external_id, "123123123123");
        assert_eq!(lead.ad_id.as_deref(), Some("12312312312"));
    }

    #[test]
    fn test_tool_lead_without_ad_id() {
        let items = parse_delivery(TEST_TOOL.as_bytes()).unwrap();
        assert_eq!(items.len(), 1);
        let Mapped::Lead(lead) = map_item(items[0].kind, &items[0].payload).unwrap() else {
            panic!("expected a lead")
        };
        assert_eq!(lead.external_id, "233370042045345");
        assert_eq!(lead.form_id.as_deref(), Some("172036835026334"));
        assert_eq!(lead.ad_id, None);
        let fields: Value = serde_json::from_str(&lead.fields_json()).unwrap();
        assert_eq!(fields["page_id"], "138124712925158");
        assert_eq!(fields["created_time"], 1630087926);
    }

    #[test]
    fn other_fields_are_ignored_with_a_reason() {
        let body = r#"{"object":"page","entry":[{"id":"1","time":5,"changes":[{"field":"feed","value":{"x":1}}]}]}"#;
        let items = parse_delivery(body.as_bytes()).unwrap();
        assert_eq!(items[0].kind, KIND_IGNORED);
        assert_eq!(
            items[0].dedup_key,
            parse_delivery(body.as_bytes()).unwrap()[0].dedup_key
        );
        let Mapped::Ignore(reason) = map_item(items[0].kind, &items[0].payload).unwrap() else {
            panic!("expected ignore")
        };
        assert!(reason.contains("\"feed\""), "{reason}");
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        assert_eq!(parse_delivery(b"{").unwrap_err().code, "invalid_json");
        let e = parse_delivery(br#"{"object":"user","entry":[]}"#).unwrap_err();
        assert_eq!(e.code, "unsupported_object");
        let e = parse_delivery(
            br#"{"object":"page","entry":[{"id":"1","changes":[{"field":"leadgen","value":{}}]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.message.contains("entry[0].changes[0].value.leadgen_id"),
            "{}",
            e.message
        );
    }

    const GRAPH_LEAD: &str = r#"{"id":"1789012345678901","created_time":"2026-09-20T15:25:28+0000","ad_id":"120215566778899001","ad_name":"Spring promo \u2013 carousel","campaign_id":"120215566778899003","form_id":"812345678901234","is_organic":false,"platform":"fb",
        "field_data":[{"name":"full_name","values":["Jos\u00e9 P\u00e9rez"]},{"name":"email","values":["jose.perez@example.com"]},{"name":"phone_number","values":["+5511987654321"]},{"name":"city","values":["S\u00e3o Paulo"]},{"name":"interests","values":["a","b"]}],
        "custom_disclaimer_responses":[{"checkbox_key":"optional_1","is_checked":"1"}]}"#;

    #[test]
    fn graph_lead_fills_the_lead_and_keeps_the_rest() {
        let items = parse_delivery(TEST_TOOL.as_bytes()).unwrap();
        let Mapped::Lead(mut lead) = map_item(items[0].kind, &items[0].payload).unwrap() else {
            panic!("expected a lead")
        };
        enrich(
            &mut lead,
            read_graph_answer(200, GRAPH_LEAD.as_bytes()).unwrap(),
        );
        assert_eq!(lead.full_name.as_deref(), Some("José Pérez"));
        assert_eq!(lead.email.as_deref(), Some("jose.perez@example.com"));
        assert_eq!(lead.phone.as_deref(), Some("+5511987654321"));
        assert_eq!(lead.ad_id.as_deref(), Some("120215566778899001"));
        assert_eq!(lead.campaign_id.as_deref(), Some("120215566778899003"));
        let fields: Value = serde_json::from_str(&lead.fields_json()).unwrap();
        assert_eq!(fields["field_data"]["city"], "São Paulo");
        assert_eq!(
            fields["field_data"]["interests"],
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            fields["custom_disclaimer_responses"][0]["checkbox_key"],
            "optional_1"
        );
        assert_eq!(fields["page_id"], "138124712925158");
        assert_eq!(fields["platform"], "fb");
    }

    #[test]
    fn first_and_last_name_make_a_full_name() {
        let body = br#"{"id":"1","field_data":[{"name":"first_name","values":["Ana"]},{"name":"last_name","values":["Silva"]}]}"#;
        assert_eq!(
            read_graph_answer(200, body).unwrap().full_name.as_deref(),
            Some("Ana Silva")
        );
    }

    #[test]
    fn graph_errors_are_classified() {
        let expired = br#"{"error":{"message":"Error validating access token: Session has expired","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"AbC"}}"#;
        let e = read_graph_answer(400, expired).unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.code, "graph_token_invalid");
        assert!(
            e.message.contains("Session has expired") && e.message.contains("190"),
            "{}",
            e.message
        );
        let limited = br#"{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17}}"#;
        assert!(read_graph_answer(400, limited).unwrap_err().retryable);
        let missing = br#"{"error":{"message":"Unsupported get request","type":"GraphMethodException","code":100,"error_subcode":33}}"#;
        assert!(!read_graph_answer(400, missing).unwrap_err().retryable);
        let e = read_graph_answer(502, b"Bad Gateway").unwrap_err();
        assert!(e.retryable && e.message.contains("502"), "{e:?}");
    }

    #[test]
    fn graph_url_escapes_the_token() {
        assert_eq!(
            graph_lead_url("http://127.0.0.1:9/", "v25.0", "123", "a b&c"),
            format!("http://127.0.0.1:9/v25.0/123?fields={GRAPH_FIELDS}&access_token=a%20b%26c")
        );
    }
}
