//! The archive record and its receipt time: the types every sink consumes.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use time::OffsetDateTime;

/// When this service received a webhook, with millisecond precision, in UTC.
///
/// It decides both the envelope's `timestamp` field and the archive partition
/// (`year=YYYY/month=MM/day=DD`), so a record and the place it is stored always agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceivedAt {
    unix_millis: i64,
}

impl ReceivedAt {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// From a [`SystemTime`], truncated to whole milliseconds.
    pub fn from_system_time(t: SystemTime) -> Self {
        let unix_millis = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Self { unix_millis }
    }

    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(unix_millis: i64) -> Self {
        Self { unix_millis }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.unix_millis
    }

    /// Whole seconds since the Unix epoch (what a `Stripe-Signature` age check compares with).
    pub const fn unix_seconds(self) -> i64 {
        self.unix_millis.div_euclid(1000)
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        if self.unix_millis >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.unix_millis.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.unix_millis.unsigned_abs())
        }
    }

    fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.unix_millis) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-26T22:14:41.123Z`.
    pub fn rfc3339_millis(self) -> String {
        let d = self.datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.millisecond()
        )
    }

    /// The archive partition (UTC receipt date) this time falls in.
    pub fn partition(self) -> Partition {
        let d = self.datetime();
        Partition {
            year: d.year(),
            month: u8::from(d.month()),
            day: d.day(),
        }
    }
}

/// A UTC calendar day of the archive layout: `year=YYYY/month=MM/day=DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    /// Four-digit year.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of month, 1 to 31.
    pub day: u8,
}

impl fmt::Display for Partition {
    /// Formats the Hive-style path segment, without leading or trailing slash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "year={:04}/month={:02}/day={:02}",
            self.year, self.month, self.day
        )
    }
}

/// The archive prefix every record lives under, on S3 and on local disk.
pub const ARCHIVE_PREFIX: &str = "webhooks";

/// The facts about an event that sinks and logs need without parsing the line again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// The event id (`evt_…`).
    pub id: String,
    /// The event type (`charge.succeeded`, `v1.billing.meter.error_report_triggered`, …).
    pub event_type: String,
}

/// One archive record: a verified webhook encoded as one envelope line.
///
/// The line is guaranteed non-empty, valid UTF-8 JSON, with exactly one `\n`, at the end.
#[derive(Clone, Debug)]
pub struct Record {
    pub(crate) line: Bytes,
    pub(crate) meta: EventMeta,
    pub(crate) received_at: ReceivedAt,
}

impl Record {
    /// The envelope line, ending in `\n`: the exact bytes a sink stores.
    pub fn line(&self) -> &Bytes {
        &self.line
    }

    /// The event id.
    pub fn id(&self) -> &str {
        &self.meta.id
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.meta.event_type
    }

    /// The event's id and type.
    pub fn meta(&self) -> &EventMeta {
        &self.meta
    }

    /// When the webhook was received; decides the archive partition.
    pub fn received_at(&self) -> ReceivedAt {
        self.received_at
    }

    /// Length of the line in bytes, newline included.
    pub fn len(&self) -> usize {
        self.line.len()
    }

    /// Always false: a record is never empty. Present for API symmetry with [`Record::len`].
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_millis_and_partition() {
        // 2026-11-26T22:14:41.123Z
        let t = ReceivedAt::from_unix_millis(1_795_731_281_123);
        assert_eq!(t.rfc3339_millis(), "2026-11-26T22:14:41.123Z");
        assert_eq!(t.partition().to_string(), "year=2026/month=11/day=26");
    }

    #[test]
    fn day_boundary_is_utc() {
        let t = ReceivedAt::from_unix_millis(1_795_737_599_999); // 23:59:59.999Z
        assert_eq!(t.partition().to_string(), "year=2026/month=11/day=26");
        let t = ReceivedAt::from_unix_millis(1_795_737_600_000);
        assert_eq!(t.partition().to_string(), "year=2026/month=11/day=27");
        assert_eq!(t.rfc3339_millis(), "2026-11-27T00:00:00.000Z");
    }
}
