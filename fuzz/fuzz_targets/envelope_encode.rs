//! Fuzz `encode` on arbitrary bytes (as a verified body). Oracles:
//! - nothing panics;
//! - on success the record is one line ending in exactly one `\n` (no other `\n` or `\r`),
//!   parses as JSON, its `raw` decodes to exactly the input and its `signature` to the header,
//!   `id`/`type` match the record's meta, and the body itself parses as JSON (grammar);
//! - the oversize pointer of a success is one line of JSON too.
#![no_main]

use bytes::Bytes;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};

const SIGNATURE: &str =
    "t=1762935172,v1=7d2f0c6e8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d";

fn assert_one_line(line: &[u8]) {
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(
        !line[..line.len() - 1]
            .iter()
            .any(|&b| b == b'\n' || b == b'\r')
    );
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let at = ReceivedAt::from_unix_millis(1_762_935_172_345);
    let Ok(record) = encode(
        Bytes::copy_from_slice(data),
        SIGNATURE,
        at,
        &EnvelopeOptions::default(),
    ) else {
        return;
    };
    let line = record.line();
    assert_one_line(line);
    // Grammar-level parses (RawValue checks syntax, not number ranges): the encoder accepts
    // grammar-valid numbers such as 1e999 that a `Value` would refuse.
    assert!(serde_json::from_slice::<Box<RawValue>>(data).is_ok());
    let rec: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(line).expect("the record is JSON");
    let string = |k: &str| serde_json::from_str::<String>(rec[k].get()).expect("a string");
    assert_eq!(string("raw").as_bytes(), data);
    assert_eq!(string("signature"), SIGNATURE);
    assert_eq!(string("id"), record.id());
    assert_eq!(string("type"), record.event_type());
    let pointer = record.oversize_pointer("bucket", "oversize/key");
    assert_one_line(pointer.line());
    let p: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(pointer.line()).expect("the pointer is JSON");
    assert_eq!(p["data"].get(), "null");
    assert!(
        p["oversize"]
            .get()
            .contains(&format!("\"bytes\":{},", data.len()))
    );
});
