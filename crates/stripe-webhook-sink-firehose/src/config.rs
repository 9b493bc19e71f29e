//! The sink's configuration (the integrator maps environment variables to it).

use std::time::Duration;

/// Firehose's limit on one record's data, before base64: larger records take the oversize path.
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Firehose's limit on records per `PutRecordBatch` call.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Firehose's limit on one `PutRecordBatch` request (4 MiB), counted on the wire: base64 growth and
/// JSON framing included.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How [`crate::FirehoseSink`] writes and retries. Build it with [`FirehoseSinkConfig::new`] and
/// adjust fields.
#[derive(Clone, Debug)]
pub struct FirehoseSinkConfig {
    /// The Direct PUT delivery stream's name.
    pub stream_name: String,
    /// Total time a `put` may take, retries included (default 5 s, well under Stripe's timeout). On
    /// expiry the put fails [`stripe_webhook_sink::SinkErrorKind::Timeout`] (the webhook gets a 503 and
    /// Stripe retries; a late success is then a duplicate, never a loss).
    pub deadline: Duration,
    /// Most `PutRecordBatch` calls in flight at once (default 64): where the adaptive limit starts
    /// and the most it climbs back to. High enough that a webhook never waits behind calls in flight
    /// (one round trip each, at any concurrency); throttling halves the effective limit (AIMD) down
    /// to one call, then spaces calls out, so several instances sharing a stream settle under its
    /// call quota.
    pub max_in_flight: usize,
    /// Most records admitted and not yet resolved (default 10,000); beyond it `put` fails fast with
    /// [`stripe_webhook_sink::SinkErrorKind::Overloaded`].
    pub max_queue_records: usize,
    /// Most bytes of admitted, unresolved records (default 64 MiB); beyond it `put` fails fast.
    pub max_queue_bytes: usize,
    /// How long a batch waits for more records before it is sent (default zero: group commit only,
    /// a record at idle is sent at once; records that arrive while calls are in flight form the next
    /// batch).
    pub linger: Duration,
    /// Most records per call (default and maximum [`MAX_BATCH_RECORDS`]).
    pub max_batch_records: usize,
    /// Most request bytes per call, counted after base64 and JSON framing (default and maximum
    /// [`MAX_BATCH_BYTES`]).
    pub max_batch_bytes: usize,
    /// The S3 bucket for bodies of records over [`MAX_RECORD_BYTES`] (`OVERSIZE_S3_BUCKET`). Without
    /// it such records fail [`stripe_webhook_sink::SinkErrorKind::Permanent`].
    pub oversize_bucket: Option<String>,
    /// The key prefix in the oversize bucket (default `oversize/`; a missing trailing `/` is added).
    pub oversize_prefix: String,
    /// How long `shutdown` waits for queued records to be sent before failing the rest (default 6 s).
    pub shutdown_timeout: Duration,
    /// Base of the exponential backoff between retries of a failed record (default 25 ms): after
    /// its `n`-th failure a record waits a time drawn uniformly from zero to
    /// `min(retry_max_backoff, retry_base × 2^(n−1))` (full jitter, `stripe-webhook-backoff`).
    pub retry_base: Duration,
    /// Cap of one backoff wait (default 1 s).
    pub retry_max_backoff: Duration,
}

impl FirehoseSinkConfig {
    /// The defaults for `stream_name`.
    pub fn new(stream_name: impl Into<String>) -> Self {
        Self {
            stream_name: stream_name.into(),
            deadline: Duration::from_secs(5),
            max_in_flight: 64,
            max_queue_records: 10_000,
            max_queue_bytes: 64 * 1024 * 1024,
            linger: Duration::ZERO,
            max_batch_records: MAX_BATCH_RECORDS,
            max_batch_bytes: MAX_BATCH_BYTES,
            oversize_bucket: None,
            oversize_prefix: "oversize/".to_owned(),
            shutdown_timeout: Duration::from_secs(6),
            retry_base: Duration::from_millis(25),
            retry_max_backoff: Duration::from_secs(1),
        }
    }

    /// The configuration with out-of-range values brought back within AWS's limits (at least one
    /// call in flight, batches within [`MAX_BATCH_RECORDS`] / [`MAX_BATCH_BYTES`], …).
    pub(crate) fn normalized(mut self) -> Self {
        self.max_in_flight = self.max_in_flight.max(1);
        self.max_queue_records = self.max_queue_records.max(1);
        self.max_queue_bytes = self.max_queue_bytes.max(MAX_RECORD_BYTES + 1);
        self.max_batch_records = self.max_batch_records.clamp(1, MAX_BATCH_RECORDS);
        // A batch must always fit one maximal record.
        self.max_batch_bytes = self.max_batch_bytes.clamp(
            wire_len(MAX_RECORD_BYTES) + REQUEST_OVERHEAD,
            MAX_BATCH_BYTES,
        );
        self.retry_max_backoff = self.retry_max_backoff.max(self.retry_base);
        if !self.oversize_prefix.is_empty() && !self.oversize_prefix.ends_with('/') {
            self.oversize_prefix.push('/');
        }
        self
    }
}

/// Request bytes outside the records: `{"DeliveryStreamName":"…","Records":[…]}` (the stream name is
/// at most 64 bytes).
pub(crate) const REQUEST_OVERHEAD: usize = 128;

/// Bytes one record of `len` data bytes takes in the request: base64 plus `{"Data":""},`.
pub(crate) const fn wire_len(len: usize) -> usize {
    len.div_ceil(3) * 4 + 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_len_counts_base64_and_framing() {
        assert_eq!(wire_len(0), 12);
        assert_eq!(wire_len(1), 16);
        assert_eq!(wire_len(3), 16);
        assert_eq!(wire_len(4), 20);
        // Three maximal records fit a call, four do not.
        assert!(3 * wire_len(MAX_RECORD_BYTES) + REQUEST_OVERHEAD <= MAX_BATCH_BYTES);
        assert!(4 * wire_len(MAX_RECORD_BYTES) > MAX_BATCH_BYTES);
    }

    #[test]
    fn normalized_keeps_limits() {
        let mut c = FirehoseSinkConfig::new("s");
        c.max_in_flight = 0;
        c.max_batch_records = 10_000;
        c.max_batch_bytes = 1;
        c.oversize_prefix = "big".to_owned();
        let c = c.normalized();
        assert_eq!(c.oversize_prefix, "big/");
        assert_eq!(c.max_in_flight, 1);
        assert_eq!(c.max_batch_records, MAX_BATCH_RECORDS);
        assert!(c.max_batch_bytes >= wire_len(MAX_RECORD_BYTES));
    }
}
