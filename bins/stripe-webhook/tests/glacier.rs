//! Data older than the archive's transition days, in moto: records and an oversize body in S3
//! Glacier Flexible Retrieval. The readers say, per object, that it must be restored and how
//! (and `verify` exits 1); `restore` requests a restore for the day range, records and the
//! oversize bodies their pointers name, leaving other objects alone; once restored, everything
//! verifies. A second `restore` finds them available and requests nothing.

// S3 archives: the `s3` feature (on by default).
#![cfg(feature = "s3")]

use crate::common;

use aws_sdk_s3::types::StorageClass;
use common::{count, describe, gzip, moto_s3, put, put_in_class, record, run_on as run, stdout};

const SECRET: &str = "whsec_glacier_archive";
const BUCKET: &str = "glacier-archive";
/// 2026-08-01T10:00:00.000Z and the next day.
const DAY_1: i64 = 1_785_578_400_000;
const DAY_2: i64 = DAY_1 + 86_400_000;

fn put_glacier(rt: &tokio::runtime::Runtime, s3: &aws_sdk_s3::Client, key: &str, bytes: Vec<u8>) {
    put_in_class(rt, s3, BUCKET, key, bytes, Some(StorageClass::Glacier));
}

#[test]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
fn archived_objects_are_named_then_restored_then_read() {
    let (moto, rt, s3) = moto_s3();
    moto.create_bucket(BUCKET);

    let small = record(
        &common::invoice_event("evt_1Glacier1", "invoice.paid", 1),
        SECRET,
        DAY_1,
        true,
    );
    let lines: String = (0..18_000)
        .map(|i| format!(",\n      \"line_{i:05}\": {{\"amount\": {i}}}"))
        .collect();
    let big_body = common::invoice_event("evt_1GlacierBig", "invoice.upcoming", 2).replacen(
        "\"amount_due\": 2",
        &format!("\"amount_due\": 2{lines}"),
        1,
    );
    let big = record(&big_body, SECRET, DAY_1 + 1, true);
    let big_key =
        "oversize/year=2026/month=08/day=01/evt_1GlacierBig-1785578400001-00000000000000aa.json";
    let pointer = big.oversize_pointer(BUCKET, big_key);
    let later = record(
        &common::invoice_event("evt_1Glacier2", "invoice.paid", 3),
        SECRET,
        DAY_2,
        true,
    );

    let day1_key = "webhooks/year=2026/month=08/day=01/archive-1-2026-08-01-10-00-00-a.gz";
    put_glacier(
        &rt,
        &s3,
        day1_key,
        gzip(&[&[&small.line()[..], pointer.line()].concat()]),
    );
    put_glacier(&rt, &s3, big_key, big_body.clone().into_bytes());
    // The next day is still in Standard: readable, and left alone by a restore of day 1.
    put(
        &rt,
        &s3,
        BUCKET,
        "webhooks/year=2026/month=08/day=02/archive-1-2026-08-02-10-00-00-b.gz",
        gzip(&[later.line()]),
    );
    let archive = format!("s3://{BUCKET}/webhooks/");

    // Not restored: the segment is named with its storage class and the command to restore it.
    let o = run(&moto, &["verify", &archive, "--secret", SECRET]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(count(&o, "verified"), 1, "day 2 only: {}", describe(&o));
    assert_eq!(count(&o, "unreadable"), 1, "{}", describe(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "s3://{BUCKET}/{day1_key} is in storage class GLACIER and not restored: restore it first \
             (`stripe-webhook restore s3://{BUCKET}/webhooks/ --from 2026-08-01 --to 2026-08-01`"
        )),
        "{}",
        describe(&o)
    );
    let o = run(
        &moto,
        &[
            "cat",
            &archive,
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-01",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is in storage class GLACIER and not restored"),
        "{}",
        describe(&o)
    );

    // Restore day 1: the records' object and the oversize body, nothing else.
    let o = run(
        &moto,
        &[
            "restore",
            &archive,
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-01",
            "--days",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let requested: Vec<String> = stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("REQUESTED\t"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        requested,
        [
            format!("s3://{BUCKET}/{day1_key}"),
            format!("s3://{BUCKET}/{big_key}")
        ],
        "{}",
        describe(&o)
    );
    assert_eq!(count(&o, "requested"), 2, "{}", describe(&o));
    assert_eq!(count(&o, "failed"), 0, "{}", describe(&o));

    // Restored (moto completes at once): every record verifies, the pointer's body included.
    let o = run(&moto, &["verify", &archive, "--secret", SECRET]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(count(&o, "verified"), 3, "{}", describe(&o));

    // Asked again: available, nothing requested.
    let o = run(
        &moto,
        &[
            "restore",
            &archive,
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-02",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(count(&o, "requested"), 0, "{}", describe(&o));
    assert_eq!(
        count(&o, "available (restored, readable now)"),
        2,
        "{}",
        describe(&o)
    );
    assert_eq!(
        count(&o, "not archived (readable as they are)"),
        1,
        "{}",
        describe(&o)
    );

    // A local archive needs no restore.
    let o = run(
        &moto,
        &[
            "restore",
            "./archive",
            "--from",
            "2026-08-01",
            "--to",
            "2026-08-01",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}
