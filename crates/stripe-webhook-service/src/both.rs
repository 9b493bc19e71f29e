//! [`BothSinks`]: one record into two sinks at once (here, not in the trait crate: it needs an
//! async runtime's `join!`, which `stripe-webhook-sink` does not depend on), acknowledged when both acknowledged it.

use std::sync::Arc;

use async_trait::async_trait;

use stripe_webhook_sink::{Record, RecordSink, SinkError, SinkErrorKind, SinkHealth};

/// Puts every record into two sinks concurrently (the archive and a delivery queue, say) and
/// resolves `Ok` only when both did: a failure of either fails the put, so the webhook gets a 5xx
/// and Stripe retries (the sink that succeeded then holds a duplicate; readers dedupe on `id`).
/// Latency is the slower sink's, not the sum.
///
/// Ready when both are ready; durable when both are; start-up check, flush and shutdown run on
/// both.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
/// use stripe_webhook_service::BothSinks;
/// use stripe_webhook_sink::{MemorySink, RecordSink, SinkErrorKind};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let archive = Arc::new(MemorySink::new(10));
/// let queue = Arc::new(MemorySink::new(1));
/// let both = BothSinks::new("archive+queue", archive.clone(), queue.clone());
/// let body = Bytes::from_static(br#"{"id":"evt_1","object":"event","type":"t","data":{}}"#);
/// let record = encode(body, "t=1,v1=00", ReceivedAt::now(), &EnvelopeOptions::default()).unwrap();
/// both.put(record.clone()).await.unwrap();
/// assert_eq!((archive.len(), queue.len()), (1, 1));
/// // The queue is full: the put fails though the archive took the record.
/// let err = both.put(record).await.unwrap_err();
/// assert_eq!(err.kind(), SinkErrorKind::Overloaded);
/// assert_eq!(archive.len(), 2);
/// # });
/// ```
pub struct BothSinks {
    name: &'static str,
    first: Arc<dyn RecordSink>,
    second: Arc<dyn RecordSink>,
}

impl std::fmt::Debug for BothSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BothSinks")
            .field("first", &self.first.name())
            .field("second", &self.second.name())
            .finish()
    }
}

impl BothSinks {
    /// Both sinks under `name` (logs, metrics and `/health` show it, e.g. `firehose+sqs`).
    pub fn new(
        name: &'static str,
        first: Arc<dyn RecordSink>,
        second: Arc<dyn RecordSink>,
    ) -> BothSinks {
        BothSinks {
            name,
            first,
            second,
        }
    }
}

/// Both results as one: `Ok` when both are; otherwise the failure (the permanent one when
/// there are two, as it needs a person), its message naming the sink.
fn combine(
    first: (&str, Result<(), SinkError>),
    second: (&str, Result<(), SinkError>),
) -> Result<(), SinkError> {
    let name = |(sink, result): (&str, Result<(), SinkError>)| {
        result.map_err(|e| SinkError::new(e.kind(), format!("{sink}: {}", e.message())))
    };
    match (name(first), name(second)) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(a), Err(b)) if b.kind() == SinkErrorKind::Permanent => Err(SinkError::new(
            b.kind(),
            format!("{}; {}", b.message(), a.message()),
        )),
        (Err(a), Err(b)) => Err(SinkError::new(
            a.kind(),
            format!("{}; {}", a.message(), b.message()),
        )),
    }
}

#[async_trait]
impl RecordSink for BothSinks {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let (a, b) = tokio::join!(self.first.healthcheck(), self.second.healthcheck());
        combine((self.first.name(), a), (self.second.name(), b))
    }

    async fn put(&self, record: Record) -> Result<(), SinkError> {
        let (a, b) = tokio::join!(self.first.put(record.clone()), self.second.put(record));
        combine((self.first.name(), a), (self.second.name(), b))
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let (a, b) = tokio::join!(self.first.flush(), self.second.flush());
        combine((self.first.name(), a), (self.second.name(), b))
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        let (a, b) = tokio::join!(self.first.shutdown(), self.second.shutdown());
        combine((self.first.name(), a), (self.second.name(), b))
    }

    fn is_durable(&self) -> bool {
        self.first.is_durable() && self.second.is_durable()
    }

    fn health(&self) -> SinkHealth {
        let (a, b) = (self.first.health(), self.second.health());
        let detail = format!(
            "{}: {}; {}: {}",
            self.first.name(),
            a.detail,
            self.second.name(),
            b.detail
        );
        SinkHealth {
            ready: a.ready && b.ready,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_of_either_fails_and_names_its_sink() {
        let err = |kind| Err(SinkError::new(kind, "boom"));
        assert!(combine(("a", Ok(())), ("b", Ok(()))).is_ok());
        let e = combine(("a", Ok(())), ("b", err(SinkErrorKind::Timeout))).unwrap_err();
        assert_eq!((e.kind(), e.message()), (SinkErrorKind::Timeout, "b: boom"));
        let e = combine(("a", err(SinkErrorKind::Unavailable)), ("b", Ok(()))).unwrap_err();
        assert_eq!(e.message(), "a: boom");
        let e = combine(
            ("a", err(SinkErrorKind::Unavailable)),
            ("b", err(SinkErrorKind::Permanent)),
        )
        .unwrap_err();
        assert_eq!(
            e.kind(),
            SinkErrorKind::Permanent,
            "the one needing a person wins"
        );
        assert_eq!(e.message(), "b: boom; a: boom");
    }
}
