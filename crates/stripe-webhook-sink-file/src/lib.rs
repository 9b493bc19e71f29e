//! The durable file sink of the Stripe webhook archive: [`FileSink`], a
//! [`RecordSink`] that appends each record to an NDJSON segment
//! under `<ARCHIVE_DIR>/webhooks/year=YYYY/month=MM/day=DD/`, acknowledges it only once it is
//! `fdatasync`ed under durable names, and seals segments to `.ndjson.gz` off the acknowledgement
//! path.
//!
//! The names, suffixes and partitions it writes, and which files a reader reads, are
//! [`stripe_webhook_envelope::layout`]'s; this crate owns durability: group commit, directory
//! syncs, rotation, sealing and crash recovery (see [`FileSink`]). It runs one writer thread and
//! one sealing thread (at a lowered priority) and compresses with libdeflate, which is why it is
//! a crate of its own: the trait crate `stripe-webhook-sink` and the ingest core stay free of
//! both.
//!
//! ```
//! use bytes::Bytes;
//! use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode, layout};
//! use stripe_webhook_sink::RecordSink;
//! use stripe_webhook_sink_file::{FileSink, FileSinkConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let archive_dir = tempfile::tempdir().unwrap();
//! let (sink, recovery) = FileSink::open(FileSinkConfig::new(archive_dir.path())).await.unwrap();
//! assert_eq!(recovery.segments_recovered(), 0); // a fresh directory: nothing to recover
//!
//! let body = Bytes::from_static(br#"{"id":"evt_1","object":"event","type":"charge.succeeded","data":{}}"#);
//! let received_at = ReceivedAt::from_unix_millis(1_795_731_281_123); // 2026-11-26
//! let record = encode(body, "t=1,v1=00", received_at, &EnvelopeOptions::default()).unwrap();
//! sink.put(record).await.unwrap(); // Ok: written and synced
//!
//! // While open, readers that want the newest records read the open segment.
//! let partition = layout::partition_dir(archive_dir.path(), received_at.partition());
//! let files = layout::list_partition(&partition).unwrap();
//! assert_eq!(files.len(), 1);
//! assert_eq!(files[0].class, layout::FileClass::Open);
//!
//! sink.shutdown().await.unwrap(); // seals: the segment is now a .ndjson.gz
//! let files = layout::list_partition(&partition).unwrap();
//! assert_eq!(files[0].class, layout::FileClass::Sealed);
//! assert!(files[0].path.to_str().unwrap().ends_with(".ndjson.gz"));
//! # });
//! ```

mod dirs;
mod recovery;
mod sealer;
mod segment;
mod writer;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stripe_webhook_envelope::layout::{self, ARCHIVE_PREFIX};
use tokio::sync::oneshot;

pub use recovery::{RecoveredSegment, RecoveryOutcome, RecoveryReport};

use dirs::DurableDirs;
use sealer::Sealer;
use stripe_webhook_metrics as m;
use stripe_webhook_sink::{Record, RecordSink, SinkError, SinkErrorKind, SinkHealth};
use writer::{Command, Put, Settings, Writer};

/// The README's example, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

/// Configuration of a [`FileSink`]. Build it with [`FileSinkConfig::new`] and adjust fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// The archive directory (`ARCHIVE_DIR`); records go under `<dir>/webhooks/`.
    pub dir: PathBuf,
    /// A segment is sealed once it holds this many bytes (default 128 MiB). A segment only exceeds
    /// it when a single record is larger.
    pub max_segment_bytes: u64,
    /// A segment is sealed this long after it was opened (default 1 hour).
    pub max_segment_age: Duration,
    /// Seal to gzip `<segment>.ndjson.gz` at this level, 1 (fastest) to 9 (smallest); default
    /// `Some(6)`. Sealing runs on its own thread; at level 6 it compresses roughly 80–100 MB/s per
    /// core, so an archive written faster than that for long wants a lower level. `None`: sealing
    /// renames the segment to `<segment>.sealed.ndjson`, uncompressed.
    pub sealed_gzip_level: Option<u32>,
    /// A day's segment is sealed once the wall clock is this far past the end of that UTC day
    /// (default 2 minutes), so records received just before midnight still join it.
    pub day_seal_grace: Duration,
    /// Records waiting for the writer; when full, `put` fails fast with
    /// [`SinkErrorKind::Overloaded`] (default 65,536).
    pub queue_capacity: usize,
    /// The longest a `put` waits for its record to be written and synced (default 5 s); then it
    /// fails with [`SinkErrorKind::Timeout`] (the webhook gets 503 and is retried), and the sink
    /// reports not ready while that write is still stuck. Bounds a webhook's wait on a stalled disk
    /// (a dying drive, an NFS or EFS mount that stopped answering). Must be positive.
    pub write_timeout: Duration,
    /// The longest [`FileSink::open`] may take (default 120 s): creating and syncing the
    /// directories and recovering (sealing) orphaned segments. Past it `open` fails with
    /// [`SinkErrorKind::Timeout`] naming a stalled disk, instead of hanging the start. Must be
    /// positive.
    pub open_timeout: Duration,
}

impl FileSinkConfig {
    /// Default [`FileSinkConfig::max_segment_bytes`]: 128 MiB.
    pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
    /// Default [`FileSinkConfig::max_segment_age`]: 1 hour.
    pub const DEFAULT_MAX_SEGMENT_AGE: Duration = Duration::from_secs(3600);
    /// Default [`FileSinkConfig::sealed_gzip_level`]: 6 (zlib's default).
    pub const DEFAULT_GZIP_LEVEL: u32 = 6;
    /// Default [`FileSinkConfig::day_seal_grace`]: 2 minutes.
    pub const DEFAULT_DAY_SEAL_GRACE: Duration = Duration::from_secs(120);
    /// Default [`FileSinkConfig::queue_capacity`]: 65,536 records.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
    /// Default [`FileSinkConfig::write_timeout`]: 5 seconds.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`FileSinkConfig::open_timeout`]: 120 seconds.
    pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(120);

    /// The defaults, archiving under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_segment_bytes: Self::DEFAULT_MAX_SEGMENT_BYTES,
            max_segment_age: Self::DEFAULT_MAX_SEGMENT_AGE,
            sealed_gzip_level: Some(Self::DEFAULT_GZIP_LEVEL),
            day_seal_grace: Self::DEFAULT_DAY_SEAL_GRACE,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
            open_timeout: Self::DEFAULT_OPEN_TIMEOUT,
        }
    }
}

/// Counters of a [`FileSink`] since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSinkStats {
    /// Records written, synced and acknowledged.
    pub records: u64,
    /// Bytes of those records.
    pub bytes: u64,
    /// Group commits: queue drains that wrote at least one record.
    pub batches: u64,
    /// Successful `fdatasync` calls on segment data (at most one per touched segment per batch).
    pub syncs: u64,
    /// Successful directory `fsync`s: `ARCHIVE_DIR`'s and its parent's at open, one per new
    /// segment (its name), and one per directory entry of a partition chain the first time this
    /// process uses it.
    pub directory_syncs: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Segments sealed (or removed, when they held no whole line).
    pub segments_sealed: u64,
    /// Failed writes or syncs (their records were not acknowledged).
    pub write_errors: u64,
    /// Puts that gave up after [`FileSinkConfig::write_timeout`] (not acknowledged; the record may
    /// still be written later).
    pub write_timeouts: u64,
    /// Failed sealing attempts (retried; the records stay durable in the `.ndjson`).
    pub seal_errors: u64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    directory_syncs: AtomicU64,
    segments_created: AtomicU64,
    segments_sealed: AtomicU64,
    write_errors: AtomicU64,
    write_timeouts: AtomicU64,
    seal_errors: AtomicU64,
    /// The last write (segment creation, write or sync) failed: not ready until one succeeds.
    write_failing: AtomicBool,
    /// Puts queued for the writer and not yet taken.
    queued: AtomicU64,
    /// Segments created and not yet sealed, and the bytes acknowledged into them.
    unsealed_segments: AtomicU64,
    unsealed_bytes: AtomicU64,
    /// When the writer's current commit began, in milliseconds since `epoch` plus one; 0 while
    /// it is not writing.
    writing_since: AtomicU64,
    /// The current commit's stall has been logged (once per stuck commit).
    stall_logged: AtomicBool,
    epoch: Instant,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            directory_syncs: AtomicU64::new(0),
            segments_created: AtomicU64::new(0),
            segments_sealed: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
            seal_errors: AtomicU64::new(0),
            write_failing: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            unsealed_segments: AtomicU64::new(0),
            unsealed_bytes: AtomicU64::new(0),
            writing_since: AtomicU64::new(0),
            stall_logged: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }
}

/// Marks the writer as writing until dropped (see [`Counters::writing`]).
pub(crate) struct Writing<'a>(&'a Counters);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing_since.store(0, Ordering::Release);
        if self.0.stall_logged.swap(false, Ordering::AcqRel) {
            tracing::info!("the stalled archive write finished");
        }
    }
}

impl Counters {
    fn now_millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    /// The writer starts a commit (segment creation, write, sync); it ends when the guard drops.
    pub(crate) fn writing(&self) -> Writing<'_> {
        self.writing_since
            .store(self.now_millis().saturating_add(1), Ordering::Release);
        Writing(self)
    }
    /// How long the writer's current commit has been running, if it is in one.
    fn writing_for(&self) -> Option<Duration> {
        match self.writing_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(Duration::from_millis(
                self.now_millis().saturating_sub(since - 1),
            )),
        }
    }
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn committed(&self, records: u64, bytes: u64) {
        Self::add(&self.records, records);
        Self::add(&self.bytes, bytes);
        let unsealed = self.unsealed_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        metrics::gauge!(m::FILE_UNSEALED_BYTES).set(unsealed as f64);
        if self.write_failing.swap(false, Ordering::AcqRel) {
            tracing::info!("archive writes succeed again: the file sink is ready");
        }
    }
    pub(crate) fn batch(&self) {
        Self::add(&self.batches, 1);
    }
    pub(crate) fn sync(&self) {
        Self::add(&self.syncs, 1);
    }
    pub(crate) fn directories_synced(&self, n: u64) {
        Self::add(&self.directory_syncs, n);
    }
    pub(crate) fn segment_created(&self) {
        Self::add(&self.segments_created, 1);
        let unsealed = self.unsealed_segments.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(m::FILE_UNSEALED_SEGMENTS).set(unsealed as f64);
    }
    /// A segment of `len` acknowledged bytes was sealed into `sealed_bytes` bytes.
    pub(crate) fn segment_sealed(&self, len: u64, sealed_bytes: u64) {
        Self::add(&self.segments_sealed, 1);
        let segments = self
            .unsealed_segments
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        let bytes = self
            .unsealed_bytes
            .fetch_sub(len, Ordering::Relaxed)
            .saturating_sub(len);
        metrics::gauge!(m::FILE_UNSEALED_SEGMENTS).set(segments as f64);
        metrics::gauge!(m::FILE_UNSEALED_BYTES).set(bytes as f64);
        metrics::counter!(m::FILE_SEALED_SEGMENTS_TOTAL).increment(1);
        metrics::counter!(m::FILE_SEALED_BYTES_TOTAL).increment(sealed_bytes);
    }
    /// A put entered the writer's queue.
    pub(crate) fn queued_one(&self) {
        let depth = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(m::FILE_QUEUE_RECORDS).set(depth as f64);
    }
    /// `taken` puts left the writer's queue (taken by the writer, or given back).
    pub(crate) fn dequeued(&self, taken: u64) {
        let depth = self
            .queued
            .fetch_sub(taken, Ordering::Relaxed)
            .saturating_sub(taken);
        metrics::gauge!(m::FILE_QUEUE_RECORDS).set(depth as f64);
    }
    pub(crate) fn write_failed(&self) {
        Self::add(&self.write_errors, 1);
        metrics::counter!(m::FILE_WRITE_ERRORS_TOTAL).increment(1);
        if !self.write_failing.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "an archive write failed: the file sink reports not ready until one succeeds"
            );
        }
    }
    pub(crate) fn seal_failed(&self) {
        Self::add(&self.seal_errors, 1);
        metrics::counter!(m::FILE_SEAL_ERRORS_TOTAL).increment(1);
    }
    /// A put gave up waiting; logs (once per stuck commit) when the writer is stuck in one.
    fn write_timed_out(&self, dir: &Path, timeout: Duration) {
        Self::add(&self.write_timeouts, 1);
        if let Some(running) = self.writing_for().filter(|running| *running >= timeout)
            && !self.stall_logged.swap(true, Ordering::AcqRel)
        {
            tracing::error!(
                dir = %dir.display(),
                running_ms = running.as_millis() as u64,
                timeout_ms = timeout.as_millis() as u64,
                "an archive write or sync has not returned within the write timeout: the disk \
                 under the archive looks stalled; webhooks get 503 and the file sink reports not \
                 ready until it returns"
            );
        }
    }
    fn snapshot(&self) -> FileSinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FileSinkStats {
            records: get(&self.records),
            bytes: get(&self.bytes),
            batches: get(&self.batches),
            syncs: get(&self.syncs),
            directory_syncs: get(&self.directory_syncs),
            segments_created: get(&self.segments_created),
            segments_sealed: get(&self.segments_sealed),
            write_errors: get(&self.write_errors),
            write_timeouts: get(&self.write_timeouts),
            seal_errors: get(&self.seal_errors),
        }
    }
}

/// Maps an I/O error to a sink error.
///
/// [`SinkErrorKind::Permanent`] for what retrying cannot fix: permission denied (`EACCES`,
/// `EPERM`), read-only file system (`EROFS`), a path component that is not a directory or is one
/// where a file is expected. Everything else, notably a full disk or quota (`ENOSPC`, `EDQUOT`) and
/// `EIO`, is [`SinkErrorKind::Unavailable`]: it may clear, so the webhook is retried.
pub(crate) fn io_error(context: &str, error: &io::Error) -> SinkError {
    use io::ErrorKind as K;
    let kind = match error.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem | K::NotADirectory | K::IsADirectory => {
            SinkErrorKind::Permanent
        }
        _ => SinkErrorKind::Unavailable,
    };
    SinkError::new(kind, format!("{context}: {error}"))
}

/// The durable local sink, and the default when the service runs as a server.
///
/// Records go to `<dir>/webhooks/year=YYYY/month=MM/day=DD/<segment>.ndjson` (the partition is the
/// record's UTC receipt date, [`stripe_webhook_envelope::ReceivedAt::partition`]), one line each.
///
/// # Durability and group commit
/// [`RecordSink::put`] resolves `Ok` only after the line is written and the segment is
/// `fdatasync`ed, and only under names that survive a crash: a new segment's directory is
/// `fsync`ed after the segment is named, and before the first acknowledgement in a segment every
/// directory on its path, up to the directory holding `ARCHIVE_DIR`, has been `fsync`ed
/// successfully by this process since the entry below it existed. A directory that merely exists is
/// never taken as durable (its creator may have failed to sync it, be about to, or have been
/// killed first); what this process synced is remembered, so a partition chain costs its syncs
/// once (a new day: one more). A failed directory sync fails that put, and no later sync of that
/// directory is trusted for entries made before the failure (a failed `fsync` may drop them and
/// report the next one clean): the next put makes the entry again (a new segment name; a
/// partition directory renamed aside and back) and syncs that. One writer thread drains the bounded queue, appends every queued line with one `write`
/// per touched segment, syncs each touched segment once, then acknowledges the whole batch:
/// concurrent puts share syncs, so throughput grows with concurrency. When the queue is full,
/// `put` fails at once with [`SinkErrorKind::Overloaded`].
///
/// # A stalled disk
/// A `put` waits at most [`FileSinkConfig::write_timeout`] for its record (so it needs a Tokio
/// runtime with the time driver: `enable_time` or `enable_all`); then it fails with
/// [`SinkErrorKind::Timeout`] (the record may still be written later, never acknowledged), and
/// [`RecordSink::health`] reports not ready while the writer's current write has been running for
/// longer than that. Nothing on the async runtime waits for the writer or sealer threads without a
/// bound: [`RecordSink::shutdown`] can be abandoned by a caller's timeout and the process can exit
/// while a thread is stuck in `fsync` (acknowledged records are durable; the next start seals what
/// is left).
///
/// # Segments and sealing
/// Segment names are `<unix-millis>-<pid>-<random 64-bit hex>`, unique across processes and
/// restarts, so several processes may share one directory. Each open segment carries an exclusive
/// advisory lock (`flock`) for as long as its writer owns it. A segment is sealed (by a background
/// thread that holds its lock until done) when it reaches [`FileSinkConfig::max_segment_bytes`]
/// or [`FileSinkConfig::max_segment_age`], when the wall clock passes the end of its UTC day plus
/// [`FileSinkConfig::day_seal_grace`], after a failed write, and at shutdown. Sealing writes
/// `<segment>.ndjson.gz.tmp`, fsyncs it, renames it to `<segment>.ndjson.gz`, fsyncs the directory,
/// then removes the `.ndjson` and fsyncs the directory again: readers never see a partial `.gz`,
/// and a crash at any step loses nothing. With `sealed_gzip_level = None` the segment is renamed to
/// `<segment>.sealed.ndjson` instead. A seal that fails midway is retried every 10 seconds (and
/// once more at shutdown) from where it stopped: a sealed file already there is kept, a `.ndjson`
/// already removed counts as removed, and the final directory sync always runs again; the
/// segment's handle is released as soon as its `.ndjson` name is gone. Readers of sealed data read
/// `*.ndjson.gz` (or `*.sealed.ndjson`); `*.ndjson` files are still being written.
///
/// # Recovery
/// [`FileSink::open`] first recovers orphaned segments (unsealed `.ndjson` whose lock can be
/// taken, i.e. whose writer is gone): it cuts the torn tail a crash mid-write may leave (bytes
/// after the last `\n`, or from the first line holding a NUL byte, as left by an unsynced
/// zero-filled range; such bytes were never acknowledged), fsyncs, seals, and reports it in a
/// [`RecoveryReport`]. Segments locked by a live writer are left alone.
///
/// # Errors
/// I/O errors map to [`SinkErrorKind::Permanent`] (permission denied, read-only file system, not a
/// directory) or [`SinkErrorKind::Unavailable`] (everything else, e.g. disk full: may clear). After
/// a failed write or sync, the records of that batch are not acknowledged, the segment is cut back
/// to its last synced length and retired, and later records go to a new segment.
///
/// ```
/// use bytes::Bytes;
/// use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
/// use stripe_webhook_sink::RecordSink;
/// use stripe_webhook_sink_file::{FileSink, FileSinkConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap(); // ARCHIVE_DIR
/// let (sink, report) = FileSink::open(FileSinkConfig::new(dir.path())).await.unwrap();
/// report.log();
/// sink.healthcheck().await.unwrap();
///
/// let body = Bytes::from_static(br#"{"id":"evt_1","object":"event","type":"charge.succeeded","data":{}}"#);
/// let received_at = ReceivedAt::now();
/// let record = encode(body, "t=1,v1=00", received_at, &EnvelopeOptions::default()).unwrap();
/// sink.put(record).await.unwrap(); // durable: written and fdatasync'ed
/// sink.shutdown().await.unwrap(); // seals: the segment is now a .ndjson.gz
///
/// let partition = stripe_webhook_envelope::layout::partition_dir(dir.path(), received_at.partition());
/// let sealed = std::fs::read_dir(partition).unwrap().next().unwrap().unwrap();
/// assert!(sealed.file_name().to_str().unwrap().ends_with(".ndjson.gz"));
/// assert_eq!(sink.stats().records, 1);
/// # });
/// ```
pub struct FileSink {
    tx: mpsc::SyncSender<Command>,
    closing: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    dir: PathBuf,
    queue_capacity: usize,
    write_timeout: Duration,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("dir", &self.dir)
            .field("closing", &self.closing.load(Ordering::Relaxed))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FileSink {
    /// Opens the sink: creates the directory, recovers orphaned segments (sealing them before it
    /// returns), and starts the writer and sealer threads.
    ///
    /// The blocking work runs on a thread of its own, bounded by
    /// [`FileSinkConfig::open_timeout`] (a thread stuck in a stalled `fsync` is left behind, not
    /// waited for, so the process can still exit); use [`FileSink::open_blocking`] outside a
    /// runtime.
    ///
    /// # Errors
    /// An invalid configuration ([`SinkErrorKind::Permanent`]), a directory that cannot be
    /// created or listed, or [`SinkErrorKind::Timeout`] when the open did not finish within
    /// [`FileSinkConfig::open_timeout`]. Failures to recover a single segment do not fail `open`:
    /// they are in the report (and logged), and the segment is retried at the next start.
    pub async fn open(config: FileSinkConfig) -> Result<(FileSink, RecoveryReport), SinkError> {
        let (timeout, dir) = (config.open_timeout, config.dir.clone());
        if timeout.is_zero() {
            return Err(SinkError::new(
                SinkErrorKind::Permanent,
                "file sink: open_timeout must be positive",
            ));
        }
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("file-sink-open".into())
            .spawn(move || {
                let _ = tx.send(Self::open_blocking(config));
            })
            .map_err(|e| {
                SinkError::new(SinkErrorKind::Unavailable, "could not start the file sink")
                    .with_source(e)
            })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(_)) => Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "opening the file sink failed: its thread ended without an answer",
            )),
            Err(_) => Err(SinkError::new(
                SinkErrorKind::Timeout,
                format!(
                    "opening the file sink in {} did not finish within {} s: the disk under the \
                     archive looks stalled (creating or syncing its directories, or recovering \
                     segments, never returned)",
                    dir.display(),
                    timeout.as_secs_f64()
                ),
            )),
        }
    }

    /// [`FileSink::open`] for callers outside an async context (it blocks on file I/O).
    ///
    /// # Errors
    /// As [`FileSink::open`].
    pub fn open_blocking(config: FileSinkConfig) -> Result<(FileSink, RecoveryReport), SinkError> {
        if config.max_segment_bytes == 0 || config.queue_capacity == 0 {
            return Err(SinkError::new(
                SinkErrorKind::Permanent,
                "file sink: max_segment_bytes and queue_capacity must be at least 1",
            ));
        }
        if config.write_timeout.is_zero() {
            return Err(SinkError::new(
                SinkErrorKind::Permanent,
                "file sink: write_timeout must be positive",
            ));
        }
        let gzip = config
            .sealed_gzip_level
            .map(|level| {
                i32::try_from(level)
                    .ok()
                    .filter(|level| (1..=9).contains(level))
                    .and_then(|level| libdeflater::CompressionLvl::new(level).ok())
                    .ok_or_else(|| {
                        SinkError::new(
                            SinkErrorKind::Permanent,
                            "file sink: sealed_gzip_level must be 1 to 9 (or None for no compression)",
                        )
                    })
            })
            .transpose()?;
        let root = layout::archive_root(&config.dir);
        let mut dirs = DurableDirs::new(&config.dir);
        // Before anything is created: a crash may have left `webhooks` itself aside.
        dirs::restore_aside(&config.dir, ARCHIVE_PREFIX).map_err(|e| {
            io_error(
                &format!("restoring directories under {}", root.display()),
                &e,
            )
        })?;
        let synced = dirs
            .create(&root)
            .map_err(|e| io_error(&format!("creating {}", root.display()), &e))?;
        let report = recovery::recover(&root, gzip)?;

        let counters = Arc::new(Counters::default());
        counters.directories_synced(synced);
        let (seal_tx, seal_rx) = mpsc::channel();
        let sealer = Sealer {
            gzip,
            counters: Arc::clone(&counters),
            failed: Vec::new(),
        };
        let spawn_error = |e: io::Error| {
            SinkError::new(
                SinkErrorKind::Unavailable,
                "could not start a file sink thread",
            )
            .with_source(e)
        };
        let sealer_thread = std::thread::Builder::new()
            .name("file-sink-sealer".into())
            .spawn(move || sealer.run(seal_rx))
            .map_err(spawn_error)?;
        let writer = Writer::new(
            Settings {
                dir: config.dir.clone(),
                max_segment_bytes: config.max_segment_bytes,
                max_segment_age: config.max_segment_age,
                day_seal_grace: config.day_seal_grace,
            },
            dirs,
            Arc::clone(&counters),
            seal_tx,
        );
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let writer_thread = std::thread::Builder::new()
            .name("file-sink-writer".into())
            .spawn(move || writer.run(rx, sealer_thread))
            .map_err(spawn_error)?;
        let sink = FileSink {
            tx,
            closing: AtomicBool::new(false),
            writer: Mutex::new(Some(writer_thread)),
            counters,
            dir: config.dir,
            queue_capacity: config.queue_capacity,
            write_timeout: config.write_timeout,
        };
        Ok((sink, report))
    }

    /// The archive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters since the sink was opened.
    pub fn stats(&self) -> FileSinkStats {
        self.counters.snapshot()
    }

    fn writer_alive(&self) -> bool {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    fn shutting_down() -> SinkError {
        SinkError::new(
            SinkErrorKind::ShuttingDown,
            "the file sink is shutting down",
        )
    }

    /// Sends a command, waiting (asynchronously, polling) for queue space if needed. `false` if
    /// the writer is gone. Never parks a runtime thread on a writer that may be stuck: dropping the
    /// future (a caller's timeout) abandons the wait.
    async fn send_waiting(&self, mut command: Command) -> bool {
        const POLL: Duration = Duration::from_millis(5);
        loop {
            match self.tx.try_send(command) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    command = back;
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Sends a control command and waits for its answer. When the writer is gone, or goes without
    /// answering: `Ok` if it ended after a shutdown, an error if its thread panicked.
    async fn control(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), SinkError>>) -> Command,
    ) -> Result<(), SinkError> {
        let (ack, answer) = oneshot::channel();
        let answered = if self.send_waiting(command(ack)).await {
            answer.await.ok()
        } else {
            None
        };
        match answered {
            Some(result) => result,
            None => self.writer_ended().await,
        }
    }

    /// The writer dropped a command unanswered or its queue is closed: it is ending. Waits a
    /// little (asynchronously) for its thread to finish, then tells how it ended.
    async fn writer_ended(&self) -> Result<(), SinkError> {
        for _ in 0..200 {
            if !self.writer_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.writer_alive() {
            return Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "the file sink writer stopped answering",
            ));
        }
        self.reap_writer()
    }

    /// Joins the writer thread if it has finished (never waits for one that has not): an error if
    /// it panicked.
    fn reap_writer(&self) -> Result<(), SinkError> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if writer.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(thread) = writer.take()
            && thread.join().is_err()
        {
            return Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "the file sink writer thread panicked",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl RecordSink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    /// Not ready while shutting down, when the writer thread is not running, while the writer's
    /// current write has been running for longer than [`FileSinkConfig::write_timeout`] (a stalled
    /// disk), or when the last write (segment creation, directory sync, write or `fdatasync`)
    /// failed; ready again after the next write that succeeds.
    fn health(&self) -> SinkHealth {
        if self.closing.load(Ordering::Acquire) {
            SinkHealth::not_ready("the file sink is shutting down")
        } else if !self.writer_alive() {
            SinkHealth::not_ready("the file sink writer thread is not running")
        } else if let Some(stuck) = self
            .counters
            .writing_for()
            .filter(|running| *running > self.write_timeout)
        {
            SinkHealth::not_ready(format!(
                "an archive write under {} has been running for {} ms, longer than the write \
                 timeout ({} ms): a stalled disk?",
                self.dir.display(),
                stuck.as_millis(),
                self.write_timeout.as_millis()
            ))
        } else if self.counters.write_failing.load(Ordering::Acquire) {
            SinkHealth::not_ready(format!(
                "the last archive write under {} failed",
                self.dir.display()
            ))
        } else {
            SinkHealth::ready()
        }
    }

    /// Checks that the directory exists or can be created and is writable (creates, syncs and
    /// removes a probe file), and that the writer thread runs.
    async fn healthcheck(&self) -> Result<(), SinkError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Self::shutting_down());
        }
        if !self.writer_alive() {
            return Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "the file sink writer thread is not running",
            ));
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || probe(&dir))
            .await
            .map_err(|e| {
                SinkError::new(SinkErrorKind::Unavailable, "file sink health check failed")
                    .with_source(e)
            })?
    }

    async fn put(&self, record: Record) -> Result<(), SinkError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Self::shutting_down());
        }
        if record.line().last() != Some(&b'\n') {
            return Err(SinkError::new(
                SinkErrorKind::Permanent,
                "record line does not end with a newline",
            ));
        }
        let (ack, answer) = oneshot::channel();
        let put = Put {
            line: record.line().clone(),
            received_at: record.received_at(),
            ack,
        };
        // Counted before it is sent: the writer may take it (and count it out) at once.
        self.counters.queued_one();
        match self.tx.try_send(Command::Put(put)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.dequeued(1);
                return Err(SinkError::new(
                    SinkErrorKind::Overloaded,
                    format!(
                        "the file sink queue is full ({} records)",
                        self.queue_capacity
                    ),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.dequeued(1);
                return Err(Self::shutting_down());
            }
        }
        match tokio::time::timeout(self.write_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) if self.closing.load(Ordering::Acquire) => Err(Self::shutting_down()),
            Ok(Err(_)) => Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "the file sink writer stopped before acknowledging the record",
            )),
            Err(_) => {
                self.counters.write_timed_out(&self.dir, self.write_timeout);
                Err(SinkError::new(
                    SinkErrorKind::Timeout,
                    format!(
                        "the archive write did not finish within the write timeout ({} ms): the \
                         record is not acknowledged (a stalled disk?)",
                        self.write_timeout.as_millis()
                    ),
                ))
            }
        }
    }

    /// Waits until every record queued before the call is durable (it already is once its `put`
    /// resolved) and every segment rotated before it is sealed.
    async fn flush(&self) -> Result<(), SinkError> {
        self.control(Command::Flush).await
    }

    /// Refuses new records, commits what is queued, seals every open segment, and stops the
    /// writer and sealer threads. Fails (with [`SinkErrorKind::Unavailable`]) if a segment could not
    /// be sealed: its records stay durable in the `.ndjson` and the next [`FileSink::open`] seals
    /// it. Calling it again returns `Ok` at once.
    ///
    /// It waits for the writer's answer on the runtime, never by joining a thread, so a caller may
    /// bound it with a timeout and exit even while a thread is stuck on a stalled disk.
    async fn shutdown(&self) -> Result<(), SinkError> {
        self.closing.store(true, Ordering::Release);
        let result = self.control(Command::Shutdown).await;
        // The writer answers as its last act; reap it if it is done already, never wait for it.
        result.and(self.reap_writer())
    }
}

/// Creates the directory if needed, then creates, syncs and removes a probe file in it.
fn probe(dir: &Path) -> Result<(), SinkError> {
    let fail = |what: &str, e: &io::Error| io_error(&format!("{what} {}", dir.display()), e);
    let root = layout::archive_root(dir);
    // Only a check: the writer makes the directories it writes under durable (and notices one
    // created anew here).
    std::fs::create_dir_all(&root).map_err(|e| fail("creating", &e))?;
    let path = root.join(format!(
        ".healthcheck-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(b"ok\n")?;
            file.sync_all()
        });
    let removed = std::fs::remove_file(&path);
    result.map_err(|e| fail("writing a probe file in", &e))?;
    removed.map_err(|e| fail("removing a probe file in", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_write_is_timed_until_it_ends() {
        let counters = Counters::default();
        assert_eq!(counters.writing_for(), None);
        let writing = counters.writing();
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            counters
                .writing_for()
                .is_some_and(|d| d >= Duration::from_millis(30))
        );
        drop(writing);
        assert_eq!(counters.writing_for(), None);
    }
}
