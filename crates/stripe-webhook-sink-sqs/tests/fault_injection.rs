//! The SQS sink against the fault-injecting SQS endpoint (testkit `sqs_fault`): batching within
//! SQS's limits, per-entry retries, throttling, permanent refusals, deadlines, FIFO ids and the
//! start-up check. No moto: these are the faults moto cannot make.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;
use bytes::Bytes;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, Record, encode};
use stripe_webhook_sink::{RecordSink, SinkErrorKind};
use stripe_webhook_sink_sqs::{ATTR_EVENT_ID, ATTR_EVENT_TYPE, SqsSink, SqsSinkConfig};
use stripe_webhook_testkit::sqs_fault::{SqsFault, Step};

fn record(i: usize, pad: usize) -> Record {
    let body = format!(
        r#"{{"id":"evt_{i}","type":"charge.succeeded","object":"event","data":{{"object":{{"id":"ch_{}","pad":"{}"}}}}}}"#,
        i % 3,
        "a".repeat(pad)
    );
    encode(
        Bytes::from(body),
        "t=1700000000,v1=00",
        ReceivedAt::now(),
        &EnvelopeOptions::default(),
    )
    .expect("encode")
}

async fn sink(fault: &SqsFault, tweak: impl FnOnce(&mut SqsSinkConfig)) -> Arc<SqsSink> {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(fault.endpoint_url())
        .load()
        .await;
    let mut config = SqsSinkConfig::new(fault.queue_url());
    config.retry_base = Duration::from_millis(5);
    config.retry_max_backoff = Duration::from_millis(20);
    tweak(&mut config);
    let sink = Arc::new(SqsSink::new(config, &sdk));
    sink.healthcheck().await.expect("the queue exists");
    sink
}

async fn put_all(sink: &Arc<SqsSink>, records: Vec<Record>) -> Vec<Result<(), SinkErrorKind>> {
    let tasks: Vec<_> = records
        .into_iter()
        .map(|r| {
            let sink = Arc::clone(sink);
            tokio::spawn(async move { sink.put(r).await.map_err(|e| e.kind()) })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("put task"));
    }
    out
}

#[tokio::test]
async fn concurrent_puts_are_batched_within_sqs_limits_and_each_accepted_once() {
    let fault = SqsFault::start("events", false).await;
    let sink = sink(&fault, |_| {}).await;
    // 40 records of ~100 KB: neither ten per call (1 MiB) nor one call would fit SQS's limits.
    let records: Vec<Record> = (0..40).map(|i| record(i, 100_000)).collect();
    let lines: Vec<Bytes> = records.iter().map(|r| r.line().clone()).collect();
    let results = put_all(&sink, records).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let calls = fault.calls();
    assert!(calls.iter().all(|c| c == "accept"), "{calls:?}");
    assert!(
        calls.len() < 40,
        "batched: {} calls for 40 records",
        calls.len()
    );
    let accepted = fault.accepted();
    assert_eq!(accepted.len(), 40);
    for line in &lines {
        assert_eq!(
            accepted
                .iter()
                .filter(|m| m.body.as_bytes() == &line[..])
                .count(),
            1,
            "each envelope line arrives once, byte for byte"
        );
    }
    let m = &accepted[0];
    assert!(
        m.attributes
            .iter()
            .any(|(k, v)| k == ATTR_EVENT_ID && v.starts_with("evt_"))
    );
    assert!(
        m.attributes
            .iter()
            .any(|(k, v)| k == ATTR_EVENT_TYPE && v == "charge.succeeded")
    );
    assert_eq!(m.group_id, None, "a standard queue gets no group id");
}

/// Waits (polling, bounded) until `sink` holds `n` unresolved messages.
async fn wait_queued(sink: &SqsSink, n: usize) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while sink.queued() != n {
        assert!(
            tokio::time::Instant::now() < until,
            "never {n} queued: {}",
            sink.queued()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn failed_entries_are_resent_alone_and_throttling_is_retried() {
    let fault = SqsFault::start("events", false).await;
    let sink = sink(&fault, |c| c.max_in_flight = 1).await;
    // A slow first call holds the only slot while five records queue behind it; their call fails
    // entry 1, whose resends are throttled, then answered 500, then accepted.
    fault.push_steps([
        Step::Delay(Duration::from_secs(1), Box::new(Step::Accept)),
        Step::FailIndices(vec![1]),
        Step::Throttle,
        Step::ServerError,
    ]);
    let first = tokio::spawn({
        let sink = Arc::clone(&sink);
        async move { sink.put(record(100, 10)).await.map_err(|e| e.kind()) }
    });
    wait_queued(&sink, 1).await;
    let rest = tokio::spawn({
        let sink = Arc::clone(&sink);
        async move { put_all(&sink, (0..5).map(|i| record(i, 10)).collect()).await }
    });
    wait_queued(&sink, 6).await;
    assert_eq!(first.await.expect("task"), Ok(()));
    let results = rest.await.expect("task");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        fault.calls(),
        ["accept", "partial", "throttle", "server_error", "accept"],
        "the failed entry alone was resent until accepted"
    );
    let mut ids: Vec<String> = fault
        .accepted()
        .iter()
        .map(|m| {
            m.attributes
                .iter()
                .find(|(k, _)| k == ATTR_EVENT_ID)
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert_eq!(ids.len(), 6, "nothing accepted twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "every record accepted: {ids:?}");
}

#[tokio::test]
async fn a_refusal_no_resend_can_fix_fails_at_once_and_a_stall_fails_at_the_deadline() {
    let fault = SqsFault::start("events", false).await;
    let sink = sink(&fault, |c| c.deadline = Duration::from_millis(500)).await;
    fault.push_steps([Step::Error {
        status: 400,
        error_type: "com.amazonaws.sqs#KmsDisabled".to_owned(),
    }]);
    let e = sink.put(record(1, 10)).await.unwrap_err();
    assert_eq!(e.kind(), SinkErrorKind::Permanent, "{e}");
    assert!(e.message().contains("KmsDisabled"), "{e}");
    assert!(
        !sink.health().ready,
        "a failed call marks the sink not ready"
    );

    fault.push_steps([Step::Stall]);
    fault.set_default(Step::Stall);
    let e = sink.put(record(2, 10)).await.unwrap_err();
    assert_eq!(e.kind(), SinkErrorKind::Timeout, "{e}");
    assert!(
        fault.accepted().is_empty(),
        "nothing was accepted, nothing acknowledged"
    );

    fault.set_default(Step::Accept);
    sink.put(record(3, 10)).await.expect("accepted");
    assert!(sink.health().ready, "an answered call makes it ready again");
}

#[tokio::test]
async fn a_fifo_queue_gets_the_object_as_group_and_the_event_as_deduplication_id() {
    let fault = SqsFault::start("events.fifo", true).await;
    let sink = sink(&fault, |_| {}).await;
    sink.put(record(4, 10)).await.expect("accepted");
    let m = &fault.accepted()[0];
    assert_eq!(m.group_id.as_deref(), Some("ch_1"));
    assert_eq!(m.deduplication_id.as_deref(), Some("evt_4"));
}

#[tokio::test]
async fn the_start_up_check_refuses_a_queue_that_is_not_what_its_url_says() {
    let fault = SqsFault::start("events", true).await;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(fault.endpoint_url())
        .load()
        .await;
    let sink = SqsSink::new(SqsSinkConfig::new(fault.queue_url()), &sdk);
    let e = sink.healthcheck().await.unwrap_err();
    assert_eq!(e.kind(), SinkErrorKind::Permanent);
    assert!(e.message().contains("FIFO"), "{e}");
    let missing = SqsSink::new(
        SqsSinkConfig::new(format!("{}-gone", fault.queue_url())),
        &sdk,
    );
    let e = missing.healthcheck().await.unwrap_err();
    assert_eq!(e.kind(), SinkErrorKind::Permanent, "{e}");
    assert!(e.message().contains("QueueDoesNotExist"), "{e}");
}
