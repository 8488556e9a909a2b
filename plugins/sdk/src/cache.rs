//! Short-lived values kept between calls (WIT 0.2.2 `cache`): in the host's
//! memory only, this plugin's alone, gone on restart or reload, and possibly
//! evicted early. Good for what can be made again (an access token); never
//! for what must not be lost.

use crate::bindings::portico::adapter::cache as imports;
use std::time::Duration;

/// The value kept under `key`, unless it expired or was evicted.
pub fn get(key: &str) -> Option<String> {
    imports::get(key)
}

/// Keep `value` under `key` for `ttl` (the host keeps it at most a day).
pub fn put(key: &str, value: &str, ttl: Duration) {
    let ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
    imports::put(key, value, ms);
}

/// Forget `key`.
pub fn remove(key: &str) {
    imports::remove(key);
}
