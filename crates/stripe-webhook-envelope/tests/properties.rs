//! Properties of `encode` over generated JSON: arbitrary values with random insignificant
//! whitespace, string escapes (short, `\u`, surrogate pairs), arbitrary Unicode and numbers in
//! many textual forms; plus arbitrary and mutated bytes checked against `serde_json`. And of
//! the reader: every record `encode` writes reads back to what was written, and arbitrary or
//! mutated lines never panic it and are accepted only as what `serde_json` also reads.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;
use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};
use stripe_webhook_envelope::{
    EnvelopeError, EnvelopeOptions, Fetched, ReceivedAt, encode, encode_fetched,
};

/// A generated JSON value: its pretty text (with random whitespace) and the same tokens with
/// no whitespace between them.
#[derive(Clone, Debug)]
struct Json {
    pretty: String,
    compact: String,
}

impl Json {
    fn token(t: String) -> Self {
        Self {
            pretty: t.clone(),
            compact: t,
        }
    }
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => "[ \t\n\r]{1,4}",
        1 => (0usize..6).prop_map(|depth| format!("\n{}", "  ".repeat(depth))),
    ]
}

/// One piece of string content, as written inside the quotes.
fn string_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<char>()
            .prop_filter("needs escaping", |c| *c >= ' ' && *c != '"' && *c != '\\')
            .prop_map(String::from),
        1 => prop::sample::select(vec!["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"])
            .prop_map(str::to_owned),
        // A BMP code unit (not a surrogate), hex in either case.
        1 => (any::<char>().prop_filter("BMP", |c| (*c as u32) < 0x10000), any::<bool>())
            .prop_map(|(c, upper)| {
                let s = format!("\\u{:04x}", c as u32);
                if upper { s.to_uppercase().replace("\\U", "\\u") } else { s }
            }),
        // A supplementary character as an escaped surrogate pair.
        1 => (0x10000u32..=0x10FFFF).prop_map(|cp| {
            let v = cp - 0x10000;
            format!("\\u{:04X}\\u{:04x}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
        }),
        1 => (0u8..0x20).prop_map(|b| format!("\\u{b:04x}")),
        1 => Just("Zoë Ångström 東京 😀 \u{2028}\u{2029}".to_owned()),
    ]
}

fn string_token() -> impl Strategy<Value = String> {
    prop::collection::vec(string_piece(), 0..8).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn number_token() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,15})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?"
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number_token(),
        string_token(),
    ]
    .prop_map(Json::token);
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (
                prop::collection::vec((ws(), inner.clone(), ws()), 0..6),
                ws()
            )
                .prop_map(|(items, empty_ws)| {
                    let pretty: Vec<String> = items
                        .iter()
                        .map(|(a, v, b)| format!("{a}{}{b}", v.pretty))
                        .collect();
                    let compact: Vec<&str> = items.iter().map(|(_, v, _)| &*v.compact).collect();
                    Json {
                        pretty: if items.is_empty() {
                            format!("[{empty_ws}]")
                        } else {
                            format!("[{}]", pretty.join(","))
                        },
                        compact: format!("[{}]", compact.join(",")),
                    }
                }),
            (
                prop::collection::vec((ws(), string_token(), ws(), ws(), inner, ws()), 0..6),
                ws()
            )
                .prop_map(|(members, empty_ws)| {
                    let pretty: Vec<String> = members
                        .iter()
                        .map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{}{d}", v.pretty))
                        .collect();
                    let compact: Vec<String> = members
                        .iter()
                        .map(|(_, k, _, _, v, _)| format!("{k}:{}", v.compact))
                        .collect();
                    Json {
                        pretty: if members.is_empty() {
                            format!("{{{empty_ws}}}")
                        } else {
                            format!("{{{}}}", pretty.join(","))
                        },
                        compact: format!("{{{}}}", compact.join(",")),
                    }
                }),
        ]
    })
}

/// A generated event body: id, type, data and a filler member in random order, random whitespace.
#[derive(Clone, Debug)]
struct Event {
    body: String,
    id: String,
    ty: String,
    data: Json,
}

fn event() -> impl Strategy<Value = Event> {
    (
        string_token(),
        string_token(),
        json(),
        json(),
        Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        prop::collection::vec(ws(), 18),
    )
        .prop_map(|(id, ty, data, filler, order, w)| {
            let members: Vec<String> = order
                .iter()
                .enumerate()
                .map(|(i, &m)| {
                    let (k, v) = match m {
                        0 => ("\"id\"", id.as_str()),
                        1 => ("\"type\"", ty.as_str()),
                        2 => ("\"data\"", data.pretty.as_str()),
                        _ => ("\"request\"", filler.pretty.as_str()),
                    };
                    format!(
                        "{}{k}{}:{}{v}{}",
                        w[4 * i],
                        w[4 * i + 1],
                        w[4 * i + 2],
                        w[4 * i + 3]
                    )
                })
                .collect();
            Event {
                body: format!("{}{{{}}}{}", w[16], members.join(","), w[17]),
                id,
                ty,
                data,
            }
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine<'a> {
    v: u8,
    timestamp: String,
    id: String,
    #[serde(rename = "type")]
    ty: String,
    object: Option<IgnoredAny>,
    created: Option<IgnoredAny>,
    livemode: Option<IgnoredAny>,
    api_version: Option<IgnoredAny>,
    account: Option<IgnoredAny>,
    #[serde(borrow)]
    data: &'a RawValue,
    raw: Option<String>,
    signature: Option<String>,
}

const AT: ReceivedAt = ReceivedAt::from_unix_millis(1_795_731_281_123);

fn assert_one_line(line: &[u8]) {
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(
        !line[..line.len() - 1]
            .iter()
            .any(|&b| b == b'\n' || b == b'\r')
    );
}

/// A syntax-level outcome: did the encoder accept the bytes as JSON?
fn accepted_as_json(r: &Result<stripe_webhook_envelope::Record, EnvelopeError>) -> bool {
    !matches!(
        r,
        Err(EnvelopeError::NotJson { .. } | EnvelopeError::EmptyBody)
    )
}

/// The encoder agrees with serde_json: whatever serde_json parses (as a `Value`, which checks
/// surrogates) the encoder accepts as JSON; whatever the encoder accepts, serde_json's
/// grammar-only parser (`IgnoredAny`, no number range or surrogate checks) accepts; and a
/// parsed object with string `id` and `type` is only refused for a duplicate member.
fn check_against_serde_json(bytes: &[u8]) {
    let r = encode(
        Bytes::copy_from_slice(bytes),
        "t=1,v1=00",
        AT,
        &EnvelopeOptions::default(),
    );
    let value = serde_json::from_slice::<Value>(bytes);
    if value.is_ok() {
        assert!(accepted_as_json(&r), "serde_json parsed it: {r:?}");
    }
    if accepted_as_json(&r) {
        assert!(serde_json::from_slice::<IgnoredAny>(bytes).is_ok(), "{r:?}");
    }
    if let Ok(v) = value
        && v.get("id").is_some_and(Value::is_string)
        && v.get("type").is_some_and(Value::is_string)
    {
        assert!(
            matches!(r, Ok(_) | Err(EnvelopeError::DuplicateField { .. })),
            "{r:?}"
        );
    }
    if let Ok(record) = r {
        assert_one_line(record.line());
        let rec: RecordLine<'_> = serde_json::from_slice(record.line()).unwrap();
        assert_eq!(rec.raw.unwrap().as_bytes(), bytes);
    }
}

/// The reader agrees with serde_json on any line: it never panics; what it accepts is a JSON
/// object whose `v` is `1` (or `2` for a fetched record) and whose `id`, `type`, `timestamp`
/// and `data` are what serde_json reads there.
///
/// JSON's grammar admits numbers of any size (RFC 8259 §6 leaves their range to
/// implementations), and the reader keeps them: an archived event is never refused for the size
/// of a number in it. serde_json's `Value` refuses numbers beyond `f64` ("number out of range"),
/// so the line is checked against the grammar with `IgnoredAny` (which evaluates no number), its
/// members are read raw, and each is compared as a `Value`, or as text where `Value` cannot
/// hold it.
fn check_reader_against_serde_json(line: &[u8]) {
    let Ok(record) = ArchivedRecord::parse(line) else {
        return;
    };
    serde_json::from_slice::<IgnoredAny>(line).expect("accepted lines are JSON");
    // Like `Value`'s map, a repeated member keeps its last value.
    let members: BTreeMap<String, &RawValue> =
        serde_json::from_slice(line).expect("accepted lines are JSON objects");
    let text = |key: &str| members.get(key).map_or("null", |raw| raw.get());
    let member = |key: &str| -> Value {
        serde_json::from_str(text(key)).expect("a named member is JSON of ordinary numbers")
    };
    let fetched = matches!(record.body, StoredBody::Fetched { .. });
    assert_eq!(member("v"), if fetched { 2 } else { 1 });
    assert_eq!(member("id").as_str(), Some(&*record.id));
    assert_eq!(member("type").as_str(), Some(&*record.event_type));
    assert_eq!(
        member("timestamp").as_str(),
        Some(&*record.received_at.rfc3339_millis())
    );
    let data = record.data.text();
    match (
        serde_json::from_str::<Value>(data),
        serde_json::from_str::<Value>(text("data")),
    ) {
        (Ok(read), Ok(expected)) => assert_eq!(read, expected),
        _ => {
            serde_json::from_str::<IgnoredAny>(data).expect("data is JSON");
            let json_ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
            assert_eq!(
                data.trim_matches(json_ws),
                text("data").trim_matches(json_ws)
            );
        }
    }
    match &record.body {
        StoredBody::Inline { raw, signature } => {
            assert_eq!(member("raw").as_str(), Some(&*raw.decode()));
            assert_eq!(member("signature").as_str(), Some(&**signature));
        }
        StoredBody::Fetched { raw, fetched } => {
            assert_eq!(member("raw").as_str(), Some(&*raw.decode()));
            assert!(!members.contains_key("signature") && !members.contains_key("oversize"));
            let f = member("fetched");
            assert_eq!(f["api"].as_str(), Some(&*fetched.api));
            assert_eq!(f["request"].as_str(), Some(&*fetched.request));
            assert_eq!(f["key"].as_str(), Some(&*fetched.key));
            assert_eq!(f["account"].as_str(), fetched.account.as_deref());
            assert_eq!(
                f["stripe_version"].as_str(),
                fetched.stripe_version.as_deref()
            );
            assert_eq!(f["request_id"].as_str(), fetched.request_id.as_deref());
        }
        _ => {}
    }
}

/// A number beyond `f64` is JSON all the same: the writer archives the event and the reader reads
/// it back, byte for byte, where serde_json's `Value` refuses both.
#[test]
fn numbers_beyond_f64_are_archived_and_read_back() {
    let body: &[u8] =
        br#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"amount":1e400,"fee":-0.1e310}}}"#;
    assert!(
        serde_json::from_slice::<Value>(body).is_err(),
        "out of f64's range"
    );
    let options = EnvelopeOptions::default().include_raw(true);
    let written = encode(Bytes::from_static(body), "t=1,v1=00", AT, &options).unwrap();
    let record = ArchivedRecord::parse(written.line()).unwrap();
    assert_eq!(
        record.data.text(),
        r#"{"object":{"amount":1e400,"fee":-0.1e310}}"#
    );
    match &record.body {
        StoredBody::Inline { raw, .. } => assert_eq!(raw.decode().as_bytes(), body),
        other => panic!("expected an inline body: {other:?}"),
    }
    check_reader_against_serde_json(written.line());
}

fn fetched_provenance() -> impl Strategy<Value = Fetched<'static>> {
    (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        any::<Option<String>>(),
        any::<Option<String>>(),
        any::<Option<String>>(),
    )
        .prop_map(
            |(api, request, key, account, stripe_version, request_id)| Fetched {
                api: api.into(),
                request: request.into(),
                key: key.into(),
                account: account.map(Into::into),
                stripe_version: stripe_version.map(Into::into),
                request_id: request_id.map(Into::into),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_encoded_record_reads_back_to_what_was_written(
        ev in event(),
        signature in any::<String>(),
        raw in any::<bool>(),
        millis in -62_135_596_800_000i64..253_402_300_800_000,
        key in any::<String>(),
    ) {
        let at = ReceivedAt::from_unix_millis(millis);
        let body = Bytes::from(ev.body.clone());
        let options = EnvelopeOptions::default().include_raw(raw);
        let written = encode(body.clone(), &signature, at, &options).unwrap();
        let read = ArchivedRecord::parse(written.line()).unwrap();
        prop_assert_eq!(&*read.id, written.id());
        prop_assert_eq!(&*read.event_type, written.event_type());
        prop_assert_eq!(read.received_at, at);
        prop_assert_eq!(read.data.text(), ev.data.compact.as_str());
        prop_assert!(read.object.is_null() && read.created.is_null() && read.livemode.is_null());
        prop_assert!(read.api_version.is_null() && read.account.is_null());
        match &read.body {
            StoredBody::Inline { raw: stored, signature: stored_signature } => {
                prop_assert!(raw);
                let decoded = stored.decode();
                prop_assert_eq!(decoded.as_bytes(), &body[..]);
                prop_assert_eq!(&**stored_signature, signature.as_str());
            }
            StoredBody::NotStored => prop_assert!(!raw),
            other => prop_assert!(false, "{:?}", other),
        }
        check_reader_against_serde_json(written.line());

        let pointer = written.oversize_pointer("bucket", &key);
        let read = ArchivedRecord::parse(pointer.line()).unwrap();
        prop_assert_eq!(&*read.id, written.id());
        prop_assert!(read.data.is_null());
        match &read.body {
            StoredBody::Oversize { pointer, signature: stored_signature } => {
                prop_assert_eq!(&*pointer.bucket, "bucket");
                prop_assert_eq!(&*pointer.key, key.as_str());
                prop_assert_eq!(pointer.check(&body), Ok(()));
                prop_assert_eq!(stored_signature.as_deref(), raw.then_some(signature.as_str()));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn every_fetched_record_reads_back_to_what_was_written(
        ev in event(),
        fetched in fetched_provenance(),
        millis in -62_135_596_800_000i64..253_402_300_800_000,
    ) {
        let at = ReceivedAt::from_unix_millis(millis);
        let body = Bytes::from(ev.body.clone());
        let written = encode_fetched(body.clone(), &fetched, at).unwrap();
        assert_one_line(written.line());
        prop_assert!(written.is_fetched());
        let webhook = encode(body.clone(), "", at, &EnvelopeOptions::default()).unwrap();
        // Members 2 to 11 are the webhook record's: only `v` and the tail differ.
        let tail = written.line().len() - written.line().windows(11).rposition(|w| w == b",\"fetched\":").unwrap();
        let webhook_tail = webhook.line().len() - webhook.line().windows(13).rposition(|w| w == b",\"signature\":").unwrap();
        prop_assert_eq!(&written.line()[7..written.line().len() - tail], &webhook.line()[7..webhook.line().len() - webhook_tail]);
        let read = ArchivedRecord::parse(written.line()).unwrap();
        prop_assert_eq!(&*read.id, written.id());
        prop_assert_eq!(read.received_at, at);
        prop_assert_eq!(read.data.text(), ev.data.compact.as_str());
        match &read.body {
            StoredBody::Fetched { raw, fetched: stored } => {
                let decoded = raw.decode();
                prop_assert_eq!(decoded.as_bytes(), &body[..]);
                prop_assert_eq!(stored, &fetched);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let pointer = written.oversize_pointer("b", "k");
        prop_assert_eq!(pointer.line(), written.line());
        check_reader_against_serde_json(written.line());
    }

    #[test]
    fn arbitrary_lines_never_panic_the_reader(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_reader_against_serde_json(&bytes);
    }

    #[test]
    fn mutated_records_never_panic_the_reader_and_agree_with_serde_json(
        ev in event(),
        raw in any::<bool>(),
        kind in 0u8..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
    ) {
        let body = Bytes::from(ev.body);
        let written = encode(
            body.clone(),
            "t=1,v1=00",
            AT,
            &EnvelopeOptions::default().include_raw(raw),
        )
        .unwrap();
        let written = match kind {
            0 => written,
            1 => written.oversize_pointer("b", "k"),
            _ => {
                let fetched = Fetched {
                    api: "https://api.stripe.com".into(),
                    request: "GET /v1/events/evt_1".into(),
                    key: "rk_test_...abcd".into(),
                    account: None,
                    stripe_version: Some("2025-10-29.clover".into()),
                    request_id: Some("req_1".into()),
                };
                encode_fetched(body, &fetched, AT).unwrap()
            }
        };
        let mut bytes = written.line().to_vec();
        for (at, op, byte) in edits {
            const ALPHABET: &[u8] = b"{}[]\",:\\ \n0-.eEtnu12vT";
            let byte = ALPHABET[usize::from(byte) % ALPHABET.len()];
            let i = at.index(bytes.len());
            match op {
                0 => { bytes.remove(i); }
                1 => bytes.insert(i, byte),
                _ => bytes[i] = byte,
            }
            if bytes.is_empty() {
                bytes.push(byte);
            }
        }
        check_reader_against_serde_json(&bytes);
    }

    #[test]
    fn generated_events_round_trip(ev in event(), signature in any::<String>(), raw in any::<bool>()) {
        let options = EnvelopeOptions::default().include_raw(raw);
        let body = Bytes::from(ev.body.clone());
        let record = encode(body.clone(), &signature, AT, &options).unwrap();
        let line = record.line();
        assert_one_line(line);

        let rec: RecordLine<'_> = serde_json::from_slice(line).unwrap();
        prop_assert_eq!(rec.v, 1);
        prop_assert_eq!(rec.timestamp, AT.rfc3339_millis());
        // data: exactly the original tokens without whitespace, and the same value.
        prop_assert_eq!(rec.data.get(), ev.data.compact.as_str());
        let body_value: Value = serde_json::from_str(&ev.body).unwrap();
        let rec_data: Value = serde_json::from_str(rec.data.get()).unwrap();
        prop_assert_eq!(&rec_data, &body_value["data"]);
        // id and type: decoded for the meta, verbatim in the line.
        prop_assert_eq!(&rec.id, body_value["id"].as_str().unwrap());
        prop_assert_eq!(record.id(), rec.id.as_str());
        prop_assert_eq!(&rec.ty, body_value["type"].as_str().unwrap());
        prop_assert_eq!(record.event_type(), rec.ty.as_str());
        let text = std::str::from_utf8(line).unwrap();
        let id_type = format!(",\"id\":{},\"type\":{},", ev.id, ev.ty);
        prop_assert!(text.contains(&id_type));
        prop_assert!(rec.object.is_none() && rec.created.is_none() && rec.livemode.is_none());
        prop_assert!(rec.api_version.is_none() && rec.account.is_none());
        if raw {
            prop_assert_eq!(rec.raw.as_deref(), Some(ev.body.as_str()));
            prop_assert_eq!(rec.signature.unwrap(), signature.clone());
        } else {
            prop_assert!(rec.raw.is_none() && rec.signature.is_none());
        }
        prop_assert_eq!(record.body(), &body);
        prop_assert_eq!(record.signature_header(), signature.as_str());

        let pointer = record.oversize_pointer("bucket", "oversize/key");
        assert_one_line(pointer.line());
        let p: Value = serde_json::from_slice(pointer.line()).unwrap();
        prop_assert!(p["data"].is_null());
        prop_assert_eq!(&p["oversize"]["bytes"], &Value::from(ev.body.len()));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_serde_json(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_against_serde_json(&bytes);
    }

    #[test]
    fn mutated_events_agree_with_serde_json(
        ev in event(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
    ) {
        let mut bytes = ev.body.into_bytes();
        for (at, op, byte) in edits {
            const ALPHABET: &[u8] = b"{}[]\",:\\ \n0-.eEtnu1";
            let byte = ALPHABET[usize::from(byte) % ALPHABET.len()];
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => { bytes.remove(i); }
                1 => bytes.insert(i, byte),
                _ => bytes[i] = byte,
            }
        }
        check_against_serde_json(&bytes);
    }
}
