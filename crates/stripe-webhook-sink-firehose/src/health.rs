//! Cached health: what `/health` reports without ever calling AWS.

use std::sync::Mutex;

/// The sink's readiness: the start-up `DescribeDeliveryStream` check, then the outcome of the last
/// `PutRecordBatch` call (a call that failed as a whole, for any reason, marks it not ready; the next
/// call Firehose answers marks it ready again — per-record failures inside an answered call are
/// normal throttling and are retried).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirehoseHealth {
    /// The start-up check passed and the last call, if any, was answered.
    pub ready: bool,
    /// The delivery stream's ARN, once the start-up check found it.
    pub stream_arn: Option<String>,
    /// A one-line operator-facing description (`not checked yet`, `ACTIVE`, the last call's failure).
    /// It may carry AWS error text (account ids, ARNs): for logs, never for the public.
    pub detail: String,
}

#[derive(Debug)]
pub(crate) struct HealthCell {
    state: Mutex<FirehoseHealth>,
}

impl HealthCell {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(FirehoseHealth {
                ready: false,
                stream_arn: None,
                detail: "not checked yet".to_owned(),
            }),
        }
    }

    fn with(&self, f: impl FnOnce(&mut FirehoseHealth)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn get(&self) -> FirehoseHealth {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn checked_ok(&self, arn: &str) {
        self.with(|h| {
            h.ready = true;
            h.stream_arn = Some(arn.to_owned());
            h.detail = "ACTIVE".to_owned();
        });
    }

    pub(crate) fn check_failed(&self, message: &str) {
        self.with(|h| {
            h.ready = false;
            h.detail = message.to_owned();
        });
    }

    pub(crate) fn call_failed(&self, message: &str) {
        self.with(|h| {
            if h.ready {
                tracing::warn!(
                    error = message,
                    "Firehose sink not ready: the last PutRecordBatch call failed"
                );
            }
            h.ready = false;
            h.detail = message.to_owned();
        });
    }

    /// An answered call means the stream exists and takes records: ready (again), also when the
    /// start-up check could not confirm it (throttled at a burst of cold starts).
    pub(crate) fn call_succeeded(&self) {
        self.with(|h| {
            if !h.ready {
                tracing::info!("Firehose answers again: the sink is ready");
                h.ready = true;
                h.detail = "ACTIVE".to_owned();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let c = HealthCell::new();
        assert!(!c.get().ready, "not checked yet");
        c.call_succeeded();
        assert!(c.get().ready, "an answered call proves the stream");
        c.call_failed("ServiceUnavailableException");
        assert!(!c.get().ready);
        c.checked_ok("arn:x");
        assert!(c.get().ready);
        c.call_failed("ResourceNotFoundException");
        assert_eq!(c.get().detail, "ResourceNotFoundException");
        assert!(!c.get().ready);
        c.call_succeeded();
        assert!(c.get().ready);
        assert_eq!(c.get().stream_arn.as_deref(), Some("arn:x"));
    }
}
