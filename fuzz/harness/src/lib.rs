//! Fuzz harnesses for the adapters' verify and parse logic and the SDK's signature helpers.
//!
//! One function per cargo-fuzz target (`fuzz/fuzz_targets/*.rs` call them); the same
//! functions replay the checked-in corpus on stable in `tests/corpus.rs`. Each takes raw
//! bytes: the first lines are the request's headers (or settings), the rest is the body,
//! byte for byte. A missing line is empty. Beyond "no panic", each checks invariants:
//! a signature made with the right secret verifies and a changed one does not, what
//! `parse` makes `map` can read, encodings round-trip, outputs have the documented shape.
//!
//! | target            | lines before the body                                                     |
//! |-------------------|---------------------------------------------------------------------------|
//! | meta              | X-Hub-Signature-256, app secrets (comma list), handshake query, HTTP status |
//! | whatsapp          | X-Hub-Signature-256, app secrets, Idempotency-Key, HTTP status              |
//! | standard_webhooks | webhook-id, webhook-timestamp, webhook-signature, secrets, now (unix s)     |
//! | google_ads        | Idempotency-Key, customer id, default action, "status rows retry-after"     |
//! | sdk_signature     | none: byte 0 is the key length, then the key, then the message              |
//!
//! The adapters' wasm `verify` functions read secrets through host imports that abort
//! natively, so these call the pure functions behind them with the secrets from the input.

use portico_sdk::http::{hub_challenge, hub_handshake, percent_decode, query_param};
use portico_sdk::signature::{
    SignatureError, base64_decode, base64_encode, constant_time_eq, hmac_sha256,
    hmac_sha256_base64, hmac_sha256_hex, to_hex, verify_hub_sha256,
};
use portico_sdk::{DomainOp, RecordRef, Request, RowOutcome};
use serde_json::{Value, json};

/// The first `N` lines of `data` (lossy UTF-8, like header values) and the bytes after them.
fn fields<const N: usize>(data: &[u8]) -> ([String; N], &[u8]) {
    let mut rest = data;
    let lines = std::array::from_fn(|_| match rest.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = String::from_utf8_lossy(&rest[..i]).into_owned();
            rest = &rest[i + 1..];
            line
        }
        None => {
            let line = String::from_utf8_lossy(rest).into_owned();
            rest = &[];
            line
        }
    });
    (lines, rest)
}

fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

fn from_hex(hex: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("{hex:?} is not lower-case hex"),
    };
    assert!(hex.len().is_multiple_of(2), "{hex:?} has an odd length");
    hex.as_bytes()
        .chunks(2)
        .map(|p| (digit(p[0]) << 4) | digit(p[1]))
        .collect()
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `X-Hub-Signature-256` (Meta, WhatsApp): the header as given, checked against a plain
/// model of the rules; then a signature made with the right secret, which must verify,
/// and changed ones, which must not.
fn check_hub_signature(header: &str, secrets: &[String], body: &[u8]) {
    use SignatureError as E;
    assert_eq!(verify_hub_sha256(None, secrets, body), Err(E::Missing));
    let model = || {
        let digest = header
            .trim()
            .strip_prefix("sha256=")
            .ok_or(E::WrongPrefix)?;
        if digest.len() != 64 {
            return Err(E::WrongLength(digest.len()));
        }
        if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(E::NotHex);
        }
        if secrets.is_empty() {
            return Err(E::NoSecret);
        }
        let digest = digest.to_ascii_lowercase();
        if secrets
            .iter()
            .any(|s| hmac_sha256_hex(s.as_bytes(), body) == digest)
        {
            Ok(())
        } else {
            Err(E::Mismatch)
        }
    };
    let got = verify_hub_sha256(Some(header), secrets, body);
    assert_eq!(got, model(), "header {header:?}");
    if let Err(e) = &got {
        assert!(!e.to_string().is_empty());
    }

    let Some(secret) = secrets.last() else {
        return;
    };
    let hex = hmac_sha256_hex(secret.as_bytes(), body);
    let good = format!("sha256={hex}");
    assert_eq!(verify_hub_sha256(Some(&good), secrets, body), Ok(()));
    let upper = format!(" sha256={}\t", hex.to_ascii_uppercase());
    assert_eq!(verify_hub_sha256(Some(&upper), secrets, body), Ok(()));
    // One hex digit changed (no other secret makes it, but for a 2^-256 chance).
    let mut flipped = hex.into_bytes();
    let i = body.len() % 64;
    flipped[i] = if flipped[i] == b'0' { b'1' } else { b'0' };
    let flipped = format!("sha256={}", String::from_utf8_lossy(&flipped));
    assert_eq!(
        verify_hub_sha256(Some(&flipped), secrets, body),
        Err(E::Mismatch)
    );
    // One byte more in the body.
    let mut longer = body.to_vec();
    longer.push(b' ');
    assert_eq!(
        verify_hub_sha256(Some(&good), secrets, &longer),
        Err(E::Mismatch)
    );
}

/// The GET subscription handshake (`handle` of Meta and WhatsApp).
fn check_handshake(query: &str, token: Option<&str>) {
    let req = Request {
        method: "GET".into(),
        route: "webhook".into(),
        query: query.into(),
        headers: vec![],
        body: vec![],
    };
    let Some(answer) = hub_handshake(&req, token) else {
        panic!("GET webhook is always answered")
    };
    match hub_challenge(query, token) {
        Some(challenge) => {
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body, challenge.as_bytes());
            assert_eq!(query_param(query, "hub.mode").as_deref(), Some("subscribe"));
            assert_eq!(query_param(query, "hub.verify_token").as_deref(), token);
            assert!(token.is_some_and(|t| !t.is_empty()));
        }
        None => assert_eq!(answer.status, 403),
    }
    // Any text survives percent-encoding, and the right token gets it echoed back.
    assert_eq!(percent_decode(&percent_encode(query)), query);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let q = format!(
            "hub.mode=subscribe&hub.challenge={}&hub.verify_token={}",
            percent_encode(query),
            percent_encode(token)
        );
        assert_eq!(hub_challenge(&q, Some(token)).as_deref(), Some(query));
        let wrong = format!("{}x", percent_encode(token));
        let q = format!("hub.mode=subscribe&hub.challenge=1&hub.verify_token={wrong}");
        assert_eq!(hub_challenge(&q, Some(token)), None);
    }
}

/// Meta Lead Ads: verify (hub signature), handle (handshake), parse, map, Graph answers.
pub fn meta(data: &[u8]) {
    use portico_meta::logic::{self, Mapped, MappedLead};
    let ([signature, secrets, query, status], body) = fields::<4>(data);
    let secrets = portico_sdk::host::split_list(&secrets);
    check_hub_signature(&signature, &secrets, body);
    check_handshake(&query, secrets.first().map(String::as_str));

    let mut first_lead = None;
    match logic::parse_delivery(body) {
        Ok(items) => {
            for item in &items {
                assert!(!item.dedup_key.is_empty());
                match logic::map_item(item.kind, &item.payload) {
                    Ok(Mapped::Lead(lead)) => {
                        assert_eq!(item.kind, logic::KIND_LEADGEN);
                        assert_eq!(item.dedup_key, format!("leadgen:{}", lead.external_id));
                        assert!(!lead.external_id.trim().is_empty());
                        let fields: Value = serde_json::from_str(&lead.fields_json())
                            .unwrap_or_else(|e| panic!("fields_json is not JSON: {e}"));
                        assert_eq!(fields["page_id"].as_str(), item.tenant_key.as_deref());
                        if first_lead.is_none() {
                            first_lead = Some(lead.clone());
                        }
                        let DomainOp::CreateLead(op) = portico_meta::lead_op(lead) else {
                            panic!("a lead maps to create-lead")
                        };
                        assert_eq!(op.source, logic::LEAD_SOURCE);
                    }
                    Ok(Mapped::Ignore(reason)) => {
                        assert_eq!(item.kind, logic::KIND_IGNORED);
                        assert!(!reason.is_empty());
                    }
                    Err(e) => panic!("parse_delivery made an item map_item cannot read: {e}"),
                }
            }
            let n = items.len();
            assert_eq!(portico_sdk::into_items(items, logic::TENANT_KIND).len(), n);
        }
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    "invalid_json" | "invalid_shape" | "unsupported_object"
                ),
                "{e}"
            );
            assert!(!e.message.is_empty());
        }
    }
    // map_to_domain reads stored payloads: try the body as one of each kind.
    let _ = logic::map_item(logic::KIND_LEADGEN, body);
    let _ = logic::map_item(logic::KIND_IGNORED, body);
    assert!(logic::map_item("other", body).is_err());

    // The Graph lead GET that map_to_domain makes with a page token.
    let status = status.trim().parse::<u16>().unwrap_or(200);
    let mut lead = first_lead.unwrap_or_else(|| MappedLead {
        external_id: "1".into(),
        form_id: None,
        ad_id: None,
        campaign_id: None,
        full_name: None,
        email: None,
        phone: None,
        fields: serde_json::Map::new(),
    });
    match logic::read_graph_answer(status, body) {
        Ok(graph) => {
            assert!(is_2xx(status));
            logic::enrich(&mut lead, graph);
            let fields: Value = serde_json::from_str(&lead.fields_json())
                .unwrap_or_else(|e| panic!("fields_json is not JSON: {e}"));
            assert!(fields.is_object());
        }
        Err(failure) => {
            assert!(!failure.code.is_empty() && !failure.message.is_empty());
        }
    }
    let url = logic::graph_lead_url(
        "https://graph.facebook.com",
        "25.0",
        &lead.external_id,
        &signature,
    );
    let Some((_, token)) = url.rsplit_once("&access_token=") else {
        panic!("{url} has no access_token")
    };
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)),
        "token not escaped in {url}"
    );
    assert_eq!(percent_decode(token), signature);
}

/// WhatsApp Cloud API: verify (hub signature), parse, map, send intake, send answers.
pub fn whatsapp(data: &[u8]) {
    use portico_whatsapp::logic::{self, Inbound, Status};
    const MEDIA: [&str; 5] = ["image", "video", "audio", "sticker", "document"];
    const KINDS: [&str; 15] = [
        "text",
        "image",
        "video",
        "audio",
        "sticker",
        "document",
        "location",
        "contacts",
        "interactive",
        "button",
        "reaction",
        "order",
        "system",
        "unsupported",
        "unknown",
    ];
    let ([signature, secrets, idempotency_key, status], body) = fields::<4>(data);
    let secrets = portico_sdk::host::split_list(&secrets);
    check_hub_signature(&signature, &secrets, body);

    match logic::parse_delivery(body) {
        Ok(items) => {
            for item in &items {
                match item.kind {
                    "message" => {
                        let m: Inbound = serde_json::from_slice(&item.payload)
                            .unwrap_or_else(|e| panic!("message payload: {e}"));
                        // Scoped by the number: two tenants' numbers may see one id.
                        let number = item.tenant_key.as_deref().unwrap_or("-");
                        assert_eq!(item.dedup_key, format!("msg:{number}:{}", m.wamid));
                        assert!(!m.wamid.is_empty() && !m.kind.is_empty());
                        // Every stored message names its sender somehow.
                        assert!(!m.sender().is_empty(), "{m:?}");
                        if m.media_id.is_some() {
                            assert!(MEDIA.contains(&m.kind.as_str()), "{m:?}");
                        }
                    }
                    "status" => {
                        let s: Status = serde_json::from_slice(&item.payload)
                            .unwrap_or_else(|e| panic!("status payload: {e}"));
                        let number = item.tenant_key.as_deref().unwrap_or("-");
                        assert_eq!(
                            item.dedup_key,
                            format!("status:{number}:{}:{}", s.wamid, s.status)
                        );
                        let wamid = s.wamid.clone();
                        match logic::status_op(s) {
                            DomainOp::UpdateStatus(u) => assert_eq!(u.external_id, wamid),
                            DomainOp::Ignore(why) => assert!(!why.is_empty()),
                            other => panic!("a status maps to {other:?}"),
                        }
                    }
                    "change" => {
                        let c: logic::Change = serde_json::from_slice(&item.payload)
                            .unwrap_or_else(|e| panic!("change payload: {e}"));
                        assert!(!c.original.is_empty());
                        assert!(matches!(c.op(), DomainOp::ChangeMessage(_)));
                    }
                    "identity" => {
                        let i: logic::Identity = serde_json::from_slice(&item.payload)
                            .unwrap_or_else(|e| panic!("identity payload: {e}"));
                        assert!(!i.previous.is_empty() && !i.current.is_empty());
                        assert_eq!(i.ops().len(), 2);
                    }
                    "ignored" => {
                        assert!(std::str::from_utf8(&item.payload).is_ok());
                        assert!(item.dedup_key.starts_with("ignored:"));
                        assert_eq!(item.dedup_key.len(), "ignored:".len() + 32);
                    }
                    other => panic!("unknown item kind {other:?}"),
                }
            }
            let n = items.len();
            assert_eq!(portico_sdk::into_items(items, logic::TENANT_KIND).len(), n);
        }
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    "invalid_json" | "invalid_shape" | "unsupported_object"
                ),
                "{e}"
            );
        }
    }
    // Every message type's reader on the body as one message.
    if let Ok(msg) = serde_json::from_slice::<Value>(body) {
        for kind in KINDS {
            let (_, media) = logic::readable(kind, &msg);
            if media.is_some() {
                assert!(MEDIA.contains(&kind));
            }
        }
        if let Some(kind) = msg["type"].as_str() {
            let _ = logic::readable(kind, &msg);
        }
    }

    // POST send: the intake's validation, the queued message, and reading it back.
    match logic::validate_send(body) {
        Ok(send) => {
            assert!(send.tenant_id > 0);
            assert!(logic::is_bsuid(&send.to) || logic::phone_digits(&send.to).len() >= 6);
            assert!(!send.body.is_empty() && send.body.trim() == send.body);
            assert!(send.body.chars().count() <= 4096);
            assert!(send.case_id.is_none_or(|c| c > 0));
            let stored = serde_json::to_vec(&send).unwrap_or_default();
            assert_eq!(logic::validate_send(&stored).as_ref(), Ok(&send));
            let key = logic::send_dedup_key(&send, Some(&idempotency_key), "unique");
            let expected = match idempotency_key.trim() {
                "" => "send:unique".to_string(),
                k => format!("send:key:{}:{k}", send.tenant_id),
            };
            assert_eq!(key, expected);
            let DomainOp::SendMessage(m) = logic::send_op(&send, "106540352242922", key.clone())
            else {
                panic!("a send maps to send-message")
            };
            let want = logic::send_contact(&send);
            assert_eq!((&m.to.phone, &m.to.user_id), (&want.phone, &want.user_id));
            assert_eq!(m.idempotency_key, key);
            match logic::read_delivery(&m.payload) {
                Ok(d) => {
                    assert_eq!(d.phone_number_id, "106540352242922");
                    assert_eq!(d.request, logic::send_body(&send));
                }
                Err(end) => panic!("a queued send cannot be read back: {end:?}"),
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for (field, problem) in &problems {
                assert!(
                    matches!(field.as_str(), "body" | "tenant_id" | "to" | "case_id"),
                    "{field}"
                );
                assert!(!problem.is_empty());
            }
        }
    }

    // deliver: the stored row, the Cloud API's answer, and the answer to the caller.
    match logic::read_delivery(body) {
        Ok(d) => assert!(!d.phone_number_id.trim().is_empty()),
        Err(RowOutcome::Rejected((code, _))) => assert_eq!(code, "invalid_row"),
        Err(other) => panic!("an unreadable row ends {other:?}"),
    }
    let status = status.trim().parse::<u16>().unwrap_or(200);
    if let Ok(wamid) = logic::read_send_answer(status, body) {
        assert!(is_2xx(status) && !wamid.is_empty());
    }
    match logic::answer_outcome(status, body) {
        RowOutcome::Delivered(Some(wamid)) => assert!(is_2xx(status) && !wamid.is_empty()),
        RowOutcome::Unknown(why) => {
            assert!(is_2xx(status) && why.starts_with(logic::MAY_HAVE_SENT))
        }
        RowOutcome::Rejected(_) => assert!(!is_2xx(status)),
        other => panic!("a send answer ends {other:?}"),
    }
    let record = RecordRef {
        kind: "message".into(),
        id: 1,
        status: idempotency_key.clone(),
        external_id: Some(signature),
        error: Some(idempotency_key.clone()),
    };
    let Some(answer) = logic::send_response(&[record]) else {
        panic!("a message record is answered")
    };
    let expected = match idempotency_key.as_str() {
        "failed" => 502,
        "pending" => 202,
        _ => 200,
    };
    assert_eq!(answer.status, expected);
    assert!(serde_json::from_slice::<Value>(&answer.body).is_ok());
}

/// Standard Webhooks: verify (signature and timestamp window), parse, map.
pub fn standard_webhooks(data: &[u8]) {
    use portico_standard_webhooks::logic::{self, TOLERANCE_SECS, VerifyError};
    let ([id, timestamp, signature, secrets, now], body) = fields::<5>(data);
    let secrets = portico_sdk::host::split_list(&secrets);
    // The host's clock: unix seconds between 1970 and 2100.
    let now = now
        .trim()
        .parse::<i64>()
        .unwrap_or(1_800_000_000)
        .clamp(0, 4_102_444_800);
    let headers = |id: String, timestamp: String, signature: String| {
        move |name: &str| {
            let value = match name {
                "webhook-id" => &id,
                "webhook-timestamp" => &timestamp,
                "webhook-signature" => &signature,
                _ => return None,
            };
            (!value.is_empty()).then(|| value.clone())
        }
    };
    let verify = |signature: &str, body: &[u8]| {
        let h = headers(id.clone(), timestamp.clone(), signature.to_string());
        logic::verify(&h, body, &secrets, now)
    };

    // What verify must say before it compares signatures.
    #[derive(Debug)]
    enum Expect {
        Missing(&'static str),
        BadTimestamp,
        Outside(i128),
        NoSecret,
        BadSecret,
        Compare(Vec<Vec<u8>>),
    }
    let expect = if id.is_empty() {
        Expect::Missing("webhook-id")
    } else if timestamp.is_empty() {
        Expect::Missing("webhook-timestamp")
    } else if signature.is_empty() {
        Expect::Missing("webhook-signature")
    } else {
        match timestamp.trim().parse::<i64>() {
            Err(_) => Expect::BadTimestamp,
            Ok(stamp) => {
                let skew = i128::from(stamp) - i128::from(now);
                if skew.abs() > i128::from(TOLERANCE_SECS) {
                    Expect::Outside(skew)
                } else if secrets.is_empty() {
                    Expect::NoSecret
                } else {
                    match secrets
                        .iter()
                        .map(|s| logic::secret_key(s))
                        .collect::<Option<Vec<_>>>()
                    {
                        Some(keys) => Expect::Compare(keys),
                        None => Expect::BadSecret,
                    }
                }
            }
        }
    };
    let got = verify(&signature, body);
    match (&expect, &got) {
        (Expect::Missing(h), Err(VerifyError::MissingHeader(g))) => assert_eq!(h, g),
        (Expect::BadTimestamp, Err(VerifyError::BadTimestamp)) => {}
        (Expect::Outside(skew), Err(VerifyError::OutsideTolerance { skew: s })) => {
            assert_eq!(
                skew.signum(),
                i128::from(*s).signum(),
                "skew {s} for {skew}"
            );
            assert!(s.unsigned_abs() > TOLERANCE_SECS.unsigned_abs());
        }
        (Expect::NoSecret, Err(VerifyError::NoSecret)) => {}
        (Expect::BadSecret, Err(VerifyError::BadSecret)) => {}
        (Expect::Compare(_), Ok(()) | Err(VerifyError::NoMatch)) => {}
        _ => panic!("verify said {got:?}; expected {expect:?} (now {now})"),
    }
    if let Err(e) = &got {
        assert!(!e.to_string().is_empty());
    }
    if let Expect::Compare(keys) = &expect {
        let mut signed = format!("{}.{}.", id.trim(), timestamp.trim()).into_bytes();
        signed.extend_from_slice(body);
        let expected: Vec<String> = keys
            .iter()
            .map(|k| hmac_sha256_base64(k, &signed))
            .collect();
        let matches = signature
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .any(|s| expected.iter().any(|e| e == s));
        assert_eq!(got.is_ok(), matches, "signature {signature:?}");
        // Signed with the last secret, among others: accepted.
        let Some(last) = expected.last() else {
            panic!("secrets were checked to be there")
        };
        let good = format!("v1,bm90LWl0 v2,{last} v1,{last}");
        assert_eq!(verify(&good, body), Ok(()));
        // One character changed, or one byte more in the body: refused.
        let mut flipped = last.clone().into_bytes();
        let i = body.len() % 43;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = format!("v1,{}", String::from_utf8_lossy(&flipped));
        if !expected.contains(&flipped[3..].to_string()) {
            assert_eq!(verify(&flipped, body), Err(VerifyError::NoMatch));
        }
        let mut longer = body.to_vec();
        longer.push(b' ');
        assert_eq!(
            verify(&format!("v1,{last}"), &longer),
            Err(VerifyError::NoMatch)
        );
    }
    for secret in &secrets {
        if let Some(key) = logic::secret_key(secret) {
            let again = format!("whsec_{}", base64_encode(&key));
            assert_eq!(logic::secret_key(&again), Some(key));
        }
    }

    match logic::parse(body, &id) {
        Ok(item) => match item.kind {
            "lead" => {
                assert!(item.dedup_key.starts_with("lead:"));
                assert!(item.tenant_key.is_some());
                match logic::map_lead(&item.payload) {
                    Ok(lead) => {
                        assert_eq!(item.dedup_key, format!("lead:{}", lead.external_id));
                        let fields: Value = serde_json::from_str(&lead.fields_json)
                            .unwrap_or_else(|e| panic!("fields_json is not JSON: {e}"));
                        assert!(fields.is_object());
                    }
                    Err(e) => assert_ne!(e.path, "$", "parse stored a payload that is not JSON"),
                }
            }
            "ignored" => {
                assert_eq!(item.dedup_key, format!("msg:{id}"));
                assert!(std::str::from_utf8(&item.payload).is_ok());
            }
            other => panic!("unknown item kind {other:?}"),
        },
        Err(e) => assert!(!e.path.is_empty() && !e.problem.is_empty()),
    }
    let _ = logic::map_lead(body);
}

/// Google's conversion time: "yyyy-mm-dd hh:mm:ss+hh:mm" (or -hh:mm).
fn assert_google_time(time: &str) {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd+dd:dd";
    let ok = time.len() == SHAPE.len()
        && time.bytes().zip(SHAPE).all(|(c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            b'+' => c == b'+' || c == b'-',
            s => c == s,
        });
    assert!(ok, "{time:?} is not yyyy-mm-dd hh:mm:ss+hh:mm");
}

fn check_conversion(c: &portico_google_ads::logic::Conversion, upload_enabled: bool) {
    use portico_google_ads::logic;
    assert!(matches!(
        c.click_id_kind.as_str(),
        "gclid" | "gbraid" | "wbraid"
    ));
    assert!(!c.click_id.is_empty() && c.click_id.len() <= 512);
    assert_eq!(c.click_id.trim(), c.click_id);
    assert_google_time(&c.conversion_time);
    assert!(c.value.is_finite() && c.value >= 0.0);
    assert!(logic::is_iso4217(&c.currency));
    if upload_enabled {
        assert!(c.conversion_action.is_some());
    }
    if let Some(a) = &c.conversion_action {
        assert!(a.starts_with("customers/") && a.contains("/conversionActions/"));
    }
    assert!(!c.idempotency_key.is_empty());
    assert!(c.tenant_id.is_none_or(|t| t > 0));
    // The item payload reads back (serde_json may round a float by one ulp).
    let stored = serde_json::to_vec(c).unwrap_or_default();
    let back: logic::Conversion = serde_json::from_slice(&stored)
        .unwrap_or_else(|e| panic!("stored conversion does not read back: {e}"));
    assert!((back.value - c.value).abs() <= c.value * 1e-15);
    assert_eq!(
        logic::Conversion {
            value: c.value,
            ..back
        },
        *c
    );
    // The outbox row the host hands `deliver` (see conversion in wit/adapter.wit).
    let row = json!({"id": 1, "click_id_kind": c.click_id_kind, "click_id": c.click_id,
        "conversion_time": c.conversion_time, "value": c.value, "currency": c.currency,
        "conversion_action": c.conversion_action, "order_id": c.order_id});
    match logic::read_row(row.to_string().as_bytes()) {
        Ok(r) => {
            assert_eq!(r.conversion_action, c.conversion_action);
            assert_eq!(
                (
                    &r.click_id_kind,
                    &r.click_id,
                    &r.conversion_time,
                    &r.currency
                ),
                (
                    &c.click_id_kind,
                    &c.click_id,
                    &c.conversion_time,
                    &c.currency
                )
            );
            assert_eq!(r.order_id, c.order_id);
        }
        Err((code, _)) => {
            assert!(c.conversion_action.is_none());
            assert_eq!(code, "NO_CONVERSION_ACTION");
        }
    }
    let request = portico_google_ads::ads_api::upload_request(std::slice::from_ref(c));
    let sent = &request["conversions"][0];
    assert_eq!(sent[c.click_id_kind.as_str()], c.click_id.as_str());
    assert_eq!(sent["conversionDateTime"], c.conversion_time.as_str());
    assert_eq!(request["partialFailure"], true);
}

/// The Data Manager API's answers: to `events:ingest` and to `requestStatus:retrieve`.
fn data_manager_answers(status: u16, retry_after: Option<&str>, body: &[u8], rows: usize) {
    use portico_google_ads::data_manager::{self, IngestEnd};
    match data_manager::read_ingest_answer(status, retry_after, body) {
        IngestEnd::Accepted { .. } => assert!((200..300).contains(&status)),
        IngestEnd::Unauthorized(m) => assert!(status == 401 && !m.is_empty()),
        IngestEnd::Retry(m, _) | IngestEnd::Stop(m) => {
            assert!(!(200..300).contains(&status) && !m.is_empty())
        }
        IngestEnd::Refused { message, .. } => {
            assert!(!(200..300).contains(&status) && !message.is_empty())
        }
    }
    let references: Vec<(String, usize)> = (0..rows.min(10))
        .map(|i| (format!("d{}", i + 1), i))
        .collect();
    let statuses = data_manager::read_status(body, &references);
    assert_eq!(statuses.len(), references.len());
    for s in &statuses {
        let _ = data_manager::rows_end(s, rows, "r");
    }
}

/// Google Ads offline conversions: intake validation (its parse), times, outbox rows,
/// Google's answers.
pub fn google_ads(data: &[u8]) {
    use portico_google_ads::logic::{self, BatchEnd, IntakeConfig};
    let ([idempotency_key, customer_id, default_action, answer], body) = fields::<4>(data);
    let customer_id = logic::clean_customer_id(&customer_id);
    assert!(customer_id.bytes().all(|b| b.is_ascii_digit()));
    let customer_id = Some(customer_id).filter(|c| !c.is_empty());
    let default_action = Some(default_action.trim().to_string()).filter(|a| !a.is_empty());
    let header = Some(idempotency_key.as_str()).filter(|k| !k.is_empty());
    for upload_enabled in [false, true] {
        let config = IntakeConfig {
            customer_id: customer_id.clone(),
            default_action: default_action.clone(),
            upload_enabled,
            tenant_account: false,
        };
        match logic::validate(body, header, &config) {
            Ok(c) => check_conversion(&c, upload_enabled),
            Err(bad) => {
                assert!(!bad.0.is_empty());
                // Field names are the body's own keys (maybe ""); problems always say something.
                assert!(bad.0.iter().all(|(_, problem)| !problem.is_empty()));
                assert!(!bad.message().is_empty());
            }
        }
    }
    // The time reader on its own: the body as JSON, and as one raw string.
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Ok(t) = logic::google_time(&v)
    {
        assert_google_time(&t);
    }
    let text = Value::String(String::from_utf8_lossy(body).into_owned());
    if let Ok(t) = logic::google_time(&text) {
        assert_google_time(&t);
    }
    if let Some(action) = &default_action
        && let Ok(resource) = logic::action_resource(action, customer_id.as_deref())
    {
        assert!(resource.starts_with("customers/") && resource.contains("/conversionActions/"));
    }

    // deliver: a stored row, and Google's answer to a batch of `rows` rows.
    let mut words = answer.split_whitespace();
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let rows = words
        .next()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1)
        .min(64);
    let retry_after = words.next();
    let ends =
        match portico_google_ads::ads_api::read_upload_answer(status, retry_after, body, rows) {
            BatchEnd::Rows(ends) => {
                assert_eq!(ends.len(), rows);
                assert!(!matches!(status, 401 | 403 | 404 | 408 | 429) && status < 500);
                ends
            }
            BatchEnd::Retry(message, after) => {
                assert!(matches!(status, 408 | 429) || status >= 500);
                assert_eq!(after, retry_after.and_then(|r| r.parse::<u32>().ok()));
                assert!(!message.is_empty());
                Vec::new()
            }
            BatchEnd::Stop(message) => {
                let shut_out = String::from_utf8_lossy(body)
                    .contains(portico_google_ads::ads_api::NOT_ALLOWLISTED);
                assert!(matches!(status, 401 | 403 | 404) || shut_out);
                assert!(!message.is_empty());
                Vec::new()
            }
        };
    data_manager_answers(status, retry_after, body, rows);
    let row = logic::read_row(body);
    if let Ok(c) = &row {
        assert!(
            c.conversion_action
                .as_deref()
                .is_some_and(|a| !a.trim().is_empty())
        );
    }
    let outcomes = logic::row_outcomes(vec![row, Err(("X".into(), "y".into()))], ends);
    assert_eq!(outcomes.len(), 2);
    assert!(matches!(&outcomes[1], RowOutcome::Rejected((c, _)) if c == "X"));
}

/// The SDK's signature helpers: HMAC hex/base64, base64, hex, constant-time equality,
/// and `verify_hub_sha256` with the key as the app secret(s).
pub fn sdk_signature(data: &[u8]) {
    let (key, message) = match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n).min(rest.len())),
        None => (&[][..], &[][..]),
    };
    let mac = hmac_sha256(key, message);
    let hex = hmac_sha256_hex(key, message);
    assert_eq!(hex, to_hex(&mac));
    assert_eq!(from_hex(&hex), mac);
    let b64 = hmac_sha256_base64(key, message);
    assert_eq!(b64.len(), 44);
    assert_eq!(base64_decode(&b64).as_deref(), Some(&mac[..]));

    let h = to_hex(message);
    assert_eq!(h.len(), message.len() * 2);
    assert_eq!(from_hex(&h), message);

    let encoded = base64_encode(message);
    assert_eq!(encoded.len(), message.len().div_ceil(3) * 4);
    assert_eq!(base64_decode(&encoded).as_deref(), Some(message));
    let text = String::from_utf8_lossy(message);
    if let Some(decoded) = base64_decode(&text) {
        let digits = text.trim().trim_end_matches('=');
        assert!(
            digits
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        );
        assert_eq!(decoded.len(), digits.len() * 6 / 8);
        assert_eq!(base64_decode(&base64_encode(&decoded)), Some(decoded));
    }

    assert_eq!(constant_time_eq(key, message), key == message);
    assert!(constant_time_eq(message, message));
    if let Some((_, shorter)) = message.split_last() {
        assert!(!constant_time_eq(message, shorter));
    }

    let secrets = portico_sdk::host::split_list(&String::from_utf8_lossy(key));
    check_hub_signature(&text, &secrets, message);
    check_hub_signature(&format!("sha256={hex}"), &secrets, message);
    check_hub_signature(&text, &[], message);
}
