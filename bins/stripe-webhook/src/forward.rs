//! `forward`: forwarding from the local archive (docs/forwarding.md), as a separate process, and
//! the operator's view of it.
//!
//! - `forward`: runs the forwarder of every FORWARD_URL destination until Ctrl-C or SIGTERM
//!   (another process holding a destination's lock, e.g. the server, keeps it: this one waits as
//!   a standby); with `--metrics-addr` (FORWARD_METRICS_ADDR) it serves the forwarding metrics
//!   as the server does (`GET /metrics`, Prometheus text format).
//! - `forward status [--json]`: every destination with state under `$ARCHIVE_DIR/forward/`: its
//!   id, whether it runs (who holds its lock), its cursor, its lag and its dead letters.
//! - `forward dead-letters [--json]`: lists a destination's dead letters; `--redrive [--id evt_…]`
//!   delivers them again (removing those delivered).
//! - `forward cursor --destination D --to <RFC3339|now> --yes`: moves a cursor (refused while a
//!   forwarder holds the destination).
//! - `forward backfill --since T [--until T]`: delivers the records archived in that range to a
//!   destination again, beside its forwarder (the cursor stays).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_forward::{
    ForwardArgs, ForwardSettings, dead_letters, destination_dirs, forward_dir, status,
};
use tokio_util::sync::CancellationToken;

use crate::{Failure, Outcome};

/// Arguments of `forward`.
#[derive(Args, Debug)]
pub(crate) struct ForwardCmd {
    #[command(subcommand)]
    command: Option<Sub>,
    /// The archive directory the file sink writes (the server's ARCHIVE_DIR).
    #[arg(long, env = "ARCHIVE_DIR", default_value = "./archive", global = true)]
    archive_dir: PathBuf,
    #[command(flatten)]
    forward: ForwardArgs,
    /// Serve the forwarding metrics (`GET /metrics`, Prometheus text format) on this address while
    /// forwarding, e.g. 127.0.0.1:9465 (not the server's METRICS_ADDR when both run on one host).
    /// Off when not set.
    #[arg(long, env = "FORWARD_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Every destination: id, running or not, cursor, lag (records, seconds), dead letters.
    Status {
        /// One JSON object per destination, one a line.
        #[arg(long)]
        json: bool,
    },
    /// List a destination's dead letters, or deliver them again with --redrive.
    DeadLetters {
        /// The destination id (see `forward status`); needed when there are several.
        #[arg(long)]
        destination: Option<String>,
        /// Print each dead letter as stored (one JSON object a line, the record included).
        #[arg(long)]
        json: bool,
        /// Deliver them again (needs FORWARD_URL and FORWARD_SECRET); those delivered leave the
        /// list, the others stay.
        #[arg(long)]
        redrive: bool,
        /// Only the dead letters of this event id.
        #[arg(long, value_name = "EVENT_ID")]
        id: Option<String>,
        /// Attempts per dead letter during the re-drive.
        #[arg(long, default_value_t = 3)]
        attempts: u32,
    },
    /// Deliver every record archived in a time range to a destination again (its cursor stays;
    /// may run beside its forwarder). Needs FORWARD_URL and FORWARD_SECRET.
    Backfill {
        /// The destination id (see `forward status`); needed when FORWARD_URL has several.
        #[arg(long)]
        destination: Option<String>,
        /// Records archived from this RFC 3339 time on (2026-11-01T00:00:00Z).
        #[arg(long)]
        since: String,
        /// Records archived before this RFC 3339 time; default: now.
        #[arg(long)]
        until: Option<String>,
        /// Attempts per record; a record still failing goes to the dead-letter list.
        #[arg(long, default_value_t = 5)]
        attempts: u32,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Move a destination's cursor: it then forwards every record archived from that time on
    /// (earlier: a backfill; later: what lies between is skipped). Refused while a forwarder runs.
    Cursor {
        /// The destination id (see `forward status`).
        #[arg(long)]
        destination: String,
        /// An RFC 3339 time (2026-11-01T00:00:00Z), or `now`.
        #[arg(long)]
        to: String,
        /// Confirm: moving a cursor re-delivers or skips records.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `forward` and its subcommands.
pub(crate) fn forward(cmd: ForwardCmd) -> Result<Outcome, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("starting the runtime: {e}")))?;
    let dir = cmd.archive_dir.clone();
    match cmd.command {
        None => run(&runtime, &dir, &cmd.forward, cmd.metrics_addr),
        Some(Sub::Status { json }) => show_status(&dir, &cmd.forward, json),
        Some(Sub::DeadLetters {
            destination,
            json,
            redrive,
            id,
            attempts,
        }) => {
            let chosen = choose(&dir, &cmd.forward, destination.as_deref())?;
            if redrive {
                let settings = validate(&cmd.forward)?;
                let dest = configured(&settings, &chosen, "--redrive")?;
                let report = runtime
                    .block_on(stripe_webhook_forward::redrive(
                        &dir,
                        dest,
                        settings.timeout,
                        id.as_deref(),
                        attempts,
                    ))
                    .map_err(Failure::Runtime)?;
                if json {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                } else {
                    for id in &report.delivered {
                        println!("DELIVERED {id}");
                    }
                    for (id, why) in &report.failed {
                        println!("FAILED {id} {why}");
                    }
                    eprintln!(
                        "re-drive of {chosen}: {} delivered (removed from the list), {} still failing",
                        report.delivered.len(),
                        report.failed.len()
                    );
                }
                Ok(if report.failed.is_empty() {
                    Outcome::Clean
                } else {
                    Outcome::Problems
                })
            } else {
                list_dead_letters(&forward_dir(&dir).join(&chosen), json, id.as_deref())
            }
        }
        Some(Sub::Backfill {
            destination,
            since,
            until,
            attempts,
            json,
        }) => backfill(
            &runtime,
            &dir,
            &cmd.forward,
            destination.as_deref(),
            (&since, until.as_deref()),
            attempts,
            json,
        ),
        Some(Sub::Cursor {
            destination,
            to,
            yes,
        }) => {
            let at = match to.as_str() {
                "now" => ReceivedAt::now(),
                text => stripe_webhook_forward::settings::parse_rfc3339(text).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--to must be an RFC 3339 time (2026-11-01T00:00:00Z) or `now`, got {text:?}"
                    ))
                })?,
            };
            if !yes {
                return Err(Failure::Usage(format!(
                    "moving the cursor of {destination} to {} re-delivers every record archived \
                     since then (or skips those before it, moving forward): add --yes to do it",
                    at.rfc3339_millis()
                )));
            }
            let cursor = stripe_webhook_forward::move_cursor(&dir, &destination, at)
                .map_err(Failure::Runtime)?;
            println!(
                "cursor of {destination} moved: it forwards records archived from {} on",
                cursor.start
            );
            Ok(Outcome::Clean)
        }
    }
}

fn validate(args: &ForwardArgs) -> Result<ForwardSettings, Failure> {
    args.validate().map_err(|e| Failure::Usage(e.to_string()))
}

/// Runs every destination's forwarder until Ctrl-C or SIGTERM.
fn run(
    runtime: &tokio::runtime::Runtime,
    archive_dir: &Path,
    args: &ForwardArgs,
    metrics_addr: Option<SocketAddr>,
) -> Result<Outcome, Failure> {
    let settings = validate(args)?;
    holds_an_archive(archive_dir)?;
    init_logging();
    if let Some(addr) = metrics_addr {
        use stripe_webhook_service::metrics_listener;
        let _runtime = runtime.enter();
        let handle = metrics_listener::install_recorder()
            .map_err(|e| Failure::Runtime(format!("installing the metrics recorder: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Failure::Usage(format!("--metrics-addr {addr}: cannot listen: {e}")))?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(address = %bound, "metrics: GET /metrics (Prometheus text format)");
        stripe_webhook_forward::register_zeros(&settings.destinations);
        runtime.spawn(metrics_listener::serve(listener, handle));
    }
    let cancel = stop_on_signal(runtime, "stopping: storing the cursors");
    for d in &settings.destinations {
        tracing::info!(destination = %d.id, "forwarding to this destination");
    }
    runtime
        .block_on(stripe_webhook_forward::run(
            archive_dir.to_path_buf(),
            settings,
            cancel,
        ))
        .map_err(Failure::Runtime)?;
    Ok(Outcome::Clean)
}

/// Refuses a directory the file sink never wrote to (a wrong ARCHIVE_DIR).
fn holds_an_archive(archive_dir: &Path) -> Result<(), Failure> {
    if archive_dir.join("webhooks").is_dir() {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "{} holds no archive (no webhooks/ directory): set ARCHIVE_DIR to the server's",
        archive_dir.display()
    )))
}

/// The destination `id` of FORWARD_URL, for a `command` that sends to it (its URL and secret sign).
fn configured<'a>(
    settings: &'a ForwardSettings,
    id: &str,
    command: &str,
) -> Result<&'a stripe_webhook_forward::Destination, Failure> {
    settings
        .destinations
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{command}: destination {id} is not in FORWARD_URL (its URL and FORWARD_SECRET \
                 are needed to sign)"
            ))
        })
}

/// A token cancelled at Ctrl-C or SIGTERM (logging `why`).
fn stop_on_signal(runtime: &tokio::runtime::Runtime, why: &'static str) -> CancellationToken {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        tracing::info!("{why}");
        stop.cancel();
    });
    cancel
}

/// `forward backfill`: the records archived in `[since, until)` delivered to one configured
/// destination again.
fn backfill(
    runtime: &tokio::runtime::Runtime,
    archive_dir: &Path,
    args: &ForwardArgs,
    destination: Option<&str>,
    (since, until): (&str, Option<&str>),
    attempts: u32,
    json: bool,
) -> Result<Outcome, Failure> {
    let settings = validate(args)?;
    let time = |flag: &str, text: &str| {
        stripe_webhook_forward::settings::parse_rfc3339(text).ok_or_else(|| {
            Failure::Usage(format!(
                "{flag} must be an RFC 3339 time (2026-11-01T00:00:00Z), got {text:?}"
            ))
        })
    };
    let since = time("--since", since)?;
    let until = match until {
        Some(text) => time("--until", text)?,
        None => ReceivedAt::now(),
    };
    if since >= until {
        return Err(Failure::Usage(format!(
            "the range is empty: --since {} is not before --until {}",
            since.rfc3339_millis(),
            until.rfc3339_millis()
        )));
    }
    let dest = match (destination, settings.destinations.as_slice()) {
        (None, [one]) => one,
        (None, many) => {
            return Err(Failure::Usage(format!(
                "several destinations in FORWARD_URL ({}): choose one with --destination",
                many.iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        (Some(id), _) => configured(&settings, id, "backfill")?,
    };
    holds_an_archive(archive_dir)?;
    init_logging();
    tracing::info!(destination = %dest.id, since = %since.rfc3339_millis(), until = %until.rfc3339_millis(), attempts, "backfill: delivering the records archived in [since, until)");
    let cancel = stop_on_signal(runtime, "stopping the backfill");
    let report = runtime
        .block_on(stripe_webhook_forward::backfill(
            archive_dir,
            dest,
            &settings,
            (since, until),
            attempts,
            cancel,
        ))
        .map_err(Failure::Runtime)?;
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        for id in &report.dead_lettered {
            println!("DEAD_LETTERED {id}");
        }
        for why in &report.unread {
            println!("UNREAD {why}");
        }
    }
    eprintln!(
        "backfill of {} [{}, {}): {} delivered, {} dead-lettered (`forward dead-letters --destination {} --redrive`), {} not read whole{}",
        dest.id,
        since.rfc3339_millis(),
        until.rfc3339_millis(),
        report.delivered,
        report.dead_lettered.len(),
        dest.id,
        report.unread.len(),
        if report.interrupted {
            "; interrupted: run it again to deliver the rest (what was delivered is sent again)"
        } else {
            ""
        }
    );
    Ok(if report.interrupted {
        Outcome::Interrupted
    } else if report.complete() {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}

/// Logs (`RUST_LOG`, default `info`) on stderr.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The destination a command is about: `--destination`, or the only one there is.
fn choose(archive_dir: &Path, args: &ForwardArgs, given: Option<&str>) -> Result<String, Failure> {
    if let Some(given) = given {
        return Ok(given.to_owned());
    }
    let mut ids: Vec<String> = destination_dirs(archive_dir)
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if let Ok(configured) = args.destination_ids() {
        ids.extend(configured.into_iter().map(|(id, _)| id));
    }
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::Usage(format!(
            "no destination under {} and no FORWARD_URL",
            forward_dir(archive_dir).display()
        ))),
        many => Err(Failure::Usage(format!(
            "several destinations ({}): choose one with --destination",
            many.join(", ")
        ))),
    }
}

fn show_status(archive_dir: &Path, args: &ForwardArgs, json: bool) -> Result<Outcome, Failure> {
    let configured: Vec<String> = args
        .destination_ids()
        .map_err(|e| Failure::Usage(e.to_string()))?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let types =
        stripe_webhook_forward::glob::TypeFilter::parse(args.types.as_deref().unwrap_or_default())
            .map_err(|e| Failure::Usage(format!("FORWARD_TYPES: {e}")))?;
    let mut dirs = destination_dirs(archive_dir);
    for id in &configured {
        let dir = forward_dir(archive_dir).join(id);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    if dirs.is_empty() {
        eprintln!(
            "no destination: nothing under {} and no FORWARD_URL",
            forward_dir(archive_dir).display()
        );
        return Ok(Outcome::Clean);
    }
    let mut problems = false;
    for dir in dirs {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_configured = configured.contains(&id);
        match status::destination_status(archive_dir, &dir, is_configured, &types) {
            Ok(s) => {
                problems |= s.dead_letters > 0;
                if json {
                    println!("{}", serde_json::to_string(&s).unwrap_or_default());
                } else {
                    println!(
                        "{}\n  configured: {}\n  running: {}\n  start: {}\n  done before: {}\n  lag: {} records, {:.0} s\n  dead letters: {}",
                        s.destination,
                        if s.configured {
                            "yes (FORWARD_URL)"
                        } else {
                            "no (state only)"
                        },
                        s.running.as_deref().unwrap_or("no"),
                        s.start.as_deref().unwrap_or("(no cursor yet)"),
                        s.done_before.as_deref().unwrap_or("-"),
                        s.lag_records,
                        s.lag_seconds,
                        s.dead_letters
                    );
                }
            }
            Err(e) => {
                problems = true;
                eprintln!("{id}: {e}");
            }
        }
    }
    Ok(if problems {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

fn list_dead_letters(dir: &Path, json: bool, only: Option<&str>) -> Result<Outcome, Failure> {
    let letters =
        dead_letters::list(dir).map_err(|e| Failure::Runtime(format!("{}: {e}", dir.display())))?;
    let mut shown = 0;
    for letter in letters {
        let letter = match letter {
            Ok(letter) => letter,
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        if only.is_some_and(|id| id != letter.letter.id) {
            continue;
        }
        shown += 1;
        if json {
            let mut line = dead_letters::encode(&letter.letter, letter.record.get().as_bytes());
            line.pop();
            println!("{}", String::from_utf8_lossy(&line));
        } else {
            let l = &letter.letter;
            println!(
                "{} {} archived {} dead-lettered {} reason {} attempts {} last {}",
                l.id,
                l.event_type,
                l.archived_at,
                l.dead_lettered_at,
                l.reason,
                l.attempts,
                l.last_status
                    .map(|s| format!("HTTP {s}"))
                    .or_else(|| l.last_error.clone())
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    if !json {
        eprintln!("{shown} dead letter(s) in {}", dir.display());
    }
    Ok(if shown > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}
