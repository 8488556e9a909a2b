//! The retry schedule of failed events, in one table.
//!
//! Attempt n+1 of a failed event waits `RETRY_SCHEDULE_SECS[n-1]` (±20% jitter)
//! after attempt n; after the last entry the event is `dead` and waits for a
//! replay. `PORTICO_RETRY_SCHEDULE_SECS` (comma-separated seconds) replaces the
//! table for the process, for operators who need another rhythm (and for tests).

use std::sync::OnceLock;

/// 30 s, 2 min, 10 min, 1 h, 6 h, 24 h: seven attempts over about 31 hours.
pub const RETRY_SCHEDULE_SECS: [u64; 6] = [30, 120, 600, 3_600, 21_600, 86_400];

static SCHEDULE: OnceLock<Vec<u64>> = OnceLock::new();

/// Read `PORTICO_RETRY_SCHEDULE_SECS`, if set; the first call wins for the process.
pub fn configure_from_env() -> Result<(), String> {
    let Ok(raw) = std::env::var("PORTICO_RETRY_SCHEDULE_SECS") else {
        return Ok(());
    };
    let parsed: Result<Vec<u64>, _> = raw.split(',').map(|s| s.trim().parse::<u64>()).collect();
    match parsed {
        Ok(list) if !list.is_empty() && list.iter().all(|&s| s > 0) => {
            let _ = SCHEDULE.set(list);
            Ok(())
        }
        _ => Err(format!(
            "PORTICO_RETRY_SCHEDULE_SECS = {raw:?} must be comma-separated positive seconds, e.g. 30,120,600"
        )),
    }
}

/// The schedule in force.
pub fn schedule() -> &'static [u64] {
    SCHEDULE
        .get()
        .map(Vec::as_slice)
        .unwrap_or(&RETRY_SCHEDULE_SECS)
}

/// The delay after `attempts` failed attempts (1-based), or `None` when out of tries.
pub fn delay_after(attempts: u32) -> Option<u64> {
    let index = attempts.checked_sub(1)? as usize;
    schedule().get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ends_in_none() {
        assert_eq!(RETRY_SCHEDULE_SECS[0], 30);
        assert_eq!(delay_after(0), None);
        let n = schedule().len() as u32;
        assert!(delay_after(n).is_some());
        assert_eq!(delay_after(n + 1), None);
    }
}
