//! Outbound HTTP through the host. Only the hosts in the plugin's
//! `allowed_hosts` (plugins.toml) are reachable; anything else comes back as
//! [`OutboundError::NotAllowed`] with the host's explanation.

use crate::bindings::portico::adapter::outbound as imports;
pub use imports::{OutboundError, OutboundRequest, OutboundResponse};

/// Send a request through the host.
pub fn send(request: &OutboundRequest) -> Result<OutboundResponse, OutboundError> {
    imports::send(request)
}

/// `GET url` with headers and an optional timeout in milliseconds.
pub fn get(
    url: &str,
    headers: &[(&str, &str)],
    timeout_ms: Option<u32>,
) -> Result<OutboundResponse, OutboundError> {
    send(&OutboundRequest {
        method: "GET".into(),
        url: url.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        timeout_ms,
    })
}

/// A sentence for an error, fit for an event's error column.
pub fn describe(error: &OutboundError) -> String {
    match error {
        OutboundError::NotAllowed(why) => format!("outbound request refused by the host: {why}"),
        OutboundError::Timeout(why) => format!("outbound request timed out: {why}"),
        OutboundError::Failed(why) => format!("outbound request failed: {why}"),
    }
}
