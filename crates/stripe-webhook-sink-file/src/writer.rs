//! The writer thread: group commit of queued records into per-partition segments.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stripe_webhook_envelope::{Partition, ReceivedAt, layout};
use tokio::sync::oneshot;

use crate::dirs::DurableDirs;
use crate::sealer::{SealCommand, SealJob};
use crate::segment::{self, Segment};
use crate::{Counters, io_error};
use stripe_webhook_sink::{SinkError, SinkErrorKind};

/// At most this many commands are taken from the queue per batch (bounds the first put's latency).
const MAX_BATCH: usize = 4096;
/// The writer wakes at least this often to seal segments that reached their age or day end.
const MAX_IDLE: Duration = Duration::from_secs(30);
const DAY_MILLIS: i64 = 86_400_000;
/// The write buffer is released when a batch grew it beyond this.
const KEEP_BUF_BYTES: usize = 8 * 1024 * 1024;

pub(crate) type Ack = oneshot::Sender<Result<(), SinkError>>;

pub(crate) struct Put {
    pub(crate) line: Bytes,
    pub(crate) received_at: ReceivedAt,
    pub(crate) ack: Ack,
}

pub(crate) enum Command {
    Put(Put),
    /// Answered once every record queued before it is durable and every segment rotated before
    /// it is sealed.
    Flush(Ack),
    /// Commits what is queued before it, seals every segment, answers, and ends the thread.
    Shutdown(Ack),
}

/// The writer's view of the configuration.
pub(crate) struct Settings {
    pub(crate) dir: PathBuf,
    pub(crate) max_segment_bytes: u64,
    pub(crate) max_segment_age: Duration,
    pub(crate) day_seal_grace: Duration,
}

struct OpenSegment {
    segment: Segment,
    file: File,
    /// Bytes written and synced: always whole lines.
    len: u64,
    opened: Instant,
    /// End of the partition's UTC day, in Unix milliseconds.
    day_end_millis: i64,
}

pub(crate) struct Writer {
    settings: Settings,
    /// Which partition directories this process has made durable.
    dirs: DurableDirs,
    counters: Arc<Counters>,
    sealer: Sender<SealCommand>,
    segments: HashMap<Partition, OpenSegment>,
    buf: Vec<u8>,
}

impl Writer {
    /// A writer for `settings.dir`; `dirs` knows what `FileSink::open` already made durable.
    pub(crate) fn new(
        settings: Settings,
        dirs: DurableDirs,
        counters: Arc<Counters>,
        sealer: Sender<SealCommand>,
    ) -> Self {
        Self {
            settings,
            dirs,
            counters,
            sealer,
            segments: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// The thread body. `sealer_thread` is joined before the thread ends.
    pub(crate) fn run(mut self, rx: Receiver<Command>, sealer_thread: JoinHandle<()>) {
        let mut batch = Vec::new();
        let shutdown_ack = loop {
            match rx.recv_timeout(self.next_wakeup()) {
                Ok(command) => {
                    batch.push(command);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(command) => batch.push(command),
                            Err(_) => break,
                        }
                    }
                    if let Some(ack) = self.process(&mut batch) {
                        break Some(ack);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every FileSink handle is gone: seal and end, like a shutdown nobody waits for.
                Err(RecvTimeoutError::Disconnected) => break None,
            }
            self.rotate_due();
        };
        let counters = Arc::clone(&self.counters);
        let result = self.seal_all_and_stop(sealer_thread);
        // Whatever is still queued arrived after the shutdown began.
        drop(batch);
        while let Ok(command) = rx.try_recv() {
            if matches!(command, Command::Put(_)) {
                counters.dequeued(1);
            }
            refuse(command);
        }
        // Last: the thread ends right after this answer.
        if let Some(ack) = shutdown_ack {
            let _ = ack.send(result);
        }
    }

    /// Handles one batch; returns the shutdown acknowledgement if the batch holds a shutdown.
    fn process(&mut self, batch: &mut Vec<Command>) -> Option<Ack> {
        let mut puts = Vec::new();
        let taken = batch
            .iter()
            .filter(|c| matches!(c, Command::Put(_)))
            .count();
        self.counters.dequeued(taken as u64);
        let mut commands = batch.drain(..);
        for command in commands.by_ref() {
            match command {
                Command::Put(put) => puts.push(put),
                Command::Flush(ack) => {
                    self.commit(&mut puts);
                    if let Err(std::sync::mpsc::SendError(SealCommand::Barrier(ack))) =
                        self.sealer.send(SealCommand::Barrier(ack))
                    {
                        let _ = ack.send(Ok(()));
                    }
                }
                Command::Shutdown(ack) => {
                    self.commit(&mut puts);
                    commands.for_each(refuse);
                    return Some(ack);
                }
            }
        }
        self.commit(&mut puts);
        None
    }

    /// Writes and syncs `puts`, one write and one sync per touched segment, then acknowledges.
    fn commit(&mut self, puts: &mut Vec<Put>) {
        if puts.is_empty() {
            return;
        }
        let counters = Arc::clone(&self.counters);
        let _writing = counters.writing();
        self.counters.batch();
        // Stable: keeps arrival order within a partition.
        puts.sort_by_key(|put| put.received_at.partition());
        while let Some(first) = puts.first() {
            let partition = first.received_at.partition();
            let n = puts
                .iter()
                .take_while(|put| put.received_at.partition() == partition)
                .count();
            let group: Vec<Put> = puts.drain(..n).collect();
            self.commit_partition(partition, group);
        }
        // Do not keep a segment-sized buffer around after one large batch.
        if self.buf.capacity() > KEEP_BUF_BYTES {
            self.buf = Vec::new();
        }
    }

    fn commit_partition(&mut self, partition: Partition, mut group: Vec<Put>) {
        while !group.is_empty() {
            let max = self.settings.max_segment_bytes;
            let open = match segment_for(
                &mut self.segments,
                &mut self.dirs,
                &self.settings,
                &self.counters,
                partition,
                group[0].received_at,
            ) {
                Ok(open) => open,
                Err(error) => {
                    self.counters.write_failed();
                    for put in group {
                        let _ = put.ack.send(Err(duplicate(&error)));
                    }
                    return;
                }
            };
            // As many lines as fit under the size limit; at least one into an empty segment.
            let room = max.saturating_sub(open.len);
            let mut bytes = 0u64;
            let n = group
                .iter()
                .take_while(|put| {
                    let len = put.line.len() as u64;
                    let fits = bytes + len <= room || (open.len == 0 && bytes == 0);
                    if fits {
                        bytes += len;
                    }
                    fits
                })
                .count();
            if n == 0 {
                self.rotate(partition);
                continue;
            }
            let chunk: Vec<Put> = group.drain(..n).collect();
            self.buf.clear();
            for put in &chunk {
                self.buf.extend_from_slice(&put.line);
            }
            match append_and_sync(&mut open.file, &self.buf) {
                Ok(()) => {
                    self.counters.sync();
                    open.len += self.buf.len() as u64;
                    self.counters
                        .committed(chunk.len() as u64, self.buf.len() as u64);
                    for put in chunk {
                        let _ = put.ack.send(Ok(()));
                    }
                    let full = open.len >= max;
                    if full || !group.is_empty() {
                        self.rotate(partition);
                    }
                }
                Err(error) => {
                    let path = open.segment.open_path();
                    self.counters.write_failed();
                    tracing::error!(
                        segment = %path.display(),
                        records = chunk.len(),
                        %error,
                        "archive write or sync failed; the records are not acknowledged"
                    );
                    // Never let a later batch glue onto a partial line: cut back to the last good
                    // length (the sealer retries the cut if this fails) and retire the segment.
                    let good = open.len;
                    if let Err(e) = open.file.set_len(good).and_then(|()| open.file.sync_data()) {
                        tracing::error!(segment = %path.display(), error = %e, "could not truncate after a failed write");
                    }
                    self.rotate(partition);
                    let error = io_error(&format!("writing {}", path.display()), &error);
                    for put in chunk {
                        let _ = put.ack.send(Err(duplicate(&error)));
                    }
                }
            }
        }
    }

    /// Hands the partition's open segment to the sealer; the next record opens a new one.
    fn rotate(&mut self, partition: Partition) {
        if let Some(open) = self.segments.remove(&partition) {
            let job = SealJob {
                segment: open.segment,
                file: Some(open.file),
                valid_len: open.len,
                rotated: Instant::now(),
            };
            // The sealer only stops after the writer: this send cannot fail while we run.
            let _ = self.sealer.send(SealCommand::Seal(job));
        }
    }

    /// Rotates segments past their age limit or past their day's end plus the grace period.
    fn rotate_due(&mut self) {
        let now = ReceivedAt::now().unix_millis();
        let due: Vec<Partition> = self
            .segments
            .iter()
            .filter(|(_, open)| self.until_due(open, now).is_zero())
            .map(|(partition, _)| *partition)
            .collect();
        for partition in due {
            self.rotate(partition);
        }
    }

    fn until_due(&self, open: &OpenSegment, now_millis: i64) -> Duration {
        let by_age = self
            .settings
            .max_segment_age
            .saturating_sub(open.opened.elapsed());
        let grace = i64::try_from(self.settings.day_seal_grace.as_millis()).unwrap_or(i64::MAX);
        let day_due = open.day_end_millis.saturating_add(grace);
        let by_day = Duration::from_millis(u64::try_from(day_due - now_millis).unwrap_or(0));
        by_age.min(by_day)
    }

    fn next_wakeup(&self) -> Duration {
        let now = ReceivedAt::now().unix_millis();
        self.segments
            .values()
            .map(|open| self.until_due(open, now))
            .min()
            .unwrap_or(MAX_IDLE)
            .clamp(Duration::from_millis(1), MAX_IDLE)
    }

    fn seal_all_and_stop(mut self, sealer_thread: JoinHandle<()>) -> Result<(), SinkError> {
        let partitions: Vec<Partition> = self.segments.keys().copied().collect();
        for partition in partitions {
            self.rotate(partition);
        }
        let (tx, rx) = oneshot::channel();
        let result = match self.sealer.send(SealCommand::Stop(tx)) {
            Ok(()) => rx.blocking_recv().unwrap_or_else(|_| {
                Err(SinkError::new(
                    SinkErrorKind::Unavailable,
                    "the archive sealer thread ended unexpectedly",
                ))
            }),
            Err(_) => Ok(()),
        };
        if sealer_thread.join().is_err() {
            return Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "the archive sealer thread panicked",
            ));
        }
        result
    }
}

/// The open segment for `partition`, creating it (and its directories, durably) if needed.
fn segment_for<'a>(
    segments: &'a mut HashMap<Partition, OpenSegment>,
    dirs: &mut DurableDirs,
    settings: &Settings,
    counters: &Counters,
    partition: Partition,
    received_at: ReceivedAt,
) -> Result<&'a mut OpenSegment, SinkError> {
    match segments.entry(partition) {
        Entry::Occupied(entry) => Ok(entry.into_mut()),
        Entry::Vacant(entry) => {
            let dir = layout::partition_dir(&settings.dir, partition);
            let (segment, file) = dirs
                .create(&dir)
                .and_then(|synced| {
                    counters.directories_synced(synced);
                    segment::create(&dir)
                })
                .map_err(|e| {
                    tracing::error!(dir = %dir.display(), error = %e, "could not create an archive segment");
                    io_error(&format!("creating a segment in {}", dir.display()), &e)
                })?;
            counters.segment_created();
            counters.directories_synced(1);
            Ok(entry.insert(OpenSegment {
                segment,
                file,
                len: 0,
                opened: Instant::now(),
                day_end_millis: day_end_millis(received_at),
            }))
        }
    }
}

/// The end of `t`'s UTC day in Unix milliseconds (Unix time has no leap seconds: days are equal).
fn day_end_millis(t: ReceivedAt) -> i64 {
    let millis = t.unix_millis();
    millis - millis.rem_euclid(DAY_MILLIS) + DAY_MILLIS
}

fn append_and_sync(file: &mut File, buf: &[u8]) -> io::Result<()> {
    file.write_all(buf)?;
    let started = Instant::now();
    let synced = file.sync_data();
    metrics::histogram!(stripe_webhook_metrics::FILE_SYNC_SECONDS)
        .record(started.elapsed().as_secs_f64());
    synced
}

/// A copy of `error` (kind and message) for each of the records it failed.
fn duplicate(error: &SinkError) -> SinkError {
    SinkError::new(error.kind(), error.message())
}

fn refuse(command: Command) {
    let ack = match command {
        Command::Put(put) => {
            let _ = put.ack.send(Err(SinkError::new(
                SinkErrorKind::ShuttingDown,
                "the file sink is shutting down",
            )));
            return;
        }
        Command::Flush(ack) | Command::Shutdown(ack) => ack,
    };
    let _ = ack.send(Ok(()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::sync::mpsc;

    const T: i64 = 1_795_731_281_123; // 2026-11-26T22:14:41.123Z

    fn put(line: &str, millis: i64) -> (Put, oneshot::Receiver<Result<(), SinkError>>) {
        let (ack, answer) = oneshot::channel();
        let put = Put {
            line: Bytes::copy_from_slice(line.as_bytes()),
            received_at: ReceivedAt::from_unix_millis(millis),
            ack,
        };
        (put, answer)
    }

    fn writer(dir: &std::path::Path) -> (Writer, mpsc::Receiver<SealCommand>) {
        let (tx, rx) = mpsc::channel();
        let settings = Settings {
            dir: dir.to_path_buf(),
            max_segment_bytes: 1 << 20,
            max_segment_age: Duration::from_secs(3600),
            day_seal_grace: Duration::from_secs(120),
        };
        (
            Writer::new(settings, DurableDirs::new(dir), Arc::default(), tx),
            rx,
        )
    }

    #[test]
    fn day_end_is_the_next_utc_midnight() {
        let midnight = 1_795_737_600_000; // 2026-11-27T00:00:00.000Z
        assert_eq!(day_end_millis(ReceivedAt::from_unix_millis(T)), midnight);
        assert_eq!(
            day_end_millis(ReceivedAt::from_unix_millis(midnight - 1)),
            midnight
        );
        assert_eq!(
            day_end_millis(ReceivedAt::from_unix_millis(midnight)),
            midnight + DAY_MILLIS
        );
    }

    #[test]
    fn one_write_and_one_sync_per_touched_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _seals) = writer(dir.path());
        let next_day = T + DAY_MILLIS;
        let (mut puts, answers): (Vec<_>, Vec<_>) = [
            ("{\"a\":1}\n", T),
            ("{\"b\":2}\n", next_day),
            ("{\"c\":3}\n", T),
        ]
        .into_iter()
        .map(|(line, millis)| put(line, millis))
        .unzip();
        w.commit(&mut puts);
        for answer in answers {
            answer.blocking_recv().unwrap().unwrap();
        }
        let stats = w.counters.snapshot();
        assert_eq!((stats.records, stats.batches, stats.syncs), (3, 1, 2));
        let day = |millis: i64| ReceivedAt::from_unix_millis(millis).partition();
        let read = |millis| fs::read(w.segments[&day(millis)].segment.open_path()).unwrap();
        assert_eq!(read(T), b"{\"a\":1}\n{\"c\":3}\n");
        assert_eq!(read(next_day), b"{\"b\":2}\n");
    }

    #[test]
    fn failed_write_is_not_acknowledged_and_never_glued_onto() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, seals) = writer(dir.path());
        let partition = ReceivedAt::from_unix_millis(T).partition();
        let (first, answer) = put("{\"n\":1}\n", T);
        w.commit(&mut vec![first]);
        answer.blocking_recv().unwrap().unwrap();

        // A torn write reached the file, and the handle can no longer write.
        let path = w.segments[&partition].segment.open_path();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"tor")
            .unwrap();
        w.segments.get_mut(&partition).unwrap().file = File::open(&path).unwrap();
        let (second, answer) = put("{\"n\":2}\n", T);
        w.commit(&mut vec![second]);
        let error = answer.blocking_recv().unwrap().unwrap_err();
        assert_eq!(error.kind(), SinkErrorKind::Unavailable);
        let stats = w.counters.snapshot();
        assert_eq!(stats.write_errors, 1);
        assert_eq!(stats.syncs, 1, "only successful syncs count");
        assert!(
            !w.segments.contains_key(&partition),
            "the failed segment is retired"
        );

        // The retired segment is sealed with its last good length only.
        let Ok(SealCommand::Seal(job)) = seals.try_recv() else {
            panic!("the failed segment was not handed to the sealer");
        };
        assert_eq!(job.valid_len, 8);
        let writable = segment::open_existing(&path).unwrap();
        segment::seal(
            &job.segment,
            Some(&writable),
            job.valid_len,
            Some(libdeflater::CompressionLvl::default()),
        )
        .unwrap();
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(File::open(job.segment.path(segment::Role::Gz)).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"n\":1}\n");

        // The next record goes to a fresh segment.
        let (third, answer) = put("{\"n\":3}\n", T);
        w.commit(&mut vec![third]);
        answer.blocking_recv().unwrap().unwrap();
        let fresh = w.segments[&partition].segment.open_path();
        assert_ne!(fresh, path);
        assert_eq!(fs::read(fresh).unwrap(), b"{\"n\":3}\n");
    }

    #[test]
    fn size_limit_splits_a_batch_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, seals) = writer(dir.path());
        w.settings.max_segment_bytes = 16; // two 8-byte lines per segment
        let (mut puts, answers): (Vec<_>, Vec<_>) =
            (0..5).map(|n| put(&format!("{{\"n\":{n}}}\n"), T)).unzip();
        w.commit(&mut puts);
        for answer in answers {
            answer.blocking_recv().unwrap().unwrap();
        }
        let sealed: Vec<u64> = seals
            .try_iter()
            .map(|command| match command {
                SealCommand::Seal(job) => job.valid_len,
                _ => panic!("unexpected sealer command"),
            })
            .collect();
        assert_eq!(sealed, [16, 16]);
        assert_eq!(w.segments.len(), 1);
        assert_eq!(w.counters.snapshot().syncs, 3);
    }
}
