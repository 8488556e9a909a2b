//! Helpers over the request record: headers and query strings.

use crate::Request;

/// The first value of a header, by case-insensitive name.
///
/// ```
/// use portico_sdk::{http::header, Request};
/// let req = Request { method: "POST".into(), route: "webhook".into(), query: String::new(),
///     headers: vec![("x-hub-signature-256".into(), "sha256=ab".into())], body: vec![] };
/// assert_eq!(header(&req, "X-Hub-Signature-256"), Some("sha256=ab"));
/// ```
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The first value of a query parameter, percent-decoded (`+` is a space).
///
/// ```
/// let q = "hub.mode=subscribe&hub.challenge=a%2Fb";
/// assert_eq!(portico_sdk::http::query_param(q, "hub.challenge").as_deref(), Some("a/b"));
/// ```
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// The Meta-style subscription handshake (`hub.mode=subscribe`, `hub.verify_token`,
/// `hub.challenge`): `Some(challenge)` to echo when the token matches. An unset or
/// empty expected token never matches.
///
/// ```
/// let q = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=tok";
/// assert_eq!(portico_sdk::http::hub_challenge(q, Some("tok")).as_deref(), Some("1158201444"));
/// assert_eq!(portico_sdk::http::hub_challenge(q, Some("")), None);
/// ```
pub fn hub_challenge(query: &str, verify_token: Option<&str>) -> Option<String> {
    let expected = verify_token.filter(|t| !t.is_empty())?;
    let mode = query_param(query, "hub.mode")?;
    let token = query_param(query, "hub.verify_token")?;
    let challenge = query_param(query, "hub.challenge")?;
    let token_ok = crate::signature::constant_time_eq(token.as_bytes(), expected.as_bytes());
    (mode == "subscribe" && token_ok).then_some(challenge)
}

/// Answer a GET handshake on route `webhook`: 200 text/plain with the challenge, or
/// 403; `None` for any other request (not a handshake route).
///
/// ```
/// use portico_sdk::{http::hub_handshake, Request};
/// let req = Request { method: "GET".into(), route: "webhook".into(),
///     query: "hub.mode=subscribe&hub.challenge=7&hub.verify_token=t".into(), headers: vec![], body: vec![] };
/// assert_eq!(hub_handshake(&req, Some("t")).unwrap().status, 200);
/// assert_eq!(hub_handshake(&req, None).unwrap().status, 403);
/// ```
pub fn hub_handshake(req: &crate::Request, verify_token: Option<&str>) -> Option<crate::Response> {
    if req.route != "webhook" || req.method != "GET" {
        return None;
    }
    Some(match hub_challenge(&req.query, verify_token) {
        Some(challenge) => crate::Response::text(200, challenge),
        None => crate::Response::text(403, "verification failed: hub.verify_token does not match"),
    })
}

/// Decode `%XX` escapes and `+`; invalid escapes are kept as written.
///
/// ```
/// assert_eq!(portico_sdk::http::percent_decode("caf%C3%A9+au+lait%"), "café au lait%");
/// ```
pub fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters (for a
/// query value or a form field).
///
/// ```
/// assert_eq!(portico_sdk::http::percent_encode("a b/c=d"), "a%20b%2Fc%3Dd");
/// ```
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = "hub.mode=subscribe&hub.challenge=a%2Bb+c&hub.verify_token=t%C3%A9";
        assert_eq!(query_param(q, "hub.mode").as_deref(), Some("subscribe"));
        assert_eq!(query_param(q, "hub.challenge").as_deref(), Some("a+b c"));
        assert_eq!(query_param(q, "hub.verify_token").as_deref(), Some("té"));
        assert_eq!(query_param(q, "missing"), None);
    }

    #[test]
    fn handshake_echoes_only_on_matching_token() {
        let q = "hub.mode=subscribe&hub.challenge=abc%2F123&hub.verify_token=tok";
        assert_eq!(hub_challenge(q, Some("tok")).as_deref(), Some("abc/123"));
        assert_eq!(hub_challenge(q, Some("other")), None);
        assert_eq!(hub_challenge(q, None), None);
        assert_eq!(
            hub_challenge(
                "hub.mode=subscribe&hub.challenge=1&hub.verify_token=",
                Some("")
            ),
            None
        );
        assert_eq!(
            hub_challenge("hub.challenge=1&hub.verify_token=tok", Some("tok")),
            None
        );
    }

    #[test]
    fn bad_escapes_are_kept() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
