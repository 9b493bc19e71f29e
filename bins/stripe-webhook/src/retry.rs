//! Retrying HTTP requests, as `replay` and `reconcile` both do: the workspace's backoff
//! ([`Backoff`]: exponential from 250 ms to 30 s, full jitter), never shorter than what the
//! server's `Retry-After` asks for, and never longer than [`MAX_RETRY_AFTER`]; and Ctrl-C, a
//! [`CancellationToken`] that stops every wait at once.

use std::time::Duration;

use stripe_webhook_backoff::Backoff;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The longest `Retry-After` a retry waits; a server asking for more is answered as final.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The backoff between two attempts: up to 250 ms before the first retry, doubling for each
/// further retry up to 30 s (without `Retry-After`).
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

/// What to do after an attempt that may succeed if tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait this long, then try again.
    Wait(Duration),
    /// No retry left: the last answer is final.
    GiveUp,
    /// The server asked for a longer wait than [`MAX_RETRY_AFTER`]: the last answer is final.
    TooLong(Duration),
}

/// The retries of one request: at most `limit` after the first attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retries {
    limit: u32,
    used: u32,
}

impl Retries {
    /// At most `limit` retries.
    pub(crate) fn new(limit: u32) -> Retries {
        Retries { limit, used: 0 }
    }

    /// After an attempt that may succeed later, whose answer asked for `retry_after` (if any).
    pub(crate) fn next(&mut self, retry_after: Option<Duration>) -> Next {
        if let Some(wait) = retry_after
            && wait > MAX_RETRY_AFTER
        {
            return Next::TooLong(wait);
        }
        if self.used >= self.limit {
            return Next::GiveUp;
        }
        self.used += 1;
        Next::Wait(BACKOFF.delay_honouring(self.used, retry_after))
    }
}

/// A token that the first Ctrl-C cancels (with `notice` on stderr); a second Ctrl-C exits at once
/// with code 130.
pub(crate) fn on_ctrl_c(handle: &Handle, notice: &'static str) -> CancellationToken {
    let interrupt = CancellationToken::new();
    let cancel = interrupt.clone();
    handle.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
            eprintln!("interrupted: {notice} (Ctrl-C again to abort)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    interrupt
}

/// Sleeps for `wait`, or less if `interrupt` is cancelled: `false` when it is.
pub(crate) async fn sleep(interrupt: &CancellationToken, wait: Duration) -> bool {
    interrupt
        .run_until_cancelled(tokio::time::sleep(wait))
        .await
        .is_some()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn retries_back_off_with_full_jitter_and_honour_retry_after() {
        let ms = Duration::from_millis;
        // Full jitter: anywhere from zero to 250 ms, 500 ms, 1 s, … capped at 30 s.
        assert_eq!(BACKOFF.ceiling(1), ms(250));
        assert_eq!(BACKOFF.ceiling(3), ms(1000));
        assert_eq!(BACKOFF.ceiling(9), Duration::from_secs(30));
        assert_eq!(BACKOFF.ceiling(40), Duration::from_secs(30));
        let mut r = Retries::new(40);
        let waits: Vec<Duration> = (1..=40)
            .map(|_| match r.next(None) {
                Next::Wait(wait) => wait,
                other => panic!("a retry is left: {other:?}"),
            })
            .collect();
        for (n, wait) in (1..).zip(&waits) {
            assert!(*wait <= BACKOFF.ceiling(n), "retry {n} waited {wait:?}");
        }
        let late: HashSet<Duration> = waits[10..].iter().copied().collect();
        assert!(late.len() > 1, "jitter varies the wait: {late:?}");
        // Retry-After is a floor, whatever the jitter drew.
        let mut r = Retries::new(20);
        for _ in 0..20 {
            assert_eq!(r.next(Some(ms(40_000))), Next::Wait(ms(40_000)));
        }
    }

    #[test]
    fn retries_are_counted_and_a_long_retry_after_is_final() {
        let mut r = Retries::new(2);
        assert!(matches!(r.next(None), Next::Wait(d) if d <= Duration::from_millis(250)));
        assert_eq!(
            r.next(Some(Duration::from_secs(400))),
            Next::TooLong(Duration::from_secs(400))
        );
        assert!(
            matches!(r.next(Some(Duration::from_secs(3))), Next::Wait(d) if d == Duration::from_secs(3))
        );
        assert_eq!(r.next(None), Next::GiveUp);
        assert_eq!(Retries::new(0).next(None), Next::GiveUp);
    }

    #[test]
    fn an_interrupt_ends_a_sleep() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let interrupt = CancellationToken::new();
        runtime.block_on(async {
            assert!(sleep(&interrupt, Duration::from_millis(1)).await);
            let trigger = interrupt.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                trigger.cancel();
            });
            let started = std::time::Instant::now();
            assert!(!sleep(&interrupt, Duration::from_secs(60)).await);
            assert!(started.elapsed() < Duration::from_secs(10));
            assert!(
                !sleep(&interrupt, Duration::from_secs(60)).await,
                "stays set"
            );
            interrupt.cancelled().await;
        });
    }
}
