//! The sink factory: validated [`SinkSettings`] → a running sink that passed its start-up check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stripe_webhook_backoff::Backoff;
use stripe_webhook_sink::{MemorySink, RecordSink, SinkError};
use stripe_webhook_sink_file::FileSink;

use crate::settings::{SinkKind, SinkSettings};

/// A sink could not be built or failed its start-up check.
#[derive(Debug, thiserror::Error)]
#[error("{} sink failed at start-up: {source}", sink.label())]
pub struct SinkStartupError {
    /// Which sink.
    pub sink: SinkKind,
    /// Why.
    #[source]
    pub source: SinkError,
}

/// What to do when a sink's start-up check fails for a reason that may pass (throttling, a
/// transient backend error, a stream still being created). A permanent failure (a missing stream,
/// a stream of the wrong type, denied access, an unwritable directory) always fails the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupCheck {
    /// Retry with exponential backoff and full jitter (up to 200 ms before the first retry,
    /// doubling up to 5 s) for up to this long, then fail (the server: several instances
    /// restarting together must not all fail on `DescribeDeliveryStream`'s limit of 5 calls per
    /// second per account).
    Retry {
        /// How long to keep retrying.
        within: Duration,
    },
    /// Log the failure and start anyway; the first write reports a real problem (Lambda: a burst of
    /// cold starts must not fail init, and init time is billed and bounded).
    BestEffort,
}

/// The wait between two checks under [`StartupCheck::Retry`].
const STARTUP_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

impl StartupCheck {
    async fn run(self, sink: &dyn RecordSink) -> Result<(), SinkError> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let error = match sink.healthcheck().await {
                Ok(()) => return Ok(()),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => e,
            };
            match self {
                StartupCheck::BestEffort => {
                    tracing::warn!(
                        sink = sink.name(),
                        error = %error,
                        "start-up check failed for a reason that may pass; starting anyway (the \
                         first write reports a real problem, and /health says not ready until one \
                         succeeds)"
                    );
                    return Ok(());
                }
                StartupCheck::Retry { within } => {
                    let elapsed = started.elapsed();
                    if elapsed >= within {
                        return Err(error);
                    }
                    attempt = attempt.saturating_add(1);
                    let wait = STARTUP_BACKOFF.delay(attempt).min(within - elapsed);
                    tracing::warn!(
                        sink = sink.name(),
                        error = %error,
                        retry_in_ms = wait.as_millis() as u64,
                        "start-up check failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

impl SinkSettings {
    /// Builds the sink and runs its start-up check ([`RecordSink::healthcheck`]: directory
    /// writable, stream ACTIVE, …) under `check`. The file sink recovers orphaned segments first
    /// and logs the report; the memory sink logs loudly that it is not durable.
    ///
    /// # Errors
    /// If the sink cannot be opened or its check fails (as `check` decides).
    pub async fn build(
        &self,
        check: StartupCheck,
    ) -> Result<Arc<dyn RecordSink>, SinkStartupError> {
        let fail = |source| SinkStartupError {
            sink: self.kind(),
            source,
        };
        let sink: Arc<dyn RecordSink> = match self {
            SinkSettings::Memory { capacity } => {
                tracing::warn!(
                    sink = "memory",
                    capacity,
                    "SINK=memory (ALLOW_MEMORY_SINK=true): records are kept only in this process and \
                     are LOST on restart, yet every one is answered 200. Never use it for real traffic."
                );
                Arc::new(MemorySink::new(*capacity))
            }
            SinkSettings::File(config) => {
                let (sink, report) = FileSink::open(config.clone()).await.map_err(fail)?;
                report.log();
                crate::ephemeral::warn_if_ephemeral(&config.dir);
                Arc::new(sink)
            }
            #[cfg(feature = "firehose")]
            SinkSettings::Firehose {
                config,
                region,
                #[cfg(feature = "sqs")]
                sqs,
            } => {
                // One AWS configuration (credentials, region, endpoint) for both clients.
                let sdk = stripe_webhook_sink_firehose::load_sdk_config(region.clone())
                    .await
                    .map_err(fail)?;
                let firehose: Arc<dyn RecordSink> = Arc::new(
                    stripe_webhook_sink_firehose::FirehoseSink::new(config.clone(), &sdk),
                );
                #[cfg(feature = "sqs")]
                let queue: Option<Arc<dyn RecordSink>> = sqs.as_ref().map(|sqs| {
                    Arc::new(stripe_webhook_sink_sqs::SqsSink::new((**sqs).clone(), &sdk))
                        as Arc<dyn RecordSink>
                });
                #[cfg(not(feature = "sqs"))]
                let queue: Option<Arc<dyn RecordSink>> = None;
                match queue {
                    // Each record to Firehose and to the queue at once; 200 only when both took it.
                    Some(queue) => Arc::new(crate::BothSinks::new("firehose+sqs", firehose, queue)),
                    None => firehose,
                }
            }
        };
        check.run(sink.as_ref()).await.map_err(fail)?;
        Ok(sink)
    }
}
