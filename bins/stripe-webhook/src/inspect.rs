//! `cat` (selected records as stored, NDJSON on stdout) and `stats` (counts by day and type).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::ops::ControlFlow;

use clap::Args;
use serde::Serialize;
use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};

use crate::archive::{Archive, Source};
use crate::filter::{Filters, SelectArgs, receipt_day};
use crate::select::for_each_selected;
use crate::{Failure, Outcome};

/// Arguments of `cat`.
#[derive(Args, Debug)]
pub(crate) struct CatArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Print only the first record of each event id (remembers every id seen: memory grows with
    /// the number of distinct ids).
    #[arg(long)]
    dedupe: bool,
}

/// Arguments of `stats`.
#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Print the counts as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Writes every selected record to stdout exactly as stored, one per line.
pub(crate) fn cat(archive: &Archive, args: &CatArgs) -> Result<Outcome, Failure> {
    let source = Source::parse(&args.select.source)?;
    let filters = Filters::from_args(&args.select).map_err(Failure::Usage)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut seen: HashSet<String> = HashSet::new();
    let mut write_error: Option<io::Error> = None;
    let counts = for_each_selected(
        archive,
        &source,
        &filters,
        &mut |line, envelope| {
            if args.dedupe && !seen.insert(envelope.id.into_owned()) {
                return ControlFlow::Continue(());
            }
            match out
                .write_all(line.bytes)
                .and_then(|()| out.write_all(b"\n"))
            {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    write_error = Some(e);
                    ControlFlow::Break(())
                }
            }
        },
        &mut |problem| {
            eprintln!("unreadable: {problem}");
            ControlFlow::Continue(())
        },
    )?;
    if write_error.is_none()
        && let Err(e) = out.flush()
    {
        write_error = Some(e);
    }
    match write_error {
        // The reader went away (`| head`): not an error of ours.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Outcome::Clean),
        Some(e) => Err(Failure::Runtime(format!("writing to stdout: {e}"))),
        None if counts.problems() > 0 => {
            eprintln!(
                "{} unreadable line(s) or segment(s) (listed above)",
                counts.problems()
            );
            Ok(Outcome::Problems)
        }
        None => Ok(Outcome::Clean),
    }
}

/// Counts of the selected records.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    records: u64,
    distinct: HashSet<String>,
    duplicate_copies: u64,
    duplicated_ids: HashSet<String>,
    raw_off: u64,
    oversize: u64,
    fetched: u64,
    legacy: u64,
    unreadable: u64,
    by_day_type: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Stats {
    fn add(&mut self, r: &ArchivedRecord<'_>) {
        self.records += 1;
        if !self.distinct.insert(r.id.to_string()) {
            self.duplicate_copies += 1;
            self.duplicated_ids.insert(r.id.to_string());
        }
        match r.body {
            StoredBody::Oversize { .. } => self.oversize += 1,
            StoredBody::NotStored => self.raw_off += 1,
            StoredBody::Fetched { .. } => self.fetched += 1,
            StoredBody::Legacy => self.legacy += 1,
            StoredBody::Inline { .. } => {}
        }
        *self
            .by_day_type
            .entry(receipt_day(r))
            .or_default()
            .entry(r.event_type.to_string())
            .or_default() += 1;
    }

    fn by_day(&self) -> BTreeMap<&str, u64> {
        self.by_day_type
            .iter()
            .map(|(day, types)| (day.as_str(), types.values().sum()))
            .collect()
    }

    fn by_type(&self) -> BTreeMap<&str, u64> {
        let mut out: BTreeMap<&str, u64> = BTreeMap::new();
        for types in self.by_day_type.values() {
            for (ty, n) in types {
                *out.entry(ty.as_str()).or_default() += n;
            }
        }
        out
    }

    /// The counts as `stats --json` prints them.
    fn report(&self) -> StatsReport<'_> {
        let mut duplicated_ids: Vec<&str> =
            self.duplicated_ids.iter().map(String::as_str).collect();
        duplicated_ids.sort_unstable();
        StatsReport {
            by_day: self.by_day(),
            by_day_and_type: &self.by_day_type,
            by_type: self.by_type(),
            distinct_ids: self.distinct.len(),
            duplicate_copies: self.duplicate_copies,
            duplicated_ids,
            fetched: self.fetched,
            legacy: self.legacy,
            oversize_pointers: self.oversize,
            raw_off: self.raw_off,
            records: self.records,
            unreadable: self.unreadable,
        }
    }

    fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "records: {}  distinct ids: {}  duplicate copies: {} (of {} ids)",
            self.records,
            self.distinct.len(),
            self.duplicate_copies,
            self.duplicated_ids.len()
        );
        let _ = writeln!(
            s,
            "raw off (not replayable or verifiable): {}  oversize pointers: {}  unreadable: {}",
            self.raw_off, self.oversize, self.unreadable
        );
        let _ = writeln!(
            s,
            "fetched from Stripe's API (not signed by Stripe): {}",
            self.fetched
        );
        let _ = writeln!(
            s,
            "legacy (Node service lines, not verifiable): {}",
            self.legacy
        );
        let _ = writeln!(s, "\nby day:");
        for (day, n) in self.by_day() {
            let _ = writeln!(s, "  {day}  {n:>10}");
        }
        let _ = writeln!(s, "\nby type:");
        for (ty, n) in self.by_type() {
            let _ = writeln!(s, "  {n:>10}  {ty}");
        }
        let _ = writeln!(s, "\nby day and type:");
        for (day, types) in &self.by_day_type {
            for (ty, n) in types {
                let _ = writeln!(s, "  {day}  {n:>10}  {ty}");
            }
        }
        s
    }
}

/// `stats --json`: one object (docs/cli.md, `stats`).
///
/// The members are declared in the order `stats` has always printed them (sorted by name):
/// consumers may compare outputs byte for byte.
#[derive(Debug, Serialize)]
struct StatsReport<'s> {
    /// Records by receipt day (`YYYY-MM-DD`).
    by_day: BTreeMap<&'s str, u64>,
    /// Records by receipt day, then type.
    by_day_and_type: &'s BTreeMap<String, BTreeMap<String, u64>>,
    /// Records by type.
    by_type: BTreeMap<&'s str, u64>,
    distinct_ids: usize,
    /// Records whose id an earlier record had.
    duplicate_copies: u64,
    /// The ids of more than one record, sorted.
    duplicated_ids: Vec<&'s str>,
    fetched: u64,
    legacy: u64,
    oversize_pointers: u64,
    raw_off: u64,
    records: u64,
    unreadable: u64,
}

/// Prints counts by day and type, duplicates by id, raw-off, oversize, fetched and legacy records.
pub(crate) fn stats(archive: &Archive, args: &StatsArgs) -> Result<Outcome, Failure> {
    let source = Source::parse(&args.select.source)?;
    let filters = Filters::from_args(&args.select).map_err(Failure::Usage)?;
    let mut stats = Stats::default();
    let counts = for_each_selected(
        archive,
        &source,
        &filters,
        &mut |_, envelope| {
            stats.add(&envelope);
            ControlFlow::Continue(())
        },
        &mut |problem| {
            eprintln!("unreadable: {problem}");
            ControlFlow::Continue(())
        },
    )?;
    stats.unreadable = counts.problems();
    if args.json {
        // Maps with string keys, numbers and strings: serializing cannot fail.
        let json = serde_json::to_string(&stats.report()).expect("the counts serialize");
        println!("{json}");
    } else {
        print!("{}", stats.to_text());
    }
    Ok(if counts.problems() > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_days_types_duplicates_and_kinds() {
        let mut stats = Stats::default();
        const EVENT: &str =
            r#""object":"event","created":1,"livemode":false,"api_version":null,"account":null"#;
        let sha = "00".repeat(32);
        let lines = [
            format!(
                r#"{{"v":1,"timestamp":"2026-11-26T01:00:00.000Z","id":"evt_1","type":"a",{EVENT},"data":{{}},"raw":"{{}}","signature":"s"}}"#
            ),
            format!(
                r#"{{"v":1,"timestamp":"2026-11-26T02:00:00.000Z","id":"evt_1","type":"a",{EVENT},"data":{{}},"raw":"{{}}","signature":"s"}}"#
            ),
            format!(
                r#"{{"v":1,"timestamp":"2026-11-27T02:00:00.000Z","id":"evt_2","type":"b",{EVENT},"data":{{}}}}"#
            ),
            format!(
                r#"{{"v":1,"timestamp":"2026-11-27T03:00:00.000Z","id":"evt_3","type":"a",{EVENT},"data":null,"raw":null,"signature":"s","oversize":{{"bucket":"b","key":"k","bytes":1,"sha256":"{sha}"}}}}"#
            ),
            format!(
                r#"{{"v":2,"timestamp":"2026-11-28T03:00:00.000Z","id":"evt_4","type":"b",{EVENT},"data":{{}},"raw":"{{}}","fetched":{{"api":"https://api.stripe.com","request":"GET /v1/events/evt_4","key":"rk_live_...abcd","account":null,"stripe_version":null,"request_id":null}}}}"#
            ),
            r#"{"timestamp":"2026-11-28T04:00:00.000Z","type":"b","id":"evt_5","data":{"object":{}}}"#.to_owned(),
        ];
        for line in &lines {
            stats.add(&ArchivedRecord::parse(line.as_bytes()).expect("parse"));
        }
        let json = serde_json::to_value(stats.report()).expect("json");
        assert_eq!(json["records"], 6);
        assert_eq!(json["distinct_ids"], 5);
        assert_eq!(json["fetched"], 1);
        assert_eq!(json["legacy"], 1);
        assert_eq!(json["duplicate_copies"], 1);
        assert_eq!(json["duplicated_ids"], serde_json::json!(["evt_1"]));
        assert_eq!(json["raw_off"], 1);
        assert_eq!(json["oversize_pointers"], 1);
        assert_eq!(
            json["by_day"],
            serde_json::json!({"2026-11-26": 2, "2026-11-27": 2, "2026-11-28": 2})
        );
        assert_eq!(json["by_type"], serde_json::json!({"a": 3, "b": 3}));
        assert_eq!(json["by_day_and_type"]["2026-11-27"]["b"], 1);
        assert_eq!(
            serde_json::to_string(&stats.report()).expect("json"),
            r#"{"by_day":{"2026-11-26":2,"2026-11-27":2,"2026-11-28":2},"by_day_and_type":{"2026-11-26":{"a":2},"2026-11-27":{"a":1,"b":1},"2026-11-28":{"b":2}},"by_type":{"a":3,"b":3},"distinct_ids":5,"duplicate_copies":1,"duplicated_ids":["evt_1"],"fetched":1,"legacy":1,"oversize_pointers":1,"raw_off":1,"records":6,"unreadable":0}"#,
            "the bytes stats --json has always printed"
        );
        let text = stats.to_text();
        assert!(text.contains("duplicate copies: 1 (of 1 ids)"), "{text}");
        assert!(text.contains("not signed by Stripe): 1"), "{text}");
        assert!(
            text.contains("legacy (Node service lines, not verifiable): 1"),
            "{text}"
        );
        let row = format!("  2026-11-27  {:>10}  b", 1);
        assert!(text.contains(&row), "{text}");
    }
}
