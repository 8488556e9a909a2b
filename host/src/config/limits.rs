//! Every tunable limit in one table: its plugins.toml key, default and range.
//!
//! A plugin may override any of them under `[plugins.NAME.limits]`; a value
//! outside its range is a configuration error naming the plugin and the key.

use serde::Deserialize;
use std::time::Duration;

/// Largest request body a plugin accepts by default. WhatsApp deliveries reach
/// 3 MB, and Meta bodies full of `\uXXXX` escapes run to hundreds of KB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Wall-clock budget of one call into an adapter (verify, parse, one map, handle).
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 5_000;
/// Linear memory one adapter instance may grow to.
pub const DEFAULT_MEMORY_MB: u64 = 64;

/// Wait for an adapter's outbound HTTP request when it names none (always capped by the call's deadline).
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest outbound answer handed back to an adapter.
pub const MAX_OUTBOUND_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Largest output of one map-to-domain call (all strings of its operations).
pub const MAX_ITEM_OUTPUT_BYTES: usize = 1024 * 1024;
/// Largest output of one parse call (all item payloads), and most items.
pub const MAX_PARSE_OUTPUT_BYTES: usize = 32 * 1024 * 1024;
pub const MAX_ITEMS_PER_DELIVERY: usize = 10_000;

/// Ranges accepted in plugins.toml.
pub const MAX_BODY_BYTES_RANGE: (u64, u64) = (1024, 64 * 1024 * 1024);
pub const CALL_TIMEOUT_MS_RANGE: (u64, u64) = (10, 120_000);
/// The upper bound is also the pooling allocator's per-memory reservation.
pub const MEMORY_MB_RANGE: (u64, u64) = (1, 1024);
pub const MAX_CONCURRENCY_RANGE: (u64, u64) = (1, 1024);
/// A plugin may hold at most the whole pool; by default half of it.
pub const MAX_INSTANCES_RANGE: (u64, u64) = (1, MAX_CONCURRENT_INSTANCES as u64);
pub const DEFAULT_MAX_INSTANCES: u32 = MAX_CONCURRENT_INSTANCES / 2;

/// How often the engine's epoch advances; call deadlines are checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Instances alive at once across all plugins (pooling allocator slots).
pub const MAX_CONCURRENT_INSTANCES: u32 = 256;
/// What an adapter may write to stderr (kept to explain its traps) before writes fail.
pub const GUEST_STDERR_BYTES: usize = 64 * 1024;

/// Process-wide tunables read from env at start: (env, default, range, meaning).
///
/// | env | default | range | meaning |
/// |---|---|---|---|
/// | PORTICO_RETRY_POLL_MS | 1000 | 10..=60000 | how often the retry worker looks for due events |
/// | PORTICO_RETRY_BATCH | 32 | 1..=1000 | events claimed per poll |
/// | PORTICO_LEASE_SECS | 300 | 5..=86400 | how long a claim holds before another worker may take the event |
/// | PORTICO_RETENTION_DAYS | 14 | 8..=3650 | processed events kept (their dedup keys too: longer than Meta's 7-day retries) |
/// | PORTICO_INGEST_SLOTS | 64 | 1..=128 | deliveries processed at once after their answer (each holds an instance of the pool of MAX_CONCURRENT_INSTANCES, and its resident pages); more wait for the retry worker |
/// | PORTICO_OUTBOX_POLL_MS | 2000 | 10..=600000 | how often the outbox worker looks for records to deliver (PORTICO_UPLOAD_POLL_MS, its old name, still works) |
/// | PORTICO_HEADER_TIMEOUT_MS | 10000 | 100..=600000 | a connection that has not sent a whole request head in this time (idle keep-alive included) is closed |
/// | PORTICO_REQUEST_TIMEOUT_MS | 30000 | 100..=3600000 | a request whose body has not arrived whole in this time gets 408 `request_timeout` (serving it is bounded by the adapters' call deadlines, never cut short) |
/// | PORTICO_MAX_CONNECTIONS | 1024 | 1..=100000 | connections open at once; one more is answered 503 `overloaded` and closed |
/// | PORTICO_MAX_IN_FLIGHT | 512 | 1..=100000 | requests being served at once (health and metrics aside); one more gets 503 `overloaded` |
/// | PORTICO_ADMIN_MAX_BODY_BYTES | 1048576 | 1024..=67108864 | largest body of an admin route, refused before it is read |
#[derive(Debug, Clone, Copy)]
pub struct Tunables {
    pub retry_poll: Duration,
    pub retry_batch: i64,
    pub lease: Duration,
    pub retention_days: u32,
    pub prune_every: Duration,
    pub outbox_poll: Duration,
    pub ingest_slots: usize,
    pub server: ServerLimits,
}

/// What the HTTP server bounds, whatever the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub admin_body_bytes: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_in_flight: 512,
            admin_body_bytes: 1024 * 1024,
        }
    }
}

/// A tunable env variable that is not a number in its range.
#[derive(Debug, thiserror::Error)]
#[error("{name} = {value:?} must be a whole number from {min} to {max}")]
pub struct TunableError {
    pub name: &'static str,
    pub value: String,
    pub min: u64,
    pub max: u64,
}

impl Tunables {
    /// Read the tunables through `env` (the process env in production).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Tunables, TunableError> {
        let read =
            |name: &'static str, default: u64, min: u64, max: u64| -> Result<u64, TunableError> {
                match env(name).filter(|v| !v.trim().is_empty()) {
                    None => Ok(default),
                    Some(v) => v
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or(TunableError {
                            name,
                            value: v,
                            min,
                            max,
                        }),
                }
            };
        Ok(Tunables {
            retry_poll: Duration::from_millis(read("PORTICO_RETRY_POLL_MS", 1000, 10, 60_000)?),
            retry_batch: read("PORTICO_RETRY_BATCH", 32, 1, 1000)? as i64,
            lease: Duration::from_secs(read("PORTICO_LEASE_SECS", 300, 5, 86_400)?),
            retention_days: read("PORTICO_RETENTION_DAYS", 14, 8, 3650)? as u32,
            prune_every: Duration::from_secs(3600),
            ingest_slots: read("PORTICO_INGEST_SLOTS", 64, 1, 128)? as usize,
            outbox_poll: Duration::from_millis(if env("PORTICO_OUTBOX_POLL_MS").is_some() {
                read("PORTICO_OUTBOX_POLL_MS", 2000, 10, 600_000)?
            } else {
                read("PORTICO_UPLOAD_POLL_MS", 2000, 10, 600_000)?
            }),
            server: ServerLimits {
                header_timeout: Duration::from_millis(read(
                    "PORTICO_HEADER_TIMEOUT_MS",
                    10_000,
                    100,
                    600_000,
                )?),
                request_timeout: Duration::from_millis(read(
                    "PORTICO_REQUEST_TIMEOUT_MS",
                    30_000,
                    100,
                    3_600_000,
                )?),
                max_connections: read("PORTICO_MAX_CONNECTIONS", 1024, 1, 100_000)? as usize,
                max_in_flight: read("PORTICO_MAX_IN_FLIGHT", 512, 1, 100_000)? as usize,
                admin_body_bytes: read("PORTICO_ADMIN_MAX_BODY_BYTES", 1 << 20, 1024, 64 << 20)?,
            },
        })
    }
}

/// Limits as written in plugins.toml; every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub max_body_bytes: Option<u64>,
    pub call_timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_concurrency: Option<u64>,
    pub max_instances: Option<u64>,
}

/// Limits in force for one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub call_timeout: Duration,
    pub memory_bytes: u64,
    /// Calls into this plugin running at once (a bulkhead: one plugin's loops
    /// cannot take every core). Waiting on outbound HTTP does not count.
    pub max_concurrency: u32,
    /// Instances of this plugin alive at once (each webhook, retry or outbox
    /// batch holds one from its first call to its last), taken before the
    /// instance: a flood on one plugin leaves the shared pool to the others.
    pub max_instances: u32,
}

/// One core fewer than the machine has (at least one): whatever a plugin does,
/// a core stays free for the others and the host.
pub fn default_concurrency() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    cores.saturating_sub(1).max(1)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            call_timeout: Duration::from_millis(DEFAULT_CALL_TIMEOUT_MS),
            memory_bytes: DEFAULT_MEMORY_MB * 1024 * 1024,
            max_concurrency: default_concurrency(),
            max_instances: DEFAULT_MAX_INSTANCES,
        }
    }
}

/// A limit outside its range: `(key, value, min, max)`.
pub type LimitError = (&'static str, u64, u64, u64);

impl LimitsSpec {
    /// Resolve over `base` (the file's `[defaults.limits]` or the built-in defaults).
    pub fn resolve(&self, base: Limits) -> Result<Limits, LimitError> {
        let check = |key: &'static str, v: u64, (lo, hi): (u64, u64)| {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err((key, v, lo, hi))
            }
        };
        let mut out = base;
        if let Some(v) = self.max_body_bytes {
            out.max_body_bytes = check("max_body_bytes", v, MAX_BODY_BYTES_RANGE)?;
        }
        if let Some(v) = self.call_timeout_ms {
            out.call_timeout =
                Duration::from_millis(check("call_timeout_ms", v, CALL_TIMEOUT_MS_RANGE)?);
        }
        if let Some(v) = self.memory_mb {
            out.memory_bytes = check("memory_mb", v, MEMORY_MB_RANGE)? * 1024 * 1024;
        }
        if let Some(v) = self.max_concurrency {
            out.max_concurrency = check("max_concurrency", v, MAX_CONCURRENCY_RANGE)? as u32;
        }
        if let Some(v) = self.max_instances {
            out.max_instances = check("max_instances", v, MAX_INSTANCES_RANGE)? as u32;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunables_default_and_refuse_bad_values() {
        let t = Tunables::from_env(&|_| None).unwrap();
        assert_eq!(t.retention_days, 14);
        assert_eq!(t.retry_poll, Duration::from_secs(1));
        let e = Tunables::from_env(&|k| (k == "PORTICO_RETENTION_DAYS").then(|| "3".to_string()))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("PORTICO_RETENTION_DAYS = \"3\" must be a whole number from 8"),
            "{e}"
        );
    }

    #[test]
    fn overrides_apply_and_ranges_hold() {
        let spec = LimitsSpec {
            max_body_bytes: Some(2048),
            call_timeout_ms: None,
            memory_mb: Some(16),
            max_concurrency: None,
            max_instances: None,
        };
        let l = spec.resolve(Limits::default()).unwrap();
        assert_eq!(l.max_body_bytes, 2048);
        assert_eq!(l.memory_bytes, 16 << 20);
        assert_eq!(
            l.call_timeout,
            Duration::from_millis(DEFAULT_CALL_TIMEOUT_MS)
        );

        let bad = LimitsSpec {
            memory_mb: Some(0),
            ..Default::default()
        };
        assert_eq!(
            bad.resolve(Limits::default()),
            Err(("memory_mb", 0, 1, 1024))
        );
    }
}
