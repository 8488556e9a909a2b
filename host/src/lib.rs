//! Portico: an integration host for a multi-tenant CRM.
//!
//! Providers' webhooks arrive over [`http`], are verified, parsed and mapped by
//! sandboxed Wasm adapters ([`runtime`]), stored durably ([`store`]) and
//! processed item by item ([`jobs`]). [`config`] turns flags, env and
//! plugins.toml into validated models at the edge; [`cli`] is the binary.

pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod telemetry;
