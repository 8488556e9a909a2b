//! OAuth 2.0 access tokens minted from a refresh token (RFC 6749 section 6)
//! and kept in the host's [`cache`](crate::cache) until shortly before they
//! expire. Tokens are never logged, and no error here carries one.
//!
//! ```no_run
//! use portico_sdk::oauth::{access_token, RefreshGrant};
//! let grant = RefreshGrant {
//!     token_url: "https://oauth2.googleapis.com/token".into(),
//!     client_id: "id".into(),
//!     client_secret: "secret".into(),
//!     refresh_token: "1//refresh".into(),
//! };
//! let token = access_token(&grant, false); // after a 401: access_token(&grant, true)
//! ```

use crate::json::Value;
use std::time::Duration;

/// Credentials for the refresh-token grant.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshGrant")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token endpoint refused the grant (`invalid_grant`: the refresh token
    /// expired or was revoked; `invalid_client`, ...): a person must act.
    Refused { error: String, description: String },
    /// The endpoint could not answer now (5xx, 429, a network failure): try later.
    Unavailable(String),
    /// The host refused the call (the token URL is not in `allowed_hosts`).
    NotAllowed(String),
}

impl TokenError {
    /// A sentence for logs and health; never a token.
    pub fn describe(&self) -> String {
        match self {
            TokenError::Refused { error, description } if description.is_empty() => {
                format!("the OAuth token endpoint refused the refresh token ({error})")
            }
            TokenError::Refused { error, description } => {
                format!(
                    "the OAuth token endpoint refused the refresh token ({error}: {description})"
                )
            }
            TokenError::Unavailable(why) => format!("no OAuth access token now: {why}"),
            TokenError::NotAllowed(why) => {
                format!("the OAuth token endpoint is not allowed: {why}")
            }
        }
    }
}

/// A token the endpoint gave, and how many seconds it lives.
#[derive(Clone, PartialEq, Eq)]
pub struct Minted {
    pub access_token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for Minted {
    // The token itself is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Renew this long before the endpoint's expiry.
pub const RENEW_EARLY: Duration = Duration::from_secs(60);
/// Assumed lifetime when the answer names none (RFC 6749 makes it optional).
const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// The grant's form body, `application/x-www-form-urlencoded`.
pub fn form_body(grant: &RefreshGrant) -> String {
    [
        ("grant_type", "refresh_token"),
        ("client_id", grant.client_id.as_str()),
        ("client_secret", grant.client_secret.as_str()),
        ("refresh_token", grant.refresh_token.as_str()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", crate::http::percent_encode(v)))
    .collect::<Vec<_>>()
    .join("&")
}

/// Read the token endpoint's answer.
pub fn read_answer(status: u16, body: &[u8]) -> Result<Minted, TokenError> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |k: &str| json[k].as_str().unwrap_or_default().to_string();
    if (200..300).contains(&status) {
        let access_token = text("access_token");
        if access_token.is_empty() {
            return Err(TokenError::Unavailable(format!(
                "the token endpoint answered HTTP {status} without an access_token"
            )));
        }
        // A number, or a number in a string (both are seen).
        let expires_in = match &json["expires_in"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(DEFAULT_LIFETIME_SECS);
        return Ok(Minted {
            access_token,
            expires_in,
        });
    }
    let error = text("error");
    let description = text("error_description");
    // What is worth trying again (the same classes Google's own auth library retries).
    let transient_error = matches!(
        error.as_str(),
        "internal_failure" | "server_error" | "temporarily_unavailable"
    );
    if matches!(status, 408 | 429) || status >= 500 || transient_error {
        return Err(TokenError::Unavailable(format!(
            "the token endpoint answered HTTP {status}{}",
            if error.is_empty() {
                String::new()
            } else {
                format!(" ({error})")
            }
        )));
    }
    Err(TokenError::Refused {
        error: if error.is_empty() {
            format!("HTTP {status}")
        } else {
            error
        },
        description: description.chars().take(300).collect(),
    })
}

/// How long to keep a token that lives `expires_in` seconds: until
/// [`RENEW_EARLY`] before it expires (half its life when it is shorter).
pub fn keep_for(expires_in: u64) -> Duration {
    let life = Duration::from_secs(expires_in);
    if life > RENEW_EARLY * 2 {
        life - RENEW_EARLY
    } else {
        life / 2
    }
}

/// The cache key of a grant: a digest, so no credential is a key.
pub fn cache_key(grant: &RefreshGrant) -> String {
    let mut parts = Vec::new();
    for part in [&grant.token_url, &grant.client_id, &grant.refresh_token] {
        parts.extend_from_slice(part.as_bytes());
        parts.push(0);
    }
    let digest = crate::signature::sha256(&parts);
    format!("oauth:{}", crate::signature::to_hex(&digest[..16]))
}

/// An access token for `grant`: the kept one, or a new one from the token
/// endpoint. `renew` forces a new one (after the API answered 401 to the kept one).
pub fn access_token(grant: &RefreshGrant, renew: bool) -> Result<String, TokenError> {
    let key = cache_key(grant);
    if !renew && let Some(token) = crate::cache::get(&key) {
        return Ok(token);
    }
    let answer = crate::outbound::send(&crate::outbound::OutboundRequest {
        method: "POST".into(),
        url: grant.token_url.clone(),
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("accept".into(), "application/json".into()),
        ],
        body: form_body(grant).into_bytes(),
        timeout_ms: Some(10_000),
    });
    let answer = match answer {
        Ok(a) => a,
        Err(crate::outbound::OutboundError::NotAllowed(why)) => {
            return Err(TokenError::NotAllowed(why));
        }
        Err(e) => return Err(TokenError::Unavailable(crate::outbound::describe(&e))),
    };
    let minted = read_answer(answer.status, &answer.body)?;
    crate::cache::put(&key, &minted.access_token, keep_for(minted.expires_in));
    Ok(minted.access_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> RefreshGrant {
        RefreshGrant {
            token_url: "https://oauth2.googleapis.com/token".into(),
            client_id: "123.apps.googleusercontent.com".into(),
            client_secret: "s3cr=t&x".into(),
            refresh_token: "1//0g-ab/cd".into(),
        }
    }

    #[test]
    fn the_form_body_is_url_encoded() {
        assert_eq!(
            form_body(&grant()),
            "grant_type=refresh_token&client_id=123.apps.googleusercontent.com&client_secret=s3cr%3Dt%26x&refresh_token=1%2F%2F0g-ab%2Fcd"
        );
    }

    #[test]
    fn answers_are_read_as_tokens_refusals_or_outages() {
        assert_eq!(
            read_answer(
                200,
                br#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#
            ),
            Ok(Minted {
                access_token: "ya29.a".into(),
                expires_in: 3599
            })
        );
        assert_eq!(
            read_answer(200, br#"{"access_token":"t","expires_in":"120"}"#)
                .unwrap()
                .expires_in,
            120
        );
        assert!(matches!(
            read_answer(200, b"{}"),
            Err(TokenError::Unavailable(_))
        ));
        let refused = read_answer(
            400,
            br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        )
        .unwrap_err();
        assert_eq!(
            refused.describe(),
            "the OAuth token endpoint refused the refresh token (invalid_grant: Token has been expired or revoked.)"
        );
        assert!(matches!(
            read_answer(503, b"busy"),
            Err(TokenError::Unavailable(_))
        ));
        assert!(matches!(
            read_answer(429, b""),
            Err(TokenError::Unavailable(_))
        ));
        assert!(matches!(
            read_answer(400, br#"{"error":"temporarily_unavailable"}"#),
            Err(TokenError::Unavailable(_))
        ));
        assert!(matches!(
            read_answer(401, br#"{"error":"invalid_client"}"#),
            Err(TokenError::Refused { .. })
        ));
    }

    #[test]
    fn tokens_are_kept_until_a_minute_before_they_expire() {
        assert_eq!(keep_for(3599), Duration::from_secs(3539));
        assert_eq!(keep_for(100), Duration::from_secs(50));
        assert_eq!(keep_for(0), Duration::ZERO);
    }

    #[test]
    fn no_credential_shows_in_a_key_or_a_debug_print() {
        let g = grant();
        let key = cache_key(&g);
        assert!(key.starts_with("oauth:") && key.len() == 6 + 32, "{key}");
        assert!(!key.contains("0g-ab"));
        let printed = format!("{g:?}");
        assert!(
            !printed.contains("s3cr") && !printed.contains("0g-ab"),
            "{printed}"
        );
        let mut other = g.clone();
        other.refresh_token.push('x');
        assert_ne!(cache_key(&other), key);
    }
}
