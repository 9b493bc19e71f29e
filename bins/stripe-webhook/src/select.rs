//! Scans an archive and hands each selected record, read by the envelope crate's reader, to a
//! command.

use std::fmt;
use std::ops::ControlFlow;

use stripe_webhook_envelope::read::{ArchivedRecord, ReadError};

use crate::archive::{Archive, ArchiveError, Event, Line, Source};
use crate::filter::Filters;

/// How many problems of one segment are listed individually.
pub(crate) const PROBLEMS_LISTED_PER_SEGMENT: u64 = 20;

/// Counts of a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanCounts {
    /// Lines read (selected or not).
    pub(crate) lines: u64,
    /// Lines selected by the filters.
    pub(crate) selected: u64,
    /// Complete lines that are not envelope records (not JSON, unknown version, …).
    pub(crate) not_records: u64,
    /// Segments (or their last lines) that cannot be read at all.
    pub(crate) unreadable: u64,
}

impl ScanCounts {
    /// Problems of either kind.
    pub(crate) fn problems(&self) -> u64 {
        self.not_records + self.unreadable
    }
}

/// What is wrong.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reason<'a> {
    /// A complete line that is not an envelope record (v1 or v2).
    NotARecord(&'a ReadError),
    /// A segment that cannot be read, or a torn or oversized line.
    Unreadable(&'a str),
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotARecord(e) => write!(f, "not an envelope record: {e}"),
            Reason::Unreadable(why) => f.write_str(why),
        }
    }
}

/// A line that is not a readable envelope record, or a segment that cannot be read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem<'a> {
    /// The segment.
    pub(crate) segment: &'a str,
    /// The line number (0: the whole segment).
    pub(crate) number: u64,
    /// Why.
    pub(crate) reason: Reason<'a>,
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.segment, self.number, self.reason)
    }
}

/// Streams the records of `source` that `filters` select to `on_record`, and problems (lines
/// that are not records, segments that cannot be read) to `on_problem`: all are counted, the
/// first [`PROBLEMS_LISTED_PER_SEGMENT`] of each segment are listed (then one line saying the
/// rest are not), so a stray non-archive file cannot flood a report. Either callback may stop the
/// scan.
///
/// # Errors
/// When the source cannot be listed at all.
pub(crate) fn for_each_selected(
    archive: &Archive,
    source: &Source,
    filters: &Filters,
    on_record: &mut dyn FnMut(&Line<'_>, ArchivedRecord<'_>) -> ControlFlow<()>,
    on_problem: &mut dyn FnMut(Problem<'_>) -> ControlFlow<()>,
) -> Result<ScanCounts, ArchiveError> {
    let mut counts = ScanCounts::default();
    let progress = archive.progress().clone();
    let mut current_segment = String::new();
    let mut in_segment: u64 = 0;
    let mut report = |problem: Problem<'_>| {
        if problem.segment != current_segment {
            current_segment = problem.segment.to_owned();
            in_segment = 0;
        }
        in_segment += 1;
        match in_segment {
            n if n <= PROBLEMS_LISTED_PER_SEGMENT => on_problem(problem),
            n if n == PROBLEMS_LISTED_PER_SEGMENT + 1 => on_problem(Problem {
                reason: Reason::Unreadable("more problems in this segment (counted, not listed)"),
                ..problem
            }),
            _ => ControlFlow::Continue(()),
        }
    };
    archive.scan(
        source,
        filters.days.partitions(),
        &mut |event| match event {
            Event::Line(line) => {
                counts.lines += 1;
                if counts.lines % 1024 == 0 {
                    progress.set_message(format!("{} records", counts.lines));
                }
                match ArchivedRecord::parse(line.bytes) {
                    Ok(record) if filters.matches(&record) => {
                        counts.selected += 1;
                        on_record(&line, record)
                    }
                    Ok(_) => ControlFlow::Continue(()),
                    Err(e) => {
                        counts.not_records += 1;
                        report(Problem {
                            segment: line.segment,
                            number: line.number,
                            reason: Reason::NotARecord(&e),
                        })
                    }
                }
            }
            Event::Unreadable {
                segment,
                number,
                reason,
            } => {
                counts.unreadable += 1;
                report(Problem {
                    segment,
                    number,
                    reason: Reason::Unreadable(&reason),
                })
            }
        },
    )?;
    progress.set_message(format!("{} records", counts.lines));
    progress.finish_and_clear();
    Ok(counts)
}
