//! How far behind a destination is: records in the archive its cursor does not cover as finished,
//! and the age of the oldest of them; the gauges the forwarder exports and `forward status`
//! prints.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_envelope::read::ArchivedRecord;
use stripe_webhook_metrics as m;

use crate::cursor::{Cursor, DestinationLock};
use crate::dead_letters;
use crate::glob::TypeFilter;
use crate::segments::{self, SegmentReader};

/// Lines read per call while counting.
const BATCH: usize = 4096;

/// What a destination has not finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    /// Records to forward that the cursor does not cover as finished.
    pub records: u64,
    /// When the oldest of them was archived.
    pub oldest: Option<ReceivedAt>,
}

impl Lag {
    /// Seconds since the oldest was archived; 0 when none.
    pub fn seconds(&self, now: ReceivedAt) -> f64 {
        self.oldest.map_or(0.0, |o| {
            ((now.unix_millis() - o.unix_millis()).max(0) as f64) / 1000.0
        })
    }
}

/// Counts what `cursor` does not cover: its pending records and every record after each
/// segment's offset (open segments up to their last complete line), that FORWARD_START and
/// `types` let through.
///
/// # Errors
/// The archive cannot be listed or a segment read.
pub fn lag(archive_dir: &Path, cursor: &Cursor, types: &TypeFilter) -> std::io::Result<Lag> {
    let start = cursor.start_at();
    let mut reader = SegmentReader::default();
    let mut lag = Lag::default();
    let mut count = |line: &[u8]| {
        if let Ok(record) = ArchivedRecord::parse(line)
            && record.received_at >= start
            && types.matches(&record.event_type)
        {
            lag.records += 1;
            lag.oldest = Some(
                lag.oldest
                    .map_or(record.received_at, |o| o.min(record.received_at)),
            );
        }
    };
    for (partition, dir) in segments::partitions(archive_dir, cursor.done_before())? {
        for file in segments::segments(partition, &dir)? {
            let stored = cursor.segment(&file.key);
            if stored.done {
                continue;
            }
            for offset in &stored.pending {
                if let Ok(chunk) = reader.read(&file, *offset, 1) {
                    chunk.lines.iter().for_each(|l| count(&l.bytes));
                }
            }
            let mut at = stored.offset;
            // A segment gone (sealed under us: counted at the next scan) or unreadable (the
            // forwarder logs it) counts as nothing.
            while let Ok(chunk) = reader.read(&file, at, BATCH) {
                chunk.lines.iter().for_each(|l| count(&l.bytes));
                if chunk.lines.len() < BATCH || chunk.finished || chunk.next == at {
                    break;
                }
                at = chunk.next;
            }
        }
    }
    Ok(lag)
}

/// A finished scan: how long it took, the lag, the dead letters, the re-driven total.
type Scan = (Duration, std::io::Result<Lag>, u64, u64);

/// Keeps a running forwarder's lag and dead-letter gauges current: a scan after each stored
/// cursor, at most every few seconds and never taking more than a tenth of the time (a week of
/// backlog is read again only that often).
pub(crate) struct LagTracker {
    archive_dir: PathBuf,
    dir: PathBuf,
    id: String,
    types: TypeFilter,
    cursor: Option<Cursor>,
    /// The scan running on a blocking thread; it leaves its result here.
    running: Option<Arc<Mutex<Option<Scan>>>>,
    next_at: Instant,
    /// The re-driven total last seen (the first scan sets it without counting).
    redriven: Option<u64>,
}

impl LagTracker {
    pub(crate) fn new(archive_dir: PathBuf, dir: PathBuf, id: String, types: TypeFilter) -> Self {
        Self {
            archive_dir,
            dir,
            id,
            types,
            cursor: None,
            running: None,
            next_at: Instant::now(),
            redriven: None,
        }
    }

    /// The cursor just stored.
    pub(crate) fn cursor(&mut self, cursor: Cursor) {
        self.cursor = Some(cursor);
    }

    /// Collects a finished scan (setting the gauges) and starts the next one when due.
    pub(crate) fn tick(&mut self) {
        if let Some(slot) = &self.running {
            let Some((took, lag, dead, redriven)) =
                slot.lock().unwrap_or_else(PoisonError::into_inner).take()
            else {
                return;
            };
            self.running = None;
            let label = self.id.clone();
            if let Some(seen) = self.redriven
                && redriven > seen
            {
                metrics::counter!(m::FORWARD_DELIVERIES_TOTAL, "destination" => label.clone(), "outcome" => "redriven")
                    .increment(redriven - seen);
            }
            self.redriven = Some(redriven);
            metrics::gauge!(m::FORWARD_DEAD_LETTERS, "destination" => label.clone())
                .set(dead as f64);
            match lag {
                Ok(lag) => {
                    metrics::gauge!(m::FORWARD_LAG_RECORDS, "destination" => label.clone())
                        .set(lag.records as f64);
                    metrics::gauge!(m::FORWARD_LAG_SECONDS, "destination" => label)
                        .set(lag.seconds(ReceivedAt::now()));
                }
                Err(e) => {
                    tracing::warn!(destination = %self.id, error = %e, "measuring the lag failed");
                }
            }
            self.next_at = Instant::now() + (took * 10).max(Duration::from_secs(2));
        }
        if Instant::now() < self.next_at {
            return;
        }
        let Some(cursor) = self.cursor.clone() else {
            return;
        };
        let slot = Arc::new(Mutex::new(None));
        self.running = Some(Arc::clone(&slot));
        let (archive_dir, dir, types) = (
            self.archive_dir.clone(),
            self.dir.clone(),
            self.types.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let lag = lag(&archive_dir, &cursor, &types);
            let scan = (
                started.elapsed(),
                lag,
                dead_letters::count(&dir),
                dead_letters::redriven(&dir),
            );
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(scan);
        });
    }
}

/// One destination's state, as `forward status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DestinationStatus {
    /// The destination id (its state directory's name).
    pub destination: String,
    /// Whether FORWARD_URL names it (state of a removed destination stays until deleted).
    pub configured: bool,
    /// The state directory.
    pub dir: String,
    /// Who holds its lock (a running forwarder), if anyone.
    pub running: Option<String>,
    /// The cursor's start (records before it are not forwarded).
    pub start: Option<String>,
    /// Partitions before this one are finished.
    pub done_before: Option<String>,
    /// Segments the cursor tracks after `done_before`.
    pub segments: usize,
    /// Records not yet finished.
    pub lag_records: u64,
    /// Seconds since the oldest of them was archived (0 when none).
    pub lag_seconds: f64,
    /// Entries in the dead-letter list.
    pub dead_letters: u64,
}

/// The status of the destination in `dir`.
///
/// # Errors
/// Its cursor cannot be read, or the archive cannot be listed.
pub fn destination_status(
    archive_dir: &Path,
    dir: &Path,
    configured: bool,
    types: &TypeFilter,
) -> Result<DestinationStatus, String> {
    let cursor = Cursor::load(dir)?;
    let lag = match &cursor {
        Some(cursor) => lag(archive_dir, cursor, types).map_err(|e| e.to_string())?,
        None => Lag::default(),
    };
    Ok(DestinationStatus {
        destination: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        configured,
        dir: dir.display().to_string(),
        running: DestinationLock::holder(dir),
        start: cursor.as_ref().map(|c| c.start.clone()),
        done_before: cursor.as_ref().map(|c| c.done_before.clone()),
        segments: cursor.as_ref().map_or(0, |c| c.segments.len()),
        lag_records: lag.records,
        lag_seconds: lag.seconds(ReceivedAt::now()),
        dead_letters: dead_letters::count(dir),
    })
}
