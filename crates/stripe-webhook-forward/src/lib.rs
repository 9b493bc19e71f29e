//! Forwarding from the local archive: every record the file sink acknowledged is delivered, at
//! least once, to the team's own HTTP endpoints, with the exact body and a fresh
//! `Stripe-Signature` computed with each destination's secret, so the application verifies it
//! with its Stripe SDK by switching only its secret. docs/forwarding.md is the specification.
//!
//! - [`ForwardArgs`] (flags and `FORWARD_*` variables) → [`ForwardArgs::validate`] →
//!   [`ForwardSettings`].
//! - [`run`]: the forwarders of every destination, until cancelled; inside the server (a
//!   background task beside the file sink) or as `stripe-webhook forward`.
//! - [`redrive`], [`move_cursor`], [`backfill()`], [`status::destination_status`] and
//!   [`dead_letters`]: what the CLI's `forward` subcommands do.
//!
//! The archive is the only input ([`segments`] reads it as docs/archive-layout.md says readers
//! must); each destination's state lives in `$ARCHIVE_DIR/forward/<destination-id>/`: its
//! [`cursor`] (`cursor.json`), its dead-letter list (`dead-letters.ndjson`) and its `lock`.
//!
//! ```
//! use stripe_webhook_forward::{destination_id, forward_dir, glob::TypeFilter};
//!
//! // A destination's id (its state directory's name): the host and a hash of the whole URL, so a
//! // token in the URL never shows in paths, logs or metrics.
//! let id = destination_id("https://app.example.com/hooks/stripe?token=sekrit")?;
//! assert!(id.starts_with("app.example.com-") && !id.contains("sekrit"));
//! let state = forward_dir(std::path::Path::new("/var/lib/archive")).join(&id);
//! assert!(state.starts_with("/var/lib/archive/forward"));
//!
//! // FORWARD_TYPES: globs on the event type.
//! let types = TypeFilter::parse("invoice.*,charge.succeeded")?;
//! assert!(types.matches("invoice.paid") && !types.matches("charge.refunded"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// The README's example, compiled as a doctest so the README cannot drift from the crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod backfill;
mod background;
pub mod cursor;
pub mod dead_letters;
pub mod delivery;
pub mod forwarder;
pub mod glob;
pub mod segments;
pub mod settings;
pub mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backfill::{BackfillReport, backfill};
pub use forwarder::run;
pub use settings::{
    Destination, ForwardArgs, ForwardConfigError, ForwardSettings, Order, Start, destination_id,
};
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_metrics as m;

use crate::cursor::{Cursor, DestinationLock};
use crate::delivery::{Attempt, Sender};
use crate::forwarder::admit;
use crate::glob::TypeFilter;
use crate::segments::{Line, SegmentKey};

/// The directory holding every destination's state: `$ARCHIVE_DIR/forward/`.
pub fn forward_dir(archive_dir: &Path) -> PathBuf {
    archive_dir.join("forward")
}

/// Every destination directory under `$ARCHIVE_DIR/forward/`, sorted.
pub fn destination_dirs(archive_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(forward_dir(archive_dir))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && forwarder::is_destination_dir(p))
        .collect();
    out.sort();
    out
}

/// Registers every counter series of the forwarding metrics at 0 for these destinations, so the
/// first scrape shows them.
pub fn register_zeros(destinations: &[Destination]) {
    for d in destinations {
        for (name, label) in [
            (m::FORWARD_DELIVERIES_TOTAL, "outcome"),
            (m::FORWARD_ATTEMPTS_TOTAL, "result"),
        ] {
            for value in m::known_values(name, label).unwrap_or_default() {
                metrics::counter!(name, "destination" => d.id.clone(), label => *value)
                    .increment(0);
            }
        }
        metrics::gauge!(m::FORWARD_LAG_RECORDS, "destination" => d.id.clone()).set(0.0);
        metrics::gauge!(m::FORWARD_LAG_SECONDS, "destination" => d.id.clone()).set(0.0);
        metrics::gauge!(m::FORWARD_FAILED, "destination" => d.id.clone()).set(0.0);
    }
}

/// What a re-drive did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RedriveReport {
    /// Dead letters delivered (and removed from the list).
    pub delivered: Vec<String>,
    /// Dead letters still not delivered (kept), with the last failure.
    pub failed: Vec<(String, String)>,
}

/// Delivers the dead letters of `dest` (all, or those of event `only`) once more, each with up to
/// `attempts` attempts, and removes those delivered from the list. Works beside a running
/// forwarder: the list is locked only to read it and to rewrite it. The destination's forwarder
/// counts them (`outcome="redriven"`) from the list's re-driven total.
///
/// # Errors
/// The list cannot be read or rewritten, or the HTTP client cannot be built.
pub async fn redrive(
    archive_dir: &Path,
    dest: &Destination,
    timeout: Duration,
    only: Option<&str>,
    attempts: u32,
) -> Result<RedriveReport, String> {
    let dir = forward_dir(archive_dir).join(&dest.id);
    let sender = Sender::new(&dest.url, dest.secret.clone(), timeout)?;
    let letters = dead_letters::list(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let backoff =
        stripe_webhook_backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let mut report = RedriveReport::default();
    let mut delivered = Vec::new();
    for letter in letters {
        let letter = letter?;
        if only.is_some_and(|id| id != letter.letter.id) {
            continue;
        }
        let key: SegmentKey = letter
            .letter
            .segment
            .parse()
            .unwrap_or_else(|_| "year=1970/month=01/day=01/unknown".parse().expect("valid"));
        let bytes = letter.record.get().as_bytes().to_vec();
        let line = Line {
            start: letter.letter.offset,
            end: letter.letter.offset + bytes.len() as u64 + 1,
            bytes,
        };
        let record = match admit(
            &key,
            line,
            ReceivedAt::from_unix_millis(i64::MIN),
            &TypeFilter::default(),
        ) {
            Some(record) if record.body.is_some() => record,
            _ => {
                report.failed.push((
                    letter.letter.id.clone(),
                    "the record holds no body that can be sent".into(),
                ));
                continue;
            }
        };
        let body = record.body.clone().expect("checked");
        let mut last = String::new();
        for attempt in 1..=attempts.max(1) {
            let result = sender
                .post(
                    body.clone(),
                    &record.id,
                    letter.letter.attempts + attempt,
                    record.fetched,
                )
                .await;
            metrics::counter!(m::FORWARD_ATTEMPTS_TOTAL, "destination" => dest.id.clone(), "result" => result.label()).increment(1);
            if let Attempt::Ok(_) = result {
                last.clear();
                break;
            }
            last = result.describe();
            if attempt < attempts {
                let retry_after = match &result {
                    Attempt::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                tokio::time::sleep(backoff.delay_honouring(attempt, retry_after)).await;
            }
        }
        if last.is_empty() {
            tracing::info!(destination = %dest.id, event = %record.id, "dead letter re-driven: delivered");
            report.delivered.push(record.id.clone());
            delivered.push((
                letter.letter.id.clone(),
                letter.letter.dead_lettered_at.clone(),
            ));
        } else {
            tracing::warn!(destination = %dest.id, event = %record.id, error = %last, "dead letter re-driven: still not delivered (kept)");
            report.failed.push((record.id.clone(), last));
        }
    }
    if !delivered.is_empty() {
        dead_letters::remove(&dir, &delivered).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(report)
}

/// Moves the cursor of destination `id` to `to`: it forwards every record archived from then on
/// (earlier: a backfill, delivering again what it already delivered since; later: skipping what
/// lies between). Refuses while a running forwarder holds the destination's lock.
///
/// # Errors
/// The lock is held (naming the holder), or the cursor cannot be written.
pub fn move_cursor(archive_dir: &Path, id: &str, to: ReceivedAt) -> Result<Cursor, String> {
    let dir = forward_dir(archive_dir).join(id);
    if !dir.is_dir() {
        return Err(format!(
            "no destination {id} under {} (see `stripe-webhook forward status`)",
            forward_dir(archive_dir).display()
        ));
    }
    let Some(_lock) = DestinationLock::try_take(&dir, "stripe-webhook forward cursor")
        .map_err(|e| format!("{}: {e}", dir.display()))?
    else {
        return Err(format!(
            "a running forwarder holds destination {id} ({}): stop it first (restart the server \
             with FORWARD_IN_SERVER=false, or stop the `stripe-webhook forward` process), then \
             move the cursor and start the forwarder again",
            DestinationLock::holder(&dir).unwrap_or_else(|| "holder unknown".into())
        ));
    };
    let cursor = Cursor::starting_at(to);
    cursor
        .store(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(cursor)
}
