//! The durable file sink: NDJSON segments under `<dir>/webhooks/year=YYYY/month=MM/day=DD/`.

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
use std::time::Duration;

use async_trait::async_trait;
use stripe_webhook_envelope::ARCHIVE_PREFIX;
use tokio::sync::oneshot;

pub use recovery::{RecoveredSegment, RecoveryOutcome, RecoveryReport};

use crate::{Record, RecordSink, SinkError, SinkErrorKind, SinkHealth};
use sealer::Sealer;
use writer::{Command, Put, Settings, Writer};

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

    /// The defaults, archiving under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_segment_bytes: Self::DEFAULT_MAX_SEGMENT_BYTES,
            max_segment_age: Self::DEFAULT_MAX_SEGMENT_AGE,
            sealed_gzip_level: Some(Self::DEFAULT_GZIP_LEVEL),
            day_seal_grace: Self::DEFAULT_DAY_SEAL_GRACE,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
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
    /// `fdatasync` calls on segment data (at most one per touched segment per batch).
    pub syncs: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Segments sealed (or removed, when they held no whole line).
    pub segments_sealed: u64,
    /// Failed writes or syncs (their records were not acknowledged).
    pub write_errors: u64,
    /// Failed sealing attempts (retried; the records stay durable in the `.ndjson`).
    pub seal_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    segments_created: AtomicU64,
    segments_sealed: AtomicU64,
    write_errors: AtomicU64,
    seal_errors: AtomicU64,
    /// The last write (segment creation, write or sync) failed: not ready until one succeeds.
    write_failing: AtomicBool,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn committed(&self, records: u64, bytes: u64) {
        Self::add(&self.records, records);
        Self::add(&self.bytes, bytes);
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
    pub(crate) fn segment_created(&self) {
        Self::add(&self.segments_created, 1);
    }
    pub(crate) fn segment_sealed(&self) {
        Self::add(&self.segments_sealed, 1);
    }
    pub(crate) fn write_failed(&self) {
        Self::add(&self.write_errors, 1);
        if !self.write_failing.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "an archive write failed: the file sink reports not ready until one succeeds"
            );
        }
    }
    pub(crate) fn seal_failed(&self) {
        Self::add(&self.seal_errors, 1);
    }
    fn snapshot(&self) -> FileSinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FileSinkStats {
            records: get(&self.records),
            bytes: get(&self.bytes),
            batches: get(&self.batches),
            syncs: get(&self.syncs),
            segments_created: get(&self.segments_created),
            segments_sealed: get(&self.segments_sealed),
            write_errors: get(&self.write_errors),
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
/// `fdatasync`ed (new files and directories also get their parent directory synced). One writer
/// thread drains the bounded queue, appends every queued line with one `write` per touched
/// segment, syncs each touched segment once, then acknowledges the whole batch: concurrent puts
/// share syncs, so throughput grows with concurrency. When the queue is full, `put` fails at once
/// with [`SinkErrorKind::Overloaded`].
///
/// # Segments and sealing
/// Segment names are `<unix-millis>-<pid>-<random 64-bit hex>`, unique across processes and
/// restarts, so several processes may share one directory. Each open segment carries an exclusive
/// advisory lock (`flock`) for as long as its writer owns it. A segment is sealed (by a background
/// thread that holds its lock until done) when it reaches [`FileSinkConfig::max_segment_bytes`]
/// or [`FileSinkConfig::max_segment_age`], when the wall clock passes the end of its UTC day plus
/// [`FileSinkConfig::day_seal_grace`], after a failed write, and at shutdown. Sealing writes
/// `<segment>.ndjson.gz.tmp`, fsyncs it, renames it to `<segment>.ndjson.gz`, fsyncs the directory,
/// then removes the `.ndjson`: readers never see a partial `.gz`, and a crash at any step loses
/// nothing. With `sealed_gzip_level = None` the segment is renamed to `<segment>.sealed.ndjson`
/// instead. Readers of sealed data read `*.ndjson.gz` (or `*.sealed.ndjson`); `*.ndjson` files are
/// still being written.
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
/// use stripe_webhook_sink::{FileSink, FileSinkConfig, RecordSink};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
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
/// let partition = dir.path().join("webhooks").join(received_at.partition().to_string());
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
    /// The blocking work runs on tokio's blocking pool; use [`FileSink::open_blocking`] outside a
    /// runtime.
    ///
    /// # Errors
    /// An invalid configuration ([`SinkErrorKind::Permanent`]), or a directory that cannot be
    /// created or listed. Failures to recover a single segment do not fail `open`: they are in the
    /// report (and logged), and the segment is retried at the next start.
    pub async fn open(config: FileSinkConfig) -> Result<(FileSink, RecoveryReport), SinkError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| {
                SinkError::new(SinkErrorKind::Unavailable, "opening the file sink failed")
                    .with_source(e)
            })?
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
        if config
            .sealed_gzip_level
            .is_some_and(|level| !(1..=9).contains(&level))
        {
            return Err(SinkError::new(
                SinkErrorKind::Permanent,
                "file sink: sealed_gzip_level must be 1 to 9 (or None for no compression)",
            ));
        }
        let gzip = config.sealed_gzip_level.map(flate2::Compression::new);
        let root = config.dir.join(ARCHIVE_PREFIX);
        segment::create_dirs_durably(&config.dir, &root)
            .map_err(|e| io_error(&format!("creating {}", root.display()), &e))?;
        let report = recovery::recover(&root, gzip)?;

        let counters = Arc::new(Counters::default());
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

    /// Sends a command, waiting for queue space (on the blocking pool) if needed. `false` if the
    /// writer is gone.
    async fn send_waiting(&self, command: Command) -> bool {
        match self.tx.try_send(command) {
            Ok(()) => true,
            Err(TrySendError::Disconnected(_)) => false,
            Err(TrySendError::Full(command)) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(command).is_ok())
                    .await
                    .unwrap_or(false)
            }
        }
    }

    /// Sends a control command and waits for its answer; `Ok` if the writer is already gone.
    async fn control(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), SinkError>>) -> Command,
    ) -> Result<(), SinkError> {
        let (ack, answer) = oneshot::channel();
        if !self.send_waiting(command(ack)).await {
            return Ok(());
        }
        answer.await.unwrap_or_else(|_| {
            Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "the file sink writer stopped unexpectedly",
            ))
        })
    }
}

#[async_trait]
impl RecordSink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    /// Not ready while shutting down, when the writer thread is not running, or when the last
    /// write (segment creation, write or `fdatasync`) failed; ready again after the next write
    /// that succeeds.
    fn health(&self) -> SinkHealth {
        if self.closing.load(Ordering::Acquire) {
            SinkHealth::not_ready("the file sink is shutting down")
        } else if !self.writer_alive() {
            SinkHealth::not_ready("the file sink writer thread is not running")
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
        match self.tx.try_send(Command::Put(put)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(SinkError::new(
                    SinkErrorKind::Overloaded,
                    format!(
                        "the file sink queue is full ({} records)",
                        self.queue_capacity
                    ),
                ));
            }
            Err(TrySendError::Disconnected(_)) => return Err(Self::shutting_down()),
        }
        match answer.await {
            Ok(result) => result,
            Err(_) if self.closing.load(Ordering::Acquire) => Err(Self::shutting_down()),
            Err(_) => Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "the file sink writer stopped before acknowledging the record",
            )),
        }
    }

    /// Waits until every record queued before the call is durable (it already is once its `put`
    /// resolved) and every segment rotated before it is sealed.
    async fn flush(&self) -> Result<(), SinkError> {
        self.control(Command::Flush).await
    }

    /// Refuses new records, commits what is queued, seals every open segment, and joins the
    /// writer and sealer threads. Fails (with [`SinkErrorKind::Unavailable`]) if a segment could not
    /// be sealed: its records stay durable in the `.ndjson` and the next [`FileSink::open`] seals
    /// it. Calling it again returns `Ok` at once.
    async fn shutdown(&self) -> Result<(), SinkError> {
        self.closing.store(true, Ordering::Release);
        let result = self.control(Command::Shutdown).await;
        let thread = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join().is_ok())
                .await
                .unwrap_or(false);
            if !joined {
                return Err(SinkError::new(
                    SinkErrorKind::Unavailable,
                    "the file sink writer thread panicked",
                ));
            }
        }
        result
    }
}

/// Creates the directory if needed, then creates, syncs and removes a probe file in it.
fn probe(dir: &Path) -> Result<(), SinkError> {
    let fail = |what: &str, e: &io::Error| io_error(&format!("{what} {}", dir.display()), e);
    let root = dir.join(ARCHIVE_PREFIX);
    segment::create_dirs_durably(dir, &root).map_err(|e| fail("creating", &e))?;
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
