//! The real server binary with `SINK=firehose` and `FORWARD_SQS_QUEUE_URL`, configured only
//! through the environment, against `moto_server`: every event answered 200 is in the Firehose
//! stream and in the queue; a queue that fails gives a 5xx and never a 200; a FIFO queue gets the
//! group and deduplication ids; bodies too large for the queue arrive as oversize pointers.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stripe_webhook_testkit::http::{post_webhook, request};
use stripe_webhook_testkit::moto::{Moto, QueueMessage, STREAM_PREFIX};
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_verify::{Secret, signature_header};

const SECRET: &str = "whsec_test_sqs_moto";
const BUCKET: &str = "webhook-archive";
const STREAM: &str = "stripe-webhooks";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"))
}

fn sign(body: &[u8]) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    signature_header(&[&Secret::new(SECRET).expect("secret")], t, body)
}

/// A pretty-printed event on object `object`, with `pad` bytes of padding.
fn event(id: &str, object: &str, pad: usize) -> Vec<u8> {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"api_version\": \"2025-10-29.clover\",\n  \"created\": 1764195281,\n  \"data\": {{\n    \"object\": {{\n      \"id\": \"{object}\",\n      \"object\": \"charge\",\n      \"description\": \"Zoë — 東京 ☕\",\n      \"pad\": \"{}\"\n    }}\n  }},\n  \"livemode\": false,\n  \"type\": \"charge.succeeded\"\n}}",
        "x".repeat(pad)
    )
    .into_bytes()
}

/// moto with the archive bucket, the stream, and a queue of `attributes`; returns moto and the
/// queue URL.
fn moto_with_queue(queue: &str, attributes: &[(&str, &str)]) -> (Moto, String) {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    moto.create_delivery_stream(STREAM, BUCKET);
    let url = moto.create_queue(queue, attributes);
    (moto, url)
}

fn start(moto: &Moto, queue_url: &str) -> ServerProcess {
    let aws = moto.client_env();
    let envs = stripe_webhook_testkit::env_pairs(
        &aws,
        &[
            ("FIREHOSE_DELIVERY_STREAM_NAME", STREAM),
            ("OVERSIZE_S3_BUCKET", BUCKET),
            ("FORWARD_SQS_QUEUE_URL", queue_url),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
        ],
    );
    let server = ServerProcess::start(bin(), &envs);
    let health = request(server.addr, "GET", "/health", &[], b"").expect("health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(
        health.text().contains(r#""sink":"firehose+sqs""#),
        "{}",
        health.text()
    );
    server
}

/// Every archived line in the stream's objects.
fn stream_lines(moto: &Moto) -> Vec<Value> {
    moto.objects(BUCKET)
        .iter()
        .filter(|o| o.key.starts_with(STREAM_PREFIX))
        .flat_map(|o| {
            o.body
                .split_inclusive(|&b| b == b'\n')
                .map(|l| serde_json::from_slice(l).expect("one JSON object per line"))
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn body_json(m: &QueueMessage) -> Value {
    assert!(
        m.body.ends_with('\n'),
        "the message body is the envelope line"
    );
    serde_json::from_str(&m.body).expect("the message body is one JSON object")
}

#[test]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
fn every_acknowledged_event_is_in_the_stream_and_in_the_queue() {
    // A 64 KiB queue: the 100 KB event fits Firehose but not the queue; the 1.5 MB one fits neither.
    let (moto, url) = moto_with_queue("stripe-events", &[("MaximumMessageSize", "65536")]);
    let server = start(&moto, &url);
    let mut bodies: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("evt_sqs_{i}"),
                event(&format!("evt_sqs_{i}"), "ch_1", 100),
            )
        })
        .collect();
    bodies.push((
        "evt_sqs_mid".to_owned(),
        event("evt_sqs_mid", "ch_2", 100_000),
    ));
    bodies.push((
        "evt_sqs_big".to_owned(),
        event("evt_sqs_big", "ch_3", 1_500_000),
    ));
    for (id, body) in &bodies {
        let r = post_webhook(server.addr, Some(&sign(body)), body).expect("post");
        assert_eq!(r.status, 200, "{id}: {}", r.text());
    }

    let lines = stream_lines(&moto);
    let messages = moto.receive_all(&url);
    let objects = moto.objects(BUCKET);
    for (id, body) in &bodies {
        let archived: Vec<&Value> = lines.iter().filter(|l| l["id"] == id.as_str()).collect();
        assert_eq!(archived.len(), 1, "{id} acknowledged: archived once");
        let sent: Vec<&QueueMessage> = messages
            .iter()
            .filter(|m| m.attributes.get("stripe_event_id") == Some(id))
            .collect();
        assert_eq!(sent.len(), 1, "{id} acknowledged: in the queue once");
        let m = sent[0];
        assert_eq!(m.attributes["stripe_event_type"], "charge.succeeded");
        assert_eq!(m.group_id, None, "a standard queue");
        let message = body_json(m);
        assert_eq!(message["id"], id.as_str());
        if id == "evt_sqs_mid" || id == "evt_sqs_big" {
            // An oversize pointer: the body, byte-exact, is the S3 object it names.
            let key = message["oversize"]["key"].as_str().expect("a pointer");
            assert_eq!(message["oversize"]["bucket"], BUCKET);
            assert_eq!(message["oversize"]["bytes"], body.len());
            let object = objects
                .iter()
                .find(|o| o.key == key)
                .expect("the named object");
            assert_eq!(&object.body, body, "{id}: oversize body byte-exact");
        } else {
            assert_eq!(
                message["raw"].as_str().expect("raw").as_bytes(),
                body.as_slice()
            );
            assert_eq!(
                &message, archived[0],
                "{id}: the message is the archived record"
            );
        }
    }
    assert_eq!(messages.len(), bodies.len(), "nothing else in the queue");
    assert_eq!(lines.len(), bodies.len(), "nothing else in the stream");
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

#[test]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
fn a_queue_that_fails_gives_a_5xx_and_never_a_200() {
    let (moto, url) = moto_with_queue("stripe-events", &[]);
    let server = start(&moto, &url);
    let ok = event("evt_before", "ch_1", 10);
    let r = post_webhook(server.addr, Some(&sign(&ok)), &ok).expect("post");
    assert_eq!(r.status, 200, "{}", r.text());
    moto.delete_queue(&url);
    for i in 0..3 {
        let body = event(&format!("evt_after_{i}"), "ch_1", 10);
        let r = post_webhook(server.addr, Some(&sign(&body)), &body).expect("post");
        assert!(
            r.status >= 500,
            "the queue is gone: {} {}",
            r.status,
            r.text()
        );
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("SQS"),
        "the log names the failing destination: {logs}"
    );

    // A queue that does not exist refuses the start, naming it.
    let aws = moto.client_env();
    let out = Command::new(bin())
        .envs(stripe_webhook_testkit::env_pairs(
            &aws,
            &[
                ("FIREHOSE_DELIVERY_STREAM_NAME", STREAM),
                ("FORWARD_SQS_QUEUE_URL", url.as_str()),
                ("STRIPE_WEBHOOK_SECRET", SECRET),
                ("HOST", "127.0.0.1"),
                ("PORT", "0"),
                ("METRICS_ADDR", "off"),
            ],
        ))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&url) && stderr.contains("GetQueueAttributes"),
        "{stderr}"
    );
}

#[test]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
fn a_fifo_queue_gets_the_object_as_group_and_the_event_as_deduplication_id() {
    let (moto, url) = moto_with_queue("stripe-events.fifo", &[("FifoQueue", "true")]);
    assert!(url.ends_with(".fifo"), "{url}");
    let server = start(&moto, &url);
    let events = [
        ("evt_f1", "sub_A"),
        ("evt_f2", "sub_B"),
        ("evt_f3", "sub_A"),
    ];
    for (id, object) in events {
        let body = event(id, object, 10);
        let r = post_webhook(server.addr, Some(&sign(&body)), &body).expect("post");
        assert_eq!(r.status, 200, "{id}: {}", r.text());
    }
    let messages = moto.receive_all(&url);
    assert_eq!(messages.len(), 3);
    for (id, object) in events {
        let m = messages
            .iter()
            .find(|m| m.attributes.get("stripe_event_id").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("{id} not in the queue"));
        assert_eq!(m.group_id.as_deref(), Some(object), "{id}");
        assert_eq!(m.deduplication_id.as_deref(), Some(id), "{id}");
    }
    // Within a group, the order of arrival.
    let a: Vec<&str> = messages
        .iter()
        .filter(|m| m.group_id.as_deref() == Some("sub_A"))
        .map(|m| m.attributes["stripe_event_id"].as_str())
        .collect();
    assert_eq!(a, ["evt_f1", "evt_f3"]);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}
