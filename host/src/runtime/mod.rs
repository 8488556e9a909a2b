//! The Wasm side of the host: one engine, plugins compiled once into
//! pre-linked instances, a fresh instance per webhook, and the plugin set
//! held as one snapshot that a reload swaps whole.
//!
//! Sandbox invariants (each enforced here, not by adapters' good manners):
//! - no filesystem, environment, sockets or args: the WASI context denies all;
//! - every call has a wall-clock deadline (epoch interruption) and every
//!   instance a memory ceiling (store limiter); either fault traps that call only;
//! - an instance never outlives one webhook, so no state leaks between deliveries.

pub mod cache;
pub mod compat;
pub mod engine;
pub mod host_api;
pub mod outbound;
pub mod plugin;
pub mod registry;
pub mod session;
pub mod value_cache;
pub mod watch;

/// The version of `wit/adapter.wit` this host speaks.
pub const WIT_VERSION: &str = "0.3.0";

/// What an adapter built for 0.2.0 cannot do (it loads and runs as it did), said by `plugin check`.
pub const WHAT_0_2_1_ADDED: &str = "Since 0.2.1 adapters can read per-source credentials and settings (directory.source-secret, directory.source-setting): an adapter built against 0.2.0 loads and runs as before, with plugins.toml's secrets only; rebuild it against this host's wit/ to use them.";

/// What an adapter built for 0.2 cannot do (it loads and runs as it did), said by `plugin check`.
pub const WHAT_0_3_CHANGED: &str = "Since 0.3.0 adapters name people by a contact-ref (a phone, a provider's user id such as WhatsApp's business-scoped user id, or both, with a username and a parent id), send `to` a contact-ref, can name a status's recipient, and have the change-message (edits and revokes) and update-contact domain operations: an adapter built against 0.2 loads and runs as before (its contacts by phone only); rebuild it against this host's wit/ to use them.";

/// What an adapter built for 0.2.0 or 0.2.1 cannot do, said by `plugin check`.
pub const WHAT_0_2_2_ADDED: &str = "Since 0.2.2 adapters can keep short-lived values between calls (the cache interface, e.g. an OAuth access token until it expires) and list the sources of a kind (directory.sources): an adapter built against an earlier 0.2 loads and runs as before; rebuild it against this host's wit/ to use them.";

/// What an adapter built for 0.1 lacks, said by `plugin check` and at load.
pub const WHAT_0_2_CHANGED: &str = " Since 0.1: adapters export `respond` (the answer of an intake route), `record-outbound` became `send-message` (queued in the outbox and sent by `deliver`, never from map-to-domain), `row-outcome` has `delivered(option<string>)` and `unknown`, `outbox-decl` has `immediate` and `idempotent`, `status-update.status` is the `delivery-status` enum, and a conversion's action is optional.";

/// Bindings for the `adapter` world of `wit/adapter.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "adapter",
        path: "../wit",
        imports: {
            // Trappable: a call that cannot get its plugin's place back after
            // waiting on the network ends there, rather than run without it.
            "portico:adapter/outbound.send": async | trappable,
            "portico:adapter/directory.source-key": async,
            // Trappable: a secret that exists but cannot be read now (no key,
            // another key, the database down) fails the call, to be retried,
            // rather than look absent and let the adapter fall back to the
            // host-wide credential.
            "portico:adapter/directory.source-secret": async | trappable,
            "portico:adapter/directory.source-setting": async | trappable,
            "portico:adapter/directory.sources": async | trappable,
        },
        exports: { default: async },
    });
}

/// Bindings for adapters built against WIT 0.2.x (`wit/v0_2` beside this
/// crate: the 0.2.2 contract, kept as it was). [`compat`] converts at the edge.
pub mod bindings_v0_2 {
    wasmtime::component::bindgen!({
        world: "adapter",
        path: "wit/v0_2",
        imports: {
            "portico:adapter/outbound.send": async | trappable,
            "portico:adapter/directory.source-key": async,
            "portico:adapter/directory.source-secret": async | trappable,
            "portico:adapter/directory.source-setting": async | trappable,
            "portico:adapter/directory.sources": async | trappable,
        },
        exports: { default: async },
    });
}

pub use plugin::{LoadedPlugin, OutboxDecl, PluginManifest, RouteDecl, RouteKind};
pub use registry::{PluginSet, Resolved, Runtime, SlotState};
pub use session::{CallError, Session};
