//! An in-memory sink for tests and embedding.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Record, RecordSink, SinkError, SinkErrorKind};

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

    async fn shutdown(&self) -> Result<(), SinkError> {
        self.state().shut_down = true;
        Ok(())
    }
}
