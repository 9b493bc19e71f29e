//! The forwarder of one destination: reads the archive from its cursor, delivers each record
//! (bounded concurrency, optional per-object order, retries until FORWARD_MAX_AGE, then the
//! dead-letter list), and moves its durable cursor once deliveries are acknowledged.
//!
//! Memory is bounded by the window: at most [`WINDOW_PER_CONCURRENCY`] × FORWARD_CONCURRENCY
//! records are read ahead and not yet covered by the durable cursor. That is also the most a crash
//! can deliver twice: a restart sends again exactly the records the last stored cursor did not
//! cover as finished.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stripe_webhook_backoff::Backoff;
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};
use stripe_webhook_metrics as m;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::background::{Background, Priority};
use crate::cursor::{Cursor, DestinationLock, SegmentCursor, state_dir};
use crate::dead_letters::{self, DeadLetter};
use crate::delivery::{Attempt, Sender};
use crate::glob::TypeFilter;
use crate::segments::{self, Line, SegmentFile, SegmentKey, SegmentReader};
use crate::settings::{Destination, ForwardSettings, Order, Start};
use crate::status;

/// Records read ahead per unit of FORWARD_CONCURRENCY (the window; see the module docs).
pub const WINDOW_PER_CONCURRENCY: usize = 16;
/// How often the archive is looked at for new records when there is nothing else to do.
const POLL: Duration = Duration::from_millis(200);
/// The longest finished deliveries wait before the cursor is stored (fewer writes under load).
const STORE_EVERY: Duration = Duration::from_millis(200);
/// The first retry's backoff ceiling (doubling up to FORWARD_RETRY_MAX).
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// One record taken from the archive for this destination.
#[derive(Debug)]
pub struct Record {
    /// Where it is.
    pub key: SegmentKey,
    /// Its line's offsets.
    pub start: u64,
    /// Just past its line.
    pub end: u64,
    /// The envelope line, verbatim.
    pub line: Vec<u8>,
    /// The event id (`?` for a line that is not a record).
    pub id: String,
    /// The event type.
    pub event_type: String,
    /// When it was archived.
    pub received_at: ReceivedAt,
    /// `data.object.id`, if any.
    pub object: Option<String>,
    /// The exact body, when the record holds one.
    pub body: Option<Bytes>,
    /// A fetched (v2) record.
    pub fetched: bool,
    /// Why it cannot be sent at all (dead-lettered at once).
    pub unsendable: Option<&'static str>,
}

/// Decides what happens to one archived line: the record to deliver (or to dead-letter at once
/// when it cannot be sent), or `None` when it is not for this destination (received before the
/// start, or its type is not forwarded), which finishes it.
pub fn admit(
    key: &SegmentKey,
    line: Line,
    start: ReceivedAt,
    types: &TypeFilter,
) -> Option<Record> {
    let parsed = match ArchivedRecord::parse(&line.bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!(segment = %key, offset = line.start, error = %e, "an archived line is not an envelope record: dead-lettered");
            return Some(Record {
                key: key.clone(),
                start: line.start,
                end: line.end,
                line: line.bytes,
                id: "?".into(),
                event_type: "?".into(),
                received_at: ReceivedAt::now(),
                object: None,
                body: None,
                fetched: false,
                unsendable: Some("unreadable"),
            });
        }
    };
    if parsed.received_at < start || !types.matches(&parsed.event_type) {
        return None;
    }
    let (body, fetched, unsendable) = match &parsed.body {
        StoredBody::Inline { raw, .. } => {
            (Some(Bytes::from(raw.decode().into_owned())), false, None)
        }
        StoredBody::Fetched { raw, .. } => {
            (Some(Bytes::from(raw.decode().into_owned())), true, None)
        }
        StoredBody::Oversize { .. } | StoredBody::NotStored | StoredBody::Legacy => {
            (None, false, Some("no_body"))
        }
    };
    #[derive(serde::Deserialize)]
    struct Data {
        object: Option<Object>,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        id: Option<String>,
    }
    let object = serde_json::from_str::<Data>(parsed.data.text())
        .ok()
        .and_then(|d| d.object?.id);
    Some(Record {
        key: key.clone(),
        start: line.start,
        end: line.end,
        id: parsed.id.into_owned(),
        event_type: parsed.event_type.into_owned(),
        received_at: parsed.received_at,
        object,
        body,
        fetched,
        unsendable,
        line: line.bytes,
    })
}

/// Which records may be sent now: in FORWARD_ORDER=object, one record per `data.object.id` at a
/// time, the others waiting behind it in archive order; records without an object (and every
/// record without the option) go at once.
#[derive(Debug, Default)]
pub struct Scheduler {
    by_object: bool,
    ready: VecDeque<Arc<Record>>,
    waiting: HashMap<String, VecDeque<Arc<Record>>>,
    busy: HashSet<String>,
}

impl Scheduler {
    /// A scheduler for `order`.
    pub fn new(order: Order) -> Scheduler {
        Scheduler {
            by_object: order == Order::Object,
            ..Scheduler::default()
        }
    }

    /// A record read from the archive, in archive order.
    pub fn push(&mut self, record: Arc<Record>) {
        match record.object.as_ref().filter(|_| self.by_object) {
            Some(object) if self.busy.contains(object) => self
                .waiting
                .entry(object.clone())
                .or_default()
                .push_back(record),
            Some(object) => {
                self.busy.insert(object.clone());
                self.ready.push_back(record);
            }
            None => self.ready.push_back(record),
        }
    }

    /// The next record that may be sent.
    pub fn pop_ready(&mut self) -> Option<Arc<Record>> {
        self.ready.pop_front()
    }

    /// A record is finished (delivered or dead-lettered): its object's next record may go.
    pub fn finished(&mut self, record: &Record) {
        let Some(object) = record.object.as_ref().filter(|_| self.by_object) else {
            return;
        };
        match self.waiting.get_mut(object).and_then(VecDeque::pop_front) {
            Some(next) => self.ready.push_back(next),
            None => {
                self.waiting.remove(object);
                self.busy.remove(object);
            }
        }
    }

    /// Records waiting to be sent (ready or behind their object).
    pub fn len(&self) -> usize {
        self.ready.len() + self.waiting.values().map(VecDeque::len).sum::<usize>()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a record ended.
#[derive(Debug)]
pub(crate) enum Finish {
    Delivered,
    DeadLettered,
}

/// What the archive side knows: the cursor and each segment's read position and unfinished
/// records. Moved into a blocking task for the archive's file I/O and back.
struct ArchiveState {
    dir: PathBuf,
    archive_dir: PathBuf,
    cursor: Cursor,
    reader: SegmentReader,
    /// Per started segment: where the next read starts, and its unfinished records (start → end).
    segs: BTreeMap<SegmentKey, SegState>,
    /// Resumed records (the stored cursor's `pending`), to send again first.
    resume: Vec<(SegmentKey, u64)>,
    /// A poll moved a read position (records read, maybe all skipped): the cursor changed.
    moved: bool,
}

#[derive(Debug, Default)]
struct SegState {
    read: u64,
    unfinished: BTreeMap<u64, u64>,
    /// Sealed and read to its end.
    read_all: bool,
    /// A problem stopping its reading was logged (once per segment).
    warned: bool,
}

impl ArchiveState {
    /// Reads up to `space` records to send; lines that are skipped count as finished at once.
    fn poll(&mut self, space: usize, types: &TypeFilter) -> std::io::Result<Vec<Record>> {
        let start = self.cursor.start_at();
        let mut out = Vec::new();
        // Records the last run left unfinished, first. One that cannot be read now stays listed
        // (in the cursor too) and is tried again at the next poll.
        if !self.resume.is_empty() {
            let resume = std::mem::take(&mut self.resume);
            let mut files: HashMap<SegmentKey, SegmentFile> = HashMap::new();
            for (partition, dir) in
                segments::partitions(&self.archive_dir, self.cursor.done_before())?
            {
                for file in segments::segments(partition, &dir)? {
                    files.insert(file.key.clone(), file);
                }
            }
            for (key, offset) in resume {
                let Some(file) = files.get(&key) else {
                    tracing::warn!(segment = %key, offset, "a record the cursor lists as pending is gone from the archive");
                    continue;
                };
                let chunk = match self.reader.read(file, offset, 1) {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        tracing::warn!(segment = %key, offset, error = %e, "a pending record cannot be read yet");
                        self.resume.push((key, offset));
                        continue;
                    }
                };
                let stored = self.cursor.segment(&key);
                for line in chunk.lines {
                    let end = line.end;
                    if let Some(record) = admit(&key, line, start, types) {
                        self.segs
                            .entry(key.clone())
                            .or_insert_with(|| SegState {
                                read: stored.offset,
                                ..SegState::default()
                            })
                            .unfinished
                            .insert(offset, end);
                        out.push(record);
                    }
                }
            }
        }
        let mut budget = space.saturating_sub(out.len());
        if budget == 0 {
            return Ok(out);
        }
        for (partition, dir) in segments::partitions(&self.archive_dir, self.cursor.done_before())?
        {
            for file in segments::segments(partition, &dir)? {
                let stored = self.cursor.segment(&file.key);
                if stored.done {
                    continue;
                }
                let seg = self
                    .segs
                    .entry(file.key.clone())
                    .or_insert_with(|| SegState {
                        read: stored.offset,
                        ..SegState::default()
                    });
                if seg.read_all {
                    continue;
                }
                let chunk = match self.reader.read(&file, seg.read, budget) {
                    Ok(chunk) => chunk,
                    // Renamed under us (sealed between the listing and the open): next poll.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    // One unreadable segment (a damaged gzip, a permission) holds back only
                    // itself: logged once, tried again at every poll.
                    Err(e) => {
                        if !seg.warned {
                            seg.warned = true;
                            tracing::error!(segment = %file.key, offset = seg.read, error = %e, "a segment cannot be read: its records wait until it can");
                        }
                        continue;
                    }
                };
                if let Some(why) = chunk.stopped.as_ref().filter(|_| !seg.warned) {
                    seg.warned = true;
                    tracing::warn!(segment = %file.key, offset = chunk.next, "{why}: the rest of this segment is not read (recovery cuts such bytes; they were never acknowledged)");
                }
                self.moved |= chunk.next != seg.read || chunk.finished != seg.read_all;
                seg.read = chunk.next;
                seg.read_all = chunk.finished;
                for line in chunk.lines {
                    let (line_start, line_end) = (line.start, line.end);
                    if let Some(record) = admit(&file.key, line, start, types) {
                        seg.unfinished.insert(line_start, line_end);
                        out.push(record);
                        budget -= 1;
                    }
                }
                if budget == 0 {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The cursor as it stands: every segment's read position and unfinished records; days
    /// closed where finished.
    fn snapshot(&mut self) -> std::io::Result<Cursor> {
        for (key, seg) in &self.segs {
            let entry = self.cursor.segments.entry(key.to_string()).or_default();
            entry.offset = seg.read;
            // Unfinished records, and those of the last run not read again yet.
            entry.pending = seg.unfinished.keys().copied().collect();
            entry.pending.extend(
                self.resume
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, offset)| *offset),
            );
            entry.pending.sort_unstable();
            entry.done = seg.read_all && entry.pending.is_empty();
        }
        // Close finished days (only once past their margin).
        let now = ReceivedAt::now();
        let closable = ReceivedAt::from_unix_millis(
            now.unix_millis()
                - i64::try_from(crate::cursor::DAY_CLOSE_MARGIN.as_millis()).unwrap_or(0),
        )
        .partition();
        if self.cursor.done_before() < closable {
            let mut listed = BTreeMap::new();
            for (partition, dir) in
                segments::partitions(&self.archive_dir, self.cursor.done_before())?
            {
                if partition >= closable {
                    break;
                }
                let keys = segments::segments(partition, &dir)?
                    .into_iter()
                    .map(|f| f.key)
                    .collect::<Vec<_>>();
                listed.insert(partition, keys);
            }
            if self.cursor.close_days(now, &listed) {
                let before = self.cursor.done_before();
                self.segs.retain(|key, _| key.partition >= before);
            }
        }
        Ok(self.cursor.clone())
    }
}

/// Deliveries in flight: each ends with its record and how it finished (`None`: cancelled).
pub(crate) type Deliveries = JoinSet<(Arc<Record>, Option<Finish>)>;

/// Starts the records `scheduler` lets go, until `concurrency` deliveries are in flight.
pub(crate) fn start_ready(
    scheduler: &mut Scheduler,
    deliveries: &mut Deliveries,
    concurrency: usize,
    ctx: &Arc<Ctx>,
    cancel: &CancellationToken,
) {
    while deliveries.len() < concurrency {
        let Some(record) = scheduler.pop_ready() else {
            break;
        };
        let (ctx, cancel) = (Arc::clone(ctx), cancel.clone());
        deliveries.spawn(async move {
            let finish = deliver(&ctx, &record, &cancel).await;
            (record, finish)
        });
    }
}

/// What delivery tasks share.
pub(crate) struct Ctx {
    pub(crate) dest: Destination,
    /// The destination's state directory (its dead-letter list).
    pub(crate) dir: PathBuf,
    pub(crate) sender: Sender,
    pub(crate) give_up: GiveUp,
    pub(crate) backoff: Backoff,
}

/// When a delivery is given up, the record then going to the dead-letter list.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GiveUp {
    /// Once the record is older than this (FORWARD_MAX_AGE, counted from when it was archived),
    /// after one last attempt; `None`: never.
    AtAge(Option<Duration>),
    /// After this many attempts (a backfill's `--attempts`).
    AfterAttempts(u32),
}

impl GiveUp {
    /// The dead letter's `reason`.
    fn reason(self) -> &'static str {
        match self {
            GiveUp::AtAge(_) => "max_age",
            GiveUp::AfterAttempts(_) => "attempts",
        }
    }
}

/// The first retry's backoff ceiling (doubling up to `retry_max`): one place for the forwarder and
/// a backfill.
pub(crate) fn retry_backoff(retry_max: Duration) -> Backoff {
    Backoff::new(FIRST_RETRY, retry_max)
}

/// Runs the forwarder of every destination until `cancel`. A destination whose forwarder stops on
/// an error (its state directory cannot be made, its cursor cannot be read or stored, a task
/// panicked) is restarted alone, with backoff, each error logged and `forward_failed` at 1 until
/// it runs again; the others go on.
///
/// # Errors
/// An HTTP client that cannot be built (before any starts).
pub async fn run(
    archive_dir: PathBuf,
    settings: ForwardSettings,
    cancel: CancellationToken,
) -> Result<(), String> {
    let settings = Arc::new(settings);
    let mut tasks = JoinSet::new();
    for dest in settings.destinations.clone() {
        // Built once, first: a destination that cannot get a client is a configuration error.
        let sender = Sender::new(&dest.url, dest.secret.clone(), settings.timeout)
            .map_err(|e| format!("destination {}: {e}", dest.id))?;
        tasks.spawn(supervise(
            archive_dir.clone(),
            dest,
            sender,
            Arc::clone(&settings),
            cancel.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Runs one destination's forwarder until `cancel`, restarting it after an error.
async fn supervise(
    archive_dir: PathBuf,
    dest: Destination,
    sender: Sender,
    settings: Arc<ForwardSettings>,
    cancel: CancellationToken,
) {
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        // Each run shares the one client (and its connection pool).
        let run = run_destination(
            archive_dir.clone(),
            dest.clone(),
            sender.clone(),
            Arc::clone(&settings),
            cancel.clone(),
        );
        // A panic in the forwarder is an error like the others (restarted, not lost silently).
        let result = tokio::spawn(run)
            .await
            .unwrap_or_else(|e| Err(format!("{}: the forwarder task failed: {e}", dest.id)));
        let Err(e) = result else {
            return; // stopped by `cancel`
        };
        failures += 1;
        let wait = backoff.delay(failures);
        metrics::gauge!(m::FORWARD_FAILED, "destination" => dest.id.clone()).set(1.0);
        tracing::error!(destination = %dest.id, error = %e, failures, retry_in_ms = wait.as_millis() as u64, "forwarding to this destination stopped on an error: restarting it (the other destinations go on; ingest is not affected)");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// The forwarder of one destination (waits as a standby while another process holds its lock).
async fn run_destination(
    archive_dir: PathBuf,
    dest: Destination,
    sender: Sender,
    settings: Arc<ForwardSettings>,
    cancel: CancellationToken,
) -> Result<(), String> {
    let id = dest.id.clone();
    let dir = state_dir(&archive_dir, &id).map_err(|e| format!("{id}: state directory: {e}"))?;
    let mut standby_logged = false;
    let _lock = loop {
        match DestinationLock::try_take(&dir, "forwarder") {
            Ok(Some(lock)) => break lock,
            Ok(None) => {
                if !standby_logged {
                    tracing::info!(destination = %id, holder = %DestinationLock::holder(&dir).unwrap_or_default(), "another forwarder holds this destination: standing by");
                    standby_logged = true;
                }
            }
            Err(e) => return Err(format!("{id}: lock: {e}")),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let cursor = match Cursor::load(&dir)? {
        Some(cursor) => cursor,
        None => {
            let start = match settings.start {
                Start::Now => ReceivedAt::now(),
                Start::At(at) => at,
            };
            let cursor = Cursor::starting_at(start);
            cursor
                .store(&dir)
                .map_err(|e| format!("{id}: storing the first cursor: {e}"))?;
            tracing::info!(destination = %id, start = %cursor.start, "new destination: forwarding records archived from its start on");
            cursor
        }
    };
    tracing::info!(destination = %id, start = %cursor.start, done_before = %cursor.done_before, "forwarding");
    metrics::gauge!(m::FORWARD_FAILED, "destination" => id.clone()).set(0.0);
    let resume: Vec<(SegmentKey, u64)> = cursor
        .segments
        .iter()
        .filter_map(|(k, s)| Some((k.parse().ok()?, s)))
        .flat_map(|(k, s): (SegmentKey, &SegmentCursor)| {
            s.pending.iter().map(move |o| (k.clone(), *o))
        })
        .collect();
    let mut state = Some(ArchiveState {
        dir: dir.clone(),
        archive_dir: archive_dir.clone(),
        cursor,
        reader: SegmentReader::syncing(),
        segs: BTreeMap::new(),
        resume,
        moved: false,
    });
    let ctx = Arc::new(Ctx {
        dest,
        dir: dir.clone(),
        sender,
        give_up: GiveUp::AtAge(settings.max_age),
        backoff: retry_backoff(settings.retry_max),
    });
    let window = settings.concurrency * WINDOW_PER_CONCURRENCY;
    let mut scheduler = Scheduler::new(settings.order);
    let mut deliveries = Deliveries::new();
    // Records that a crash now would send again: those the stored cursor lists as pending, plus
    // those read since it was stored.
    let mut stored_pending = 0usize;
    let mut since_store = 0usize;
    let mut dirty = false;
    let mut last_store = Instant::now();
    let mut last_poll: Option<Instant> = None;
    // The archive's file work, and the lag's, each on a thread of its own (crate::background): a
    // long lag scan never holds back reading, and only the lag's runs at the lowest priority.
    let files = Background::start("forward-files", Priority::Normal)?;
    let mut lag = status::LagTracker::new(
        archive_dir.clone(),
        dir.clone(),
        id.clone(),
        settings.types.clone(),
        Background::start("forward-lag", Priority::Lowest)?,
    );
    let label = id.clone();
    metrics::gauge!(m::FORWARD_DEAD_LETTERS, "destination" => label.clone())
        .set(dead_letters::count(&dir) as f64);

    let result = loop {
        if cancel.is_cancelled() {
            break Ok(());
        }
        // 1. Read ahead while the window has room.
        let space = window.saturating_sub(stored_pending + since_store);
        let due = last_poll.is_none_or(|at| at.elapsed() >= POLL);
        if space > 0 && due {
            let mut taken = state.take().expect("state is back");
            let types = settings.types.clone();
            let polled = files.run(move || {
                taken.moved = false;
                let records = taken.poll(space, &types);
                (taken, records)
            });
            let (back, records) = tokio::select! {
                r = polled => r.map_err(|e| format!("{id}: reading the archive: {e}"))?,
                () = cancel.cancelled() => break Ok(()),
            };
            dirty |= back.moved;
            state = Some(back);
            last_poll = Some(Instant::now());
            match records {
                Ok(records) => {
                    if records.len() == space {
                        last_poll = None; // more may be there: read again at once
                    }
                    for record in records {
                        since_store += 1;
                        scheduler.push(Arc::new(record));
                    }
                }
                Err(e) => {
                    tracing::warn!(destination = %id, error = %e, "reading the archive failed; retrying")
                }
            }
        }
        // 2. Start deliveries up to the concurrency.
        start_ready(
            &mut scheduler,
            &mut deliveries,
            settings.concurrency,
            &ctx,
            &cancel,
        );
        // 3. Store the cursor when finished deliveries wait for it.
        let window_full = stored_pending + since_store >= window;
        if dirty && (last_store.elapsed() >= STORE_EVERY || window_full) {
            let mut taken = state.take().expect("state is back");
            let stored = files
                .run(move || {
                    let result = taken
                        .snapshot()
                        .and_then(|c| c.store(&taken.dir).map(|()| c));
                    (taken, result)
                })
                .await
                .map_err(|e| format!("{id}: storing the cursor: {e}"))?;
            state = Some(stored.0);
            match stored.1 {
                Ok(cursor) => {
                    stored_pending = cursor.segments.values().map(|s| s.pending.len()).sum();
                    since_store = 0;
                    dirty = false;
                    lag.cursor(cursor);
                }
                Err(e) => {
                    tracing::warn!(destination = %id, error = %e, "storing the cursor failed; retrying (deliveries go on, the window bounds them)")
                }
            }
            last_store = Instant::now();
        }
        lag.tick();
        // 4. Wait for a delivery to finish, the next poll, or the end.
        let wait = if dirty { STORE_EVERY } else { POLL };
        tokio::select! {
            Some(done) = deliveries.join_next(), if !deliveries.is_empty() => {
                let (record, finish) = match done {
                    Ok(done) => done,
                    Err(e) => break Err(format!("{id}: a delivery task failed: {e}")),
                };
                if finish.is_none() {
                    break Ok(()); // cancelled
                }
                scheduler.finished(&record);
                dirty = true;
                if let Some(seg) = state.as_mut().and_then(|s| s.segs.get_mut(&record.key)) {
                    seg.unfinished.remove(&record.start);
                }
            }
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => break Ok(()),
        }
    };
    // Stop: deliveries in flight stay pending in the cursor (sent again by the next run).
    deliveries.abort_all();
    while deliveries.join_next().await.is_some() {}
    if let Some(mut state) = state {
        let stored = files
            .run(move || state.snapshot().and_then(|c| c.store(&state.dir)))
            .await;
        match stored {
            Ok(Ok(())) => tracing::info!(destination = %id, "forwarder stopped; cursor stored"),
            Ok(Err(e)) => {
                tracing::warn!(destination = %id, error = %e, "forwarder stopped; the last cursor could not be stored (the next run sends the records since the previous one again)")
            }
            Err(e) => {
                tracing::warn!(destination = %id, error = %e, "forwarder stopped; storing the cursor failed")
            }
        }
    }
    result
}

fn now_rfc3339() -> String {
    ReceivedAt::now().rfc3339_millis()
}

/// Delivers one record: attempts until a 2xx, waiting out the backoff between them; past
/// FORWARD_MAX_AGE (counted from when it was archived), or after a backfill's attempts, appends it
/// to the dead-letter list. `None` when cancelled first.
pub(crate) async fn deliver(
    ctx: &Ctx,
    record: &Record,
    cancel: &CancellationToken,
) -> Option<Finish> {
    let id = &ctx.dest.id;
    let label = || id.clone();
    let mut attempts = 0u32;
    let mut first_attempt_at = None;
    let mut last: Option<Attempt> = None;
    if let Some(body) = &record.body {
        loop {
            attempts += 1;
            let at = now_rfc3339();
            first_attempt_at.get_or_insert_with(|| at.clone());
            let attempt = tokio::select! {
                a = ctx.sender.post(body.clone(), &record.id, attempts, record.fetched) => a,
                () = cancel.cancelled() => return None,
            };
            metrics::counter!(m::FORWARD_ATTEMPTS_TOTAL, "destination" => label(), "result" => attempt.label()).increment(1);
            if let Attempt::Ok(status) = attempt {
                let age = ReceivedAt::now().unix_millis() - record.received_at.unix_millis();
                metrics::histogram!(m::FORWARD_DELIVERY_SECONDS, "destination" => label())
                    .record(age.max(0) as f64 / 1000.0);
                metrics::counter!(m::FORWARD_DELIVERIES_TOTAL, "destination" => label(), "outcome" => "delivered").increment(1);
                tracing::debug!(destination = %id, event = %record.id, status, attempts, "delivered");
                return Some(Finish::Delivered);
            }
            tracing::warn!(destination = %id, event = %record.id, attempt = attempts, result = attempt.label(), status = attempt.status(), error = %attempt.describe(), "delivery attempt failed; retrying");
            let retry_after = match &attempt {
                Attempt::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            last = Some(attempt);
            let wait = ctx.backoff.delay_honouring(attempts, retry_after);
            let wait = match ctx.give_up {
                GiveUp::AfterAttempts(limit) if attempts >= limit => break,
                GiveUp::AtAge(Some(max_age)) => {
                    let age = Duration::from_millis(
                        u64::try_from(
                            ReceivedAt::now().unix_millis() - record.received_at.unix_millis(),
                        )
                        .unwrap_or(0),
                    );
                    if age >= max_age {
                        break;
                    }
                    // One last attempt when the age is reached, then the dead-letter list.
                    wait.min(max_age - age)
                }
                _ => wait,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return None,
            }
        }
    }
    let reason = record.unsendable.unwrap_or(ctx.give_up.reason());
    let letter = DeadLetter {
        dead_lettered_at: now_rfc3339(),
        destination: id.clone(),
        id: record.id.clone(),
        event_type: record.event_type.clone(),
        archived_at: record.received_at.rfc3339_millis(),
        reason: reason.to_owned(),
        last_status: last.as_ref().and_then(Attempt::status),
        last_error: last.as_ref().map(Attempt::describe),
        attempts,
        first_attempt_at,
        last_attempt_at: (attempts > 0).then(now_rfc3339),
        segment: record.key.to_string(),
        offset: record.start,
    };
    // Durable before the cursor may pass the record; retried until it is (a full disk clears).
    loop {
        let (dir, letter, line) = (ctx.dir.clone(), letter.clone(), record.line.clone());
        let appended =
            tokio::task::spawn_blocking(move || dead_letters::append(&dir, &letter, &line)).await;
        match appended {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::error!(destination = %id, event = %record.id, error = %e, "appending to the dead-letter list failed; retrying")
            }
            Err(e) => {
                tracing::error!(destination = %id, event = %record.id, error = %e, "appending to the dead-letter list failed; retrying")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = cancel.cancelled() => return None,
        }
    }
    metrics::counter!(m::FORWARD_DELIVERIES_TOTAL, "destination" => label(), "outcome" => "dead_lettered").increment(1);
    metrics::gauge!(m::FORWARD_DEAD_LETTERS, "destination" => label()).increment(1.0);
    tracing::error!(destination = %id, event = %record.id, reason, attempts, status = letter.last_status, "not delivered: appended to the dead-letter list (`stripe-webhook forward dead-letters`)");
    Some(Finish::DeadLettered)
}

/// Whether `dir` is a destination directory (for listings).
pub fn is_destination_dir(dir: &Path) -> bool {
    dir.join(crate::cursor::CURSOR_FILE).exists()
        || dir.join(crate::cursor::LOCK_FILE).exists()
        || dir.join(dead_letters::DEAD_LETTERS_FILE).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, object: Option<&str>) -> Arc<Record> {
        Arc::new(Record {
            key: "year=2026/month=12/day=06/1-1-a".parse().unwrap(),
            start: 0,
            end: 1,
            line: Vec::new(),
            id: id.into(),
            event_type: "t".into(),
            received_at: ReceivedAt::now(),
            object: object.map(str::to_owned),
            body: None,
            fetched: false,
            unsendable: None,
        })
    }

    #[test]
    fn per_object_order_holds_back_only_the_same_object() {
        let mut s = Scheduler::new(Order::Object);
        for (id, object) in [
            ("e1", Some("ch_A")),
            ("e2", Some("ch_B")),
            ("e3", Some("ch_A")),
            ("e4", None),
            ("e5", Some("ch_A")),
            ("e6", Some("ch_B")),
        ] {
            s.push(record(id, object));
        }
        let mut ready: Vec<Arc<Record>> = std::iter::from_fn(|| s.pop_ready()).collect();
        let ids: Vec<&str> = ready.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["e1", "e2", "e4"], "one per object at a time");
        assert_eq!(s.len(), 3);
        // ch_B's first finishes: its next goes; ch_A's (e1, still failing) holds e3 and e5 back.
        let e2 = ready.remove(1);
        s.finished(&e2);
        assert_eq!(s.pop_ready().map(|r| r.id.clone()).as_deref(), Some("e6"));
        assert!(s.pop_ready().is_none());
        let e1 = ready.remove(0);
        s.finished(&e1);
        assert_eq!(s.pop_ready().map(|r| r.id.clone()).as_deref(), Some("e3"));
        assert!(s.pop_ready().is_none(), "e5 waits for e3");
    }

    #[test]
    fn without_order_everything_is_ready() {
        let mut s = Scheduler::new(Order::None);
        s.push(record("e1", Some("ch_A")));
        s.push(record("e2", Some("ch_A")));
        assert_eq!(std::iter::from_fn(|| s.pop_ready()).count(), 2);
    }

    #[test]
    fn lines_are_admitted_by_start_type_and_body() {
        use stripe_webhook_envelope::{EnvelopeOptions, encode};
        let key: SegmentKey = "year=2026/month=12/day=06/1-1-a".parse().unwrap();
        let at = ReceivedAt::parse_rfc3339_millis("2026-12-06T10:00:00.000Z").unwrap();
        let body = "{\n  \"id\": \"evt_1\", \"type\": \"invoice.paid\", \"data\": {\"object\": {\"id\": \"in_1\", \"x\": [1]}}\n}";
        let rec = encode(
            Bytes::from(body),
            "t=1,v1=00",
            at,
            &EnvelopeOptions::default(),
        )
        .unwrap();
        let line = |bytes: &[u8]| Line {
            start: 10,
            end: 10 + bytes.len() as u64 + 1,
            bytes: bytes.to_vec(),
        };
        let all = TypeFilter::default();
        match admit(&key, line(&rec.line()[..rec.line().len() - 1]), at, &all) {
            Some(r) => {
                assert_eq!(r.body.as_deref(), Some(body.as_bytes()), "byte-exact");
                assert_eq!(r.object.as_deref(), Some("in_1"));
                assert_eq!((r.id.as_str(), r.start), ("evt_1", 10));
                assert!(r.unsendable.is_none());
            }
            other => panic!("{other:?}"),
        }
        let later = ReceivedAt::from_unix_millis(at.unix_millis() + 1);
        assert!(admit(&key, line(rec.line()), later, &all).is_none());
        let charges = TypeFilter::parse("charge.*").unwrap();
        assert!(admit(&key, line(rec.line()), at, &charges).is_none());
        let raw_off = encode(
            Bytes::from(body),
            "t=1,v1=00",
            at,
            &EnvelopeOptions::default().include_raw(false),
        )
        .unwrap();
        match admit(&key, line(raw_off.line()), at, &all) {
            Some(r) => assert_eq!(r.unsendable, Some("no_body")),
            other => panic!("{other:?}"),
        }
        match admit(&key, line(b"{not json"), at, &all) {
            Some(r) => assert_eq!(r.unsendable, Some("unreadable")),
            other => panic!("{other:?}"),
        }
    }
}
