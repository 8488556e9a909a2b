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
pub mod engine;
pub mod host_api;
pub mod outbound;
pub mod plugin;
pub mod registry;
pub mod session;
pub mod watch;

/// Bindings for the `adapter` world of `wit/adapter.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "adapter",
        path: "../wit",
        imports: {
            "portico:adapter/outbound.send": async,
            "portico:adapter/directory.source-key": async,
        },
        exports: { default: async },
    });
}

pub use plugin::{LoadedPlugin, PluginManifest, RouteDecl, RouteKind};
pub use registry::{PluginSet, Resolved, Runtime, SlotState};
pub use session::{CallError, Session};
