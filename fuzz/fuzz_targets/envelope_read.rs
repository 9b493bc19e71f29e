//! Fuzz the archive reader, `read::ArchivedRecord::parse`, on arbitrary bytes (an archive line
//! from anyone who can write to the archive). Oracles:
//! - nothing panics, and a final `\n` changes nothing (but the offset of a syntax error);
//! - on success the line is a JSON object (per `serde_json`'s grammar) with `"v":1` (a webhook
//!   record) or `"v":2` (a record fetched from Stripe's API), and every member the record reports
//!   is what `serde_json` reads there: `id`, `type`, `timestamp` (formatting the parsed time gives
//!   back the stored text), the event members' exact JSON text, `raw` (decoded) and `signature`,
//!   the oversize pointer's bucket, key, size and hex SHA-256, or the `fetched` provenance;
//! - a legacy record (the Node service's line) has no `v`, exactly its four members among those
//!   v1 and v2 define, and reads as `null` where those members are absent.
#![no_main]

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};

/// An object's members as their JSON text (grammar only: numbers such as 1e999 are kept).
type Members = BTreeMap<String, Box<RawValue>>;

fn string(members: &Members, key: &str) -> Option<String> {
    serde_json::from_str(members.get(key)?.get()).ok()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let result = ArchivedRecord::parse(data);
    let mut with_newline = data.to_vec();
    with_newline.push(b'\n');
    assert_eq!(
        ArchivedRecord::parse(&with_newline).map_err(|e| e.label()),
        result.clone().map_err(|e| e.label())
    );
    let Ok(record) = result else {
        return;
    };
    let members: Members = serde_json::from_slice(data).expect("an accepted line is a JSON object");
    let fetched = matches!(record.body, StoredBody::Fetched { .. });
    let legacy = record.body == StoredBody::Legacy;
    match members.get("v") {
        None => assert!(legacy, "only a legacy record has no v"),
        Some(v) => assert_eq!(v.get(), if fetched { "2" } else { "1" }),
    }
    assert_eq!(string(&members, "id").as_deref(), Some(&*record.id));
    assert_eq!(string(&members, "type").as_deref(), Some(&*record.event_type));
    assert_eq!(
        string(&members, "timestamp"),
        Some(record.received_at.rfc3339_millis())
    );
    for (field, raw) in [
        ("object", record.object),
        ("created", record.created),
        ("livemode", record.livemode),
        ("api_version", record.api_version),
        ("account", record.account),
        ("data", record.data),
    ] {
        match members.get(field) {
            Some(member) => assert_eq!(member.get(), raw.text(), "{field}"),
            None => assert!(legacy && raw.is_null(), "{field}"),
        }
    }
    match &record.body {
        StoredBody::Inline { raw, signature } => {
            assert_eq!(string(&members, "raw").as_deref(), Some(&*raw.decode()));
            assert_eq!(string(&members, "signature").as_deref(), Some(&**signature));
        }
        StoredBody::Oversize { pointer, signature } => {
            assert_eq!(members["data"].get(), "null");
            assert!(members.get("raw").is_none_or(|r| r.get() == "null"));
            assert_eq!(string(&members, "signature").as_deref(), signature.as_deref());
            let o: Members =
                serde_json::from_str(members["oversize"].get()).expect("the pointer is an object");
            assert_eq!(string(&o, "bucket").as_deref(), Some(&*pointer.bucket));
            assert_eq!(string(&o, "key").as_deref(), Some(&*pointer.key));
            assert_eq!(o["bytes"].get(), pointer.bytes.to_string());
            let hex: String = pointer.sha256.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(string(&o, "sha256"), Some(hex));
        }
        StoredBody::Fetched { raw, fetched } => {
            assert_eq!(string(&members, "raw").as_deref(), Some(&*raw.decode()));
            assert!(!members.contains_key("signature") && !members.contains_key("oversize"));
            let f: Members =
                serde_json::from_str(members["fetched"].get()).expect("provenance is an object");
            assert_eq!(string(&f, "api").as_deref(), Some(&*fetched.api));
            assert_eq!(string(&f, "request").as_deref(), Some(&*fetched.request));
            assert_eq!(string(&f, "key").as_deref(), Some(&*fetched.key));
            for (name, value) in [
                ("account", &fetched.account),
                ("stripe_version", &fetched.stripe_version),
                ("request_id", &fetched.request_id),
            ] {
                assert_eq!(string(&f, name).as_deref(), value.as_deref(), "{name}");
            }
        }
        StoredBody::Legacy => {
            for v1_only in [
                "object",
                "created",
                "livemode",
                "api_version",
                "account",
                "raw",
                "signature",
                "oversize",
                "fetched",
            ] {
                assert!(!members.contains_key(v1_only), "{v1_only}");
            }
        }
        StoredBody::NotStored => {
            assert!(!members.contains_key("raw") && !members.contains_key("signature"));
            assert!(!members.contains_key("oversize"));
        }
    }
});
