//! Read-only lookups in the host's directory (no database access otherwise).

use crate::bindings::portico::adapter::directory as imports;

/// The key tenant `tenant_id` mapped for `kind` in lead_sources (e.g. its WhatsApp
/// phone number id), or `None` when it has none.
///
/// ```no_run
/// let phone_number_id = portico_sdk::directory::source_key(7, "whatsapp");
/// ```
pub fn source_key(tenant_id: i64, kind: &str) -> Option<String> {
    imports::source_key(tenant_id, kind)
}

/// A credential kept with the source `kind` + `key` (`portico source add
/// --secret NAME=...`), decrypted by the host; `None` when the source has none.
/// A plugin reads only the sources of its own kinds (plugins.toml `source_kinds`).
///
/// ```no_run
/// let token = portico_sdk::directory::source_secret("meta", "138124712925158", "page_access_token");
/// ```
pub fn source_secret(kind: &str, key: &str, name: &str) -> Option<String> {
    imports::source_secret(kind, key, name)
}

/// A setting kept with the source `kind` + `key` (`--setting NAME=VALUE`).
pub fn source_setting(kind: &str, key: &str, name: &str) -> Option<String> {
    imports::source_setting(kind, key, name)
}

/// The source's own secret `name`, else the plugin's (plugins.toml, from env):
/// each tenant's credentials where it has them, the host-wide ones otherwise.
///
/// ```no_run
/// let token = portico_sdk::directory::secret_for("whatsapp", "106540352242922", "access_token");
/// ```
pub fn secret_for(kind: &str, key: &str, name: &str) -> Option<String> {
    source_secret(kind, key, name).or_else(|| crate::host::secret(name))
}

/// The source's own setting `name`, else the plugin's config of that name.
pub fn setting_for(kind: &str, key: &str, name: &str) -> Option<String> {
    source_setting(kind, key, name).or_else(|| crate::host::config(name))
}

pub use imports::SourceRef;

/// The sources of `kind` (one of the plugin's source kinds), oldest first, at
/// most `limit` (capped at 100 by the host). WIT 0.2.2.
///
/// ```no_run
/// // The only tenant with a Google account, if there is exactly one.
/// let sole = match portico_sdk::directory::sources("google", 2).as_slice() {
///     [only] => Some(only.tenant_id),
///     _ => None,
/// };
/// ```
pub fn sources(kind: &str, limit: u32) -> Vec<SourceRef> {
    imports::sources(kind, limit)
}
