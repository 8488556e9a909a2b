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
