//! The example consumer Lambda (examples/sqs-consumer/handler.py) verifies, with the official
//! Stripe SDK, the original signature of a message this sink sent, and refuses a tampered one.

use std::io::Write;
use std::process::{Command, Stdio};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;
use bytes::Bytes;
use serde_json::{Value, json};
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_sqs::{SqsSink, SqsSinkConfig};
use stripe_webhook_testkit::sqs_fault::SqsFault;
use stripe_webhook_verify::{Secret, signature_header};

const SECRET: &str = "whsec_test_sqs_consumer";

#[tokio::test]
#[ignore = "full tier (./scripts/test): needs Python with the pinned stripe SDK"]
async fn the_example_consumer_verifies_what_the_sink_sent() {
    let fault = SqsFault::start("events", false).await;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(fault.endpoint_url())
        .load()
        .await;
    let sink = SqsSink::new(SqsSinkConfig::new(fault.queue_url()), &sdk);
    // Pretty-printed, with non-ASCII text: the bytes must survive exactly for the HMAC to match.
    let body = "{\n  \"id\": \"evt_consumer\",\n  \"object\": \"event\",\n  \"type\": \"invoice.paid\",\n  \"data\": {\"object\": {\"id\": \"in_1\", \"memo\": \"Zoë — 東京 ☕\"}}\n}";
    let t = ReceivedAt::now().unix_seconds() - 3600;
    let header = signature_header(&[&Secret::new(SECRET).expect("secret")], t, body.as_bytes());
    let record = encode(
        Bytes::from(body),
        &header,
        ReceivedAt::now(),
        &EnvelopeOptions::default(),
    )
    .expect("encode");
    sink.put(record).await.expect("accepted");
    let sent = fault.accepted()[0].body.clone();
    let tampered = sent.replace("in_1", "in_2");
    let event = json!({"Records": [
        {"messageId": "genuine", "body": sent},
        {"messageId": "tampered", "body": tampered},
    ]});

    let dir = stripe_webhook_testkit::workspace_root().join("examples/sqs-consumer");
    let mut child = Command::new(stripe_webhook_testkit::python())
        .arg("-c")
        .arg("import json, logging, sys; logging.basicConfig(format='%(message)s'); sys.path.insert(0, sys.argv[1]); import handler; print(json.dumps(handler.handler(json.load(sys.stdin), None)))")
        .arg(&dir)
        .env("STRIPE_WEBHOOK_SECRET", format!("whsec_other,{SECRET}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the pinned python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(event.to_string().as_bytes())
        .expect("write the event");
    let out = child.wait_with_output().expect("python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("the handler's answer");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "tampered"}]}),
        "{stderr}"
    );
    assert!(
        stderr.contains("verified evt_consumer invoice.paid"),
        "{stderr}"
    );
}
