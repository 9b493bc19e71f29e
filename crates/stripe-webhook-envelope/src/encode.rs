//! `encode`: a verified body and its signature header to one envelope v1 line.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::EnvelopeError;
use crate::escape;
use crate::fetched::Fetched;
use crate::record::{EventMeta, ReceivedAt, Record};
use crate::scan::{self, Member, ScanFailure, Scratch, Span, TopLevel};

/// How [`encode`] builds records.
///
/// By default a record carries `raw` (the exact body) and `signature` (the `Stripe-Signature`
/// header), so anyone holding the endpoint secret can re-verify it later and replay tools can
/// resend the exact bytes. They more than double a record's size (`raw` is the whole
/// pretty-printed body, escaped): the 3,869-byte `charge.succeeded` fixture makes a 2,626-byte
/// record without them and a 7,040-byte one with them. Firehose bills each record rounded up to
/// 5 KiB, so that event costs 2 billing units instead of 1. Turn them off with
/// [`EnvelopeOptions::include_raw`] where storage cost matters more than re-verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeOptions {
    include_raw: bool,
}

impl Default for EnvelopeOptions {
    /// `raw` and `signature` included.
    fn default() -> Self {
        Self { include_raw: true }
    }
}

impl EnvelopeOptions {
    /// Whether records carry `raw` and `signature` (default: yes).
    pub fn include_raw(self, yes: bool) -> Self {
        Self { include_raw: yes }
    }

    /// Whether records carry `raw` and `signature`.
    pub fn includes_raw(&self) -> bool {
        self.include_raw
    }
}

/// The top-level members the envelope reads.
#[derive(Clone, Copy)]
enum Field {
    Id,
    Type,
    Object,
    Created,
    Livemode,
    ApiVersion,
    Account,
    Context,
    Data,
}

const FIELDS: usize = 9;

impl Field {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "id" => Self::Id,
            "type" => Self::Type,
            "object" => Self::Object,
            "created" => Self::Created,
            "livemode" => Self::Livemode,
            "api_version" => Self::ApiVersion,
            "account" => Self::Account,
            "context" => Self::Context,
            "data" => Self::Data,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Type => "type",
            Self::Object => "object",
            Self::Created => "created",
            Self::Livemode => "livemode",
            Self::ApiVersion => "api_version",
            Self::Account => "account",
            Self::Context => "context",
            Self::Data => "data",
        }
    }
}

/// Encodes a verified webhook body as one envelope v1 record.
///
/// `body` must be the exact bytes whose signature was verified, and `signature_header` the
/// `Stripe-Signature` header that verified them. The record is
///
/// ```text
/// {"v":1,"timestamp":…,"id":…,"type":…,"object":…,"created":…,"livemode":…,"api_version":…,
///  "account":…,"data":…,"raw":"<body>","signature":"<header>"}\n
/// ```
///
/// on one line (shown wrapped here). Values are copied from the body with their original text
/// (`data` with insignificant whitespace removed), never re-serialised: numbers such as `1.10`
/// and escapes such as `\u00e9` stay as written. `created` is the event's own token (a Unix
/// integer for snapshot events, an ISO string for thin `v2.core.event`s). `account` is the
/// top-level `account` (Connect) or else a thin event's `context`. Absent members are `null`.
///
/// The body is read in one pass that validates it and, on the way, writes `raw` and the
/// compacted `data` into per-thread scratch buffers; the record's line is then allocated at
/// its final size. A thread keeps its scratch between calls (about three times the largest
/// body it has encoded, and at most 4 MiB: larger ones are freed after use).
///
/// # Errors
/// The body must be a single, strictly valid JSON object (UTF-8, no lone surrogate escapes)
/// with a string `id` and a string `type`, and without duplicates of the members the envelope
/// reads. Anything else about the event (its type, API version, other members) is archived
/// as is.
pub fn encode(
    body: Bytes,
    signature_header: &str,
    received_at: ReceivedAt,
    options: &EnvelopeOptions,
) -> Result<Record, EnvelopeError> {
    let tail = Tail::Webhook {
        signature_header,
        include_raw: options.includes_raw(),
    };
    let (line, meta, data_offset) = encode_with_scratch(&body, tail, received_at)?;
    Ok(Record {
        line: Bytes::from(line),
        meta,
        received_at,
        body,
        signature_header: Arc::from(signature_header),
        data_offset,
        include_raw: options.includes_raw(),
        fetched: false,
    })
}

/// Encodes an event fetched from Stripe's API (not received as a webhook) as one envelope v2
/// record: a *fetched record*.
///
/// `body` is the exact response body of the request `fetched` describes, and `fetched_at` when
/// it was answered (the record's `timestamp`). The line is
///
/// ```text
/// {"v":2,"timestamp":…,"id":…,"type":…,"object":…,"created":…,"livemode":…,"api_version":…,
///  "account":…,"data":…,"raw":"<body>","fetched":{"api":…,"request":…,"key":…,"account":…,
///  "stripe_version":…,"request_id":…}}
/// ```
///
/// on one line: members 1 to 10 derived from the body exactly as [`encode`] derives them, `raw`
/// always, no `signature` (nothing Stripe signed was received), then the provenance
/// ([`Fetched`]). The record's [`Record::signature_header`] is empty and [`Record::is_fetched`]
/// is true.
///
/// ```
/// use bytes::Bytes;
/// use stripe_webhook_envelope::{Fetched, ReceivedAt, encode_fetched};
///
/// let body = Bytes::from_static(b"{\"id\":\"evt_1\",\"object\":\"event\",\"type\":\"invoice.paid\"}");
/// let fetched = Fetched {
///     api: "https://api.stripe.com".into(),
///     request: "GET /v1/events/evt_1".into(),
///     key: "rk_live_...abcd".into(),
///     account: None,
///     stripe_version: None,
///     request_id: Some("req_1".into()),
/// };
/// let at = ReceivedAt::from_unix_millis(1_795_731_281_123);
/// let record = encode_fetched(body, &fetched, at)?;
/// let line = std::str::from_utf8(record.line()).unwrap();
/// assert!(line.starts_with(r#"{"v":2,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_1","#));
/// assert!(line.ends_with(r#","fetched":{"api":"https://api.stripe.com","request":"GET /v1/events/evt_1","key":"rk_live_...abcd","account":null,"stripe_version":null,"request_id":"req_1"}}
/// "#));
/// assert!(record.is_fetched() && record.signature_header().is_empty());
/// # Ok::<(), stripe_webhook_envelope::EnvelopeError>(())
/// ```
///
/// # Errors
/// As [`encode`]: the body must be a strictly valid JSON object with a string `id` and `type`.
pub fn encode_fetched(
    body: Bytes,
    fetched: &Fetched<'_>,
    fetched_at: ReceivedAt,
) -> Result<Record, EnvelopeError> {
    let mut provenance = Vec::with_capacity(256);
    fetched.write_json(&mut provenance);
    let (line, meta, data_offset) =
        encode_with_scratch(&body, Tail::Fetched(&provenance), fetched_at)?;
    Ok(Record {
        line: Bytes::from(line),
        meta,
        received_at: fetched_at,
        body,
        signature_header: Arc::from(""),
        data_offset,
        include_raw: true,
        fetched: true,
    })
}

/// What follows `data` in a line.
#[derive(Clone, Copy)]
enum Tail<'a> {
    /// A webhook record (v1): `raw` and `signature`, or nothing with raw off.
    Webhook {
        signature_header: &'a str,
        include_raw: bool,
    },
    /// A fetched record (v2): `raw` and this `fetched` object (its JSON text).
    Fetched(&'a [u8]),
}

impl Tail<'_> {
    fn includes_raw(self) -> bool {
        match self {
            Tail::Webhook { include_raw, .. } => include_raw,
            Tail::Fetched(_) => true,
        }
    }
}

/// [`encode_line`] with this thread's scratch buffers.
fn encode_with_scratch(
    body: &[u8],
    tail: Tail<'_>,
    received_at: ReceivedAt,
) -> Result<(Vec<u8>, EventMeta, usize), EnvelopeError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| EnvelopeError::not_json(body, "invalid UTF-8", e.valid_up_to()))?;
    let mut scratch = SCRATCH.try_with(RefCell::take).unwrap_or_default();
    let encoded = encode_line(text, tail, received_at, &mut scratch);
    if scratch.capacity() <= SCRATCH_RETAINED {
        // Fails only while the thread is exiting; the buffers are then simply dropped.
        let _ = SCRATCH.try_with(|s| s.replace(scratch));
    }
    encoded
}

thread_local! {
    /// The scan's output buffers, reused by every `encode` on this thread.
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Scratch a thread keeps between calls (enough for a 1 MiB body with `raw`); more is freed.
const SCRATCH_RETAINED: usize = 4 << 20;

/// The start of a webhook record, up to its `timestamp` value: `"v"` is
/// [`ENVELOPE_VERSION`](crate::read::ENVELOPE_VERSION) (a test keeps the two equal).
const WEBHOOK_HEAD: &[u8] = b"{\"v\":1,\"timestamp\":\"";
/// The start of a fetched record: `"v"` is [`FETCHED_ENVELOPE_VERSION`](crate::FETCHED_ENVELOPE_VERSION).
const FETCHED_HEAD: &[u8] = b"{\"v\":2,\"timestamp\":\"";

/// The record's line, its meta and the offset of `"data":` in the line.
fn encode_line(
    text: &str,
    tail: Tail<'_>,
    received_at: ReceivedAt,
    scratch: &mut Scratch,
) -> Result<(Vec<u8>, EventMeta, usize), EnvelopeError> {
    let include_raw = tail.includes_raw();
    let bytes = text.as_bytes();
    let mut found: [Option<Member>; FIELDS] = [None; FIELDS];
    let is_data = |key: Span, escaped: bool| scan::key_text(text, key, escaped) == "data";
    let on_member = |m: Member| {
        let key = m.key_text(text);
        if let Some(field) = Field::from_key(&key) {
            let slot = &mut found[field as usize];
            if slot.is_some() {
                return Err(EnvelopeError::DuplicateField {
                    field: field.name(),
                });
            }
            *slot = Some(m);
        }
        Ok(())
    };
    let top = if include_raw {
        scan::scan_top_level::<true>(bytes, scratch, is_data, on_member)
    } else {
        scan::scan_top_level::<false>(bytes, scratch, is_data, on_member)
    };
    match top {
        Ok(TopLevel::Object) => {}
        Ok(TopLevel::Empty) => return Err(EnvelopeError::EmptyBody),
        Ok(TopLevel::Other(found)) => return Err(EnvelopeError::NotAnObject { found }),
        Err(ScanFailure::Syntax(e)) => {
            return Err(EnvelopeError::not_json(bytes, e.what, e.offset));
        }
        Err(ScanFailure::Member(e)) => return Err(e),
    }
    let value = |f: Field| found[f as usize].map(|m| m.value);
    let string = |f: Field, missing, not_string: fn(&'static str) -> EnvelopeError| {
        let span = value(f).ok_or(missing)?;
        let token = span.of(bytes);
        match token[0] {
            b'"' => Ok(span),
            other => Err(not_string(scan::kind_of(other))),
        }
    };
    let id = string(Field::Id, EnvelopeError::MissingId, |found| {
        EnvelopeError::IdNotString { found }
    })?;
    let ty = string(Field::Type, EnvelopeError::MissingType, |found| {
        EnvelopeError::TypeNotString { found }
    })?;
    let decoded =
        |token: Span| escape::decode_json_string(&text[token.start..token.end]).into_owned();
    let meta = EventMeta {
        id: decoded(id),
        event_type: decoded(ty),
    };

    // The data the scan captured: the value of the (single) `data` member, compacted.
    let data = value(Field::Data).map(|span| {
        debug_assert_eq!(scratch.data(), {
            let mut v = Vec::new();
            scan::compact_into(&mut v, span.of(bytes));
            v
        });
        scratch.data()
    });
    let raw = include_raw.then(|| {
        debug_assert_eq!(scratch.raw(), {
            let mut v = Vec::new();
            escape::json_string_into(&mut v, text);
            v[1..v.len() - 1].to_vec()
        });
        scratch.raw()
    });
    const TIMESTAMP: usize = "2026-11-26T22:14:41.123Z".len();
    let members = [
        (&b",\"object\":"[..], value(Field::Object)),
        (b",\"created\":", value(Field::Created)),
        (b",\"livemode\":", value(Field::Livemode)),
        (b",\"api_version\":", value(Field::ApiVersion)),
        (
            b",\"account\":",
            value(Field::Account).or(value(Field::Context)),
        ),
    ];
    let head = match tail {
        Tail::Fetched(_) => FETCHED_HEAD,
        Tail::Webhook { .. } => WEBHOOK_HEAD,
    };
    const ID: &[u8] = b"\",\"id\":";
    const TYPE: &[u8] = b",\"type\":";
    const DATA: &[u8] = b",\"data\":";
    const RAW: &[u8] = b",\"raw\":\"";
    const SIGNATURE: &[u8] = b"\",\"signature\":";
    const FETCHED: &[u8] = b"\",\"fetched\":";
    const END: &[u8] = b"}\n";
    // Exact unless a member other than `data` has whitespace or the signature needs escapes.
    let mut capacity = head.len()
        + TIMESTAMP
        + ID.len()
        + (id.end - id.start)
        + TYPE.len()
        + (ty.end - ty.start)
        + members
            .iter()
            .map(|(name, span)| name.len() + span.map_or(4, |s| s.end - s.start))
            .sum::<usize>()
        + DATA.len()
        + data.map_or(4, <[u8]>::len)
        + END.len();
    if let Some(raw) = raw {
        capacity += RAW.len() + raw.len() + 2;
        capacity += match tail {
            Tail::Webhook {
                signature_header, ..
            } => SIGNATURE.len() + signature_header.len(),
            Tail::Fetched(fetched) => FETCHED.len() + fetched.len(),
        };
    }
    let mut line = Vec::with_capacity(capacity);
    line.extend_from_slice(head);
    received_at.write_rfc3339_millis(&mut line);
    line.extend_from_slice(ID);
    line.extend_from_slice(id.of(bytes));
    line.extend_from_slice(TYPE);
    line.extend_from_slice(ty.of(bytes));
    for (name, span) in members {
        line.extend_from_slice(name);
        match span {
            Some(span) => scan::compact_into(&mut line, span.of(bytes)),
            None => line.extend_from_slice(b"null"),
        }
    }
    // `data_offset` points after the comma, at `"data":`.
    let data_offset = line.len() + 1;
    line.extend_from_slice(DATA);
    line.extend_from_slice(data.unwrap_or(b"null"));
    if let Some(raw) = raw {
        line.extend_from_slice(RAW);
        line.extend_from_slice(raw);
        match tail {
            Tail::Webhook {
                signature_header, ..
            } => {
                line.extend_from_slice(SIGNATURE);
                escape::json_string_into(&mut line, signature_header);
            }
            Tail::Fetched(fetched) => {
                line.extend_from_slice(FETCHED);
                line.extend_from_slice(fetched);
            }
        }
    }
    line.extend_from_slice(END);
    Ok((line, meta, data_offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const SIG: &str =
        "t=1795731281,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";
    const AT: ReceivedAt = ReceivedAt::from_unix_millis(1_795_731_281_123);

    #[test]
    fn the_written_versions_are_the_published_constants() {
        let head = |v: u64| format!("{{\"v\":{v},\"timestamp\":\"");
        assert_eq!(WEBHOOK_HEAD, head(crate::read::ENVELOPE_VERSION).as_bytes());
        assert_eq!(
            FETCHED_HEAD,
            head(crate::FETCHED_ENVELOPE_VERSION).as_bytes()
        );
    }

    fn enc(body: &str) -> Result<Record, EnvelopeError> {
        encode(
            Bytes::copy_from_slice(body.as_bytes()),
            SIG,
            AT,
            &EnvelopeOptions::default(),
        )
    }

    fn line(body: &str, options: &EnvelopeOptions) -> String {
        let r = encode(Bytes::copy_from_slice(body.as_bytes()), SIG, AT, options).unwrap();
        String::from_utf8(r.line().to_vec()).unwrap()
    }

    #[test]
    fn snapshot_event_fields_in_order() {
        let body = "{\n  \"id\": \"evt_1\",\n  \"object\": \"event\",\n  \"api_version\": \"2025-10-29.clover\",\n  \"created\": 1762900000,\n  \"data\": {\n    \"object\": { \"amount\": 2000, \"fee\": 1.10, \"x\": 1e2, \"name\": \"Zo\\u00eb\" }\n  },\n  \"livemode\": false,\n  \"pending_webhooks\": 1,\n  \"type\": \"charge.succeeded\"\n}";
        let no_raw = EnvelopeOptions::default().include_raw(false);
        assert_eq!(
            line(body, &no_raw),
            "{\"v\":1,\"timestamp\":\"2026-11-26T22:14:41.123Z\",\"id\":\"evt_1\",\"type\":\"charge.succeeded\",\"object\":\"event\",\"created\":1762900000,\"livemode\":false,\"api_version\":\"2025-10-29.clover\",\"account\":null,\"data\":{\"object\":{\"amount\":2000,\"fee\":1.10,\"x\":1e2,\"name\":\"Zo\\u00eb\"}}}\n"
        );
        let with_raw = line(body, &EnvelopeOptions::default());
        let expected_tail = format!(
            ",\"raw\":{},\"signature\":\"{SIG}\"}}\n",
            serde_json::to_string(body).unwrap()
        );
        assert!(with_raw.ends_with(&expected_tail), "{with_raw}");
    }

    #[test]
    fn thin_event_takes_account_from_context_and_has_null_data() {
        let body = r#"{"id":"evt_test_65R","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","livemode":false,"created":"2025-11-12T08:26:40.123Z","context":"acct_1Nv0FGQ9RKHgCVdK","related_object":{"id":"mtr_1","type":"billing.meter","url":"/v1/billing/meters/mtr_1"}}"#;
        let l = line(body, &EnvelopeOptions::default().include_raw(false));
        assert_eq!(
            l,
            "{\"v\":1,\"timestamp\":\"2026-11-26T22:14:41.123Z\",\"id\":\"evt_test_65R\",\"type\":\"v1.billing.meter.error_report_triggered\",\"object\":\"v2.core.event\",\"created\":\"2025-11-12T08:26:40.123Z\",\"livemode\":false,\"api_version\":null,\"account\":\"acct_1Nv0FGQ9RKHgCVdK\",\"data\":null}\n"
        );
    }

    #[test]
    fn connect_account_wins_over_context() {
        let body =
            r#"{"id":"evt_1","type":"charge.succeeded","account":"acct_A","context":"acct_B"}"#;
        let l = line(body, &EnvelopeOptions::default().include_raw(false));
        assert!(l.contains(",\"account\":\"acct_A\","), "{l}");
    }

    #[test]
    fn minimal_event_has_nulls() {
        let l = line(
            "{\"type\":\"x\",\"id\":\"y\"}",
            &EnvelopeOptions::default().include_raw(false),
        );
        assert_eq!(
            l,
            "{\"v\":1,\"timestamp\":\"2026-11-26T22:14:41.123Z\",\"id\":\"y\",\"type\":\"x\",\"object\":null,\"created\":null,\"livemode\":null,\"api_version\":null,\"account\":null,\"data\":null}\n"
        );
    }

    #[test]
    fn escaped_id_and_keys_are_decoded_for_meta_and_kept_verbatim_in_the_line() {
        let r = enc(r#"{"\u0069d":"evt_\u00e9\n","typ\u0065":"a\/b"}"#).unwrap();
        assert_eq!(r.id(), "evt_é\n");
        assert_eq!(r.event_type(), "a/b");
        let l = std::str::from_utf8(r.line()).unwrap();
        assert!(l.contains(r#""id":"evt_\u00e9\n","type":"a\/b""#), "{l}");
        assert_eq!(l.matches('\n').count(), 1);
    }

    #[test]
    fn unknown_types_and_versions_are_archived() {
        let r = enc(r#"{"id":"evt_1","type":"v9.something.new","api_version":"2099-01-01.future","object":42}"#).unwrap();
        assert_eq!(r.event_type(), "v9.something.new");
    }

    #[test]
    fn every_error_case() {
        use EnvelopeError::*;
        let cases: Vec<(&[u8], EnvelopeError)> = vec![
            (b"", EmptyBody),
            (b" \n\t ", EmptyBody),
            (
                b"{\"id\": \"a\",\n \"type\": x}",
                NotJson {
                    what: "expected a value",
                    offset: 21,
                    line: 2,
                    column: 10,
                },
            ),
            (
                b"{\"id\":\"\xff\"}",
                NotJson {
                    what: "invalid UTF-8",
                    offset: 7,
                    line: 1,
                    column: 8,
                },
            ),
            (
                b"{\"id\":\"a\",\"type\":\"b\"} x",
                NotJson {
                    what: "trailing characters after the JSON value",
                    offset: 22,
                    line: 1,
                    column: 23,
                },
            ),
            (b"[{\"id\":\"a\"}]", NotAnObject { found: "an array" }),
            (b"\"evt\"", NotAnObject { found: "a string" }),
            (b"12", NotAnObject { found: "a number" }),
            (b"null", NotAnObject { found: "null" }),
            (b"{\"type\":\"a\"}", MissingId),
            (
                b"{\"id\":5,\"type\":\"a\"}",
                IdNotString { found: "a number" },
            ),
            (
                b"{\"id\":null,\"type\":\"a\"}",
                IdNotString { found: "null" },
            ),
            (b"{\"id\":\"a\"}", MissingType),
            (
                b"{\"id\":\"a\",\"type\":[\"x\"]}",
                TypeNotString { found: "an array" },
            ),
            (
                b"{\"id\":\"a\",\"type\":{}}",
                TypeNotString { found: "an object" },
            ),
            (
                b"{\"id\":\"a\",\"type\":\"b\",\"id\":\"c\"}",
                DuplicateField { field: "id" },
            ),
            (
                b"{\"id\":\"a\",\"type\":\"b\",\"typ\\u0065\":\"c\"}",
                DuplicateField { field: "type" },
            ),
            (
                b"{\"id\":\"a\",\"type\":\"b\",\"data\":1,\"data\":2}",
                DuplicateField { field: "data" },
            ),
        ];
        for (body, expected) in cases {
            let got = encode(
                Bytes::copy_from_slice(body),
                SIG,
                AT,
                &EnvelopeOptions::default(),
            )
            .unwrap_err();
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(body));
            assert!(!got.to_string().is_empty());
        }
        // Duplicates of members the envelope does not read are archived as sent.
        assert!(enc(r#"{"id":"a","type":"b","request":1,"request":2}"#).is_ok());
    }

    #[test]
    fn reasons_are_stable_snake_case() {
        use EnvelopeError::*;
        let all = [
            (EmptyBody, "empty_body"),
            (
                NotJson {
                    what: "x",
                    offset: 0,
                    line: 1,
                    column: 1,
                },
                "not_json",
            ),
            (NotAnObject { found: "null" }, "not_an_object"),
            (MissingId, "missing_id"),
            (IdNotString { found: "null" }, "id_not_string"),
            (MissingType, "missing_type"),
            (TypeNotString { found: "null" }, "type_not_string"),
            (DuplicateField { field: "id" }, "duplicate_field"),
        ];
        for (e, reason) in all {
            assert_eq!(e.label(), reason);
        }
        assert_eq!(
            IdNotString { found: "a number" }.to_string(),
            "the event's `id` is a number, not a string"
        );
    }

    #[test]
    fn record_keeps_body_and_signature() {
        let body = Bytes::from_static(b"{\"id\":\"evt_1\",\"type\":\"t\"}");
        let r = encode(body.clone(), SIG, AT, &EnvelopeOptions::default()).unwrap();
        assert_eq!(r.body(), &body);
        assert_eq!(
            r.body().as_ptr(),
            body.as_ptr(),
            "the body is shared, not copied"
        );
        assert_eq!(r.signature_header(), SIG);
        assert_eq!(r.received_at(), AT);
        assert_eq!(r.len(), r.line().len());
        assert!(!r.is_empty());
    }

    #[test]
    fn oversize_pointer_keeps_envelope_and_points_at_the_body() {
        let body = "{\n  \"id\": \"evt_big\",\n  \"type\": \"invoice.paid\",\n  \"object\": \"event\",\n  \"data\": {\"object\": {\"lines\": [1, 2, 3]}}\n}";
        let r = enc(body).unwrap();
        let p = r.oversize_pointer(
            "archive-bucket",
            "oversize/year=2026/month=11/day=26/evt_big.json",
        );
        let sha = hex::encode(Sha256::digest(body.as_bytes()));
        assert_eq!(
            std::str::from_utf8(p.line()).unwrap(),
            format!(
                "{{\"v\":1,\"timestamp\":\"2026-11-26T22:14:41.123Z\",\"id\":\"evt_big\",\"type\":\"invoice.paid\",\"object\":\"event\",\"created\":null,\"livemode\":null,\"api_version\":null,\"account\":null,\"data\":null,\"raw\":null,\"signature\":\"{SIG}\",\"oversize\":{{\"bucket\":\"archive-bucket\",\"key\":\"oversize/year=2026/month=11/day=26/evt_big.json\",\"bytes\":{},\"sha256\":\"{sha}\"}}}}\n",
                body.len()
            )
        );
        assert_eq!(p.id(), "evt_big");
        assert_eq!(p.body(), r.body());
        assert_eq!(p.signature_header(), SIG);
        assert_eq!(p.received_at(), r.received_at());
        assert_eq!(
            p.oversize_pointer(
                "archive-bucket",
                "oversize/year=2026/month=11/day=26/evt_big.json"
            )
            .line(),
            p.line()
        );

        let no_raw = encode(
            Bytes::copy_from_slice(body.as_bytes()),
            SIG,
            AT,
            &EnvelopeOptions::default().include_raw(false),
        )
        .unwrap()
        .oversize_pointer("b", "k\"\n");
        let l = std::str::from_utf8(no_raw.line()).unwrap();
        assert!(
            l.contains(",\"data\":null,\"oversize\":{\"bucket\":\"b\",\"key\":\"k\\\"\\n\","),
            "{l}"
        );
        assert!(!l.contains("signature"));
        assert_eq!(l.matches('\n').count(), 1);
    }

    #[test]
    fn options_default_on() {
        assert!(EnvelopeOptions::default().includes_raw());
        assert!(!EnvelopeOptions::default().include_raw(false).includes_raw());
        assert!(
            EnvelopeOptions::default()
                .include_raw(false)
                .include_raw(true)
                .includes_raw()
        );
    }
}
