//! How far behind a destination is: records in the archive its cursor does not cover as finished,
//! and the age of the oldest of them; the gauges the forwarder exports and `forward status`
//! prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_envelope::read::ArchivedRecord;
use stripe_webhook_metrics as m;

use crate::background::Background;
use crate::cursor::{Cursor, DestinationLock};
use crate::dead_letters;
use crate::glob::TypeFilter;
use crate::segments::{self, SegmentKey, SegmentReader};

/// Lines read per call while counting (what a scan holds in memory at once).
const BATCH: usize = 256;

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

    fn add(&mut self, other: Lag) {
        self.records += other.records;
        self.oldest = match (self.oldest, other.oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What earlier scans counted, so the next one reads only what changed: archived lines never
/// change, so a segment's count after an offset the cursor still stands at is only extended by
/// what was appended since, and a pending record is parsed once. Without it a scan would parse
/// the whole backlog each time: a destination down for a week would cost ingest CPU that grows
/// with the outage.
#[derive(Debug, Default)]
pub struct LagCache {
    /// Per segment: the count of records from the cursor's offset to where the last scan stopped.
    tails: HashMap<SegmentKey, Tail>,
    /// Pending records already read: whether each counts, and when it was archived.
    pending: HashMap<(SegmentKey, u64), Option<ReceivedAt>>,
}

#[derive(Debug, Default)]
struct Tail {
    /// The cursor's offset the count starts at.
    from: u64,
    /// Where the last scan stopped (the next line to read).
    to: u64,
    /// Sealed and read to its end: nothing more to read.
    finished: bool,
    counted: Lag,
}

/// Counts what `cursor` does not cover: its pending records and every record after each
/// segment's offset (open segments up to their last complete line), that FORWARD_START and
/// `types` let through. `cache` carries what earlier scans of the same destination counted
/// ([`LagCache`]; a fresh one counts everything).
///
/// # Errors
/// The archive cannot be listed or a segment read.
pub fn lag(
    archive_dir: &Path,
    cursor: &Cursor,
    types: &TypeFilter,
    cache: &mut LagCache,
) -> std::io::Result<Lag> {
    let start = cursor.start_at();
    let mut reader = SegmentReader::default();
    let counts = |line: &[u8]| {
        ArchivedRecord::parse(line)
            .ok()
            .filter(|r| r.received_at >= start && types.matches(&r.event_type))
            .map(|r| r.received_at)
    };
    let every_type = types.is_all();
    let mut lag = Lag::default();
    let mut tails = HashMap::new();
    let mut pending = HashMap::new();
    for (partition, dir) in segments::partitions(archive_dir, cursor.done_before())? {
        for file in segments::segments(partition, &dir)? {
            let stored = cursor.segment(&file.key);
            if stored.done {
                continue;
            }
            for &offset in &stored.pending {
                let key = (file.key.clone(), offset);
                let counted = match cache.pending.remove(&key) {
                    Some(counted) => Some(counted),
                    None => reader
                        .read(&file, offset, 1)
                        .ok()
                        .and_then(|chunk| chunk.lines.first().map(|l| counts(&l.bytes))),
                };
                if let Some(counted) = counted {
                    lag.add(Lag {
                        records: u64::from(counted.is_some()),
                        oldest: counted,
                    });
                    pending.insert(key, counted);
                }
            }
            let mut tail = match cache.tails.remove(&file.key) {
                Some(tail) if tail.from == stored.offset => tail,
                _ => Tail {
                    from: stored.offset,
                    to: stored.offset,
                    ..Tail::default()
                },
            };
            // A segment gone (sealed under us: counted at the next scan) or unreadable (the
            // forwarder logs it) counts as nothing more.
            while !tail.finished {
                let Ok(chunk) = reader.read(&file, tail.to, BATCH) else {
                    break;
                };
                for line in &chunk.lines {
                    // Every type forwarded, and a record of this tail already counted: a segment's
                    // later lines were archived after it (to the millisecond: receipt times are
                    // taken before the writer orders them), so they count without a parse. A
                    // full parse of each record was the forwarder's largest cost to ingest while a
                    // destination was down (the load bench's file-forward case).
                    if every_type && tail.counted.records > 0 {
                        tail.counted.records += 1;
                    } else if let Some(at) = counts(&line.bytes) {
                        tail.counted.add(Lag {
                            records: 1,
                            oldest: Some(at),
                        });
                    }
                }
                let progressed = chunk.next != tail.to;
                tail.to = chunk.next;
                tail.finished = chunk.finished;
                if chunk.lines.len() < BATCH || !progressed {
                    break;
                }
            }
            lag.add(tail.counted);
            tails.insert(file.key, tail);
        }
    }
    // Only what this cursor still needs is kept (finished segments and records drop out).
    *cache = LagCache { tails, pending };
    Ok(lag)
}

/// A finished scan: how long it took, the lag, the dead letters, the re-driven total, and the
/// cache for the next scan.
type Scan = (Duration, std::io::Result<Lag>, u64, u64, LagCache);

/// Keeps a running forwarder's lag and dead-letter gauges current: a scan after each stored
/// cursor, at most every few seconds and never taking more than a tenth of the time; each scan
/// reads only what changed since the last ([`LagCache`]).
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
    /// What the last scan counted (with the running scan while one runs).
    cache: Option<LagCache>,
    /// The thread scans run on (low priority, crate::background).
    thread: Background,
}

impl LagTracker {
    pub(crate) fn new(
        archive_dir: PathBuf,
        dir: PathBuf,
        id: String,
        types: TypeFilter,
        thread: Background,
    ) -> Self {
        Self {
            archive_dir,
            dir,
            id,
            types,
            cursor: None,
            running: None,
            next_at: Instant::now(),
            redriven: None,
            cache: Some(LagCache::default()),
            thread,
        }
    }

    /// The cursor just stored.
    pub(crate) fn cursor(&mut self, cursor: Cursor) {
        self.cursor = Some(cursor);
    }

    /// Collects a finished scan (setting the gauges) and starts the next one when due.
    pub(crate) fn tick(&mut self) {
        if let Some(slot) = &self.running {
            let Some((took, lag, dead, redriven, cache)) =
                slot.lock().unwrap_or_else(PoisonError::into_inner).take()
            else {
                return;
            };
            self.running = None;
            self.cache = Some(cache);
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
        let mut cache = self.cache.take().unwrap_or_default();
        let slot = Arc::new(Mutex::new(None));
        self.running = Some(Arc::clone(&slot));
        let (archive_dir, dir, types) = (
            self.archive_dir.clone(),
            self.dir.clone(),
            self.types.clone(),
        );
        let spawned = self.thread.spawn(move || {
            let started = Instant::now();
            let lag = lag(&archive_dir, &cursor, &types, &mut cache);
            let scan = (
                started.elapsed(),
                lag,
                dead_letters::count(&dir),
                dead_letters::redriven(&dir),
                cache,
            );
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(scan);
        });
        if let Err(e) = spawned {
            tracing::warn!(destination = %self.id, error = %e, "measuring the lag failed");
            self.running = None;
            self.next_at = Instant::now() + Duration::from_secs(60);
        }
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
        Some(cursor) => {
            lag(archive_dir, cursor, types, &mut LagCache::default()).map_err(|e| e.to_string())?
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::SegmentCursor;
    use bytes::Bytes;
    use std::io::Write;
    use stripe_webhook_envelope::{EnvelopeOptions, encode};

    fn line(n: u64, at: ReceivedAt) -> Vec<u8> {
        let body = format!(
            "{{\"id\":\"evt_{n}\",\"type\":\"{}\",\"data\":{{\"object\":{{\"id\":\"ch_{n}\"}}}}}}",
            if n.is_multiple_of(3) {
                "invoice.paid"
            } else {
                "charge.succeeded"
            }
        );
        let at = ReceivedAt::from_unix_millis(at.unix_millis() + i64::try_from(n).unwrap());
        let record = encode(
            Bytes::from(body),
            "t=1,v1=00",
            at,
            &EnvelopeOptions::default(),
        );
        record.unwrap().line().to_vec()
    }

    /// The cached scan counts what a fresh scan counts, as the archive grows, the cursor moves
    /// and a segment is sealed; and it reads only what changed.
    #[test]
    fn a_cached_scan_counts_what_a_fresh_scan_counts() {
        let archive = tempfile::tempdir().unwrap();
        let now = ReceivedAt::now();
        let day = now.partition();
        let dir = archive.path().join("webhooks").join(day.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let open = dir.join("1-1-a.ndjson");
        let key: SegmentKey = format!("{day}/1-1-a").parse().unwrap();
        let mut file = std::fs::File::create(&open).unwrap();
        let mut offsets = Vec::new();
        let mut written = 0u64;
        let mut append = |file: &mut std::fs::File, range: std::ops::Range<u64>| {
            for n in range {
                let bytes = line(n, now);
                offsets.push(written);
                written += bytes.len() as u64;
                file.write_all(&bytes).unwrap();
            }
        };
        append(&mut file, 0..600);
        let types = TypeFilter::parse("charge.*").unwrap();
        let mut cursor = Cursor::starting_at(now);
        let mut cache = LagCache::default();
        let check = |cursor: &Cursor, cache: &mut LagCache| {
            let cached = lag(archive.path(), cursor, &types, cache).unwrap();
            let fresh = lag(archive.path(), cursor, &types, &mut LagCache::default()).unwrap();
            assert_eq!(cached, fresh);
            cached
        };
        assert_eq!(check(&cursor, &mut cache).records, 400);
        // The archive grows: only the new lines are read (the cached count is extended).
        append(&mut file, 600..900);
        assert_eq!(check(&cursor, &mut cache).records, 600);
        assert_eq!(cache.tails[&key].from, 0);
        // The cursor moves past 300 lines, 2 of them still pending.
        let entry = SegmentCursor {
            offset: offsets[300],
            pending: vec![offsets[1], offsets[3]],
            done: false,
        };
        cursor.segments.insert(key.to_string(), entry);
        let moved = check(&cursor, &mut cache);
        assert_eq!(
            moved.records, 401,
            "200 of the last 600 are invoices, plus 1 of 2 pending"
        );
        assert_eq!(
            moved.oldest.map(|o| o.unix_millis()),
            Some(now.unix_millis() + 1)
        );
        assert_eq!(cache.pending.len(), 2);
        // Sealed (gzip, same bytes), then the open name is gone.
        drop(file);
        let bytes = std::fs::read(&open).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.join("1-1-a.ndjson.gz")).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(&bytes).unwrap();
        gz.finish().unwrap();
        std::fs::remove_file(&open).unwrap();
        assert_eq!(check(&cursor, &mut cache).records, 401);
        assert!(cache.tails[&key].finished);
        // Every type: the same counts, most lines counted without a parse.
        let all = TypeFilter::default();
        let mut every = LagCache::default();
        let cached = lag(archive.path(), &cursor, &all, &mut every).unwrap();
        let fresh = lag(archive.path(), &cursor, &all, &mut LagCache::default()).unwrap();
        assert_eq!(cached, fresh);
        assert_eq!(
            cached.records,
            600 + 2,
            "every line after the offset, and both pending"
        );
        // Finished: nothing counts, nothing is kept.
        cursor.segments.get_mut(&key.to_string()).unwrap().done = true;
        assert_eq!(check(&cursor, &mut cache), Lag::default());
        assert!(cache.tails.is_empty() && cache.pending.is_empty());
    }
}
