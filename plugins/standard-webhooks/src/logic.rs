//! Standard Webhooks (standardwebhooks.com) logic, free of host calls.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with
//! the key inside `whsec_<base64>`, sent as `webhook-signature: v1,<base64>`
//! (several, space-separated, during key rotation). Timestamps more than five
//! minutes from now are refused, which stops replays of captured requests.

use portico_sdk::Parsed;
use portico_sdk::json::{self, Value};
use portico_sdk::signature::{base64_decode, constant_time_eq, hmac_sha256_base64};

/// How far a webhook-timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;
pub const LEAD_SOURCE: &str = "Standard";
pub const TENANT_KIND: &str = "standard";

/// Why a request was refused; the text is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    MissingHeader(&'static str),
    BadTimestamp,
    OutsideTolerance { skew: i64 },
    NoSecret,
    BadSecret,
    NoMatch,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingHeader(h) => write!(f, "missing {h} header"),
            Self::BadTimestamp => write!(f, "webhook-timestamp must be unix seconds"),
            Self::OutsideTolerance { skew } => write!(
                f,
                "webhook-timestamp is {skew} s from now; at most {TOLERANCE_SECS} s is accepted"
            ),
            Self::NoSecret => write!(f, "STANDARD_WEBHOOK_SECRET is not set"),
            Self::BadSecret => write!(
                f,
                "STANDARD_WEBHOOK_SECRET must be whsec_ followed by base64"
            ),
            Self::NoMatch => write!(f, "no v1 signature in webhook-signature matches"),
        }
    }
}

/// The key inside a `whsec_<base64>` secret (the prefix is optional); none when
/// it is not base64 or empty (an empty key would let anyone sign).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    base64_decode(
        secret
            .trim()
            .strip_prefix("whsec_")
            .unwrap_or(secret.trim()),
    )
    .filter(|key| !key.is_empty())
}

/// Verify a request: `header(name)` reads headers, `now` is unix seconds.
pub fn verify(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<(), VerifyError> {
    let id = header("webhook-id").ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let ts = header("webhook-timestamp").ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signatures =
        header("webhook-signature").ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let stamp: i64 = ts.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    // Saturating: a timestamp near i64's ends must be refused, not overflow (found by fuzzing).
    let skew = stamp.saturating_sub(now);
    if skew.unsigned_abs() > TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::OutsideTolerance { skew });
    }
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let mut signed = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    signed.extend_from_slice(id.trim().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(ts.trim().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let mut matched = false;
    for secret in secrets {
        let key = secret_key(secret).ok_or(VerifyError::BadSecret)?;
        let expected = hmac_sha256_base64(&key, &signed);
        for given in signatures.split_whitespace() {
            if let Some(sig) = given.strip_prefix("v1,") {
                matched |= constant_time_eq(sig.as_bytes(), expected.as_bytes());
            }
        }
    }
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

/// A lead as the host stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadOut {
    pub external_id: String,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fields_json: String,
}

/// Parse an event; `lead.created` is a lead item, other types are ignored items.
pub fn parse(body: &[u8], webhook_id: &str) -> Result<Parsed, json::FieldError> {
    let event = json::parse(body)?;
    let kind = json::str_at(&event, "type")?;
    if kind != "lead.created" {
        return Ok(Parsed {
            dedup_key: format!("msg:{webhook_id}"),
            tenant_key: json::opt_str_at(&event, "data.source_key")?,
            kind: "ignored",
            payload: format!("event type {kind:?} is not handled (only lead.created)").into_bytes(),
        });
    }
    let id = json::str_at(&event, "data.id")?;
    let source_key = json::str_at(&event, "data.source_key")?;
    let data = json::at(&event, "data")?;
    Ok(Parsed {
        dedup_key: format!("lead:{id}"),
        tenant_key: Some(source_key),
        kind: "lead",
        payload: serde_json::to_vec(data).unwrap_or_default(),
    })
}

/// Map a lead item's payload (the event's `data`).
pub fn map_lead(payload: &[u8]) -> Result<LeadOut, json::FieldError> {
    let data = json::parse(payload)?;
    let fields = match data.get("fields") {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(_) => {
            return Err(json::FieldError {
                path: "data.fields".into(),
                problem: "must be an object".into(),
            });
        }
    };
    Ok(LeadOut {
        external_id: json::str_at(&data, "id")?,
        full_name: json::opt_str_at(&data, "full_name")?,
        email: json::opt_str_at(&data, "email")?,
        phone: json::opt_str_at(&data, "phone")?,
        fields_json: fields.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::signature::base64_encode;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"type":"lead.created","timestamp":"2026-11-28T12:00:00Z","data":{"id":"L-1","source_key":"acme-site","full_name":"Ana Silva","email":"ana@example.com","phone":"+5511900000000","fields":{"city":"Recife"}}}"#;

    fn sign(id: &str, ts: i64, body: &[u8]) -> String {
        let key = secret_key(SECRET).unwrap();
        let mut msg = format!("{id}.{ts}.").into_bytes();
        msg.extend_from_slice(body);
        format!("v1,{}", hmac_sha256_base64(&key, &msg))
    }

    fn headers(id: &str, ts: i64, sig: String) -> impl Fn(&str) -> Option<String> {
        let id = id.to_string();
        move |name: &str| match name {
            "webhook-id" => Some(id.clone()),
            "webhook-timestamp" => Some(ts.to_string()),
            "webhook-signature" => Some(sig.clone()),
            _ => None,
        }
    }

    #[test]
    fn the_spec_example_verifies() {
        // The example of the Standard Webhooks spec's reference libraries.
        let body = br#"{"test": 2432232314}"#;
        let h = |name: &str| match name {
            "webhook-id" => Some("msg_p5jXN8AQM9LWM0D4loKWxJek".to_string()),
            "webhook-timestamp" => Some("1614265330".to_string()),
            "webhook-signature" => {
                Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string())
            }
            _ => None,
        };
        assert_eq!(verify(&h, body, &[SECRET.to_string()], 1614265330), Ok(()));
    }

    #[test]
    fn any_of_several_signatures_and_secrets_matches() {
        let now = 1_800_000_000;
        let sig = format!("v1,bm90LWl0 {} v2,whatever", sign("msg_1", now, BODY));
        let secrets = vec!["whsec_b2xk".to_string(), SECRET.to_string()];
        assert_eq!(
            verify(&headers("msg_1", now, sig), BODY, &secrets, now + 10),
            Ok(())
        );
    }

    #[test]
    fn tampering_and_stale_timestamps_are_refused() {
        let now = 1_800_000_000;
        let secrets = vec![SECRET.to_string()];
        let sig = sign("msg_1", now, BODY);
        assert_eq!(
            verify(&headers("msg_1", now, sig.clone()), b"{}", &secrets, now),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&headers("msg_2", now, sig.clone()), BODY, &secrets, now),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(
                &headers("msg_1", now, sig.clone()),
                BODY,
                &secrets,
                now + 301
            ),
            Err(VerifyError::OutsideTolerance { skew: -301 })
        );
        assert!(matches!(
            verify(&headers("msg_1", now, sig), BODY, &[], now),
            Err(VerifyError::NoSecret)
        ));
        let none = |_: &str| None;
        assert_eq!(
            verify(&none, BODY, &secrets, now),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(base64_encode(&secret_key("whsec_aGkh").unwrap()), "aGkh");
        // An empty key would verify anyone's signature.
        assert_eq!(secret_key("whsec_"), None);
        assert_eq!(
            verify(
                &headers("msg_1", now, "v1,AAAA".into()),
                BODY,
                &["whsec_".into()],
                now
            ),
            Err(VerifyError::BadSecret)
        );
    }

    #[test]
    fn timestamps_at_i64_s_ends_are_refused_not_overflowed() {
        // Found by fuzzing (fuzz/regressions/standard_webhooks): `stamp - now` overflowed.
        let secrets = vec![SECRET.to_string()];
        for stamp in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let h = |name: &str| match name {
                "webhook-id" => Some("msg_1".to_string()),
                "webhook-timestamp" => Some(stamp.to_string()),
                "webhook-signature" => Some("v1,AAAA".to_string()),
                _ => None,
            };
            assert!(matches!(
                verify(&h, BODY, &secrets, 1_800_000_000),
                Err(VerifyError::OutsideTolerance { .. })
            ));
        }
    }

    #[test]
    fn lead_created_maps_to_a_lead() {
        let item = parse(BODY, "msg_1").unwrap();
        assert_eq!(item.dedup_key, "lead:L-1");
        assert_eq!(item.tenant_key.as_deref(), Some("acme-site"));
        let lead = map_lead(&item.payload).unwrap();
        assert_eq!(lead.external_id, "L-1");
        assert_eq!(lead.full_name.as_deref(), Some("Ana Silva"));
        assert_eq!(lead.fields_json, r#"{"city":"Recife"}"#);
    }

    #[test]
    fn other_types_are_ignored_and_bad_shapes_named() {
        let other = parse(br#"{"type":"lead.deleted","data":{"id":"1"}}"#, "msg_9").unwrap();
        assert_eq!(other.kind, "ignored");
        assert_eq!(other.dedup_key, "msg:msg_9");
        let e = parse(br#"{"type":"lead.created","data":{"id":"1"}}"#, "m").unwrap_err();
        assert_eq!(e.to_string(), "data.source_key is missing");
    }
}
