//! The Amazon SQS [`RecordSink`]: each record goes to a queue as one message, each `put` resolving
//! `Ok` only once SQS accepted that message. Beside the Firehose sink it makes the archive's
//! records available to the team's own consumers in real time
//! (`stripe_webhook_service::BothSinks` acknowledges a webhook only when both accepted it).
//!
//! How it sends (specified in `docs/forwarding-sqs.md`):
//! - **The message** is the envelope line, byte for byte, with the attributes `stripe_event_id` and
//!   `stripe_event_type`. On a FIFO queue (URL ending in `.fifo`), `MessageGroupId` is the event's
//!   `data.object.id` (else the event id) and `MessageDeduplicationId` the event id.
//! - **Group commit**: one dispatcher sends what is queued as one `SendMessageBatch` whenever a
//!   call slot is free (at most 10 entries, and at most the queue's message size in total); records
//!   arriving while calls are in flight form the next batch.
//! - **Per-entry outcomes**: each caller resolves as soon as its own entry succeeded. Failed entries
//!   are resent alone after a backoff (`stripe_webhook_backoff::Backoff`, full jitter) within the
//!   put's deadline; an entry SQS marks as the sender's fault (bad contents, KMS key disabled,
//!   access) fails [`SinkErrorKind::Permanent`] at once, throttling and server faults are retried.
//! - **Oversize**: a message over the queue's `MaximumMessageSize` (read at start-up; 256 KiB until
//!   then), or holding a character SQS refuses, takes the archive's oversize path
//!   ([`OversizeStore`]): the body to `OVERSIZE_S3_BUCKET`, the pointer record as the message.
//! - **SDK configuration**: SDK retries disabled (the sink retries per entry), operation timeout =
//!   the deadline, connect timeout 2 s.
//! - **Health**: [`RecordSink::healthcheck`] calls `GetQueueAttributes` once (the queue exists, is
//!   FIFO exactly when its URL says so; logs the ARN and limit). Readiness follows the last call.
//!
//! ```
//! use stripe_webhook_sink::RecordSink;
//! use stripe_webhook_sink_sqs::{SqsSink, SqsSinkConfig};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let config = SqsSinkConfig::new("https://sqs.us-east-1.amazonaws.com/123456789012/stripe-events.fifo");
//! assert!(config.is_fifo());
//! let sdk = aws_config::SdkConfig::builder()
//!     .region(aws_config::Region::new("us-east-1"))
//!     .behavior_version(aws_config::BehaviorVersion::latest())
//!     .build();
//! let sink = SqsSink::new(config, &sdk);
//! assert_eq!(sink.name(), "sqs");
//! assert!(!sink.health().ready, "not checked yet");
//! # });
//! ```

mod config;
mod engine;
mod message;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use stripe_webhook_sink::{Record, RecordSink, SinkError, SinkErrorKind, SinkHealth};
use stripe_webhook_sink_firehose::classify::{CallFailure, Class};
use stripe_webhook_sink_firehose::{OversizeLimit, OversizeStore, validate_line};
use tokio::time::Instant;

pub use config::{DEFAULT_MAX_MESSAGE_BYTES, MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES, SqsSinkConfig};
pub use message::{ATTR_EVENT_ID, ATTR_EVENT_TYPE, Message};

use engine::Engine;

/// The SQS [`RecordSink`]. Create it inside a Tokio runtime (it starts its dispatcher task);
/// dropping it stops the dispatcher.
pub struct SqsSink {
    engine: Arc<Engine>,
    oversize: OversizeStore,
    health: Arc<Mutex<SinkHealth>>,
    region: String,
}

impl std::fmt::Debug for SqsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsSink")
            .field("queue_url", &self.engine.config.queue_url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl SqsSink {
    /// Builds the clients from a given [`aws_config::SdkConfig`] and starts the dispatcher.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(config: SqsSinkConfig, sdk: &aws_config::SdkConfig) -> SqsSink {
        let config = config.normalized();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.deadline.min(Duration::from_secs(2)))
            .operation_attempt_timeout(config.deadline)
            .operation_timeout(config.deadline)
            .build();
        let client = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
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
                what: "an SQS message (the queue's MaximumMessageSize, SQS's characters)",
                metric: None,
            },
        );
        let region = sdk
            .region()
            .map_or_else(|| "<no region>".to_owned(), ToString::to_string);
        let health = Arc::new(Mutex::new(SinkHealth::not_ready("not checked yet")));
        let on_call = {
            let health = Arc::clone(&health);
            Box::new(move |result: Result<(), &str>| {
                let mut h = health.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(()) if !h.ready => {
                        tracing::info!("SQS answers again: the sink is ready");
                        *h = SinkHealth::ready();
                    }
                    Ok(()) => {}
                    Err(message) => {
                        if h.ready {
                            tracing::warn!(
                                error = message,
                                "SQS sink not ready: the last call failed"
                            );
                        }
                        *h = SinkHealth::not_ready(message);
                    }
                }
            })
        };
        let max = config
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let engine = Engine::new(config, client, max, on_call);
        tokio::spawn(Arc::clone(&engine).run());
        SqsSink {
            engine,
            oversize,
            health,
            region,
        }
    }

    /// The sink's configuration (normalized).
    pub fn config(&self) -> &SqsSinkConfig {
        &self.engine.config
    }

    /// The largest message the sink sends: the queue's `MaximumMessageSize` once checked (capped
    /// by [`SqsSinkConfig::max_message_bytes`]), [`DEFAULT_MAX_MESSAGE_BYTES`] before.
    pub fn max_message_bytes(&self) -> usize {
        self.engine.max_message_bytes()
    }

    /// Messages admitted and not yet resolved (the bounded queue's fill).
    pub fn queued(&self) -> usize {
        self.engine.counters().records()
    }

    fn set_health(&self, health: SinkHealth) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = health;
    }

    async fn put_inner(&self, record: &Record, deadline: Instant) -> Result<(), SinkError> {
        if self.engine.is_closed() {
            return Err(engine::shutting_down());
        }
        validate_line(record.line(), record.id())?;
        let fifo = self.engine.config.is_fifo();
        let mut message = Message::new(record, fifo);
        let max = self.max_message_bytes();
        if !message.fits(max) {
            let pointer = self.oversize.store(record, deadline).await?;
            let group_id = message.group_id.take();
            message = Message::new(&pointer, false);
            message.group_id = group_id;
            if !message.fits(max) {
                return Err(SinkError::new(
                    SinkErrorKind::Permanent,
                    format!(
                        "the oversize pointer of event {} is itself too large for the SQS queue ({} bytes, limit {max})",
                        record.id(),
                        message.size()
                    ),
                ));
            }
        }
        self.engine.submit(message, deadline).await
    }
}

#[async_trait]
impl RecordSink for SqsSink {
    fn name(&self) -> &'static str {
        "sqs"
    }

    fn health(&self) -> SinkHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let queue = &self.engine.config.queue_url;
        let region = &self.region;
        let send = self
            .engine
            .client()
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::All)
            .send();
        let fail = |kind, what: String| {
            let message = format!("SQS queue {queue} in region {region}: {what}");
            tracing::error!(queue, region, "{message}");
            self.set_health(SinkHealth::not_ready(&message));
            Err(SinkError::new(kind, message))
        };
        let out = match tokio::time::timeout(self.engine.config.deadline, send).await {
            Err(_) => {
                return fail(
                    SinkErrorKind::Unavailable,
                    "GetQueueAttributes timed out".into(),
                );
            }
            Ok(Err(err)) => {
                let f = CallFailure::from_sdk(&err);
                let kind = match f.class {
                    Class::Permanent => SinkErrorKind::Permanent,
                    _ => SinkErrorKind::Unavailable,
                };
                return fail(
                    kind,
                    format!(
                        "GetQueueAttributes failed: {} ({}): {}",
                        f.code,
                        f.request_id_text(),
                        f.message
                    ),
                );
            }
            Ok(Ok(out)) => out,
        };
        let attrs = out.attributes();
        let get = |name: QueueAttributeName| attrs.and_then(|a| a.get(&name)).map(String::as_str);
        let is_fifo = get(QueueAttributeName::FifoQueue) == Some("true");
        if is_fifo != self.engine.config.is_fifo() {
            return fail(
                SinkErrorKind::Permanent,
                format!(
                    "the queue is {}a FIFO queue but its URL {} in .fifo",
                    if is_fifo { "" } else { "not " },
                    if is_fifo { "does not end" } else { "ends" }
                ),
            );
        }
        let queue_max = get(QueueAttributeName::MaximumMessageSize)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let max = self
            .engine
            .config
            .max_message_bytes
            .map_or(queue_max, |cap| cap.min(queue_max));
        self.engine.set_max_message_bytes(max);
        let arn = get(QueueAttributeName::QueueArn).unwrap_or("<no ARN>");
        tracing::info!(
            queue,
            region,
            arn,
            fifo = is_fifo,
            max_message_bytes = self.max_message_bytes(),
            "SQS queue found"
        );
        self.set_health(SinkHealth::ready());
        Ok(())
    }

    async fn put(&self, record: Record) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.engine.config.deadline;
        let result = self.put_inner(&record, deadline).await;
        if let Err(e) = &result {
            tracing::warn!(event_id = record.id(), kind = %e.kind(), error = %e.message(), "SQS put failed");
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
                    "{} SQS messages still pending after {} ms",
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
            tracing::info!("SQS sink flushed and stopped");
            Ok(())
        } else {
            tracing::warn!(failed, "SQS sink stopped with messages not sent");
            Err(SinkError::new(
                SinkErrorKind::ShuttingDown,
                format!(
                    "SQS sink stopped; {failed} queued messages were not sent within {} ms",
                    self.engine.config.shutdown_timeout.as_millis()
                ),
            ))
        }
    }
}

impl Drop for SqsSink {
    fn drop(&mut self) {
        self.engine.stop();
    }
}
