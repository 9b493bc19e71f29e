//! Reading the archive: one stored line back into a typed, version-checked record.
//!
//! [`ArchivedRecord::parse`] reads exactly what [`encode`](crate::encode),
//! [`Record::oversize_pointer`](crate::Record::oversize_pointer) and
//! [`encode_fetched`](crate::encode_fetched) write, and borrows from the
//! line (only strings with escapes are copied). It is meant for input nobody vouches for: an
//! archive someone else can write to, a file of unknown origin. It never panics, and it refuses
//! what the writer would never have written rather than guessing:
//!
//! - The line is one strict JSON object (UTF-8, no duplicate members among those below; the
//!   writer's own scanner checks it). Whitespace around it, such as the final `\n`, is allowed.
//! - `v` is read first. No `v` is [`ReadError::MissingVersion`]; anything other than the
//!   integers `1` (a webhook record) and `2` (a fetched record, see [`crate::Fetched`]) is
//!   [`ReadError::UnknownVersion`], which names it. The reader does not guess what another
//!   version's members mean.
//! - Every member a record always has must be there, with the type the writer gives it:
//!   `timestamp` (a string in the writer's exact form, see
//!   [`ReceivedAt::parse_rfc3339_millis`]), `id` and `type` (strings), and `object`,
//!   `created`, `livemode`, `api_version`, `account` and `data`, which hold the event's own
//!   JSON tokens (any JSON value, `null` when the event had none; see [`RawJson`]).
//! - Where the exact body is ([`StoredBody`]): `raw` (a JSON string) with `signature`; or an
//!   `oversize` pointer (`data` and `raw` null, the body in S3) with `signature` unless the
//!   record was written with raw off; or neither (raw off). `raw` and `signature` come together
//!   or not at all.
//! - A fetched record (v2) has `raw` (a JSON string) and a `fetched` object
//!   ([`StoredBody::Fetched`]), and never a `signature` or an `oversize` pointer
//!   ([`ReadError::UnexpectedField`]): nothing Stripe signed was received, so nothing reads it
//!   as a verified webhook.
//! - A line without `v` that has exactly the Node service's members (`timestamp`, `type`, `id`,
//!   `data`; the service this one replaced wrote them to the same prefix) is a legacy record
//!   ([`StoredBody::Legacy`]): present, never verifiable. A line without `v` that has any member
//!   only v1 or v2 define is still [`ReadError::MissingVersion`].
//! - Members a version does not define are ignored, so optional members added later do not
//!   break this reader; a change to the meaning of an existing member needs a new version.
//!
//! ```
//! use bytes::Bytes;
//! use stripe_webhook_envelope::read::{ArchivedRecord, ReadError, StoredBody};
//! use stripe_webhook_envelope::{encode, EnvelopeOptions, ReceivedAt};
//!
//! let body = Bytes::from_static(b"{\n  \"id\": \"evt_1\",\n  \"type\": \"charge.succeeded\",\n  \"livemode\": true\n}");
//! let at = ReceivedAt::from_unix_millis(1_795_731_281_123);
//! let written = encode(body.clone(), "t=1795731281,v1=abc", at, &EnvelopeOptions::default())?;
//!
//! let read = ArchivedRecord::parse(written.line())?;
//! assert_eq!(read.id, "evt_1");
//! assert_eq!(read.event_type, "charge.succeeded");
//! assert_eq!(read.received_at, at);
//! assert_eq!(read.livemode.as_bool(), Some(true));
//! assert!(read.data.is_null());
//! match &read.body {
//!     StoredBody::Inline { raw, signature } => {
//!         assert_eq!(raw.decode().as_bytes(), &body[..]);
//!         assert_eq!(signature, "t=1795731281,v1=abc");
//!     }
//!     other => panic!("{other:?}"),
//! }
//!
//! let v3 = br#"{"v":3,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_1"}"#;
//! let err = ArchivedRecord::parse(v3).unwrap_err();
//! assert_eq!(err, ReadError::UnknownVersion { version: "3".to_owned() });
//! assert_eq!(err.label(), "unknown_version");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::escape::decode_json_string;
use crate::fetched::Fetched;
use crate::record::ReceivedAt;
use crate::scan::{self, ScanFailure, TopLevel};

/// The envelope version of webhook records (`"v":1`); fetched records are
/// [`FETCHED_ENVELOPE_VERSION`](crate::FETCHED_ENVELOPE_VERSION) (`"v":2`). The reader reads both.
pub const ENVELOPE_VERSION: u64 = 1;

/// Why a line is not an envelope record (v1 or v2).
///
/// [`ReadError::label`] is a stable snake_case label for counts and structured logs. Messages
/// name members, kinds and byte offsets, never content (except the offending `v`, at most 32
/// characters of it).
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The line is not valid JSON (or not valid UTF-8).
    #[error("not JSON: {what} at byte {offset}")]
    NotJson {
        /// What was wrong.
        what: &'static str,
        /// Byte offset of the problem in the line.
        offset: usize,
    },
    /// The line is valid JSON but not an object (or empty).
    #[error("the line is {found}, not a JSON object")]
    NotAnObject {
        /// The kind of value found (`an array`, `a string`, `empty`, …).
        found: &'static str,
    },
    /// The object has no `v`, and is not a legacy (Node service) line either.
    #[error(
        "no envelope version: the record has no `v` (and is not a Node service line of exactly `timestamp`, `type`, `id`, `data`)"
    )]
    MissingVersion,
    /// `v` is neither `1` nor `2`.
    #[error("unknown envelope version {version} (this reader knows versions 1 and 2)")]
    UnknownVersion {
        /// The JSON text of `v` as stored (at most 32 characters, then `…`).
        version: String,
    },
    /// A member every v1 record has is missing (`oversize.key` for one inside the pointer).
    #[error("the record has no `{field}`")]
    MissingField {
        /// The member.
        field: &'static str,
    },
    /// A member has another type or form than the writer gives it.
    #[error("the record's `{field}` is {found}, not {expected}")]
    MistypedField {
        /// The member.
        field: &'static str,
        /// What v1 says it is.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A member v1 defines appears twice, so the record is ambiguous.
    #[error("the record has more than one `{field}` member")]
    DuplicateField {
        /// The member.
        field: &'static str,
    },
    /// A member its version never has: `signature` or `oversize` in a fetched record (v2).
    #[error("the record has a `{field}`, which a fetched (v2) record never has")]
    UnexpectedField {
        /// The member.
        field: &'static str,
    },
}

impl ReadError {
    /// A stable snake_case label for counts and structured logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotJson { .. } => "not_json",
            Self::NotAnObject { .. } => "not_an_object",
            Self::MissingVersion => "missing_version",
            Self::UnknownVersion { .. } => "unknown_version",
            Self::MissingField { .. } => "missing_field",
            Self::MistypedField { .. } => "mistyped_field",
            Self::DuplicateField { .. } => "duplicate_field",
            Self::UnexpectedField { .. } => "unexpected_field",
        }
    }
}

/// A JSON value copied from the event into the record: its exact text in the line (numbers,
/// escapes and key order as Stripe sent them, insignificant whitespace removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    /// The JSON text, e.g. `"event"`, `1795731280`, `null` or `{"object":{…}}`.
    pub fn text(self) -> &'a str {
        self.0
    }

    /// Whether it is `null` (the event had no such member, or it was `null`).
    pub fn is_null(self) -> bool {
        self.0 == "null"
    }

    /// The boolean, if it is one.
    pub fn as_bool(self) -> Option<bool> {
        match self.0 {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The decoded string, if it is one.
    pub fn as_string(self) -> Option<Cow<'a, str>> {
        self.0.starts_with('"').then(|| decode_json_string(self.0))
    }

    /// The integer, if it is one that fits an `i64` (a snapshot event's `created`).
    pub fn as_i64(self) -> Option<i64> {
        if self.0.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            self.0.parse().ok()
        } else {
            None
        }
    }
}

impl fmt::Display for RawJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A JSON string as stored (quotes and escapes included): `raw`, decoded only when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonString<'a>(&'a str);

impl<'a> JsonString<'a> {
    /// The token as stored, quotes included.
    pub fn token(self) -> &'a str {
        self.0
    }

    /// The text it stands for: for `raw`, exactly the webhook body that was verified.
    pub fn decode(self) -> Cow<'a, str> {
        decode_json_string(self.0)
    }
}

/// Where a record's exact body is, and the `Stripe-Signature` header that verified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredBody<'a> {
    /// In the line: `raw`, with its `signature`.
    Inline {
        /// The body as a JSON string.
        raw: JsonString<'a>,
        /// The `Stripe-Signature` header that verified it.
        signature: Cow<'a, str>,
    },
    /// In S3 (an oversize pointer), with its `signature` unless the record was written with
    /// raw off.
    Oversize {
        /// Where the body is.
        pointer: OversizePointer<'a>,
        /// The `Stripe-Signature` header that verified it, if stored.
        signature: Option<Cow<'a, str>>,
    },
    /// Nowhere: the record was written with raw off.
    NotStored,
    /// A legacy line written by the Node service this one replaced: no `v`, only `timestamp`,
    /// `type`, `id` and `data` (`{"timestamp":…,"type":…,"id":…,"data":{…}}`). Neither the body
    /// nor a signature was kept, so it is present but can never be verified; the record's
    /// `object`, `created`, `livemode`, `api_version` and `account` read as `null`.
    Legacy,
    /// A fetched record (v2): `raw` holds the body as Stripe's API returned it, and `fetched`
    /// says how it was fetched. It has no signature: it is present, not verified.
    Fetched {
        /// The body as a JSON string.
        raw: JsonString<'a>,
        /// Where and how it was fetched.
        fetched: Fetched<'a>,
    },
}

impl StoredBody<'_> {
    /// The stored `Stripe-Signature` header, if any.
    pub fn signature(&self) -> Option<&str> {
        match self {
            Self::Inline { signature, .. } => Some(signature),
            Self::Oversize { signature, .. } => signature.as_deref(),
            Self::NotStored | Self::Fetched { .. } | Self::Legacy => None,
        }
    }
}

/// The `oversize` member of a pointer record: the event's body is `s3://{bucket}/{key}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OversizePointer<'a> {
    /// The bucket holding the body.
    pub bucket: Cow<'a, str>,
    /// The object key.
    pub key: Cow<'a, str>,
    /// The body's length in bytes.
    pub bytes: u64,
    /// The body's SHA-256.
    pub sha256: [u8; 32],
}

impl OversizePointer<'_> {
    /// Checks a fetched body against the pointer's length and SHA-256.
    ///
    /// # Errors
    /// The first of the two that differs.
    pub fn check(&self, body: &[u8]) -> Result<(), OversizeMismatch> {
        let found = body.len() as u64;
        if found != self.bytes {
            return Err(OversizeMismatch::Length {
                expected: self.bytes,
                found,
            });
        }
        let digest: [u8; 32] = Sha256::digest(body).into();
        if digest != self.sha256 {
            return Err(OversizeMismatch::Sha256 {
                expected: hex::encode(self.sha256),
                found: hex::encode(digest),
            });
        }
        Ok(())
    }
}

/// A fetched oversize body that is not the one its pointer names.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum OversizeMismatch {
    /// Another length.
    #[error("the body is {found} bytes, the pointer says {expected}")]
    Length {
        /// The pointer's `bytes`.
        expected: u64,
        /// The fetched body's length.
        found: u64,
    },
    /// Another SHA-256.
    #[error("the body has sha256 {found}, the pointer says {expected}")]
    Sha256 {
        /// The pointer's `sha256`, hex.
        expected: String,
        /// The fetched body's, hex.
        found: String,
    },
}

/// One archived record, read from its line: every member of envelope v1 (or v2), typed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedRecord<'a> {
    /// When the webhook was received, or a fetched record fetched (`timestamp`).
    pub received_at: ReceivedAt,
    /// The event id (`id`).
    pub id: Cow<'a, str>,
    /// The event type (`type`).
    pub event_type: Cow<'a, str>,
    /// The event's `object` (`event`, `v2.core.event`).
    pub object: RawJson<'a>,
    /// The event's `created` (a Unix integer, or an ISO string for thin events).
    pub created: RawJson<'a>,
    /// The event's `livemode`.
    pub livemode: RawJson<'a>,
    /// The event's `api_version`.
    pub api_version: RawJson<'a>,
    /// The Connect account (`account`, or a thin event's `context`).
    pub account: RawJson<'a>,
    /// The event's `data`, compacted (`null` for thin events and oversize pointers).
    pub data: RawJson<'a>,
    /// Where the exact body is, and its signature.
    pub body: StoredBody<'a>,
}

/// Top-level members v1 and v2 define, in the order the writer writes them.
const MEMBERS: [(&str, &str); 14] = [
    ("v", "v"),
    ("timestamp", "timestamp"),
    ("id", "id"),
    ("type", "type"),
    ("object", "object"),
    ("created", "created"),
    ("livemode", "livemode"),
    ("api_version", "api_version"),
    ("account", "account"),
    ("data", "data"),
    ("raw", "raw"),
    ("signature", "signature"),
    ("oversize", "oversize"),
    ("fetched", "fetched"),
];

/// Members of the `fetched` object (and their names in errors).
const FETCHED_MEMBERS: [(&str, &str); 6] = [
    ("api", "fetched.api"),
    ("request", "fetched.request"),
    ("key", "fetched.key"),
    ("account", "fetched.account"),
    ("stripe_version", "fetched.stripe_version"),
    ("request_id", "fetched.request_id"),
];

/// Members of the `oversize` object (and their names in errors).
const POINTER_MEMBERS: [(&str, &str); 4] = [
    ("bucket", "oversize.bucket"),
    ("key", "oversize.key"),
    ("bytes", "oversize.bytes"),
    ("sha256", "oversize.sha256"),
];

impl<'a> ArchivedRecord<'a> {
    /// Reads one stored line (with or without its final `\n`).
    ///
    /// # Errors
    /// Why the line is not an envelope record, as the [module](self) describes.
    pub fn parse(line: &'a [u8]) -> Result<ArchivedRecord<'a>, ReadError> {
        let text = std::str::from_utf8(line).map_err(|e| ReadError::NotJson {
            what: "invalid UTF-8",
            offset: e.valid_up_to(),
        })?;
        let [
            v,
            timestamp,
            id,
            ty,
            object,
            created,
            livemode,
            api_version,
            account,
            data,
            raw,
            signature,
            oversize,
            fetched,
        ] = members(text, &MEMBERS)?.map_err(|found| ReadError::NotAnObject { found })?;

        let Some(v) = v else {
            // No `v`: a line of the Node service this one replaced, or not a record at all.
            let v1_members = [
                object,
                created,
                livemode,
                api_version,
                account,
                raw,
                signature,
                oversize,
                fetched,
            ];
            return legacy_record(timestamp, id, ty, data, &v1_members);
        };
        let is_fetched = match v {
            "1" => false,
            "2" => true,
            _ => {
                return Err(ReadError::UnknownVersion {
                    version: shortened(v),
                });
            }
        };
        let received_at =
            ReceivedAt::parse_rfc3339_millis(&required_string(timestamp, "timestamp")?).ok_or(
                ReadError::MistypedField {
                    field: "timestamp",
                    expected: "a UTC time of the form YYYY-MM-DDTHH:MM:SS.mmmZ",
                    found: "a string of another form",
                },
            )?;
        let id = required_string(id, "id")?;
        let event_type = required_string(ty, "type")?;
        let event_member = |token, field| required(token, field).map(RawJson);
        let object = event_member(object, "object")?;
        let created = event_member(created, "created")?;
        let livemode = event_member(livemode, "livemode")?;
        let api_version = event_member(api_version, "api_version")?;
        let account = event_member(account, "account")?;
        let data = event_member(data, "data")?;

        let body = if is_fetched {
            fetched_body(raw, signature, oversize, fetched)?
        } else {
            webhook_body(raw, signature, oversize, data)?
        };
        Ok(ArchivedRecord {
            received_at,
            id,
            event_type,
            object,
            created,
            livemode,
            api_version,
            account,
            data,
            body,
        })
    }
}

/// A legacy line (see [`StoredBody::Legacy`]): exactly the Node service's members `timestamp`
/// (in the writer's millisecond form, which is JavaScript's `toISOString()`), `type`, `id` and
/// `data`, and none that only v1 or v2 define. A line with any of those, or without one of the
/// four, is [`ReadError::MissingVersion`]: a record whose `v` was lost is never read as legacy.
fn legacy_record<'a>(
    timestamp: Option<&'a str>,
    id: Option<&'a str>,
    ty: Option<&'a str>,
    data: Option<&'a str>,
    v1_members: &[Option<&'a str>],
) -> Result<ArchivedRecord<'a>, ReadError> {
    let (Some(timestamp), Some(id), Some(ty), Some(data)) = (timestamp, id, ty, data) else {
        return Err(ReadError::MissingVersion);
    };
    if v1_members.iter().any(Option::is_some) {
        return Err(ReadError::MissingVersion);
    }
    let received_at = ReceivedAt::parse_rfc3339_millis(&string(timestamp, "timestamp")?).ok_or(
        ReadError::MistypedField {
            field: "timestamp",
            expected: "a UTC time of the form YYYY-MM-DDTHH:MM:SS.mmmZ",
            found: "a string of another form",
        },
    )?;
    const NULL: RawJson<'static> = RawJson("null");
    Ok(ArchivedRecord {
        received_at,
        id: string(id, "id")?,
        event_type: string(ty, "type")?,
        object: NULL,
        created: NULL,
        livemode: NULL,
        api_version: NULL,
        account: NULL,
        data: RawJson(data),
        body: StoredBody::Legacy,
    })
}

/// Where a webhook record (v1) keeps its body.
fn webhook_body<'a>(
    raw: Option<&'a str>,
    signature: Option<&'a str>,
    oversize: Option<&'a str>,
    data: RawJson<'a>,
) -> Result<StoredBody<'a>, ReadError> {
    const IN_S3: &str = "null (the body is in S3)";
    Ok(match (oversize, raw, signature) {
        (_, Some(_), None) => return Err(ReadError::MissingField { field: "signature" }),
        (_, None, Some(_)) => return Err(ReadError::MissingField { field: "raw" }),
        (None, None, None) => StoredBody::NotStored,
        (None, Some(raw), Some(signature)) => StoredBody::Inline {
            raw: json_string(raw, "raw")?,
            signature: string(signature, "signature")?,
        },
        (Some(pointer), raw, signature) => {
            if let Some(raw) = raw.filter(|r| *r != "null") {
                return Err(mistyped("raw", IN_S3, raw));
            }
            if !data.is_null() {
                return Err(mistyped("data", IN_S3, data.0));
            }
            StoredBody::Oversize {
                pointer: oversize_pointer(pointer)?,
                signature: signature.map(|s| string(s, "signature")).transpose()?,
            }
        }
    })
}

/// Where a fetched record (v2) keeps its body: always `raw`, with its `fetched` provenance.
fn fetched_body<'a>(
    raw: Option<&'a str>,
    signature: Option<&'a str>,
    oversize: Option<&'a str>,
    fetched: Option<&'a str>,
) -> Result<StoredBody<'a>, ReadError> {
    if signature.is_some() {
        return Err(ReadError::UnexpectedField { field: "signature" });
    }
    if oversize.is_some() {
        return Err(ReadError::UnexpectedField { field: "oversize" });
    }
    let raw = json_string(required(raw, "raw")?, "raw")?;
    Ok(StoredBody::Fetched {
        raw,
        fetched: fetched_provenance(required(fetched, "fetched")?)?,
    })
}

fn fetched_provenance(token: &str) -> Result<Fetched<'_>, ReadError> {
    let [api, request, key, account, stripe_version, request_id] =
        members(token, &FETCHED_MEMBERS)?.map_err(|_| mistyped("fetched", "an object", token))?;
    fn nullable<'t>(
        token: Option<&'t str>,
        field: &'static str,
    ) -> Result<Option<Cow<'t, str>>, ReadError> {
        match required(token, field)? {
            "null" => Ok(None),
            token => string(token, field).map(Some),
        }
    }
    Ok(Fetched {
        api: required_string(api, "fetched.api")?,
        request: required_string(request, "fetched.request")?,
        key: required_string(key, "fetched.key")?,
        account: nullable(account, "fetched.account")?,
        stripe_version: nullable(stripe_version, "fetched.stripe_version")?,
        request_id: nullable(request_id, "fetched.request_id")?,
    })
}

/// The values of the object members `text` names in `keys`, or the kind of value `text` is if
/// it is not an object.
fn members<'a, const N: usize>(
    text: &'a str,
    keys: &[(&str, &'static str); N],
) -> Result<Result<[Option<&'a str>; N], &'static str>, ReadError> {
    let mut found: [Option<&'a str>; N] = [None; N];
    let top = scan::scan_members(text.as_bytes(), |m| {
        let key = m.key_text(text);
        if let Some(i) = keys.iter().position(|(k, _)| *k == key) {
            if found[i].is_some() {
                return Err(ReadError::DuplicateField { field: keys[i].1 });
            }
            found[i] = Some(&text[m.value.start..m.value.end]);
        }
        Ok(())
    });
    match top {
        Ok(TopLevel::Object) => Ok(Ok(found)),
        Ok(TopLevel::Empty) => Ok(Err("empty")),
        Ok(TopLevel::Other(kind)) => Ok(Err(kind)),
        Err(ScanFailure::Syntax(e)) => Err(ReadError::NotJson {
            what: e.what,
            offset: e.offset,
        }),
        Err(ScanFailure::Member(e)) => Err(e),
    }
}

fn kind(token: &str) -> &'static str {
    scan::kind_of(token.as_bytes().first().copied().unwrap_or(b'n'))
}

fn mistyped(field: &'static str, expected: &'static str, token: &str) -> ReadError {
    ReadError::MistypedField {
        field,
        expected,
        found: kind(token),
    }
}

/// A member that must be present.
fn required<'a>(token: Option<&'a str>, field: &'static str) -> Result<&'a str, ReadError> {
    token.ok_or(ReadError::MissingField { field })
}

/// A string member as stored (not decoded).
fn json_string<'a>(token: &'a str, field: &'static str) -> Result<JsonString<'a>, ReadError> {
    if token.starts_with('"') {
        Ok(JsonString(token))
    } else {
        Err(mistyped(field, "a string", token))
    }
}

/// A string member, decoded.
fn string<'a>(token: &'a str, field: &'static str) -> Result<Cow<'a, str>, ReadError> {
    json_string(token, field).map(JsonString::decode)
}

/// A string member that must be present, decoded.
fn required_string<'a>(
    token: Option<&'a str>,
    field: &'static str,
) -> Result<Cow<'a, str>, ReadError> {
    string(required(token, field)?, field)
}

fn oversize_pointer(token: &str) -> Result<OversizePointer<'_>, ReadError> {
    let [bucket, key, bytes, sha256] =
        members(token, &POINTER_MEMBERS)?.map_err(|_| mistyped("oversize", "an object", token))?;
    let bucket = required_string(bucket, "oversize.bucket")?;
    let key = required_string(key, "oversize.key")?;
    let bytes_token = required(bytes, "oversize.bytes")?;
    let bytes = if bytes_token.bytes().all(|b| b.is_ascii_digit()) {
        bytes_token.parse().map_err(|_| ReadError::MistypedField {
            field: "oversize.bytes",
            expected: "a byte count",
            found: "a number out of range",
        })?
    } else {
        return Err(mistyped("oversize.bytes", "a byte count", bytes_token));
    };
    let sha256_text = required_string(sha256, "oversize.sha256")?;
    let mut digest = [0u8; 32];
    let lowercase_hex = sha256_text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lowercase_hex || hex::decode_to_slice(sha256_text.as_bytes(), &mut digest).is_err() {
        return Err(ReadError::MistypedField {
            field: "oversize.sha256",
            expected: "64 lowercase hex digits",
            found: "a string of another form",
        });
    }
    Ok(OversizePointer {
        bucket,
        key,
        bytes,
        sha256: digest,
    })
}

/// At most 32 characters of `text`, then `…`.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(32) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#""timestamp":"2026-11-26T22:14:41.123Z","id":"evt_1","type":"charge.succeeded","object":"event","created":1795731280,"livemode":false,"api_version":"2025-10-29.clover","account":null"#;
    const SHA: &str = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";

    fn line(members: &str) -> String {
        format!("{{\"v\":1,{HEAD},{members}}}")
    }

    fn parse(text: &str) -> Result<ArchivedRecord<'_>, ReadError> {
        ArchivedRecord::parse(text.as_bytes())
    }

    #[test]
    fn reads_node_service_lines_as_legacy_and_nothing_else() {
        let node = r#"{"timestamp":"2025-10-31T12:00:00.000Z","type":"charge.succeeded","id":"evt_123","data":{"object":{"id":"ch_1","amount":1.10}}}"#;
        let r = parse(node).expect("legacy");
        assert_eq!(r.body, StoredBody::Legacy);
        assert_eq!((&*r.id, &*r.event_type), ("evt_123", "charge.succeeded"));
        assert_eq!(r.received_at.unix_millis(), 1_761_912_000_000);
        assert_eq!(r.data.text(), r#"{"object":{"id":"ch_1","amount":1.10}}"#);
        assert!(r.livemode.is_null() && r.object.is_null() && r.account.is_null());
        assert_eq!(r.body.signature(), None);
        // A v1 record that lost its `v` is not legacy, whichever v1 member gives it away.
        for extra in [
            r#""object":"event""#,
            r#""livemode":false"#,
            r#""raw":"{}","signature":"t=1,v1=ab""#,
            r#""fetched":{}"#,
        ] {
            let text = format!("{},{extra}}}", node.strip_suffix('}').expect("object"));
            assert_eq!(parse(&text), Err(ReadError::MissingVersion), "{text}");
        }
        // Each of the four Node members is needed; the timestamp keeps its exact form.
        for member in [
            r#""timestamp":"2025-10-31T12:00:00.000Z","#,
            r#""type":"charge.succeeded","#,
            r#""id":"evt_123","#,
        ] {
            let text = node.replacen(member, "", 1);
            assert_eq!(parse(&text), Err(ReadError::MissingVersion), "{text}");
        }
        let text = node.replacen(r#","data":{"object":{"id":"ch_1","amount":1.10}}"#, "", 1);
        assert_eq!(parse(&text), Err(ReadError::MissingVersion), "{text}");
        let text = node.replacen(".000Z", "Z", 1);
        assert_eq!(parse(&text).map_err(|e| e.label()), Err("mistyped_field"));
        let text = node.replacen(r#""evt_123""#, "123", 1);
        assert_eq!(parse(&text).map_err(|e| e.label()), Err("mistyped_field"));
    }

    #[test]
    fn reads_every_member_of_a_full_record() {
        let text = line(
            r#""data":{"object":{"a":[1,{"b":null}],"fee":1.10}},"raw":"{\n  \"id\": \"evt_1\"\n}","signature":"t=1,v1=ab""#,
        ) + "\n";
        let r = parse(&text).expect("parse");
        assert_eq!(r.received_at.unix_millis(), 1_795_731_281_123);
        assert_eq!((&*r.id, &*r.event_type), ("evt_1", "charge.succeeded"));
        assert!(matches!(r.id, Cow::Borrowed(_)), "borrowed when unescaped");
        assert_eq!(r.object.as_string().as_deref(), Some("event"));
        assert_eq!(r.created.as_i64(), Some(1_795_731_280));
        assert_eq!(r.livemode.as_bool(), Some(false));
        assert_eq!(r.api_version.text(), "\"2025-10-29.clover\"");
        assert!(r.account.is_null());
        assert_eq!(
            r.data.text(),
            r#"{"object":{"a":[1,{"b":null}],"fee":1.10}}"#
        );
        assert_eq!(r.body.signature(), Some("t=1,v1=ab"));
        match r.body {
            StoredBody::Inline { raw, .. } => assert_eq!(raw.decode(), "{\n  \"id\": \"evt_1\"\n}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_raw_off_records_and_both_kinds_of_pointer() {
        let raw_off = line(r#""data":{}"#);
        let r = parse(&raw_off).expect("raw off");
        assert_eq!(r.body, StoredBody::NotStored);
        assert_eq!(r.body.signature(), None);

        let pointer = format!(
            r#""data":null,"raw":null,"signature":"t=1,v1=00","oversize":{{"bucket":"b","key":"oversize/k\"\n.json","bytes":12,"sha256":"{SHA}"}}"#
        );
        let pointer = line(&pointer);
        let r = parse(&pointer).expect("pointer");
        match &r.body {
            StoredBody::Oversize { pointer, signature } => {
                assert_eq!(
                    (&*pointer.bucket, &*pointer.key, pointer.bytes),
                    ("b", "oversize/k\"\n.json", 12)
                );
                assert_eq!(hex::encode(pointer.sha256), SHA);
                assert_eq!(signature.as_deref(), Some("t=1,v1=00"));
            }
            other => panic!("{other:?}"),
        }
        let raw_off_pointer = format!(
            r#""data":null,"oversize":{{"bucket":"b","key":"k","bytes":0,"sha256":"{SHA}"}}"#
        );
        let raw_off_pointer = line(&raw_off_pointer);
        let r = parse(&raw_off_pointer).expect("raw-off pointer");
        assert!(matches!(
            r.body,
            StoredBody::Oversize {
                signature: None,
                ..
            }
        ));
    }

    #[test]
    fn checks_a_fetched_body_against_its_pointer() {
        let body = b"{\"id\":\"evt_big\"}";
        let pointer = OversizePointer {
            bucket: "b".into(),
            key: "k".into(),
            bytes: body.len() as u64,
            sha256: Sha256::digest(body).into(),
        };
        assert_eq!(pointer.check(body), Ok(()));
        assert_eq!(
            pointer.check(b"{}"),
            Err(OversizeMismatch::Length {
                expected: body.len() as u64,
                found: 2
            })
        );
        let altered = b"{\"id\":\"evt_bi6\"}";
        let err = pointer.check(altered).unwrap_err();
        assert!(matches!(err, OversizeMismatch::Sha256 { .. }));
        assert!(err.to_string().contains("sha256"), "{err}");
    }

    #[test]
    fn escaped_keys_count_ignored_members_do_not() {
        // `\u0069d` is `id`: a second `id`.
        let dup = line(r#""data":null,"\u0069d":"evt_2""#);
        assert_eq!(parse(&dup), Err(ReadError::DuplicateField { field: "id" }));
        let extra = line(r#""data":null,"added_later":{"x":[1,2]},"id_":"x""#);
        assert_eq!(parse(&extra).expect("unknown members ignored").id, "evt_1");
        let escaped = format!(
            "{{\"v\":1,{}}}",
            HEAD.replace("\"id\":\"evt_1\"", "\"id\":\"evt_\\u00e9\"") + ",\"data\":null"
        );
        assert_eq!(parse(&escaped).expect("parse").id, "evt_é");
    }

    #[test]
    fn every_error_case() {
        use ReadError::*;
        let ok_tail = r#""data":null"#;
        let cases: Vec<(String, ReadError)> = vec![
            (
                "{\"v\":1,".to_owned(),
                NotJson {
                    what: "expected a string",
                    offset: 7,
                },
            ),
            (
                "garbage".to_owned(),
                NotJson {
                    what: "expected a value",
                    offset: 0,
                },
            ),
            (
                "{\"v\":1} x".to_owned(),
                NotJson {
                    what: "trailing characters after the JSON value",
                    offset: 8,
                },
            ),
            ("".to_owned(), NotAnObject { found: "empty" }),
            ("[1]".to_owned(), NotAnObject { found: "an array" }),
            ("\"v\"".to_owned(), NotAnObject { found: "a string" }),
            (format!("{{{HEAD},{ok_tail}}}"), MissingVersion),
            (
                format!("{{\"v\":3,{HEAD},{ok_tail}}}"),
                UnknownVersion {
                    version: "3".into(),
                },
            ),
            (
                format!("{{\"v\":2.0,{HEAD},{ok_tail}}}"),
                UnknownVersion {
                    version: "2.0".into(),
                },
            ),
            (
                format!("{{\"v\":\"1\",{HEAD},{ok_tail}}}"),
                UnknownVersion {
                    version: "\"1\"".into(),
                },
            ),
            (
                format!("{{\"v\":1.0,{HEAD},{ok_tail}}}"),
                UnknownVersion {
                    version: "1.0".into(),
                },
            ),
            (
                format!("{{\"v\":null,{HEAD},{ok_tail}}}"),
                UnknownVersion {
                    version: "null".into(),
                },
            ),
            (
                format!("{{\"v\":[{}],{HEAD}}}", "1,".repeat(20) + "1"),
                UnknownVersion {
                    version: format!("[{}…", "1,".repeat(15) + "1"),
                },
            ),
            (
                format!("{{\"v\":1,\"v\":1,{HEAD},{ok_tail}}}"),
                DuplicateField { field: "v" },
            ),
            (
                format!("{{\"v\":2,\"v\":1,{HEAD},{ok_tail}}}"),
                DuplicateField { field: "v" },
            ),
            (
                format!("{{\"v\":1,{HEAD}}}"),
                MissingField { field: "data" },
            ),
            (
                line(ok_tail).replace("\"timestamp\":\"2026-11-26T22:14:41.123Z\",", ""),
                MissingField { field: "timestamp" },
            ),
            (
                line(ok_tail).replace("\"id\":\"evt_1\",", ""),
                MissingField { field: "id" },
            ),
            (
                line(ok_tail).replace("\"type\":\"charge.succeeded\",", ""),
                MissingField { field: "type" },
            ),
            (
                line(ok_tail).replace("\"object\":\"event\",", ""),
                MissingField { field: "object" },
            ),
            (
                line(ok_tail).replace("\"created\":1795731280,", ""),
                MissingField { field: "created" },
            ),
            (
                line(ok_tail).replace("\"livemode\":false,", ""),
                MissingField { field: "livemode" },
            ),
            (
                line(ok_tail).replace("\"api_version\":\"2025-10-29.clover\",", ""),
                MissingField {
                    field: "api_version",
                },
            ),
            (
                line(ok_tail).replace(",\"account\":null", ""),
                MissingField { field: "account" },
            ),
            (
                line(ok_tail).replace("\"id\":\"evt_1\"", "\"id\":1"),
                MistypedField {
                    field: "id",
                    expected: "a string",
                    found: "a number",
                },
            ),
            (
                line(ok_tail).replace("\"type\":\"charge.succeeded\"", "\"type\":null"),
                MistypedField {
                    field: "type",
                    expected: "a string",
                    found: "null",
                },
            ),
            (
                line(ok_tail).replace("\"2026-11-26T22:14:41.123Z\"", "1795731281123"),
                MistypedField {
                    field: "timestamp",
                    expected: "a string",
                    found: "a number",
                },
            ),
            (
                line(ok_tail).replace("22:14:41.123Z", "22:14:41Z"),
                MistypedField {
                    field: "timestamp",
                    expected: "a UTC time of the form YYYY-MM-DDTHH:MM:SS.mmmZ",
                    found: "a string of another form",
                },
            ),
            (
                line(r#""data":null,"raw":"{}""#),
                MissingField { field: "signature" },
            ),
            (
                line(r#""data":null,"signature":"t=1,v1=00""#),
                MissingField { field: "raw" },
            ),
            (
                line(r#""data":null,"raw":null,"signature":"t=1,v1=00""#),
                MistypedField {
                    field: "raw",
                    expected: "a string",
                    found: "null",
                },
            ),
            (
                line(r#""data":null,"raw":"{}","signature":5"#),
                MistypedField {
                    field: "signature",
                    expected: "a string",
                    found: "a number",
                },
            ),
            (
                line(r#""data":null,"raw":"{}","signature":"s","oversize":{}"#),
                MistypedField {
                    field: "raw",
                    expected: "null (the body is in S3)",
                    found: "a string",
                },
            ),
            (
                line(r#""data":{},"oversize":{}"#),
                MistypedField {
                    field: "data",
                    expected: "null (the body is in S3)",
                    found: "an object",
                },
            ),
            (
                line(r#""data":null,"oversize":[]"#),
                MistypedField {
                    field: "oversize",
                    expected: "an object",
                    found: "an array",
                },
            ),
            (
                line(r#""data":null,"oversize":{"key":"k","bytes":1,"sha256":"00"}"#),
                MissingField {
                    field: "oversize.bucket",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":"b","bytes":1,"sha256":"{SHA}"}}"#
                )),
                MissingField {
                    field: "oversize.key",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":"b","key":"k","sha256":"{SHA}"}}"#
                )),
                MissingField {
                    field: "oversize.bytes",
                },
            ),
            (
                line(r#""data":null,"oversize":{"bucket":"b","key":"k","bytes":1}"#),
                MissingField {
                    field: "oversize.sha256",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":1,"key":"k","bytes":1,"sha256":"{SHA}"}}"#
                )),
                MistypedField {
                    field: "oversize.bucket",
                    expected: "a string",
                    found: "a number",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":"b","key":"k","bytes":-1,"sha256":"{SHA}"}}"#
                )),
                MistypedField {
                    field: "oversize.bytes",
                    expected: "a byte count",
                    found: "a number",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":"b","key":"k","bytes":"1","sha256":"{SHA}"}}"#
                )),
                MistypedField {
                    field: "oversize.bytes",
                    expected: "a byte count",
                    found: "a string",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":"b","key":"k","bytes":99999999999999999999,"sha256":"{SHA}"}}"#
                )),
                MistypedField {
                    field: "oversize.bytes",
                    expected: "a byte count",
                    found: "a number out of range",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":"b","key":"k","bytes":1,"sha256":"{}"}}"#,
                    SHA.to_uppercase()
                )),
                MistypedField {
                    field: "oversize.sha256",
                    expected: "64 lowercase hex digits",
                    found: "a string of another form",
                },
            ),
            (
                line(r#""data":null,"oversize":{"bucket":"b","key":"k","bytes":1,"sha256":"abc"}"#),
                MistypedField {
                    field: "oversize.sha256",
                    expected: "64 lowercase hex digits",
                    found: "a string of another form",
                },
            ),
            (
                line(&format!(
                    r#""data":null,"oversize":{{"bucket":"b","bucket":"c","key":"k","bytes":1,"sha256":"{SHA}"}}"#
                )),
                DuplicateField {
                    field: "oversize.bucket",
                },
            ),
            (
                line(r#""data":null,"data":null"#),
                DuplicateField { field: "data" },
            ),
        ];
        for (text, expected) in cases {
            let got = parse(&text).unwrap_err();
            assert_eq!(got, expected, "{text}");
            assert!(!got.to_string().is_empty());
        }
        assert_eq!(
            ArchivedRecord::parse(b"{\"v\":\"\xff\"}"),
            Err(NotJson {
                what: "invalid UTF-8",
                offset: 6
            })
        );
    }

    #[test]
    fn labels_are_stable_snake_case() {
        use ReadError::*;
        let all = [
            (
                NotJson {
                    what: "x",
                    offset: 0,
                },
                "not_json",
            ),
            (NotAnObject { found: "null" }, "not_an_object"),
            (MissingVersion, "missing_version"),
            (
                UnknownVersion {
                    version: "2".into(),
                },
                "unknown_version",
            ),
            (MissingField { field: "id" }, "missing_field"),
            (
                MistypedField {
                    field: "id",
                    expected: "a string",
                    found: "null",
                },
                "mistyped_field",
            ),
            (DuplicateField { field: "id" }, "duplicate_field"),
            (UnexpectedField { field: "signature" }, "unexpected_field"),
        ];
        for (e, label) in all {
            assert_eq!(e.label(), label);
        }
        assert_eq!(
            UnknownVersion {
                version: "2".into()
            }
            .to_string(),
            "unknown envelope version 2 (this reader knows versions 1 and 2)"
        );
        assert_eq!(
            MissingVersion.to_string(),
            "no envelope version: the record has no `v` (and is not a Node service line of exactly `timestamp`, `type`, `id`, `data`)"
        );
    }

    const FETCHED: &str = r#""fetched":{"api":"https://api.stripe.com","request":"GET /v1/events/evt_1","key":"rk_live_...abcd","account":"acct_\u0031","stripe_version":null,"request_id":"req_1"}"#;

    fn fetched_line(members: &str) -> String {
        format!("{{\"v\":2,{HEAD},{members}}}")
    }

    #[test]
    fn reads_a_fetched_record() {
        let text = fetched_line(&format!(
            r#""data":{{"object":{{}}}},"raw":"{{\"id\":\"evt_1\"}}",{FETCHED}"#
        ));
        let r = parse(&text).expect("fetched record");
        assert_eq!(
            (&*r.id, r.received_at.unix_millis()),
            ("evt_1", 1_795_731_281_123)
        );
        assert_eq!(r.body.signature(), None, "never signed");
        match &r.body {
            StoredBody::Fetched { raw, fetched } => {
                assert_eq!(raw.decode(), "{\"id\":\"evt_1\"}");
                assert_eq!(
                    fetched,
                    &Fetched {
                        api: "https://api.stripe.com".into(),
                        request: "GET /v1/events/evt_1".into(),
                        key: "rk_live_...abcd".into(),
                        account: Some("acct_1".into()),
                        stripe_version: None,
                        request_id: Some("req_1".into()),
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        // What encode_fetched writes reads back to what it was given.
        let body = bytes::Bytes::from_static(b"{\n  \"id\": \"evt_2\",\n  \"type\": \"v1.billing.meter.error_report_triggered\",\n  \"object\": \"v2.core.event\",\n  \"created\": \"2026-11-26T22:14:40.001Z\",\n  \"context\": \"acct_9\"\n}");
        let fetched = Fetched {
            api: "http://127.0.0.1:1".into(),
            request: "GET /v2/core/events/evt_2".into(),
            key: "sk_test_...wxyz".into(),
            account: None,
            stripe_version: Some("2025-10-29.clover".into()),
            request_id: None,
        };
        let at = ReceivedAt::from_unix_millis(1_795_731_281_123);
        let written = crate::encode_fetched(body.clone(), &fetched, at).expect("encode");
        let r = parse(std::str::from_utf8(written.line()).expect("utf-8")).expect("read back");
        assert_eq!(r.account.as_string().as_deref(), Some("acct_9"));
        assert_eq!(
            r.created.as_string().as_deref(),
            Some("2026-11-26T22:14:40.001Z")
        );
        match r.body {
            StoredBody::Fetched { raw, fetched: read } => {
                assert_eq!(raw.decode().as_bytes(), &body[..]);
                assert_eq!(read, fetched);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_fetched_records_that_claim_a_signature_or_lack_provenance() {
        use ReadError::*;
        let cases: Vec<(String, ReadError)> = vec![
            (
                fetched_line(&format!(
                    r#""data":null,"raw":"{{}}","signature":"t=1,v1=00",{FETCHED}"#
                )),
                UnexpectedField { field: "signature" },
            ),
            (
                fetched_line(&format!(
                    r#""data":null,"raw":null,{FETCHED},"oversize":{{"bucket":"b","key":"k","bytes":1,"sha256":"{SHA}"}}"#
                )),
                UnexpectedField { field: "oversize" },
            ),
            (
                fetched_line(&format!(r#""data":null,{FETCHED}"#)),
                MissingField { field: "raw" },
            ),
            (
                fetched_line(&format!(r#""data":null,"raw":null,{FETCHED}"#)),
                MistypedField {
                    field: "raw",
                    expected: "a string",
                    found: "null",
                },
            ),
            (
                fetched_line(r#""data":null,"raw":"{}""#),
                MissingField { field: "fetched" },
            ),
            (
                fetched_line(r#""data":null,"raw":"{}","fetched":"api""#),
                MistypedField {
                    field: "fetched",
                    expected: "an object",
                    found: "a string",
                },
            ),
            (
                fetched_line(&format!(
                    r#""data":null,"raw":"{{}}",{}"#,
                    FETCHED.replace(r#""key":"rk_live_...abcd","#, "")
                )),
                MissingField {
                    field: "fetched.key",
                },
            ),
            (
                fetched_line(&format!(
                    r#""data":null,"raw":"{{}}",{}"#,
                    FETCHED.replace(r#","request_id":"req_1""#, "")
                )),
                MissingField {
                    field: "fetched.request_id",
                },
            ),
            (
                fetched_line(&format!(
                    r#""data":null,"raw":"{{}}",{}"#,
                    FETCHED.replace(r#""api":"https://api.stripe.com""#, r#""api":null"#)
                )),
                MistypedField {
                    field: "fetched.api",
                    expected: "a string",
                    found: "null",
                },
            ),
            (
                fetched_line(&format!(
                    r#""data":null,"raw":"{{}}",{}"#,
                    FETCHED.replace(r#""stripe_version":null"#, r#""stripe_version":2"#)
                )),
                MistypedField {
                    field: "fetched.stripe_version",
                    expected: "a string",
                    found: "a number",
                },
            ),
            (
                fetched_line(&format!(
                    r#""data":null,"raw":"{{}}",{}"#,
                    FETCHED.replace(r#""key":"#, r#""key":"a","key":"#)
                )),
                DuplicateField {
                    field: "fetched.key",
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(&text).unwrap_err(), expected, "{text}");
        }
        // A v1 line with a `fetched` member is read as v1 (the member is not v1's): it still
        // needs its signature, and it is not a fetched record.
        let v1 = line(&format!(
            r#""data":null,"raw":"{{}}","signature":"s",{FETCHED}"#
        ));
        assert!(matches!(
            parse(&v1).expect("v1").body,
            StoredBody::Inline { .. }
        ));
    }

    #[test]
    fn raw_json_accessors() {
        assert_eq!(RawJson("\"a\\nb\"").as_string().as_deref(), Some("a\nb"));
        assert_eq!(RawJson("1").as_string(), None);
        assert_eq!(RawJson("-12").as_i64(), Some(-12));
        assert_eq!(RawJson("1.5").as_i64(), None);
        assert_eq!(RawJson("1e3").as_i64(), None);
        assert_eq!(RawJson("\"5\"").as_i64(), None);
        assert_eq!(RawJson("true").as_bool(), Some(true));
        assert_eq!(RawJson("null").as_bool(), None);
        assert_eq!(RawJson("{}").to_string(), "{}");
    }
}
