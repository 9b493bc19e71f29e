//! `replay`: POSTs the exact archived bodies of the selected records to a target, re-signed with
//! its secret and a fresh timestamp, with a rate limit, concurrency, dedupe by id, a dry run and
//! a durable checkpoint of the ids already delivered.
//!
//! Nothing is re-signed unverified by default: each record must be proven first (see
//! [`crate::check`]: its body verifies against its stored signature with the archive's
//! secret(s), tolerance disabled, and its envelope is what the body says). A record that is not
//! is skipped and listed (`UNVERIFIED`), and makes the exit code 1: whoever can write to the
//! archive (the Firehose stream, the bucket, the archive directory) cannot have a forged event
//! delivered as a validly signed one. `--unverified-source` turns that off, loudly, for archives
//! whose secret is lost.
//!
//! Fetched records (envelope v2, written by `reconcile --archive-missing`: events fetched from
//! Stripe's API, which carry no Stripe signature) cannot be proven that way. They are skipped
//! and counted unless `--include-fetched` is given; then they are sent once their envelope is
//! what their body says, with a warning that nothing but the archive's write access vouches for
//! them.
//!
//! The target and its secret are given explicitly (`--url`, `--secret` or `--secret-file`): never
//! taken from the server's environment variables. Dedupe keeps the first copy of each id that
//! can actually be sent (a raw-off copy, an unreadable oversize body or an unproven copy does not
//! hide a later good one); the checkpoint records ids, so it needs dedupe: `--checkpoint` with
//! `--no-dedupe` is refused. Retries (connection errors, timeouts, 429, 5xx) wait an exponential
//! backoff with full jitter, and at least what the target's `Retry-After` asks for
//! ([`crate::retry`]).
//!
//! [`replay`] is in two steps: [`plan`] checks the arguments and reads the checkpoint's ids into a
//! [`Plan`] (with the [`Picker`] that decides, record by record, what is sent and what is skipped
//! and why), then [`execute`] reads the archive, proves and sends.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Args;
use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};
use stripe_webhook_verify::{Secret, Verifier, signature_header};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::append_log::AppendLog;
use crate::archive::{Archive, Source};
use crate::check::{body_of, prove, prove_fetched};
use crate::client::{Client, Target, Tls, one_line};
use crate::filter::{Filters, SelectArgs};
use crate::retry::{Next, Retries};
use crate::secrets::{ArchiveKeys, archive_verifier, keyring, secrets};
use crate::select::for_each_selected;
use crate::{Failure, Outcome};

/// Why a selected record was not sent.
const SKIP_CHECKPOINT: &str = "already sent (in the checkpoint)";
const SKIP_DUPLICATE: &str = "duplicate id (an earlier sendable copy was selected)";
const SKIP_RAW_OFF: &str = "no body stored (record written with raw off): cannot be replayed";
const SKIP_LEGACY: &str =
    "legacy Node service line (no body or signature kept): cannot be replayed";
const SKIP_NO_SIGNATURE: &str =
    "no signature stored (oversize pointer written with raw off): cannot be verified";
const SKIP_UNVERIFIED: &str = "source does not verify (listed as UNVERIFIED)";
const SKIP_FETCHED: &str =
    "fetched from Stripe's API, not signed by Stripe (send them with --include-fetched)";

/// Arguments of `replay`.
#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Where to POST the events, `http://` or `https://`, e.g. `https://hooks.example.com/stripe`
    /// (never taken from STRIPE_WEBHOOK_URL).
    #[arg(long, required_unless_present = "dry_run")]
    url: Option<String>,
    /// The TARGET's signing secret(s), comma-separated: each body is re-signed with the first one
    /// and a fresh timestamp. Prefer --secret-file: a command line is visible to other users.
    #[arg(long, conflicts_with = "secret_file")]
    secret: Option<String>,
    /// A file holding the target's secret(s) (comma-separated or one per line).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// The ARCHIVE's signing secret(s), comma-separated (all are tried, as during a rotation):
    /// every record must verify with one of them, tolerance disabled, before it is re-signed.
    #[arg(long, conflicts_with_all = ["source_secret_file", "unverified_source", "source_keyring_file"])]
    source_secret: Option<String>,
    /// A file holding the archive's secret(s) (comma-separated or one per line).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["unverified_source", "source_keyring_file"])]
    source_secret_file: Option<PathBuf>,
    /// The archive's keyring (docs/verification.md#keyring): every entry is tried, retired ones
    /// included.
    #[arg(long, value_name = "FILE", conflicts_with = "unverified_source")]
    source_keyring_file: Option<PathBuf>,
    /// DANGEROUS: re-sign and send records WITHOUT verifying them against the archive's secret.
    /// Anyone who could write to the archive can then have forged events delivered, validly
    /// signed. Only for an archive whose signing secret is lost, and a target that expects it.
    #[arg(long)]
    unverified_source: bool,
    /// Also send fetched records (events `reconcile --archive-missing` fetched from Stripe's
    /// API): they carry no Stripe signature, so only their envelope is checked against their
    /// body; whoever can write to the archive could have written them.
    #[arg(long)]
    include_fetched: bool,
    /// Trust only the CA certificate(s) in this PEM file for an https:// target (a private CA),
    /// instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// At most this many requests per second (all connections together); no limit if absent.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Send every copy of an event id (by default only the first sendable copy is sent).
    /// Cannot be combined with --checkpoint.
    #[arg(long)]
    no_dedupe: bool,
    /// Read, select, fetch and verify bodies, but send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Ids delivered with a 2xx are appended (and synced) here; ids already in it are skipped, so
    /// an interrupted replay resumes where it stopped. Needs dedupe (an id is one event).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Send (or, in a dry run, count) at most this many records, then stop.
    #[arg(long)]
    limit: Option<u64>,
    /// Retries after a connection error, a timeout, a 429 or a 5xx (jittered exponential
    /// backoff, at least the target's Retry-After).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Seconds to wait for each response.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// What happened, for the summary.
#[derive(Debug, Default)]
struct Summary {
    selected: u64,
    would_send: u64,
    sent: u64,
    refused: BTreeMap<u16, u64>,
    failed: u64,
    interrupted: u64,
    skipped: BTreeMap<&'static str, u64>,
    unreadable: u64,
}

impl Summary {
    fn skip(&mut self, why: &'static str) {
        *self.skipped.entry(why).or_default() += 1;
    }

    fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Problems found: refusals, failures, unreadable lines, records that do not verify.
    fn problems(&self) -> u64 {
        self.refused_total()
            + self.failed
            + self.unreadable
            + self.skipped.get(SKIP_UNVERIFIED).copied().unwrap_or(0)
    }

    fn print(&self, dry_run: bool) {
        println!("selected: {}", self.selected);
        if dry_run {
            println!("would send: {}", self.would_send);
        } else {
            println!("sent (2xx): {}", self.sent);
            let by_status: Vec<String> = self
                .refused
                .iter()
                .map(|(status, n)| format!("{status}={n}"))
                .collect();
            println!(
                "refused: {}{}",
                self.refused_total(),
                if by_status.is_empty() {
                    String::new()
                } else {
                    format!(" (by status: {})", by_status.join(" "))
                }
            );
        }
        println!("failed (no response): {}", self.failed);
        if self.interrupted > 0 {
            println!("not sent (interrupted): {}", self.interrupted);
        }
        println!("skipped: {}", self.skipped.values().sum::<u64>());
        for (why, n) in &self.skipped {
            println!("  {why}: {n}");
        }
        println!("unreadable: {}", self.unreadable);
    }
}

struct Job {
    id: String,
    body: Bytes,
}

struct Shared {
    summary: Mutex<Summary>,
    /// Ids delivered with a 2xx are appended here (one per line); a torn last line (a crash
    /// mid-append) is cut off when it is reopened: that id may be sent once more, never lost.
    checkpoint: Option<Mutex<AppendLog>>,
    interrupt: CancellationToken,
}

impl Shared {
    fn summary(&self) -> std::sync::MutexGuard<'_, Summary> {
        self.summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How records are checked before they are sent.
enum SourceCheck {
    /// Proven with these secrets (tolerance disabled).
    Verify(Verifier),
    /// Not at all (`--unverified-source`).
    Unverified,
}

/// What the arguments ask for, validated.
struct Setup {
    /// How records are checked before they are sent.
    check: SourceCheck,
    /// Where and how records are sent; `None` for a dry run.
    send: Option<Delivery>,
}

/// Where records go and how they are signed.
struct Delivery {
    /// The target.
    target: Target,
    /// For an `https://` target, how to verify it.
    tls: Option<Tls>,
    /// The target's signing secret.
    secret: Secret,
}

/// Validates the arguments, before anything is read or sent.
fn configure(args: &ReplayArgs) -> Result<Setup, Failure> {
    if args.checkpoint.is_some() && args.no_dedupe {
        return Err(Failure::Usage(
            "--checkpoint cannot be combined with --no-dedupe: the checkpoint records event ids, \
             and with --no-dedupe an id stands for several copies, so a resumed run could not \
             tell which were sent (replay without --checkpoint, or narrow the selection with \
             --since/--id to resume)"
                .to_owned(),
        ));
    }
    let source_keyring = keyring("source-keyring", None, args.source_keyring_file.as_deref())
        .map_err(Failure::Usage)?;
    let source_secrets = secrets(
        "source-secret",
        args.source_secret.as_deref(),
        args.source_secret_file.as_deref(),
    )
    .map_err(Failure::Usage)?;
    let check = match (source_keyring, source_secrets) {
        (Some(keyring), _) => SourceCheck::Verify(
            ArchiveKeys::from_keyring("source-keyring", keyring)
                .map_err(Failure::Usage)?
                .verifier,
        ),
        (None, Some(list)) => {
            SourceCheck::Verify(archive_verifier("source-secret", list).map_err(Failure::Usage)?)
        }
        (None, None) if args.unverified_source => SourceCheck::Unverified,
        (None, None) => {
            return Err(Failure::Usage(
                "replay verifies every record against the archive's signing secret(s) before \
                 re-signing it: give --source-keyring-file, --source-secret or \
                 --source-secret-file (or, for an archive whose secret is lost, \
                 --unverified-source)"
                    .to_owned(),
            ));
        }
    };
    let secret = secrets(
        "secret",
        args.secret.as_deref(),
        args.secret_file.as_deref(),
    )
    .map_err(Failure::Usage)?
    .map(|mut list| list.swap_remove(0));
    let target = match &args.url {
        Some(url) => {
            let target = Target::parse(url).map_err(Failure::Usage)?;
            let tls = Tls::for_target(&target, args.ca_file.as_deref(), "--url")
                .map_err(Failure::Usage)?;
            Some((target, tls))
        }
        None => None,
    };
    let send = if args.dry_run {
        None
    } else {
        let secret = secret.ok_or_else(|| {
            Failure::Usage(
                "--secret or --secret-file is required: the target's signing secret".to_owned(),
            )
        })?;
        // clap requires --url unless --dry-run.
        let (target, tls) = target
            .ok_or_else(|| Failure::Usage("--url is required unless --dry-run".to_owned()))?;
        Some(Delivery {
            target,
            tls,
            secret,
        })
    };
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(Failure::Usage(format!(
            "--rate {rate}: must be a positive number"
        )));
    }
    Ok(Setup { check, send })
}

/// What a replay will do, decided before the archive is read or anything is sent (see [`plan`]).
struct Plan {
    source: Source,
    filters: Filters,
    /// How records are proven before they are sent.
    check: SourceCheck,
    /// Where and how records are sent; `None` for a dry run.
    send: Option<Delivery>,
    /// What stderr is warned of before the run.
    warnings: Vec<&'static str>,
    /// Which selected records are sent.
    picker: Picker,
}

/// The warning `--unverified-source` gives.
const WARN_UNVERIFIED: &str = "--unverified-source: records are NOT verified against the \
    archive's secret before they are re-signed; a record anyone wrote into the archive will be \
    delivered as a validly signed event";
/// The warning `--include-fetched` gives.
const WARN_FETCHED: &str = "--include-fetched: fetched records (events fetched from Stripe's API \
    by reconcile --archive-missing) carry no Stripe signature; they are sent re-signed on the \
    strength of the archive's write access alone";

/// Plans a replay: checks the arguments (see [`configure`]) and reads the ids an earlier run
/// delivered from the lines of its `checkpoint` (one id a line).
fn plan(args: &ReplayArgs, checkpoint: &[String]) -> Result<Plan, Failure> {
    let source = Source::parse(&args.select.source)?;
    let filters = Filters::from_args(&args.select).map_err(Failure::Usage)?;
    let Setup { check, send } = configure(args)?;
    let mut warnings = Vec::new();
    if matches!(check, SourceCheck::Unverified) {
        warnings.push(WARN_UNVERIFIED);
    }
    if args.include_fetched {
        warnings.push(WARN_FETCHED);
    }
    let picker = Picker {
        verify: matches!(check, SourceCheck::Verify(_)),
        include_fetched: args.include_fetched,
        dedupe: !args.no_dedupe,
        limit: args.limit,
        already_sent: checkpoint
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        sent_ids: HashSet::new(),
        picked: 0,
    };
    Ok(Plan {
        source,
        filters,
        check,
        send,
        warnings,
        picker,
    })
}

/// Which selected records are sent, decided record by record in archive order: [`Picker::pick`]
/// before a record's body is read, [`Picker::sent`] once it is proven and sent (or, in a dry run,
/// would be).
#[derive(Debug)]
struct Picker {
    /// Whether records are proven by their signature (not `--unverified-source`).
    verify: bool,
    /// `--include-fetched`.
    include_fetched: bool,
    /// Not `--no-dedupe`.
    dedupe: bool,
    /// `--limit`.
    limit: Option<u64>,
    /// Ids an earlier run delivered (the checkpoint).
    already_sent: HashSet<String>,
    /// Ids of which a copy was sent (or would be; or was by the run that wrote the checkpoint):
    /// only copies that can be sent count, so a raw-off, unreadable or unproven first copy
    /// never hides a later good one.
    sent_ids: HashSet<String>,
    /// Records sent (or that would be) so far.
    picked: u64,
}

/// What to do with a selected record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    /// Select no more records (`--limit` reached).
    Stop,
    /// Skip it, for this reason.
    Skip(&'static str),
    /// Read its body and prove it: by its signature, or (`fetched`) as a fetched record by its
    /// envelope alone, or not at all (`--unverified-source`).
    Prove {
        /// Whether it is a fetched record.
        fetched: bool,
    },
}

impl Picker {
    /// What to do with the selected `record`.
    fn pick(&mut self, record: &ArchivedRecord<'_>) -> Pick {
        if self.limit.is_some_and(|limit| self.picked >= limit) {
            return Pick::Stop;
        }
        let id = record.id.as_ref();
        if self.dedupe && self.sent_ids.contains(id) {
            return Pick::Skip(SKIP_DUPLICATE);
        }
        if self.already_sent.contains(id) {
            // Sent by an earlier run: later copies are duplicates of a sent copy.
            self.sent_ids.insert(id.to_owned());
            return Pick::Skip(SKIP_CHECKPOINT);
        }
        let fetched = matches!(record.body, StoredBody::Fetched { .. });
        match &record.body {
            StoredBody::Legacy => Pick::Skip(SKIP_LEGACY),
            StoredBody::Fetched { .. } if !self.include_fetched => Pick::Skip(SKIP_FETCHED),
            StoredBody::Oversize {
                signature: None, ..
            } if self.verify => Pick::Skip(SKIP_NO_SIGNATURE),
            StoredBody::NotStored if self.verify => Pick::Skip(SKIP_RAW_OFF),
            _ => Pick::Prove { fetched },
        }
    }

    /// A copy of `id` was proven and is sent (or, in a dry run, would be).
    fn sent(&mut self, id: &str) {
        if self.dedupe {
            self.sent_ids.insert(id.to_owned());
        }
        self.picked += 1;
    }
}

impl SourceCheck {
    /// Proves a record (its archived `line`, read as `record`, with its `body`) before it is
    /// sent: a fetched record by its envelope, others by their signature with the archive's
    /// secrets (tolerance disabled), or not at all with `--unverified-source`.
    fn prove(
        &self,
        fetched: bool,
        line: &[u8],
        record: &ArchivedRecord<'_>,
        body: &Bytes,
    ) -> Result<(), String> {
        match (self, record.body.signature()) {
            _ if fetched => prove_fetched(line, record, body),
            (SourceCheck::Verify(verifier), Some(signature)) => {
                prove(verifier, line, record, body, signature, false).map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// Replays the selected records. Call from outside the runtime (it blocks on `handle`).
pub(crate) fn replay(
    archive: &Archive,
    handle: &Handle,
    args: &ReplayArgs,
) -> Result<Outcome, Failure> {
    let _runtime = handle.enter();
    let failed = |path: &Path, e: std::io::Error| {
        Failure::Runtime(format!("--checkpoint {}: {e}", path.display()))
    };
    let lines = match &args.checkpoint {
        Some(path) => AppendLog::read(path).map_err(|e| failed(path, e))?,
        None => Vec::new(),
    };
    let plan = plan(args, &lines)?;
    // Created only once the plan is accepted.
    let checkpoint = match &args.checkpoint {
        Some(path) => Some(AppendLog::open(path).map_err(|e| failed(path, e))?.0),
        None => None,
    };
    execute(archive, handle, args, plan, checkpoint)
}

/// Carries out `plan`: selects, proves and sends (or counts, in a dry run) the records, then
/// prints the summary.
fn execute(
    archive: &Archive,
    handle: &Handle,
    args: &ReplayArgs,
    plan: Plan,
    checkpoint: Option<AppendLog>,
) -> Result<Outcome, Failure> {
    let Plan {
        source,
        filters,
        check,
        send,
        warnings,
        mut picker,
    } = plan;
    for warning in warnings {
        eprintln!("WARNING: {warning}");
    }
    let shared = Arc::new(Shared {
        summary: Mutex::new(Summary::default()),
        checkpoint: checkpoint.map(Mutex::new),
        interrupt: crate::retry::on_ctrl_c(handle, "finishing the requests in flight"),
    });

    let (sender, workers) = match send {
        Some(Delivery {
            target,
            tls,
            secret,
        }) => {
            let (tx, rx) = mpsc::channel::<Job>(usize::from(args.concurrency) * 2);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            let limiter = args.rate.map(|rate| {
                let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Arc::new(tokio::sync::Mutex::new(interval))
            });
            let secret = Arc::new(secret);
            // One pool for every worker: each keeps a connection alive while it has work.
            let client = Client::new(
                target,
                tls,
                "stripe-webhook-replay",
                Duration::from_secs(args.timeout_secs.max(1)),
            )
            .map_err(Failure::Runtime)?;
            let workers: Vec<_> = (0..args.concurrency)
                .map(|_| {
                    let worker = Worker {
                        client: client.clone(),
                        secret: Arc::clone(&secret),
                        shared: Arc::clone(&shared),
                        limiter: limiter.clone(),
                        retries: args.retries,
                    };
                    handle.spawn(worker.run(Arc::clone(&rx)))
                })
                .collect();
            (Some(tx), workers)
        }
        None => (None, Vec::new()),
    };

    let counts = for_each_selected(
        archive,
        &source,
        &filters,
        &mut |line, record| {
            if shared.interrupt.is_cancelled() {
                return ControlFlow::Break(());
            }
            let fetched = match picker.pick(&record) {
                Pick::Stop => return ControlFlow::Break(()),
                Pick::Skip(why) => {
                    let mut summary = shared.summary();
                    summary.selected += 1;
                    summary.skip(why);
                    return ControlFlow::Continue(());
                }
                Pick::Prove { fetched } => fetched,
            };
            shared.summary().selected += 1;
            let id = record.id.as_ref();
            let body = match body_of(archive, &record) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    shared.summary().skip(SKIP_RAW_OFF);
                    return ControlFlow::Continue(());
                }
                Err(reason) => {
                    println!("FAILED\t{id}\t{}:{}\t{reason}", line.segment, line.number);
                    shared.summary().failed += 1;
                    return ControlFlow::Continue(());
                }
            };
            if let Err(reason) = check.prove(fetched, line.bytes, &record, &body) {
                println!(
                    "UNVERIFIED\t{id}\t{}:{}\t{reason}",
                    line.segment, line.number
                );
                shared.summary().skip(SKIP_UNVERIFIED);
                return ControlFlow::Continue(());
            }
            picker.sent(id);
            match &sender {
                None => {
                    shared.summary().would_send += 1;
                    ControlFlow::Continue(())
                }
                Some(tx) => match tx.blocking_send(Job {
                    id: id.to_owned(),
                    body,
                }) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                },
            }
        },
        &mut |problem| {
            eprintln!("unreadable: {problem}");
            ControlFlow::Continue(())
        },
    )?;
    drop(sender);
    for worker in workers {
        handle
            .block_on(worker)
            .map_err(|e| Failure::Runtime(format!("a replay worker failed: {e}")))?;
    }
    let mut summary = shared.summary();
    summary.unreadable = counts.problems();
    summary.print(args.dry_run);
    if let Some(n) = summary.skipped.get(SKIP_FETCHED) {
        eprintln!(
            "note: {n} fetched record(s) (events reconcile --archive-missing fetched from Stripe's \
             API) were not sent; give --include-fetched to send them"
        );
    }
    Ok(if shared.interrupt.is_cancelled() {
        Outcome::Interrupted
    } else if summary.problems() > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

struct Worker {
    client: Client,
    secret: Arc<Secret>,
    shared: Arc<Shared>,
    limiter: Option<Arc<tokio::sync::Mutex<tokio::time::Interval>>>,
    retries: u32,
}

enum Sent {
    Delivered,
    Refused(u16, String),
    Failed(String),
}

impl Worker {
    async fn run(mut self, jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
        loop {
            let job = jobs.lock().await.recv().await;
            let Some(job) = job else { return };
            if self.shared.interrupt.is_cancelled() {
                self.shared.summary().interrupted += 1;
                continue;
            }
            match self.deliver(&job).await {
                Sent::Delivered => {
                    if let Some(checkpoint) = &self.shared.checkpoint {
                        let written = checkpoint
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .append(&job.id);
                        if let Err(e) = written {
                            // Keep going: the worst case is that this id is sent again on resume.
                            eprintln!("checkpoint: cannot record {}: {e}", job.id);
                        }
                    }
                    self.shared.summary().sent += 1;
                }
                Sent::Refused(status, body) => {
                    println!("REFUSED\t{}\t{status}\t{}", job.id, one_line(&body, 200));
                    *self.shared.summary().refused.entry(status).or_default() += 1;
                }
                Sent::Failed(reason) => {
                    println!("FAILED\t{}\t-\t{reason}", job.id);
                    self.shared.summary().failed += 1;
                }
            }
        }
    }

    async fn deliver(&mut self, job: &Job) -> Sent {
        let mut retries = Retries::new(self.retries);
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.lock().await.tick().await;
            }
            let header = signature_header(&[&*self.secret], unix_now(), &job.body);
            let (outcome, retry_after) = match self.client.post(&header, job.body.clone()).await {
                Ok(r) if (200..300).contains(&r.status) => return Sent::Delivered,
                Ok(r) if r.status == 429 || r.status >= 500 => {
                    (Sent::Refused(r.status, r.text()), r.retry_after)
                }
                Ok(r) => return Sent::Refused(r.status, r.text()),
                Err(e) => (Sent::Failed(e.to_string()), None),
            };
            if self.shared.interrupt.is_cancelled() {
                return outcome;
            }
            match retries.next(retry_after) {
                Next::Wait(wait) => {
                    if !crate::retry::sleep(&self.shared.interrupt, wait).await {
                        return outcome;
                    }
                }
                Next::GiveUp => return outcome,
                Next::TooLong(wait) => {
                    return match outcome {
                        Sent::Refused(status, body) => Sent::Refused(
                            status,
                            format!(
                                "Retry-After {} s is longer than replay waits ({} s): {body}",
                                wait.as_secs(),
                                crate::retry::MAX_RETRY_AFTER.as_secs()
                            ),
                        ),
                        other => other,
                    };
                }
            }
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `replay ./archive` and `extra`, as the command line gives them.
    fn args(extra: &[&str]) -> ReplayArgs {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ReplayArgs,
        }
        let line = ["replay", "./archive"].iter().chain(extra);
        Cli::try_parse_from(line).expect("arguments").args
    }

    fn plan_err(extra: &[&str]) -> String {
        match plan(&args(extra), &[]) {
            Ok(_) => panic!("{extra:?} planned"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_plan_checks_the_arguments() {
        let dry = plan(&args(&["--dry-run", "--source-secret", "whsec_a"]), &[]).expect("dry");
        assert!(dry.send.is_none() && dry.warnings.is_empty());
        assert!(matches!(dry.check, SourceCheck::Verify(_)));
        assert!(dry.picker.verify && dry.picker.dedupe);
        let send = ["--url", "http://127.0.0.1:9/hook", "--secret", "whsec_t"];
        let live = plan(
            &args(&[&send[..], &["--source-secret", "whsec_a"]].concat()),
            &[],
        )
        .expect("live");
        assert!(live.send.is_some());
        let unverified =
            plan(&args(&[&send[..], &["--unverified-source"]].concat()), &[]).expect("unverified");
        assert!(matches!(unverified.check, SourceCheck::Unverified));
        assert!(!unverified.picker.verify);
        assert_eq!(unverified.warnings, [WARN_UNVERIFIED]);
        let fetched = plan(
            &args(&["--dry-run", "--unverified-source", "--include-fetched"]),
            &[],
        )
        .expect("fetched");
        assert_eq!(fetched.warnings, [WARN_UNVERIFIED, WARN_FETCHED]);

        for (extra, says) in [
            (&["--dry-run"][..], "--source-keyring-file"),
            (
                &["--url", "http://127.0.0.1:9", "--unverified-source"][..],
                "--secret",
            ),
            (
                &[
                    "--dry-run",
                    "--unverified-source",
                    "--checkpoint",
                    "ck",
                    "--no-dedupe",
                ][..],
                "--no-dedupe",
            ),
            (
                &["--dry-run", "--unverified-source", "--rate", "0"][..],
                "--rate",
            ),
            (
                &[&send[..], &["--source-secret", ""]].concat()[..],
                "--source-secret",
            ),
            (
                &[
                    "--url",
                    "ftp://x",
                    "--secret",
                    "whsec_t",
                    "--unverified-source",
                ][..],
                "http",
            ),
        ] {
            let err = plan_err(extra);
            assert!(err.contains(says), "{extra:?}: {err}");
        }
    }

    /// An archived line of `id` with `body` (the members after `data`).
    fn line(id: &str, body: &str) -> String {
        format!(
            r#"{{"v":1,"timestamp":"2026-11-26T01:00:00.000Z","id":"{id}","type":"a","object":"event","created":1,"livemode":false,"api_version":null,"account":null,"data":{{}}{body}}}"#
        )
    }

    fn pick(picker: &mut Picker, line: &str) -> Pick {
        picker.pick(&ArchivedRecord::parse(line.as_bytes()).expect("record"))
    }

    #[test]
    fn records_are_picked_once_each_and_only_when_they_can_be_proven() {
        let sha = "00".repeat(32);
        let inline = |id: &str| line(id, r#","raw":"{}","signature":"s""#);
        let raw_off = line("evt_raw_off", "");
        // An oversize pointer, with `signature` (and a null `raw`) or without (raw off).
        let pointer = |signature: &str| {
            format!(
                r#"{{"v":1,"timestamp":"2026-11-26T01:00:00.000Z","id":"evt_big","type":"a","object":"event","created":1,"livemode":false,"api_version":null,"account":null,"data":null,{signature}"oversize":{{"bucket":"b","key":"k","bytes":1,"sha256":"{sha}"}}}}"#
            )
        };
        let legacy = r#"{"timestamp":"2026-11-28T04:00:00.000Z","type":"b","id":"evt_legacy","data":{"object":{}}}"#;
        let fetched = r#"{"v":2,"timestamp":"2026-11-28T03:00:00.000Z","id":"evt_fetched","type":"b","object":"event","created":1,"livemode":false,"api_version":null,"account":null,"data":{},"raw":"{}","fetched":{"api":"https://api.stripe.com","request":"GET /v1/events/evt_fetched","key":"rk_live_...abcd","account":null,"stripe_version":null,"request_id":null}}"#;

        let mut p = plan(
            &args(&["--dry-run", "--source-secret", "whsec_a", "--limit", "3"]),
            &["evt_done".to_owned(), String::new()],
        )
        .expect("plan")
        .picker;
        assert_eq!(
            pick(&mut p, &inline("evt_done")),
            Pick::Skip(SKIP_CHECKPOINT)
        );
        assert_eq!(
            pick(&mut p, &inline("evt_done")),
            Pick::Skip(SKIP_DUPLICATE)
        );
        assert_eq!(
            pick(&mut p, &inline("evt_1")),
            Pick::Prove { fetched: false }
        );
        // Not proven (its body unreadable, or its signature wrong): a later copy is still tried.
        assert_eq!(
            pick(&mut p, &inline("evt_1")),
            Pick::Prove { fetched: false }
        );
        p.sent("evt_1");
        assert_eq!(pick(&mut p, &inline("evt_1")), Pick::Skip(SKIP_DUPLICATE));
        assert_eq!(pick(&mut p, &raw_off), Pick::Skip(SKIP_RAW_OFF));
        assert_eq!(pick(&mut p, &pointer("")), Pick::Skip(SKIP_NO_SIGNATURE));
        assert_eq!(
            pick(&mut p, &pointer(r#""raw":null,"signature":"s","#)),
            Pick::Prove { fetched: false }
        );
        assert_eq!(pick(&mut p, legacy), Pick::Skip(SKIP_LEGACY));
        assert_eq!(pick(&mut p, fetched), Pick::Skip(SKIP_FETCHED));
        p.sent("evt_2");
        p.sent("evt_3");
        assert_eq!(pick(&mut p, &inline("evt_4")), Pick::Stop, "--limit 3");

        // --unverified-source --include-fetched --no-dedupe: raw-off and fetched records are
        // read (a raw-off one is then skipped when it has no body), every copy is sent.
        let plan = plan(
            &args(&[
                "--dry-run",
                "--unverified-source",
                "--include-fetched",
                "--no-dedupe",
            ]),
            &[],
        )
        .expect("plan");
        let mut p = plan.picker;
        assert_eq!(pick(&mut p, &raw_off), Pick::Prove { fetched: false });
        assert_eq!(pick(&mut p, &pointer("")), Pick::Prove { fetched: false });
        assert_eq!(pick(&mut p, fetched), Pick::Prove { fetched: true });
        assert_eq!(pick(&mut p, legacy), Pick::Skip(SKIP_LEGACY));
        p.sent("evt_1");
        assert_eq!(
            pick(&mut p, &inline("evt_1")),
            Pick::Prove { fetched: false }
        );
    }

    #[test]
    fn summary_counts() {
        let mut s = Summary::default();
        s.skip(SKIP_RAW_OFF);
        s.skip(SKIP_RAW_OFF);
        *s.refused.entry(400).or_default() += 2;
        *s.refused.entry(500).or_default() += 1;
        assert_eq!(s.refused_total(), 3);
        assert_eq!(s.skipped[SKIP_RAW_OFF], 2);
        s.skip(SKIP_UNVERIFIED);
        assert_eq!(s.problems(), 4);
    }
}
