//! Refusal floods are rate-limited in the log: anyone can send bad requests at will, and a log line
//! each would let them fill the disk or the CloudWatch bill. At most [`REFUSALS_PER_SECOND`]
//! refusal lines are written per second; the rest are counted
//! (`stripe_webhook_log_lines_suppressed_total{outcome}`) and the next line written says how many
//! were suppressed before it. Accepted webhooks are never limited.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics as m;

/// Refusal log lines written per second, at most.
pub const REFUSALS_PER_SECOND: u32 = 20;

struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

static WINDOW: Mutex<Option<Window>> = Mutex::new(None);

/// Whether a refusal with this outcome label may be logged now: `Some(n)` with the number of lines
/// suppressed since the last one written, or `None` (suppressed, and counted).
pub fn admit_refusal_log(outcome: &'static str) -> Option<u64> {
    let now = Instant::now();
    let mut guard = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let window = guard.get_or_insert_with(|| Window {
        started: now,
        written: 0,
        suppressed: 0,
    });
    if now.duration_since(window.started) >= Duration::from_secs(1) {
        window.started = now;
        window.written = 0;
    }
    if window.written < REFUSALS_PER_SECOND {
        window.written += 1;
        Some(std::mem::take(&mut window.suppressed))
    } else {
        window.suppressed += 1;
        drop(guard);
        metrics::counter!(m::LOG_LINES_SUPPRESSED_TOTAL, "outcome" => outcome).increment(1);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_limit_and_the_count_is_reported() {
        let admitted: Vec<Option<u64>> = (0..100)
            .map(|_| admit_refusal_log("bad_signature"))
            .collect();
        let written = admitted.iter().filter(|a| a.is_some()).count();
        assert!(
            written <= REFUSALS_PER_SECOND as usize,
            "{written} lines in one second"
        );
        assert!(written >= 1);
        std::thread::sleep(Duration::from_millis(1100));
        let next = admit_refusal_log("bad_signature").expect("a new second writes again");
        assert!(
            next >= 100 - written as u64,
            "suppressed count {next} reported"
        );
    }
}
