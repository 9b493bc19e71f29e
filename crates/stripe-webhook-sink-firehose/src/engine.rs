//! The group-commit engine: a bounded queue, one dispatcher task, and `PutRecordBatch` calls that
//! resolve each record's caller as soon as that record has a `RecordId`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_firehose::operation::RequestId;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record as FirehoseRecord;
use bytes::Bytes;
use stripe_webhook_backoff::Backoff;
use stripe_webhook_sink::{SinkError, SinkErrorKind};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::aimd::Aimd;
use crate::classify::{CallFailure, Class, classify_code};
use crate::config::{FirehoseSinkConfig, REQUEST_OVERHEAD, wire_len};
use crate::health::HealthCell;
use stripe_webhook_metrics as m;

type Outcome = Result<(), SinkError>;

/// Records and bytes admitted and not yet resolved: the memory bound.
#[derive(Default)]
pub(crate) struct Counters {
    records: AtomicUsize,
    bytes: AtomicUsize,
    /// Notified when `records` drops to zero.
    drained: Notify,
}

impl Counters {
    fn admit(self: &Arc<Self>, len: usize, max_records: usize, max_bytes: usize) -> Option<Ticket> {
        let ticket = Ticket {
            counters: Arc::clone(self),
            len,
        };
        let records = self.records.fetch_add(1, Ordering::AcqRel) + 1;
        let bytes = self.bytes.fetch_add(len, Ordering::AcqRel) + len;
        metrics::gauge!(m::FIREHOSE_QUEUE_RECORDS).set(records as f64);
        metrics::gauge!(m::FIREHOSE_QUEUE_BYTES).set(bytes as f64);
        // Dropping the ticket undoes the increments.
        (records <= max_records && bytes <= max_bytes).then_some(ticket)
    }

    pub(crate) fn records(&self) -> usize {
        self.records.load(Ordering::Acquire)
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// One admitted record's share of the bound, released on drop (whatever the outcome).
struct Ticket {
    counters: Arc<Counters>,
    len: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let bytes = self.counters.bytes.fetch_sub(self.len, Ordering::AcqRel) - self.len;
        let records = self.counters.records.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(m::FIREHOSE_QUEUE_RECORDS).set(records as f64);
        metrics::gauge!(m::FIREHOSE_QUEUE_BYTES).set(bytes as f64);
        if records == 0 {
            self.counters.drained.notify_waiters();
        }
    }
}

/// A record waiting to be sent (or resent) and the caller waiting for it.
struct Entry {
    data: Bytes,
    event_id: String,
    deadline: Instant,
    attempts: u32,
    not_before: Instant,
    tx: oneshot::Sender<Outcome>,
    _ticket: Ticket,
}

impl Entry {
    fn resolve(self, outcome: Outcome) {
        // The caller may have gone (deadline, client hung up): nothing to tell then.
        let _ = self.tx.send(outcome);
    }

    fn is_dead(&self, now: Instant) -> bool {
        self.tx.is_closed() || now >= self.deadline
    }
}

struct Queue {
    fresh: VecDeque<Entry>,
    /// Failed records waiting for their backoff; resent before fresh ones.
    retry: Vec<Entry>,
    in_flight: usize,
    aimd: Aimd,
    last_send: Option<Instant>,
}

/// State shared by the sink handle, the dispatcher and the call tasks.
pub(crate) struct Engine {
    pub(crate) config: FirehoseSinkConfig,
    client: aws_sdk_firehose::Client,
    pub(crate) health: Arc<HealthCell>,
    counters: Arc<Counters>,
    queue: Mutex<Queue>,
    wake: Notify,
    /// No new records (shutdown started).
    closed: AtomicBool,
    /// The dispatcher exits; retries are failed instead of queued.
    stopped: AtomicBool,
}

impl Engine {
    pub(crate) fn new(
        config: FirehoseSinkConfig,
        client: aws_sdk_firehose::Client,
        health: Arc<HealthCell>,
    ) -> Arc<Self> {
        let aimd = Aimd::new(
            config.max_in_flight,
            config.retry_base,
            config.retry_max_backoff,
        );
        Arc::new(Self {
            config,
            client,
            health,
            counters: Arc::default(),
            queue: Mutex::new(Queue {
                fresh: VecDeque::new(),
                retry: Vec::new(),
                in_flight: 0,
                aimd,
                last_send: None,
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn client(&self) -> &aws_sdk_firehose::Client {
        &self.client
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// `(calls allowed in flight, gap between calls)` as the AIMD controller has them now.
    pub(crate) fn send_limit(&self) -> (usize, Duration) {
        let q = self.lock();
        (q.aimd.limit(), q.aimd.interval())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues one validated line and waits until it has a `RecordId`, fails for good, or `deadline`.
    pub(crate) async fn submit(&self, data: Bytes, event_id: &str, deadline: Instant) -> Outcome {
        let Some(ticket) = self.counters.admit(
            data.len(),
            self.config.max_queue_records,
            self.config.max_queue_bytes,
        ) else {
            return Err(SinkError::new(
                SinkErrorKind::Overloaded,
                format!(
                    "Firehose sink queue full ({} records / {} bytes max); event {event_id} not taken",
                    self.config.max_queue_records, self.config.max_queue_bytes
                ),
            ));
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.lock();
            if self.is_closed() {
                return Err(shutting_down());
            }
            q.fresh.push_back(Entry {
                data,
                event_id: event_id.to_owned(),
                deadline,
                attempts: 0,
                not_before: Instant::now(),
                tx,
                _ticket: ticket,
            });
        }
        self.wake.notify_one();
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(SinkError::new(
                SinkErrorKind::Unavailable,
                format!("Firehose sink stopped before event {event_id} was acknowledged"),
            )),
            Err(_) => Err(deadline_error(
                event_id,
                self.config.deadline,
                "still queued or in flight",
            )),
        }
    }

    /// The dispatcher: whenever a call slot is free (and the pacing gap has passed), sends everything
    /// ready as one batch. Records arriving while calls are in flight thus form the next batch.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            let mut wake_at = None;
            let mut batch = Vec::new();
            let mut bytes = 0;
            {
                let mut q = self.lock();
                let slot_free = q.in_flight < q.aimd.limit();
                let paced_until = q.last_send.map(|t| t + q.aimd.interval());
                if slot_free && paced_until.is_none_or(|t| now >= t) {
                    wake_at = self.take_batch(&mut q, now, &mut batch, &mut bytes);
                } else if slot_free {
                    wake_at = paced_until;
                }
            }
            if batch.is_empty() {
                match wake_at {
                    Some(at) => {
                        tokio::select! {
                            () = self.wake.notified() => {}
                            () = tokio::time::sleep_until(at) => {}
                        }
                    }
                    None => self.wake.notified().await,
                }
                continue;
            }
            if !self.config.linger.is_zero() && batch.len() < self.config.max_batch_records {
                tokio::time::sleep(self.config.linger).await;
                let mut q = self.lock();
                self.take_batch(&mut q, Instant::now(), &mut batch, &mut bytes);
            }
            {
                let mut q = self.lock();
                q.in_flight += 1;
                q.last_send = Some(Instant::now());
                metrics::gauge!(m::FIREHOSE_IN_FLIGHT).set(q.in_flight as f64);
            }
            tokio::spawn(Arc::clone(&self).call(batch, bytes));
        }
    }

    /// Moves ready records into `batch` (retries first, then fresh, FIFO) within the batch limits.
    /// Drops records whose caller is gone or whose deadline passed. Returns when the next waiting
    /// retry becomes ready.
    fn take_batch(
        &self,
        q: &mut Queue,
        now: Instant,
        batch: &mut Vec<Entry>,
        bytes: &mut usize,
    ) -> Option<Instant> {
        let budget = self.config.max_batch_bytes - REQUEST_OVERHEAD;
        let max = self.config.max_batch_records;
        let expire = |e: Entry| {
            let msg = format!("attempt {} pending", e.attempts + 1);
            let id = e.event_id.clone();
            e.resolve(Err(deadline_error(&id, self.config.deadline, &msg)));
        };
        let (dead, alive): (Vec<Entry>, Vec<Entry>) =
            q.retry.drain(..).partition(|e| e.is_dead(now));
        dead.into_iter().for_each(expire);
        q.retry = alive;
        q.retry.sort_by_key(|e| e.not_before);
        let mut fits = |e: &Entry, batch: &Vec<Entry>| {
            let w = wire_len(e.data.len());
            if batch.len() < max && *bytes + w <= budget {
                *bytes += w;
                true
            } else {
                false
            }
        };
        while q
            .retry
            .first()
            .is_some_and(|e| e.not_before <= now && fits(e, batch))
        {
            batch.push(q.retry.remove(0));
        }
        while let Some(e) = q.fresh.front() {
            if e.is_dead(now) {
                if let Some(e) = q.fresh.pop_front() {
                    expire(e);
                }
                continue;
            }
            if !fits(e, batch) {
                break;
            }
            if let Some(e) = q.fresh.pop_front() {
                batch.push(e);
            }
        }
        q.retry.first().map(|e| e.not_before)
    }

    /// One `PutRecordBatch` call: resolves accepted records, schedules failed ones for a resend.
    async fn call(self: Arc<Self>, batch: Vec<Entry>, wire_bytes: usize) {
        let started = Instant::now();
        let count = batch.len();
        let data_bytes: usize = batch.iter().map(|e| e.data.len()).sum();
        metrics::histogram!(m::FIREHOSE_BATCH_RECORDS).record(count as f64);
        metrics::histogram!(m::FIREHOSE_BATCH_BYTES).record(data_bytes as f64);
        let deadline = batch
            .iter()
            .map(|e| e.deadline)
            .max()
            .unwrap_or(started + self.config.deadline);
        let records: Vec<FirehoseRecord> = batch
            .iter()
            .map(|e| {
                FirehoseRecord::builder()
                    .data(Blob::new(e.data.to_vec()))
                    .build()
                    .expect("a Firehose record with data set always builds")
            })
            .collect();
        let send = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.config.stream_name)
            .set_records(Some(records))
            .send();
        let result = tokio::time::timeout_at(deadline, send).await;
        let now = Instant::now();
        metrics::histogram!(m::FIREHOSE_CALL_SECONDS).record((now - started).as_secs_f64());
        tracing::trace!(records = count, wire_bytes, "PutRecordBatch answered");

        let mut throttled = false;
        let mut all_ok = false;
        let mut retries = Vec::new();
        let outcome: &'static str;
        match result {
            Err(_) => {
                outcome = "timeout";
                let f = CallFailure::deadline();
                tracing::warn!(
                    records = count,
                    "PutRecordBatch timed out; records will be retried"
                );
                self.health.call_failed("PutRecordBatch timed out");
                retries = self.schedule(batch, &f.code, &f.message, now);
            }
            Ok(Ok(out)) => {
                let request_id = out.request_id().unwrap_or("-").to_owned();
                let responses = out.request_responses();
                if responses.len() != count {
                    outcome = "count_mismatch";
                    tracing::warn!(
                        request_id,
                        sent = count,
                        answered = responses.len(),
                        "PutRecordBatch answered with a different number of entries; retrying every record"
                    );
                    let msg = format!("response count mismatch ({request_id})");
                    self.health.call_failed(&msg);
                    retries = self.schedule(batch, "CountMismatch", &msg, now);
                } else {
                    let mut ok = 0_u64;
                    let mut failed = Vec::new();
                    for (e, r) in batch.into_iter().zip(responses) {
                        match (r.record_id(), r.error_code()) {
                            (Some(_), None) => {
                                ok += 1;
                                e.resolve(Ok(()));
                            }
                            (_, code) => {
                                let code = code.unwrap_or("MissingRecordId").to_owned();
                                metrics::counter!(m::FIREHOSE_RECORDS_FAILED_TOTAL, "code" => code.clone())
                                    .increment(1);
                                match classify_code(&code) {
                                    Some(Class::Throttled) => throttled = true,
                                    Some(Class::Permanent) => {
                                        tracing::error!(request_id, event_id = %e.event_id, code, "Firehose refused a record for good");
                                        let msg = format!(
                                            "Firehose refused event {} with {code} ({request_id})",
                                            e.event_id
                                        );
                                        e.resolve(Err(SinkError::new(
                                            SinkErrorKind::Permanent,
                                            msg,
                                        )));
                                        continue;
                                    }
                                    _ => {}
                                }
                                failed.push((e, code));
                            }
                        }
                    }
                    metrics::counter!(m::FIREHOSE_RECORDS_TOTAL).increment(ok);
                    all_ok = failed.is_empty();
                    outcome = if all_ok { "ok" } else { "partial" };
                    if !all_ok {
                        tracing::debug!(
                            request_id,
                            failed = failed.len(),
                            "PutRecordBatch partial failure; resending failed records"
                        );
                    }
                    for (e, code) in failed {
                        let msg = format!("{code} ({request_id})");
                        retries.extend(self.schedule(vec![e], &code, &msg, now));
                    }
                    self.health.call_succeeded();
                }
            }
            Ok(Err(err)) => {
                let f = CallFailure::from_sdk(&err);
                let rid = f.request_id_text();
                match f.class {
                    Class::Permanent => {
                        outcome = "permanent";
                        let msg = format!(
                            "Firehose refused PutRecordBatch to stream '{}' for good: {} ({rid}): {}",
                            self.config.stream_name, f.code, f.message
                        );
                        tracing::error!(request_id = ?f.request_id, code = %f.code, stream = %self.config.stream_name, error = %f.message, "PutRecordBatch failed permanently");
                        self.health.call_failed(&msg);
                        for e in batch {
                            tracing::error!(event_id = %e.event_id, request_id = ?f.request_id, "record not archived");
                            e.resolve(Err(SinkError::new(SinkErrorKind::Permanent, msg.clone())));
                        }
                        metrics::counter!(m::FIREHOSE_RECORDS_FAILED_TOTAL, "code" => f.code.clone())
                            .increment(count as u64);
                    }
                    class => {
                        throttled = class == Class::Throttled;
                        outcome = if throttled { "throttled" } else { "error" };
                        tracing::warn!(request_id = ?f.request_id, code = %f.code, records = count, "PutRecordBatch failed; records will be retried");
                        let msg = format!("{} ({rid})", f.code);
                        self.health
                            .call_failed(&format!("PutRecordBatch failed: {msg}"));
                        retries = self.schedule(batch, &f.code, &msg, now);
                    }
                }
            }
        }
        metrics::counter!(m::FIREHOSE_CALLS_TOTAL, "outcome" => outcome).increment(1);
        {
            let mut q = self.lock();
            q.in_flight -= 1;
            if throttled {
                let scope = if outcome == "throttled" {
                    "call"
                } else {
                    "record"
                };
                metrics::counter!(m::FIREHOSE_THROTTLES_TOTAL, "scope" => scope).increment(1);
                q.aimd.on_throttle(now);
            } else if all_ok {
                q.aimd.on_success();
            }
            metrics::gauge!(m::FIREHOSE_IN_FLIGHT_LIMIT).set(q.aimd.limit() as f64);
            metrics::gauge!(m::FIREHOSE_IN_FLIGHT).set(q.in_flight as f64);
            if self.stopped.load(Ordering::Acquire) {
                drop(q);
                for e in retries {
                    e.resolve(Err(shutting_down()));
                }
            } else {
                q.retry.extend(retries);
            }
        }
        self.wake.notify_one();
    }

    /// Gives failed records a backoff (the workspace's [`Backoff`]: exponential from
    /// `retry_base` up to `retry_max_backoff`, full jitter) or, if it would pass their deadline,
    /// fails them with `Timeout`. Returns the ones to resend.
    fn schedule(&self, failed: Vec<Entry>, code: &str, reason: &str, now: Instant) -> Vec<Entry> {
        let backoff = Backoff::new(self.config.retry_base, self.config.retry_max_backoff);
        let mut resend = Vec::with_capacity(failed.len());
        for mut e in failed {
            e.attempts = e.attempts.saturating_add(1);
            e.not_before = now + backoff.delay(e.attempts);
            if e.not_before >= e.deadline {
                let detail = format!("{} attempts, last: {reason}", e.attempts);
                let id = e.event_id.clone();
                e.resolve(Err(deadline_error(&id, self.config.deadline, &detail)));
            } else {
                metrics::counter!(m::FIREHOSE_RETRIES_TOTAL, "code" => code.to_owned())
                    .increment(1);
                resend.push(e);
            }
        }
        resend
    }

    /// Waits until every admitted record is resolved, or `timeout`. True when drained.
    pub(crate) async fn wait_drained(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            let notified = self.counters.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.counters.records() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.counters.records() == 0;
            }
        }
    }

    /// Stops admitting records.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Fails every queued (not in-flight) record with `ShuttingDown`; returns how many.
    pub(crate) fn fail_queued(&self) -> usize {
        let entries: Vec<Entry> = {
            let mut q = self.lock();
            let mut all: Vec<Entry> = q.fresh.drain(..).collect();
            all.append(&mut q.retry);
            all
        };
        let n = entries.len();
        for e in entries {
            e.resolve(Err(shutting_down()));
        }
        n
    }

    /// Stops the dispatcher (in-flight calls finish; their failed records are not resent).
    pub(crate) fn stop(&self) {
        self.closed.store(true, Ordering::Release);
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

pub(crate) fn shutting_down() -> SinkError {
    SinkError::new(
        SinkErrorKind::ShuttingDown,
        "the Firehose sink is shutting down and takes no more records",
    )
}

fn deadline_error(event_id: &str, deadline: Duration, detail: &str) -> SinkError {
    SinkError::new(
        SinkErrorKind::Timeout,
        format!(
            "event {event_id} not acknowledged by Firehose within {} ms ({detail}); it may still arrive as a duplicate",
            deadline.as_millis()
        ),
    )
}
