//! The group-commit engine: a bounded queue, one dispatcher task, and `SendMessageBatch` calls
//! that resolve each record's caller as soon as SQS accepted its message. Failed entries are resent
//! alone, after a backoff, within the put's deadline.
//!
//! The shape is the Firehose sink's engine without its AIMD pacing: SQS standard queues take a
//! nearly unlimited call rate, and a FIFO queue's throttling is retried per entry like any
//! transient failure.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_sqs::operation::RequestId;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use stripe_webhook_backoff::Backoff;
use stripe_webhook_metrics as m;
use stripe_webhook_sink::{SinkError, SinkErrorKind};
use stripe_webhook_sink_firehose::classify::{CallFailure, Class, classify_code};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::config::{MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES, SqsSinkConfig};
use crate::message::{ATTR_EVENT_ID, ATTR_EVENT_TYPE, Message};

type Outcome = Result<(), SinkError>;

/// Told the outcome of every call: `Ok` when SQS answered, the failure when the call failed as a
/// whole (the sink's readiness follows it).
pub(crate) type OnCall = Box<dyn Fn(Result<(), &str>) + Send + Sync>;

/// How an entry SQS failed inside an answered call is handled: its code decides when known
/// (throttling is retried, access and KMS refusals are not), else `SenderFault` (the request's
/// fault: no resend fixes it) against a server fault (retried).
pub(crate) fn classify_entry(code: &str, sender_fault: bool) -> Class {
    classify_code(code).unwrap_or(if sender_fault {
        Class::Permanent
    } else {
        Class::Transient
    })
}

/// How many of the messages of sizes `sizes` (in queue order) go into the next call: at most
/// [`MAX_BATCH_ENTRIES`], their sizes together at most `max_bytes`; always at least one (a
/// message over `max_bytes` never reaches the queue: it takes the oversize path).
pub(crate) fn batch_len(sizes: impl IntoIterator<Item = usize>, max_bytes: usize) -> usize {
    let mut total = 0;
    let mut n = 0;
    for size in sizes.into_iter().take(MAX_BATCH_ENTRIES) {
        if n > 0 && total + size > max_bytes {
            break;
        }
        total += size;
        n += 1;
    }
    n
}

/// Messages and bytes admitted and not yet resolved: the memory bound.
#[derive(Default)]
pub(crate) struct Counters {
    records: AtomicUsize,
    bytes: AtomicUsize,
    drained: Notify,
}

impl Counters {
    pub(crate) fn records(&self) -> usize {
        self.records.load(Ordering::Acquire)
    }
}

/// One admitted message's share of the bound, released on drop.
struct Ticket {
    counters: Arc<Counters>,
    len: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.counters.bytes.fetch_sub(self.len, Ordering::AcqRel);
        if self.counters.records.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.counters.drained.notify_waiters();
        }
    }
}

struct Entry {
    message: Message,
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

    fn to_sdk(&self, id: usize) -> SendMessageBatchRequestEntry {
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .expect("a String attribute with a value always builds")
        };
        SendMessageBatchRequestEntry::builder()
            .id(id.to_string())
            .message_body(&self.message.body)
            .message_attributes(ATTR_EVENT_ID, attr(&self.message.event_id))
            .message_attributes(ATTR_EVENT_TYPE, attr(&self.message.event_type))
            .set_message_group_id(self.message.group_id.clone())
            .set_message_deduplication_id(self.message.deduplication_id())
            .build()
            .expect("an entry with id and body always builds")
    }
}

struct Queue {
    fresh: VecDeque<Entry>,
    /// Failed entries waiting for their backoff; resent before fresh ones.
    retry: Vec<Entry>,
    in_flight: usize,
}

/// State shared by the sink handle, the dispatcher and the call tasks.
pub(crate) struct Engine {
    pub(crate) config: SqsSinkConfig,
    client: aws_sdk_sqs::Client,
    backoff: Backoff,
    /// The queue's message limit as last read (start-up check), or the configured cap.
    max_message_bytes: AtomicUsize,
    counters: Arc<Counters>,
    queue: Mutex<Queue>,
    wake: Notify,
    closed: AtomicBool,
    stopped: AtomicBool,
    /// Readiness: called back with `Ok` after an answered call, the failure after a failed one.
    on_call: OnCall,
}

impl Engine {
    pub(crate) fn new(
        config: SqsSinkConfig,
        client: aws_sdk_sqs::Client,
        max_message_bytes: usize,
        on_call: OnCall,
    ) -> Arc<Self> {
        Arc::new(Self {
            backoff: Backoff::new(config.retry_base, config.retry_max_backoff),
            config,
            client,
            max_message_bytes: AtomicUsize::new(max_message_bytes),
            counters: Arc::default(),
            queue: Mutex::new(Queue {
                fresh: VecDeque::new(),
                retry: Vec::new(),
                in_flight: 0,
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            on_call,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn set_max_message_bytes(&self, bytes: usize) {
        self.max_message_bytes
            .store(bytes.clamp(1024, MAX_MESSAGE_BYTES), Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues one message and waits until SQS accepted it, it failed for good, or `deadline`.
    pub(crate) async fn submit(&self, message: Message, deadline: Instant) -> Outcome {
        let len = message.size();
        let ticket = Ticket {
            counters: Arc::clone(&self.counters),
            len,
        };
        let records = self.counters.records.fetch_add(1, Ordering::AcqRel) + 1;
        let bytes = self.counters.bytes.fetch_add(len, Ordering::AcqRel) + len;
        let event_id = message.event_id.clone();
        if records > self.config.max_queue_records || bytes > self.config.max_queue_bytes {
            return Err(SinkError::new(
                SinkErrorKind::Overloaded,
                format!(
                    "SQS sink queue full ({} messages / {} bytes max); event {event_id} not taken",
                    self.config.max_queue_records, self.config.max_queue_bytes
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.lock();
            if self.is_closed() {
                return Err(shutting_down());
            }
            q.fresh.push_back(Entry {
                message,
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
                format!("SQS sink stopped before event {event_id} was accepted"),
            )),
            Err(_) => Err(deadline_error(
                &event_id,
                self.config.deadline,
                "still queued or in flight",
            )),
        }
    }

    /// The dispatcher: whenever a call slot is free, sends what is ready as one batch; messages
    /// arriving while calls are in flight form the next batches.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            let (batch, wake_at) = {
                let mut q = self.lock();
                if q.in_flight < self.config.max_in_flight {
                    let (batch, wake_at) = self.take_batch(&mut q, Instant::now());
                    if !batch.is_empty() {
                        q.in_flight += 1;
                    }
                    (batch, wake_at)
                } else {
                    (Vec::new(), None)
                }
            };
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
            tokio::spawn(Arc::clone(&self).call(batch));
        }
    }

    /// Takes the next batch (due retries first, then fresh messages, in order); fails entries whose
    /// caller is gone or whose deadline passed. Returns when the next waiting retry is due.
    fn take_batch(&self, q: &mut Queue, now: Instant) -> (Vec<Entry>, Option<Instant>) {
        let expire = |e: Entry| {
            let detail = format!("attempt {} pending", e.attempts + 1);
            let id = e.message.event_id.clone();
            e.resolve(Err(deadline_error(&id, self.config.deadline, &detail)));
        };
        let (dead, alive): (Vec<Entry>, Vec<Entry>) =
            q.retry.drain(..).partition(|e| e.is_dead(now));
        dead.into_iter().for_each(expire);
        while q.fresh.front().is_some_and(|e| e.is_dead(now)) {
            q.fresh.pop_front().into_iter().for_each(expire);
        }
        let (due, mut waiting): (Vec<Entry>, Vec<Entry>) =
            alive.into_iter().partition(|e| e.not_before <= now);
        waiting.sort_by_key(|e| e.not_before);
        let mut ready: VecDeque<Entry> = due.into();
        // Fresh entries whose caller is gone are dropped when their turn comes.
        let sizes = ready.iter().chain(q.fresh.iter()).map(|e| e.message.size());
        let n = batch_len(sizes, self.max_message_bytes());
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            match ready.pop_front().or_else(|| q.fresh.pop_front()) {
                Some(e) => batch.push(e),
                None => break,
            }
        }
        waiting.extend(ready);
        waiting.sort_by_key(|e| e.not_before);
        let next = waiting.first().map(|e| e.not_before);
        q.retry = waiting;
        (batch, next)
    }

    /// One `SendMessageBatch` call: resolves accepted entries, schedules failed ones for a resend.
    async fn call(self: Arc<Self>, batch: Vec<Entry>) {
        let started = Instant::now();
        let count = batch.len();
        let deadline = batch
            .iter()
            .map(|e| e.deadline)
            .max()
            .unwrap_or(started + self.config.deadline);
        let entries: Vec<SendMessageBatchRequestEntry> =
            batch.iter().enumerate().map(|(i, e)| e.to_sdk(i)).collect();
        let send = self
            .client
            .send_message_batch()
            .queue_url(&self.config.queue_url)
            .set_entries(Some(entries))
            .send();
        let result = tokio::time::timeout_at(deadline, send).await;
        let now = Instant::now();
        metrics::histogram!(m::SQS_CALL_SECONDS).record((now - started).as_secs_f64());

        let mut retries = Vec::new();
        let outcome: &'static str = match result {
            Err(_) => {
                let f = CallFailure::deadline();
                tracing::warn!(
                    messages = count,
                    "SendMessageBatch timed out; messages will be retried"
                );
                (self.on_call)(Err("SendMessageBatch timed out"));
                retries = self.schedule(batch, &f.code, &f.message, now);
                "timeout"
            }
            Ok(Ok(out)) => {
                let request_id = out.request_id().unwrap_or("-").to_owned();
                let mut by_id: HashMap<usize, Entry> = batch.into_iter().enumerate().collect();
                let mut ok = 0_u64;
                for s in out.successful() {
                    if let Some(e) = s.id().parse::<usize>().ok().and_then(|i| by_id.remove(&i)) {
                        ok += 1;
                        e.resolve(Ok(()));
                    }
                }
                metrics::counter!(m::SQS_MESSAGES_TOTAL).increment(ok);
                let mut failed = 0;
                for f in out.failed() {
                    let Some(e) = f.id().parse::<usize>().ok().and_then(|i| by_id.remove(&i))
                    else {
                        continue;
                    };
                    failed += 1;
                    let code = f.code().to_owned();
                    metrics::counter!(m::SQS_MESSAGES_FAILED_TOTAL, "code" => code.clone())
                        .increment(1);
                    if classify_entry(&code, f.sender_fault()) == Class::Permanent {
                        tracing::error!(request_id, event_id = %e.message.event_id, code, "SQS refused a message for good");
                        let msg = format!(
                            "SQS refused event {} with {code} ({request_id}): {}",
                            e.message.event_id,
                            f.message().unwrap_or("")
                        );
                        e.resolve(Err(SinkError::new(SinkErrorKind::Permanent, msg)));
                    } else {
                        let msg = format!("{code} ({request_id})");
                        retries.extend(self.schedule(vec![e], &code, &msg, now));
                    }
                }
                // An entry the answer does not mention was not accepted: resend it.
                let missing: Vec<Entry> = by_id.into_values().collect();
                if !missing.is_empty() {
                    failed += missing.len();
                    tracing::warn!(
                        request_id,
                        missing = missing.len(),
                        "SendMessageBatch answered without some entries; resending them"
                    );
                    metrics::counter!(m::SQS_MESSAGES_FAILED_TOTAL, "code" => "MissingEntry")
                        .increment(missing.len() as u64);
                    let msg = format!("entry missing from the answer ({request_id})");
                    retries.extend(self.schedule(missing, "MissingEntry", &msg, now));
                }
                (self.on_call)(Ok(()));
                if failed == 0 { "ok" } else { "partial" }
            }
            Ok(Err(err)) => {
                let f = CallFailure::from_sdk(&err);
                let rid = f.request_id_text();
                metrics::counter!(m::SQS_MESSAGES_FAILED_TOTAL, "code" => f.code.clone())
                    .increment(count as u64);
                let msg = format!(
                    "SendMessageBatch to {} failed: {} ({rid})",
                    self.config.queue_url, f.code
                );
                (self.on_call)(Err(&msg));
                if f.class == Class::Permanent {
                    tracing::error!(request_id = ?f.request_id, code = %f.code, queue = %self.config.queue_url, error = %f.message, "SendMessageBatch failed permanently");
                    let msg = format!(
                        "SQS refused SendMessageBatch for good: {msg}: {}",
                        f.message
                    );
                    for e in batch {
                        e.resolve(Err(SinkError::new(SinkErrorKind::Permanent, msg.clone())));
                    }
                    "error"
                } else {
                    tracing::warn!(request_id = ?f.request_id, code = %f.code, messages = count, "SendMessageBatch failed; messages will be retried");
                    retries = self.schedule(batch, &f.code, &msg, now);
                    if f.class == Class::Throttled {
                        "throttled"
                    } else {
                        "error"
                    }
                }
            }
        };
        metrics::counter!(m::SQS_CALLS_TOTAL, "outcome" => outcome).increment(1);
        {
            let mut q = self.lock();
            q.in_flight -= 1;
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

    /// Gives failed entries a backoff or, if it would pass their deadline, fails them with
    /// `Timeout`. Returns the ones to resend.
    fn schedule(&self, failed: Vec<Entry>, code: &str, reason: &str, now: Instant) -> Vec<Entry> {
        let mut resend = Vec::with_capacity(failed.len());
        for mut e in failed {
            e.attempts += 1;
            e.not_before = now + self.backoff.delay(e.attempts);
            if e.not_before >= e.deadline {
                let detail = format!("{} attempts, last: {reason}", e.attempts);
                let id = e.message.event_id.clone();
                e.resolve(Err(deadline_error(&id, self.config.deadline, &detail)));
            } else {
                tracing::debug!(event_id = %e.message.event_id, code, attempt = e.attempts, "SQS message will be resent");
                resend.push(e);
            }
        }
        resend
    }

    /// Waits until every admitted message is resolved, or `timeout`. True when drained.
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

    /// Stops admitting messages.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Fails every queued (not in-flight) message with `ShuttingDown`; returns how many.
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

    /// Stops the dispatcher (in-flight calls finish; their failed entries are not resent).
    pub(crate) fn stop(&self) {
        self.closed.store(true, Ordering::Release);
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

pub(crate) fn shutting_down() -> SinkError {
    SinkError::new(
        SinkErrorKind::ShuttingDown,
        "the SQS sink is shutting down and takes no more records",
    )
}

fn deadline_error(event_id: &str, deadline: Duration, detail: &str) -> SinkError {
    SinkError::new(
        SinkErrorKind::Timeout,
        format!(
            "event {event_id} not accepted by SQS within {} ms ({detail}); it may still arrive as a duplicate",
            deadline.as_millis()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_entries_within_the_byte_limit() {
        assert_eq!(batch_len([], 1000), 0);
        assert_eq!(batch_len([100; 25], 1_000_000), 10, "ten entries at most");
        assert_eq!(
            batch_len([400, 400, 400], 1000),
            2,
            "the third would pass 1000 bytes"
        );
        assert_eq!(
            batch_len([600, 400, 1], 1000),
            2,
            "exactly at the limit fits"
        );
        assert_eq!(
            batch_len([5000, 1], 1000),
            1,
            "a message always goes, even alone over"
        );
        assert_eq!(
            batch_len([1, 5000, 1], 1000),
            1,
            "order is kept: no skipping ahead"
        );
    }

    #[test]
    fn entry_failures_are_retried_unless_no_resend_can_fix_them() {
        // Throttling, whoever's fault SQS calls it.
        assert_eq!(classify_entry("RequestThrottled", true), Class::Throttled);
        assert_eq!(classify_entry("KmsThrottled", true), Class::Throttled);
        assert_eq!(
            classify_entry("ThrottlingException", false),
            Class::Throttled
        );
        // Server faults are transient, whatever the code.
        assert_eq!(classify_entry("InternalError", false), Class::Transient);
        assert_eq!(
            classify_entry("ServiceUnavailable", false),
            Class::Transient
        );
        // The sender's fault (bad contents, KMS key disabled, access) is permanent.
        assert_eq!(
            classify_entry("InvalidMessageContents", true),
            Class::Permanent
        );
        assert_eq!(classify_entry("KmsDisabled", true), Class::Permanent);
        assert_eq!(
            classify_entry("AccessDeniedException", false),
            Class::Permanent
        );
    }
}
