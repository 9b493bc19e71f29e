//! `replay`: POSTs the exact archived bodies of the selected records to a target, re-signed with
//! its secret and a fresh timestamp, with a rate limit, concurrency, dedupe by id, a dry run and
//! a durable checkpoint of the ids already delivered.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Args;
use stripe_webhook_verify::{Secret, parse_secrets, signature_header};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::archive::{Archive, Source};
use crate::filter::{Filters, SelectArgs};
use crate::http::{Connection, Target};
use crate::record::Body;
use crate::select::for_each_selected;
use crate::{Failure, Outcome};

/// Why a selected record was not sent.
const SKIP_CHECKPOINT: &str = "already sent (in the checkpoint)";
const SKIP_DUPLICATE: &str = "duplicate id (an earlier copy was selected)";
const SKIP_RAW_OFF: &str = "no body stored (record written with raw off): cannot be replayed";

/// Arguments of `replay`.
#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Where to POST the events (plain http:// only), e.g. `http://127.0.0.1:3001/webhook/stripe`.
    #[arg(long, env = "STRIPE_WEBHOOK_URL", required_unless_present = "dry_run")]
    url: Option<String>,
    /// The TARGET's signing secret(s), comma-separated: each body is re-signed with the first one
    /// and a fresh timestamp.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        required_unless_present = "dry_run"
    )]
    secret: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// At most this many requests per second (all connections together); no limit if absent.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Send every copy of an event id (by default only the first copy is sent).
    #[arg(long)]
    no_dedupe: bool,
    /// Read, select, fetch and check bodies, but send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Ids delivered with a 2xx are appended (and synced) here; ids already in it are skipped, so
    /// an interrupted replay resumes where it stopped.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Send (or, in a dry run, count) at most this many records, then stop.
    #[arg(long)]
    limit: Option<u64>,
    /// Retries after a connection error, a timeout, a 429 or a 5xx (with backoff).
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
            println!("failed (no response): {}", self.failed);
            if self.interrupted > 0 {
                println!("not sent (interrupted): {}", self.interrupted);
            }
        }
        println!("skipped: {}", self.skipped.values().sum::<u64>());
        for (why, n) in &self.skipped {
            println!("  {why}: {n}");
        }
        println!("unreadable: {}", self.unreadable);
    }
}

/// The append-only file of ids delivered with a 2xx.
struct Checkpoint {
    file: File,
}

impl Checkpoint {
    /// Opens (creating) `path` and reads the ids it holds. A torn last line (no `\n`: the append
    /// was cut short by a crash) is cut off: that id may be sent once more, never lost.
    fn open(path: &Path) -> io::Result<(Checkpoint, HashSet<String>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        if !existed {
            // Make the new file's directory entry durable too.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
        }
        let mut ids = HashSet::new();
        let mut reader = BufReader::new(&mut file);
        let mut line = Vec::new();
        let mut complete: u64 = 0;
        let mut torn = false;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.pop() != Some(b'\n') {
                torn = true;
                break;
            }
            complete += n as u64;
            let id = String::from_utf8_lossy(&line).trim().to_owned();
            if !id.is_empty() {
                ids.insert(id);
            }
        }
        drop(reader);
        if torn {
            file.set_len(complete)?;
            file.sync_data()?;
        }
        Ok((Checkpoint { file }, ids))
    }

    /// Appends one id and syncs it to disk before returning.
    fn record(&mut self, id: &str) -> io::Result<()> {
        self.file.write_all(format!("{id}\n").as_bytes())?;
        self.file.flush()?;
        self.file.sync_data()
    }
}

struct Job {
    id: String,
    body: Bytes,
}

struct Shared {
    summary: Mutex<Summary>,
    checkpoint: Option<Mutex<Checkpoint>>,
    interrupted: AtomicBool,
}

impl Shared {
    fn summary(&self) -> std::sync::MutexGuard<'_, Summary> {
        self.summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Replays the selected records. Call from outside the runtime (it blocks on `handle`).
pub(crate) fn replay(
    archive: &Archive,
    handle: &Handle,
    args: &ReplayArgs,
) -> Result<Outcome, Failure> {
    let _runtime = handle.enter();
    let source = Source::parse(&args.select.source)?;
    let filters = Filters::from_args(&args.select).map_err(Failure::Usage)?;
    let target = args
        .url
        .as_deref()
        .map(Target::parse)
        .transpose()
        .map_err(Failure::Usage)?;
    let secret: Option<Secret> = match &args.secret {
        Some(list) => Some(
            parse_secrets(list)
                .map_err(|e| Failure::Usage(format!("--secret: {e}")))?
                .swap_remove(0),
        ),
        None => None,
    };
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(Failure::Usage(format!(
            "--rate {rate}: must be a positive number"
        )));
    }
    let (checkpoint, already_sent) = match &args.checkpoint {
        Some(path) => {
            let (c, ids) = Checkpoint::open(path)
                .map_err(|e| Failure::Runtime(format!("--checkpoint {}: {e}", path.display())))?;
            (Some(Mutex::new(c)), ids)
        }
        None => (None, HashSet::new()),
    };
    let shared = Arc::new(Shared {
        summary: Mutex::new(Summary::default()),
        checkpoint,
        interrupted: AtomicBool::new(false),
    });
    {
        let shared = Arc::clone(&shared);
        handle.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.interrupted.store(true, Ordering::SeqCst);
                eprintln!("interrupted: finishing the requests in flight (Ctrl-C again to abort)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    let (sender, workers) = match (args.dry_run, target, secret) {
        (false, Some(target), Some(secret)) => {
            let (tx, rx) = mpsc::channel::<Job>(usize::from(args.concurrency) * 2);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            let limiter = args.rate.map(|rate| {
                let mut interval = tokio::time::interval_at(
                    tokio::time::Instant::now(),
                    Duration::from_secs_f64(1.0 / rate),
                );
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Arc::new(tokio::sync::Mutex::new(interval))
            });
            let secret = Arc::new(secret);
            let workers: Vec<_> = (0..args.concurrency)
                .map(|_| {
                    let worker = Worker {
                        connection: Connection::new(target.clone(), "stripe-webhook-replay"),
                        secret: Arc::clone(&secret),
                        shared: Arc::clone(&shared),
                        limiter: limiter.clone(),
                        retries: args.retries,
                        timeout: Duration::from_secs(args.timeout_secs.max(1)),
                    };
                    handle.spawn(worker.run(Arc::clone(&rx)))
                })
                .collect();
            (Some(tx), workers)
        }
        (false, _, _) => {
            return Err(Failure::Usage(
                "--url and --secret are required unless --dry-run".to_owned(),
            ));
        }
        (true, _, _) => (None, Vec::new()),
    };

    let mut seen: HashSet<String> = HashSet::new();
    let mut queued: u64 = 0;
    let counts = for_each_selected(
        archive,
        &source,
        &filters,
        &mut |line, envelope| {
            if shared.interrupted.load(Ordering::SeqCst)
                || args.limit.is_some_and(|limit| queued >= limit)
            {
                return ControlFlow::Break(());
            }
            shared.summary().selected += 1;
            let id = envelope.id.as_ref();
            if !args.no_dedupe && !seen.insert(id.to_owned()) {
                shared.summary().skip(SKIP_DUPLICATE);
                return ControlFlow::Continue(());
            }
            if already_sent.contains(id) {
                shared.summary().skip(SKIP_CHECKPOINT);
                return ControlFlow::Continue(());
            }
            let body = match envelope.body() {
                Ok(Body::Inline(body)) => Bytes::from(body),
                Ok(Body::S3(pointer)) => match archive.fetch_oversize(pointer) {
                    Ok(body) => Bytes::from(body),
                    Err(reason) => {
                        println!("FAILED\t{id}\t{}:{}\t{reason}", line.segment, line.number);
                        shared.summary().failed += 1;
                        return ControlFlow::Continue(());
                    }
                },
                Ok(Body::Missing) => {
                    shared.summary().skip(SKIP_RAW_OFF);
                    return ControlFlow::Continue(());
                }
                Err(reason) => {
                    println!("FAILED\t{id}\t{}:{}\t{reason}", line.segment, line.number);
                    shared.summary().failed += 1;
                    return ControlFlow::Continue(());
                }
            };
            queued += 1;
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
    summary.unreadable = counts.unreadable;
    summary.print(args.dry_run);
    Ok(if shared.interrupted.load(Ordering::SeqCst) {
        Outcome::Interrupted
    } else if summary.refused_total() + summary.failed + summary.unreadable > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

struct Worker {
    connection: Connection,
    secret: Arc<Secret>,
    shared: Arc<Shared>,
    limiter: Option<Arc<tokio::sync::Mutex<tokio::time::Interval>>>,
    retries: u32,
    timeout: Duration,
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
            if self.shared.interrupted.load(Ordering::SeqCst) {
                self.shared.summary().interrupted += 1;
                continue;
            }
            match self.deliver(&job).await {
                Sent::Delivered => {
                    if let Some(checkpoint) = &self.shared.checkpoint {
                        let written = checkpoint
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .record(&job.id);
                        if let Err(e) = written {
                            // Keep going: the worst case is that this id is sent again on resume.
                            eprintln!("checkpoint: cannot record {}: {e}", job.id);
                        }
                    }
                    self.shared.summary().sent += 1;
                }
                Sent::Refused(status, body) => {
                    println!("REFUSED\t{}\t{status}\t{}", job.id, snippet(&body));
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
        let mut attempt = 0;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.lock().await.tick().await;
            }
            let header = signature_header(&[&*self.secret], unix_now(), &job.body);
            let outcome = match tokio::time::timeout(
                self.timeout,
                self.connection.post(&header, job.body.clone()),
            )
            .await
            {
                Ok(Ok(r)) if (200..300).contains(&r.status) => return Sent::Delivered,
                Ok(Ok(r)) if r.status == 429 || r.status >= 500 => Sent::Refused(r.status, r.body),
                Ok(Ok(r)) => return Sent::Refused(r.status, r.body),
                Ok(Err(e)) => Sent::Failed(e),
                Err(_) => {
                    self.connection.reset();
                    Sent::Failed(format!("no response within {:?}", self.timeout))
                }
            };
            if attempt >= self.retries || self.shared.interrupted.load(Ordering::SeqCst) {
                return outcome;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(6))).await;
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The start of a response body, on one line, for a report.
fn snippet(body: &str) -> String {
    body.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ck");
        {
            let (mut c, ids) = Checkpoint::open(&path).expect("open");
            assert!(ids.is_empty());
            c.record("evt_1").expect("record");
            c.record("evt_2").expect("record");
        }
        // A crash in the middle of an append leaves a torn last line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"evt_3"))
            .expect("append");
        let (mut c, ids) = Checkpoint::open(&path).expect("reopen");
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        assert_eq!(ids, ["evt_1", "evt_2"]);
        c.record("evt_4").expect("record");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "evt_1\nevt_2\nevt_4\n"
        );
        let (_, ids) = Checkpoint::open(&path).expect("reopen");
        assert_eq!(ids.len(), 3);
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
        assert_eq!(snippet("a\nb"), "a b");
    }
}
