//! Sink errors that say whether the sender should retry.

use std::error::Error as StdError;
use std::fmt;

/// What kind of failure a sink reports. Decides the HTTP status the webhook gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SinkErrorKind {
    /// The sink's queue or in-flight budget is full; failing fast instead of growing memory.
    Overloaded,
    /// The record was not acknowledged within the sink's deadline. It may still arrive (a duplicate
    /// later), but it is not known to be durable.
    Timeout,
    /// The backend is unreachable or answered with a transient failure (5xx, throttling, I/O that may
    /// succeed later).
    Unavailable,
    /// The sink is shutting down and takes no more records.
    ShuttingDown,
    /// The backend refused the record or the configuration for good (invalid argument, missing stream,
    /// credentials, disk full on a read-only mount …). Retrying the same request will not help.
    Permanent,
}

impl SinkErrorKind {
    /// Whether retrying the same record later may succeed.
    pub fn is_retryable(self) -> bool {
        !matches!(self, SinkErrorKind::Permanent)
    }

    /// A short, stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            SinkErrorKind::Overloaded => "overloaded",
            SinkErrorKind::Timeout => "timeout",
            SinkErrorKind::Unavailable => "unavailable",
            SinkErrorKind::ShuttingDown => "shutting_down",
            SinkErrorKind::Permanent => "permanent",
        }
    }
}

impl fmt::Display for SinkErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A sink failure: its kind, an operator-facing message, and the underlying cause if any.
///
/// Messages never contain record payloads or secrets.
#[derive(Debug)]
pub struct SinkError {
    kind: SinkErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl SinkError {
    /// A new error of `kind` with an operator-facing `message`.
    pub fn new(kind: SinkErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }

    /// Whether retrying the same record later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The operator-facing message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for SinkError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
