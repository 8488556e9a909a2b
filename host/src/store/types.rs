//! The store's vocabulary: statuses as enums with their stored names, and time
//! as a type. Backends store these names and parse them back; a name that does
//! not parse is a corrupt row, never a silent empty filter.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A stored name that is not one of its enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {what} (known: {known})")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub known: String,
}

/// An enum whose variants are stored and shown by name.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        value: s.to_string(),
                        known: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

named_enum!(
    /// Where a webhook event (a delivery or one of its items) stands.
    EventStatus, "event status" {
        /// Stored, not finished: the process that stored it holds a lease on it.
        Received = "received",
        Processed = "processed",
        /// Failed; the retry worker tries again at next_attempt_at.
        Failed = "failed",
        /// Gave up (permanent error or out of attempts); waits for a replay.
        Dead = "dead",
        /// Nothing to do (the reason is its error).
        Ignored = "ignored",
    }
);

impl EventStatus {
    /// Finished for good: a re-delivery of it is a no-op.
    pub fn is_done(self) -> bool {
        matches!(self, EventStatus::Processed | EventStatus::Ignored)
    }
}

named_enum!(
    /// A delivery as received, or one item parse split it into.
    EventKind, "event kind" {
        Delivery = "delivery",
        Item = "item",
    }
);

named_enum!(
    /// Where a message stands. Outbound ones move forward only, in this order
    /// (pending < sent < delivered < read < played < failed); inbound ones are `received`.
    MessageStatus, "message status" {
        Received = "received",
        /// Committed to the outbox, not yet accepted by the provider.
        Pending = "pending",
        Sent = "sent",
        Delivered = "delivered",
        Read = "read",
        Played = "played",
        Failed = "failed",
    }
);

impl MessageStatus {
    /// Rank of an outbound status: a status update applies only to a lower one.
    pub fn rank(self) -> u8 {
        match self {
            MessageStatus::Received => 0,
            MessageStatus::Pending => 1,
            MessageStatus::Sent => 2,
            MessageStatus::Delivered => 3,
            MessageStatus::Read => 4,
            MessageStatus::Played => 5,
            MessageStatus::Failed => 6,
        }
    }

    /// The later of two statuses.
    pub fn max_by_rank(self, other: MessageStatus) -> MessageStatus {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

named_enum!(
    /// Which way a message went.
    Direction, "message direction" {
        Inbound = "inbound",
        Outbound = "outbound",
    }
);

named_enum!(
    /// Where an offline conversion stands.
    ConversionStatus, "conversion status" {
        /// Recorded only (uploads off).
        Logged = "logged",
        Pending = "pending",
        Uploaded = "uploaded",
        Failed = "failed",
    }
);

named_enum!(
    /// Where an outbox record stands.
    OutboxStatus, "outbox status" {
        /// Waiting for a delivery attempt (at next_attempt_at, when set).
        Pending = "pending",
        /// An attempt started (committed before the provider was called).
        Delivering = "delivering",
        Delivered = "delivered",
        /// Refused by the provider, or cut off where a second send is not safe.
        Failed = "failed",
    }
);

named_enum!(
    /// The kind of domain record an outbox row delivers.
    RecordKind, "record kind" {
        Lead = "lead",
        Conversion = "conversion",
        Message = "message",
    }
);

/// A point in time, UTC, with millisecond precision (as stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: i64,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        let millis = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Timestamp { millis }
    }

    pub fn from_unix_millis(millis: i64) -> Timestamp {
        Timestamp { millis }
    }

    pub fn unix_millis(self) -> i64 {
        self.millis
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        let add = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp {
            millis: self.millis.saturating_add(add),
        }
    }

    pub fn minus(self, d: Duration) -> Timestamp {
        let sub = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp {
            millis: self.millis.saturating_sub(sub),
        }
    }

    /// Seconds from `self` to `later` (negative when `later` is earlier).
    pub fn seconds_until(self, later: Timestamp) -> f64 {
        (later.millis - self.millis) as f64 / 1000.0
    }

    fn to_system(self) -> SystemTime {
        if self.millis >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.millis.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.millis.unsigned_abs())
        }
    }

    /// The latest time RFC 3339 text holds (9999-12-31T23:59:59.999Z).
    const LAST_MILLIS: i64 = 253_402_300_799_999;

    /// RFC 3339, UTC, milliseconds: `2026-11-29T18:08:39.123Z`. Text order is time order.
    /// Times outside 1970..=9999 are written as the nearest end (they come only
    /// from a provider's nonsense, and must never stop a write).
    pub fn to_rfc3339(self) -> String {
        let clamped = Timestamp {
            millis: self.millis.clamp(0, Self::LAST_MILLIS),
        };
        humantime::format_rfc3339_millis(clamped.to_system()).to_string()
    }

    /// Unix seconds from a provider, if they are a time RFC 3339 can hold.
    pub fn from_provider_seconds(secs: i64) -> Option<Timestamp> {
        (0..=Self::LAST_MILLIS / 1000)
            .contains(&secs)
            .then(|| Timestamp::from_unix_millis(secs * 1000))
    }

    /// Parse RFC 3339 (`Z` or no offset; fractions optional), or a bare date (midnight UTC).
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let t = text.trim();
        let full = if t.len() == 10 {
            format!("{t}T00:00:00Z")
        } else {
            t.to_string()
        };
        humantime::parse_rfc3339_weak(&full)
            .map(Timestamp::from_system)
            .map_err(|e| {
                format!("{text:?} is not an RFC 3339 UTC time like 2026-05-01T12:00:00Z: {e}")
            })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_range_are_written_not_panicked_on() {
        assert_eq!(
            Timestamp::from_unix_millis(-5).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX).to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
        assert!(Timestamp::from_provider_seconds(1_749_416_383_000).is_none());
        assert!(Timestamp::from_provider_seconds(-1).is_none());
        assert!(Timestamp::from_provider_seconds(1_749_416_383).is_some());
    }

    #[test]
    fn names_round_trip_and_unknown_names_say_what_is_known() {
        for s in EventStatus::ALL {
            assert_eq!(s.as_str().parse::<EventStatus>(), Ok(*s));
        }
        let e = "procesed".parse::<EventStatus>().unwrap_err();
        assert!(e.to_string().contains("processed, failed"), "{e}");
        assert_eq!(
            serde_json::to_string(&MessageStatus::Delivered).unwrap(),
            "\"delivered\""
        );
    }

    #[test]
    fn statuses_rank_forward() {
        assert!(MessageStatus::Pending.rank() < MessageStatus::Sent.rank());
        assert!(MessageStatus::Read.rank() < MessageStatus::Failed.rank());
    }

    #[test]
    fn timestamps_print_like_sqlite_and_parse_back() {
        let t = Timestamp::from_unix_millis(1_764_439_719_123);
        assert_eq!(t.to_rfc3339(), "2025-11-29T18:08:39.123Z");
        assert_eq!(Timestamp::parse("2025-11-29T18:08:39.123Z"), Ok(t));
        assert_eq!(
            Timestamp::parse("2025-11-29").unwrap().to_rfc3339(),
            "2025-11-29T00:00:00.000Z"
        );
        assert!(Timestamp::parse("yesterday").is_err());
        assert_eq!(t.plus(Duration::from_secs(2)).seconds_until(t), -2.0);
    }
}
