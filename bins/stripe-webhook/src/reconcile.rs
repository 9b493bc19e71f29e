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
//! next page is asked for (see [`Resumed`]): a rerun with the same arguments reads the archive
//! again and continues after the last page that completed.
//!
//! [`reconcile`] is in two steps: [`plan`] decides what to do from the arguments, the clock and
//! the checkpoint's lines alone (a [`Plan`]: the window, the lists, what an earlier run did),
//! then [`execute`] reads the archive and Stripe's lists, and reports.
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
use serde::{Deserialize, Serialize};
use stripe_webhook_envelope::{ARCHIVE_PREFIX, ReceivedAt, encode_fetched};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_file::{FileSink, FileSinkConfig};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::append_log::AppendLog;
use crate::archive::{Archive, Source, progress_spinner};
use crate::filter::{Filters, parse_instant};
use crate::select::for_each_selected;
use crate::stripe::{
    ApiBase, ApiError, ApiKey, DEFAULT_API_BASE, DEFAULT_V2_VERSION, Kind, Listed, StripeApi,
    Window, at, types_filter,
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
    /// From `--account` and `--all-accounts`.
    fn from_args(args: &ReconcileArgs) -> Result<Scope, Failure> {
        match (&args.account, args.all_accounts) {
            (Some(account), _) if !account.starts_with("acct_") => Err(Failure::Usage(format!(
                "--account {account:?}: a connected account id starts with acct_"
            ))),
            (Some(account), _) => Ok(Scope::Account(account.clone())),
            (None, true) => Ok(Scope::AllConnected),
            (None, false) => Ok(Scope::Own),
        }
    }

    /// Its name in checkpoints and `--json` summaries.
    fn name(&self) -> String {
        match self {
            Scope::Own => "own".to_owned(),
            Scope::Account(a) => a.clone(),
            Scope::AllConnected => "all-accounts".to_owned(),
        }
    }
}

/// An event Stripe lists and the archive lacks; in the checkpoint, the listed event's fields
/// with its `kind` and `account`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Missing {
    #[serde(flatten)]
    event: Listed,
    kind: Kind,
    account: Option<String>,
}

/// A missing event as `--json` reports it (docs/reconcile.md, "Output").
///
/// The members are declared in the order reconcile has always printed them (sorted by name):
/// consumers may compare reports byte for byte.
#[derive(Debug, Serialize)]
struct MissingReport<'m> {
    account: Option<&'m str>,
    /// `None` without `--archive-missing`, else whether it was fetched and written.
    archived_now: Option<bool>,
    created: &'m str,
    created_millis: i64,
    id: &'m str,
    kind: Kind,
    pending_webhooks: Option<u64>,
    /// `"missing"`.
    report: &'static str,
    #[serde(rename = "type")]
    event_type: &'m str,
}

impl<'m> MissingReport<'m> {
    fn new(m: &'m Missing, archived_now: Option<bool>) -> MissingReport<'m> {
        MissingReport {
            account: m.account.as_deref(),
            archived_now,
            created: &m.event.created,
            created_millis: m.event.created_millis,
            id: &m.event.id,
            kind: m.kind,
            pending_webhooks: m.event.pending_webhooks,
            report: "missing",
            event_type: &m.event.event_type,
        }
    }
}

/// Listed and archived counts of one type; in the checkpoint `[listed, archived]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
struct TypeCounts {
    listed: u64,
    archived: u64,
}

impl From<(u64, u64)> for TypeCounts {
    fn from((listed, archived): (u64, u64)) -> TypeCounts {
        TypeCounts { listed, archived }
    }
}

impl From<TypeCounts> for (u64, u64) {
    fn from(c: TypeCounts) -> (u64, u64) {
        (c.listed, c.archived)
    }
}

/// One list: an account (`None`: the key's own) and a kind.
type ListId = (Option<String>, Kind);

/// A checkpoint's first line: the run's arguments and its effective window, fixed when the
/// checkpoint is created (a default or relative `--since` would otherwise move with the clock
/// between runs). A rerun whose arguments give another header is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The format's version: [`CHECKPOINT_VERSION`].
    reconcile_checkpoint: u32,
    /// `--since` and `--until` as given.
    requested: Requested,
    /// The `--type` globs as given.
    types: Vec<String>,
    /// The kinds listed, sorted.
    kinds: Vec<Kind>,
    /// [`Scope::name`].
    scope: String,
    /// The API base.
    api: String,
    window: Window,
    /// Whether `--since` was clamped to Stripe's 30 days.
    clamped: bool,
}

/// The version of the checkpoint's format.
const CHECKPOINT_VERSION: u32 = 1;

/// `--since` and `--until` as given, in a checkpoint's [`Header`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requested {
    since: Option<String>,
    until: Option<String>,
}

/// A checkpoint line after the [`Header`]: `{"accounts":[…]}`, `{"page":{…}}` or
/// `{"fetched":"evt_…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    /// Every connected account (`--all-accounts`), once listed.
    Accounts(Vec<String>),
    /// A page read and compared.
    Page(PageDone),
    /// A missing event written into the `--archive-missing` directory (durably, before the line).
    Fetched(String),
}

/// A completed page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PageDone {
    kind: Kind,
    account: Option<String>,
    /// Where the list continues (the last id for v1, `next_page_url` for v2); `None` once the
    /// list is done.
    next: Option<String>,
    /// The page's counts by type.
    counts: BTreeMap<String, TypeCounts>,
    /// The page's missing events.
    missing: Vec<Missing>,
}

/// What a checkpoint says an earlier run did.
///
/// A checkpoint is an [`AppendLog`] of JSON lines: the [`Header`] first, then [`Entry`] lines:
/// `{"accounts":[…]}` once the connected accounts are listed (`--all-accounts`), one
/// `{"page":{"kind":…,"account":…,"next":…,"counts":{type:[listed,archived]},"missing":[…]}}`
/// per completed page (`next` is `null` once the list is done), and one `{"fetched":"evt_…"}`
/// per missing event written into the `--archive-missing` directory.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resumed {
    accounts: Option<Vec<String>>,
    /// Per list: where its next page starts (`None`: done).
    lists: BTreeMap<ListId, Option<String>>,
    counts: BTreeMap<String, TypeCounts>,
    missing: Vec<Missing>,
    fetched: HashSet<String>,
}

impl Resumed {
    /// Reads the lines after the header (line 2 onwards of the checkpoint `path`).
    fn read(entries: &[String], path: &Path) -> Result<Resumed, Failure> {
        let mut resumed = Resumed::default();
        for (n, line) in (2..).zip(entries) {
            let entry: Entry = serde_json::from_str(line).map_err(|e| {
                Failure::Usage(format!(
                    "--checkpoint {} line {n}: {e}; it is not a reconcile checkpoint of this run \
                     (use a new file)",
                    path.display()
                ))
            })?;
            match entry {
                Entry::Accounts(ids) => resumed.accounts = Some(ids),
                Entry::Page(page) => {
                    resumed.lists.insert((page.account, page.kind), page.next);
                    for (ty, c) in page.counts {
                        let total = resumed.counts.entry(ty).or_default();
                        total.listed += c.listed;
                        total.archived += c.archived;
                    }
                    resumed.missing.extend(page.missing);
                }
                Entry::Fetched(id) => {
                    resumed.fetched.insert(id);
                }
            }
        }
        Ok(resumed)
    }
}

/// The optional checkpoint.
struct Checkpoint(Option<(AppendLog, PathBuf)>);

impl Checkpoint {
    /// Appends `line` (the [`Header`] or an [`Entry`]) as one JSON line, synced.
    fn append(&mut self, line: &impl Serialize) -> Result<(), Failure> {
        if let Some((log, path)) = &mut self.0 {
            let fail = |e: &dyn std::fmt::Display| {
                Failure::Runtime(format!("--checkpoint {}: {e}", path.display()))
            };
            let text = serde_json::to_string(line).map_err(|e| fail(&e))?;
            log.append(&text).map_err(|e| fail(&e))?;
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
            json_line(&MissingReport::new(m, archived_now))
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

/// `report` as one line of JSON.
fn json_line(report: &impl Serialize) -> String {
    // Reports hold strings, numbers, booleans and maps with string keys only, which always
    // serialize.
    serde_json::to_string(report).expect("a report serializes")
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

/// What a run will do, decided before the archive is read or a request is sent: a function of
/// the arguments, the API base, the clock and the checkpoint's lines only (see [`plan`]).
#[derive(Debug)]
struct Plan {
    source: Source,
    scope: Scope,
    /// The kinds listed, sorted, without duplicates.
    kinds: Vec<Kind>,
    /// The `--type` globs.
    types: Vec<String>,
    /// The checkpoint's first line, with the run's window: the checkpoint's own when it has one.
    header: Header,
    /// Whether a checkpoint holds an earlier run's progress (its header is not written again).
    resuming: bool,
    /// What the earlier run did.
    resumed: Resumed,
    /// The archive's records compared: received from [`ARCHIVE_LOOKBACK`] before the window to
    /// the archive's end, of the `--type` globs.
    filters: Filters,
    /// What stderr is warned of before the run.
    warnings: Vec<String>,
}

/// One list to read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ListPlan {
    /// The connected account (`None`: the key's own).
    account: Option<String>,
    kind: Kind,
    /// The exact types Stripe is asked to filter by ([`types_filter`]; empty: no filter).
    types: Vec<String>,
    /// Where it starts: after the last page an earlier run completed, or (`None`) at its start.
    cursor: Option<String>,
}

impl Plan {
    /// The window of event creation times.
    fn window(&self) -> Window {
        self.header.window
    }

    /// The accounts whose lists are read (`None`: the key's own account), or `None` when every
    /// connected account must be listed first.
    fn accounts(&self) -> Option<Vec<Option<String>>> {
        match &self.scope {
            Scope::Own => Some(vec![None]),
            Scope::Account(a) => Some(vec![Some(a.clone())]),
            Scope::AllConnected => self
                .resumed
                .accounts
                .as_ref()
                .map(|ids| ids.iter().cloned().map(Some).collect()),
        }
    }

    /// The lists to read for `accounts`, in order (each account's kinds), but not those an
    /// earlier run completed, nor those of a kind no event of which can match the `--type`
    /// globs.
    fn lists(&self, accounts: &[Option<String>]) -> Vec<ListPlan> {
        let mut lists = Vec::new();
        for account in accounts {
            for &kind in &self.kinds {
                let cursor = match self.resumed.lists.get(&(account.clone(), kind)) {
                    Some(None) => continue,
                    Some(Some(next)) => Some(next.clone()),
                    None => None,
                };
                let Some(types) = types_filter(kind, &self.types) else {
                    continue;
                };
                lists.push(ListPlan {
                    account: account.clone(),
                    kind,
                    types,
                    cursor,
                });
            }
        }
        lists
    }

    /// Compares a page of `list` with the `archived` ids: the counts by type and the missing
    /// events of its items created in the window with a type the `--type` globs match.
    fn compare(
        &self,
        list: &ListPlan,
        items: Vec<Listed>,
        archived: &HashSet<String>,
    ) -> (BTreeMap<String, TypeCounts>, Vec<Missing>) {
        let mut counts: BTreeMap<String, TypeCounts> = BTreeMap::new();
        let mut missing = Vec::new();
        for event in items {
            if !self.window().contains(event.created_millis)
                || !self.filters.matches_type(&event.event_type)
            {
                continue;
            }
            let c = counts.entry(event.event_type.clone()).or_default();
            c.listed += 1;
            if archived.contains(&event.id) {
                c.archived += 1;
            } else {
                missing.push(Missing {
                    event,
                    kind: list.kind,
                    account: list.account.clone(),
                });
            }
        }
        (counts, missing)
    }
}

/// Plans a run: checks the arguments, fixes the window (the checkpoint's when it has one, else
/// the arguments' at `now`, in Unix milliseconds) and reads what the `lines` of the checkpoint
/// `path` say an earlier run did. `api` is the API base ([`StripeApi::base`]).
fn plan(
    args: &ReconcileArgs,
    api: &str,
    now: i64,
    checkpoint: Option<(&Path, &[String])>,
) -> Result<Plan, Failure> {
    let source = Source::parse(&args.source)?;
    let scope = Scope::from_args(args)?;
    let mut kinds = args.kinds.clone();
    kinds.sort();
    kinds.dedup();
    let header = |window, clamped| Header {
        reconcile_checkpoint: CHECKPOINT_VERSION,
        requested: Requested {
            since: args.since.clone(),
            until: args.until.clone(),
        },
        types: args.types.clone(),
        kinds: kinds.clone(),
        scope: scope.name(),
        api: api.to_owned(),
        window,
        clamped,
    };
    let (header, resumed, resuming) = match checkpoint {
        Some((path, [first, entries @ ..])) => {
            let found: Header = serde_json::from_str(first).map_err(|_| {
                Failure::Usage(format!(
                    "--checkpoint {} is not a reconcile checkpoint (use a new file)",
                    path.display()
                ))
            })?;
            if found != header(found.window, found.clamped) {
                return Err(Failure::Usage(format!(
                    "--checkpoint {} was written by a reconcile with other arguments (window, \
                     types, kinds, accounts or API base): {first}; use a new file",
                    path.display()
                )));
            }
            (found, Resumed::read(entries, path)?, true)
        }
        _ => {
            let (window, clamped) = window(args, now)?;
            (header(window, clamped), Resumed::default(), false)
        }
    };
    let since = header.window.since;
    let mut warnings = Vec::new();
    if header.clamped {
        warnings.push(format!(
            "Stripe lists events of the last 30 days only: --since is clamped to {}",
            at(since)
        ));
    }
    if since < now - millis(RETENTION) {
        warnings.push(format!(
            "the checkpoint's window starts at {}, more than 30 days ago: Stripe no longer lists \
             the oldest events of it",
            at(since)
        ));
    }
    Ok(Plan {
        source,
        scope,
        kinds,
        types: args.types.clone(),
        filters: Filters::received_between(since - millis(ARCHIVE_LOOKBACK), None, &args.types),
        header,
        resuming,
        resumed,
        warnings,
    })
}

/// Reconciles the archive with Stripe. Call from outside the runtime (it blocks on `handle`).
pub(crate) fn reconcile(
    archive: &Archive,
    handle: &Handle,
    args: &ReconcileArgs,
) -> Result<Outcome, Failure> {
    let _runtime = handle.enter();
    let key = ApiKey::load(args.api_key_file.as_deref()).map_err(Failure::Usage)?;
    let base = std::env::var("STRIPE_API_BASE").unwrap_or_else(|_| DEFAULT_API_BASE.to_owned());
    let base = ApiBase::parse(&base).map_err(Failure::Usage)?;
    let interrupt = crate::retry::on_ctrl_c(
        handle,
        "stopping after the current request (a --checkpoint keeps what is done)",
    );
    let api = StripeApi::new(
        base,
        args.ca_file.as_deref(),
        key,
        args.v2_stripe_version.clone(),
        args.retries,
        Duration::from_secs(args.timeout_secs.max(1)),
        interrupt.clone(),
    )
    .map_err(Failure::Usage)?;
    let failed = |path: &Path, e: std::io::Error| {
        Failure::Runtime(format!("--checkpoint {}: {e}", path.display()))
    };
    let lines = match &args.checkpoint {
        Some(path) => AppendLog::read(path).map_err(|e| failed(path, e))?,
        None => Vec::new(),
    };
    let now = ReceivedAt::now().unix_millis();
    let checkpoint_lines = args.checkpoint.as_deref().map(|p| (p, lines.as_slice()));
    let plan = plan(args, &api.base(), now, checkpoint_lines)?;
    // Created only once the plan is accepted.
    let log = match &args.checkpoint {
        Some(path) => Some((
            AppendLog::open(path).map_err(|e| failed(path, e))?.0,
            path.clone(),
        )),
        None => None,
    };
    execute(
        archive,
        handle,
        args,
        &plan,
        api,
        Checkpoint(log),
        &interrupt,
    )
}

/// Carries out `plan`: reads the archive, then Stripe's lists, reporting each missing event
/// (fetching and archiving it with `--archive-missing`), then the summary.
fn execute(
    archive: &Archive,
    handle: &Handle,
    args: &ReconcileArgs,
    plan: &Plan,
    mut api: StripeApi,
    mut checkpoint: Checkpoint,
    interrupt: &CancellationToken,
) -> Result<Outcome, Failure> {
    match &checkpoint.0 {
        Some((_, path)) if plan.resuming => eprintln!(
            "reconcile: resuming from --checkpoint {} ({} page(s) done, {} missing so far)",
            path.display(),
            plan.resumed.lists.len(),
            plan.resumed.missing.len()
        ),
        _ => checkpoint.append(&plan.header)?,
    }
    for warning in &plan.warnings {
        eprintln!("reconcile: WARNING: {warning}");
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
    let mut archived: HashSet<String> = HashSet::new();
    let counts = for_each_selected(
        archive,
        &plan.source,
        &plan.filters,
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

    // 2. Stripe's lists.
    let mut report = Report {
        json: args.json,
        out: std::io::stdout(),
    };
    let mut tally = Tally {
        counts: plan.resumed.counts.clone(),
        ..Tally::default()
    };
    let mut fetched = plan.resumed.fetched.clone();
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
        run.lists(plan, &archived)
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

    // 3. The summary.
    let summary = Summary {
        window: plan.window(),
        clamped: plan.header.clamped,
        kinds: &plan.kinds,
        scope: &plan.scope,
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
        println!("{}", json_line(&summary.report()));
    } else {
        eprint!("{}", summary.to_text());
    }
    Ok(outcome)
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
    /// Reports the missing events a previous run found, then reads every list of `plan` page by
    /// page, comparing with the `archived` ids: `Some(Interrupted)` if interrupted, and the
    /// accounts listed.
    fn lists(
        &mut self,
        plan: &Plan,
        archived: &HashSet<String>,
    ) -> Result<(Option<Outcome>, Vec<Option<String>>), Failure> {
        // The missing events a previous run found: still missing unless they arrived since (a
        // late delivery; one this reconcile fetched stays reported).
        for m in &plan.resumed.missing {
            if archived.contains(&m.event.id) && !self.fetched.contains(&m.event.id) {
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
        let accounts = match plan.accounts() {
            Some(accounts) => accounts,
            None => match self.connected_accounts()? {
                Some(ids) => ids.into_iter().map(Some).collect(),
                None => return Ok((Some(Outcome::Interrupted), Vec::new())),
            },
        };
        let spinner = progress_spinner("reconcile");
        let mut outcome = None;
        'lists: for list in plan.lists(&accounts) {
            let mut cursor = list.cursor.clone();
            loop {
                spinner.set_message(format!(
                    "{} events{}: {} listed, {} missing",
                    list.kind.name(),
                    list.account
                        .as_deref()
                        .map_or_else(String::new, |a| format!(" of {a}")),
                    self.tally.counts.values().map(|c| c.listed).sum::<u64>(),
                    self.tally.missing.values().sum::<u64>()
                ));
                let page = match self.handle.block_on(self.api.events_page(
                    list.kind,
                    plan.window(),
                    &list.types,
                    list.account.as_deref(),
                    cursor.as_deref(),
                )) {
                    Ok(page) => page,
                    Err(ApiError::Interrupted) => {
                        outcome = Some(Outcome::Interrupted);
                        break 'lists;
                    }
                    Err(e) => {
                        spinner.finish_and_clear();
                        return Err(self.failure(e, list.kind));
                    }
                };
                let (counts, missing) = plan.compare(&list, page.items, archived);
                for m in &missing {
                    if self.found_missing(m)?.is_break() {
                        // Interrupted while fetching: the page is not done; a rerun lists it
                        // again.
                        outcome = Some(Outcome::Interrupted);
                        break 'lists;
                    }
                }
                for (ty, c) in &counts {
                    let total = self.tally.counts.entry(ty.clone()).or_default();
                    total.listed += c.listed;
                    total.archived += c.archived;
                }
                self.checkpoint.append(&Entry::Page(PageDone {
                    kind: list.kind,
                    account: list.account.clone(),
                    next: page.next.clone(),
                    counts,
                    missing,
                }))?;
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
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
                    self.checkpoint
                        .append(&Entry::Fetched(m.event.id.clone()))?;
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
        self.checkpoint.append(&Entry::Accounts(accounts.clone()))?;
        Ok(Some(accounts))
    }

    /// The failure an error of a list is.
    fn failure(&self, e: ApiError, kind: Kind) -> Failure {
        let resume = match &self.checkpoint.0 {
            Some((_, path)) => format!(
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

    fn types(&self) -> BTreeMap<&str, TypeTotals> {
        let mut out: BTreeMap<&str, TypeTotals> = BTreeMap::new();
        for (ty, c) in &self.tally.counts {
            let e = out.entry(ty.as_str()).or_default();
            e.listed += c.listed;
            e.archived += c.archived;
        }
        for (ty, n) in &self.tally.missing {
            out.entry(ty.as_str()).or_default().missing += n;
        }
        out
    }

    /// The `--json` summary.
    fn report(&self) -> SummaryReport<'_> {
        let (listed, archived, missing) = self.totals();
        let counted = |n: u64| self.archive_missing.map(|_| n);
        SummaryReport {
            accounts: match self.scope {
                Scope::AllConnected => {
                    Some(self.accounts.iter().flatten().map(String::as_str).collect())
                }
                _ => None,
            },
            api: &self.api,
            archive_records: self.archive_records,
            archived,
            by_type: self.types(),
            clamped: self.clamped,
            complete: self.complete,
            fetch_failed: counted(self.tally.fetch_failed),
            fetched: counted(self.tally.fetched),
            key: &self.key,
            kinds: self.kinds,
            listed,
            missing,
            report: "summary",
            requests: self.requests,
            scope: self.scope.name(),
            since: at(self.window.since),
            unreadable: self.unreadable,
            until: at(self.window.until),
        }
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
            for (ty, t) in self.types() {
                let (l, a, m) = (t.listed, t.archived, t.missing);
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

/// The summary as `--json` reports it, last (docs/reconcile.md, "Output").
///
/// The members are declared in the order reconcile has always printed them (sorted by name):
/// consumers may compare reports byte for byte.
#[derive(Debug, Serialize)]
struct SummaryReport<'s> {
    /// With `--all-accounts`, the connected accounts listed.
    accounts: Option<Vec<&'s str>>,
    api: &'s str,
    archive_records: u64,
    archived: u64,
    by_type: BTreeMap<&'s str, TypeTotals>,
    clamped: bool,
    complete: bool,
    /// With `--archive-missing` only.
    fetch_failed: Option<u64>,
    /// With `--archive-missing` only.
    fetched: Option<u64>,
    key: &'s str,
    kinds: &'s [Kind],
    listed: u64,
    missing: u64,
    /// `"summary"`.
    report: &'static str,
    requests: u64,
    scope: String,
    since: String,
    unreadable: u64,
    until: String,
}

/// The counts of one type in the summary (members sorted, as [`SummaryReport`]'s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
struct TypeTotals {
    archived: u64,
    listed: u64,
    missing: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const API: &str = "https://api.stripe.com";

    /// `reconcile .` with every option at its default but the kinds (snapshot only).
    fn args() -> ReconcileArgs {
        ReconcileArgs {
            source: ".".into(),
            since: None,
            until: None,
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
        }
    }

    fn listed(id: &str, event_type: &str, created_millis: i64) -> Listed {
        Listed {
            id: id.into(),
            event_type: event_type.into(),
            created_millis,
            created: at(created_millis),
            pending_webhooks: Some(1),
        }
    }

    fn missing_event() -> Missing {
        Missing {
            event: Listed {
                id: "evt_1".into(),
                event_type: "invoice.paid".into(),
                created_millis: 1_795_731_281_000,
                created: "2026-11-26T22:14:41Z".into(),
                pending_webhooks: Some(1),
            },
            kind: Kind::Snapshot,
            account: Some("acct_1".into()),
        }
    }

    #[test]
    fn missing_events_round_trip_through_the_checkpoint() {
        let m = missing_event();
        let line = serde_json::to_string(&m).expect("serialize");
        assert_eq!(serde_json::from_str::<Missing>(&line).expect("read"), m);
        let thin = Missing {
            event: Listed {
                pending_webhooks: None,
                ..m.event.clone()
            },
            kind: Kind::Thin,
            account: None,
        };
        let line = serde_json::to_string(&thin).expect("serialize");
        assert_eq!(serde_json::from_str::<Missing>(&line).expect("read"), thin);
        // As the hand-written code of 0.1 wrote it (keys sorted), and without the optional keys.
        let old = r#"{"account":"acct_1","created":"2026-11-26T22:14:41Z","created_millis":1795731281000,"id":"evt_1","kind":"snapshot","pending_webhooks":1,"type":"invoice.paid"}"#;
        assert_eq!(serde_json::from_str::<Missing>(old).expect("old"), m);
        let bare = r#"{"created":"2026-11-26T22:14:41Z","created_millis":1795731281000,"id":"evt_1","kind":"thin","type":"invoice.paid"}"#;
        assert_eq!(serde_json::from_str::<Missing>(bare).expect("bare"), thin);
        let bad = r#"{"created":"x","created_millis":1,"id":"evt_1","kind":"other","type":"a"}"#;
        assert!(
            serde_json::from_str::<Missing>(bad).is_err(),
            "an unknown kind"
        );
    }

    #[test]
    fn json_reports_keep_their_bytes() {
        let m = missing_event();
        assert_eq!(
            json_line(&MissingReport::new(&m, Some(true))),
            r#"{"account":"acct_1","archived_now":true,"created":"2026-11-26T22:14:41Z","created_millis":1795731281000,"id":"evt_1","kind":"snapshot","pending_webhooks":1,"report":"missing","type":"invoice.paid"}"#
        );
        let tally = Tally {
            counts: BTreeMap::from([("invoice.paid".to_owned(), TypeCounts::from((20, 19)))]),
            missing: BTreeMap::from([("invoice.paid".to_owned(), 1)]),
            fetched: 1,
            fetch_failed: 0,
        };
        let summary = |scope: &Scope, archive_missing: Option<&Path>| {
            let report = Summary {
                window: Window {
                    since: 1_795_731_281_000,
                    until: 1_795_731_290_000,
                },
                clamped: false,
                kinds: &[Kind::Snapshot, Kind::Thin],
                scope,
                accounts: &[Some("acct_1".to_owned()), Some("acct_2".to_owned())],
                tally: &tally,
                archive_records: 151,
                unreadable: 0,
                archive_missing,
                requests: 6,
                key: "rk_live_...Wx9z".into(),
                api: API.into(),
                complete: true,
            };
            json_line(&report.report())
        };
        assert_eq!(
            summary(&Scope::Own, None),
            r#"{"accounts":null,"api":"https://api.stripe.com","archive_records":151,"archived":19,"by_type":{"invoice.paid":{"archived":19,"listed":20,"missing":1}},"clamped":false,"complete":true,"fetch_failed":null,"fetched":null,"key":"rk_live_...Wx9z","kinds":["snapshot","thin"],"listed":20,"missing":1,"report":"summary","requests":6,"scope":"own","since":"2026-11-26T22:14:41.000Z","unreadable":0,"until":"2026-11-26T22:14:50.000Z"}"#
        );
        let all = summary(&Scope::AllConnected, Some(Path::new("dir")));
        assert!(
            all.starts_with(r#"{"accounts":["acct_1","acct_2"],"#)
                && all.contains(r#""fetch_failed":0,"fetched":1,"#)
                && all.contains(r#""scope":"all-accounts","#),
            "{all}"
        );
    }

    /// A checkpoint as the hand-written code of 0.1 wrote it (keys sorted), for `args()` at
    /// [`NOW`].
    fn old_checkpoint() -> Vec<String> {
        let m = r#"{"account":"acct_1","created":"x","created_millis":1,"id":"evt_1","kind":"thin","pending_webhooks":null,"type":"a"}"#;
        vec![
            format!(
                r#"{{"api":"{API}","clamped":false,"kinds":["snapshot"],"reconcile_checkpoint":1,"requested":{{"since":null,"until":null}},"scope":"own","types":[],"window":{{"since":1797408000000,"until":1800000000000}}}}"#
            ),
            r#"{"accounts":["acct_1","acct_2"]}"#.to_owned(),
            r#"{"page":{"account":"acct_1","counts":{"a":[3,2]},"kind":"snapshot","missing":[],"next":"evt_9"}}"#.to_owned(),
            format!(
                r#"{{"page":{{"account":"acct_1","counts":{{"a":[1,0]}},"kind":"thin","missing":[{m}],"next":null}}}}"#
            ),
            r#"{"fetched":"evt_1"}"#.to_owned(),
        ]
    }

    #[test]
    fn a_checkpoint_is_read_back_and_refused_for_another_run() {
        let path = Path::new("ck");
        let lines = old_checkpoint();
        let p = plan(
            &args(),
            API,
            NOW + 86_400_000,
            Some((path, lines.as_slice())),
        )
        .expect("plan");
        assert!(p.resuming);
        assert_eq!(
            p.window(),
            Window {
                since: NOW - millis(RETENTION),
                until: NOW
            },
            "the checkpoint's window, not one from the clock"
        );
        let r = &p.resumed;
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
        assert_eq!(r.missing[0].account.as_deref(), Some("acct_1"));
        assert!(r.fetched.contains("evt_1"));
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("more than 30 days ago")),
            "{:?}",
            p.warnings
        );

        // What this code writes reads back the same.
        let mut written = vec![serde_json::to_string(&p.header).expect("header")];
        written.push(
            serde_json::to_string(&Entry::Accounts(vec!["acct_1".into(), "acct_2".into()]))
                .expect("accounts"),
        );
        for line in &lines[2..] {
            let entry: Entry = serde_json::from_str(line).expect("entry");
            written.push(serde_json::to_string(&entry).expect("entry"));
        }
        let again = plan(&args(), API, NOW, Some((path, written.as_slice()))).expect("plan again");
        assert_eq!(again.header, p.header);
        assert_eq!(again.resumed, p.resumed);

        // Other arguments, another API base: refused.
        let other = ReconcileArgs {
            types: vec!["invoice.*".into()],
            ..args()
        };
        let err = plan(&other, API, NOW, Some((path, lines.as_slice()))).expect_err("another run");
        assert!(err.to_string().contains("other arguments"), "{err}");
        let err = plan(
            &args(),
            "http://127.0.0.1:1",
            NOW,
            Some((path, lines.as_slice())),
        )
        .expect_err("another API");
        assert!(err.to_string().contains("other arguments"), "{err}");
        let err = plan(
            &args(),
            API,
            NOW,
            Some((path, &[lines[0].clone(), "{}".to_owned()][..])),
        )
        .expect_err("unknown line");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = plan(&args(), API, NOW, Some((path, &["[]".to_owned()][..])))
            .expect_err("not a checkpoint");
        assert!(
            err.to_string().contains("not a reconcile checkpoint"),
            "{err}"
        );
        // An empty checkpoint is a new one.
        let new = plan(&args(), API, NOW, Some((path, &[][..]))).expect("new");
        assert!(!new.resuming && new.resumed == Resumed::default());
        assert_eq!(new.header.requested.since, None);
    }

    #[test]
    fn the_plan_checks_the_arguments_and_decides_the_lists() {
        let err = plan(
            &ReconcileArgs {
                account: Some("cus_1".into()),
                ..args()
            },
            API,
            NOW,
            None,
        )
        .expect_err("not an account");
        assert!(err.to_string().contains("acct_"), "{err}");

        let both = ReconcileArgs {
            kinds: vec![Kind::Thin, Kind::Snapshot, Kind::Thin],
            types: vec!["invoice.paid".into()],
            ..args()
        };
        let p = plan(&both, API, NOW, None).expect("plan");
        assert_eq!(p.kinds, [Kind::Snapshot, Kind::Thin], "sorted, once each");
        assert!(!p.resuming && p.warnings.is_empty());
        assert_eq!(p.header.scope, "own");
        assert_eq!(p.accounts(), Some(vec![None]));
        let lists = p.lists(&[None]);
        assert_eq!(
            lists,
            [
                ListPlan {
                    account: None,
                    kind: Kind::Snapshot,
                    types: vec!["invoice.paid".into()],
                    cursor: None
                },
                ListPlan {
                    account: None,
                    kind: Kind::Thin,
                    types: vec![],
                    cursor: None
                }
            ]
        );
        // No snapshot event has a thin event's type: that list is not read.
        let thin_only = ReconcileArgs {
            types: vec!["v1.billing.meter.error_report_triggered".into()],
            ..both
        };
        let p = plan(&thin_only, API, NOW, None).expect("plan");
        let kinds: Vec<Kind> = p.lists(&[None]).iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [Kind::Thin]);

        // Every connected account: listed first, unless a checkpoint has them; lists an earlier
        // run completed are not read again, others continue after their last page.
        let all = ReconcileArgs {
            all_accounts: true,
            kinds: vec![Kind::Snapshot, Kind::Thin],
            ..args()
        };
        let fresh = plan(&all, API, NOW, None).expect("plan");
        assert_eq!(fresh.accounts(), None);
        assert_eq!(fresh.header.scope, "all-accounts");
        let mut lines = old_checkpoint();
        lines[0] = lines[0]
            .replace(r#""kinds":["snapshot"]"#, r#""kinds":["snapshot","thin"]"#)
            .replace(r#""scope":"own""#, r#""scope":"all-accounts""#);
        let p = plan(&all, API, NOW, Some((Path::new("ck"), lines.as_slice()))).expect("resumed");
        let accounts = p.accounts().expect("from the checkpoint");
        assert_eq!(accounts, [Some("acct_1".into()), Some("acct_2".into())]);
        let resumed = p.lists(&accounts);
        assert_eq!(resumed.len(), 3, "acct_1's thin list is done: {resumed:?}");
        assert_eq!(
            (resumed[0].account.as_deref(), resumed[0].kind),
            (Some("acct_1"), Kind::Snapshot)
        );
        assert_eq!(resumed[0].cursor.as_deref(), Some("evt_9"));
        assert!(
            resumed[1..]
                .iter()
                .all(|l| l.account.as_deref() == Some("acct_2") && l.cursor.is_none())
        );
    }

    #[test]
    fn a_page_is_compared_within_the_window_and_the_types() {
        let args = ReconcileArgs {
            since: Some(at(NOW - 10_000)),
            until: Some(at(NOW)),
            types: vec!["invoice.*".into()],
            ..args()
        };
        let p = plan(&args, API, NOW, None).expect("plan");
        let lists = p.lists(&[Some("acct_1".into())]);
        let list = &lists[0];
        let archived: HashSet<String> = ["evt_in".to_owned()].into();
        let (counts, missing) = p.compare(
            list,
            vec![
                listed("evt_in", "invoice.paid", NOW - 5_000),
                listed("evt_gap", "invoice.paid", NOW - 10_000),
                listed("evt_other_type", "charge.succeeded", NOW - 5_000),
                listed("evt_too_late", "invoice.paid", NOW),
                listed("evt_too_early", "invoice.paid", NOW - 10_001),
            ],
            &archived,
        );
        assert_eq!(
            counts,
            BTreeMap::from([("invoice.paid".to_owned(), TypeCounts::from((2, 1)))])
        );
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].event.id, "evt_gap");
        assert_eq!(
            (missing[0].kind, missing[0].account.as_deref()),
            (Kind::Snapshot, Some("acct_1"))
        );
    }

    #[test]
    fn windows_are_clamped_to_stripes_thirty_days() {
        let now = NOW;
        let args = |since: Option<i64>, until: Option<i64>| ReconcileArgs {
            since: since.map(at),
            until: until.map(at),
            ..args()
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
