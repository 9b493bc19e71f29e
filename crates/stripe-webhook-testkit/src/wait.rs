//! Waiting for a state a test needs (a file written, a count reached, a request recorded), polled
//! with a deadline, instead of sleeping for a time that is usually long enough.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! let due = Instant::now() + Duration::from_millis(30);
//! stripe_webhook_testkit::wait::until("the deadline passed", Duration::from_secs(5), || {
//!     Instant::now() >= due
//! });
//! ```

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(10);

/// Checks `check` every 10 ms until it holds.
///
/// # Panics
/// If it does not hold within `within`, saying it was waiting until `what`.
pub fn until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < within,
            "waited {within:?} in vain until {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// [`until`] in async code: the runtime's other tasks (a current-thread runtime's too) run while
/// it waits.
///
/// # Panics
/// See [`until`].
pub async fn until_async(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < within,
            "waited {within:?} in vain until {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
