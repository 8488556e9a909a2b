//! Configuration at the edge: process settings (flags, env, defaults) and the
//! plugin manifest `plugins.toml`, each parsed once into a validated model
//! before anything touches the database or wasmtime.

pub mod limits;
pub mod plugins;
pub mod settings;

pub use limits::Limits;
pub use plugins::{PluginSpec, PluginsFile, load_plugins_file};
pub use settings::{IntegrationToggles, Settings};
