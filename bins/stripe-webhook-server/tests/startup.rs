//! The server's start-up check of the Firehose sink: throttled `DescribeDeliveryStream` calls (5 per
//! second per account, easily spent when a fleet restarts together) are retried with backoff, while
//! a stream that is missing or of the wrong type refuses the start at once, naming it.

// The Firehose sink only: a file-only server (`--no-default-features`) refuses SINK=firehose.
#![cfg(feature = "firehose")]

use std::path::Path;
use std::time::{Duration, Instant};

use stripe_webhook_testkit::firehose_fault::FirehoseFault;
use stripe_webhook_testkit::http::request;
use stripe_webhook_testkit::server::{ServerProcess, command};

const STREAM: &str = "startup-test-stream";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"))
}

/// The fault endpoint's client environment (`aws`) and a Firehose sink on `stream`.
fn firehose_env<'a>(aws: &'a [(&'static str, String)], stream: &'a str) -> Vec<(&'a str, &'a str)> {
    stripe_webhook_testkit::env_pairs(
        aws,
        &[
            ("STRIPE_WEBHOOK_SECRET", "whsec_startup_test"),
            ("FIREHOSE_DELIVERY_STREAM_NAME", stream),
        ],
    )
}

fn describes(fault: &FirehoseFault) -> usize {
    fault
        .calls()
        .iter()
        .filter(|c| c.operation == "DescribeDeliveryStream")
        .count()
}

#[test]
fn a_throttled_startup_check_is_retried_and_the_server_starts() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fault = runtime.block_on(FirehoseFault::start(STREAM));
    fault.throttle_describes(3);
    let aws = fault.client_env();
    let env = firehose_env(&aws, STREAM);
    let server = ServerProcess::start(bin(), &env);
    assert_eq!(
        describes(&fault),
        4,
        "three throttled checks, then one that passed"
    );
    let health = request(server.addr, "GET", "/health", &[], b"").expect("health");
    assert_eq!(health.status, 200, "{}", health.text());
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("retrying"), "{logs}");
}

#[test]
fn a_missing_or_wrong_stream_refuses_the_start_at_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fault = runtime.block_on(FirehoseFault::start(STREAM));
    let aws = fault.client_env();
    for (stream, stream_type, expect) in [
        ("no-such-stream", "DirectPut", "not found"),
        (STREAM, "KinesisStreamAsSource", "not DirectPut"),
    ] {
        fault.set_stream("ACTIVE", stream_type);
        let started = Instant::now();
        let out = command(bin())
            .envs(firehose_env(&aws, stream))
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("METRICS_ADDR", "off")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{stream}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(stream) && stderr.contains(expect),
            "{stream}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a permanent failure is not retried"
        );
    }
}
