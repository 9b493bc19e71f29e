//! Record selection shared by every archive command: receipt dates, timestamps, type globs, ids
//! and livemode.
//!
//! Receipt dates (`--from/--to`) select on each record's own `timestamp`. Partition names only
//! prune what is read, and one day wider on each side: Firehose names an S3 object's partition
//! by the arrival of the oldest record in it, so records received on a day can sit in the day
//! before's partition (and an archive copied from S3 to a directory keeps those names). The
//! file sink partitions by each record's receipt date exactly; the same rule costs it at most
//! the two neighbouring days' segments.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::Args;
use stripe_webhook_envelope::Partition;
use stripe_webhook_envelope::read::ArchivedRecord;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// Which archive to read and which records to select (flattened into each archive command).
#[derive(Args, Debug, Clone)]
pub(crate) struct SelectArgs {
    /// The archive: a local directory (the server's ARCHIVE_DIR, its `webhooks/` folder, or any
    /// folder of segments) or an S3 prefix, e.g. `s3://my-archive/webhooks/`.
    pub(crate) source: String,
    /// First receipt date (UTC, inclusive) of each record's `timestamp`; only the partitions
    /// from the day before are read.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub(crate) from: Option<Date>,
    /// Last receipt date (UTC, inclusive) of each record's `timestamp`; only the partitions
    /// up to the day after are read.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub(crate) to: Option<Date>,
    /// Only records received at or after this instant (RFC 3339, or a date for its midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub(crate) since: Option<i64>,
    /// Only records received before this instant (RFC 3339, or a date for its midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub(crate) until: Option<i64>,
    /// Only these event types; globs with `*` and `?` (`invoice.*`). Repeatable or comma-separated.
    #[arg(long = "type", value_name = "GLOB", value_delimiter = ',')]
    pub(crate) types: Vec<String>,
    /// Only these event ids. Repeatable or comma-separated.
    #[arg(long = "id", value_name = "EVT_ID", value_delimiter = ',')]
    pub(crate) ids: Vec<String>,
    /// Only the event ids listed in this file, one per line.
    #[arg(long, value_name = "FILE")]
    pub(crate) ids_file: Option<PathBuf>,
    /// Only live-mode (`true`) or test-mode (`false`) events.
    #[arg(long, value_name = "BOOL")]
    pub(crate) livemode: Option<bool>,
}

/// An inclusive range of receipt dates (either end open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DayRange {
    /// First day, inclusive.
    pub(crate) from: Option<Date>,
    /// Last day, inclusive.
    pub(crate) to: Option<Date>,
}

impl DayRange {
    /// Whether `day` is in the range.
    pub(crate) fn contains(&self, day: Date) -> bool {
        self.from.is_none_or(|f| day >= f) && self.to.is_none_or(|t| day <= t)
    }

    /// Whether `day` is after the range's end.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))] // used by S3 listings
    pub(crate) fn is_after(&self, day: Date) -> bool {
        self.to.is_some_and(|t| day > t)
    }

    /// The partitions that can hold records of this range: one day wider on each side.
    pub(crate) fn partitions(&self) -> DayRange {
        DayRange {
            from: self.from.map(|d| d.previous_day().unwrap_or(d)),
            to: self.to.map(|d| d.next_day().unwrap_or(d)),
        }
    }

    /// Whether the range is open at both ends.
    pub(crate) fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

/// The UTC date a partition names.
pub(crate) fn partition_date(p: Partition) -> Option<Date> {
    Date::from_calendar_date(p.year, time::Month::try_from(p.month).ok()?, p.day).ok()
}

/// The partition of a date.
#[cfg_attr(not(feature = "s3"), allow(dead_code))] // used by S3 listings
pub(crate) fn date_partition(d: Date) -> Partition {
    Partition {
        year: d.year(),
        month: u8::from(d.month()),
        day: d.day(),
    }
}

/// The receipt date of a record, `YYYY-MM-DD`.
pub(crate) fn receipt_day(record: &ArchivedRecord<'_>) -> String {
    let p = record.received_at.partition();
    format!("{:04}-{:02}-{:02}", p.year, p.month, p.day)
}

/// The compiled selection.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    /// Receipt dates.
    pub(crate) days: DayRange,
    since: Option<i64>,
    until: Option<i64>,
    types: Vec<Glob>,
    ids: Option<HashSet<String>>,
    livemode: Option<bool>,
}

impl Filters {
    /// Compiles the arguments (reading `--ids-file`).
    ///
    /// # Errors
    /// An unreadable ids file.
    pub(crate) fn from_args(args: &SelectArgs) -> Result<Filters, String> {
        let mut ids: Option<HashSet<String>> = None;
        if !args.ids.is_empty() {
            ids.get_or_insert_default()
                .extend(args.ids.iter().map(|s| s.trim().to_owned()));
        }
        if let Some(path) = &args.ids_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--ids-file {}: {e}", path.display()))?;
            ids.get_or_insert_default().extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
        Ok(Filters {
            days: DayRange {
                from: args.from,
                to: args.to,
            },
            since: args.since,
            until: args.until,
            types: args.types.iter().map(|t| Glob::new(t.trim())).collect(),
            ids,
            livemode: args.livemode,
        })
    }

    /// The records received at or after `since` (Unix milliseconds) and, if given, before
    /// `until`, of these type globs (all types if none): what `reconcile` reads of the archive.
    pub(crate) fn received_between(since: i64, until: Option<i64>, types: &[String]) -> Filters {
        let day = |millis: i64| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
                .ok()
                .map(OffsetDateTime::date)
        };
        Filters {
            days: DayRange {
                from: day(since),
                to: until.and_then(|u| day(u.saturating_sub(1))),
            },
            since: Some(since),
            until,
            types: types.iter().map(|t| Glob::new(t.trim())).collect(),
            ids: None,
            livemode: None,
        }
    }

    /// Whether an event type is selected by the type globs (all types if there are none).
    pub(crate) fn matches_type(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|g| g.matches(event_type))
    }

    /// Whether a record is selected.
    pub(crate) fn matches(&self, r: &ArchivedRecord<'_>) -> bool {
        if let Some(ids) = &self.ids
            && !ids.contains(r.id.as_ref())
        {
            return false;
        }
        if !self.matches_type(&r.event_type) {
            return false;
        }
        if let Some(live) = self.livemode
            && r.livemode.as_bool() != Some(live)
        {
            return false;
        }
        if !self.days.is_all()
            && !partition_date(r.received_at.partition()).is_some_and(|d| self.days.contains(d))
        {
            return false;
        }
        let t = r.received_at.unix_millis();
        !(self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u))
    }
}

/// Parses `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Result<Date, String> {
    Date::parse(s, format_description!("[year]-[month]-[day]"))
        .map_err(|e| format!("{s:?} is not a YYYY-MM-DD date: {e}"))
}

/// Parses an RFC 3339 instant (or a `YYYY-MM-DD` date, meaning its midnight UTC) into Unix
/// milliseconds.
pub(crate) fn parse_instant(s: &str) -> Result<i64, String> {
    let t = match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => t,
        Err(_) => parse_date(s)
            .map(|d| d.midnight().assume_utc())
            .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))?,
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

/// A glob over event types: `*` matches any run of characters (dots included), `?` one character;
/// everything else matches itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob(Vec<char>);

impl Glob {
    /// Compiles a pattern.
    pub(crate) fn new(pattern: &str) -> Glob {
        Glob(pattern.chars().collect())
    }

    /// Whether `text` matches the whole pattern.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (p, t) = (&self.0, &text);
        let (mut pi, mut ti) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    backtrack = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match backtrack {
                    Some((star, matched)) => {
                        pi = star + 1;
                        ti = matched + 1;
                        backtrack = Some((star, matched + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn globs_match_event_types() {
        let g = Glob::new("invoice.*");
        assert!(g.matches("invoice.paid"));
        assert!(g.matches("invoice.payment_failed"));
        assert!(!g.matches("invoiceitem.created"));
        assert!(!g.matches("charge.succeeded"));
        assert!(Glob::new("*.succeeded").matches("payment_intent.succeeded"));
        assert!(Glob::new("customer.*.updated").matches("customer.subscription.updated"));
        assert!(!Glob::new("customer.*.updated").matches("customer.updated"));
        assert!(Glob::new("charge.?ucceeded").matches("charge.succeeded"));
        assert!(Glob::new("*").matches(""));
        assert!(!Glob::new("").matches("a"));
    }

    #[test]
    fn dates_instants_and_partitions() {
        assert_eq!(
            parse_instant("2026-11-26T22:14:41.123Z"),
            Ok(1_795_731_281_123)
        );
        assert_eq!(parse_instant("2026-11-26"), Ok(1_795_651_200_000));
        assert_eq!(
            parse_instant("2026-11-26T23:14:41.123+01:00"),
            Ok(1_795_731_281_123)
        );
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_date("2026-13-01").is_err());
        let p = Partition::in_path("webhooks/year=2026/month=11/day=26/1-2-3.ndjson.gz")
            .expect("partition");
        assert_eq!(partition_date(p), parse_date("2026-11-26").ok());
        assert_eq!(date_partition(parse_date("2026-11-26").expect("date")), p);
        let range = DayRange {
            from: parse_date("2026-11-02").ok(),
            to: parse_date("2026-11-03").ok(),
        };
        assert!(!range.contains(parse_date("2026-11-01").expect("date")));
        assert!(range.contains(parse_date("2026-11-03").expect("date")));
        assert!(range.is_after(parse_date("2026-11-04").expect("date")));
        assert_eq!(
            range.partitions(),
            DayRange {
                from: parse_date("2026-11-01").ok(),
                to: parse_date("2026-11-04").ok(),
            }
        );
        let year_end = DayRange {
            from: parse_date("2027-01-01").ok(),
            to: None,
        };
        assert_eq!(year_end.partitions().from, parse_date("2026-12-31").ok());
        assert!(DayRange::default().partitions().is_all());
    }

    fn record(id: &str, ty: &str, ts: &str, live: &str) -> Vec<u8> {
        format!(
            r#"{{"v":1,"timestamp":"{ts}","id":"{id}","type":"{ty}","object":"event","created":1,"livemode":{live},"api_version":null,"account":null,"data":{{}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn filters_combine() {
        let args = SelectArgs {
            source: ".".into(),
            from: None,
            to: parse_date("2026-11-26").ok(),
            since: parse_instant("2026-11-20T00:00:00Z").ok(),
            until: None,
            types: vec!["invoice.*".into(), "charge.succeeded".into()],
            ids: vec![],
            ids_file: None,
            livemode: Some(true),
        };
        let f = Filters::from_args(&args).expect("filters");
        let ok = record("evt_1", "invoice.paid", "2026-11-26T23:59:59.999Z", "true");
        assert!(f.matches(&ArchivedRecord::parse(&ok).expect("parse")));
        for bad in [
            record("evt_1", "invoice.paid", "2026-11-27T00:00:00.000Z", "true"),
            record("evt_1", "invoice.paid", "2026-11-19T23:59:59.999Z", "true"),
            record("evt_1", "charge.failed", "2026-11-26T00:00:00.000Z", "true"),
            record("evt_1", "invoice.paid", "2026-11-26T00:00:00.000Z", "false"),
            record("evt_1", "invoice.paid", "2026-11-26T00:00:00.000Z", "null"),
        ] {
            assert!(!f.matches(&ArchivedRecord::parse(&bad).expect("parse")));
        }
        let f = Filters::from_args(&SelectArgs {
            ids: vec!["evt_2".into()],
            livemode: None,
            types: vec![],
            ..args
        })
        .expect("filters");
        assert!(!f.matches(&ArchivedRecord::parse(&ok).expect("parse")));
        let two = record("evt_2", "x", "2026-11-21T00:00:00.000Z", "false");
        assert!(f.matches(&ArchivedRecord::parse(&two).expect("parse")));
    }

    #[test]
    fn received_between_selects_by_instant_and_type() {
        let since = parse_instant("2026-11-26T10:00:00Z").expect("since");
        let f = Filters::received_between(since, None, &["invoice.*".to_owned()]);
        assert_eq!(f.days.from, parse_date("2026-11-26").ok());
        assert_eq!(
            f.days.to, None,
            "open-ended: late deliveries and fetched records count"
        );
        let late = record("evt_1", "invoice.paid", "2027-01-02T00:00:00.000Z", "true");
        assert!(f.matches(&ArchivedRecord::parse(&late).expect("parse")));
        let early = record("evt_1", "invoice.paid", "2026-11-26T09:59:59.999Z", "true");
        assert!(!f.matches(&ArchivedRecord::parse(&early).expect("parse")));
        let other = record(
            "evt_1",
            "charge.succeeded",
            "2026-11-26T10:00:00.000Z",
            "true",
        );
        assert!(!f.matches(&ArchivedRecord::parse(&other).expect("parse")));
        assert!(f.matches_type("invoice.paid") && !f.matches_type("charge.succeeded"));
        let until = parse_instant("2026-11-28T00:00:00Z").expect("until");
        let f = Filters::received_between(since, Some(until), &[]);
        assert_eq!(f.days.to, parse_date("2026-11-27").ok());
        assert!(f.matches_type("anything"));
    }

    proptest! {
        #[test]
        fn a_literal_glob_matches_only_itself(a in "[a-z._]{0,12}", b in "[a-z._]{0,12}") {
            prop_assert!(Glob::new(&a).matches(&a));
            prop_assert_eq!(Glob::new(&a).matches(&b), a == b);
        }

        #[test]
        fn star_prefix_and_suffix(prefix in "[a-z.]{0,6}", rest in "[a-z.]{0,10}") {
            let text = format!("{prefix}{rest}");
            let star = format!("{prefix}*");
            prop_assert!(Glob::new(&star).matches(&text));
            let star_suffix = format!("*{rest}");
            prop_assert!(Glob::new(&star_suffix).matches(&text));
            prop_assert!(Glob::new("*").matches(&text));
        }
    }
}
