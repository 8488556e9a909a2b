//! Bearer tokens. The admin token (`PORTICO_ADMIN_TOKEN`) opens the admin API
//! and admin-only plugin routes; the intake tokens (`PORTICO_INTAKE_TOKEN`,
//! comma-separated so one can be rotated in before the old one goes) and the
//! admin token open the CRM's intake routes (a WhatsApp send, a conversion).
//!
//! Tokens are compared as SHA-256 digests in constant time, against every
//! configured token without stopping early: neither a token's bytes nor its
//! length show in the time an answer takes.

use super::error::ApiError;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// Which tokens a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
    Intake,
}

/// The configured tokens, kept as digests only.
#[derive(Clone, Default)]
pub struct Credentials {
    admin: Option<[u8; 32]>,
    intake: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("admin", &self.admin.is_some())
            .field("intake_tokens", &self.intake.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Credentials {
    /// `intake` as PORTICO_INTAKE_TOKEN holds it: tokens separated by commas.
    pub fn new(admin: Option<&str>, intake: Option<&str>) -> Credentials {
        Credentials {
            admin: admin.map(str::trim).filter(|t| !t.is_empty()).map(digest),
            intake: intake
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(digest)
                .collect(),
        }
    }

    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    pub fn has_intake(&self) -> bool {
        !self.intake.is_empty()
    }

    /// Whether `headers` carry a bearer token that `access` takes.
    pub fn check(&self, access: Access, headers: &HeaderMap) -> Result<(), ApiError> {
        let accepted: Vec<&[u8; 32]> = match access {
            Access::Admin => self.admin.iter().collect(),
            Access::Intake => self.intake.iter().chain(self.admin.iter()).collect(),
        };
        if accepted.is_empty() {
            return Err(ApiError::unauthorized(match access {
                Access::Admin => {
                    "admin endpoints are closed: set PORTICO_ADMIN_TOKEN on the server and send it as Authorization: Bearer <token>"
                }
                Access::Intake => {
                    "intake routes are closed: set PORTICO_INTAKE_TOKEN (or PORTICO_ADMIN_TOKEN) on the server and send it as Authorization: Bearer <token>"
                }
            }));
        }
        let given = digest(bearer(headers).unwrap_or(""));
        let mut matched = 0u8;
        for token in accepted {
            let differs = token
                .iter()
                .zip(given.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            matched |= u8::from(differs == 0);
        }
        if matched == 1 && bearer(headers).is_some() {
            return Ok(());
        }
        Err(ApiError::unauthorized(match access {
            Access::Admin => {
                "missing or wrong bearer token: send Authorization: Bearer <PORTICO_ADMIN_TOKEN>"
            }
            Access::Intake => {
                "missing or wrong bearer token: send Authorization: Bearer <PORTICO_INTAKE_TOKEN> (or the admin token)"
            }
        }))
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn intake_takes_every_rotated_token_and_the_admin_token() {
        let c = Credentials::new(Some("adm"), Some(" new-one , old-one ,"));
        assert!(c.check(Access::Intake, &with("new-one")).is_ok());
        assert!(c.check(Access::Intake, &with("old-one")).is_ok());
        assert!(c.check(Access::Intake, &with("adm")).is_ok());
        assert!(c.check(Access::Intake, &with("new")).is_err());
        assert!(c.check(Access::Intake, &HeaderMap::new()).is_err());
        // Intake tokens never open the admin API.
        assert!(c.check(Access::Admin, &with("new-one")).is_err());
        assert!(c.check(Access::Admin, &with("adm")).is_ok());
    }

    #[test]
    fn closed_routes_name_the_variable_to_set() {
        let c = Credentials::new(None, None);
        let e = c.check(Access::Intake, &with("x")).unwrap_err();
        assert_eq!(e.status(), 401);
        assert!(format!("{e:?}").contains("PORTICO_INTAKE_TOKEN"));
        let e = c.check(Access::Admin, &with("x")).unwrap_err();
        assert!(format!("{e:?}").contains("PORTICO_ADMIN_TOKEN"));
        // An empty bearer never matches, even against an empty token list entry.
        let c = Credentials::new(Some("a"), Some(""));
        assert!(!c.has_intake());
        assert!(c.check(Access::Intake, &with("")).is_err());
    }
}
