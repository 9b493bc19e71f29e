//! AIMD send-rate control: throttling halves the calls in flight, then spaces calls out; successes
//! win the rate back additively.
//!
//! Firehose signals throttling with `ServiceUnavailableException` (whole call or per record). The SDK
//! classifies that as transient, not throttling, so its adaptive mode would not slow down: the sink
//! keeps its own controller instead (and disables SDK retries, see the crate docs).

use std::time::Duration;

use tokio::time::Instant;

/// The controller's state; owned by the sink under a mutex.
#[derive(Debug)]
pub(crate) struct Aimd {
    /// Allowed calls in flight, `1.0..=max`; the integer part is used.
    limit: f64,
    max: f64,
    /// Minimum gap between call starts once `limit` is down to one (zero when not throttled).
    interval: Duration,
    base: Duration,
    max_interval: Duration,
    /// One decrease per window: a burst of throttled answers to calls sent together counts once.
    last_decrease: Option<Instant>,
}

impl Aimd {
    pub(crate) fn new(max_in_flight: usize, base: Duration, max_interval: Duration) -> Self {
        Self {
            limit: max_in_flight as f64,
            max: max_in_flight as f64,
            interval: Duration::ZERO,
            base: base.max(Duration::from_millis(1)),
            max_interval,
            last_decrease: None,
        }
    }

    /// Calls allowed in flight now.
    pub(crate) fn limit(&self) -> usize {
        // `limit` is kept within 1..=max, so the cast cannot truncate meaningfully.
        (self.limit.floor() as usize).max(1)
    }

    /// Gap required between call starts now.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Multiplicative decrease: halve the calls in flight; at one call, double the gap between calls.
    pub(crate) fn on_throttle(&mut self, now: Instant) {
        if let Some(last) = self.last_decrease
            && now.duration_since(last) < self.base
        {
            return;
        }
        self.last_decrease = Some(now);
        if self.limit >= 2.0 {
            self.limit = (self.limit / 2.0).floor().max(1.0);
        } else {
            self.limit = 1.0;
            self.interval = (self.interval * 2).clamp(self.base, self.max_interval);
        }
    }

    /// Additive increase, after a call whose records all succeeded: first shrink the gap, then add
    /// one call in flight per `limit` successful calls.
    pub(crate) fn on_success(&mut self) {
        if !self.interval.is_zero() {
            self.interval /= 2;
            if self.interval < self.base {
                self.interval = Duration::ZERO;
            }
        } else {
            self.limit = (self.limit + 1.0 / self.limit).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decreases_multiplicatively_then_spaces_calls_and_recovers() {
        let base = Duration::from_millis(10);
        let mut a = Aimd::new(4, base, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!((a.limit(), a.interval()), (4, Duration::ZERO));
        a.on_throttle(t0);
        assert_eq!(a.limit(), 2);
        // A second throttle inside the window counts once.
        a.on_throttle(t0 + Duration::from_millis(1));
        assert_eq!(a.limit(), 2);
        a.on_throttle(t0 + base);
        assert_eq!(a.limit(), 1);
        a.on_throttle(t0 + base * 2);
        assert_eq!(a.interval(), base);
        a.on_throttle(t0 + base * 3);
        assert_eq!(a.interval(), base * 2);
        for i in 4..20 {
            a.on_throttle(t0 + base * i);
        }
        assert_eq!(a.interval(), Duration::from_secs(1), "capped");
        let mut successes = 0;
        while a.limit() < 4 || !a.interval().is_zero() {
            a.on_success();
            successes += 1;
            assert!(successes < 100, "recovers");
        }
        assert_eq!(a.limit(), 4);
        a.on_success();
        assert_eq!(a.limit(), 4, "never above the maximum");
    }
}
