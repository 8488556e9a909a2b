//! Google's Data Manager API (`events:ingest`), free of host calls: the way
//! offline click conversions reach Google Ads for every account since
//! 2026-06-15 (shapes: `google.ads.datamanager.v1`, checked in the tests
//! against Google's published client library).
//!
//! One request carries one customer's rows: a destination per conversion
//! action (at most 10), at most 2,000 events. Google checks a request as a
//! whole before it takes it (a bad event fails them all, and the answer names
//! it), then processes it later: [`read_status`] reads
//! `requestStatus:retrieve`, whose errors are counts per destination and
//! reason, never per event.

use crate::logic::{Conversion, RowEnd, action_id};
use portico_sdk::json::Value;
use serde_json::{Map, json};

/// Events per request (Google's limit).
pub const MAX_EVENTS: usize = 2000;
/// Destinations per request (Google's limit).
pub const MAX_DESTINATIONS: usize = 10;

/// Request-wide settings of one customer's uploads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// The Google Ads account the conversions belong to (digits only).
    pub customer_id: String,
    /// The manager account the credentials belong to, when not the customer's own.
    pub login_customer_id: Option<String>,
    /// `WEB`, `APP`, `IN_STORE`, `PHONE`, `MESSAGE` or `OTHER`.
    pub event_source: String,
    /// `CONSENT_GRANTED` / `CONSENT_DENIED`, when configured.
    pub ad_user_data: Option<&'static str>,
    pub ad_personalization: Option<&'static str>,
}

/// The event sources Google knows.
pub const EVENT_SOURCES: [&str; 6] = ["WEB", "APP", "IN_STORE", "PHONE", "MESSAGE", "OTHER"];

/// `granted` / `denied` (any case) as Google's consent status.
pub fn consent_status(raw: Option<&str>) -> Result<Option<&'static str>, String> {
    match raw.map(|r| r.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(r) if r.is_empty() => Ok(None),
        Some(r) if r == "granted" || r == "consent_granted" => Ok(Some("CONSENT_GRANTED")),
        Some(r) if r == "denied" || r == "consent_denied" => Ok(Some("CONSENT_DENIED")),
        Some(r) => Err(format!("{r:?} is not a consent value (granted or denied)")),
    }
}

/// One request to make: indexes into the rows it carries, and each row's
/// destination reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// (reference, conversion action id) per destination.
    pub destinations: Vec<(String, String)>,
    /// (row index, reference) per event, in request order.
    pub events: Vec<(usize, String)>,
}

/// Split one customer's rows (`rows[i]` for `i` in `idxs`) into requests
/// within Google's limits; a row whose action has no numeric id ends alone.
pub fn plan(rows: &[Conversion], idxs: &[usize]) -> (Vec<Planned>, Vec<(usize, RowEnd)>) {
    let mut plans: Vec<Planned> = Vec::new();
    let mut refused = Vec::new();
    for &i in idxs {
        let Some(action) = rows[i].conversion_action.as_deref().and_then(action_id) else {
            refused.push((
                i,
                RowEnd::Rejected(
                    "NO_CONVERSION_ACTION".into(),
                    "the conversion action has no numeric id for the Data Manager API's productDestinationId".into(),
                ),
            ));
            continue;
        };
        // The first request with room for this event (and its destination).
        let fits = |p: &Planned| {
            p.events.len() < MAX_EVENTS
                && (p.destinations.iter().any(|(_, a)| *a == action)
                    || p.destinations.len() < MAX_DESTINATIONS)
        };
        let at = match plans.iter().position(fits) {
            Some(at) => at,
            None => {
                plans.push(Planned {
                    destinations: Vec::new(),
                    events: Vec::new(),
                });
                plans.len() - 1
            }
        };
        let p = &mut plans[at];
        let reference = match p.destinations.iter().find(|(_, a)| *a == action) {
            Some((r, _)) => r.clone(),
            None => {
                let r = format!("d{}", p.destinations.len() + 1);
                p.destinations.push((r.clone(), action.clone()));
                r
            }
        };
        p.events.push((i, reference));
    }
    (plans, refused)
}

/// The event's `transactionId`: the order id, else the idempotency key (a
/// digest of it when long), else the row id. The same conversion always has
/// the same one, so Google counts a repeat once.
pub fn transaction_id(c: &Conversion) -> String {
    if let Some(order) = c.order_id.as_deref().filter(|o| !o.is_empty()) {
        return order.to_string();
    }
    let key = c.idempotency_key.as_str();
    if !key.is_empty() {
        if key.len() <= 64 && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return key.to_string();
        }
        let digest = portico_sdk::signature::sha256(key.as_bytes());
        return format!("pk-{}", portico_sdk::signature::to_hex(&digest[..20]));
    }
    format!("portico-conversion-{}", c.row_id.unwrap_or_default())
}

/// Google's "yyyy-mm-dd hh:mm:ss+hh:mm" as RFC 3339 (a protobuf Timestamp in JSON).
pub fn event_timestamp(conversion_time: &str) -> String {
    let mut t = conversion_time.to_string();
    if t.len() > 10 && t.as_bytes()[10] == b' ' {
        t.replace_range(10..11, "T");
    }
    t
}

/// The `IngestEventsRequest` for one planned request.
pub fn ingest_request(target: &Target, plan: &Planned, rows: &[Conversion]) -> Value {
    let account = |id: &str| json!({"accountType": "GOOGLE_ADS", "accountId": id});
    let destinations: Vec<Value> = plan
        .destinations
        .iter()
        .map(|(reference, action)| {
            let mut d = Map::new();
            d.insert("reference".into(), json!(reference));
            d.insert("operatingAccount".into(), account(&target.customer_id));
            if let Some(login) = target
                .login_customer_id
                .as_deref()
                .filter(|l| !l.is_empty() && *l != target.customer_id)
            {
                d.insert("loginAccount".into(), account(login));
            }
            d.insert("productDestinationId".into(), json!(action));
            Value::Object(d)
        })
        .collect();
    let events: Vec<Value> = plan
        .events
        .iter()
        .map(|(i, reference)| {
            let c = &rows[*i];
            json!({
                "destinationReferences": [reference],
                "transactionId": transaction_id(c),
                "eventTimestamp": event_timestamp(&c.conversion_time),
                "eventSource": target.event_source,
                "adIdentifiers": { c.click_id_kind.as_str(): c.click_id },
                "conversionValue": c.value,
                "currency": c.currency,
            })
        })
        .collect();
    let mut request = Map::new();
    request.insert("destinations".into(), Value::Array(destinations));
    request.insert("events".into(), Value::Array(events));
    let mut consent = Map::new();
    if let Some(v) = target.ad_user_data {
        consent.insert("adUserData".into(), json!(v));
    }
    if let Some(v) = target.ad_personalization {
        consent.insert("adPersonalization".into(), json!(v));
    }
    if !consent.is_empty() {
        request.insert("consent".into(), Value::Object(consent));
    }
    request.insert("validateOnly".into(), json!(false));
    Value::Object(request)
}

/// What an `events:ingest` answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestEnd {
    /// Taken: processed later, its status readable under this id.
    Accepted {
        request_id: String,
        warnings: Vec<String>,
    },
    /// Refused as a whole, nothing processed. `events`/`destinations` are the
    /// indexes Google named (the rest may go again without them); both empty:
    /// the request itself is wrong.
    Refused {
        reason: String,
        message: String,
        events: Vec<(usize, String)>,
        destinations: Vec<(usize, String)>,
    },
    /// Try again later (429, 5xx): the message and seconds to wait, if said.
    Retry(String, Option<u32>),
    /// The credentials were refused (401): renew the token, or stop.
    Unauthorized(String),
    /// Nothing will go until someone acts (permissions, allow-lists).
    Stop(String),
}

/// Google's error model: "STATUS: message", the `ErrorInfo` reason and the
/// `BadRequest` field violations.
fn google_error(body: &[u8]) -> (String, String, Vec<(String, String)>) {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &json["error"];
    let message = match (e["status"].as_str(), e["message"].as_str()) {
        (Some(st), Some(m)) => format!("{st}: {m}"),
        (None, Some(m)) => m.to_string(),
        _ => String::from_utf8_lossy(body).chars().take(300).collect(),
    };
    let mut reason = e["status"]
        .as_str()
        .unwrap_or("REQUEST_REFUSED")
        .to_string();
    let mut violations = Vec::new();
    for detail in e["details"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let kind = detail["@type"].as_str().unwrap_or_default();
        if kind.ends_with("google.rpc.ErrorInfo") {
            if let Some(r) = detail["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = r.to_string();
            }
        } else if kind.ends_with("google.rpc.BadRequest") {
            for v in detail["fieldViolations"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                violations.push((
                    v["field"].as_str().unwrap_or_default().to_string(),
                    v["description"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    (reason, message, violations)
}

/// `events[3].ad_identifiers.gclid` → 3 for `list` "events".
fn index_in(field: &str, list: &str) -> Option<usize> {
    let rest = field.strip_prefix(list)?.strip_prefix('[')?;
    rest.split_once(']')?.0.parse().ok()
}

/// Reasons that mean "try again later".
const TRANSIENT_REASONS: [&str; 4] = [
    "INTERNAL_ERROR",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
];
/// Reasons only an operator can fix: the uploads stop until then.
const STOP_REASONS: [&str; 4] = [
    "PERMISSION_DENIED",
    "NOT_ALLOWLISTED",
    "TERMS_AND_CONDITIONS_NOT_SIGNED",
    "OPERATING_ACCOUNT_LOGIN_ACCOUNT_MISMATCH",
];

/// Read the answer to `events:ingest`.
pub fn read_ingest_answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> IngestEnd {
    if (200..300).contains(&status) {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let warnings = json["fieldWarnings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|w| {
                format!(
                    "{} {} {}",
                    w["reason"].as_str().unwrap_or_default(),
                    w["field"].as_str().unwrap_or_default(),
                    w["description"].as_str().unwrap_or_default()
                )
                .trim()
                .to_string()
            })
            .collect();
        return IngestEnd::Accepted {
            request_id: json["requestId"].as_str().unwrap_or_default().to_string(),
            warnings,
        };
    }
    let (reason, message, violations) = google_error(body);
    let google_spoke = serde_json::from_slice::<Value>(body)
        .map(|v| v["error"].is_object())
        .unwrap_or(false);
    if status == 404
        || ((400..500).contains(&status) && !matches!(status, 401 | 408 | 429) && !google_spoke)
    {
        // Not Google's answer to this request (a wrong base URL, a proxy):
        // nothing was judged, so nothing may end failed.
        return IngestEnd::Stop(format!(
            "Data Manager API answered HTTP {status} that is not Google's error answer ({message}); check GOOGLE_DATA_MANAGER_API_BASE_URL and any proxy, then reload the plugin"
        ));
    }
    if status == 401 {
        return IngestEnd::Unauthorized(format!("Data Manager API answered HTTP 401 ({message})"));
    }
    if matches!(status, 408 | 429) || status >= 500 || TRANSIENT_REASONS.contains(&reason.as_str())
    {
        let after = retry_after.and_then(|v| v.trim().parse::<u32>().ok());
        return IngestEnd::Retry(
            format!("Data Manager API answered HTTP {status}: {message}"),
            after,
        );
    }
    if status == 403 || STOP_REASONS.contains(&reason.as_str()) {
        return IngestEnd::Stop(format!(
            "Data Manager API refused the upload (HTTP {status}, {reason}: {message}); give the OAuth user (or service account) access to the Google Ads account, with the https://www.googleapis.com/auth/datamanager scope, then reload the plugin"
        ));
    }
    let mut events = Vec::new();
    let mut destinations = Vec::new();
    for (field, description) in violations {
        let said = format!("{field}: {description}");
        if let Some(i) = index_in(&field, "events") {
            events.push((i, said));
        } else if let Some(i) = index_in(&field, "destinations") {
            destinations.push((i, said));
        }
    }
    IngestEnd::Refused {
        reason,
        message: format!("Data Manager API refused the request (HTTP {status}): {message}"),
        events,
        destinations,
    }
}

/// Where one destination of a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationStatus {
    /// Not processed yet (or Google does not know yet): read again later.
    Processing,
    /// Every event was recorded (repeats of earlier events included).
    Recorded,
    /// Some or all events failed: the failed count and "REASON ×n" per reason.
    /// `retry`: every reason is one worth sending again later.
    Failed {
        failed: u64,
        total: u64,
        reasons: Vec<String>,
        retry: bool,
    },
}

/// Seconds before a request still processing is read again.
pub const PROCESSING_WAIT_SECS: u32 = 300;
/// Seconds before events refused as too recent go again (Google: "retry after 6 hours").
pub const TOO_RECENT_WAIT_SECS: u32 = 6 * 3600;

/// Reasons that mean the event is already recorded (a repeat).
const ALREADY: [&str; 2] = [
    "PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID",
    "PROCESSING_ERROR_REASON_DUPLICATE_GCLID",
];
/// Processing errors worth sending again later.
const RETRY_LATER: [&str; 2] = [
    "PROCESSING_ERROR_REASON_TOO_RECENT_CLICK",
    "PROCESSING_ERROR_REASON_INTERNAL_ERROR",
];

/// Read `requestStatus:retrieve` for `destinations`, each its reference and
/// its index in the request: one status each.
pub fn read_status(body: &[u8], destinations: &[(String, usize)]) -> Vec<DestinationStatus> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let entries = json["requestStatusPerDestination"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    destinations
        .iter()
        .map(|(reference, at)| {
            // By reference when Google echoes it, else by its place in the request.
            let entry = entries
                .iter()
                .find(|e| e["destination"]["reference"].as_str() == Some(reference.as_str()))
                .or_else(|| entries.get(*at));
            let Some(entry) = entry else {
                return DestinationStatus::Processing;
            };
            match entry["requestStatus"].as_str().unwrap_or_default() {
                "SUCCESS" => DestinationStatus::Recorded,
                "FAILED" | "PARTIAL_SUCCESS" => {
                    let count = |v: &Value| -> u64 {
                        match v {
                            Value::String(s) => s.parse().unwrap_or(0),
                            v => v.as_u64().unwrap_or(0),
                        }
                    };
                    let mut failed = 0;
                    let mut reasons = Vec::new();
                    let mut retry = true;
                    for c in entry["errorInfo"]["errorCounts"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                    {
                        let reason = c["reason"].as_str().unwrap_or("UNKNOWN");
                        let n = count(&c["recordCount"]);
                        if ALREADY.contains(&reason) {
                            continue;
                        }
                        retry &= RETRY_LATER.contains(&reason);
                        failed += n;
                        reasons.push(format!(
                            "{} ×{n}",
                            reason.trim_start_matches("PROCESSING_ERROR_REASON_")
                        ));
                    }
                    let total = count(&entry["eventsIngestionStatus"]["recordCount"]);
                    if failed == 0 && entry["requestStatus"] == "FAILED" && reasons.is_empty() {
                        // Failed, and Google counted no reason: nothing was recorded.
                        return DestinationStatus::Failed {
                            failed: u64::MAX,
                            total,
                            reasons: vec!["FAILED (Google gave no reason)".into()],
                            retry: false,
                        };
                    }
                    if failed == 0 {
                        return DestinationStatus::Recorded;
                    }
                    DestinationStatus::Failed {
                        failed,
                        total,
                        reasons,
                        retry,
                    }
                }
                _ => DestinationStatus::Processing,
            }
        })
        .collect()
}

/// How the `n` rows of one destination end, from its status.
pub fn rows_end(status: &DestinationStatus, n: usize, request_id: &str) -> RowOutcomeHint {
    match status {
        DestinationStatus::Processing => RowOutcomeHint::Wait(PROCESSING_WAIT_SECS),
        DestinationStatus::Recorded => RowOutcomeHint::End(RowEnd::Uploaded),
        DestinationStatus::Failed {
            failed,
            total,
            reasons,
            retry,
        } => {
            let total = if *total == 0 { n as u64 } else { *total };
            let said = reasons.join(", ");
            if *failed >= total {
                if *retry {
                    // A click too fresh: Google asks for 6 hours; else a short while.
                    let after = if said.contains("TOO_RECENT") {
                        TOO_RECENT_WAIT_SECS
                    } else {
                        PROCESSING_WAIT_SECS
                    };
                    RowOutcomeHint::SendAgain(
                        format!(
                            "Google could not process these events yet (request {request_id}: {said}); they are sent again in {after} s"
                        ),
                        after,
                    )
                } else {
                    let code = reasons
                        .first()
                        .and_then(|r| r.split(' ').next())
                        .unwrap_or("FAILED")
                        .to_string();
                    RowOutcomeHint::End(RowEnd::Rejected(
                        code,
                        format!(
                            "Google did not record these events (request {request_id}): {said}"
                        ),
                    ))
                }
            } else {
                // Google counts failures per reason, never per event: the
                // destination's rows are recorded, and the operator told.
                RowOutcomeHint::Partly(format!(
                    "Google recorded {} of {total} events of request {request_id}; {failed} failed ({said}) and Google does not say which",
                    total - failed
                ))
            }
        }
    }
}

/// What to do with a destination's rows once its status is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcomeHint {
    /// Ended so.
    End(RowEnd),
    /// Still processing: keep the request id and read it again after these seconds.
    Wait(u32),
    /// Nothing of it was recorded, for a reason that passes: send again after these seconds.
    SendAgain(String, u32),
    /// Some recorded, some not, unknown which: uploaded, with a warning.
    Partly(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(action: &str, order: Option<&str>, key: &str) -> Conversion {
        Conversion {
            click_id_kind: "gclid".into(),
            click_id: "Cj0K".into(),
            conversion_time: "2026-11-20 14:32:05-03:00".into(),
            value: 1500.0,
            currency: "BRL".into(),
            conversion_action: Some(action.into()),
            order_id: order.map(str::to_string),
            idempotency_key: key.into(),
            tenant_id: None,
            row_id: Some(7),
        }
    }

    #[test]
    fn a_request_has_a_destination_per_action_within_googles_limits() {
        let mut rows = Vec::new();
        for a in 0..12 {
            rows.push(row(
                &format!("customers/1/conversionActions/{a}"),
                None,
                "k",
            ));
        }
        rows.push(row("customers/1/conversionActions/0", None, "k"));
        rows.push(row("nonsense", None, "k"));
        let idxs: Vec<usize> = (0..rows.len()).collect();
        let (plans, refused) = plan(&rows, &idxs);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].destinations.len(), 10);
        assert_eq!(
            plans[0].events.len(),
            11,
            "action 0 again joins its destination"
        );
        assert_eq!(plans[0].events[10], (12, "d1".to_string()));
        assert_eq!(plans[1].destinations.len(), 2);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 13);

        let many: Vec<Conversion> = (0..MAX_EVENTS + 1)
            .map(|_| row("customers/1/conversionActions/5", None, "k"))
            .collect();
        let idxs: Vec<usize> = (0..many.len()).collect();
        let (plans, _) = plan(&many, &idxs);
        assert_eq!(
            plans.iter().map(|p| p.events.len()).collect::<Vec<_>>(),
            vec![MAX_EVENTS, 1]
        );
    }

    #[test]
    fn the_request_has_googles_shape() {
        let rows = vec![
            row(
                "customers/1234567890/conversionActions/987654321",
                Some("crm-lead-000123"),
                "k1",
            ),
            row(
                "customers/1234567890/conversionActions/987654321",
                None,
                "tenant:3:key:abc",
            ),
        ];
        let (plans, _) = plan(&rows, &[0, 1]);
        let target = Target {
            customer_id: "1234567890".into(),
            login_customer_id: Some("9876543210".into()),
            event_source: "WEB".into(),
            ad_user_data: Some("CONSENT_GRANTED"),
            ad_personalization: None,
        };
        let r = ingest_request(&target, &plans[0], &rows);
        assert_eq!(
            r["destinations"][0],
            json!({"reference":"d1",
                   "operatingAccount":{"accountType":"GOOGLE_ADS","accountId":"1234567890"},
                   "loginAccount":{"accountType":"GOOGLE_ADS","accountId":"9876543210"},
                   "productDestinationId":"987654321"})
        );
        assert_eq!(r["events"][0]["transactionId"], "crm-lead-000123");
        assert_eq!(r["events"][1]["transactionId"], "tenant:3:key:abc");
        assert_eq!(
            r["events"][0]["eventTimestamp"],
            "2026-11-20T14:32:05-03:00"
        );
        assert_eq!(r["events"][0]["adIdentifiers"], json!({"gclid":"Cj0K"}));
        assert_eq!(r["events"][0]["destinationReferences"], json!(["d1"]));
        assert_eq!(r["consent"], json!({"adUserData":"CONSENT_GRANTED"}));
        assert_eq!(r["validateOnly"], false);
        // Long keys become a stable digest; no key: the row id.
        let long = row("customers/1/conversionActions/2", None, &"x".repeat(200));
        assert_eq!(transaction_id(&long), transaction_id(&long.clone()));
        assert_eq!(transaction_id(&long).len(), 43);
        assert_eq!(
            transaction_id(&row("customers/1/conversionActions/2", None, "")),
            "portico-conversion-7"
        );
    }

    #[test]
    fn ingest_answers_are_read() {
        assert_eq!(
            read_ingest_answer(200, None, br#"{"requestId":"r-1"}"#),
            IngestEnd::Accepted {
                request_id: "r-1".into(),
                warnings: vec![]
            }
        );
        let refused = br#"{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"Request contains an invalid argument.",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_FORMAT","domain":"datamanager.googleapis.com"},
                       {"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"events[1].ad_identifiers.gclid","description":"Invalid value"}]}]}}"#;
        match read_ingest_answer(400, None, refused) {
            IngestEnd::Refused {
                reason,
                events,
                destinations,
                ..
            } => {
                assert_eq!(reason, "INVALID_FORMAT");
                assert_eq!(
                    events,
                    vec![(
                        1,
                        "events[1].ad_identifiers.gclid: Invalid value".to_string()
                    )]
                );
                assert!(destinations.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_ingest_answer(429, Some("12"), b"{}"),
            IngestEnd::Retry(_, Some(12))
        ));
        assert!(matches!(
            read_ingest_answer(401, None, b"{}"),
            IngestEnd::Unauthorized(_)
        ));
        assert!(matches!(
            read_ingest_answer(403, None, b"{}"),
            IngestEnd::Stop(_)
        ));
        assert!(matches!(
            read_ingest_answer(404, None, b"<html>not here</html>"),
            IngestEnd::Stop(_)
        ));
    }

    #[test]
    fn statuses_end_each_destination() {
        let body = br#"{"requestStatusPerDestination":[
            {"destination":{"reference":"d2"},"requestStatus":"FAILED","eventsIngestionStatus":{"recordCount":"2"},
             "errorInfo":{"errorCounts":[{"recordCount":"2","reason":"PROCESSING_ERROR_REASON_INVALID_GCLID"}]}},
            {"destination":{"reference":"d1"},"requestStatus":"SUCCESS","eventsIngestionStatus":{"recordCount":"1"}},
            {"destination":{"reference":"d3"},"requestStatus":"PARTIAL_SUCCESS","eventsIngestionStatus":{"recordCount":"3"},
             "errorInfo":{"errorCounts":[{"recordCount":"1","reason":"PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID"}]}},
            {"destination":{"reference":"d4"},"requestStatus":"PARTIAL_SUCCESS","eventsIngestionStatus":{"recordCount":"3"},
             "errorInfo":{"errorCounts":[{"recordCount":"1","reason":"PROCESSING_ERROR_REASON_EVENT_TOO_OLD"}]}},
            {"destination":{"reference":"d5"},"requestStatus":"PROCESSING"}]}"#;
        let refs: Vec<(String, usize)> = ["d1", "d2", "d3", "d4", "d5", "d6"]
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i))
            .collect();
        let s = read_status(body, &refs);
        assert_eq!(s[0], DestinationStatus::Recorded);
        assert!(matches!(
            &s[1],
            DestinationStatus::Failed {
                failed: 2,
                total: 2,
                retry: false,
                ..
            }
        ));
        assert_eq!(s[2], DestinationStatus::Recorded, "repeats are recorded");
        assert!(
            matches!(rows_end(&s[3], 3, "r"), RowOutcomeHint::Partly(m) if m.contains("2 of 3"))
        );
        assert_eq!(s[4], DestinationStatus::Processing);
        assert_eq!(s[5], DestinationStatus::Processing, "not listed yet");
        assert!(matches!(
            rows_end(&s[1], 2, "r-9"),
            RowOutcomeHint::End(RowEnd::Rejected(code, m)) if code == "INVALID_GCLID" && m.contains("r-9")
        ));
        let recent = DestinationStatus::Failed {
            failed: 1,
            total: 1,
            reasons: vec!["TOO_RECENT_CLICK ×1".into()],
            retry: true,
        };
        assert!(matches!(
            rows_end(&recent, 1, "r"),
            RowOutcomeHint::SendAgain(_, TOO_RECENT_WAIT_SECS)
        ));
        // FAILED with no reason counted is not a success.
        let failed = read_status(
            br#"{"requestStatusPerDestination":[{"requestStatus":"FAILED"}]}"#,
            &[("d9".to_string(), 0)],
        );
        assert!(matches!(
            rows_end(&failed[0], 2, "r"),
            RowOutcomeHint::End(RowEnd::Rejected(..))
        ));
        // No reference echoed: by the destination's place in the request.
        let by_place = read_status(
            br#"{"requestStatusPerDestination":[{"requestStatus":"PROCESSING"},{"requestStatus":"SUCCESS"}]}"#,
            &[("d2".to_string(), 1)],
        );
        assert_eq!(by_place[0], DestinationStatus::Recorded);
    }
}
