//! An in-memory sink for tests and embedding.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Record, RecordSink, SinkError, SinkErrorKind, SinkHealth};

/// Keeps records in memory, up to a capacity; inspectable, with failure injection.
///
/// Not durable: a `put` is "durable" once the record is in the vector. When `capacity` records are
/// held, `put` fails with [`SinkErrorKind::Overloaded`] (use [`MemorySink::take`] to make room).
/// After [`RecordSink::shutdown`], `put` fails with [`SinkErrorKind::ShuttingDown`].
#[derive(Debug)]
pub struct MemorySink {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Record>,
    fail_next: VecDeque<SinkErrorKind>,
    failure: Option<SinkErrorKind>,
    shut_down: bool,
}

impl MemorySink {
    /// An empty sink that holds at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The capacity in records.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Copies of the stored records, in the order they were accepted.
    pub fn records(&self) -> Vec<Record> {
        self.state().records.clone()
    }

    /// The stored lines (each ending in `\n`), in order.
    pub fn lines(&self) -> Vec<Bytes> {
        self.state()
            .records
            .iter()
            .map(|r| r.line().clone())
            .collect()
    }

    /// How many records are stored.
    pub fn len(&self) -> usize {
        self.state().records.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the stored records, making room.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut self.state().records)
    }

    /// Makes the next `put` (one call, after any failures queued before) fail with `kind`.
    pub fn fail_next(&self, kind: SinkErrorKind) {
        self.state().fail_next.push_back(kind);
    }

    /// Makes every `put` and `healthcheck` fail with `kind` until called with `None` (an outage).
    pub fn set_failure(&self, kind: Option<SinkErrorKind>) {
        self.state().failure = kind;
    }
}

fn injected(kind: SinkErrorKind) -> SinkError {
    SinkError::new(kind, "memory sink: injected failure")
}

#[async_trait]
impl RecordSink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let state = self.state();
        if state.shut_down {
            return Err(SinkError::new(
                SinkErrorKind::ShuttingDown,
                "memory sink is shut down",
            ));
        }
        state.failure.map_or(Ok(()), |kind| Err(injected(kind)))
    }

    async fn put(&self, record: Record) -> Result<(), SinkError> {
        let mut state = self.state();
        if state.shut_down {
            return Err(SinkError::new(
                SinkErrorKind::ShuttingDown,
                "memory sink is shut down",
            ));
        }
        if let Some(kind) = state.fail_next.pop_front().or(state.failure) {
            return Err(injected(kind));
        }
        if state.records.len() >= self.capacity {
            return Err(SinkError::new(
                SinkErrorKind::Overloaded,
                format!("memory sink is full ({} records)", self.capacity),
            ));
        }
        state.records.push(record);
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Never: the records live in this process only.
    fn is_durable(&self) -> bool {
        false
    }

    /// Not ready when shut down, during an injected outage ([`MemorySink::set_failure`]) or when
    /// full.
    fn health(&self) -> SinkHealth {
        let state = self.state();
        if state.shut_down {
            SinkHealth::not_ready("memory sink is shut down")
        } else if let Some(kind) = state.failure {
            SinkHealth::not_ready(format!("memory sink: injected {kind} outage"))
        } else if state.records.len() >= self.capacity {
            SinkHealth::not_ready(format!("memory sink is full ({} records)", self.capacity))
        } else {
            SinkHealth::ready()
        }
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        self.state().shut_down = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};

    fn record(id: &str) -> Record {
        let body = format!(r#"{{"id":"{id}","type":"x.y","object":"event","data":{{}}}}"#);
        encode(
            Bytes::from(body),
            "t=1,v1=00",
            ReceivedAt::from_unix_millis(1_795_731_281_123),
            &EnvelopeOptions::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn bounded_in_order_and_inspectable() {
        let sink = MemorySink::new(2);
        sink.put(record("evt_1")).await.unwrap();
        sink.put(record("evt_2")).await.unwrap();
        let full = sink.put(record("evt_3")).await.unwrap_err();
        assert_eq!(full.kind(), SinkErrorKind::Overloaded);
        assert!(!sink.health().ready, "a full sink is not ready");
        assert_eq!(sink.len(), 2);
        let ids: Vec<String> = sink.records().iter().map(|r| r.id().to_owned()).collect();
        assert_eq!(ids, ["evt_1", "evt_2"]);
        assert_eq!(sink.lines()[1], record("evt_2").line());
        assert_eq!(sink.take().len(), 2);
        assert!(sink.is_empty());
        sink.put(record("evt_3")).await.unwrap();
    }

    #[tokio::test]
    async fn injected_failures() {
        let sink = MemorySink::new(10);
        sink.fail_next(SinkErrorKind::Timeout);
        sink.fail_next(SinkErrorKind::Permanent);
        assert_eq!(
            sink.put(record("a")).await.unwrap_err().kind(),
            SinkErrorKind::Timeout
        );
        assert_eq!(
            sink.put(record("a")).await.unwrap_err().kind(),
            SinkErrorKind::Permanent
        );
        sink.put(record("a")).await.unwrap();

        sink.set_failure(Some(SinkErrorKind::Unavailable));
        for _ in 0..2 {
            assert_eq!(
                sink.put(record("b")).await.unwrap_err().kind(),
                SinkErrorKind::Unavailable
            );
        }
        assert!(sink.healthcheck().await.is_err());
        assert!(!sink.health().ready, "an outage is not ready");
        sink.set_failure(None);
        sink.healthcheck().await.unwrap();
        assert!(sink.health().ready);
        sink.put(record("b")).await.unwrap();
        assert_eq!(sink.len(), 2);
    }

    #[tokio::test]
    async fn refuses_puts_after_shutdown() {
        let sink = MemorySink::new(10);
        sink.put(record("a")).await.unwrap();
        sink.shutdown().await.unwrap();
        let err = sink.put(record("b")).await.unwrap_err();
        assert_eq!(err.kind(), SinkErrorKind::ShuttingDown);
        assert_eq!(sink.len(), 1, "records stay inspectable after shutdown");
        assert!(!sink.health().ready);
        sink.flush().await.unwrap();
    }
}
