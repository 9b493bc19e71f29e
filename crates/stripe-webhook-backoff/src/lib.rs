//! The one retry backoff of the workspace: every retry loop (the Firehose sink's resends, the
//! sinks' start-up checks, the CLI's HTTP requests, forwarding) waits through [`Backoff`].
//!
//! The wait before retry `n` (1 for the first retry) is drawn uniformly from zero to
//! `min(max, first × 2^(n−1))` ("full jitter": clients that failed together do not retry
//! together), and is never shorter than what the server asked for with `Retry-After`.
//!
//! Written here rather than taken from a crate: the rule is three lines, and the maintained
//! crates (`backon`, `backoff`) add their own jitter rules (`backon` adds jitter on top of the
//! delay instead of drawing below it) and their own retry loops, which the callers do not use:
//! each caller has its own stop condition (a deadline, a count, a maximum age).
//!
//! ```
//! use std::time::Duration;
//! use stripe_webhook_backoff::Backoff;
//!
//! let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
//! // The ceiling doubles from the first retry and stops at the maximum.
//! assert_eq!(backoff.ceiling(1), Duration::from_millis(250));
//! assert_eq!(backoff.ceiling(3), Duration::from_secs(1));
//! assert_eq!(backoff.ceiling(20), Duration::from_secs(30));
//! // A wait is drawn below the ceiling, and Retry-After is a floor.
//! assert!(backoff.delay(3) <= Duration::from_secs(1));
//! assert_eq!(backoff.delay_honouring(1, Some(Duration::from_secs(5))), Duration::from_secs(5));
//! ```

use std::time::{Duration, SystemTime};

/// An exponential backoff with full jitter: see the [crate] documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff whose first retry waits up to `first`, doubling for each further retry up to
    /// `max` (`max` below `first` caps every wait at `max`).
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The longest wait before retry `attempt` (1 for the first retry; 0 is taken as 1):
    /// `min(max, first × 2^(attempt−1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// A wait before retry `attempt`, drawn uniformly from zero to [`Backoff::ceiling`].
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, rand::random::<f64>())
    }

    /// The wait before retry `attempt` for a given draw `unit` in `[0, 1]` (clamped): `unit ×`
    /// [`Backoff::ceiling`]. [`Backoff::delay`] draws `unit` at random; tests pass their own.
    pub fn delay_at(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// [`Backoff::delay`], but never shorter than `retry_after` (what the server asked for).
    pub fn delay_honouring(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(attempt)
            .max(retry_after.unwrap_or(Duration::ZERO))
    }
}

/// What a `Retry-After` header value asks for (RFC 9110): delay-seconds, or an HTTP-date (zero once
/// it is past, relative to `now`). `None` for anything else, which callers treat as absent. One
/// parser for every client of the workspace (the CLI's requests, forwarding).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_ceiling_doubles_from_the_first_retry_and_stops_at_the_maximum() {
        let b = Backoff::new(MS(100), MS(1_000));
        assert_eq!(b.ceiling(0), MS(100));
        assert_eq!(b.ceiling(1), MS(100));
        assert_eq!(b.ceiling(2), MS(200));
        assert_eq!(b.ceiling(4), MS(800));
        assert_eq!(b.ceiling(5), MS(1_000));
        assert_eq!(b.ceiling(u32::MAX), MS(1_000), "no overflow");
        assert_eq!(Backoff::new(MS(500), MS(100)).ceiling(1), MS(100));
    }

    #[test]
    fn a_wait_is_drawn_from_zero_to_the_ceiling() {
        let b = Backoff::new(MS(100), MS(1_000));
        assert_eq!(b.delay_at(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay_at(3, 0.5), MS(200));
        assert_eq!(b.delay_at(3, 1.0), MS(400));
        assert_eq!(b.delay_at(3, 7.0), MS(400), "clamped");
        let draws: Vec<Duration> = (0..64).map(|_| b.delay(3)).collect();
        assert!(draws.iter().all(|d| *d <= MS(400)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]), "the draws vary");
    }

    #[test]
    fn retry_after_is_a_floor() {
        let b = Backoff::new(MS(100), MS(1_000));
        for _ in 0..16 {
            assert_eq!(b.delay_honouring(1, Some(MS(5_000))), MS(5_000));
            assert!(b.delay_honouring(1, None) <= MS(100));
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
        for bad in ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    proptest::proptest! {
        /// Whatever a server sends, the parser answers (no panic); delay-seconds are taken as
        /// given, and an HTTP-date in the future is the whole seconds until it.
        #[test]
        fn any_retry_after_value_is_parsed_or_refused(
            text in ".{0,40}",
            secs in proptest::prelude::any::<u64>(),
            ahead in 0u64..10_000_000,
        ) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let _ = parse_retry_after(&text, now);
            proptest::prop_assert_eq!(
                parse_retry_after(&secs.to_string(), now),
                Some(Duration::from_secs(secs))
            );
            let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
            proptest::prop_assert_eq!(
                parse_retry_after(&date, now),
                Some(Duration::from_secs(ahead))
            );
        }
    }
}
