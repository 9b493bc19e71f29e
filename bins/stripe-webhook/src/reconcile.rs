//! `reconcile`: finds every event Stripe lists that the archive lacks, and with
//! `--archive-missing` fills the gap with fetched records.
//!
//! 1. The window `[--since, --until)` of event creation times is clamped to Stripe's 30 days of
//!    events (with a warning).
//! 2. The archive is read first, with the filters every archive command uses: every record
//!    (webhook records of any body kind, oversize pointers, raw-off records and fetched
//!    records alike) received from [`ARCHIVE_LOOKBACK`] before `--since` to the end of the
//!    archive. The end is open on purpose: Stripe delivers an event after creating it (up to
//!    three days later when it retries), and a fetched record is written when it is fetched, so
//!    an event created just before `--until` and archived after it counts as archived.
//! 3. Then Stripe's lists are read page by page (snapshot events `GET /v1/events`, thin events
//!    `GET /v2/core/events`, for the key's account, one `--account`, or every connected account
//!    with `--all-accounts`), narrowed by the `--type` globs, and each listed event whose id
//!    the archive lacks is reported `MISSING` (or, with `--json`, as a JSON object) on stdout.
//!    With `--archive-missing DIR` each is fetched by id and written into `DIR` (the file
//!    sink's layout, durably) as a fetched record (envelope v2) before it is reported.
//! 4. A summary goes to stderr (or, with `--json`, a last JSON object to stdout).
//!
//! With `--checkpoint FILE`, every page's outcome is appended to `FILE` and synced before the
//! next page is asked for (see [`Checkpoint`]): a rerun with the same arguments reads the archive
//! again and continues after the last page that completed.
//!
//! Exit codes: 0 the archive holds every listed event (and every segment was readable); 1
//! events are missing (even when `--archive-missing` fetched them all: the webhook path lost
//! them), a missing event could not be fetched, or part of the archive is unreadable; 2 usage
//! or configuration errors (a key Stripe rejects included), or Stripe's API not answering after
//! every retry; 130 interrupted.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use stripe_webhook_envelope::{ARCHIVE_PREFIX, ReceivedAt, encode_fetched};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_file::{FileSink, FileSinkConfig};
use tokio::runtime::Handle;

use crate::append_log::AppendLog;
use crate::archive::{Archive, Source, progress_spinner};
use crate::filter::{Filters, parse_instant};
use crate::select::for_each_selected;
use crate::stripe::{
    ApiError, ApiKey, DEFAULT_API_BASE, DEFAULT_V2_VERSION, Kind, Listed, StripeApi, Window, at,
    types_filter,
};
use crate::{Failure, Outcome};

/// How far back Stripe lists events.
const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Records received this long before `--since` are read too: Stripe's clock (`created`) and
/// this service's (`timestamp`) can disagree a little.
const ARCHIVE_LOOKBACK: Duration = Duration::from_secs(15 * 60);

/// Arguments of `reconcile`.
#[derive(Args, Debug)]
pub(crate) struct ReconcileArgs {
    /// The archive: a local directory (the server's ARCHIVE_DIR, its `webhooks/` folder, or any
    /// folder of segments) or an S3 prefix, e.g. `s3://my-archive/webhooks/`.
    source: String,
    /// First event creation time of the window (inclusive): RFC 3339, a date (its midnight
    /// UTC), or `now-<N>d|h|m|s` (e.g. `now-4d`, for schedules). Default: 30 days ago, as far
    /// back as Stripe lists events; an older one is clamped to that, with a warning.
    #[arg(long, value_name = "TIME", value_parser = check_time)]
    since: Option<String>,
    /// End of the window (exclusive), in the same forms as --since. Default: now.
    #[arg(long, value_name = "TIME", value_parser = check_time)]
    until: Option<String>,
    /// Only these event types; globs with `*` and `?` (`invoice.*`). Repeatable or
    /// comma-separated. Match them to the endpoint's enabled events.
    #[arg(
        long = "type",
        visible_alias = "types",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    types: Vec<String>,
    /// Which events to list: `snapshot` (GET /v1/events, what webhook endpoints receive),
    /// `thin` (GET /v2/core/events, for thin event destinations). Comma-separated.
    #[arg(
        long = "kind",
        value_enum,
        value_delimiter = ',',
        default_values_t = [Kind::Snapshot, Kind::Thin]
    )]
    kinds: Vec<Kind>,
    /// A file holding the API key (a secret key, or a restricted key with the Events read
    /// permission); it wins over STRIPE_API_KEY. The key is never taken from the command line.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// List the events of this connected account (`acct_…`, sent as `Stripe-Account`, or
    /// `Stripe-Context` for v2), as a Connect endpoint receives them.
    #[arg(long, value_name = "ACCT_ID", conflicts_with = "all_accounts")]
    account: Option<String>,
    /// List the events of every connected account of the platform (GET /v1/accounts, then each
    /// account in turn), as a Connect endpoint receives them; not the platform's own events.
    #[arg(long)]
    all_accounts: bool,
    /// Write one JSON object per missing event and a last summary object to stdout.
    #[arg(long)]
    json: bool,
    /// Append each listed page's outcome here (synced); a rerun with the same arguments
    /// continues after the last completed page.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Fetch each missing event by id and write it into this local archive directory (the file
    /// sink's layout, e.g. the server's ARCHIVE_DIR) as a fetched record.
    #[arg(long, value_name = "DIR")]
    archive_missing: Option<PathBuf>,
    /// Trust only the CA certificate(s) in this PEM file for an https:// API base (a proxy with
    /// a private CA), instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// The `Stripe-Version` sent to the v2 API (GET /v2/core/events).
    #[arg(long, value_name = "VERSION", default_value = DEFAULT_V2_VERSION)]
    v2_stripe_version: String,
    /// Retries of a request after a connection error, a timeout, a 429 or a 5xx (jittered
    /// exponential backoff, at least Stripe's Retry-After; Stripe-Should-Retry is obeyed).
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// Whose events are listed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// The key's own account.
    Own,
    /// One connected account.
    Account(String),
    /// Every connected account.
    AllConnected,
}

impl Scope {
    fn name(&self) -> String {
        match self {
            Scope::Own => "own".to_owned(),
            Scope::Account(a) => a.clone(),
            Scope::AllConnected => "all-accounts".to_owned(),
        }
    }
}

/// An event Stripe lists and the archive lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Missing {
    event: Listed,
    kind: Kind,
    account: Option<String>,
}

impl Missing {
    fn to_json(&self) -> Value {
        json!({
            "id": self.event.id,
            "type": self.event.event_type,
            "created": self.event.created,
            "created_millis": self.event.created_millis,
            "pending_webhooks": self.event.pending_webhooks,
            "kind": self.kind.name(),
            "account": self.account,
        })
    }

    fn from_json(v: &Value) -> Option<Missing> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Missing {
            event: Listed {
                id: text("id")?,
                event_type: text("type")?,
                created: text("created")?,
                created_millis: v.get("created_millis")?.as_i64()?,
                pending_webhooks: v.get("pending_webhooks").and_then(Value::as_u64),
            },
            kind: Kind::from_name(v.get("kind")?.as_str()?)?,
            account: text("account"),
        })
    }
}

/// Listed and archived counts of one type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TypeCounts {
    listed: u64,
    archived: u64,
}

/// One list: an account (`None`: the key's own) and a kind.
type ListId = (Option<String>, Kind);

/// What a checkpoint holds.
///
/// It is an [`AppendLog`] of JSON lines: the run's parameters first
/// (`{"reconcile_checkpoint":1,…}`: a rerun with other arguments is refused), then
/// `{"accounts":[…]}` once the connected accounts are listed (`--all-accounts`), one
/// `{"page":{"kind":…,"account":…,"next":…,"counts":{type:[listed,archived]},"missing":[…]}}`
/// per completed page (`next` is `null` once the list is done), and one `{"fetched":"evt_…"}`
/// per missing event written into the `--archive-missing` directory.
#[derive(Debug, Default)]
struct Resumed {
    accounts: Option<Vec<String>>,
    /// Per list: where its next page starts (`None`: done).
    lists: BTreeMap<ListId, Option<String>>,
    counts: BTreeMap<String, TypeCounts>,
    missing: Vec<Missing>,
    fetched: HashSet<String>,
}

impl Resumed {
    fn read(lines: &[String], header: &Value, path: &Path) -> Result<Resumed, Failure> {
        let mut resumed = Resumed::default();
        let bad = |n: usize, why: &str| {
            Failure::Usage(format!(
                "--checkpoint {} line {}: {why}; it is not a reconcile checkpoint of this run (use a new file)",
                path.display(),
                n + 1
            ))
        };
        for (n, line) in lines.iter().enumerate() {
            let v: Value = serde_json::from_str(line).map_err(|_| bad(n, "not JSON"))?;
            if n == 0 {
                if &v != header {
                    return Err(Failure::Usage(format!(
                        "--checkpoint {} was written by a reconcile with other arguments \
                         (window, types, kinds, accounts or API base): {line}; use a new file",
                        path.display()
                    )));
                }
            } else if let Some(accounts) = v.get("accounts") {
                let ids = accounts
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect())
                    .ok_or_else(|| bad(n, "bad accounts"))?;
                resumed.accounts = Some(ids);
            } else if let Some(page) = v.get("page") {
                let kind = page
                    .get("kind")
                    .and_then(Value::as_str)
                    .and_then(Kind::from_name)
                    .ok_or_else(|| bad(n, "bad page kind"))?;
                let account = page
                    .get("account")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let next = page.get("next").and_then(Value::as_str).map(str::to_owned);
                resumed.lists.insert((account, kind), next);
                for (ty, pair) in page
                    .get("counts")
                    .and_then(Value::as_object)
                    .ok_or_else(|| bad(n, "bad page counts"))?
                {
                    let [listed, archived] = [0, 1].map(|i| pair.get(i).and_then(Value::as_u64));
                    let c = resumed.counts.entry(ty.clone()).or_default();
                    c.listed += listed.ok_or_else(|| bad(n, "bad page counts"))?;
                    c.archived += archived.ok_or_else(|| bad(n, "bad page counts"))?;
                }
                for m in page
                    .get("missing")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad(n, "bad missing events"))?
                {
                    resumed
                        .missing
                        .push(Missing::from_json(m).ok_or_else(|| bad(n, "bad missing event"))?);
                }
            } else if let Some(id) = v.get("fetched").and_then(Value::as_str) {
                resumed.fetched.insert(id.to_owned());
            } else {
                return Err(bad(n, "unknown line"));
            }
        }
        Ok(resumed)
    }
}

/// The optional checkpoint.
struct Checkpoint(Option<(AppendLog, PathBuf)>);

impl Checkpoint {
    fn append(&mut self, line: &Value) -> Result<(), Failure> {
        if let Some((log, path)) = &mut self.0 {
            log.append(&line.to_string())
                .map_err(|e| Failure::Runtime(format!("--checkpoint {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

/// Where the report goes: MISSING lines or JSON objects on stdout.
struct Report {
    json: bool,
    out: std::io::Stdout,
}

impl Report {
    fn missing(&mut self, m: &Missing, archived_now: Option<bool>) {
        let line = if self.json {
            let mut v = m.to_json();
            v["report"] = json!("missing");
            v["archived_now"] = json!(archived_now);
            v.to_string()
        } else {
            format!(
                "MISSING\t{}\t{}\t{}\t{}",
                m.event.id,
                m.event.event_type,
                m.event.created,
                m.event
                    .pending_webhooks
                    .map_or_else(|| "-".to_owned(), |n| n.to_string())
            )
        };
        let mut out = self.out.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Counts for the summary.
#[derive(Debug, Default)]
struct Tally {
    counts: BTreeMap<String, TypeCounts>,
    missing: BTreeMap<String, u64>,
    fetched: u64,
    fetch_failed: u64,
}

/// Refuses an `--archive-missing` directory (or its `webhooks/` folder) that exists and belongs
/// to another user than `uid` (this process's effective uid): the partition directories the
/// writer creates would belong to `uid`, and a server running as the owner could then not create
/// its own segments in them; every webhook would be answered 500 until someone noticed.
fn same_owner(dir: &Path, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    for path in [dir.to_path_buf(), dir.join(ARCHIVE_PREFIX)] {
        let owner = match std::fs::metadata(&path) {
            Ok(meta) => meta.uid(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("--archive-missing {}: {e}", path.display())),
        };
        if owner != uid {
            return Err(format!(
                "--archive-missing {}: owned by uid {owner}, but reconcile runs as uid {uid}: the \
                 partition directories it would create there would belong to uid {uid}, and a \
                 server running as uid {owner} could not create its segments in them (every \
                 webhook answered 500). Run reconcile as the directory's owner (`runuser -u USER \
                 --`, `sudo -u USER`, or the systemd timer in docs/reconcile.md), or archive into \
                 a directory of your own",
                path.display()
            ));
        }
    }
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A time of the window at `now` (Unix milliseconds): `now`, `now-<N>d|h|m|s`, or what
/// [`parse_instant`] reads (RFC 3339, or a date for its midnight UTC).
fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix("now-") {
        let unit = match ago.chars().last() {
            Some('d') => 86_400_000,
            Some('h') => 3_600_000,
            Some('m') => 60_000,
            Some('s') => 1000,
            _ => return Err(format!("{text:?}: now-<N> needs a unit, d, h, m or s")),
        };
        let digits = &ago[..ago.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?}: now-<N><unit> needs a whole number N"));
        }
        return digits
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .and_then(|d| now.checked_sub(d))
            .ok_or_else(|| format!("{text:?} is out of range"));
    }
    parse_instant(text)
}

/// Checks a time's form when the arguments are parsed (its value depends on when it is used).
fn check_time(text: &str) -> Result<String, String> {
    parse_time(text, 0).map(|_| text.to_owned())
}

/// The window the arguments ask for, clamped to Stripe's retention; `true` if it was clamped.
fn window(args: &ReconcileArgs, now: i64) -> Result<(Window, bool), Failure> {
    let oldest = now - millis(RETENTION);
    let time = |t: &Option<String>, default: i64| match t {
        Some(text) => parse_time(text, now).map_err(Failure::Usage),
        None => Ok(default),
    };
    let until = time(&args.until, now)?;
    let since = time(&args.since, oldest)?;
    let clamped = since < oldest;
    let window = Window {
        since: since.max(oldest),
        until,
    };
    if window.since >= window.until {
        return Err(Failure::Usage(format!(
            "the window is empty: --since {} is not before --until {}{}",
            at(window.since),
            at(window.until),
            if clamped {
                " (Stripe lists events of the last 30 days only)"
            } else {
                ""
            }
        )));
    }
    Ok((window, clamped))
}

/// Reconciles the archive with Stripe. Call from outside the runtime (it blocks on `handle`).
pub(crate) fn reconcile(
    archive: &Archive,
    handle: &Handle,
    args: &ReconcileArgs,
) -> Result<Outcome, Failure> {
    let _runtime = handle.enter();
    let source = Source::parse(&args.source)?;
    let scope = match (&args.account, args.all_accounts) {
        (Some(account), _) if !account.starts_with("acct_") => {
            return Err(Failure::Usage(format!(
                "--account {account:?}: a connected account id starts with acct_"
            )));
        }
        (Some(account), _) => Scope::Account(account.clone()),
        (None, true) => Scope::AllConnected,
        (None, false) => Scope::Own,
    };
    let mut kinds = args.kinds.clone();
    kinds.sort();
    kinds.dedup();
    let key = ApiKey::load(args.api_key_file.as_deref()).map_err(Failure::Usage)?;
    let base = std::env::var("STRIPE_API_BASE").unwrap_or_else(|_| DEFAULT_API_BASE.to_owned());
    let interrupt = crate::retry::on_ctrl_c(
        handle,
        "stopping after the current request (a --checkpoint keeps what is done)",
    );
    let mut api = StripeApi::new(
        &base,
        args.ca_file.as_deref(),
        key,
        args.v2_stripe_version.clone(),
        args.retries,
        Duration::from_secs(args.timeout_secs.max(1)),
        interrupt.clone(),
    )
    .map_err(Failure::Usage)?;

    let header = json!({
        "reconcile_checkpoint": 1,
        "requested": {"since": args.since, "until": args.until},
        "types": args.types,
        "kinds": kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "scope": scope.name(),
        "api": api.base(),
    });
    let now = ReceivedAt::now().unix_millis();
    let (mut checkpoint, resumed, window, clamped) = match &args.checkpoint {
        None => {
            let (window, clamped) = window(args, now)?;
            (Checkpoint(None), Resumed::default(), window, clamped)
        }
        Some(path) => {
            let (log, lines) = AppendLog::open(path)
                .map_err(|e| Failure::Runtime(format!("--checkpoint {}: {e}", path.display())))?;
            // The window is fixed when the checkpoint is created: a default or clamped `--since`
            // would otherwise move with the clock between runs.
            let (window, clamped, lines) = match lines.first() {
                Some(first) => {
                    let v: Value = serde_json::from_str(first).unwrap_or(Value::Null);
                    let w = v.get("window").and_then(|w| {
                        Some(Window {
                            since: w.get("since")?.as_i64()?,
                            until: w.get("until")?.as_i64()?,
                        })
                    });
                    let clamped = v.get("clamped").and_then(Value::as_bool);
                    match (w, clamped) {
                        (Some(w), Some(c)) => (w, c, lines),
                        _ => {
                            return Err(Failure::Usage(format!(
                                "--checkpoint {} is not a reconcile checkpoint (use a new file)",
                                path.display()
                            )));
                        }
                    }
                }
                None => {
                    let (w, c) = window(args, now)?;
                    (w, c, Vec::new())
                }
            };
            let mut header = header.clone();
            header["window"] = json!({"since": window.since, "until": window.until});
            header["clamped"] = json!(clamped);
            let resumed = Resumed::read(&lines, &header, path)?;
            let mut checkpoint = Checkpoint(Some((log, path.clone())));
            if lines.is_empty() {
                checkpoint.append(&header)?;
            } else {
                eprintln!(
                    "reconcile: resuming from --checkpoint {} ({} page(s) done, {} missing so far)",
                    path.display(),
                    resumed.lists.len(),
                    resumed.missing.len()
                );
            }
            (checkpoint, resumed, window, clamped)
        }
    };
    if clamped {
        eprintln!(
            "reconcile: WARNING: Stripe lists events of the last 30 days only: --since is clamped \
             to {}",
            at(window.since)
        );
    }
    if window.since < now - millis(RETENTION) {
        eprintln!(
            "reconcile: WARNING: the checkpoint's window starts at {}, more than 30 days ago: \
             Stripe no longer lists the oldest events of it",
            at(window.since)
        );
    }

    // The `--archive-missing` writer.
    let mut filler = match &args.archive_missing {
        Some(dir) => {
            same_owner(dir, rustix::process::geteuid().as_raw()).map_err(Failure::Usage)?;
            let (sink, _recovery) = FileSink::open_blocking(FileSinkConfig::new(dir))
                .map_err(|e| Failure::Usage(format!("--archive-missing {}: {e}", dir.display())))?;
            Some(sink)
        }
        None => None,
    };

    // 1. What the archive holds.
    let filters =
        Filters::received_between(window.since - millis(ARCHIVE_LOOKBACK), None, &args.types);
    let mut archived: HashSet<String> = HashSet::new();
    let counts = for_each_selected(
        archive,
        &source,
        &filters,
        &mut |_, record| {
            if !archived.contains(record.id.as_ref()) {
                archived.insert(record.id.into_owned());
            }
            if interrupt.is_cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
        &mut |problem| {
            eprintln!("unreadable: {problem}");
            ControlFlow::Continue(())
        },
    )?;
    let mut report = Report {
        json: args.json,
        out: std::io::stdout(),
    };
    let mut tally = Tally {
        counts: resumed.counts.clone(),
        ..Tally::default()
    };
    let mut fetched = resumed.fetched.clone();
    let mut run = Run {
        handle,
        api: &mut api,
        filler: filler.as_mut(),
        checkpoint: &mut checkpoint,
        report: &mut report,
        tally: &mut tally,
        fetched: &mut fetched,
    };
    let listing = if interrupt.is_cancelled() {
        Ok((Some(Outcome::Interrupted), Vec::new()))
    } else {
        run.lists(&Plan {
            resumed: &resumed,
            scope: &scope,
            kinds: &kinds,
            window,
            filters: &filters,
            archived: &archived,
            types: &args.types,
            checkpoint: args.checkpoint.as_deref(),
        })
    };
    // Seal what was written, whatever happened (every record put is durable already).
    if let Some(filler) = filler {
        let sealed = handle.block_on(filler.shutdown());
        if let (Err(e), Ok(_)) = (sealed, &listing) {
            return Err(Failure::Runtime(format!(
                "--archive-missing {}: {e}",
                filler.dir().display()
            )));
        }
    }
    let (outcome, accounts) = listing?;
    let outcome = outcome.unwrap_or(
        if tally.missing.is_empty() && tally.fetch_failed == 0 && counts.problems() == 0 {
            Outcome::Clean
        } else {
            Outcome::Problems
        },
    );
    let summary = Summary {
        window,
        clamped,
        kinds: &kinds,
        scope: &scope,
        accounts: &accounts,
        tally: &tally,
        archive_records: counts.selected,
        unreadable: counts.problems(),
        archive_missing: args.archive_missing.as_deref(),
        requests: api.requests,
        key: api.key_id(),
        api: api.base(),
        complete: outcome != Outcome::Interrupted,
    };
    if args.json {
        println!("{}", summary.to_json());
    } else {
        eprint!("{}", summary.to_text());
    }
    Ok(outcome)
}

/// What to list and compare.
struct Plan<'p> {
    resumed: &'p Resumed,
    scope: &'p Scope,
    kinds: &'p [Kind],
    window: Window,
    filters: &'p Filters,
    archived: &'p HashSet<String>,
    types: &'p [String],
    checkpoint: Option<&'p Path>,
}

/// The state of a run that reports and fills missing events.
struct Run<'r> {
    handle: &'r Handle,
    api: &'r mut StripeApi,
    filler: Option<&'r mut FileSink>,
    checkpoint: &'r mut Checkpoint,
    report: &'r mut Report,
    tally: &'r mut Tally,
    fetched: &'r mut HashSet<String>,
}

impl Run<'_> {
    /// Reports the missing events a previous run found, then reads every list page by page:
    /// `Some(Interrupted)` if interrupted, and the accounts listed.
    fn lists(
        &mut self,
        plan: &Plan<'_>,
    ) -> Result<(Option<Outcome>, Vec<Option<String>>), Failure> {
        // The missing events a previous run found: still missing unless they arrived since (a
        // late delivery; one this reconcile fetched stays reported).
        for m in &plan.resumed.missing {
            if plan.archived.contains(&m.event.id) && !self.fetched.contains(&m.event.id) {
                self.tally
                    .counts
                    .entry(m.event.event_type.clone())
                    .or_default()
                    .archived += 1;
                continue;
            }
            if self.found_missing(m)?.is_break() {
                return Ok((Some(Outcome::Interrupted), Vec::new()));
            }
        }
        let accounts: Vec<Option<String>> = match plan.scope {
            Scope::Own => vec![None],
            Scope::Account(a) => vec![Some(a.clone())],
            Scope::AllConnected => match plan.resumed.accounts.clone() {
                Some(list) => list.into_iter().map(Some).collect(),
                None => match self.connected_accounts()? {
                    Some(list) => list.into_iter().map(Some).collect(),
                    None => return Ok((Some(Outcome::Interrupted), Vec::new())),
                },
            },
        };
        let spinner = progress_spinner("reconcile");
        let mut outcome = None;
        'lists: for account in &accounts {
            for &kind in plan.kinds {
                let list: ListId = (account.clone(), kind);
                let mut cursor = match plan.resumed.lists.get(&list) {
                    Some(None) => continue,
                    Some(Some(next)) => Some(next.clone()),
                    None => None,
                };
                let Some(filter) = types_filter(kind, plan.types) else {
                    continue;
                };
                loop {
                    spinner.set_message(format!(
                        "{} events{}: {} listed, {} missing",
                        kind.name(),
                        account
                            .as_deref()
                            .map_or_else(String::new, |a| format!(" of {a}")),
                        self.tally.counts.values().map(|c| c.listed).sum::<u64>(),
                        self.tally.missing.values().sum::<u64>()
                    ));
                    let page = match self.handle.block_on(self.api.events_page(
                        kind,
                        plan.window,
                        &filter,
                        account.as_deref(),
                        cursor.as_deref(),
                    )) {
                        Ok(page) => page,
                        Err(ApiError::Interrupted) => {
                            outcome = Some(Outcome::Interrupted);
                            break 'lists;
                        }
                        Err(e) => {
                            spinner.finish_and_clear();
                            return Err(self.failure(e, kind, plan.checkpoint));
                        }
                    };
                    let mut page_counts: BTreeMap<String, TypeCounts> = BTreeMap::new();
                    let mut page_missing = Vec::new();
                    for event in page.items {
                        if !plan.window.contains(event.created_millis)
                            || !plan.filters.matches_type(&event.event_type)
                        {
                            continue;
                        }
                        let c = page_counts.entry(event.event_type.clone()).or_default();
                        c.listed += 1;
                        if plan.archived.contains(&event.id) {
                            c.archived += 1;
                        } else {
                            page_missing.push(Missing {
                                event,
                                kind,
                                account: account.clone(),
                            });
                        }
                    }
                    for m in &page_missing {
                        if self.found_missing(m)?.is_break() {
                            // Interrupted while fetching: the page is not done; a rerun lists
                            // it again.
                            outcome = Some(Outcome::Interrupted);
                            break 'lists;
                        }
                    }
                    for (ty, c) in &page_counts {
                        let total = self.tally.counts.entry(ty.clone()).or_default();
                        total.listed += c.listed;
                        total.archived += c.archived;
                    }
                    self.checkpoint.append(&json!({"page": {
                        "kind": kind.name(),
                        "account": account,
                        "next": page.next,
                        "counts": page_counts
                            .iter()
                            .map(|(ty, c)| (ty.clone(), json!([c.listed, c.archived])))
                            .collect::<serde_json::Map<String, Value>>(),
                        "missing": page_missing.iter().map(Missing::to_json).collect::<Vec<_>>(),
                    }}))?;
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
        }
        spinner.finish_and_clear();
        Ok((outcome, accounts))
    }

    /// Reports a missing event, fetching and archiving it first with `--archive-missing`.
    /// `Break` if interrupted before it was reported.
    fn found_missing(&mut self, m: &Missing) -> Result<ControlFlow<()>, Failure> {
        let archived_now = match &mut self.filler {
            None => None,
            Some(_) if self.fetched.contains(&m.event.id) => Some(true),
            Some(_) => match self.fill(m) {
                Ok(()) => {
                    self.fetched.insert(m.event.id.clone());
                    self.checkpoint.append(&json!({"fetched": m.event.id}))?;
                    self.tally.fetched += 1;
                    Some(true)
                }
                Err(ApiError::Interrupted) => return Ok(ControlFlow::Break(())),
                Err(
                    e @ ApiError::Refused {
                        status: 401 | 403, ..
                    },
                ) => {
                    return Err(Failure::Usage(e.to_string()));
                }
                Err(e) => {
                    eprintln!("FETCH FAILED\t{}\t{e}", m.event.id);
                    self.tally.fetch_failed += 1;
                    Some(false)
                }
            },
        };
        *self
            .tally
            .missing
            .entry(m.event.event_type.clone())
            .or_default() += 1;
        self.report.missing(m, archived_now);
        Ok(ControlFlow::Continue(()))
    }

    /// Fetches a missing event and writes it, durably, as a fetched record.
    fn fill(&mut self, m: &Missing) -> Result<(), ApiError> {
        let Some(filler) = &self.filler else {
            return Ok(());
        };
        let (body, fetched, fetched_at) =
            self.handle
                .block_on(self.api.retrieve(m.kind, &m.event.id, m.account.as_deref()))?;
        let record = encode_fetched(body, &fetched, fetched_at).map_err(|e| {
            ApiError::Protocol(format!(
                "Stripe's event {} is not an archivable event: {e}",
                m.event.id
            ))
        })?;
        if record.event_type() != m.event.event_type {
            return Err(ApiError::Protocol(format!(
                "the event {} Stripe returned has type {:?}, its list said {:?}",
                m.event.id,
                record.event_type(),
                m.event.event_type
            )));
        }
        self.handle.block_on(filler.put(record)).map_err(|e| {
            ApiError::Unavailable(format!(
                "writing {} into {}: {e}",
                m.event.id,
                filler.dir().display()
            ))
        })
    }

    /// Every connected account's id (and the checkpoint line), or `None` if interrupted.
    fn connected_accounts(&mut self) -> Result<Option<Vec<String>>, Failure> {
        let mut accounts = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            match self
                .handle
                .block_on(self.api.accounts_page(cursor.as_deref()))
            {
                Ok(page) => {
                    accounts.extend(page.items);
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(ApiError::Interrupted) => return Ok(None),
                Err(e) => {
                    let hint = if matches!(
                        e,
                        ApiError::Refused {
                            status: 401 | 403,
                            ..
                        }
                    ) {
                        " (--all-accounts lists the platform's connected accounts: the key needs \
                         the Connect accounts read permission)"
                    } else {
                        ""
                    };
                    return Err(Failure::Usage(format!("{e}{hint}")));
                }
            }
        }
        self.checkpoint.append(&json!({ "accounts": accounts }))?;
        Ok(Some(accounts))
    }

    /// The failure an error of a list is.
    fn failure(&self, e: ApiError, kind: Kind, checkpoint: Option<&Path>) -> Failure {
        let resume = match checkpoint {
            Some(path) => format!(
                "; run it again with --checkpoint {} to continue",
                path.display()
            ),
            None => String::new(),
        };
        match e {
            ApiError::Refused { status, .. } => {
                let hint = match (status, kind) {
                    (401 | 403, Kind::Thin) if self.api.key_is_restricted() => {
                        " (the v2 API may not take restricted keys: give a secret key, or \
                         --kind snapshot to list snapshot events only)"
                    }
                    (401 | 403, _) => {
                        " (check the key: a secret key, or a restricted key with the Events \
                         read permission)"
                    }
                    _ => "",
                };
                Failure::Usage(format!("{e}{hint}"))
            }
            other => Failure::Runtime(format!("listing {} events: {other}{resume}", kind.name())),
        }
    }
}

/// The summary of a run.
struct Summary<'s> {
    window: Window,
    clamped: bool,
    kinds: &'s [Kind],
    scope: &'s Scope,
    accounts: &'s [Option<String>],
    tally: &'s Tally,
    archive_records: u64,
    unreadable: u64,
    archive_missing: Option<&'s Path>,
    requests: u64,
    key: String,
    api: String,
    complete: bool,
}

impl Summary<'_> {
    fn totals(&self) -> (u64, u64, u64) {
        let listed = self.tally.counts.values().map(|c| c.listed).sum();
        let archived = self.tally.counts.values().map(|c| c.archived).sum();
        (listed, archived, self.tally.missing.values().sum())
    }

    fn types(&self) -> BTreeMap<&str, (u64, u64, u64)> {
        let mut out: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        for (ty, c) in &self.tally.counts {
            let e = out.entry(ty.as_str()).or_default();
            e.0 += c.listed;
            e.1 += c.archived;
        }
        for (ty, n) in &self.tally.missing {
            out.entry(ty.as_str()).or_default().2 += n;
        }
        out
    }

    fn to_json(&self) -> Value {
        let (listed, archived, missing) = self.totals();
        json!({
            "report": "summary",
            "since": at(self.window.since),
            "until": at(self.window.until),
            "clamped": self.clamped,
            "kinds": self.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "scope": self.scope.name(),
            "accounts": match self.scope {
                Scope::AllConnected => json!(self.accounts.iter().flatten().collect::<Vec<_>>()),
                _ => Value::Null,
            },
            "listed": listed,
            "archived": archived,
            "missing": missing,
            "by_type": self.types().into_iter().map(|(ty, (l, a, m))| {
                (ty.to_owned(), json!({"listed": l, "archived": a, "missing": m}))
            }).collect::<serde_json::Map<String, Value>>(),
            "fetched": self.archive_missing.map(|_| self.tally.fetched),
            "fetch_failed": self.archive_missing.map(|_| self.tally.fetch_failed),
            "archive_records": self.archive_records,
            "unreadable": self.unreadable,
            "requests": self.requests,
            "key": self.key,
            "api": self.api,
            "complete": self.complete,
        })
    }

    fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let (listed, archived, missing) = self.totals();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "window: events created from {} to {} (excluded){}",
            at(self.window.since),
            at(self.window.until),
            if self.clamped {
                ", clamped to Stripe's 30 days"
            } else {
                ""
            }
        );
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        let scope = match self.scope {
            Scope::Own => "the key's own account".to_owned(),
            Scope::Account(a) => format!("connected account {a}"),
            Scope::AllConnected => {
                format!("{} connected account(s)", self.accounts.len())
            }
        };
        let _ = writeln!(s, "lists: {} events of {scope}", kinds.join(" and "));
        let _ = writeln!(
            s,
            "listed: {listed}  archived: {archived}  missing: {missing}"
        );
        if !self.tally.counts.is_empty() || !self.tally.missing.is_empty() {
            let _ = writeln!(s, "by type:    listed   archived    missing  type");
            for (ty, (l, a, m)) in self.types() {
                let _ = writeln!(s, "        {l:>10} {a:>10} {m:>10}  {ty}");
            }
        }
        if let Some(dir) = self.archive_missing {
            let _ = writeln!(
                s,
                "fetched and archived into {}: {}  fetch failed: {}",
                dir.display(),
                self.tally.fetched,
                self.tally.fetch_failed
            );
        }
        let _ = writeln!(
            s,
            "archive: {} records read (received since {}), unreadable: {}",
            self.archive_records,
            at(self.window.since - millis(ARCHIVE_LOOKBACK)),
            self.unreadable
        );
        let _ = writeln!(
            s,
            "requests to {}: {} (key {})",
            self.api, self.requests, self.key
        );
        if !self.complete {
            let _ = writeln!(s, "INCOMPLETE: interrupted before every list was read");
        }
        if self.unreadable > 0 {
            let _ = writeln!(
                s,
                "unreadable lines or segments: events in them cannot be counted as archived"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_events_round_trip_through_the_checkpoint() {
        let m = Missing {
            event: Listed {
                id: "evt_1".into(),
                event_type: "invoice.paid".into(),
                created_millis: 1_795_731_281_000,
                created: "2026-11-26T22:14:41Z".into(),
                pending_webhooks: Some(1),
            },
            kind: Kind::Snapshot,
            account: Some("acct_1".into()),
        };
        assert_eq!(Missing::from_json(&m.to_json()), Some(m.clone()));
        let thin = Missing {
            event: Listed {
                pending_webhooks: None,
                ..m.event.clone()
            },
            kind: Kind::Thin,
            account: None,
        };
        assert_eq!(Missing::from_json(&thin.to_json()), Some(thin));
    }

    #[test]
    fn a_checkpoint_is_read_back_and_refused_for_another_run() {
        let header = json!({"reconcile_checkpoint": 1, "window": {"since": 1, "until": 2}});
        let m = json!({"id":"evt_1","type":"a","created":"x","created_millis":1,"pending_webhooks":null,"kind":"thin","account":null});
        let lines = vec![
            header.to_string(),
            json!({"accounts": ["acct_1", "acct_2"]}).to_string(),
            json!({"page": {"kind": "snapshot", "account": "acct_1", "next": "evt_9", "counts": {"a": [3, 2]}, "missing": []}}).to_string(),
            json!({"page": {"kind": "thin", "account": "acct_1", "next": null, "counts": {"a": [1, 0]}, "missing": [m]}}).to_string(),
            json!({"fetched": "evt_1"}).to_string(),
        ];
        let path = Path::new("ck");
        let r = Resumed::read(&lines, &header, path).expect("read");
        assert_eq!(
            r.accounts,
            Some(vec!["acct_1".to_owned(), "acct_2".to_owned()])
        );
        assert_eq!(
            r.lists.get(&(Some("acct_1".to_owned()), Kind::Snapshot)),
            Some(&Some("evt_9".to_owned()))
        );
        assert_eq!(
            r.lists.get(&(Some("acct_1".to_owned()), Kind::Thin)),
            Some(&None)
        );
        assert_eq!(
            r.counts["a"],
            TypeCounts {
                listed: 4,
                archived: 2
            }
        );
        assert_eq!(r.missing.len(), 1);
        assert!(r.fetched.contains("evt_1"));
        let other = json!({"reconcile_checkpoint": 1, "window": {"since": 1, "until": 3}});
        let err = Resumed::read(&lines, &other, path).expect_err("another run");
        assert!(err.to_string().contains("other arguments"), "{err}");
        let err = Resumed::read(&[header.to_string(), "{}".to_owned()], &header, path)
            .expect_err("unknown line");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn windows_are_clamped_to_stripes_thirty_days() {
        let now = 1_800_000_000_000;
        let args = |since: Option<i64>, until: Option<i64>| ReconcileArgs {
            source: ".".into(),
            since: since.map(at),
            until: until.map(at),
            types: vec![],
            kinds: vec![Kind::Snapshot],
            api_key_file: None,
            account: None,
            all_accounts: false,
            json: false,
            checkpoint: None,
            archive_missing: None,
            ca_file: None,
            v2_stripe_version: DEFAULT_V2_VERSION.into(),
            retries: 0,
            timeout_secs: 1,
        };
        let thirty = millis(RETENTION);
        assert_eq!(
            window(&args(None, None), now).expect("default"),
            (
                Window {
                    since: now - thirty,
                    until: now
                },
                false
            )
        );
        assert_eq!(
            window(&args(Some(now - 2 * thirty), Some(now - 1000)), now).expect("clamped"),
            (
                Window {
                    since: now - thirty,
                    until: now - 1000
                },
                true
            )
        );
        let err = window(&args(Some(now - 10), Some(now - 10)), now).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let err = window(
            &args(Some(now - 2 * thirty), Some(now - 2 * thirty + 5)),
            now,
        )
        .expect_err("all older than 30 days");
        assert!(err.to_string().contains("30 days"), "{err}");
        let relative = ReconcileArgs {
            since: Some("now-4d".into()),
            until: Some("now-3d".into()),
            ..args(None, None)
        };
        assert_eq!(
            window(&relative, now).expect("relative"),
            (
                Window {
                    since: now - 4 * 86_400_000,
                    until: now - 3 * 86_400_000
                },
                false
            )
        );
    }

    #[test]
    fn times_are_instants_dates_or_relative_to_now() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("now-90m", now), Ok(now - 90 * 60_000));
        assert_eq!(parse_time("now-2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("now-30s", now), Ok(now - 30_000));
        assert_eq!(parse_time("2026-11-26", now), Ok(1_795_651_200_000));
        for bad in [
            "now-",
            "now-d",
            "now-4w",
            "now-1.5d",
            "now--1d",
            "yesterday",
            "now+1d",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
            assert!(check_time(bad).is_err(), "{bad}");
        }
        assert_eq!(check_time("now-4d").as_deref(), Ok("now-4d"));
    }
}
