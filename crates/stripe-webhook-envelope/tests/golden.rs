//! Golden records: every fixture under `fixtures/events/` encoded with a fixed receipt time and
//! signature header must equal the committed `tests/golden/<name>.ndjson`.
//!
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p stripe-webhook-envelope --test integration
//! golden::`, then review the diff. Independently of the goldens, each record is checked against the body with
//! `serde_json`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::Value;
use stripe_webhook_envelope::{
    EnvelopeOptions, Fetched, ReceivedAt, Record, encode, encode_fetched,
};

const SIGNATURE: &str =
    "t=1762935172,v1=7d2f0c6e8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d";
const RECEIVED_AT: ReceivedAt = ReceivedAt::from_unix_millis(1_762_935_172_345);

/// The fixtures that also have a fetched-record (envelope v2) golden: a snapshot event, fetched
/// for a connected account, and a thin event.
const FETCHED_GOLDENS: [&str; 2] = [
    "connect.charge.succeeded",
    "v1.billing.meter.error_report_triggered",
];

/// The provenance of the fetched goldens.
fn fetched_as(name: &str) -> Fetched<'static> {
    let thin = name.starts_with("v1.");
    Fetched {
        api: "https://api.stripe.com".into(),
        request: if thin {
            "GET /v2/core/events/evt_test_65TMzqV8rWZ3hWfX1a216TMcG0L7SQUaSESQ7JqvbPkjMo".into()
        } else {
            "GET /v1/events/evt_3SSzV7PxQ2aRs5Tu1Vw6Xy7Z".into()
        },
        key: "rk_live_...Wx9z".into(),
        account: (!thin).then(|| "acct_1PxQ2aRs5TuVwXyZ".into()),
        stripe_version: thin.then(|| "2025-10-29.clover".into()),
        request_id: Some("req_gold3nRequest1d".into()),
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/events")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn fixtures() -> Vec<(String, Bytes)> {
    let mut out: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/events exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
            (name, Bytes::from(std::fs::read(&p).unwrap()))
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 10,
        "expected the shared fixtures, found {}",
        out.len()
    );
    out
}

/// Compares with (or, with `UPDATE_GOLDEN=1`, rewrites) one golden file.
fn check_golden(file: &str, record: &Record, mismatches: &mut Vec<String>) {
    let path = golden_dir().join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, record.line()).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_default();
    if expected != record.line().as_ref() {
        mismatches.push(format!(
            "{file}: expected\n{}\ngot\n{}",
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(record.line())
        ));
    }
}

/// What the record must say about the body, independently of the golden text.
fn check_against_body(name: &str, body: &[u8], record: &Record, with_raw: bool) {
    let line = record.line();
    assert_eq!(line.last(), Some(&b'\n'), "{name}");
    assert!(
        !line[..line.len() - 1]
            .iter()
            .any(|&b| b == b'\n' || b == b'\r'),
        "{name}: one line"
    );
    let rec: Value = serde_json::from_slice(line).unwrap();
    let ev: Value = serde_json::from_slice(body).unwrap();
    let thin = ev["object"] == "v2.core.event";
    assert_eq!(rec["v"], 1);
    assert_eq!(rec["timestamp"], "2025-11-12T08:12:52.345Z");
    for field in ["id", "type", "object", "created", "livemode"] {
        assert_eq!(rec[field], ev[field], "{name}: {field}");
    }
    assert_eq!(record.id(), ev["id"].as_str().unwrap());
    assert_eq!(record.event_type(), ev["type"].as_str().unwrap());
    assert_eq!(
        rec["api_version"], ev["api_version"],
        "{name}: null if absent"
    );
    let account = if thin { &ev["context"] } else { &ev["account"] };
    assert_eq!(rec["account"], *account, "{name}: account");
    assert_eq!(rec["data"], ev["data"], "{name}: data");
    if thin {
        assert!(rec["data"].is_null() && rec["created"].is_string());
    } else {
        assert!(rec["created"].is_u64());
    }
    let obj = rec.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut expected = vec![
        "v",
        "timestamp",
        "id",
        "type",
        "object",
        "created",
        "livemode",
        "api_version",
        "account",
        "data",
    ];
    if with_raw {
        assert_eq!(rec["raw"].as_str().unwrap().as_bytes(), body, "{name}: raw");
        assert_eq!(rec["signature"], SIGNATURE);
        expected.extend(["raw", "signature"]);
    }
    let mut sorted = expected.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "{name}: exactly the envelope fields");
    // Field order in the line itself (serde_json's map sorts keys, so check the text).
    let text = std::str::from_utf8(line).unwrap();
    let positions: Vec<usize> = expected
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{name}: field order"
    );
}

#[test]
fn fixtures_match_goldens() {
    let mut mismatches = Vec::new();
    let mut expected_files = Vec::new();
    for (name, body) in fixtures() {
        let record = encode(
            body.clone(),
            SIGNATURE,
            RECEIVED_AT,
            &EnvelopeOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_against_body(&name, &body, &record, true);
        let file = format!("{name}.ndjson");
        check_golden(&file, &record, &mut mismatches);
        expected_files.push(file);
    }
    // One raw-off golden.
    let (name, body) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "charge.succeeded")
        .unwrap();
    let record = encode(
        body.clone(),
        SIGNATURE,
        RECEIVED_AT,
        &EnvelopeOptions::default().include_raw(false),
    )
    .unwrap();
    check_against_body(&name, &body, &record, false);
    check_golden("charge.succeeded.raw-off.ndjson", &record, &mut mismatches);
    expected_files.push("charge.succeeded.raw-off.ndjson".to_owned());

    // The fetched goldens (envelope v2): members 2 to 11 as the webhook record has them.
    for name in FETCHED_GOLDENS {
        let (_, body) = fixtures().into_iter().find(|(n, _)| n == name).unwrap();
        let record = encode_fetched(body.clone(), &fetched_as(name), RECEIVED_AT).unwrap();
        let webhook = encode(body, SIGNATURE, RECEIVED_AT, &EnvelopeOptions::default()).unwrap();
        let text = std::str::from_utf8(record.line()).unwrap();
        let webhook_text = std::str::from_utf8(webhook.line()).unwrap();
        let (head, tail) = text.split_once(",\"fetched\":").unwrap();
        assert_eq!(
            head.strip_prefix("{\"v\":2,"),
            webhook_text
                .split_once(",\"signature\":")
                .unwrap()
                .0
                .strip_prefix("{\"v\":1,"),
            "{name}: the fetched record's members 2 to 11"
        );
        let value: Value = serde_json::from_str(tail.strip_suffix("}\n").unwrap()).unwrap();
        assert_eq!(value["key"], "rk_live_...Wx9z");
        let file = format!("{name}.fetched.ndjson");
        check_golden(&file, &record, &mut mismatches);
        expected_files.push(file);
    }

    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    let mut committed: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    committed.sort();
    expected_files.sort();
    assert_eq!(committed, expected_files, "no stale or missing goldens");
}

#[test]
fn compact_data_keeps_exact_tokens() {
    // The record's data text must be the body's data text (located by serde_json's RawValue)
    // with only the whitespace outside strings removed, as an independent reference does it.
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    fn reference_compact(s: &str) -> String {
        let (mut out, mut in_str, mut esc) = (String::new(), false, false);
        for c in s.chars() {
            if in_str {
                out.push(c);
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    in_str = false;
                }
            } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
                out.push(c);
                in_str = c == '"';
            }
        }
        out
    }
    for (name, body) in fixtures() {
        let record = encode(
            body.clone(),
            SIGNATURE,
            RECEIVED_AT,
            &EnvelopeOptions::default().include_raw(false),
        )
        .unwrap();
        let line = std::str::from_utf8(record.line()).unwrap();
        let data = line
            .split_once(",\"data\":")
            .unwrap()
            .1
            .strip_suffix("}\n")
            .unwrap();
        let ev: Event<'_> = serde_json::from_slice(&body).unwrap();
        let expected = ev
            .data
            .map_or("null".to_owned(), |d| reference_compact(d.get()));
        assert_eq!(data, expected, "{name}");
    }
}

#[test]
fn every_golden_reads_back_to_the_fields_written() {
    use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};

    let mut read = 0;
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        if file.ends_with(".fetched.ndjson") {
            continue; // fetched_goldens_read_back
        }
        let name = file
            .trim_end_matches(".ndjson")
            .trim_end_matches(".raw-off");
        let with_raw = !file.ends_with(".raw-off.ndjson");
        let body = fixtures()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{file}: no fixture {name}"))
            .1;
        let line = std::fs::read(&path).unwrap();
        let record = ArchivedRecord::parse(&line).unwrap_or_else(|e| panic!("{file}: {e}"));

        // What the writer knows it wrote.
        let written = encode(
            body.clone(),
            SIGNATURE,
            RECEIVED_AT,
            &EnvelopeOptions::default().include_raw(with_raw),
        )
        .unwrap();
        assert_eq!(record.id, written.id(), "{file}");
        assert_eq!(record.event_type, written.event_type(), "{file}");
        assert_eq!(record.received_at, written.received_at(), "{file}");
        match (&record.body, with_raw) {
            (StoredBody::Inline { raw, signature }, true) => {
                assert_eq!(
                    raw.decode().as_bytes(),
                    &body[..],
                    "{file}: raw is the body"
                );
                assert_eq!(signature, SIGNATURE, "{file}");
            }
            (StoredBody::NotStored, false) => {}
            (other, _) => panic!("{file}: {other:?}"),
        }
        // The other members: their JSON text is the line's own, per serde_json.
        let value: Value = serde_json::from_slice(&line).unwrap();
        for (field, raw) in [
            ("object", record.object),
            ("created", record.created),
            ("livemode", record.livemode),
            ("api_version", record.api_version),
            ("account", record.account),
            ("data", record.data),
        ] {
            let parsed: Value = serde_json::from_str(raw.text()).unwrap();
            assert_eq!(parsed, value[field], "{file}: {field}");
            assert!(
                std::str::from_utf8(&line)
                    .unwrap()
                    .contains(&format!("\"{field}\":{}", raw.text())),
                "{file}: {field} is the stored text"
            );
        }

        // And the oversize pointer of the same record.
        let key = format!("oversize/{}/{name}.json", RECEIVED_AT.partition());
        let pointer_line = written.oversize_pointer("archive-bucket", &key);
        let pointer = ArchivedRecord::parse(pointer_line.line()).unwrap();
        assert_eq!(pointer.id, written.id());
        assert!(pointer.data.is_null());
        match &pointer.body {
            StoredBody::Oversize {
                pointer: p,
                signature,
            } => {
                assert_eq!((&*p.bucket, &*p.key), ("archive-bucket", key.as_str()));
                assert_eq!(
                    p.check(&body),
                    Ok(()),
                    "{file}: size and sha256 of the body"
                );
                assert_eq!(
                    signature.as_deref(),
                    with_raw.then_some(SIGNATURE),
                    "{file}"
                );
            }
            other => panic!("{file}: {other:?}"),
        }
        read += 1;
    }
    assert!(read >= 11, "read {read} goldens");
}

#[test]
fn fetched_goldens_read_back() {
    use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};

    for name in FETCHED_GOLDENS {
        let line = std::fs::read(golden_dir().join(format!("{name}.fetched.ndjson"))).unwrap();
        let (_, body) = fixtures().into_iter().find(|(n, _)| n == name).unwrap();
        let record = ArchivedRecord::parse(&line).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(record.received_at, RECEIVED_AT);
        assert_eq!(record.body.signature(), None, "{name}: never signed");
        match record.body {
            StoredBody::Fetched { raw, fetched } => {
                assert_eq!(
                    raw.decode().as_bytes(),
                    &body[..],
                    "{name}: raw is the body"
                );
                assert_eq!(fetched, fetched_as(name), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["v"], 2);
        assert!(value.get("signature").is_none());
        let request = value["fetched"]["request"].as_str().unwrap();
        assert!(
            request.ends_with(value["id"].as_str().unwrap()),
            "{name}: {request}"
        );
    }
}
