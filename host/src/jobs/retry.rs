//! The retry schedule of failed events, in one table.

/// Delay before attempt n+1 after n failed attempts (1-based): 30 s, 2 min,
/// 10 min, 1 h, 6 h, 24 h; then the event is dead.
pub const RETRY_SCHEDULE_SECS: [u64; 6] = [30, 120, 600, 3_600, 21_600, 86_400];

/// The delay after `attempts` failed attempts, or `None` when the event is out of tries.
pub fn delay_after(attempts: u32) -> Option<u64> {
    let index = attempts.checked_sub(1)? as usize;
    RETRY_SCHEDULE_SECS.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ends_in_none() {
        assert_eq!(delay_after(1), Some(30));
        assert_eq!(delay_after(6), Some(86_400));
        assert_eq!(delay_after(7), None);
        assert_eq!(delay_after(0), None);
    }
}
