//! Where verified Stripe webhook records are made durable: the [`RecordSink`] trait, its errors
//! ([`SinkError`], [`SinkErrorKind`]) and the in-memory [`MemorySink`] (tests, embedding).
//!
//! Every sink keeps one contract: [`RecordSink::put`] resolves `Ok` only once the record is
//! durable in its backend; any error carries a [`SinkErrorKind`] that says whether retrying may
//! help, and the webhook is answered so that Stripe retries.
//!
//! The durable sinks are crates of their own, so this one needs no async runtime, threads or C
//! code: `stripe-webhook-sink-file` (`FileSink`, the default for servers: the local archive of
//! `stripe_webhook_envelope::layout`) and `stripe-webhook-sink-firehose` (Amazon Data Firehose).
//!
//! ```
//! use bytes::Bytes;
//! use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
//! use stripe_webhook_sink::{MemorySink, RecordSink, SinkErrorKind};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let sink = MemorySink::new(1);
//! let body = Bytes::from_static(br#"{"id":"evt_1","object":"event","type":"charge.succeeded","data":{}}"#);
//! let record = encode(body, "t=1,v1=00", ReceivedAt::now(), &EnvelopeOptions::default()).unwrap();
//!
//! sink.put(record.clone()).await.unwrap();
//! assert_eq!(sink.len(), 1);
//! assert_eq!(sink.records()[0].id(), "evt_1");
//! assert!(sink.lines()[0].ends_with(b"\n"));
//!
//! // Bounded: a full sink fails fast, and the error says a retry may succeed.
//! let err = sink.put(record).await.unwrap_err();
//! assert_eq!(err.kind(), SinkErrorKind::Overloaded);
//! assert!(err.is_retryable());
//! # });
//! ```

/// The README's example, compiled as a doctest so the README cannot drift from the crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod error;
mod memory;

pub use error::{SinkError, SinkErrorKind};
pub use memory::MemorySink;
pub use stripe_webhook_envelope::Record;

use async_trait::async_trait;

/// A destination that makes archive records durable.
///
/// Stored as `Arc<dyn RecordSink>` by the ingest core. The contract every implementation keeps:
/// [`RecordSink::put`] resolves `Ok` only once the record is durable in the backend (synced to disk,
/// acknowledged by Firehose with a `RecordId`, …). Anything short of that is an error, and the
/// webhook is answered with a status that makes Stripe retry.
#[async_trait]
pub trait RecordSink: Send + Sync + 'static {
    /// A short, stable name for logs and metrics (`file`, `memory`, `firehose`).
    fn name(&self) -> &'static str;

    /// Checks once, at start-up, that the backend is usable (directory writable, stream ACTIVE, …).
    async fn healthcheck(&self) -> Result<(), SinkError>;

    /// Stores one record; `Ok` means durable.
    async fn put(&self, record: Record) -> Result<(), SinkError>;

    /// Makes everything accepted so far durable and visible (for batching sinks: sends what is queued).
    async fn flush(&self) -> Result<(), SinkError>;

    /// Stops taking records, flushes, and releases resources (seals open files, …).
    /// Later `put` calls fail with [`SinkErrorKind::ShuttingDown`].
    async fn shutdown(&self) -> Result<(), SinkError>;

    /// Whether an acknowledged record survives a restart of this process. `true` for every sink
    /// but the memory sink; `/health` reports it.
    fn is_durable(&self) -> bool {
        true
    }

    /// Readiness: whether the sink can take writes now, as far as it knows, from memory. Never
    /// calls the backend, so `/health` may be polled as often as a load balancer likes.
    ///
    /// Sinks report not ready after a write that failed for a reason that would fail the next one
    /// too (a failed write or sync, a failed call to the backend), and ready again after the next
    /// one that succeeds: readiness follows the last attempt, so a sink that is not ready still
    /// takes puts (that is how it becomes ready again). The default is always ready.
    fn health(&self) -> SinkHealth {
        SinkHealth::ready()
    }
}

/// A sink's readiness, as `/health` reports it.
///
/// Only [`SinkHealth::ready`] reaches the public `/health` answer; [`SinkHealth::detail`] is for
/// operators (logs, embedding code): it may name paths, streams or AWS error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkHealth {
    /// Whether the sink can take records now, as far as it knows.
    pub ready: bool,
    /// A one-line operator-facing description (`ok`, the last failure, …). Never a payload or a
    /// secret, but not for the public either.
    pub detail: String,
}

impl SinkHealth {
    /// Ready, detail `ok`.
    pub fn ready() -> Self {
        Self {
            ready: true,
            detail: "ok".to_owned(),
        }
    }

    /// Not ready, for the reason `detail`.
    pub fn not_ready(detail: impl Into<String>) -> Self {
        Self {
            ready: false,
            detail: detail.into(),
        }
    }
}
