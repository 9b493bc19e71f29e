//! The sink against the test kit's fault-injecting Firehose endpoint, through the real AWS SDK.
//! Every scenario checks that no `Ok` was given for a record the endpoint did not accept.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{assert_ok_subset_of_accepted, padded_record, put_all, record, sink_at};
use stripe_webhook_sink::{RecordSink, SinkErrorKind};
use stripe_webhook_testkit::firehose_fault::{FirehoseFault, MAX_BATCH_RECORDS, Step};
use stripe_webhook_testkit::wait;

const STREAM: &str = "test-stream";

async fn fault() -> FirehoseFault {
    FirehoseFault::start(STREAM).await
}

#[tokio::test]
async fn a_single_record_at_idle_is_one_batch_call_sent_at_once() {
    let fault = fault().await;
    let sink = sink_at(&fault.endpoint_url(), STREAM, |_| {}).await;
    let r = record(1);
    let started = Instant::now();
    sink.put(r.clone()).await.expect("put");
    assert!(started.elapsed() < Duration::from_secs(1));
    let calls = fault.put_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "PutRecordBatch");
    assert_eq!(
        calls[0].records,
        vec![r.line().clone()],
        "Data is the envelope line, byte for byte"
    );
    assert_eq!(fault.accepted(), vec![r.line().clone()]);
}

#[tokio::test]
async fn partial_failure_resends_exactly_the_failed_records() {
    let fault = fault().await;
    fault.push_steps([Step::FailIndices(vec![1, 3])]);
    // A linger gathers the five concurrent puts into one call.
    let sink = sink_at(&fault.endpoint_url(), STREAM, |c| {
        c.linger = Duration::from_millis(100);
    })
    .await;
    let records: Vec<_> = (0..5).map(record).collect();
    let lines: Vec<Bytes> = records.iter().map(|r| r.line().clone()).collect();
    let results = put_all(&sink, records).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");

    let calls = fault.put_calls();
    assert_eq!(calls[0].records.len(), 5, "one batch of five");
    let mut resent: Vec<Bytes> = calls[1..].iter().flat_map(|c| c.records.clone()).collect();
    resent.sort();
    let mut expected = vec![lines[1].clone(), lines[3].clone()];
    expected.sort();
    assert_eq!(
        resent, expected,
        "only records 1 and 3 resent, byte-identical"
    );
    assert_ok_subset_of_accepted(&results, &fault.accepted());
    assert_eq!(fault.accepted().len(), 5);
}

#[tokio::test]
async fn three_record_failures_then_success_take_four_calls() {
    let fault = fault().await;
    fault.push_steps([
        Step::FailIndices(vec![0]),
        Step::FailIndices(vec![0]),
        Step::FailIndices(vec![0]),
    ]);
    let sink = sink_at(&fault.endpoint_url(), STREAM, |_| {}).await;
    let r = record(7);
    let results = put_all(&sink, vec![r.clone()]).await;
    assert!(results[0].1.is_ok());
    let calls = fault.put_calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.records == vec![r.line().clone()]));
    assert_ok_subset_of_accepted(&results, &fault.accepted());
}

#[tokio::test]
async fn resets_and_server_errors_are_retried() {
    let fault = fault().await;
    fault.push_steps([Step::Reset, Step::ServerError, Step::Throttle]);
    let sink = sink_at(&fault.endpoint_url(), STREAM, |_| {}).await;
    let results = put_all(&sink, vec![record(1)]).await;
    assert!(results[0].1.is_ok(), "{results:?}");
    let outcomes: Vec<String> = fault.put_calls().into_iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, ["reset", "server_error", "throttle", "accept"]);
    assert_ok_subset_of_accepted(&results, &fault.accepted());
}

#[tokio::test]
async fn readiness_follows_the_last_call() {
    let fault = fault().await;
    let sink = sink_at(&fault.endpoint_url(), STREAM, |c| {
        c.deadline = Duration::from_millis(300);
    })
    .await;
    sink.healthcheck().await.expect("ACTIVE DirectPut stream");
    assert!(sink.health().ready, "ready after the start-up check");

    // Every call fails as a whole (503s are retried until the deadline): not ready.
    fault.set_default(Step::ServerError);
    let results = put_all(&sink, vec![record(1)]).await;
    assert!(results[0].1.is_err());
    let health = sink.health();
    assert!(!health.ready, "{health:?}");
    assert!(health.detail.contains("PutRecordBatch"), "{health:?}");

    // Firehose answers again: the next call makes the sink ready.
    fault.set_default(Step::Accept);
    let results = put_all(&sink, vec![record(2)]).await;
    assert!(results[0].1.is_ok(), "{results:?}");
    assert!(sink.health().ready);
    assert_ok_subset_of_accepted(&results, &fault.accepted());
}

#[tokio::test]
async fn response_count_mismatch_fails_every_record_and_retries() {
    let fault = fault().await;
    fault.push_steps([Step::WrongCount(1)]);
    let sink = sink_at(&fault.endpoint_url(), STREAM, |c| {
        c.linger = Duration::from_millis(50);
    })
    .await;
    let results = put_all(&sink, vec![record(1), record(2)]).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let calls = fault.put_calls();
    assert_eq!(calls[0].outcome, "wrong_count");
    assert_eq!(calls[0].records.len(), 2);
    let resent: usize = calls[1..].iter().map(|c| c.records.len()).sum();
    assert_eq!(resent, 2, "both records resent");
    assert_ok_subset_of_accepted(&results, &fault.accepted());
}

#[tokio::test]
async fn permanent_errors_surface_at_once_with_the_request_id() {
    for error_type in ["InvalidArgumentException", "InvalidKMSResourceException"] {
        let fault = fault().await;
        fault.push_steps([Step::Error {
            status: 400,
            error_type: error_type.to_owned(),
        }]);
        let sink = sink_at(&fault.endpoint_url(), STREAM, |_| {}).await;
        let started = Instant::now();
        let results = put_all(&sink, vec![record(1)]).await;
        let err = results[0].1.as_ref().expect_err("permanent");
        assert_eq!(err.kind(), SinkErrorKind::Permanent, "{err}");
        assert!(err.message().contains(error_type), "{err}");
        assert!(err.message().contains("fault-req-"), "request id in {err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(fault.put_calls().len(), 1, "no retry");
        assert!(!sink.last_health().ready);
    }

    // A stream the endpoint does not know: ResourceNotFoundException.
    let fault = fault().await;
    let sink = sink_at(&fault.endpoint_url(), "no-such-stream", |_| {}).await;
    let results = put_all(&sink, vec![record(1)]).await;
    let err = results[0].1.as_ref().expect_err("permanent");
    assert_eq!(err.kind(), SinkErrorKind::Permanent);
    assert!(err.message().contains("ResourceNotFoundException"), "{err}");
    assert!(err.message().contains("no-such-stream"), "{err}");
    assert_eq!(fault.put_calls().len(), 1);
    assert!(fault.accepted().is_empty());
}

#[tokio::test]
async fn throttling_storm_lowers_the_call_rate_and_recovers() {
    let fault = fault().await;
    fault.push_steps(std::iter::repeat_n(Step::Throttle, 16));
    let sink = sink_at(&fault.endpoint_url(), STREAM, |c| {
        c.max_in_flight = 4;
        c.deadline = Duration::from_secs(20);
        c.retry_base = Duration::from_millis(5);
        c.retry_max_backoff = Duration::from_millis(160);
    })
    .await;
    assert_eq!(sink.send_limit(), (4, Duration::ZERO));

    // Watch the controller while the storm lasts.
    let done = Arc::new(AtomicBool::new(false));
    let min_limit = Arc::new(AtomicUsize::new(usize::MAX));
    let max_gap_ms = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (sink, done, min_limit, max_gap_ms) = (
            Arc::clone(&sink),
            Arc::clone(&done),
            Arc::clone(&min_limit),
            Arc::clone(&max_gap_ms),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let (limit, gap) = sink.send_limit();
                min_limit.fetch_min(limit, Ordering::Relaxed);
                max_gap_ms.fetch_max(gap.as_millis() as usize, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let results = put_all(&sink, (0..40).map(record).collect()).await;
    done.store(true, Ordering::Relaxed);
    watcher.await.expect("watcher");
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(
        min_limit.load(Ordering::Relaxed),
        1,
        "calls in flight cut to one"
    );
    assert!(max_gap_ms.load(Ordering::Relaxed) >= 40, "calls spaced out");

    // The call rate fell: the last throttled calls are spaced much further apart than the first.
    let calls = fault.put_calls();
    let throttled: Vec<Instant> = calls
        .iter()
        .filter(|c| c.outcome == "throttle")
        .map(|c| c.at)
        .collect();
    assert_eq!(throttled.len(), 16);
    let first_span = throttled[3] - throttled[0];
    let last_span = throttled[15] - throttled[12];
    assert!(
        last_span > first_span * 3 && last_span >= Duration::from_millis(150),
        "first gaps {first_span:?}, last gaps {last_span:?}"
    );

    // Recovery: successful calls win the rate back to the configured maximum.
    let mut all = results;
    for i in 100..130 {
        let r = record(i);
        let line = r.line().clone();
        sink.put(r).await.expect("put after the storm");
        all.push((line, Ok(())));
    }
    assert_eq!(sink.send_limit(), (4, Duration::ZERO));
    assert_ok_subset_of_accepted(&all, &fault.accepted());
}

#[tokio::test]
async fn stalled_endpoint_times_out_within_the_deadline_with_bounded_memory() {
    let fault = fault().await;
    fault.set_default(Step::Stall);
    let deadline = Duration::from_millis(600);
    let sink = sink_at(&fault.endpoint_url(), STREAM, |c| {
        c.deadline = deadline;
        c.max_queue_records = 300;
    })
    .await;
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (sink, peak, done) = (Arc::clone(&sink), Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(sink.queued().0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let sink = Arc::clone(&sink);
            let r = record(i);
            tokio::spawn(async move {
                let started = Instant::now();
                let line = r.line().clone();
                let result = sink.put(r).await;
                (line, result, started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    let (mut timeouts, mut overloaded) = (0, 0);
    for t in tasks {
        let (line, result, elapsed) = t.await.expect("task");
        match result.as_ref().map_err(|e| e.kind()) {
            Err(SinkErrorKind::Timeout) => {
                timeouts += 1;
                assert!(
                    elapsed < deadline + Duration::from_millis(400),
                    "{elapsed:?}"
                );
            }
            Err(SinkErrorKind::Overloaded) => {
                overloaded += 1;
                assert!(
                    elapsed < Duration::from_millis(200),
                    "fails fast: {elapsed:?}"
                );
            }
            other => panic!("unexpected outcome {other:?}"),
        }
        results.push((line, result));
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.expect("watcher");
    assert_eq!(timeouts + overloaded, 2000);
    assert!(timeouts <= 300, "{timeouts} admitted");
    assert!(overloaded >= 1700, "{overloaded} refused");
    assert!(peak.load(Ordering::Relaxed) <= 300, "queue bound held");
    assert!(fault.accepted().is_empty());
    assert_ok_subset_of_accepted(&results, &fault.accepted());
    // Everything admitted is released once resolved.
    wait::until_async("the queue is empty", Duration::from_secs(10), || {
        sink.queued() == (0, 0)
    })
    .await;
}

#[tokio::test]
async fn group_commit_batches_concurrent_records_within_aws_limits() {
    let fault = fault().await;
    fault.set_latency(Duration::from_millis(40));
    let sink = sink_at(&fault.endpoint_url(), STREAM, |_| {}).await;
    // 1,200 records of ~2 KB, then ten of ~0.9 MB (three fit a 4 MiB call).
    let mut records: Vec<_> = (0..1200).map(|i| padded_record(i, 2000)).collect();
    records.extend((5000..5010).map(|i| padded_record(i, 300_000)));
    let results = put_all(&sink, records).await;
    assert!(
        results.iter().all(|(_, r)| r.is_ok()),
        "{:?}",
        results.iter().find(|r| r.1.is_err())
    );
    let calls = fault.put_calls();
    assert!(
        calls.iter().all(|c| c.outcome == "accept"),
        "no limit violated"
    );
    assert!(calls.iter().all(|c| c.records.len() <= MAX_BATCH_RECORDS));
    assert!(
        calls.len() < 60,
        "batched: {} calls for 1,210 records",
        calls.len()
    );
    assert_eq!(fault.accepted().len(), 1210);
    assert_ok_subset_of_accepted(&results, &fault.accepted());
}

#[tokio::test]
async fn oversize_without_bucket_fails_permanent_naming_the_variable() {
    let fault = fault().await;
    let sink = sink_at(&fault.endpoint_url(), STREAM, |_| {}).await;
    let big = padded_record(1, 1_100_000);
    assert!(big.len() > 1_024_000);
    let err = sink.put(big).await.expect_err("no bucket");
    assert_eq!(err.kind(), SinkErrorKind::Permanent);
    assert!(err.message().contains("OVERSIZE_S3_BUCKET"), "{err}");
    assert!(fault.put_calls().is_empty(), "never sent to Firehose");
}

#[tokio::test]
async fn shutdown_flushes_queued_records_then_refuses() {
    let fault = fault().await;
    fault.set_latency(Duration::from_millis(100));
    let sink = sink_at(&fault.endpoint_url(), STREAM, |c| {
        c.max_in_flight = 1;
        c.max_batch_records = 5;
    })
    .await;
    let puts = {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move { put_all(&sink, (0..30).map(record).collect()).await })
    };
    wait::until_async(
        "records are still queued when shutdown starts",
        Duration::from_secs(10),
        || sink.queued().0 > 5,
    )
    .await;
    sink.shutdown().await.expect("flushed within the timeout");
    let results = puts.await.expect("puts");
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(fault.accepted().len(), 30);
    assert_ok_subset_of_accepted(&results, &fault.accepted());
    let err = sink.put(record(99)).await.expect_err("closed");
    assert_eq!(err.kind(), SinkErrorKind::ShuttingDown);
}

#[tokio::test]
async fn shutdown_fails_what_it_cannot_flush() {
    let fault = fault().await;
    fault.set_default(Step::Stall);
    let sink = sink_at(&fault.endpoint_url(), STREAM, |c| {
        c.max_in_flight = 1;
        c.max_batch_records = 1;
        c.shutdown_timeout = Duration::from_millis(200);
    })
    .await;
    let puts = {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move { put_all(&sink, (0..5).map(record).collect()).await })
    };
    wait::until_async(
        "all five records are admitted (and stalled)",
        Duration::from_secs(10),
        || sink.queued().0 == 5,
    )
    .await;
    let started = Instant::now();
    let err = sink
        .shutdown()
        .await
        .expect_err("cannot flush a stalled endpoint");
    assert_eq!(err.kind(), SinkErrorKind::ShuttingDown);
    assert!(started.elapsed() < Duration::from_secs(1));
    let results = puts.await.expect("puts");
    let kinds: Vec<_> = results
        .iter()
        .map(|(_, r)| r.as_ref().map_err(|e| e.kind()))
        .collect();
    assert!(kinds.iter().all(Result::is_err), "{kinds:?}");
    assert!(
        kinds.contains(&Err(SinkErrorKind::ShuttingDown)),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn startup_healthcheck_reports_and_caches_state() {
    let fault = fault().await;
    let sink = sink_at(&fault.endpoint_url(), STREAM, |_| {}).await;
    assert!(!sink.last_health().ready);
    sink.healthcheck().await.expect("ACTIVE DirectPut stream");
    let health = sink.last_health();
    assert!(health.ready);
    assert!(
        health
            .stream_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(":deliverystream/test-stream"))
    );
    let describes = fault
        .calls()
        .iter()
        .filter(|c| c.operation == "DescribeDeliveryStream")
        .count();
    // Reading the cached state never calls AWS.
    for _ in 0..10 {
        assert!(sink.last_health().ready);
    }
    assert_eq!(fault.calls().len(), describes);

    fault.set_stream("CREATING", "DirectPut");
    let err = sink.healthcheck().await.expect_err("not active");
    assert_eq!(err.kind(), SinkErrorKind::Unavailable);
    assert!(
        err.message().contains("CREATING") && err.message().contains(STREAM),
        "{err}"
    );

    fault.set_stream("ACTIVE", "KinesisStreamAsSource");
    let err = sink.healthcheck().await.expect_err("not direct put");
    assert_eq!(err.kind(), SinkErrorKind::Permanent);

    let missing = sink_at(&fault.endpoint_url(), "absent-stream", |_| {}).await;
    let err = missing.healthcheck().await.expect_err("missing");
    assert_eq!(err.kind(), SinkErrorKind::Permanent);
    assert!(
        err.message().contains("absent-stream") && err.message().contains("us-east-1"),
        "{err}"
    );
    assert!(!missing.last_health().ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_quota_throttles_excess_calls_and_nothing_unaccepted_is_acknowledged() {
    let fault = FirehoseFault::start("quota-stream").await;
    fault.set_call_quota(Some(5));
    // One record per call (batches of one), so 40 puts need 40 calls: far over 5 calls/s.
    let sink = sink_at(&fault.endpoint_url(), "quota-stream", |c| {
        c.max_batch_records = 1;
        c.deadline = Duration::from_secs(3);
    })
    .await;
    let results = put_all(&sink, (0..40).map(record).collect()).await;
    let outcomes: Vec<String> = fault
        .put_calls()
        .iter()
        .map(|c| c.outcome.clone())
        .collect();
    assert!(
        outcomes.iter().any(|o| o == "throttle"),
        "calls over the quota are throttled: {outcomes:?}"
    );
    assert!(results.iter().any(|(_, r)| r.is_ok()));
    assert_ok_subset_of_accepted(&results, &fault.accepted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_quota_throttles_records_lowers_the_in_flight_limit_and_acknowledges_only_what_was_accepted()
 {
    use stripe_webhook_testkit::firehose_fault::Quota;
    let fault = FirehoseFault::start("byte-quota").await;
    // 40 KiB per second against 60 records of ~6 KiB: several seconds' worth of quota offered at once.
    fault.set_quota(Some(Quota {
        bytes_per_second: Some(40 * 1024),
        ..Quota::default()
    }));
    let sink = sink_at(&fault.endpoint_url(), "byte-quota", |c| {
        c.max_in_flight = 16;
        c.deadline = Duration::from_secs(2);
    })
    .await;
    let results = put_all(&sink, (0..60).map(|i| padded_record(i, 6 * 1024)).collect()).await;
    let accepted = results.iter().filter(|(_, r)| r.is_ok()).count();
    let timed_out = results
        .iter()
        .filter(|(_, r)| {
            r.as_ref()
                .is_err_and(|e| e.kind() == SinkErrorKind::Timeout)
        })
        .count();
    assert!(accepted > 0, "some records fit the quota");
    assert!(
        timed_out > 0,
        "the rest time out (503 for Stripe), none is acknowledged"
    );
    assert_eq!(accepted + timed_out, 60);
    assert!(
        sink.send_limit().0 < 16,
        "throttled records lower the calls in flight: {:?}",
        sink.send_limit()
    );
    assert_ok_subset_of_accepted(&results, &fault.accepted());
    // Over two seconds at 40 KiB/s, at most three windows' worth of bytes was accepted.
    let bytes: usize = fault.accepted().iter().map(|r| r.len()).sum();
    assert!(bytes <= 3 * 40 * 1024, "{bytes} bytes accepted");
}
