//! What a delivery's parser makes before the host's records exist: plain Rust values
//! that logic code returns and tests natively, turned into WIT records at the edge.

use crate::{AdapterError, Item};
use std::fmt;

/// A body the adapter cannot read; permanent, as retrying the same bytes cannot help.
///
/// ```
/// let e = portico_sdk::ParseError::new("invalid_json", "body is not valid JSON");
/// let wit: portico_sdk::AdapterError = e.into();
/// assert!(!wit.retryable && wit.code == "invalid_json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

impl ParseError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ParseError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<ParseError> for AdapterError {
    fn from(e: ParseError) -> Self {
        AdapterError::permanent(e.code, e.message)
    }
}

/// One item of a delivery; its tenant named by the provider's key only.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub dedup_key: String,
    /// The key lead_sources maps to a tenant (a page id, a phone number id, ...).
    pub tenant_key: Option<String>,
    pub kind: &'static str,
    pub payload: Vec<u8>,
}

impl Parsed {
    /// The WIT item, its tenant looked up under `tenant_kind`.
    ///
    /// ```
    /// let p = portico_sdk::Parsed { dedup_key: "lead:1".into(), tenant_key: Some("acme".into()),
    ///     kind: "lead", payload: b"{}".to_vec() };
    /// assert_eq!(p.into_item("standard").tenant.unwrap().kind, "standard");
    /// ```
    pub fn into_item(self, tenant_kind: &str) -> Item {
        Item::new(
            self.dedup_key,
            tenant_kind,
            self.tenant_key,
            self.kind,
            self.payload,
        )
    }
}

/// Every parsed item as a WIT item under `tenant_kind`.
///
/// ```
/// let items = portico_sdk::into_items(Vec::new(), "meta");
/// assert!(items.is_empty());
/// ```
pub fn into_items(parsed: Vec<Parsed>, tenant_kind: &str) -> Vec<Item> {
    parsed
        .into_iter()
        .map(|p| p.into_item(tenant_kind))
        .collect()
}
