//! `stripe-webhook forward`: a week-long outage (the maximum age shortened) fills the dead-letter
//! list, `forward dead-letters --redrive` delivers it, `forward status` reports it, and `forward
//! cursor` refuses to move a running forwarder's cursor, then backfills once it is stopped.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{cli, describe, stdout};
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_forward::dead_letters;
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_file::{FileSink, FileSinkConfig};
use stripe_webhook_testkit::forward_target::{Answer, ForwardTarget};

const SECRET: &str = "whsec_cli_forward_destination";

fn body(i: usize) -> String {
    format!(
        "{{\n  \"id\": \"evt_cli_{i}\",\n  \"object\": \"event\",\n  \"type\": \"invoice.paid\",\n  \"data\": {{\"object\": {{\"id\": \"in_{i}\"}}}}\n}}"
    )
}

/// Archives `n` events (`body(0..n)`) in `archive` through the file sink, then seals them.
fn archive_events(archive: &Path, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (sink, _) = FileSink::open(FileSinkConfig::new(archive)).await.unwrap();
        for i in 0..n {
            let record = encode(
                Bytes::from(body(i)),
                "t=1,v1=00",
                ReceivedAt::now(),
                &EnvelopeOptions::default(),
            )
            .unwrap();
            sink.put(record).await.unwrap();
        }
        sink.shutdown().await.unwrap();
    });
}

fn forward_cmd(archive: &Path, url: &str, start: &str) -> Command {
    let mut cmd = cli();
    cmd.env("ARCHIVE_DIR", archive)
        .env("FORWARD_URL", url)
        .env("FORWARD_SECRET", SECRET)
        .env("FORWARD_START", start)
        .env("FORWARD_MAX_AGE", "2s")
        .env("FORWARD_RETRY_MAX", "300ms")
        .env("FORWARD_TIMEOUT", "2s")
        .arg("forward");
    cmd
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "forward exited {status}");
}

#[test]
fn an_outage_longer_than_the_maximum_age_is_dead_lettered_and_redriven_by_the_cli() {
    let archive = tempfile::tempdir().unwrap();
    archive_events(archive.path(), 8);
    let down = Arc::new(AtomicBool::new(true));
    let is_down = Arc::clone(&down);
    let target = ForwardTarget::start(move |_| {
        if is_down.load(Ordering::SeqCst) {
            Answer::status(502)
        } else {
            Answer::status(200)
        }
    });
    let url = target.url();
    let id = stripe_webhook_forward::destination_id(&url).unwrap();
    let state = archive.path().join("forward").join(&id);
    let start =
        ReceivedAt::from_unix_millis(ReceivedAt::now().unix_millis() - 60_000).rfc3339_millis();

    let forwarder = forward_cmd(archive.path(), &url, &start)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start forward");
    stripe_webhook_testkit::wait::until("8 dead letters", Duration::from_secs(60), || {
        dead_letters::count(&state) == 8
    });

    // A running forwarder holds the destination: its cursor cannot be moved.
    let refused = forward_cmd(archive.path(), &url, &start)
        .args(["cursor", "--destination", &id, "--to", "now", "--yes"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("a running forwarder holds destination"),
        "{}",
        describe(&refused)
    );

    // Status: running, nothing left to forward, 8 dead letters (exit 1: there are dead letters).
    let mut status_line = serde_json::Value::Null;
    stripe_webhook_testkit::wait::until("status with no lag", Duration::from_secs(20), || {
        let out = forward_cmd(archive.path(), &url, &start)
            .args(["status", "--json"])
            .output()
            .unwrap();
        status_line = serde_json::from_str(stdout(&out).trim()).unwrap_or_default();
        status_line["lag_records"] == 0
    });
    assert_eq!(status_line["destination"], id.as_str());
    assert_eq!(status_line["configured"], true);
    assert_eq!(status_line["dead_letters"], 8);
    assert!(
        status_line["running"]
            .as_str()
            .is_some_and(|r| r.starts_with("forwarder pid ")),
        "{status_line}"
    );

    let listed = forward_cmd(archive.path(), &url, &start)
        .args(["dead-letters", "--destination", &id])
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(1), "{}", describe(&listed));
    let lines = stdout(&listed);
    assert_eq!(lines.lines().count(), 8, "{lines}");
    assert!(
        lines
            .lines()
            .all(|l| l.contains("reason max_age") && l.contains("HTTP 502")),
        "{lines}"
    );

    // The destination is back: the re-drive delivers every dead letter and empties the list.
    down.store(false, Ordering::SeqCst);
    let redriven = forward_cmd(archive.path(), &url, &start)
        .args(["dead-letters", "--destination", &id, "--redrive"])
        .output()
        .unwrap();
    assert_eq!(redriven.status.code(), Some(0), "{}", describe(&redriven));
    assert_eq!(stdout(&redriven).matches("DELIVERED evt_cli_").count(), 8);
    assert_eq!(dead_letters::count(&state), 0);
    assert_eq!(
        dead_letters::redriven(&state),
        8,
        "counted for the forwarder's metric"
    );
    let delivered = target.delivered();
    assert_eq!(delivered.len(), 8);
    for r in &delivered {
        let id = r.header("stripe-webhook-event-id").unwrap();
        let i: usize = id.trim_start_matches("evt_cli_").parse().unwrap();
        assert_eq!(r.body, body(i).as_bytes(), "byte-exact");
    }
    stop(forwarder);

    // Stopped: the cursor moves back (a backfill), and the next run delivers the 8 again.
    let moved = forward_cmd(archive.path(), &url, &start)
        .args(["cursor", "--destination", &id, "--to", &start, "--yes"])
        .output()
        .unwrap();
    assert_eq!(moved.status.code(), Some(0), "{}", describe(&moved));
    let forwarder = forward_cmd(archive.path(), &url, &start)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start forward");
    stripe_webhook_testkit::wait::until("the backfill", Duration::from_secs(60), || {
        target.delivered().len() == 16
    });
    stop(forwarder);
}

/// `GET /metrics` of a running forwarder, as text.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_separate_forwarder_serves_its_metrics_on_the_address_it_is_given() {
    let archive = tempfile::tempdir().unwrap();
    archive_events(archive.path(), 3);
    let target = ForwardTarget::start(|_| Answer::status(200));
    let url = target.url();
    let id = stripe_webhook_forward::destination_id(&url).unwrap();
    let start =
        ReceivedAt::from_unix_millis(ReceivedAt::now().unix_millis() - 60_000).rfc3339_millis();
    let log = archive.path().join("forward.log");
    let forwarder = forward_cmd(archive.path(), &url, &start)
        .env("FORWARD_METRICS_ADDR", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start forward");
    // The bound address is in the start-up log line (port 0: the kernel picked it).
    let mut addr = String::new();
    stripe_webhook_testkit::wait::until("the metrics log line", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .find(|l| l.contains("metrics: GET /metrics"))
            .and_then(|l| l.split("address=").nth(1))
            .map(|a| a.split_whitespace().next().unwrap_or_default().to_owned());
        addr = found.unwrap_or_default();
        !addr.is_empty()
    });
    let delivered = format!(
        "stripe_webhook_forward_deliveries_total{{destination=\"{id}\",outcome=\"delivered\"}} 3"
    );
    stripe_webhook_testkit::wait::until("3 deliveries counted", Duration::from_secs(30), || {
        scrape(&addr).contains(&delivered)
    });
    let metrics = scrape(&addr);
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for series in [
        format!("stripe_webhook_forward_failed{{destination=\"{id}\"}} 0"),
        format!("stripe_webhook_forward_dead_letters{{destination=\"{id}\"}} 0"),
    ] {
        assert!(metrics.contains(&series), "{series} not in {metrics}");
    }
    assert_eq!(target.delivered().len(), 3);
    stop(forwarder);
}

#[test]
fn a_backfill_delivers_a_time_range_and_refuses_an_empty_one() {
    let archive = tempfile::tempdir().unwrap();
    let before = ReceivedAt::now();
    archive_events(archive.path(), 5);
    let target = ForwardTarget::start(|_| Answer::status(200));
    let url = target.url();
    let since = before.rfc3339_millis();
    // No forwarder runs and no cursor exists: the backfill alone delivers the range.
    let out = forward_cmd(archive.path(), &url, "now")
        .args(["backfill", "--since", &since, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["delivered"], 5, "{report}");
    assert_eq!(report["dead_lettered"], serde_json::json!([]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("5 delivered, 0 dead-lettered"),
        "{}",
        describe(&out)
    );
    let mut got: Vec<Vec<u8>> = target.delivered().into_iter().map(|r| r.body).collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..5).map(|i| body(i).into_bytes()).collect();
    want.sort();
    assert_eq!(got, want, "byte-exact, each once");
    // A range that ends before it starts is refused with what was given.
    let empty = forward_cmd(archive.path(), &url, "now")
        .args([
            "backfill",
            "--since",
            &since,
            "--until",
            "2020-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2), "{}", describe(&empty));
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("the range is empty"),
        "{}",
        describe(&empty)
    );
    assert_eq!(target.delivered().len(), 5);
}
