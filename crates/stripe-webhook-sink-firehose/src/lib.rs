//! The production [`RecordSink`]: archive records go to an Amazon Data Firehose Direct PUT delivery
//! stream (which delivers them to S3), each `put` resolving `Ok` only once Firehose gave that record
//! a `RecordId`.
//!
//! How it writes (specified in `docs/firehose-sink.md`):
//! - **One code path**: every write is a `PutRecordBatch`, even of one record.
//! - **Validation first**: a record must be one envelope line (non-empty, no `\n`/`\r` inside, one
//!   trailing `\n`). A line over 1,024,000 bytes takes the **oversize path**: the verified body is
//!   written to S3 (`<oversize_prefix>year=YYYY/month=MM/day=DD/<event id>-<millis>-<random>.json`)
//!   and a small pointer record goes through Firehose, both before the put resolves. Without
//!   `oversize_bucket` such a put fails [`SinkErrorKind::Permanent`] (set `OVERSIZE_S3_BUCKET`).
//! - **Group commit**: one dispatcher sends everything queued as one batch whenever a call slot is
//!   free (at most 500 records / 4 MiB counted after base64 and JSON framing); records arriving while
//!   calls are in flight form the next batch. No timer unless `linger` is set.
//! - **Per-record outcomes**: each caller resolves as soon as its own record has a `RecordId`. Only
//!   failed records are resent, byte-identical, after exponential backoff with full jitter, within
//!   the put's deadline (default 5 s; then [`SinkErrorKind::Timeout`], a 503 for Stripe). A response
//!   with the wrong number of entries fails every record of the call (they are resent).
//! - **Whole-call errors**: 5xx, throttling, timeouts and connection errors are retried;
//!   `InvalidArgumentException`, `ResourceNotFoundException`, KMS, credential and other 4xx errors
//!   are [`SinkErrorKind::Permanent`] at once, with the AWS request id in the message and logs.
//! - **Back-pressure**: at most `max_in_flight` calls (default 64, where the adaptive limit starts) and a bounded queue (records and
//!   bytes, counted until each record resolves); a full queue fails `put` at once with
//!   [`SinkErrorKind::Overloaded`]. Throttling (`ServiceUnavailableException`, whole call or per
//!   record) drives an **AIMD** controller: halve the calls in flight, then space calls out; each
//!   successful call wins some rate back.
//! - **SDK configuration**: SDK retries are **disabled** (`RetryConfig::disabled()`): the SDK never
//!   retries partial failures and does not treat `ServiceUnavailableException` as throttling, and two
//!   retry layers would multiply attempts past the deadline. Operation and attempt timeouts equal the
//!   deadline, connect timeout 2 s. The S3 client (oversize bodies only) keeps standard retries (3
//!   attempts) inside the same deadline, and uses path-style addressing when an endpoint override
//!   (`AWS_ENDPOINT_URL`, emulators) is set.
//! - **Health**: [`RecordSink::healthcheck`] calls `DescribeDeliveryStream` once (exists, `ACTIVE`,
//!   `DirectPut`; logs the ARN; a failure names stream and region). Readiness
//!   ([`RecordSink::health`], [`FirehoseSink::last_health`]) follows the last call: not ready after
//!   a call that failed as a whole, ready again after the next answered one; it never calls AWS.
//! - **Shutdown**: stop taking puts, let queued records go out within `shutdown_timeout`, fail the
//!   rest with [`SinkErrorKind::ShuttingDown`].
//! - **Byte exactness**: the `Data` Firehose receives is the envelope line, uncompressed.
//! - **Metrics** (`metrics` facade, names in `stripe-webhook-metrics`): calls by outcome, call
//!   latency, records and bytes per call, records accepted and failed by code, retries by code,
//!   throttles by scope, calls in flight and the AIMD limit, queue depth (records, bytes), oversize
//!   bodies by result, put errors by kind. Logs carry the AWS request id and event id, never
//!   payloads or secrets.
//!
//! ```
//! use stripe_webhook_sink::RecordSink;
//! use stripe_webhook_sink_firehose::{FirehoseSink, FirehoseSinkConfig};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut config = FirehoseSinkConfig::new("stripe-webhooks");
//! config.oversize_bucket = Some("my-webhook-archive".to_owned());
//! // In production: `load_sdk_config(None).await?` for `sdk`, then `sink.healthcheck().await?` once.
//! let sdk = aws_config::SdkConfig::builder()
//!     .region(aws_config::Region::new("us-east-1"))
//!     .behavior_version(aws_config::BehaviorVersion::latest())
//!     .build();
//! let sink = FirehoseSink::new(config, &sdk);
//! assert_eq!(sink.name(), "firehose");
//! assert!(!sink.last_health().ready, "not checked yet");
//! # });
//! ```

mod aimd;
pub mod classify;
mod config;
mod engine;
mod health;
mod oversize;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_firehose::config::retry::RetryConfig;
use aws_sdk_firehose::config::timeout::TimeoutConfig;
use aws_sdk_firehose::types::{DeliveryStreamStatus, DeliveryStreamType};
use bytes::Bytes;
use stripe_webhook_sink::{Record, RecordSink, SinkError, SinkErrorKind};
use tokio::time::Instant;

pub use config::{FirehoseSinkConfig, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES};
pub use health::FirehoseHealth;
pub use oversize::{OversizeLimit, OversizeStore};

use classify::{CallFailure, Class};
use engine::Engine;
use health::HealthCell;
use stripe_webhook_metrics as m;

/// The Firehose [`RecordSink`]. Create it inside a Tokio runtime (it starts its dispatcher task);
/// dropping it stops the dispatcher.
pub struct FirehoseSink {
    engine: Arc<Engine>,
    oversize: OversizeStore,
    region: String,
}

impl std::fmt::Debug for FirehoseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirehoseSink")
            .field("stream_name", &self.engine.config.stream_name)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Loads `aws-config` once: the credential chain, `AWS_ENDPOINT_URL` honoured; `region`
/// overrides the environment's region when given. One load serves every AWS client of a process
/// (the Firehose sink and the SQS destination share it).
///
/// # Errors
/// [`SinkErrorKind::Permanent`] when no region is configured.
pub async fn load_sdk_config(region: Option<String>) -> Result<aws_config::SdkConfig, SinkError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(SinkError::new(
            SinkErrorKind::Permanent,
            "no AWS region configured: set AWS_REGION",
        ));
    }
    Ok(sdk)
}

impl FirehoseSink {
    /// Builds the clients from an [`aws_config::SdkConfig`] ([`load_sdk_config`] in production,
    /// a fixed one in tests) with the sink's retry and timeout configuration, and starts the
    /// dispatcher.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(config: FirehoseSinkConfig, sdk: &aws_config::SdkConfig) -> FirehoseSink {
        let config = config.normalized();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.deadline.min(Duration::from_secs(2)))
            .operation_attempt_timeout(config.deadline)
            .operation_timeout(config.deadline)
            .build();
        let firehose = aws_sdk_firehose::Client::from_conf(
            aws_sdk_firehose::config::Builder::from(sdk)
                .retry_config(RetryConfig::disabled())
                .timeout_config(timeouts)
                .build(),
        );
        let oversize = OversizeStore::new(
            sdk,
            config.oversize_bucket.clone(),
            config.oversize_prefix.clone(),
            config.deadline,
            OversizeLimit {
                what: "a Firehose record (1024000 bytes at most)",
                metric: Some(m::FIREHOSE_OVERSIZE_TOTAL),
            },
        );
        let region = sdk
            .region()
            .map_or_else(|| "<no region>".to_owned(), ToString::to_string);
        let engine = Engine::new(config, firehose, Arc::new(HealthCell::new()));
        tokio::spawn(Arc::clone(&engine).run());
        FirehoseSink {
            engine,
            oversize,
            region,
        }
    }

    /// The cached health (start-up check, then call outcomes), for `/health`. Never calls AWS.
    pub fn last_health(&self) -> FirehoseHealth {
        self.engine.health.get()
    }

    /// The sink's configuration (normalized).
    pub fn config(&self) -> &FirehoseSinkConfig {
        &self.engine.config
    }

    /// The AIMD controller's current `(calls allowed in flight, minimum gap between calls)`.
    pub fn send_limit(&self) -> (usize, Duration) {
        self.engine.send_limit()
    }

    /// Records and bytes admitted and not yet resolved (the bounded queue's fill).
    pub fn queued(&self) -> (usize, usize) {
        let c = self.engine.counters();
        (c.records(), c.bytes())
    }

    async fn put_inner(&self, record: &Record, deadline: Instant) -> Result<(), SinkError> {
        if self.engine.is_closed() {
            return Err(engine::shutting_down());
        }
        validate_line(record.line(), record.id())?;
        if record.len() > MAX_RECORD_BYTES {
            return self.put_oversize(record, deadline).await;
        }
        self.send_line(record.line().clone(), record.id(), deadline)
            .await
    }

    async fn send_line(
        &self,
        line: Bytes,
        event_id: &str,
        deadline: Instant,
    ) -> Result<(), SinkError> {
        self.engine.submit(line, event_id, deadline).await
    }

    /// The oversize path: body to S3, then the pointer record through Firehose.
    async fn put_oversize(&self, record: &Record, deadline: Instant) -> Result<(), SinkError> {
        let pointer = self.oversize.store(record, deadline).await?;
        validate_line(pointer.line(), pointer.id())?;
        if pointer.len() > MAX_RECORD_BYTES {
            return Err(SinkError::new(
                SinkErrorKind::Permanent,
                format!(
                    "the oversize pointer of event {} is itself {} bytes",
                    record.id(),
                    pointer.len()
                ),
            ));
        }
        self.send_line(pointer.line().clone(), pointer.id(), deadline)
            .await
    }
}

#[async_trait]
impl RecordSink for FirehoseSink {
    fn name(&self) -> &'static str {
        "firehose"
    }

    fn health(&self) -> stripe_webhook_sink::SinkHealth {
        let h = self.last_health();
        stripe_webhook_sink::SinkHealth {
            ready: h.ready,
            detail: h.detail,
        }
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let stream = &self.engine.config.stream_name;
        let region = &self.region;
        let send = self
            .engine
            .client()
            .describe_delivery_stream()
            .delivery_stream_name(stream)
            .send();
        let fail = |kind, what: String| {
            let message = format!("Firehose delivery stream '{stream}' in region {region}: {what}");
            tracing::error!(stream, region, "{message}");
            self.engine.health.check_failed(&message);
            Err(SinkError::new(kind, message))
        };
        let out = match tokio::time::timeout(self.engine.config.deadline, send).await {
            Err(_) => {
                return fail(
                    SinkErrorKind::Unavailable,
                    "DescribeDeliveryStream timed out".into(),
                );
            }
            Ok(Err(err)) => {
                let f = CallFailure::from_sdk(&err);
                let kind = match f.class {
                    Class::Permanent => SinkErrorKind::Permanent,
                    _ => SinkErrorKind::Unavailable,
                };
                let what = if f.code == "ResourceNotFoundException" {
                    format!("not found ({}, {})", f.code, f.request_id_text())
                } else {
                    format!(
                        "DescribeDeliveryStream failed: {} ({}): {}",
                        f.code,
                        f.request_id_text(),
                        f.message
                    )
                };
                return fail(kind, what);
            }
            Ok(Ok(out)) => out,
        };
        let Some(d) = out.delivery_stream_description() else {
            return fail(
                SinkErrorKind::Unavailable,
                "DescribeDeliveryStream returned no description".into(),
            );
        };
        if d.delivery_stream_type() != &DeliveryStreamType::DirectPut {
            return fail(
                SinkErrorKind::Permanent,
                format!(
                    "is of type {}, not DirectPut",
                    d.delivery_stream_type().as_str()
                ),
            );
        }
        if d.delivery_stream_status() != &DeliveryStreamStatus::Active {
            return fail(
                SinkErrorKind::Unavailable,
                format!("is {}, not ACTIVE", d.delivery_stream_status().as_str()),
            );
        }
        let arn = d.delivery_stream_arn();
        tracing::info!(
            stream,
            region,
            arn,
            "Firehose delivery stream is ACTIVE (DirectPut)"
        );
        self.engine.health.checked_ok(arn);
        Ok(())
    }

    async fn put(&self, record: Record) -> Result<(), SinkError> {
        let started = Instant::now();
        let result = self
            .put_inner(&record, started + self.engine.config.deadline)
            .await;
        if let Err(e) = &result {
            metrics::counter!(m::FIREHOSE_PUT_ERRORS_TOTAL, "kind" => e.kind().label())
                .increment(1);
            tracing::warn!(event_id = record.id(), kind = %e.kind(), error = %e.message(), "Firehose put failed");
        }
        result
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let timeout = self.engine.config.shutdown_timeout;
        if self.engine.wait_drained(timeout).await {
            Ok(())
        } else {
            Err(SinkError::new(
                SinkErrorKind::Timeout,
                format!(
                    "{} records still pending after {} ms",
                    self.engine.counters().records(),
                    timeout.as_millis()
                ),
            ))
        }
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        self.engine.close();
        let drained = self
            .engine
            .wait_drained(self.engine.config.shutdown_timeout)
            .await;
        let failed = self.engine.fail_queued();
        self.engine.stop();
        if drained {
            tracing::info!("Firehose sink flushed and stopped");
            Ok(())
        } else {
            tracing::warn!(failed, "Firehose sink stopped with records not flushed");
            Err(SinkError::new(
                SinkErrorKind::ShuttingDown,
                format!(
                    "Firehose sink stopped; {failed} queued records were not sent within {} ms",
                    self.engine.config.shutdown_timeout.as_millis()
                ),
            ))
        }
    }
}

impl Drop for FirehoseSink {
    fn drop(&mut self) {
        self.engine.stop();
    }
}

/// Checks that `line` is one envelope line: non-empty, one trailing `\n`, no other `\n` or `\r`;
/// otherwise a [`SinkErrorKind::Permanent`] error naming `event_id`.
pub fn validate_line(line: &[u8], event_id: &str) -> Result<(), SinkError> {
    let problem = match line.split_last() {
        None | Some((b'\n', [])) => Some("is empty"),
        Some((b'\n', rest)) if rest.iter().any(|&b| b == b'\n' || b == b'\r') => {
            Some("contains a line break before its end")
        }
        Some((b'\n', _)) => None,
        Some(_) => Some("does not end with a newline"),
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(SinkError::new(
            SinkErrorKind::Permanent,
            format!("the record of event {event_id} {p}: not one envelope line"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_one_line() {
        assert!(validate_line(b"{}\n", "e").is_ok());
        for bad in [&b""[..], b"\n", b"{}", b"{}\n\n", b"{\n}\n", b"{\r}\n"] {
            let e = validate_line(bad, "evt_x").unwrap_err();
            assert_eq!(e.kind(), SinkErrorKind::Permanent);
            assert!(e.message().contains("evt_x"));
        }
    }
}
