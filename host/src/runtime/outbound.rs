//! The `outbound` interface: HTTP from adapters, only where plugins.toml allows.
//!
//! Invariants: a request goes out only to a scheme, host and port of the
//! plugin's `allowed_hosts`; a name is connected to only at public addresses
//! (checked after resolution, so a DNS answer cannot point a plugin at the
//! loopback, a private network or a cloud metadata address) unless the plugin
//! has `allow_private_networks = true`, and an address named outright in
//! `allowed_hosts` is allowed as named; redirects are never followed (they could
//! leave the allow-list); the wait is capped by the current call's deadline and
//! the response size by [`MAX_OUTBOUND_RESPONSE_BYTES`]. Error texts carry the URL
//! without its query, where tokens travel.

use super::bindings::portico::adapter::outbound::{
    self, OutboundError, OutboundRequest, OutboundResponse,
};
use super::host_api::HostState;
use crate::config::limits::{DEFAULT_OUTBOUND_TIMEOUT, MAX_OUTBOUND_RESPONSE_BYTES};
use std::time::{Duration, Instant};

/// The process's HTTP clients (connection pools are shared by plugins): one
/// that connects to public addresses only, and one for plugins allowed private ones.
#[derive(Clone)]
pub struct Clients {
    public_only: reqwest::Client,
    any_address: reqwest::Client,
}

impl Clients {
    pub fn new() -> anyhow::Result<Clients> {
        // Several crates may race to install a provider; whichever wins is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                // A proxy would resolve names itself, past the address check.
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!("portico/", env!("CARGO_PKG_VERSION")))
        };
        Ok(Clients {
            public_only: builder().dns_resolver(PublicOnly).build()?,
            any_address: builder().build()?,
        })
    }

    /// The client a plugin's outbound calls go through.
    pub fn for_spec(&self, spec: &crate::config::plugins::PluginSpec) -> &reqwest::Client {
        if spec.allow_private_networks {
            &self.any_address
        } else {
            &self.public_only
        }
    }
}

/// A resolver that keeps public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() && !found.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses ({}); name the address in allowed_hosts, or set allow_private_networks = true for this plugin in plugins.toml, if that is meant",
                    shown.join(", ")
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is an address on the public internet: not loopback, private,
/// link-local (cloud metadata lives there), shared, unspecified, multicast or reserved.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // Forms that carry an IPv4 address: judged by that address.
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            if seg[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public(embedded(seg[6], seg[7])); // IPv4-compatible ::a.b.c.d
            }
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(embedded(seg[6], seg[7])); // NAT64 64:ff9b::/96
            }
            if seg[0] == 0x2002 {
                return is_public(embedded(seg[1], seg[2])); // 6to4 2002::/16
            }
            let first = seg[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside)
                || (first == 0x2001 && seg[1] == 0xdb8)) // documentation
        }
    }
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
    async fn send(
        &mut self,
        req: OutboundRequest,
    ) -> wasmtime::Result<Result<OutboundResponse, OutboundError>> {
        // The plugin's place is given back while the network answers; the
        // guest runs again only once it holds it again.
        let had_permit = self.permit.take().is_some();
        let result = self.exchange(req).await;
        if had_permit && let Some(gate) = self.gate.clone() {
            let left = self.deadline().saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, gate.acquire_owned()).await {
                Ok(Ok(permit)) => self.permit = Some(permit),
                _ => {
                    self.timed_out = true;
                    return Err(wasmtime::Error::msg(
                        "the plugin's places (limits.max_concurrency) stayed taken until the call's deadline",
                    ));
                }
            }
        }
        Ok(result)
    }
}

impl HostState {
    async fn exchange(&mut self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
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
            .any(|rule| rule.allows(url.scheme(), &host, port))
        {
            let allowed: Vec<String> = env.allowed_hosts.iter().map(ToString::to_string).collect();
            let message = format!(
                "{}://{host}:{port} is not allowed for plugin {} (allowed_hosts in plugins.toml: [{}])",
                url.scheme(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "fec0::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "157.240.1.35",
            "2a03:2880:f10c::1",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_name_of_the_loopback_is_refused_after_resolution() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let e = match PublicOnly.resolve(name).await {
            Ok(_) => panic!("localhost resolved to something public"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("allow_private_networks"), "{e}");
    }
}
