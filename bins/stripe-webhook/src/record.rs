//! One archived line, parsed just enough to filter, verify and replay it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The envelope fields the tools read (everything else, `data` included, is skipped unparsed).
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// Envelope version (`1`).
    #[serde(default)]
    pub(crate) v: Option<u64>,
    /// Receipt time, RFC 3339 UTC with milliseconds.
    #[serde(borrow)]
    pub(crate) timestamp: Cow<'a, str>,
    /// The event id.
    #[serde(borrow)]
    pub(crate) id: Cow<'a, str>,
    /// The event type.
    #[serde(rename = "type", borrow)]
    pub(crate) event_type: Cow<'a, str>,
    /// Live or test mode (`null` when the event did not say).
    #[serde(default)]
    pub(crate) livemode: Option<bool>,
    /// The exact body as a JSON string token (still escaped); absent or `null` when the record
    /// was written with raw off, or for an oversize pointer.
    #[serde(borrow, default)]
    pub(crate) raw: Option<&'a RawValue>,
    /// The `Stripe-Signature` header that verified the body.
    #[serde(borrow, default)]
    pub(crate) signature: Option<Cow<'a, str>>,
    /// Where an oversize event's body is, for a pointer record.
    #[serde(default)]
    pub(crate) oversize: Option<Oversize>,
}

/// The `oversize` member of a pointer record: the body is at `s3://bucket/key`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Oversize {
    /// The bucket holding the body.
    pub(crate) bucket: String,
    /// The object key.
    pub(crate) key: String,
    /// The body's length in bytes.
    pub(crate) bytes: u64,
    /// Lowercase hex SHA-256 of the body.
    pub(crate) sha256: String,
}

/// Where a record's exact body is.
#[derive(Debug)]
pub(crate) enum Body<'r> {
    /// In the line itself (`raw`).
    Inline(String),
    /// In S3 (an oversize pointer).
    S3(&'r Oversize),
    /// Nowhere: the record was written with `raw` off.
    Missing,
}

impl<'a> Envelope<'a> {
    /// Parses one line (without its `\n`).
    ///
    /// # Errors
    /// A line that is not JSON or lacks `timestamp`, `id` or `type`.
    pub(crate) fn parse(line: &'a [u8]) -> Result<Envelope<'a>, String> {
        serde_json::from_slice(line).map_err(|e| format!("not an envelope record: {e}"))
    }

    /// The receipt date, `YYYY-MM-DD` (the first ten characters of `timestamp`).
    pub(crate) fn day(&self) -> &str {
        self.timestamp.get(..10).unwrap_or(&self.timestamp)
    }

    /// Where the exact body is.
    ///
    /// # Errors
    /// A `raw` member that is not a JSON string.
    pub(crate) fn body(&self) -> Result<Body<'_>, String> {
        match (self.raw, &self.oversize) {
            (Some(raw), _) => serde_json::from_str::<String>(raw.get())
                .map(Body::Inline)
                .map_err(|e| format!("raw is not a JSON string: {e}")),
            (None, Some(pointer)) => Ok(Body::S3(pointer)),
            (None, None) => Ok(Body::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_record_and_unescapes_raw() {
        let line = br#"{"v":1,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_1","type":"charge.succeeded","object":"event","created":1,"livemode":false,"api_version":null,"account":null,"data":{"object":{"a":[1,{"b":null}]}},"raw":"{\n  \"id\": \"evt_1\"\n}","signature":"t=1,v1=ab"}"#;
        let e = Envelope::parse(line).expect("parse");
        assert_eq!(e.v, Some(1));
        assert_eq!((&*e.id, &*e.event_type), ("evt_1", "charge.succeeded"));
        assert_eq!(e.day(), "2026-11-26");
        assert_eq!(e.livemode, Some(false));
        assert_eq!(e.signature.as_deref(), Some("t=1,v1=ab"));
        match e.body().expect("body") {
            Body::Inline(body) => assert_eq!(body, "{\n  \"id\": \"evt_1\"\n}"),
            other => panic!("expected inline body, got {other:?}"),
        }
    }

    #[test]
    fn raw_off_and_pointer_records() {
        let off = br#"{"v":1,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_1","type":"x","livemode":null,"data":{}}"#;
        let e = Envelope::parse(off).expect("parse");
        assert!(matches!(e.body(), Ok(Body::Missing)));
        assert_eq!(e.livemode, None);
        let pointer = br#"{"v":1,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_2","type":"x","data":null,"raw":null,"signature":"t=1,v1=00","oversize":{"bucket":"b","key":"oversize/k.json","bytes":12,"sha256":"ab"}}"#;
        let e = Envelope::parse(pointer).expect("parse");
        match e.body().expect("body") {
            Body::S3(o) => {
                assert_eq!(
                    (o.bucket.as_str(), o.key.as_str(), o.bytes),
                    ("b", "oversize/k.json", 12)
                );
            }
            other => panic!("expected a pointer, got {other:?}"),
        }
    }

    #[test]
    fn refuses_lines_that_are_not_envelopes() {
        assert!(Envelope::parse(b"not json").is_err());
        assert!(Envelope::parse(br#"{"id":"evt_1","type":"x"}"#).is_err());
        assert!(
            Envelope::parse(br#"{"timestamp":"t","id":"evt_1","type":"x","raw":5}"#)
                .expect("parses")
                .body()
                .is_err()
        );
    }
}
