//! Guest-side crate for Portico adapter authors.
//!
//! An adapter is a Rust crate built for `wasm32-wasip2` that implements the
//! `portico:adapter/plugin` interface of `wit/adapter.wit` (0.3.0). This crate gives it:
//!
//! - [`bindings`]: the generated WIT bindings and the [`export_adapter!`] macro;
//! - [`signature`]: HMAC-SHA256 signature checks with constant-time comparison;
//! - [`http`]: small helpers over the request record (headers, query strings);
//! - [`json`]: JSON access whose errors name the field path;
//! - [`host`]: logging and config/secret lookups through the host;
//! - [`directory`]: read-only lookups of tenants' provider keys;
//! - [`outbound`]: HTTP to the hosts plugins.toml allows;
//! - [`cache`]: short-lived values kept between calls (in the host's memory);
//! - [`oauth`]: OAuth 2.0 access tokens from a refresh token, kept until they expire;
//! - [`Parsed`], [`ParseError`], [`into_items`]: a parser's output, and how it becomes items;
//! - [`respond_records`], [`no_outbox`]: the answers most adapters give.
//!
//! Keep the logic you unit-test natively free of host calls: on a native target
//! the host imports are stubs that abort the test process.
//!
//! ```ignore
//! use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
//! struct MyAdapter;
//! impl Guest for MyAdapter {
//!     /* manifest, verify, parse, map_to_domain, handle, deliver, respond */
//! }
//! portico_sdk::export_adapter!(MyAdapter);
//! ```

pub mod cache;
pub mod directory;
pub mod host;
pub mod http;
pub mod json;
pub mod oauth;
pub mod outbound;
mod parsed;
pub mod signature;

/// Bindings generated from `wit/adapter.wit` (world `adapter`).
#[allow(clippy::all, unsafe_code, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "adapter",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_adapter",
        default_bindings_module: "portico_sdk::bindings",
    });
}

pub use bindings::export_adapter;
pub use bindings::exports::portico::adapter::plugin::{BatchError, OutboxRow, RowOutcome};
pub use bindings::portico::adapter::types::{
    AdapterError, ContactRef, ContactUpdate, Conversion, DeliveryStatus, DomainOp, InboundMessage,
    Item, Lead, MessageChange, MessageChangeKind, OutboundMessage, OutboxDecl,
    PluginManifest as Manifest, RecordRef, Request, Response, Route, RouteAuth, RouteKind,
    StatusUpdate, TenantRef, Verdict,
};
pub use parsed::{ParseError, Parsed, into_items};

use json::Value;

impl AdapterError {
    /// An error that will not go away by trying again (bad input, unsupported shape).
    ///
    /// ```
    /// let e = portico_sdk::AdapterError::permanent("invalid_json", "body is not JSON");
    /// assert!(!e.retryable);
    /// ```
    pub fn permanent(code: &str, message: impl Into<String>) -> Self {
        AdapterError {
            code: code.to_string(),
            message: message.into(),
            retryable: false,
            fields: Vec::new(),
        }
    }

    /// An error worth retrying later (provider 5xx, timeouts, rate limits).
    ///
    /// ```
    /// let e = portico_sdk::AdapterError::retryable("graph_timeout", "Graph did not answer in 4 s");
    /// assert!(e.retryable);
    /// ```
    pub fn retryable(code: &str, message: impl Into<String>) -> Self {
        AdapterError {
            code: code.to_string(),
            message: message.into(),
            retryable: true,
            fields: Vec::new(),
        }
    }

    /// A permanent error listing problems by field (an intake route answers 400 naming each).
    ///
    /// ```
    /// let e = portico_sdk::AdapterError::invalid("invalid_request", vec![("to".into(), "is required".into())]);
    /// assert_eq!((e.message.as_str(), e.fields.len()), ("1 problem(s): to: is required", 1));
    /// ```
    pub fn invalid(code: &str, fields: Vec<(String, String)>) -> Self {
        let parts: Vec<String> = fields.iter().map(|(f, p)| format!("{f}: {p}")).collect();
        let mut e = Self::permanent(
            code,
            format!("{} problem(s): {}", fields.len(), parts.join("; ")),
        );
        e.fields = fields;
        e
    }
}

impl Item {
    /// An item owned by the tenant that lead_sources maps `tenant_kind` + `tenant_key` to
    /// (no key: the item names no tenant).
    ///
    /// ```
    /// let item = portico_sdk::Item::new("leadgen:42", "meta", Some("1234".into()), "leadgen", b"{}".to_vec());
    /// assert_eq!(item.tenant.unwrap().key, "1234");
    /// ```
    pub fn new(
        dedup_key: impl Into<String>,
        tenant_kind: &str,
        tenant_key: Option<String>,
        kind: &str,
        payload: Vec<u8>,
    ) -> Item {
        Item {
            dedup_key: dedup_key.into(),
            tenant: tenant_key.map(|key| TenantRef {
                kind: tenant_kind.to_string(),
                key,
            }),
            kind: kind.to_string(),
            payload,
        }
    }
}

/// What an adapter answers to `deliver` for a kind its manifest does not declare
/// (all of them, for an adapter without an outbox): the host stops delivering it.
///
/// ```
/// assert!(matches!(portico_sdk::no_outbox("conversion"), Err(portico_sdk::BatchError::Stop(_))));
/// ```
pub fn no_outbox(kind: &str) -> Result<Vec<RowOutcome>, BatchError> {
    Err(BatchError::Stop(format!(
        "this adapter declares no outbox kind {kind:?}; check the plugin's manifest and version"
    )))
}

impl Response {
    /// A plain-text response.
    ///
    /// ```
    /// let r = portico_sdk::Response::text(200, "1158201444");
    /// assert_eq!(r.body, b"1158201444");
    /// ```
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A JSON response.
    ///
    /// ```
    /// let r = portico_sdk::Response::json(202, &serde_json::json!({"status": "pending"}));
    /// assert_eq!((r.status, r.body.as_slice()), (202, br#"{"status":"pending"}"#.as_slice()));
    /// ```
    pub fn json(status: u16, body: &Value) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }
}

impl RecordRef {
    /// The record as JSON: `kind`, `id`, `status`, and `external_id` / `error` when set.
    ///
    /// ```
    /// let r = portico_sdk::RecordRef { kind: "lead".into(), id: 7, status: "created".into(),
    ///     external_id: None, error: None };
    /// assert_eq!(r.to_json(), serde_json::json!({"kind": "lead", "id": 7, "status": "created"}));
    /// ```
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::json!({"kind": self.kind, "id": self.id, "status": self.status});
        if let Some(external_id) = &self.external_id {
            out["external_id"] = Value::from(external_id.as_str());
        }
        if let Some(error) = &self.error {
            out["error"] = Value::from(error.as_str());
        }
        out
    }
}

/// The answer to an intake request for adapters without a special one: one record is
/// 200 `{"id", "status"}`; any other number is 200 `{"records": [...]}` (see [`RecordRef::to_json`]).
///
/// ```
/// use portico_sdk::{respond_records, RecordRef};
/// let one = RecordRef { kind: "conversion".into(), id: 3, status: "logged".into(),
///     external_id: None, error: None };
/// let body = |r: portico_sdk::Response| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap();
/// assert_eq!(body(respond_records(&[one.clone()])), serde_json::json!({"id": 3, "status": "logged"}));
/// assert_eq!(body(respond_records(&[one.clone(), one]))["records"][1]["kind"], "conversion");
/// ```
pub fn respond_records(records: &[RecordRef]) -> Response {
    let body = match records {
        [one] => serde_json::json!({"id": one.id, "status": one.status}),
        many => {
            serde_json::json!({"records": many.iter().map(RecordRef::to_json).collect::<Vec<_>>()})
        }
    };
    Response::json(200, &body)
}

impl ContactRef {
    /// A person known by phone number only.
    pub fn by_phone(phone: impl Into<String>) -> Self {
        ContactRef {
            phone: Some(phone.into()),
            user_id: None,
            parent_user_id: None,
            username: None,
            name: None,
        }
    }

    /// A person known by the provider's user id only.
    pub fn by_user_id(user_id: impl Into<String>) -> Self {
        ContactRef {
            phone: None,
            user_id: Some(user_id.into()),
            parent_user_id: None,
            username: None,
            name: None,
        }
    }

    /// Whether it names no one (neither a phone nor a user id).
    pub fn is_empty(&self) -> bool {
        self.phone.as_deref().is_none_or(str::is_empty)
            && self.user_id.as_deref().is_none_or(str::is_empty)
    }
}

impl DeliveryStatus {
    /// The status a provider names `sent`, `delivered`, `read`, `played` or `failed`
    /// (case-insensitive); `None` for any other word.
    ///
    /// ```
    /// use portico_sdk::DeliveryStatus;
    /// assert_eq!(DeliveryStatus::parse("Read"), Some(DeliveryStatus::Read));
    /// assert_eq!(DeliveryStatus::parse("deleted"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "played" => Some(Self::Played),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// The status's name as [`DeliveryStatus::parse`] reads it.
    ///
    /// ```
    /// assert_eq!(portico_sdk::DeliveryStatus::Played.as_str(), "played");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, id: i64, status: &str) -> RecordRef {
        RecordRef {
            kind: kind.into(),
            id,
            status: status.into(),
            external_id: None,
            error: None,
        }
    }

    #[test]
    fn records_answer_by_count() {
        let none = respond_records(&[]);
        assert_eq!(
            (none.status, none.body.as_slice()),
            (200, br#"{"records":[]}"#.as_slice())
        );
        let mut failed = record("message", 2, "failed");
        failed.error = Some("131047: Re-engagement message".into());
        let both = respond_records(&[record("lead", 1, "created"), failed]);
        let body: Value = serde_json::from_slice(&both.body).unwrap();
        assert_eq!(
            body["records"][0],
            serde_json::json!({"kind": "lead", "id": 1, "status": "created"})
        );
        assert_eq!(body["records"][1]["error"], "131047: Re-engagement message");
        assert!(body["records"][1].get("external_id").is_none());
    }

    #[test]
    fn every_status_round_trips() {
        for s in [
            DeliveryStatus::Sent,
            DeliveryStatus::Delivered,
            DeliveryStatus::Read,
            DeliveryStatus::Played,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
    }
}
