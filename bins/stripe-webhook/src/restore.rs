//! `restore`: requests restores of the archive's objects in an archival storage class (S3
//! Glacier Flexible Retrieval, Deep Archive) for a range of days, so `cat`, `verify`, `replay` and
//! `reconcile` can read them once the restores complete.
//!
//! Given the archive's records prefix (`s3://bucket/webhooks/`), the oversize bodies of the same
//! days (`s3://bucket/oversize/`) are restored too: a pointer record is only verifiable with its
//! body. One line per object that needed a restore (`REQUESTED`, `IN_PROGRESS`, `AVAILABLE`,
//! `FAILED` with the reason) and a summary go to stdout; exit code 1 if any request failed.

use clap::{Args, ValueEnum};
#[cfg(feature = "s3")]
use stripe_webhook_envelope::{ARCHIVE_PREFIX, OVERSIZE_PREFIX};
use time::Date;

#[cfg(feature = "s3")]
use crate::archive::Restored;
use crate::archive::{Archive, Source};
#[cfg(feature = "s3")]
use crate::filter::DayRange;
use crate::filter::parse_date;
use crate::{Failure, Outcome};

/// Arguments of `restore`.
#[derive(Args, Debug)]
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) struct RestoreArgs {
    /// The archive's S3 prefix, e.g. `s3://my-archive/webhooks/` (its `oversize/` sibling is
    /// restored for the same days), or any prefix of partitioned objects.
    source: String,
    /// First partition day (UTC, inclusive).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    from: Date,
    /// Last partition day (UTC, inclusive).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    to: Date,
    /// Days the restored copies stay readable (S3 deletes them after; the archived objects stay).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(i32).range(1..=3650))]
    days: i32,
    /// Retrieval tier: Bulk (cheapest; hours, up to 48 h for Deep Archive), Standard, or
    /// Expedited (minutes; Glacier Flexible Retrieval only).
    #[arg(long, value_enum, default_value_t = Tier::Bulk)]
    tier: Tier,
}

/// The retrieval tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Tier {
    Bulk,
    Standard,
    Expedited,
}

/// Counts by outcome.
#[cfg(feature = "s3")]
#[derive(Debug, Default)]
struct Tally {
    requested: u64,
    in_progress: u64,
    available: u64,
    not_archived: u64,
    failed: u64,
}

/// Requests the restores and reports each. A build without the `s3` feature refuses every
/// source: an `s3://` one as needing S3 support, a local one as needing no restore.
#[cfg_attr(not(feature = "s3"), allow(unused_variables))]
pub(crate) fn restore(archive: &Archive, args: &RestoreArgs) -> Result<Outcome, Failure> {
    match Source::parse(&args.source)? {
        #[cfg(feature = "s3")]
        Source::S3 { bucket, prefix } => request(archive, args, &bucket, &prefix),
        Source::Local(_) => Err(Failure::Usage(format!(
            "{}: restore works on an S3 archive (s3://bucket/prefix); a local archive needs none",
            args.source
        ))),
    }
}

/// Requests the restores of `s3://bucket/prefix` (and its `oversize/` sibling) and reports each.
#[cfg(feature = "s3")]
fn request(
    archive: &Archive,
    args: &RestoreArgs,
    bucket: &str,
    prefix: &str,
) -> Result<Outcome, Failure> {
    if args.from > args.to {
        return Err(Failure::Usage(format!(
            "--from {} is after --to {}",
            args.from, args.to
        )));
    }
    let days = DayRange {
        from: Some(args.from),
        to: Some(args.to),
    };
    let tier = match args.tier {
        Tier::Bulk => aws_sdk_s3::types::Tier::Bulk,
        Tier::Standard => aws_sdk_s3::types::Tier::Standard,
        Tier::Expedited => aws_sdk_s3::types::Tier::Expedited,
    };
    let mut prefixes = vec![prefix.to_owned()];
    if let Some(root) = prefix.strip_suffix(&format!("{ARCHIVE_PREFIX}/")) {
        prefixes.push(format!("{root}{OVERSIZE_PREFIX}/"));
    }
    let mut tally = Tally::default();
    for prefix in &prefixes {
        archive.restore(
            bucket,
            prefix,
            days,
            args.days,
            tier.clone(),
            &mut |key, done| {
                let name = format!("s3://{bucket}/{key}");
                match done {
                    Restored::Requested => {
                        tally.requested += 1;
                        println!("REQUESTED\t{name}");
                    }
                    Restored::InProgress => {
                        tally.in_progress += 1;
                        println!("IN_PROGRESS\t{name}");
                    }
                    Restored::Available => {
                        tally.available += 1;
                        println!("AVAILABLE\t{name}");
                    }
                    Restored::NotArchived => tally.not_archived += 1,
                    Restored::Failed(why) => {
                        tally.failed += 1;
                        println!("FAILED\t{name}\t{why}");
                    }
                }
            },
        )?;
    }
    println!("requested: {}", tally.requested);
    println!("in progress (requested earlier): {}", tally.in_progress);
    println!("available (restored, readable now): {}", tally.available);
    println!(
        "not archived (readable as they are): {}",
        tally.not_archived
    );
    println!("failed: {}", tally.failed);
    if tally.requested + tally.in_progress > 0 {
        eprintln!(
            "restore: read the archive again once the restores complete (Bulk: within 5-12 h for \
             GLACIER, 48 h for DEEP_ARCHIVE; `aws s3api head-object` shows ongoing-request=\"false\" \
             when one is done); restored copies stay readable {} day(s)",
            args.days
        );
    }
    Ok(if tally.failed > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}
