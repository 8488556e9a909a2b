//! Guest-side crate for Portico adapter authors.
//!
//! An adapter is a Rust crate built for `wasm32-wasip2` that implements the
//! `portico:adapter/plugin` interface of `wit/adapter.wit`. This crate gives it:
//!
//! - [`bindings`]: the generated WIT bindings and the [`export_adapter!`] macro;
//! - [`signature`]: HMAC-SHA256 signature checks with constant-time comparison;
//! - [`http`]: small helpers over the request record (headers, query strings);
//! - [`json`]: JSON access whose errors name the field path;
//! - [`host`]: logging and config/secret lookups through the host;
//! - [`outbound`]: HTTP to the hosts plugins.toml allows.
//!
//! Keep the logic you unit-test natively free of host calls: on a native target
//! the host imports are stubs that abort the test process.
//!
//! ```ignore
//! use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
//! struct MyAdapter;
//! impl Guest for MyAdapter { /* manifest, verify, parse, map_to_domain, handle */ }
//! portico_sdk::export_adapter!(MyAdapter);
//! ```

pub mod directory;
pub mod host;
pub mod http;
pub mod json;
pub mod outbound;
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
    AdapterError, Conversion, DomainOp, InboundMessage, Item, Lead, OutboundMessage, OutboxDecl,
    PluginManifest as Manifest, Request, Response, Route, RouteAuth, RouteKind, StatusUpdate,
    TenantRef, Verdict,
};

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

/// What an adapter without an outbox answers to `deliver`.
///
/// ```
/// assert!(matches!(portico_sdk::no_outbox("conversion"), Err(portico_sdk::BatchError::Stop(_))));
/// ```
pub fn no_outbox(kind: &str) -> Result<Vec<RowOutcome>, BatchError> {
    Err(BatchError::Stop(format!(
        "this adapter delivers no {kind:?} records"
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
}
