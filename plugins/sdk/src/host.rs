//! Calls into the host: logging and this plugin's config and secrets.
//!
//! These only work inside a component run by Portico. Natively (unit tests)
//! they are stubs that abort, so keep them out of the logic you test natively.

use crate::bindings::portico::adapter::host as imports;
pub use imports::Level;

/// Log a line; the host adds the plugin name and the webhook's correlation id.
///
/// ```no_run
/// use portico_sdk::host::{log, Level};
/// log(Level::Debug, "parsed 3 changes");
/// ```
pub fn log(level: Level, message: &str) {
    imports::log(level, message);
}

/// Log at info level.
///
/// ```no_run
/// portico_sdk::host::info("lead 42 mapped");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Log at warn level.
///
/// ```no_run
/// portico_sdk::host::warn("field `phone` is not a phone number; kept as text");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Log at debug level.
///
/// ```no_run
/// portico_sdk::host::debug("raw change kept as fields_json");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Log at error level.
///
/// ```no_run
/// portico_sdk::host::error("provider answered 500 twice");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// A value of the plugin's `[config]` table in plugins.toml, trimmed; `None` when unset or empty.
///
/// ```no_run
/// let base = portico_sdk::host::config("graph_base_url").unwrap_or_else(|| "https://graph.facebook.com".into());
/// ```
pub fn config(key: &str) -> Option<String> {
    non_empty(imports::config(key))
}

/// A boolean config value: `true/false/1/0/yes/no/on/off`; `default` when unset.
/// An unreadable value falls back to `default` and is logged.
///
/// ```no_run
/// if !portico_sdk::host::config_bool("verify_signature", true) { /* skip the check */ }
/// ```
pub fn config_bool(key: &str, default: bool) -> bool {
    match config(key) {
        None => default,
        Some(raw) => parse_bool(&raw).unwrap_or_else(|| {
            warn(&format!(
                "config {key}={raw:?} is not a boolean (use true or false); using {default}"
            ));
            default
        }),
    }
}

/// A secret of the plugin's `[secrets]` table; `None` when unset or empty. Never log it.
///
/// ```no_run
/// let token = portico_sdk::host::secret("page_access_token");
/// ```
pub fn secret(key: &str) -> Option<String> {
    non_empty(imports::secret(key))
}

/// A secret holding several comma-separated values (key rotation): each trimmed, empties dropped.
///
/// ```no_run
/// let secrets = portico_sdk::host::secret_list("app_secret"); // "old,new" -> ["old", "new"]
/// ```
pub fn secret_list(key: &str) -> Vec<String> {
    secret(key).map(|raw| split_list(&raw)).unwrap_or_default()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Split a comma-separated list, trimming each value and dropping empty ones.
///
/// ```
/// assert_eq!(portico_sdk::host::split_list(" a, ,b"), vec!["a", "b"]);
/// ```
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Read a boolean the way operators write them in env files.
///
/// ```
/// assert_eq!(portico_sdk::host::parse_bool("On"), Some(true));
/// ```
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_drop_blanks_and_trim() {
        assert_eq!(split_list(" a, ,b ,"), vec!["a", "b"]);
        assert!(split_list("").is_empty());
    }

    #[test]
    fn booleans_accept_common_spellings() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
