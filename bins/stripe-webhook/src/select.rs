//! Scans an archive and hands each selected record, parsed, to a command.

use std::ops::ControlFlow;

use crate::archive::{Archive, ArchiveError, Event, Line, Source};
use crate::filter::Filters;
use crate::record::Envelope;

/// How many unreadable lines of one segment are listed individually.
pub(crate) const PROBLEMS_LISTED_PER_SEGMENT: u64 = 20;

/// Counts of a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanCounts {
    /// Lines read (selected or not).
    pub(crate) lines: u64,
    /// Lines selected by the filters.
    pub(crate) selected: u64,
    /// Unreadable lines or segments.
    pub(crate) unreadable: u64,
}

/// A line that is not a readable envelope record (or a segment that cannot be read).
#[derive(Debug)]
pub(crate) struct Problem<'a> {
    /// The segment.
    pub(crate) segment: &'a str,
    /// The line number (0: the whole segment).
    pub(crate) number: u64,
    /// Why.
    pub(crate) reason: &'a str,
}

impl std::fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.segment, self.number, self.reason)
    }
}

/// Streams the records of `source` that `filters` select to `on_record`, and unreadable lines or
/// segments to `on_problem`: all are counted, the first [`PROBLEMS_LISTED_PER_SEGMENT`] of each
/// segment are listed (then one line saying the rest are not), so a stray non-archive file cannot
/// flood a report. Either callback may stop the scan.
///
/// # Errors
/// When the source cannot be listed at all.
pub(crate) fn for_each_selected(
    archive: &Archive,
    source: &Source,
    filters: &Filters,
    on_record: &mut dyn FnMut(&Line<'_>, Envelope<'_>) -> ControlFlow<()>,
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
                reason: "more unreadable lines in this segment (counted, not listed)",
                ..problem
            }),
            _ => ControlFlow::Continue(()),
        }
    };
    archive.scan(source, filters.days, &mut |event| match event {
        Event::Line(line) => {
            counts.lines += 1;
            if counts.lines % 1024 == 0 {
                progress.set_message(format!("{} records", counts.lines));
            }
            match Envelope::parse(line.bytes) {
                Ok(envelope) if filters.matches(&envelope) => {
                    counts.selected += 1;
                    on_record(&line, envelope)
                }
                Ok(_) => ControlFlow::Continue(()),
                Err(reason) => {
                    counts.unreadable += 1;
                    report(Problem {
                        segment: line.segment,
                        number: line.number,
                        reason: &reason,
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
                reason: &reason,
            })
        }
    })?;
    progress.set_message(format!("{} records", counts.lines));
    progress.finish_and_clear();
    Ok(counts)
}
