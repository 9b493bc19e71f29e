//! Scans an archive and hands each selected record, parsed, to a command.

use std::ops::ControlFlow;

use crate::archive::{Archive, ArchiveError, Event, Line, Source};
use crate::filter::Filters;
use crate::record::Envelope;

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

/// Streams the records of `source` that `filters` select to `on_record`, and every unreadable
/// line or segment to `on_problem` (after counting it). Either callback may stop the scan.
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
                    on_problem(Problem {
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
            on_problem(Problem {
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
