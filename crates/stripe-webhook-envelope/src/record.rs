//! The archive record and its receipt time: the types every sink consumes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::escape;
use crate::layout::Partition;

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
        let mut out = Vec::with_capacity(24);
        self.write_rfc3339_millis(&mut out);
        String::from_utf8(out).expect("digits and ASCII punctuation")
    }

    /// Parses exactly what [`ReceivedAt::rfc3339_millis`] writes for the years 0000 to 9999
    /// (`YYYY-MM-DDTHH:MM:SS.mmmZ`, a valid UTC date and time, no leap second), so parsing and
    /// formatting round-trip byte for byte. Anything else is `None`.
    ///
    /// ```
    /// use stripe_webhook_envelope::ReceivedAt;
    ///
    /// let t = ReceivedAt::parse_rfc3339_millis("2026-11-26T22:14:41.123Z").unwrap();
    /// assert_eq!(t.unix_millis(), 1_795_731_281_123);
    /// assert_eq!(ReceivedAt::parse_rfc3339_millis("2026-11-26T22:14:41Z"), None);
    /// assert_eq!(ReceivedAt::parse_rfc3339_millis("2026-02-30T00:00:00.000Z"), None);
    /// ```
    pub fn parse_rfc3339_millis(text: &str) -> Option<ReceivedAt> {
        let b = text.as_bytes();
        // `YYYY-MM-DDTHH:MM:SS.mmmZ`: the punctuation at its places, digits everywhere else.
        const FORM: &[u8; 24] = b"0000-00-00T00:00:00.000Z";
        if b.len() != FORM.len()
            || !b.iter().zip(FORM).all(|(&c, &f)| {
                if f == b'0' {
                    c.is_ascii_digit()
                } else {
                    c == f
                }
            })
        {
            return None;
        }
        let number = |from: usize, to: usize| -> u32 {
            b[from..to]
                .iter()
                .fold(0, |n, &d| n * 10 + u32::from(d - b'0'))
        };
        let two = |from: usize| u8::try_from(number(from, from + 2)).ok();
        let year = i32::try_from(number(0, 4)).ok()?;
        let month = time::Month::try_from(two(5)?).ok()?;
        let date = time::Date::from_calendar_date(year, month, two(8)?).ok()?;
        let millis = u16::try_from(number(20, 23)).ok()?;
        let time = time::Time::from_hms_milli(two(11)?, two(14)?, two(17)?, millis).ok()?;
        let nanos = time::PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp_nanos();
        i64::try_from(nanos / 1_000_000)
            .ok()
            .map(ReceivedAt::from_unix_millis)
    }

    /// Appends [`ReceivedAt::rfc3339_millis`] to `out`.
    pub(crate) fn write_rfc3339_millis(self, out: &mut Vec<u8>) {
        let d = self.datetime();
        let year = d.year();
        if !(0..=9999).contains(&year) {
            use std::io::Write as _;
            write!(
                out,
                "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second(),
                d.millisecond()
            )
            .expect("writing to a Vec cannot fail");
            return;
        }
        let digit = |n: u32, scale: u32| b'0' + (n / scale % 10) as u8;
        let two = |n: u8| [b'0' + n / 10, b'0' + n % 10];
        let year = year.unsigned_abs();
        let [mo0, mo1] = two(u8::from(d.month()));
        let [d0, d1] = two(d.day());
        let [h0, h1] = two(d.hour());
        let [mi0, mi1] = two(d.minute());
        let [s0, s1] = two(d.second());
        let ms = u32::from(d.millisecond());
        out.extend_from_slice(&[
            digit(year, 1000),
            digit(year, 100),
            digit(year, 10),
            digit(year, 1),
            b'-',
            mo0,
            mo1,
            b'-',
            d0,
            d1,
            b'T',
            h0,
            h1,
            b':',
            mi0,
            mi1,
            b':',
            s0,
            s1,
            b'.',
            digit(ms, 100),
            digit(ms, 10),
            digit(ms, 1),
            b'Z',
        ]);
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

/// The facts about an event that sinks and logs need without parsing the line again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// The event id (`evt_…`).
    pub id: String,
    /// The event type (`charge.succeeded`, `v1.billing.meter.error_report_triggered`, …).
    pub event_type: String,
}

/// One archive record: a verified webhook encoded as one envelope line (v1), or an event
/// fetched from Stripe's API (a fetched record, v2: [`Record::is_fetched`]).
///
/// The line is guaranteed non-empty, valid UTF-8 JSON, with exactly one `\n`, at the end.
#[derive(Clone, Debug)]
pub struct Record {
    pub(crate) line: Bytes,
    pub(crate) meta: EventMeta,
    pub(crate) received_at: ReceivedAt,
    /// The verified body the line was encoded from.
    pub(crate) body: Bytes,
    /// The `Stripe-Signature` header that verified `body` (empty for a fetched record).
    pub(crate) signature_header: Arc<str>,
    /// Where `"data":` starts in `line`: everything before it is the envelope header.
    pub(crate) data_offset: usize,
    /// Whether `raw` and `signature` are in the line.
    pub(crate) include_raw: bool,
    /// Whether it is a fetched record (envelope v2, see [`encode_fetched`](crate::encode_fetched)).
    pub(crate) fetched: bool,
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

    /// When the webhook was received (for a fetched record: when it was fetched); decides the
    /// archive partition.
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

    /// The exact verified body bytes the record was encoded from (a cheap clone of the
    /// [`Bytes`] given to [`encode`](crate::encode)).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The `Stripe-Signature` header that verified [`Record::body`]; empty for a fetched record
    /// (nothing Stripe signed was received).
    pub fn signature_header(&self) -> &str {
        &self.signature_header
    }

    /// Whether it is a fetched record: an event fetched from Stripe's API (envelope v2, written
    /// by [`encode_fetched`](crate::encode_fetched)), not a webhook received and verified.
    pub fn is_fetched(&self) -> bool {
        self.fetched
    }

    /// The small pointer record for an event whose record is too large for Firehose
    /// (more than 1,024,000 bytes), once its body is stored at `s3://{bucket}/{key}`.
    ///
    /// Same envelope fields up to `account`, then `"data":null`, `"raw":null` and the
    /// `signature` (when the record carried them), and
    /// `"oversize":{"bucket":…,"key":…,"bytes":<body length>,"sha256":"<hex of the body>"}`.
    /// The pointer keeps [`Record::body`] and [`Record::signature_header`], so calling this
    /// again on a pointer gives the same pointer.
    ///
    /// A fetched record (envelope v2) has no pointer form: the tools write fetched records only
    /// through the file sink, which has no size limit. For one, this returns the record itself.
    pub fn oversize_pointer(&self, bucket: &str, key: &str) -> Record {
        if self.fetched {
            return self.clone();
        }
        let header = &self.line[..self.data_offset];
        let mut line = Vec::with_capacity(
            header.len() + 256 + bucket.len() + key.len() + self.signature_header.len(),
        );
        line.extend_from_slice(header);
        line.extend_from_slice(b"\"data\":null");
        if self.include_raw {
            line.extend_from_slice(b",\"raw\":null,\"signature\":");
            escape::json_string_into(&mut line, &self.signature_header);
        }
        line.extend_from_slice(b",\"oversize\":{\"bucket\":");
        escape::json_string_into(&mut line, bucket);
        line.extend_from_slice(b",\"key\":");
        escape::json_string_into(&mut line, key);
        line.extend_from_slice(format!(",\"bytes\":{},\"sha256\":\"", self.body.len()).as_bytes());
        line.extend_from_slice(hex::encode(Sha256::digest(&self.body)).as_bytes());
        line.extend_from_slice(b"\"}}\n");
        Record {
            line: Bytes::from(line),
            meta: self.meta.clone(),
            received_at: self.received_at,
            body: self.body.clone(),
            signature_header: Arc::clone(&self.signature_header),
            data_offset: self.data_offset,
            include_raw: self.include_raw,
            fetched: false,
        }
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
    fn formats_every_year_like_the_time_crate() {
        for millis in [
            0,
            -1,
            -62_135_596_800_000, // 0001-01-01
            -62_167_219_200_001, // -0001-12-31T23:59:59.999
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000, // out of range: the epoch
            i64::MIN,
        ] {
            let t = ReceivedAt::from_unix_millis(millis);
            let d = t.datetime();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second(),
                d.millisecond()
            );
            assert_eq!(t.rfc3339_millis(), expected, "{millis}");
        }
        assert_eq!(
            ReceivedAt::from_unix_millis(-1).rfc3339_millis(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn parses_what_it_formats_and_nothing_else() {
        for millis in [
            0,
            1_795_731_281_123,
            951_782_400_000,
            253_402_300_799_999,
            -62_167_219_200_000,
        ] {
            let t = ReceivedAt::from_unix_millis(millis);
            assert_eq!(
                ReceivedAt::parse_rfc3339_millis(&t.rfc3339_millis()),
                Some(t),
                "{millis}"
            );
        }
        for bad in [
            "2026-11-26T22:14:41.123",
            "2026-11-26T22:14:41.123+00:00",
            "2026-11-26 22:14:41.123Z",
            "2026-11-26T22:14:41.12Z",
            "2026-11-26t22:14:41.123Z",
            "2026-11-26T24:00:00.000Z",
            "2026-11-26T23:59:60.000Z",
            "2026-13-26T22:14:41.123Z",
            "2025-02-29T22:14:41.123Z",
            "+026-11-26T22:14:41.123Z",
            "２０２6-11-26T22:14:41.123Z",
            "",
        ] {
            assert_eq!(ReceivedAt::parse_rfc3339_millis(bad), None, "{bad}");
        }
        assert!(ReceivedAt::parse_rfc3339_millis("2024-02-29T00:00:00.000Z").is_some());
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
