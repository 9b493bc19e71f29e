//! The archive format: writes a verified Stripe webhook body as one archive record (envelope
//! v1), and reads a stored record back ([`read`]). One crate writes and reads the format.
//!
//! A record is one line of JSON ending in `\n` (no other `\n` or `\r`), ready to be appended
//! to an NDJSON file or sent as one Firehose record:
//!
//! ```text
//! {"v":1,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_…","type":"charge.succeeded",
//!  "object":"event","created":1795731280,"livemode":false,"api_version":"2025-10-29.clover",
//!  "account":null,"data":{"object":{…}},"raw":"{\n  \"id\": …","signature":"t=…,v1=…"}
//! ```
//!
//! (wrapped here). [`encode`] extracts the fields from the raw bytes with a strict single-pass
//! JSON scanner and never re-serialises a value: `data` keeps its original tokens with only
//! the insignificant whitespace removed. `raw` and `signature` (on by default, see
//! [`EnvelopeOptions`]) let anyone holding the endpoint secret re-verify a record later.
//! [`read::ArchivedRecord::parse`] reads such a line back, typed and version-checked; the
//! archive layout ([`layout`]: prefixes, partitions, segment names, what readers read) is
//! [`ARCHIVE_PREFIX`]`/`[`Partition`]`/…`, beside [`NON_RECORD_PREFIXES`].
//!
//! An event that never arrived as a webhook and was fetched from Stripe's API instead (by
//! `stripe-webhook reconcile --archive-missing`) is a *fetched record*, envelope v2
//! ([`encode_fetched`]): the same members, `raw`, no `signature`, and a `fetched` member saying
//! where, how and with which key id it was fetched ([`Fetched`]). Readers of v1 only refuse it
//! as an unknown version, so nothing mistakes it for a verified webhook.
//! Neither side depends on serde: both use the crate's own strict JSON scanner.
//!
//! ```
//! use bytes::Bytes;
//! use stripe_webhook_envelope::{encode, EnvelopeOptions, ReceivedAt};
//!
//! let body = Bytes::from_static(
//!     b"{\n  \"id\": \"evt_1\",\n  \"object\": \"event\",\n  \"created\": 1795731280,\n  \
//!       \"data\": {\n    \"object\": {\"amount\": 1.10}\n  },\n  \"type\": \"charge.succeeded\"\n}",
//! );
//! let at = ReceivedAt::from_unix_millis(1_795_731_281_123);
//! let record = encode(body.clone(), "t=1795731281,v1=abc", at, &EnvelopeOptions::default())?;
//!
//! assert!(record.line().ends_with(b"\n"));
//! assert_eq!(record.id(), "evt_1");
//! assert_eq!(record.event_type(), "charge.succeeded");
//! assert_eq!(record.body(), &body);
//! let line = std::str::from_utf8(record.line()).unwrap();
//! assert!(line.starts_with(
//!     r#"{"v":1,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_1","type":"charge.succeeded","object":"event","created":1795731280,"livemode":null,"api_version":null,"account":null,"data":{"object":{"amount":1.10}},"raw":"{\n  \"id\""#
//! ));
//!
//! let stored = stripe_webhook_envelope::read::ArchivedRecord::parse(record.line()).unwrap();
//! assert_eq!((&*stored.id, stored.received_at), ("evt_1", at));
//! # Ok::<(), stripe_webhook_envelope::EnvelopeError>(())
//! ```

/// The README's example, compiled as a doctest so the README cannot drift from the crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod encode;
mod error;
mod escape;
mod fetched;
pub mod layout;
pub mod read;
mod record;
mod scan;
mod swar;

pub use encode::{EnvelopeOptions, encode, encode_fetched};
pub use error::EnvelopeError;
pub use fetched::{FETCHED_ENVELOPE_VERSION, Fetched};
pub use layout::{
    ARCHIVE_PREFIX, ERROR_OUTPUT_PREFIX, NON_RECORD_PREFIXES, OVERSIZE_PREFIX, ParsePartitionError,
    Partition,
};
pub use record::{EventMeta, ReceivedAt, Record};
