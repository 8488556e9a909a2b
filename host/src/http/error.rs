//! Every error answer is JSON `{"error": code, "message": what and how to fix}`
//! (plus `fields` for input errors); statuses are chosen here and only here.
//! What an adapter answers itself (a handshake, an intake's `respond`) keeps
//! the adapter's status.

use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    /// Problems by field path, for input errors.
    fields: Option<Map<String, Value>>,
}

impl ApiError {
    fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            fields: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// No or wrong credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A provider's delivery that `verify` refused.
    /// The machine-readable code of the error body.
    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_signature", message)
    }

    /// Bad input, named by `code` (e.g. an adapter's "invalid_request").
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Bad input with its problems by field.
    pub fn invalid_fields(
        code: impl Into<String>,
        message: impl Into<String>,
        fields: &[(String, String)],
    ) -> Self {
        let mut e = Self::bad_request(code, message);
        e.fields = Some(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
        e
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    /// The integration is switched off: the provider should retry later.
    pub fn integration_disabled(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "integration_disabled",
            message,
        )
    }

    /// The plugin is not loaded or cannot start an instance.
    pub fn plugin_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin_unavailable",
            message,
        )
    }

    /// The plugin's places are all taken: retry later.
    pub fn plugin_busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "plugin_busy", message)
    }

    /// The request could not be stored, so it was not accepted: retry later.
    pub fn store_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            message,
        )
    }

    /// A passing problem the caller should retry.
    pub fn try_again(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "try_again", message)
    }

    /// Over a server-wide cap (connections, requests in flight): retry later.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
    }

    /// The server lacks a setting this request needs (named in the message).
    pub fn not_configured(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "not_configured", message)
    }

    /// A request whose body did not arrive in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }

    /// The adapter failed before anything was stored: the provider should retry.
    pub fn adapter_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "adapter_failed", message)
    }
}

/// A request stored whose processing failed for now: the retry worker takes it
/// (202, with the event to follow in the DLQ API).
pub fn queued(event_id: i64, message: String) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "queued", "event_id": event_id, "message": message})),
    )
        .into_response()
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TenantNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "tenant_not_found", e.to_string())
            }
            StoreError::DuplicateSource { .. } => {
                Self::new(StatusCode::CONFLICT, "duplicate_source", e.to_string())
            }
            StoreError::CaseNotFound { .. } | StoreError::MissingTenant => {
                Self::bad_request("invalid_request", e.to_string())
            }
            other => Self::store_unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let Some(fields) = self.fields {
            body["fields"] = Value::Object(fields);
        }
        let mut response = (self.status, Json(body)).into_response();
        // Every 503 is "not now": say when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
