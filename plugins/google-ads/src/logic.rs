//! Google Ads offline click conversions, free of host calls.
//!
//! Intake: the CRM posts `{gclid|gbraid|wbraid, timestamp, value, currency,
//! conversion_action?, order_id?, tenant_id?}`; [`validate`] checks every field
//! in one pass and reports each problem by name. A conversion action is needed only
//! when uploads are on. Upload: [`read_row`] reads each outbox row,
//! [`upload_request`] builds `customers/{id}:uploadClickConversions` (partialFailure
//! on) and [`row_outcomes`] ends each row from Google's answer.

use portico_sdk::{AdapterError, RowOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const TENANT_KIND: &str = "google";
/// Google's per-request limit (`TOO_MANY_CONVERSIONS_IN_REQUEST` above it).
pub const MAX_BATCH: u32 = 2000;

/// A validated conversion, as stored in the item payload and the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    pub click_id_kind: String,
    pub click_id: String,
    /// "yyyy-mm-dd hh:mm:ss+hh:mm", the caller's offset kept.
    pub conversion_time: String,
    pub value: f64,
    pub currency: String,
    /// None: recorded without one (uploads off), never uploaded.
    #[serde(default)]
    pub conversion_action: Option<String>,
    #[serde(default)]
    pub order_id: Option<String>,
    pub idempotency_key: String,
    #[serde(default)]
    pub tenant_id: Option<i64>,
    /// The outbox record's id, when read back for an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_id: Option<i64>,
}

/// Every problem of a request, by field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invalid(pub Vec<(String, String)>);

impl Invalid {
    fn add(&mut self, field: &str, problem: impl Into<String>) {
        self.0.push((field.to_string(), problem.into()));
    }

    pub fn message(&self) -> String {
        AdapterError::from(self.clone()).message
    }
}

impl From<Invalid> for AdapterError {
    fn from(bad: Invalid) -> Self {
        AdapterError::invalid("invalid_request", bad.0)
    }
}

/// Settings the intake needs from config.
#[derive(Debug, Clone, Default)]
pub struct IntakeConfig {
    pub customer_id: Option<String>,
    pub default_action: Option<String>,
    /// Uploads on: a conversion must name its action (or the default must be set).
    pub upload_enabled: bool,
    /// The customer is the tenant's own account (its google source): an action
    /// of another customer is refused.
    pub tenant_account: bool,
}

/// `customers/{cid}/conversionActions/{id}` from a bare id; a resource name is kept.
pub fn action_resource(action: &str, customer_id: Option<&str>) -> Result<String, String> {
    let action = action.trim();
    if action.starts_with("customers/") && action.contains("/conversionActions/") {
        return Ok(action.to_string());
    }
    if !action.is_empty() && action.bytes().all(|b| b.is_ascii_digit()) {
        return match customer_id {
            Some(cid) => Ok(format!("customers/{cid}/conversionActions/{action}")),
            None => Err("is a bare id, which needs GOOGLE_ADS_CUSTOMER_ID set; or send customers/{id}/conversionActions/{id}".into()),
        };
    }
    Err(
        "must be customers/{customer_id}/conversionActions/{id} or a numeric conversion action id"
            .into(),
    )
}

/// The `tenant_id` a request body names, if it names a valid one (validation says the rest).
pub fn tenant_of(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("tenant_id")?
        .as_i64()
        .filter(|t| *t > 0)
}

/// The customer a conversion action resource (`customers/{id}/conversionActions/{id}`) belongs to.
pub fn action_customer(action: &str) -> Option<String> {
    let rest = action.trim().strip_prefix("customers/")?;
    let (cid, _) = rest.split_once("/conversionActions/")?;
    (!cid.is_empty() && cid.bytes().all(|b| b.is_ascii_digit())).then(|| cid.to_string())
}

/// Indexes of `rows` grouped by the customer their action belongs to, in the
/// order each customer first appears: one upload per customer, never mixed.
pub fn by_customer(
    rows: &[Conversion],
    fallback: Option<&str>,
) -> Vec<(Option<String>, Vec<usize>)> {
    let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let cid = row
            .conversion_action
            .as_deref()
            .and_then(action_customer)
            .or_else(|| fallback.map(str::to_string));
        match groups.iter_mut().find(|(c, _)| *c == cid) {
            Some((_, idxs)) => idxs.push(i),
            None => groups.push((cid, vec![i])),
        }
    }
    groups
}

/// The numeric id at the end of `customers/{cid}/conversionActions/{id}`.
pub fn action_id(action: &str) -> Option<String> {
    let (_, id) = action.trim().rsplit_once("/conversionActions/")?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// Customer ids without dashes.
pub fn clean_customer_id(raw: &str) -> String {
    raw.chars().filter(char::is_ascii_digit).collect()
}

/// Validate a request body; `idempotency_header` is the Idempotency-Key header.
pub fn validate(
    body: &[u8],
    idempotency_header: Option<&str>,
    config: &IntakeConfig,
) -> Result<Conversion, Invalid> {
    let mut bad = Invalid::default();
    let root: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            bad.add("body", format!("is not valid JSON: {e}"));
            return Err(bad);
        }
    };
    let Some(obj) = root.as_object() else {
        bad.add("body", "must be a JSON object");
        return Err(bad);
    };
    let known = [
        "gclid",
        "gbraid",
        "wbraid",
        "timestamp",
        "value",
        "currency",
        "conversion_action",
        "order_id",
        "tenant_id",
    ];
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            bad.add(
                key,
                format!("is not a known field (known: {})", known.join(", ")),
            );
        }
    }

    let clicks: Vec<(&str, &Value)> = ["gclid", "gbraid", "wbraid"]
        .into_iter()
        .filter_map(|k| obj.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
        .collect();
    let mut click = None;
    match clicks.as_slice() {
        [] => bad.add(
            "gclid",
            "exactly one of gclid, gbraid or wbraid is required",
        ),
        [(kind, value)] => match value.as_str().map(str::trim) {
            Some(id) if !id.is_empty() && id.len() <= 512 => {
                click = Some((kind.to_string(), id.to_string()))
            }
            _ => bad.add(kind, "must be a non-empty string"),
        },
        many => {
            let names: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
            bad.add(
                names[1],
                format!("send exactly one click id; got {}", names.join(" and ")),
            );
        }
    }

    let time = match obj.get("timestamp") {
        None | Some(Value::Null) => {
            bad.add(
                "timestamp",
                "is required (RFC 3339, e.g. 2026-09-20T14:32:05-03:00, or unix seconds)",
            );
            None
        }
        Some(v) => match google_time(v) {
            Ok(t) => Some(t),
            Err(why) => {
                bad.add("timestamp", why);
                None
            }
        },
    };

    let value = match obj.get("value") {
        None | Some(Value::Null) => {
            bad.add("value", "is required (a number, 0 or more)");
            None
        }
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 => Some(n),
            Some(_) => {
                bad.add("value", "must not be negative");
                None
            }
            None => {
                bad.add("value", "must be a number");
                None
            }
        },
    };

    let currency = match obj.get("currency").and_then(Value::as_str).map(str::trim) {
        Some(c) if is_iso4217(c) => Some(c.to_string()),
        Some(c) => {
            bad.add(
                "currency",
                format!("{c:?} is not a three-letter ISO 4217 code (e.g. USD, EUR, BRL)"),
            );
            None
        }
        None => {
            bad.add(
                "currency",
                "is required: a three-letter ISO 4217 code (e.g. USD)",
            );
            None
        }
    };

    let cid = config.customer_id.as_deref();
    // Outer None: invalid; Some(None): no action, which only uploads need.
    let action = match obj.get("conversion_action") {
        None | Some(Value::Null) => match &config.default_action {
            Some(a) => action_resource(a, cid)
                .map(Some)
                .map_err(|why| format!("GOOGLE_ADS_CONVERSION_ACTION {why}")),
            None if config.upload_enabled => Err(
                "is required when GOOGLE_ADS_CONVERSION_ACTION is not set (uploads are on)".into(),
            ),
            None => Ok(None),
        },
        Some(Value::String(a)) => action_resource(a, cid).map(Some),
        Some(Value::Number(n)) => action_resource(&n.to_string(), cid).map(Some),
        Some(_) => Err("must be a string".into()),
    };
    // A tenant's conversions go to its own account only.
    let action = match (action, cid) {
        (Ok(Some(a)), Some(own)) if config.tenant_account => match action_customer(&a) {
            Some(other) if other != own => Err(format!(
                "names customer {other}, but the tenant's Google Ads account (its google source) is {own}: send that account's action or its bare id"
            )),
            _ => Ok(Some(a)),
        },
        (other, _) => other,
    };
    let action = match action {
        Ok(a) => Some(a),
        Err(why) => {
            bad.add("conversion_action", why);
            None
        }
    };

    let order_id = match obj.get("order_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 128 => {
            Some(s.trim().to_string())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            bad.add(
                "order_id",
                "must be a non-empty string of at most 128 characters",
            );
            None
        }
    };

    let tenant_id = match obj.get("tenant_id") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(id) if id > 0 => Some(id),
            _ => {
                bad.add("tenant_id", "must be a positive integer (a tenant id)");
                None
            }
        },
    };

    let idempotency_header = idempotency_header.map(str::trim).filter(|s| !s.is_empty());
    if let Some(h) = idempotency_header
        && h.len() > 255
    {
        bad.add("Idempotency-Key", "must be at most 255 characters");
    }

    match (click, time, value, currency, action) {
        (Some((kind, id)), Some(time), Some(value), Some(currency), Some(action))
            if bad.0.is_empty() =>
        {
            let named = action.as_deref().unwrap_or_default();
            let key = match (idempotency_header, &order_id) {
                (Some(h), _) => format!("key:{h}"),
                (None, Some(order)) => format!("order:{named}:{order}"),
                (None, None) => format!("click:{kind}:{id}:{time}:{named}"),
            };
            // Keys are the tenant's own: two tenants may pick the same one.
            // (Without a tenant_id the key keeps the form it always had.)
            let idempotency_key = match tenant_id {
                Some(t) => format!("tenant:{t}:{key}"),
                None => key,
            };
            Ok(Conversion {
                click_id_kind: kind,
                click_id: id,
                conversion_time: time,
                value,
                currency,
                conversion_action: action,
                order_id,
                idempotency_key,
                tenant_id,
                row_id: None,
            })
        }
        _ => Err(bad),
    }
}

/// RFC 3339 or unix seconds → "yyyy-mm-dd hh:mm:ss+hh:mm", keeping the caller's offset.
pub fn google_time(v: &Value) -> Result<String, String> {
    let unix = match v {
        Value::Number(n) => Some(n.as_i64().ok_or("unix seconds must be a whole number")?),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.parse::<i64>().map_err(|_| "unix seconds out of range")?)
        }
        Value::String(_) => None,
        _ => return Err("must be an RFC 3339 string or unix seconds".into()),
    };
    if let Some(secs) = unix {
        if !(0..=253_402_300_799).contains(&secs) {
            return Err("unix seconds out of range".into());
        }
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        return Ok(format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00:00",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ));
    }
    let s = v.as_str().unwrap_or_default().trim();
    let why = || format!("{s:?} is not RFC 3339 (e.g. 2026-09-20T14:32:05-03:00) nor unix seconds");
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(why());
    }
    let num = |r: std::ops::Range<usize>| {
        s.get(r)
            .filter(|x| x.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|x| x.parse::<u32>().ok())
    };
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return Err(why());
    };
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60
    {
        return Err(format!("{s:?} is not a real date and time"));
    }
    // Skip fractional seconds: Google takes whole seconds.
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(why());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => "+00:00".to_string(),
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.as_bytes()[3] == b':' =>
        {
            let (oh, om) = (o[1..3].parse::<u32>().ok(), o[4..6].parse::<u32>().ok());
            match (oh, om) {
                (Some(oh), Some(om)) if oh <= 23 && om <= 59 => o.to_string(),
                _ => return Err(why()),
            }
        }
        _ => return Err(format!("{s:?} has no time zone offset (add Z or ±hh:mm)")),
    };
    Ok(format!(
        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{se:02}{offset}"
    ))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Active ISO 4217 currency codes.
const ISO4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

pub fn is_iso4217(code: &str) -> bool {
    code.len() == 3 && ISO4217.split(' ').any(|c| c == code)
}

/// How one row ended, from Google's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowEnd {
    Uploaded,
    Rejected(String, String),
    Retry(String),
    /// Not final: asked again after these seconds (Google is still processing it).
    Wait(String, u32),
}

/// How a whole batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchEnd {
    Rows(Vec<RowEnd>),
    Retry(String, Option<u32>),
    Stop(String),
}

/// A row the outbox handed back: (code, message) when it cannot be uploaded.
pub type RowRead = Result<Conversion, (String, String)>;

/// Read one outbox row: `{id, click_id_kind, click_id, conversion_time, value,
/// currency, conversion_action (may be null), order_id}`.
pub fn read_row(payload: &[u8]) -> RowRead {
    let unreadable = || {
        (
            "INVALID_ROW".to_string(),
            "the stored conversion could not be read".to_string(),
        )
    };
    let v: Value = serde_json::from_slice(payload).map_err(|_| unreadable())?;
    let text = |key: &str| v[key].as_str().map(str::to_string);
    let (Some(click_id_kind), Some(click_id), Some(conversion_time)) = (
        text("click_id_kind"),
        text("click_id"),
        text("conversion_time"),
    ) else {
        return Err(unreadable());
    };
    let Some(action) = text("conversion_action").filter(|a| !a.trim().is_empty()) else {
        return Err((
            "NO_CONVERSION_ACTION".into(),
            "recorded without a conversion action; set GOOGLE_ADS_CONVERSION_ACTION or send conversion_action, and post the conversion again".into(),
        ));
    };
    Ok(Conversion {
        click_id_kind,
        click_id,
        conversion_time,
        value: v["value"].as_f64().unwrap_or(0.0),
        currency: text("currency").unwrap_or_else(|| "USD".into()),
        conversion_action: Some(action),
        order_id: text("order_id"),
        idempotency_key: text("idempotency_key").unwrap_or_default(),
        tenant_id: v["tenant_id"].as_i64(),
        row_id: v["id"].as_i64(),
    })
}

/// Each row's outcome, in order: unreadable rows end alone; the others take, in order,
/// the ends of the rows that were uploaded.
pub fn row_outcomes(rows: Vec<RowRead>, uploaded: Vec<RowEnd>) -> Vec<RowOutcome> {
    let mut ends = uploaded.into_iter();
    rows.into_iter()
        .map(|row| match row {
            Err(pair) => RowOutcome::Rejected(pair),
            Ok(_) => match ends.next() {
                Some(RowEnd::Uploaded) => RowOutcome::Delivered(None),
                Some(RowEnd::Rejected(code, message)) => RowOutcome::Rejected((code, message)),
                Some(RowEnd::Retry(message)) => RowOutcome::Retry(message),
                Some(RowEnd::Wait(message, secs)) => RowOutcome::Wait((message, secs)),
                None => RowOutcome::Retry("no answer for this row".into()),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uploads_never_mix_customers() {
        let row = |action: Option<&str>| Conversion {
            click_id_kind: "gclid".into(),
            click_id: "g".into(),
            conversion_time: "2026-01-01 00:00:00+00:00".into(),
            value: 1.0,
            currency: "EUR".into(),
            conversion_action: action.map(str::to_string),
            order_id: None,
            idempotency_key: String::new(),
            tenant_id: None,
            row_id: None,
        };
        let rows = [
            row(Some("customers/111/conversionActions/1")),
            row(Some("customers/222/conversionActions/2")),
            row(Some("customers/111/conversionActions/3")),
            row(None),
        ];
        assert_eq!(
            by_customer(&rows, Some("999")),
            vec![
                (Some("111".to_string()), vec![0, 2]),
                (Some("222".to_string()), vec![1]),
                (Some("999".to_string()), vec![3]),
            ]
        );
        assert_eq!(
            action_customer("customers/12/conversionActions/3").as_deref(),
            Some("12")
        );
        assert_eq!(action_customer("conversionActions/3"), None);
    }

    fn config() -> IntakeConfig {
        IntakeConfig {
            customer_id: Some("1234567890".into()),
            default_action: Some("987654321".into()),
            upload_enabled: true,
            tenant_account: false,
        }
    }

    #[test]
    fn a_tenant_s_conversion_goes_to_its_own_account_only() {
        let own = IntakeConfig {
            tenant_account: true,
            ..config()
        };
        let body = br#"{"gclid":"G","timestamp":"2026-09-20T14:32:05Z","value":1,"currency":"EUR","conversion_action":"customers/555/conversionActions/1"}"#;
        let e = validate(body, None, &own).unwrap_err();
        assert_eq!(e.0[0].0, "conversion_action");
        assert!(e.0[0].1.contains("customer 555"), "{e:?}");
        // The host-wide account may name any customer (a manager uploads for many).
        assert!(validate(body, None, &config()).is_ok());
        // The tenant's own, or a bare id, is fine.
        let mine = br#"{"gclid":"G","timestamp":"2026-09-20T14:32:05Z","value":1,"currency":"EUR","conversion_action":"7"}"#;
        assert_eq!(
            validate(mine, None, &own)
                .unwrap()
                .conversion_action
                .as_deref(),
            Some("customers/1234567890/conversionActions/7")
        );
    }

    const SEED: &[u8] =
        br#"{"gclid":"Cj0K","timestamp":"2026-09-20T14:32:05Z","value":10,"currency":"BRL"}"#;

    #[test]
    fn the_action_is_needed_only_for_uploads() {
        let off = IntakeConfig::default();
        let c = validate(SEED, None, &off).unwrap();
        assert_eq!(c.conversion_action, None);
        assert_eq!(
            c.idempotency_key,
            "click:gclid:Cj0K:2026-09-20 14:32:05+00:00:"
        );
        let on = IntakeConfig {
            upload_enabled: true,
            ..IntakeConfig::default()
        };
        let e = validate(SEED, None, &on).unwrap_err();
        assert_eq!(e.0[0].0, "conversion_action");
        assert!(e.0[0].1.starts_with("is required"), "{e:?}");
        // A named action is still checked with uploads off.
        let named =
            br#"{"gclid":"x","timestamp":1,"value":1,"currency":"USD","conversion_action":"nope"}"#;
        assert!(validate(named, None, &off).is_err());
    }

    #[test]
    fn rows_without_an_action_are_rejected_alone() {
        let row = |action: Value| {
            json!({"id": 1, "click_id_kind": "gclid", "click_id": "G", "conversion_time": "2026-09-20 14:32:05+00:00",
                "value": 2.5, "currency": "EUR", "conversion_action": action, "order_id": null})
            .to_string()
        };
        let good = read_row(row(json!("customers/1/conversionActions/2")).as_bytes()).unwrap();
        assert_eq!((good.value, good.order_id.as_deref()), (2.5, None));
        let none = read_row(row(Value::Null).as_bytes()).unwrap_err();
        assert_eq!(none.0, "NO_CONVERSION_ACTION");
        assert_eq!(read_row(b"[]").unwrap_err().0, "INVALID_ROW");
        let outcomes = row_outcomes(
            vec![Ok(good.clone()), Err(none), Ok(good)],
            vec![RowEnd::Uploaded, RowEnd::Rejected("X".into(), "y".into())],
        );
        assert!(matches!(outcomes[0], RowOutcome::Delivered(None)));
        assert!(
            matches!(&outcomes[1], RowOutcome::Rejected((c, _)) if c == "NO_CONVERSION_ACTION")
        );
        assert!(matches!(&outcomes[2], RowOutcome::Rejected((c, _)) if c == "X"));
    }

    #[test]
    fn a_good_request_validates_and_keeps_the_offset() {
        let c = validate(br#"{"gclid":"Cj0K","timestamp":"2026-09-20T14:32:05.123-03:00","value":1500,"currency":"BRL","order_id":"crm-1"}"#, None, &config()).unwrap();
        assert_eq!(c.conversion_time, "2026-09-20 14:32:05-03:00");
        assert_eq!(
            c.conversion_action.as_deref(),
            Some("customers/1234567890/conversionActions/987654321")
        );
        assert_eq!(
            c.idempotency_key,
            "order:customers/1234567890/conversionActions/987654321:crm-1"
        );
        let k = validate(
            br#"{"wbraid":"W","timestamp":1758381128,"value":0,"currency":"USD"}"#,
            Some("abc"),
            &config(),
        )
        .unwrap();
        assert_eq!(k.conversion_time, "2025-09-20 15:12:08+00:00");
        assert_eq!(k.idempotency_key, "key:abc");
        // The same key from two tenants names two conversions.
        let of = |tenant: u32| {
            validate(
                format!(r#"{{"wbraid":"W","timestamp":1758381128,"value":0,"currency":"USD","tenant_id":{tenant}}}"#).as_bytes(),
                Some("abc"),
                &config(),
            )
            .unwrap()
            .idempotency_key
        };
        assert_eq!(of(1), "tenant:1:key:abc");
        assert_ne!(of(1), of(2));
    }

    #[test]
    fn every_problem_is_reported_by_field() {
        let e = validate(br#"{"gclid":"a","gbraid":"b","timestamp":"yesterday","value":-1,"currency":"usd","tenant_id":0,"extra":1}"#, None, &IntakeConfig { upload_enabled: true, ..IntakeConfig::default() }).unwrap_err();
        let fields: Vec<&str> = e.0.iter().map(|(f, _)| f.as_str()).collect();
        for f in [
            "gbraid",
            "timestamp",
            "value",
            "currency",
            "conversion_action",
            "tenant_id",
            "extra",
        ] {
            assert!(fields.contains(&f), "{f} missing in {e:?}");
        }
        let e = validate(b"{", None, &config()).unwrap_err();
        assert_eq!(e.0[0].0, "body");
        let e = validate(
            br#"{"timestamp":"2026-02-30T00:00:00Z","value":1,"currency":"EUR"}"#,
            None,
            &config(),
        )
        .unwrap_err();
        assert!(
            e.message().contains("gclid") && e.message().contains("not a real date"),
            "{}",
            e.message()
        );
        let e = validate(
            br#"{"gclid":"x","timestamp":"2026-02-03T00:00:00","value":1,"currency":"EUR"}"#,
            None,
            &config(),
        )
        .unwrap_err();
        assert!(
            e.message().contains("no time zone offset"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn unix_days_are_right() {
        assert_eq!(google_time(&json!(0)).unwrap(), "1970-01-01 00:00:00+00:00");
        assert_eq!(
            google_time(&json!(951_782_400)).unwrap(),
            "2000-02-29 00:00:00+00:00"
        );
        assert_eq!(
            google_time(&json!("1758381128")).unwrap(),
            "2025-09-20 15:12:08+00:00"
        );
    }
}
