//! The operator tools against an S3 archive in moto: gzip (multi-member) and plain objects in the
//! Firehose layout, plus an oversize event (body in S3, pointer record in the archive).

// S3 archives: the `s3` feature (on by default).
#![cfg(feature = "s3")]

use crate::common;

use std::collections::HashMap;

use bytes::Bytes;
use common::{count, describe, gzip, moto_s3, put, run_on as run, secret, stdout};
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, Record, encode};
use stripe_webhook_testkit::moto::Moto;
use stripe_webhook_testkit::webhook_target::WebhookTarget;
use stripe_webhook_verify::Verifier;

const SECRET: &str = "whsec_s3_archive";
const TARGET_SECRET: &str = "whsec_s3_replay_target";
const BUCKET: &str = "archive";
const EVIDENCE: &str = "evidence";
/// 2026-11-25T10:00:00.000Z and the next day.
const DAY_25: i64 = 1_795_600_800_000;
const DAY_26: i64 = DAY_25 + 86_400_000;

fn body(id: &str, event_type: &str, live: bool, extra: &str) -> String {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"api_version\": \"2025-10-29.clover\",\n  \
         \"created\": 1796032790,\n  \"data\": {{\n    \"object\": {{\n      \"id\": \"in_{id}\",\n      \
         \"amount_due\": 1.10,\n      \"description\": \"caf\\u00e9\"{extra}\n    }}\n  }},\n  \
         \"livemode\": {live},\n  \"pending_webhooks\": 1,\n  \"type\": \"{event_type}\"\n}}"
    )
}

/// The record of `body` received at `at` (Unix ms), signed with `SECRET`, raw on.
fn record(body: &str, at: i64) -> Record {
    common::record(body, SECRET, at, true)
}

/// The ids `stripe-webhook cat <source> <args>` prints, in order.
fn cat_ids(moto: &Moto, source: &str, args: &[&str]) -> Vec<String> {
    let mut full = vec!["cat", source];
    full.extend_from_slice(args);
    let out = run(moto, &full);
    assert!(out.status.success(), "{}", describe(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

#[test]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
fn cat_verify_and_replay_read_s3_with_oversize_pointers() {
    let (moto, rt, s3) = moto_s3();
    moto.create_bucket(BUCKET);

    // Day 25: one gzip object of two members (3 records), and one plain object (1 record).
    let r1 = record(&body("evt_s3_1", "invoice.paid", false, ""), DAY_25);
    let r2 = record(&body("evt_s3_2", "charge.succeeded", true, ""), DAY_25 + 1);
    let r3 = record(
        &body("evt_s3_3", "invoice.finalized", false, ""),
        DAY_25 + 2,
    );
    let r4 = record(&body("evt_s3_4", "customer.created", false, ""), DAY_25 + 3);
    // Day 26: an oversize event (its pointer) between two ordinary ones.
    let r5 = record(&body("evt_s3_5", "invoice.paid", true, ""), DAY_26);
    let lines: String = (0..18_000)
        .map(|i| format!(",\n      \"line_{i:05}\": {{\"amount\": {i}, \"currency\": \"eur\"}}"))
        .collect();
    let big_body = body("evt_s3_big", "invoice.upcoming", false, &lines);
    assert!(big_body.len() > 1_024_000, "{}", big_body.len());
    let big = record(&big_body, DAY_26 + 1);
    let big_key =
        "oversize/year=2026/month=11/day=26/evt_s3_big-1795687200001-0123456789abcdef.json";
    let pointer = big.oversize_pointer(BUCKET, big_key);
    let r6 = record(&body("evt_s3_6", "charge.refunded", false, ""), DAY_26 + 2);

    let day25 = "webhooks/year=2026/month=11/day=25/";
    let day26 = "webhooks/year=2026/month=11/day=26/";
    put(
        &rt,
        &s3,
        BUCKET,
        &format!("{day25}archive-1-2026-11-25-10-00-00-a.gz"),
        gzip(&[&[&r1.line()[..], &r2.line()[..]].concat(), r3.line()]),
    );
    put(
        &rt,
        &s3,
        BUCKET,
        &format!("{day25}archive-1-2026-11-25-10-05-00-b"),
        r4.line().to_vec(),
    );
    put(
        &rt,
        &s3,
        BUCKET,
        &format!("{day26}archive-1-2026-11-26-10-00-00-c.gz"),
        gzip(&[&[&r5.line()[..], pointer.line(), r6.line()].concat()]),
    );
    put(&rt, &s3, BUCKET, big_key, big_body.clone().into_bytes());
    // An error-output object (not records): must be ignored under the bucket root.
    put(
        &rt,
        &s3,
        BUCKET,
        "errors/processing-failed/year=2026/month=11/day=26/x",
        b"{\"not\":\"a record\"}\n".to_vec(),
    );
    // A second archive (another bucket) whose oversize body was altered after the pointer was
    // written.
    moto.create_bucket(EVIDENCE);
    let tampered_pointer = big.oversize_pointer(EVIDENCE, big_key);
    put(
        &rt,
        &s3,
        EVIDENCE,
        &format!("{day26}archive-1-2026-11-26-11-00-00-d.gz"),
        gzip(&[tampered_pointer.line()]),
    );
    put(
        &rt,
        &s3,
        EVIDENCE,
        big_key,
        big_body
            .replacen("\"amount\": 7,", "\"amount\": 8,", 1)
            .into_bytes(),
    );

    let all = [&r1, &r2, &r3, &r4, &r5, &pointer, &r6];
    let archive = format!("s3://{BUCKET}/webhooks/");

    // cat: every line as stored, in key order; the bucket root gives the same (errors/ and
    // oversize/ are not records).
    let expected: Vec<u8> = all.iter().flat_map(|r| r.line().to_vec()).collect();
    let out = run(&moto, &["cat", &archive]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(out.stdout, expected, "{}", describe(&out));
    let out = run(
        &moto,
        &[
            "cat",
            &format!("s3://{BUCKET}/"),
            "--id",
            "evt_s3_4,evt_s3_6",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(out.stdout, [&r4.line()[..], r6.line()].concat());

    // Filters: dates (partition pruning with start-after and an early stop), types, livemode.
    let ids = |args: &[&str]| cat_ids(&moto, archive.as_str(), args);
    assert_eq!(
        ids(&["--from", "2026-11-26"]),
        ["evt_s3_5", "evt_s3_big", "evt_s3_6"]
    );
    assert_eq!(
        ids(&["--to", "2026-11-25"]),
        ["evt_s3_1", "evt_s3_2", "evt_s3_3", "evt_s3_4"]
    );
    assert_eq!(
        ids(&["--type", "invoice.*"]),
        ["evt_s3_1", "evt_s3_3", "evt_s3_5", "evt_s3_big"]
    );
    assert_eq!(ids(&["--livemode", "true"]), ["evt_s3_2", "evt_s3_5"]);
    assert_eq!(
        ids(&[
            "--since",
            "2026-11-25T10:00:00.002Z",
            "--until",
            "2026-11-26T10:00:00.001Z"
        ]),
        ["evt_s3_3", "evt_s3_4", "evt_s3_5"]
    );

    // stats
    let out = run(&moto, &["stats", &archive, "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stats["records"], 7);
    assert_eq!(stats["oversize_pointers"], 1);
    assert_eq!(
        stats["by_day"],
        serde_json::json!({"2026-11-25": 4, "2026-11-26": 3})
    );

    // verify: every body, the oversize one fetched from S3 and checked against the pointer.
    let out = run(&moto, &["verify", &archive, "--secret", SECRET]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "verified"), 7);
    assert!(
        stdout(&out).contains("oversize among them: 1"),
        "{}",
        describe(&out)
    );
    let out = run(
        &moto,
        &[
            "verify",
            &format!("s3://{EVIDENCE}/webhooks/"),
            "--secret",
            SECRET,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let fail = stdout(&out);
    let fail_line = fail
        .lines()
        .find(|l| l.starts_with("FAIL\t"))
        .unwrap_or_else(|| panic!("{}", describe(&out)));
    assert!(
        fail_line.contains(&format!(
            "s3://{EVIDENCE}/{day26}archive-1-2026-11-26-11-00-00-d.gz:1\tevt_s3_big\t"
        )) && fail_line.contains("sha256"),
        "{fail_line}"
    );

    // replay: a dry run, then for real into a sink that checks the new signatures.
    let out = run(
        &moto,
        &["replay", &archive, "--dry-run", "--source-secret", SECRET],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "would send"), 7);
    let sink = WebhookTarget::start();
    let out = run(
        &moto,
        &[
            "replay",
            &archive,
            "--url",
            &sink.url(),
            "--secret",
            TARGET_SECRET,
            "--source-secret",
            SECRET,
            "--concurrency",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 7);
    let verifier = Verifier::new(vec![secret(TARGET_SECRET)]).expect("verifier");
    let received: HashMap<String, Vec<u8>> = sink
        .received()
        .into_iter()
        .map(|r| {
            verifier
                .verify(&r.body, r.header("stripe-signature"), common::now())
                .expect("re-signed with the target's secret and a fresh timestamp");
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            (v["id"].as_str().expect("id").to_owned(), r.body)
        })
        .collect();
    assert_eq!(received.len(), 7);
    for r in [&r1, &r2, &r3, &r4, &r5, &big, &r6] {
        assert_eq!(
            received[r.id()],
            r.body().to_vec(),
            "{}: body not exact",
            r.id()
        );
    }
}

/// 2026-11-26T00:00:00.000Z.
const MIDNIGHT_26: i64 = 1_795_651_200_000;

#[test]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
fn s3_partitions_are_arrival_hints_raw_off_pointers_are_not_verifiable_and_dedupe_skips_lost_bodies()
 {
    let (moto, rt, s3) = moto_s3();
    let at = |day: i64, millis: i64| MIDNIGHT_26 + day * 86_400_000 + millis;

    // Firehose names an object's partition by the arrival of its OLDEST record: records received
    // after midnight sit under the day before.
    moto.create_bucket("days");
    let late_26 = record(
        &body("evt_late_26", "invoice.paid", false, ""),
        at(0, 86_398_000),
    );
    let early_27 = record(
        &body("evt_early_27", "invoice.paid", false, ""),
        at(1, 5_000),
    );
    let mid_27 = record(
        &body("evt_mid_27", "invoice.paid", false, ""),
        at(1, 43_200_000),
    );
    let early_28 = record(
        &body("evt_early_28", "invoice.paid", false, ""),
        at(2, 2_000),
    );
    let mid_28 = record(
        &body("evt_mid_28", "invoice.paid", false, ""),
        at(2, 43_200_000),
    );
    for (day, records) in [
        ("day=26", vec![&late_26, &early_27]),
        ("day=27", vec![&mid_27, &early_28]),
        ("day=28", vec![&mid_28]),
    ] {
        let lines: Vec<u8> = records.iter().flat_map(|r| r.line().to_vec()).collect();
        put(
            &rt,
            &s3,
            "days",
            &format!("webhooks/year=2026/month=11/{day}/archive-1-{day}.gz"),
            gzip(&[&lines]),
        );
    }
    let ids = |args: &[&str]| cat_ids(&moto, "s3://days/webhooks/", args);
    assert_eq!(
        ids(&["--from", "2026-11-27"]),
        ["evt_early_27", "evt_mid_27", "evt_early_28", "evt_mid_28"]
    );
    assert_eq!(ids(&["--to", "2026-11-26"]), ["evt_late_26"]);
    assert_eq!(
        ids(&["--from", "2026-11-27", "--to", "2026-11-27"]),
        ["evt_early_27", "evt_mid_27"]
    );
    let out = run(
        &moto,
        &[
            "stats",
            "s3://days/webhooks/",
            "--json",
            "--from",
            "2026-11-28",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stats["by_day"], serde_json::json!({"2026-11-28": 2}));

    // An oversize event archived with raw off: its pointer carries no signature, so its body
    // cannot be verified. That is "not verifiable", like any raw-off record, not a failure.
    moto.create_bucket("rawoff");
    let big = encode(
        Bytes::from(body("evt_big_off", "invoice.upcoming", false, "")),
        "t=1,v1=00",
        ReceivedAt::from_unix_millis(at(0, 1_000)),
        &EnvelopeOptions::default().include_raw(false),
    )
    .expect("encode");
    let key = "oversize/year=2026/month=11/day=26/evt_big_off-1.json";
    put(&rt, &s3, "rawoff", key, big.body().to_vec());
    let ordinary = record(&body("evt_ok_26", "invoice.paid", false, ""), at(0, 2_000));
    put(
        &rt,
        &s3,
        "rawoff",
        "webhooks/year=2026/month=11/day=26/archive-1-x.gz",
        gzip(&[&[
            big.oversize_pointer("rawoff", key).line(),
            &ordinary.line()[..],
        ]
        .concat()]),
    );
    let out = run(
        &moto,
        &["verify", "s3://rawoff/webhooks/", "--secret", SECRET],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "verified"), 1, "{}", describe(&out));
    assert_eq!(count(&out, "failed"), 0, "{}", describe(&out));
    assert_eq!(
        count(&out, "not verifiable (raw off, no signature stored)"),
        1,
        "{}",
        describe(&out)
    );

    // Dedupe keeps the first copy that can be sent: a pointer whose body is gone does not hide
    // a later complete copy of the same event.
    moto.create_bucket("lost");
    let event = record(&body("evt_lost", "invoice.paid", false, ""), at(0, 3_000));
    let pointer = event.oversize_pointer("lost", "oversize/year=2026/month=11/day=26/gone.json");
    put(
        &rt,
        &s3,
        "lost",
        "webhooks/year=2026/month=11/day=26/archive-1-y.gz",
        gzip(&[&[pointer.line(), &event.line()[..]].concat()]),
    );
    let target = WebhookTarget::start();
    let out = run(
        &moto,
        &[
            "replay",
            "s3://lost/webhooks/",
            "--url",
            &target.url(),
            "--secret",
            TARGET_SECRET,
            "--source-secret",
            SECRET,
        ],
    );
    // The lost body is a problem to report (exit code 1), after the event was delivered.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 1, "{}", describe(&out));
    let received = target.received();
    assert_eq!(received.len(), 1, "{}", describe(&out));
    assert_eq!(received[0].body, event.body().to_vec());
}
