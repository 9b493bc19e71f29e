//! A backfill: every archived record received in a time range `[since, until)` delivered to one
//! destination, once through the archive, beside its forwarder (whose cursor it does not touch).
//!
//! What a team asks for after an incident in its application (a database restored to last
//! Tuesday's backup, a release that dropped a day of events): those days again, and only them.
//! Moving the cursor back (`forward cursor`) would also re-send everything since.
//!
//! Records go as the forwarder sends them (the type filter, the concurrency, per-object order,
//! retries with backoff honouring `Retry-After`), each with up to `attempts` attempts; a record
//! still failing goes to the destination's dead-letter list with reason `attempts` (re-drivable as
//! any other), as do records without a body to send. Nothing is skipped silently: a segment that
//! cannot be read whole is in the report. Interrupted, it stops; running it again delivers the
//! range again (at least once: the application dedupes on `id`).

use std::path::Path;
use std::sync::Arc;

use stripe_webhook_envelope::ReceivedAt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cursor::state_dir;
use crate::delivery::Sender;
use crate::forwarder::{
    Ctx, Deliveries, Finish, GiveUp, Record, Scheduler, WINDOW_PER_CONCURRENCY, admit,
    retry_backoff, start_ready,
};
use crate::glob::TypeFilter;
use crate::segments::{self, SegmentReader};
use crate::settings::{Destination, ForwardSettings};

/// Lines read from a segment at a time.
const READ_LINES: usize = 256;

/// What a backfill did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackfillReport {
    /// Records delivered.
    pub delivered: u64,
    /// Event ids put on the dead-letter list (every attempt failed, or nothing to send).
    pub dead_lettered: Vec<String>,
    /// Segments (or listings) that could not be read whole, with why: their records in the range
    /// may not have been sent.
    pub unread: Vec<String>,
    /// Stopped by Ctrl-C or SIGTERM before the end of the range.
    pub interrupted: bool,
}

impl BackfillReport {
    /// Every record of the range was delivered.
    pub fn complete(&self) -> bool {
        self.dead_lettered.is_empty() && self.unread.is_empty() && !self.interrupted
    }
}

/// Delivers every record of `archive_dir` received in `[since, until)` whose type `settings`
/// forwards to `dest`, each with up to `attempts` attempts, until done or `cancel`.
///
/// # Errors
/// The destination's HTTP client or state directory cannot be made, or a delivery task failed.
pub async fn backfill(
    archive_dir: &Path,
    dest: &Destination,
    settings: &ForwardSettings,
    (since, until): (ReceivedAt, ReceivedAt),
    attempts: u32,
    cancel: CancellationToken,
) -> Result<BackfillReport, String> {
    let id = dest.id.clone();
    let ctx = Arc::new(Ctx {
        dest: dest.clone(),
        dir: state_dir(archive_dir, &id).map_err(|e| format!("{id}: state directory: {e}"))?,
        sender: Sender::new(&dest.url, dest.secret.clone(), settings.timeout)?,
        give_up: GiveUp::AfterAttempts(attempts.max(1)),
        backoff: retry_backoff(settings.retry_max),
    });
    let window = settings.concurrency * WINDOW_PER_CONCURRENCY;
    // The archive is read on a thread of its own (file I/O), at most a window ahead.
    let (records, mut arriving) = mpsc::channel(window);
    let (dir, types) = (archive_dir.to_path_buf(), settings.types.clone());
    let reader = std::thread::Builder::new()
        .name("forward-backfill".into())
        .spawn(move || read_range(&dir, since, until, &types, &records))
        .map_err(|e| format!("starting the reading thread: {e}"))?;
    let mut scheduler = Scheduler::new(settings.order);
    let mut deliveries = Deliveries::new();
    let mut report = BackfillReport::default();
    let mut reading = true;
    let result = loop {
        start_ready(
            &mut scheduler,
            &mut deliveries,
            settings.concurrency,
            &ctx,
            &cancel,
        );
        if !reading && deliveries.is_empty() && scheduler.is_empty() {
            break Ok(());
        }
        tokio::select! {
            Some(done) = deliveries.join_next(), if !deliveries.is_empty() => {
                let (record, finish) = match done {
                    Ok(done) => done,
                    Err(e) => break Err(format!("{id}: a delivery task failed: {e}")),
                };
                match finish {
                    Some(Finish::Delivered) => report.delivered += 1,
                    Some(Finish::DeadLettered) => report.dead_lettered.push(record.id.clone()),
                    None => {} // cancelled: the next turn stops
                }
                scheduler.finished(&record);
            }
            next = arriving.recv(), if reading && scheduler.len() < window => match next {
                Some(record) => scheduler.push(Arc::new(record)),
                None => reading = false,
            },
            () = cancel.cancelled() => break Ok(()),
        }
    };
    report.interrupted = cancel.is_cancelled();
    deliveries.abort_all();
    while deliveries.join_next().await.is_some() {}
    drop(arriving); // a reader blocked on a full channel stops
    report.unread = reader
        .join()
        .unwrap_or_else(|_| vec!["the reading thread panicked".into()]);
    result.map(|()| report)
}

/// Sends every record of the range, in archive order, to `out`; returns what could not be read.
/// Stops early when `out` is closed.
fn read_range(
    archive_dir: &Path,
    since: ReceivedAt,
    until: ReceivedAt,
    types: &TypeFilter,
    out: &mpsc::Sender<Record>,
) -> Vec<String> {
    let mut unread = Vec::new();
    let mut reader = SegmentReader::syncing();
    let partitions = match segments::partitions(archive_dir, since.partition()) {
        Ok(partitions) => partitions,
        Err(e) => return vec![format!("listing {}: {e}", archive_dir.display())],
    };
    for (partition, dir) in partitions {
        if partition > until.partition() {
            break;
        }
        let files = match segments::segments(partition, &dir) {
            Ok(files) => files,
            Err(e) => {
                unread.push(format!("listing {}: {e}", dir.display()));
                continue;
            }
        };
        for mut file in files {
            let mut offset = 0;
            loop {
                let chunk = match reader.read(&file, offset, READ_LINES) {
                    Ok(chunk) => chunk,
                    // Sealed between the listing and the open: the same segment under its sealed
                    // name (offsets are uncompressed bytes, so they hold).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        match segments::segments(partition, &dir)
                            .ok()
                            .and_then(|all| all.into_iter().find(|f| f.key == file.key))
                            .filter(|sealed| sealed.path != file.path)
                        {
                            Some(sealed) => {
                                file = sealed;
                                continue;
                            }
                            None => {
                                unread.push(format!("{} at offset {offset}: {e}", file.key));
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        unread.push(format!("{} at offset {offset}: {e}", file.key));
                        break;
                    }
                };
                let reached_the_end = chunk.finished || chunk.lines.is_empty();
                for line in chunk.lines {
                    let Some(record) = admit(&file.key, line, since, types) else {
                        continue;
                    };
                    // A line that is not a record has no receipt time: it is in the range's days,
                    // so it is dead-lettered (`unreadable`) rather than passed over.
                    if record.unsendable != Some("unreadable") && record.received_at >= until {
                        continue;
                    }
                    if out.blocking_send(record).is_err() {
                        return unread;
                    }
                }
                if let Some(why) = chunk.stopped {
                    unread.push(format!("{} at offset {}: {why}", file.key, chunk.next));
                    break;
                }
                if reached_the_end {
                    break;
                }
                offset = chunk.next;
            }
        }
    }
    unread
}
