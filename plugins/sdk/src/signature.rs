//! Webhook signatures: HMAC-SHA256 over the raw body, compared in constant time.
//!
//! Always hash the raw request bytes as received. Meta, for one, signs the
//! ASCII-escaped body it sends (`Jos\u00e9`); re-serialised JSON never matches.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `message` under `key`.
///
/// ```
/// assert_eq!(portico_sdk::signature::hmac_sha256(b"key", b"msg").len(), 32);
/// ```
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `bytes` (a digest to key or name things by, not a signature).
///
/// ```
/// let d = portico_sdk::signature::sha256(b"abc");
/// assert_eq!(portico_sdk::signature::to_hex(&d[..4]), "ba7816bf");
/// ```
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(bytes).into()
}

/// Lower-case hex of `bytes`.
///
/// ```
/// assert_eq!(portico_sdk::signature::to_hex(&[0xab, 0x01]), "ab01");
/// ```
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// HMAC-SHA256 of `message` as lower-case hex (what `X-Hub-Signature-256` carries after `sha256=`).
///
/// ```
/// let hex = portico_sdk::signature::hmac_sha256_hex(b"test_app_secret_123", b"{}");
/// assert_eq!(hex.len(), 64);
/// ```
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    to_hex(&hmac_sha256(key, message))
}

/// HMAC-SHA256 of `message` as standard base64 (what Standard Webhooks' `v1,` signatures carry).
///
/// ```
/// use portico_sdk::signature::hmac_sha256_base64;
/// assert_eq!(hmac_sha256_base64(b"key", b"msg").len(), 44);
/// ```
pub fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    base64_encode(&hmac_sha256(key, message))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
///
/// ```
/// assert_eq!(portico_sdk::signature::base64_encode(b"hi!"), "aGkh");
/// ```
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decode standard base64 (padding optional); `None` on any other character.
///
/// ```
/// assert_eq!(portico_sdk::signature::base64_decode("aGkh").unwrap(), b"hi!");
/// assert!(portico_sdk::signature::base64_decode("a*").is_none());
/// ```
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Equality whose time does not depend on where the inputs differ.
///
/// ```
/// assert!(portico_sdk::signature::constant_time_eq(b"abc", b"abc"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a hub signature was refused. The text is safe to show to the caller.
///
/// ```
/// use portico_sdk::signature::SignatureError;
/// assert_eq!(SignatureError::WrongLength(3).to_string(), "X-Hub-Signature-256 digest has 3 characters; expected 64 hex digits");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No header at all.
    Missing,
    /// The header does not start with `sha256=`.
    WrongPrefix,
    /// The digest is not 64 characters.
    WrongLength(usize),
    /// The digest has a character that is not a hex digit.
    NotHex,
    /// Well formed, but no configured secret produces it.
    Mismatch,
    /// There is no secret to check against.
    NoSecret,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "missing X-Hub-Signature-256 header"),
            Self::WrongPrefix => write!(
                f,
                "X-Hub-Signature-256 must start with \"sha256=\" followed by 64 hex digits"
            ),
            Self::WrongLength(n) => write!(
                f,
                "X-Hub-Signature-256 digest has {n} characters; expected 64 hex digits"
            ),
            Self::NotHex => write!(f, "X-Hub-Signature-256 digest is not hexadecimal"),
            Self::Mismatch => write!(
                f,
                "X-Hub-Signature-256 does not match the body for any configured app secret"
            ),
            Self::NoSecret => write!(
                f,
                "signature verification is on but no app secret is configured"
            ),
        }
    }
}

/// Check a Meta-style `X-Hub-Signature-256: sha256=<64 hex>` header against the raw body.
///
/// Any one of `secrets` may match (rotation). Upper-case hex is accepted.
///
/// ```
/// use portico_sdk::signature::{hmac_sha256_hex, verify_hub_sha256, SignatureError};
/// let body = br#"{"object":"page","entry":[]}"#;
/// let header = format!("sha256={}", hmac_sha256_hex(b"new", body));
/// let secrets = vec!["old".to_string(), "new".to_string()];
/// assert_eq!(verify_hub_sha256(Some(&header), &secrets, body), Ok(()));
/// assert_eq!(verify_hub_sha256(None, &secrets, body), Err(SignatureError::Missing));
/// ```
pub fn verify_hub_sha256(
    header: Option<&str>,
    secrets: &[String],
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::WrongPrefix)?;
    if digest.len() != 64 {
        return Err(SignatureError::WrongLength(digest.len()));
    }
    if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignatureError::NotHex);
    }
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let given = digest.to_ascii_lowercase();
    let mut matched = false;
    // Check every secret so the time taken does not reveal which one matched.
    for secret in secrets {
        let expected = hmac_sha256_hex(secret.as_bytes(), body);
        matched |= constant_time_eq(expected.as_bytes(), given.as_bytes());
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A known-good pair: a WhatsApp Cloud API body and the signature Meta sent for it.
    const BODY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Jos\u00e9 P\u00e9rez"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","type":"text","text":{"body":"Ol\u00e1, caf\u00e9?"}}]},"field":"messages"}]}]}"#;
    const SIG: &str = "sha256=541d4395b39052c617d54ee9a7f7adcce90805bcde97e3fa9ca592e20fa5d2ba";

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reference_vector_matches() {
        assert_eq!(BODY.len(), 496);
        assert_eq!(
            verify_hub_sha256(
                Some(SIG),
                &secrets(&["test_app_secret_123"]),
                BODY.as_bytes()
            ),
            Ok(())
        );
    }

    #[test]
    fn any_rotated_secret_matches() {
        let s = secrets(&["old", "test_app_secret_123"]);
        assert_eq!(verify_hub_sha256(Some(SIG), &s, BODY.as_bytes()), Ok(()));
    }

    #[test]
    fn reserialised_unicode_does_not_match() {
        let decoded = BODY
            .replace("Jos\\u00e9 P\\u00e9rez", "José Pérez")
            .replace("Ol\\u00e1, caf\\u00e9?", "Olá, café?");
        assert_eq!(
            hmac_sha256_hex(b"test_app_secret_123", decoded.as_bytes()),
            "865438d084b59ff10e33254f757a7ac25497e2ec7d2d72a98d75e83e32dd36e3"
        );
        assert_eq!(
            verify_hub_sha256(
                Some(SIG),
                &secrets(&["test_app_secret_123"]),
                decoded.as_bytes()
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let s = secrets(&["test_app_secret_123"]);
        let b = BODY.as_bytes();
        assert_eq!(verify_hub_sha256(None, &s, b), Err(SignatureError::Missing));
        assert_eq!(
            verify_hub_sha256(Some("sha1=abc"), &s, b),
            Err(SignatureError::WrongPrefix)
        );
        assert_eq!(
            verify_hub_sha256(Some("sha256=abc"), &s, b),
            Err(SignatureError::WrongLength(3))
        );
        let not_hex = format!("sha256={}", "g".repeat(64));
        assert_eq!(
            verify_hub_sha256(Some(&not_hex), &s, b),
            Err(SignatureError::NotHex)
        );
        assert_eq!(
            verify_hub_sha256(Some(SIG), &[], b),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify_hub_sha256(Some(SIG), &secrets(&["wrong"]), b),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
