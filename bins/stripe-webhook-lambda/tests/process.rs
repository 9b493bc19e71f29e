//! Process test: the real `bootstrap` binary against the testkit's Runtime API emulator, through
//! several invocations of every event shape, with the file sink in a temporary directory.

use crate::support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stripe_webhook_testkit::archive;
use stripe_webhook_testkit::lambda_runtime_api::{
    FUNCTION_NAME, InvocationResult, LambdaRuntimeApi,
};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(30);

fn spawn(api: &LambdaRuntimeApi, envs: &[(&str, &str)], log: &Path) -> Child {
    let log = File::create(log).expect("create log");
    Command::new(env!("CARGO_BIN_EXE_stripe-webhook-lambda"))
        .env_clear()
        .envs(api.function_env())
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .spawn()
        .expect("spawn the lambda binary")
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            panic!("the lambda process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_many_invocations_with_one_init_and_archives_byte_exact() {
    let api = LambdaRuntimeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive_dir = dir.path().join("archive");
    let log = dir.path().join("lambda.log");
    let started = Instant::now();
    let mut child = spawn(
        &api,
        &[
            ("SINK", "file"),
            ("ARCHIVE_DIR", archive_dir.to_str().expect("utf-8 path")),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
        ],
        &log,
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let first_poll = api
        .wait_first_poll(TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no /invocation/next within {TIMEOUT:?}; log:\n{}", logs()));
    let init = first_poll - started;
    eprintln!("init (process start to first /invocation/next): {init:?}");
    assert!(init < Duration::from_secs(10), "init took {init:?}");

    // Accepted: every shape, text and base64, real bodies.
    let mut accepted = Vec::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        for base64 in [false, true] {
            let body = stripe_body(BODIES[i % BODIES.len()]);
            let event = webhook_event(shape, &body, base64, Some(&sign(&body)));
            let result = api.invoke(&event, TIMEOUT).await;
            let (status, _) = check_response(shape, &result.json());
            assert_eq!(status, 200, "{shape} base64={base64}; log:\n{}", logs());
            accepted.push(body);
        }
    }

    // Refused, answered in shape.
    let body = stripe_body("customer.created.json");
    let forged = webhook_event("apigw-rest-v1", &body, false, Some(&sign(b"other")));
    let (status, json) =
        check_response("apigw-rest-v1", &api.invoke(&forged, TIMEOUT).await.json());
    assert_eq!(
        (status, json["reason"].as_str()),
        (400, Some("no_matching_signature"))
    );
    let mut bad_base64 = webhook_event("alb", &body, true, Some(&sign(&body)));
    bad_base64["body"] = "%%%not-base64%%%".into();
    let (status, json) = check_response("alb", &api.invoke(&bad_base64, TIMEOUT).await.json());
    assert_eq!(
        (status, json["reason"].as_str()),
        (400, Some("bad_body_encoding"))
    );

    // Not an HTTP event, and not even JSON: reported as invocation errors, the runtime goes on.
    match api.invoke(&json!({"key1": "value1"}), TIMEOUT).await {
        InvocationResult::Error { body, .. } => {
            let error: Value = serde_json::from_slice(&body).expect("error JSON");
            assert_eq!(error["errorType"], "NotAnHttpEvent", "{error}");
        }
        other => panic!("expected an invocation error, got {other:?}"),
    }
    let id = api.enqueue_raw(bytes::Bytes::from_static(b"this is not JSON"));
    let result = api.wait_result(&id, TIMEOUT).await.expect("an answer");
    assert!(
        matches!(result, InvocationResult::Error { .. }),
        "{result:?}"
    );

    // Still serving after the errors.
    let body = stripe_body("customer.created.json");
    let event = webhook_event("function-url", &body, true, Some(&sign(&body)));
    assert_eq!(
        check_response("function-url", &api.invoke(&event, TIMEOUT).await.json()).0,
        200
    );
    accepted.push(body);
    assert!(api.in_flight().is_empty());

    // Every acknowledged record is readable before shutdown (the open segment).
    let records = archive::read_records(&archive_dir);
    assert_eq!(records.len(), accepted.len(), "log:\n{}", logs());

    // SIGTERM: the sink is closed (segments sealed) and the process exits 0.
    sigterm(&child);
    let status = wait_exit(&mut child, TIMEOUT);
    let logs = logs();
    assert!(status.success(), "exit {status}; log:\n{logs}");

    let records = archive::read_records(&archive_dir);
    assert_eq!(records.len(), accepted.len());
    for (record, body) in records.iter().zip(&accepted) {
        assert_eq!(
            record["raw"].as_str().map(str::as_bytes),
            Some(body.as_slice())
        );
    }
    assert!(
        archive::segment_files(&archive_dir)
            .iter()
            .all(|p| p.to_string_lossy().ends_with(".ndjson.gz")),
        "segments sealed on shutdown: {:?}",
        archive::segment_files(&archive_dir)
    );

    // JSON logs: one init line, one line per archived webhook.
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}")))
        .collect();
    let count = |message: &str| {
        lines
            .iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .count()
    };
    assert_eq!(count("initialised"), 1, "{logs}");
    assert_eq!(count("webhook archived"), accepted.len(), "{logs}");
    assert!(!logs.contains(SECRET), "the secret must never be logged");
    let init_ms = lines
        .iter()
        .find_map(|l| l["init_ms"].as_f64())
        .expect("init_ms logged");
    eprintln!("init inside the process (main to runtime loop): {init_ms:.2} ms");

    // Metrics: CloudWatch Embedded Metric Format documents, the server's names, units and labels
    // as dimensions after `function` (the function's name, from AWS_LAMBDA_FUNCTION_NAME), flushed
    // per invocation.
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert!(!emf.is_empty(), "no EMF documents in:\n{logs}");
    let metric =
        |name: &str, dimension_value: Option<(&str, &str)>| -> (u64, Vec<String>, String) {
            let mut total = 0;
            let mut dims = Vec::new();
            let mut unit = String::new();
            for doc in &emf {
                let Some(value) = doc.get(name) else { continue };
                if let Some((k, v)) = dimension_value
                    && doc[k] != v
                {
                    continue;
                }
                let directive = &doc["_aws"]["CloudWatchMetrics"][0];
                assert_eq!(directive["Namespace"], "StripeWebhookArchive");
                assert!(doc["_aws"]["Timestamp"].as_i64().is_some());
                dims = directive["Dimensions"][0]
                    .as_array()
                    .expect("dimensions")
                    .iter()
                    .map(|d| d.as_str().expect("name").to_owned())
                    .collect();
                unit = directive["Metrics"]
                    .as_array()
                    .expect("metrics")
                    .iter()
                    .find(|m| m["Name"] == name)
                    .and_then(|m| m["Unit"].as_str())
                    .expect("a unit")
                    .to_owned();
                total += value
                    .as_u64()
                    .unwrap_or_else(|| value.as_array().map_or(0, |a| a.len() as u64));
                assert!(doc["function_request_id"].is_string(), "{doc}");
            }
            (total, dims, unit)
        };
    let (accepted_count, dims, unit) = metric(
        "stripe_webhook_requests_total",
        Some(("outcome", "accepted")),
    );
    assert_eq!(accepted_count, accepted.len() as u64);
    assert_eq!(
        (dims, unit.as_str()),
        (vec!["function".to_owned(), "outcome".to_owned()], "Count")
    );
    let (refused, _, _) = metric(
        "stripe_webhook_requests_total",
        Some(("outcome", "bad_signature")),
    );
    assert_eq!(refused, 1);
    assert_eq!(
        metric(
            "stripe_webhook_requests_total",
            Some(("outcome", "bad_body_encoding"))
        )
        .0,
        1
    );
    let (latencies, dims, unit) = metric(
        "stripe_webhook_request_seconds",
        Some(("outcome", "accepted")),
    );
    assert_eq!(
        (latencies, unit.as_str()),
        (accepted.len() as u64, "Seconds")
    );
    assert_eq!(dims, ["function", "outcome"]);
    let (puts, dims, unit) = metric("stripe_webhook_sink_put_seconds", None);
    assert_eq!((puts, unit.as_str()), (accepted.len() as u64, "Seconds"));
    assert_eq!(dims, ["function", "result", "sink"]);
    let (bytes, dims, unit) = metric("stripe_webhook_archived_bytes_total", None);
    assert!(bytes > 0 && dims == ["function"] && unit == "Bytes");
    // Every document is the function's: none without the dimension or with another name.
    for doc in &emf {
        assert_eq!(doc["function"], FUNCTION_NAME, "{doc}");
        let dims = &doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(
            dims.as_array().map(Vec::len),
            Some(1),
            "one dimension set: {doc}"
        );
        assert_eq!(dims[0][0], "function", "{doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_error_is_reported_to_init_error_and_the_process_exits() {
    let api = LambdaRuntimeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("lambda.log");
    let mut child = spawn(&api, &[("SINK", "memory")], &log);
    let report = api
        .wait_init_error(TIMEOUT)
        .await
        .expect("an /init/error report");
    assert_eq!(report.error_type.as_deref(), Some("Runtime.InitError"));
    let body: Value = serde_json::from_slice(&report.body).expect("JSON");
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("STRIPE_WEBHOOK_SECRET")),
        "{body}"
    );
    let status = wait_exit(&mut child, TIMEOUT);
    assert!(!status.success());
    assert!(
        api.next_polls().is_empty(),
        "no invocation after a failed init"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_stream_configured_the_firehose_sink_is_the_default_built_once_and_a_throttled_check_does_not_fail_init()
 {
    use stripe_webhook_testkit::firehose_fault::FirehoseFault;
    let fault = FirehoseFault::start("stripe-webhooks-lambda-test").await;
    // A burst of cold starts: the account's DescribeDeliveryStream limit (5/s) throttles this one.
    // Init must go on; the first put proves the stream.
    fault.throttle_describes(1);
    let api = LambdaRuntimeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("lambda.log");
    let stream = fault.stream_name();
    let aws = fault.client_env();
    let envs = stripe_webhook_testkit::env_pairs(
        &aws,
        &[
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("FIREHOSE_DELIVERY_STREAM_NAME", &stream),
        ],
    );
    let started = Instant::now();
    let mut child = spawn(&api, &envs, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let first_poll = api
        .wait_first_poll(TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no /invocation/next; log:\n{}", logs()));
    eprintln!(
        "init with the Firehose sink (SDK config + DescribeDeliveryStream on loopback): {:?}",
        first_poll - started
    );

    let mut bodies = Vec::new();
    for (shape, name) in [
        ("function-url", "customer.created.json"),
        ("apigw-rest-v1", "invoice.paid.json"),
    ] {
        let body = stripe_body(name);
        let event = webhook_event(shape, &body, true, Some(&sign(&body)));
        let (status, _) = check_response(shape, &api.invoke(&event, TIMEOUT).await.json());
        assert_eq!(status, 200, "{shape}; log:\n{}", logs());
        bodies.push(body);
    }
    let accepted = fault.accepted();
    assert_eq!(accepted.len(), bodies.len());
    for (data, body) in accepted.iter().zip(&bodies) {
        let line: Value = serde_json::from_slice(data).expect("record JSON");
        assert_eq!(
            line["raw"].as_str().map(str::as_bytes),
            Some(body.as_slice())
        );
    }
    let describes = fault
        .calls()
        .iter()
        .filter(|c| c.operation == "DescribeDeliveryStream")
        .count();
    assert_eq!(describes, 1, "one start-up health check, in init only");
    assert!(
        logs().contains("starting anyway"),
        "the throttled check is logged; log:\n{}",
        logs()
    );
    sigterm(&child);
    let status = wait_exit(&mut child, TIMEOUT);
    assert!(status.success(), "{status}; log:\n{}", logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_still_fails_init_clearly() {
    use stripe_webhook_testkit::firehose_fault::FirehoseFault;
    let fault = FirehoseFault::start("the-real-stream").await;
    let api = LambdaRuntimeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("lambda.log");
    let aws = fault.client_env();
    let envs = stripe_webhook_testkit::env_pairs(
        &aws,
        &[
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            (
                "FIREHOSE_DELIVERY_STREAM_NAME",
                "a-stream-that-does-not-exist",
            ),
        ],
    );
    let mut child = spawn(&api, &envs, &log);
    let report = api
        .wait_init_error(TIMEOUT)
        .await
        .expect("an /init/error report");
    let body: Value = serde_json::from_slice(&report.body).expect("JSON");
    let message = body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("a-stream-that-does-not-exist") && message.contains("not found"),
        "{body}"
    );
    assert!(!wait_exit(&mut child, TIMEOUT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_queue_configured_a_webhook_is_answered_200_only_when_firehose_and_sqs_took_it() {
    use stripe_webhook_testkit::firehose_fault::FirehoseFault;
    use stripe_webhook_testkit::sqs_fault::{SqsFault, Step};
    let firehose = FirehoseFault::start("stripe-webhooks-lambda-sqs").await;
    let sqs = SqsFault::start("stripe-webhooks-events", false).await;
    let api = LambdaRuntimeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("lambda.log");
    let (stream, queue_url, sqs_endpoint) =
        (firehose.stream_name(), sqs.queue_url(), sqs.endpoint_url());
    let aws = firehose.client_env();
    let envs = stripe_webhook_testkit::env_pairs(
        &aws,
        &[
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("FIREHOSE_DELIVERY_STREAM_NAME", &stream),
            ("FORWARD_SQS_QUEUE_URL", &queue_url),
            // The SDK's per-service endpoint: SQS here, everything else at the Firehose endpoint.
            ("AWS_ENDPOINT_URL_SQS", &sqs_endpoint),
        ],
    );
    let mut child = spawn(&api, &envs, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut bodies = Vec::new();
    for name in ["customer.created.json", "invoice.paid.json"] {
        let body = stripe_body(name);
        let event = webhook_event("function-url", &body, true, Some(&sign(&body)));
        let (status, _) = check_response("function-url", &api.invoke(&event, TIMEOUT).await.json());
        assert_eq!(status, 200, "{name}; log:\n{}", logs());
        bodies.push(body);
    }
    let archived = firehose.accepted();
    let sent = sqs.accepted();
    assert_eq!((archived.len(), sent.len()), (2, 2), "log:\n{}", logs());
    for (record, message) in archived.iter().zip(&sent) {
        assert_eq!(
            &record[..],
            message.body.as_bytes(),
            "the message is the archived line"
        );
    }

    // The queue refuses for good: the webhook is a 5xx (Stripe retries), never a 200.
    sqs.set_default(Step::Error {
        status: 400,
        error_type: "com.amazonaws.sqs#KmsDisabled".to_owned(),
    });
    let body = stripe_body("invoice.paid.json");
    let event = webhook_event("function-url", &body, true, Some(&sign(&body)));
    let (status, _) = check_response("function-url", &api.invoke(&event, TIMEOUT).await.json());
    assert!(status >= 500, "{status}; log:\n{}", logs());
    assert_eq!(sqs.accepted().len(), 2, "nothing more in the queue");
    sigterm(&child);
    let status = wait_exit(&mut child, TIMEOUT);
    assert!(status.success(), "{status}; log:\n{}", logs());
}
