//! What operators watch: Prometheus metrics ([`metrics`]) and logs as text or
//! one JSON object per line ([`logs`]).

pub mod logs;
pub mod metrics;
