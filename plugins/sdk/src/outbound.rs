//! Outbound HTTP through the host. Only the hosts in the plugin's
//! `allowed_hosts` (plugins.toml) are reachable; anything else comes back as
//! [`OutboundError::NotAllowed`] with the host's explanation.

use crate::bindings::portico::adapter::outbound as imports;
pub use imports::{OutboundError, OutboundRequest, OutboundResponse};

/// Send a request through the host.
///
/// ```no_run
/// use portico_sdk::outbound::{send, OutboundRequest};
/// let answer = send(&OutboundRequest {
///     method: "POST".into(),
///     url: "https://graph.facebook.com/v25.0/123/messages".into(),
///     headers: vec![("content-type".into(), "application/json".into())],
///     body: br#"{"messaging_product":"whatsapp"}"#.to_vec(),
///     timeout_ms: Some(3_000),
/// });
/// ```
pub fn send(request: &OutboundRequest) -> Result<OutboundResponse, OutboundError> {
    imports::send(request)
}

/// `GET url` with headers and an optional timeout in milliseconds.
///
/// ```no_run
/// match portico_sdk::outbound::get("https://graph.facebook.com/v25.0/42", &[("accept", "application/json")], Some(4_000)) {
///     Ok(answer) if answer.status == 200 => { /* parse answer.body */ }
///     Ok(answer) => { /* a provider error: answer.status, answer.body */ }
///     Err(e) => { let _why = portico_sdk::outbound::describe(&e); }
/// }
/// ```
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

/// `{base}/v{version}/{path}`, however the operator wrote the base (trailing `/`) and
/// the version (`v25.0` or `25.0`).
///
/// ```
/// let url = portico_sdk::outbound::api_url("https://graph.facebook.com/", "v25.0", "123/messages");
/// assert_eq!(url, "https://graph.facebook.com/v25.0/123/messages");
/// ```
pub fn api_url(base: &str, version: &str, path: &str) -> String {
    format!(
        "{}/v{}/{}",
        base.trim().trim_end_matches('/'),
        version.trim().trim_start_matches('v'),
        path.trim_start_matches('/')
    )
}

/// A sentence for an error, fit for an event's error column.
///
/// ```
/// use portico_sdk::outbound::{describe, OutboundError};
/// assert_eq!(describe(&OutboundError::Timeout("no answer".into())), "outbound request timed out: no answer");
/// ```
pub fn describe(error: &OutboundError) -> String {
    match error {
        OutboundError::NotAllowed(why) => format!("outbound request refused by the host: {why}"),
        OutboundError::Timeout(why) => format!("outbound request timed out: {why}"),
        OutboundError::Failed(why) => format!("outbound request failed: {why}"),
    }
}
