//! The sealer thread: compresses (or renames) segments the writer is done with, off the ack path.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::Counters;
use crate::segment::{self, Segment};
use stripe_webhook_sink::{SinkError, SinkErrorKind};

/// How often segments whose sealing failed are retried.
const RETRY_EVERY: Duration = Duration::from_secs(10);

/// A segment to seal: its first `valid_len` bytes are whole lines. `file` holds its lock until the
/// seal is complete, so no recovering process touches it meanwhile; it is released (`None`) as
/// soon as the `.ndjson` name is gone, so a seal that failed after removing it does not keep the
/// removed file's space allocated while it waits to be retried.
pub(crate) struct SealJob {
    pub(crate) segment: Segment,
    pub(crate) file: Option<File>,
    pub(crate) valid_len: u64,
    /// When the writer handed it over (the backlog's age is measured from here).
    pub(crate) rotated: Instant,
}

pub(crate) enum SealCommand {
    Seal(SealJob),
    /// Answered once every job sent before it has been attempted.
    Barrier(oneshot::Sender<Result<(), SinkError>>),
    /// Retries failed jobs once more, answers, and ends the thread.
    Stop(oneshot::Sender<Result<(), SinkError>>),
}

pub(crate) struct Sealer {
    /// The gzip level sealed segments are compressed at; `None`: renamed, not compressed.
    pub(crate) gzip: Option<libdeflater::CompressionLvl>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) failed: Vec<SealJob>,
}

impl Sealer {
    pub(crate) fn run(mut self, rx: Receiver<SealCommand>) {
        // Sealing is background work: the lowest CPU priority, so compressing never slows the
        // webhooks waiting on the writer; it uses the idle time, and catches up when a burst ends
        // (the unsealed backlog is exported as metrics). The records are durable either way.
        if let Err(e) =
            thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
        {
            tracing::debug!(error = ?e, "could not lower the sealer thread's priority");
        }
        loop {
            let command = if self.failed.is_empty() {
                if let Ok(command) = rx.try_recv() {
                    Ok(command)
                } else {
                    // Idle: nothing waits to be sealed.
                    metrics::gauge!(stripe_webhook_metrics::FILE_UNSEALED_OLDEST_SECONDS).set(0.0);
                    rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                }
            } else {
                rx.recv_timeout(RETRY_EVERY)
            };
            match command {
                Ok(SealCommand::Seal(job)) => self.seal(job, false),
                Ok(SealCommand::Barrier(ack)) => {
                    let _ = ack.send(Ok(()));
                }
                Ok(SealCommand::Stop(ack)) => {
                    let _ = ack.send(self.retry_failed());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.retry_failed();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.retry_failed();
                    return;
                }
            }
        }
    }

    /// Seals `job`, or keeps it to retry (`retry`: this is such a retry).
    fn seal(&mut self, mut job: SealJob, retry: bool) {
        let path = job.segment.open_path();
        // Jobs arrive in order: the one starting now is the oldest still waiting.
        metrics::gauge!(stripe_webhook_metrics::FILE_UNSEALED_OLDEST_SECONDS)
            .set(job.rotated.elapsed().as_secs_f64());
        match segment::seal(&job.segment, job.file.as_ref(), job.valid_len, self.gzip) {
            Ok(outcome) => {
                let sealed_bytes = [segment::Role::Gz, segment::Role::SealedPlain]
                    .into_iter()
                    .find_map(|role| std::fs::metadata(job.segment.path(role)).ok())
                    .map_or(0, |m| m.len());
                self.counters.segment_sealed(job.valid_len, sealed_bytes);
                if retry {
                    tracing::info!(segment = %path.display(), ?outcome, "sealed archive segment on retry");
                } else {
                    tracing::debug!(
                        segment = %path.display(),
                        bytes = job.valid_len,
                        ?outcome,
                        "sealed archive segment"
                    );
                }
            }
            Err(error) if job.file.is_none() && error.kind() == io::ErrorKind::NotFound => {
                self.counters.seal_failed();
                tracing::error!(
                    segment = %path.display(),
                    %error,
                    "an archive segment being sealed was removed by someone else; nothing is left \
                     to seal or retry"
                );
            }
            Err(error) => {
                self.counters.seal_failed();
                tracing::error!(
                    segment = %path.display(),
                    %error,
                    "could not seal archive segment; its records stay durable (the .ndjson is removed only \
                     once the sealed file is), retrying"
                );
                // Once the `.ndjson` name is gone (removed after the `.gz` was durable, or renamed to
                // its sealed name), only directory syncs are left to redo: release the handle.
                if job.file.is_some() && matches!(path.try_exists(), Ok(false)) {
                    job.file = None;
                }
                self.failed.push(job);
            }
        }
    }

    fn retry_failed(&mut self) -> Result<(), SinkError> {
        for job in std::mem::take(&mut self.failed) {
            self.seal(job, true);
        }
        if self.failed.is_empty() {
            Ok(())
        } else {
            Err(SinkError::new(
                SinkErrorKind::Unavailable,
                format!(
                    "{} archive segment(s) could not be sealed; their records are durable in the \
                     .ndjson files and are sealed by the next FileSink::open",
                    self.failed.len()
                ),
            ))
        }
    }
}
