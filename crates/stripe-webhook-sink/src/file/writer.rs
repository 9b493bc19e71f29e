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
use stripe_webhook_envelope::{ARCHIVE_PREFIX, Partition, ReceivedAt};
use tokio::sync::oneshot;

use super::sealer::{SealCommand, SealJob};
use super::segment::{self, Segment};
use super::{Counters, io_error};
use crate::{SinkError, SinkErrorKind};

/// At most this many commands are taken from the queue per batch (bounds the first put's latency).
const MAX_BATCH: usize = 4096;
/// The writer wakes at least this often to seal segments that reached their age or day end.
const MAX_IDLE: Duration = Duration::from_secs(30);
const DAY_MILLIS: i64 = 86_400_000;

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
    counters: Arc<Counters>,
    sealer: Sender<SealCommand>,
    segments: HashMap<Partition, OpenSegment>,
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(
        settings: Settings,
        counters: Arc<Counters>,
        sealer: Sender<SealCommand>,
    ) -> Self {
        Self {
            settings,
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
        let result = self.seal_all_and_stop(sealer_thread);
        if let Some(ack) = shutdown_ack {
            let _ = ack.send(result);
        }
        // Whatever is still queued arrived after the shutdown began.
        drop(batch);
        while let Ok(command) = rx.try_recv() {
            refuse(command);
        }
    }

    /// Handles one batch; returns the shutdown acknowledgement if the batch holds a shutdown.
    fn process(&mut self, batch: &mut Vec<Command>) -> Option<Ack> {
        let mut puts = Vec::new();
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
    }

    fn commit_partition(&mut self, partition: Partition, mut group: Vec<Put>) {
        while !group.is_empty() {
            let max = self.settings.max_segment_bytes;
            let open = match segment_for(
                &mut self.segments,
                &self.settings,
                &self.counters,
                partition,
                group[0].received_at,
            ) {
                Ok(open) => open,
                Err(error) => {
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
            self.counters.sync();
            match append_and_sync(&mut open.file, &self.buf) {
                Ok(()) => {
                    open.len += self.buf.len() as u64;
                    self.counters.committed(chunk.len() as u64, self.buf.len() as u64);
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
                file: open.file,
                valid_len: open.len,
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
    settings: &Settings,
    counters: &Counters,
    partition: Partition,
    received_at: ReceivedAt,
) -> Result<&'a mut OpenSegment, SinkError> {
    match segments.entry(partition) {
        Entry::Occupied(entry) => Ok(entry.into_mut()),
        Entry::Vacant(entry) => {
            let dir = settings
                .dir
                .join(ARCHIVE_PREFIX)
                .join(partition.to_string());
            let (segment, file) = segment::create_dirs_durably(&settings.dir, &dir)
                .and_then(|()| segment::create(&dir))
                .map_err(|e| {
                    tracing::error!(dir = %dir.display(), error = %e, "could not create an archive segment");
                    io_error(&format!("creating a segment in {}", dir.display()), &e)
                })?;
            counters.segment_created();
            let millis = received_at.unix_millis();
            Ok(entry.insert(OpenSegment {
                segment,
                file,
                len: 0,
                opened: Instant::now(),
                day_end_millis: millis - millis.rem_euclid(DAY_MILLIS) + DAY_MILLIS,
            }))
        }
    }
}

fn append_and_sync(file: &mut File, buf: &[u8]) -> io::Result<()> {
    file.write_all(buf)?;
    file.sync_data()
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
