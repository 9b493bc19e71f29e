//! The sink's configuration (the integrator maps environment variables to it).

use std::time::Duration;

/// SQS's limit on entries per `SendMessageBatch` call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// The message size the sink assumes until the start-up check has read the queue's own
/// `MaximumMessageSize`: 256 KiB, the limit every queue supported before SQS raised the maximum to
/// 1 MiB (a queue may be set lower or, since 2025, higher).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 262_144;
/// SQS's largest message (1 MiB): the most any queue accepts, and the most one `SendMessageBatch`
/// call may carry in total.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// How [`crate::SqsSink`] sends and retries. Build it with [`SqsSinkConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct SqsSinkConfig {
    /// The queue's URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`); a name ending in
    /// `.fifo` makes it a FIFO queue (group and deduplication ids are set).
    pub queue_url: String,
    /// Total time a `put` may take, retries included (default 5 s). On expiry the put fails
    /// [`stripe_webhook_sink::SinkErrorKind::Timeout`] (503, Stripe retries; a late success is a
    /// duplicate, never a loss).
    pub deadline: Duration,
    /// Most `SendMessageBatch` calls in flight at once (default 64).
    pub max_in_flight: usize,
    /// Most messages admitted and not yet resolved (default 10,000); beyond it `put` fails fast with
    /// [`stripe_webhook_sink::SinkErrorKind::Overloaded`].
    pub max_queue_records: usize,
    /// Most bytes of admitted, unresolved messages (default 64 MiB).
    pub max_queue_bytes: usize,
    /// Caps the message size below the queue's own `MaximumMessageSize` (read at start-up):
    /// larger messages take the oversize path. `None` (default): the queue's limit.
    pub max_message_bytes: Option<usize>,
    /// The S3 bucket for bodies too large for a message (`OVERSIZE_S3_BUCKET`, shared with the
    /// Firehose sink). Without it such records fail [`stripe_webhook_sink::SinkErrorKind::Permanent`].
    pub oversize_bucket: Option<String>,
    /// The key prefix in the oversize bucket (default `oversize/`).
    pub oversize_prefix: String,
    /// How long `shutdown` waits for queued messages before failing the rest (default 6 s).
    pub shutdown_timeout: Duration,
    /// The first retry's longest wait (default 25 ms); it doubles per retry (full jitter,
    /// `stripe_webhook_backoff::Backoff`).
    pub retry_base: Duration,
    /// Cap of one backoff wait (default 1 s).
    pub retry_max_backoff: Duration,
}

impl SqsSinkConfig {
    /// The defaults for `queue_url`.
    pub fn new(queue_url: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            deadline: Duration::from_secs(5),
            max_in_flight: 64,
            max_queue_records: 10_000,
            max_queue_bytes: 64 * 1024 * 1024,
            max_message_bytes: None,
            oversize_bucket: None,
            oversize_prefix: "oversize/".to_owned(),
            shutdown_timeout: Duration::from_secs(6),
            retry_base: Duration::from_millis(25),
            retry_max_backoff: Duration::from_secs(1),
        }
    }

    /// Whether the queue is a FIFO queue (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.queue_url.trim_end_matches('/').ends_with(".fifo")
    }

    /// The configuration with out-of-range values brought back within SQS's limits.
    pub(crate) fn normalized(mut self) -> Self {
        self.max_in_flight = self.max_in_flight.max(1);
        self.max_queue_records = self.max_queue_records.max(1);
        self.max_queue_bytes = self.max_queue_bytes.max(MAX_MESSAGE_BYTES);
        self.max_message_bytes = self
            .max_message_bytes
            .map(|b| b.clamp(1024, MAX_MESSAGE_BYTES));
        self.retry_max_backoff = self.retry_max_backoff.max(self.retry_base);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_follows_the_queue_name() {
        assert!(SqsSinkConfig::new("https://sqs.eu-west-1.amazonaws.com/1/q.fifo").is_fifo());
        assert!(!SqsSinkConfig::new("https://sqs.eu-west-1.amazonaws.com/1/q").is_fifo());
        assert!(!SqsSinkConfig::new("https://sqs.eu-west-1.amazonaws.com/1/fifo").is_fifo());
    }

    #[test]
    fn normalized_keeps_limits() {
        let mut c = SqsSinkConfig::new("q");
        c.max_in_flight = 0;
        c.max_message_bytes = Some(10 * MAX_MESSAGE_BYTES);
        let c = c.normalized();
        assert_eq!(c.max_in_flight, 1);
        assert_eq!(c.max_message_bytes, Some(MAX_MESSAGE_BYTES));
    }
}
