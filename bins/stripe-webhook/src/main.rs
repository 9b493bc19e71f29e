//! `stripe-webhook`: operator tools for the Stripe webhook archive.
//!
//! - `trigger <event>` signs a bundled, realistic Stripe event with a fresh id and timestamp and
//!   posts it to a running server, so the whole path (verify, archive, 200) can be seen without a
//!   Stripe account. `events` lists the bundled events.
//! - `cat`, `stats`, `verify` and `replay` read an archive (a local directory written by the file
//!   sink, or an S3 prefix written by Firehose; gzip or plain; oversize pointers resolved through
//!   S3) and stream it: `cat` prints the selected records as stored (NDJSON), `stats` counts them
//!   by day and type, `verify` proves every record (its exact body against its stored signature,
//!   its envelope fields against the body), and `replay` re-sends the exact bodies of the records
//!   that verify with the archive's secret, re-signed, to an `http://` or `https://` target.
//! - `reconcile` lists the events Stripe's API has (the last 30 days) and reports every one the
//!   archive lacks; with `--archive-missing` it fetches them and archives them as fetched
//!   records (envelope v2: no Stripe signature, their provenance explicit).
//! - `restore` requests restores of an S3 archive's objects in Glacier Flexible Retrieval or Deep
//!   Archive for a range of days; the readers name every object that needs one.
//! - `forward` forwards every archived event of a local archive to the `FORWARD_URL` destinations
//!   (a separate process beside the server), and shows and manages forwarding: `status`,
//!   `dead-letters` (list, `--redrive`), `cursor`, `backfill` of a time range (docs/forwarding.md).
//!
//! ```text
//! stripe-webhook cat ./archive --type 'invoice.*' --from 2026-11-01 | jq .id
//! stripe-webhook stats s3://my-archive/webhooks/ --from 2026-11-01 --to 2026-11-30
//! stripe-webhook verify s3://my-archive/webhooks/ --secret-file archive.secrets
//! stripe-webhook replay ./archive --id evt_1,evt_2 --source-secret-file archive.secrets \
//!     --url https://hooks.example.com/stripe --secret-file target.secret --checkpoint replay.ids
//! STRIPE_API_KEY=rk_live_… stripe-webhook reconcile s3://my-archive/webhooks/ \
//!     --since 2026-11-25 --until 2026-11-26 --checkpoint reconcile.ck
//! ```
//!
//! Exit codes: 0 all good; 1 the command ran but found problems (verification failures,
//! refused or failed deliveries, unreadable lines, events missing from the archive); 2 usage or
//! configuration errors (an API key Stripe rejects included), or an archive that cannot be read
//! at all; 130 interrupted (Ctrl-C); 141 stdout closed by its reader (`| head`).

mod events {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

mod append_log;
mod archive;
mod check;
mod client;
mod filter;
mod forward;
mod inspect;
mod reconcile;
mod replay;
mod restore;
mod retry;
mod secrets;
mod select;
mod stripe;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use rand::Rng;
use stripe_webhook_verify::{Secret, parse_secrets_named, signature_header};

use crate::archive::{Archive, ArchiveError};

/// Operator tools for the Stripe webhook archive.
#[derive(Parser, Debug)]
#[command(name = "stripe-webhook", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sign a bundled sample event with a fresh id and timestamp and POST it to the server (a
    /// development tool: its target and secret default to the server's variables).
    Trigger {
        /// The event to send (see `stripe-webhook events`), e.g. `charge.succeeded`.
        event: String,
        /// Where to send it, `http://` or `https://`.
        #[arg(
            long,
            env = "STRIPE_WEBHOOK_URL",
            default_value = "http://127.0.0.1:3001/webhook/stripe"
        )]
        url: String,
        /// Signing secret(s), comma-separated; the first signs. Defaults to the server's variable.
        #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// Trust only the CA certificate(s) in this PEM file for an https:// URL (a private CA).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Print the signed body and header instead of sending them.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the bundled sample events.
    Events,
    /// Print the selected archived records exactly as stored, one per line (NDJSON, for `jq`).
    Cat(inspect::CatArgs),
    /// Count the selected records by day and type, with duplicates by id.
    Stats(inspect::StatsArgs),
    /// Prove every selected record: its exact body against its stored signature (tolerance
    /// disabled), its envelope fields against the body. Exit code 1 if any record fails.
    Verify(verify::VerifyArgs),
    /// Re-send the exact bodies of the selected records that verify with the archive's secret to
    /// an http:// or https:// target, re-signed with its secret and a fresh timestamp.
    Replay(replay::ReplayArgs),
    /// List the events Stripe has (its last 30 days) and report every one the archive lacks
    /// (MISSING lines on stdout, exit code 1); --archive-missing fetches and archives them.
    Reconcile(reconcile::ReconcileArgs),
    /// Request restores of an S3 archive's objects in Glacier Flexible Retrieval or Deep Archive
    /// for a range of days (records and the oversize bodies they point to), so the other
    /// commands can read them once the restores complete.
    Restore(restore::RestoreArgs),
    /// Forward every archived event to the FORWARD_URL destinations (a separate process reading
    /// the local archive), or show and manage forwarding: `status`, `dead-letters`, `cursor`,
    /// `backfill`.
    Forward(forward::ForwardCmd),
}

/// How a command ended, when it ran to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing to report (exit code 0).
    Clean,
    /// Ran, but found problems it reported (exit code 1).
    Problems,
    /// Stopped early by Ctrl-C (exit code 130).
    Interrupted,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        match outcome {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::Problems => ExitCode::from(1),
            Outcome::Interrupted => ExitCode::from(130),
        }
    }
}

/// Why a command could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Something failed while running.
    #[error("{0}")]
    Runtime(String),
    /// The archive cannot be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// The exit code of a command whose stdout was closed under it (`verify … | head`): what a shell
/// reports for a process ended by SIGPIPE, which Rust programs ignore.
const CLOSED_STDOUT_EXIT: i32 = 141;

/// Ends the process quietly with [`CLOSED_STDOUT_EXIT`] when a `println!` finds stdout closed by
/// its reader, instead of a panic message: the reader went away, nothing failed. Every other
/// panic is reported as before.
fn exit_quietly_when_stdout_closes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(CLOSED_STDOUT_EXIT);
        }
        report(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_when_stdout_closes();
    // A `.env` file in the working directory fills in settings the environment does not have.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("stripe-webhook: a .env file exists but could not be read ({e}); ignored");
    }
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Events => {
            for (name, _) in events::EVENTS {
                println!("{name}");
            }
            return ExitCode::SUCCESS;
        }
        Command::Trigger {
            event,
            url,
            secret,
            ca_file,
            dry_run,
        } => (
            "trigger",
            trigger(&event, &url, &secret, ca_file.as_deref(), dry_run),
        ),
        Command::Cat(args) => ("cat", with_archive("cat", |a, _| inspect::cat(a, &args))),
        Command::Stats(args) => (
            "stats",
            with_archive("stats", |a, _| inspect::stats(a, &args)),
        ),
        Command::Verify(args) => (
            "verify",
            with_archive("verify", |a, _| verify::verify(a, &args)),
        ),
        Command::Replay(args) => (
            "replay",
            with_archive("replay", |a, handle| replay::replay(a, handle, &args)),
        ),
        Command::Reconcile(args) => (
            "reconcile",
            with_archive("reconcile", |a, handle| {
                reconcile::reconcile(a, handle, &args)
            }),
        ),
        Command::Restore(args) => (
            "restore",
            with_archive("restore", |a, _| restore::restore(a, &args)),
        ),
        Command::Forward(args) => ("forward", forward::forward(args)),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(failure) => {
            eprintln!("stripe-webhook {name}: {failure}");
            ExitCode::from(2)
        }
    }
}

/// Runs an archive command on this (non-runtime) thread, with a runtime for S3 and HTTP.
fn with_archive(
    what: &str,
    command: impl FnOnce(&Archive, &tokio::runtime::Handle) -> Result<Outcome, Failure>,
) -> Result<Outcome, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("starting the runtime: {e}")))?;
    let archive = Archive::new(runtime.handle().clone(), archive::progress_bar(what));
    let outcome = command(&archive, runtime.handle());
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

/// The bundled body for `name`, with its top-level event id replaced by a fresh one (the rest of
/// the text, whitespace included, is kept as Stripe wrote it).
fn fresh_event(name: &str) -> Result<String, String> {
    let (_, body) = events::EVENTS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| {
            let names: Vec<&str> = events::EVENTS.iter().map(|(n, _)| *n).collect();
            format!("no bundled event {name:?}; bundled: {}", names.join(", "))
        })?;
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("bundled event {name} is not JSON: {e}"))?;
    let old_id = value
        .get("id")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("bundled event {name} has no id"))?;
    let prefix = old_id.split('_').next().unwrap_or("evt");
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let new_id = format!("{prefix}_{suffix}");
    Ok(body.replacen(&format!("\"{old_id}\""), &format!("\"{new_id}\""), 1))
}

/// How long `trigger` waits for the target's whole answer.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(30);

fn trigger(
    event: &str,
    url: &str,
    secret: &str,
    ca_file: Option<&std::path::Path>,
    dry_run: bool,
) -> Result<Outcome, Failure> {
    let secrets: Vec<Secret> = parse_secrets_named("--secret (or STRIPE_WEBHOOK_SECRET)", secret)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let body = fresh_event(event).map_err(Failure::Usage)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Failure::Runtime(e.to_string()))?
        .as_secs();
    let timestamp = i64::try_from(now).map_err(|e| Failure::Runtime(e.to_string()))?;
    let header = signature_header(&[&secrets[0]], timestamp, body.as_bytes());
    if dry_run {
        println!("Stripe-Signature: {header}\n\n{body}");
        return Ok(Outcome::Clean);
    }
    let target = client::Target::parse(url).map_err(Failure::Usage)?;
    let tls = client::Tls::for_target(&target, ca_file, "--url").map_err(Failure::Usage)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let _runtime = runtime.enter();
    let client = client::Client::new(target, tls, "stripe-webhook-trigger", TRIGGER_TIMEOUT)
        .map_err(Failure::Runtime)?;
    let response = runtime
        .block_on(client.post(&header, Bytes::from(body)))
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    println!("{} {}", response.status, response.text());
    Ok(if (200..300).contains(&response.status) {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_the_events_the_readme_promises() {
        for name in [
            "charge.succeeded",
            "payment_intent.succeeded",
            "invoice.paid",
            "customer.subscription.updated",
            "checkout.session.completed",
            "v1.billing.meter.error_report_triggered",
        ] {
            assert!(
                events::EVENTS.iter().any(|(n, _)| *n == name),
                "missing bundled event {name}"
            );
        }
    }

    #[test]
    fn fresh_event_changes_only_the_id() {
        for (name, original) in events::EVENTS {
            let fresh = fresh_event(name).expect("fresh");
            let mut a: serde_json::Value = serde_json::from_str(original).expect("json");
            let mut b: serde_json::Value = serde_json::from_str(&fresh).expect("json");
            assert_ne!(a["id"], b["id"], "{name}: id not replaced");
            assert_eq!(
                a["id"].as_str().and_then(|s| s.split('_').next()),
                b["id"].as_str().and_then(|s| s.split('_').next()),
                "{name}: id prefix changed"
            );
            a["id"] = serde_json::Value::Null;
            b["id"] = serde_json::Value::Null;
            assert_eq!(a, b, "{name}: more than the id changed");
            assert_eq!(
                fresh.lines().count(),
                original.lines().count(),
                "{name}: layout changed"
            );
        }
    }
}
