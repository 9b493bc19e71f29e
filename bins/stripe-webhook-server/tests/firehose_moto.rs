//! The real server binary with `SINK=firehose`, configured only through the environment, against
//! `moto_server` (pinned `moto[server]`): concurrent signed events, one over Firehose's record limit,
//! every event answered 200 read back byte-exact from moto's S3.

// The Firehose sink only: a file-only server (`--no-default-features`) refuses SINK=firehose.
#![cfg(feature = "firehose")]

use std::path::Path;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use stripe_webhook_testkit::http::{post_webhook, request};
use stripe_webhook_testkit::moto::{Moto, STREAM_PREFIX};
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_verify::{Secret, signature_header};

const SECRET: &str = "whsec_test_firehose_moto";
const BUCKET: &str = "webhook-archive";
const STREAM: &str = "stripe-webhooks";

fn sign(body: &[u8]) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    signature_header(&[&Secret::new(SECRET).expect("secret")], t, body)
}

/// A pretty-printed event, as Stripe sends them, with `pad` bytes of padding in its object.
fn event(id: &str, pad: usize) -> Vec<u8> {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"api_version\": \"2025-10-29.clover\",\n  \"created\": 1764195281,\n  \"data\": {{\n    \"object\": {{\n      \"id\": \"ch_3Q\",\n      \"object\": \"charge\",\n      \"description\": \"Zoë — 東京 ☕\",\n      \"pad\": \"{}\"\n    }}\n  }},\n  \"livemode\": false,\n  \"type\": \"charge.succeeded\"\n}}",
        "x".repeat(pad)
    )
    .into_bytes()
}

#[test]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
fn firehose_sink_archives_every_acknowledged_event_byte_exact() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    moto.create_delivery_stream(STREAM, BUCKET);

    let aws_env = moto.client_env();
    let envs = stripe_webhook_testkit::env_pairs(
        &aws_env,
        &[
            ("SINK", "firehose"),
            ("FIREHOSE_DELIVERY_STREAM_NAME", STREAM),
            ("OVERSIZE_S3_BUCKET", BUCKET),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
        ],
    );
    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server")),
        &envs,
    );
    let health = request(server.addr, "GET", "/health", &[], b"").expect("health");
    assert_eq!(health.status, 200, "{}", health.text());

    // 30 small events from 6 threads at once, plus one 1.5 MB event.
    let mut bodies: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| {
            (
                format!("evt_moto_{i}"),
                event(&format!("evt_moto_{i}"), 100),
            )
        })
        .collect();
    bodies.push(("evt_moto_big".to_owned(), event("evt_moto_big", 1_500_000)));
    let addr = server.addr;
    let accepted: Vec<(String, Vec<u8>)> = thread::scope(|s| {
        let handles: Vec<_> = bodies
            .chunks(6)
            .map(|chunk| {
                s.spawn(move || {
                    let mut ok = Vec::new();
                    for (id, body) in chunk {
                        let r = post_webhook(addr, Some(&sign(body)), body).expect("post");
                        assert_eq!(r.status, 200, "{id}: {}", r.text());
                        ok.push((id.clone(), body.clone()));
                    }
                    ok
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("sender thread"))
            .collect()
    });
    assert_eq!(accepted.len(), 31);

    let objects = moto.objects(BUCKET);
    let mut lines: Vec<serde_json::Value> = Vec::new();
    for o in objects.iter().filter(|o| o.key.starts_with(STREAM_PREFIX)) {
        assert!(o.body.ends_with(b"\n"), "whole lines only");
        for line in o.body.split_inclusive(|&b| b == b'\n') {
            lines.push(serde_json::from_slice(line).expect("each line is one JSON object"));
        }
    }
    let oversize: Vec<_> = objects
        .iter()
        .filter(|o| !o.key.starts_with(STREAM_PREFIX))
        .collect();
    assert_eq!(
        oversize.len(),
        1,
        "only the oversized body outside the stream prefix"
    );
    assert!(
        oversize[0].key.starts_with("oversize/year="),
        "{}",
        oversize[0].key
    );

    for (id, body) in &accepted {
        let found: Vec<_> = lines.iter().filter(|l| l["id"] == id.as_str()).collect();
        assert!(!found.is_empty(), "{id} acknowledged but not archived");
        for line in found {
            if id == "evt_moto_big" {
                assert_eq!(line["data"], serde_json::Value::Null);
                assert_eq!(line["oversize"]["key"], oversize[0].key.as_str());
                assert_eq!(line["oversize"]["bytes"], body.len());
                assert_eq!(&oversize[0].body, body, "oversize body byte-exact in S3");
            } else {
                let raw = line["raw"].as_str().expect("raw");
                assert_eq!(raw.as_bytes(), body.as_slice(), "{id}: raw body byte-exact");
            }
        }
    }
    assert_eq!(lines.len(), accepted.len(), "nothing else in the stream");
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}
