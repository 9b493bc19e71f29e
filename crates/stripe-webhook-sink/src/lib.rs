//! The [`RecordSink`] trait: where verified Stripe webhook records are made durable.
//!
//! (Crate docs, the memory sink and the file sink are being written: see issue 3.)

mod error;

pub use error::{SinkError, SinkErrorKind};
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
}
