//! The `cache` interface: short-lived values one plugin keeps between its
//! calls (an OAuth access token until it expires). Memory only, per loaded
//! plugin (a reload starts empty), bounded in entries and sizes so a plugin
//! cannot grow the host's memory through it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most entries one plugin keeps; the one closest to expiry goes first.
pub const MAX_ENTRIES: usize = 16_384;
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most bytes (keys and values) one plugin keeps: the host's memory is not
/// the plugin's to grow.
pub const MAX_TOTAL_BYTES: usize = 4 * 1024 * 1024;
/// Longest a value is kept, whatever the plugin asks.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Default)]
pub struct ValueCache {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for ValueCache {
    // Values are secrets more often than not: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        write!(f, "ValueCache({n} entries)")
    }
}

impl ValueCache {
    pub fn get(&self, key: &str) -> Option<String> {
        let mut entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keep `value` for `ttl`; refused silently (the plugin simply finds
    /// nothing later) when the key or value is over its size.
    pub fn put(&self, key: String, value: String, ttl: Duration) {
        if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES || ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        entries.remove(&key);
        let size = |k: &String, v: &String| k.len() + v.len();
        let mut total: usize = entries.iter().map(|(k, (v, _))| size(k, v)).sum();
        let needed = size(&key, &value);
        if entries.len() >= MAX_ENTRIES || total + needed > MAX_TOTAL_BYTES {
            entries.retain(|_, (_, until)| *until > now);
            total = entries.iter().map(|(k, (v, _))| size(k, v)).sum();
        }
        // Still full: the entries closest to expiry go first.
        while entries.len() >= MAX_ENTRIES || total + needed > MAX_TOTAL_BYTES {
            let Some(first) = entries
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((v, _)) = entries.remove(&first) {
                total -= size(&first, &v);
            }
        }
        entries.insert(key, (value, now + ttl.min(MAX_TTL)));
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_and_the_cache_stays_bounded() {
        let cache = ValueCache::default();
        cache.put("a".into(), "1".into(), Duration::from_secs(60));
        assert_eq!(cache.get("a").as_deref(), Some("1"));
        cache.put("gone".into(), "x".into(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get("gone"), None);
        cache.remove("a");
        assert_eq!(cache.get("a"), None);

        cache.put(
            "k".repeat(MAX_KEY_BYTES + 1),
            "v".into(),
            Duration::from_secs(60),
        );
        cache.put(
            "big".into(),
            "v".repeat(MAX_VALUE_BYTES + 1),
            Duration::from_secs(60),
        );
        assert_eq!(cache.get("big"), None);

        for i in 0..MAX_ENTRIES + 10 {
            cache.put(
                format!("k{i}"),
                "v".into(),
                Duration::from_secs(60 + i as u64),
            );
        }
        let n = cache.entries.lock().unwrap().len();
        assert_eq!(n, MAX_ENTRIES);
        // The newest stays; the ones nearest expiry went.
        assert!(cache.get(&format!("k{}", MAX_ENTRIES + 9)).is_some());
        assert!(cache.get("k0").is_none());
        assert!(!format!("{cache:?}").contains('v'));

        // The byte budget holds too: 100 values of 60 KiB do not all fit in 4 MiB.
        let big = ValueCache::default();
        for i in 0..100 {
            big.put(
                format!("b{i}"),
                "x".repeat(60 * 1024),
                Duration::from_secs(60 + i),
            );
        }
        let bytes: usize = big
            .entries
            .lock()
            .unwrap()
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum();
        assert!(bytes <= MAX_TOTAL_BYTES, "{bytes}");
        assert!(big.get("b99").is_some());
    }
}
