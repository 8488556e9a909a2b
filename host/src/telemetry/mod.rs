//! What operators watch: Prometheus metrics ([`metrics`]), logs as text or
//! one JSON object per line ([`logs`]), OpenTelemetry traces ([`traces`]).

pub mod logs;
pub mod metrics;
pub mod traces;
