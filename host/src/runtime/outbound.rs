//! The `outbound` interface: HTTP from adapters, only where plugins.toml allows.
//!
//! Invariants: a request goes out only to a host (and port, when the rule names
//! one) of the plugin's `allowed_hosts`; redirects are never followed (they could
//! leave the allow-list); the wait is capped by the current call's deadline and
//! the response size by [`MAX_OUTBOUND_RESPONSE_BYTES`]. Error texts carry the URL
//! without its query, where tokens travel.

use super::bindings::portico::adapter::outbound::{
    self, OutboundError, OutboundRequest, OutboundResponse,
};
use super::host_api::HostState;
use crate::config::limits::{DEFAULT_OUTBOUND_TIMEOUT, MAX_OUTBOUND_RESPONSE_BYTES};
use std::time::{Duration, Instant};

/// The one HTTP client of the process (connection pools are shared by plugins).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    // Several crates may race to install a provider; whichever wins is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("portico/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// `scheme://host:port/path`, without query or credentials: safe to log.
fn shown(url: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

impl outbound::Host for HostState {
    async fn send(&mut self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let env = self.env().clone();
        let url = url::Url::parse(&req.url)
            .map_err(|e| OutboundError::Failed(format!("invalid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::Failed(format!(
                "only http and https URLs can be fetched, not {}",
                url.scheme()
            )));
        }
        let host = url.host_str().unwrap_or("").to_string();
        let port = url.port_or_known_default().unwrap_or(0);
        if !env
            .allowed_hosts
            .iter()
            .any(|rule| rule.allows(&host, port))
        {
            let allowed: Vec<String> = env.allowed_hosts.iter().map(ToString::to_string).collect();
            let message = format!(
                "host {host}:{port} is not allowed for plugin {} (allowed_hosts in plugins.toml: [{}])",
                env.name,
                allowed.join(", ")
            );
            tracing::warn!(plugin = %env.name, correlation_id = %self.correlation_id(), "outbound request refused: {message}");
            return Err(OutboundError::NotAllowed(message));
        }
        let asked = req
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(DEFAULT_OUTBOUND_TIMEOUT);
        let left = self.deadline().saturating_duration_since(Instant::now());
        let timeout = asked.min(left);
        if timeout.is_zero() {
            return Err(OutboundError::Timeout(
                "the adapter call's deadline has already passed".into(),
            ));
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| OutboundError::Failed(format!("invalid method {:?}", req.method)))?;
        let mut request = env.http.request(method, url.clone());
        for (name, value) in &req.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if !req.body.is_empty() {
            request = request.body(req.body);
        }
        let target = shown(&url);
        let started = Instant::now();
        // Waiting on the network is not running: give the plugin's place back meanwhile.
        let had_permit = self.permit.take().is_some();
        let exchange = async {
            let mut response = request
                .send()
                .await
                .map_err(|e| OutboundError::Failed(format!("{target}: {}", without_url(&e))))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                OutboundError::Failed(format!("{target}: reading the answer: {}", without_url(&e)))
            })? {
                if body.len() + chunk.len() > MAX_OUTBOUND_RESPONSE_BYTES {
                    return Err(OutboundError::Failed(format!(
                        "{target}: answer is larger than {MAX_OUTBOUND_RESPONSE_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(OutboundResponse {
                status,
                headers,
                body,
            })
        };
        // Host and method only: URLs may carry tokens in their query.
        let span = tracing::info_span!(
            "outbound",
            otel.name = %format!("{} {host}", req.method),
            otel.kind = "client",
            plugin = %env.name,
            host = %host,
            method = %req.method
        );
        let exchange = tracing::Instrument::instrument(exchange, span);
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout(format!(
                "{target}: no answer within {} ms",
                timeout.as_millis()
            ))),
        };
        if had_permit && let Some(gate) = self.gate.clone() {
            let left = self.deadline().saturating_duration_since(Instant::now());
            if let Ok(Ok(permit)) = tokio::time::timeout(left, gate.acquire_owned()).await {
                self.permit = Some(permit);
            }
        }
        let ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(r) => {
                tracing::debug!(plugin = %env.name, correlation_id = %self.correlation_id(), status = r.status, ms, "outbound {target}")
            }
            Err(e) => {
                tracing::warn!(plugin = %env.name, correlation_id = %self.correlation_id(), ms, "outbound {target} failed: {e:?}")
            }
        }
        result
    }
}

/// A reqwest error's text without the URL it carries (the query may hold a token).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut first = true;
    while let Some(err) = source {
        let part = if first {
            // reqwest's own Display appends " for url (...)"; drop it.
            let s = err.to_string();
            s.split(" for url (").next().unwrap_or("").to_string()
        } else {
            err.to_string()
        };
        if !part.is_empty() {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        first = false;
        source = err.source();
    }
    text
}
