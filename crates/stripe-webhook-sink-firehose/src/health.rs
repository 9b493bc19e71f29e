//! Cached health: what `/health` reports without ever calling AWS.

use std::sync::Mutex;

/// The sink's last known state: the start-up `DescribeDeliveryStream` check, then updated by call
/// outcomes (a permanent call failure marks it unhealthy, the next successful call healthy again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirehoseHealth {
    /// The start-up check passed and no permanent failure has been seen since.
    pub healthy: bool,
    /// The delivery stream's ARN, once the start-up check found it.
    pub stream_arn: Option<String>,
    /// A one-line operator-facing description (`not checked yet`, `ACTIVE`, the last permanent error).
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
                healthy: false,
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
            h.healthy = true;
            h.stream_arn = Some(arn.to_owned());
            h.detail = "ACTIVE".to_owned();
        });
    }

    pub(crate) fn check_failed(&self, message: &str) {
        self.with(|h| {
            h.healthy = false;
            h.detail = message.to_owned();
        });
    }

    pub(crate) fn call_failed(&self, message: &str) {
        self.check_failed(message);
    }

    /// A successful call after a permanent failure means the stream works again. Before the start-up
    /// check has run, a success is not taken as health.
    pub(crate) fn call_succeeded(&self) {
        self.with(|h| {
            if !h.healthy && h.stream_arn.is_some() {
                h.healthy = true;
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
        c.call_succeeded();
        assert!(!c.get().healthy, "a call is not a start-up check");
        c.checked_ok("arn:x");
        assert!(c.get().healthy);
        c.call_failed("ResourceNotFoundException");
        assert_eq!(c.get().detail, "ResourceNotFoundException");
        assert!(!c.get().healthy);
        c.call_succeeded();
        assert!(c.get().healthy);
        assert_eq!(c.get().stream_arn.as_deref(), Some("arn:x"));
    }
}
