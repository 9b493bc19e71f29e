//! The real server binary on a free loopback port, driven over HTTP, archiving to a temporary
//! directory with the file sink.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use stripe_webhook_testkit::archive::{read_records, segment_files};
use stripe_webhook_testkit::http::{post_webhook, read_by_peer, request};
use stripe_webhook_testkit::server::{ServerProcess, command};
use stripe_webhook_testkit::signing::{sign, unix_now as now};
use stripe_webhook_testkit::wait;
use stripe_webhook_verify::{Secret, signature_header};

const SECRET: &str = "whsec_test_server_secret";
const OLD_SECRET: &str = "whsec_test_rotated_out";
/// The longest wait for a state a test needs.
const WAIT: Duration = Duration::from_secs(30);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"))
}

fn secret(s: &str) -> Secret {
    Secret::new(s).expect("secret")
}

/// A realistic pretty-printed event with a given id (multi-byte UTF-8 included).
fn event(id: &str) -> Vec<u8> {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"api_version\": \"2025-10-29.clover\",\n  \"created\": 1764195281,\n  \"data\": {{\n    \"object\": {{\n      \"id\": \"ch_3Q\",\n      \"object\": \"charge\",\n      \"amount\": 2000,\n      \"currency\": \"eur\",\n      \"description\": \"Zoë — 東京 ☕\"\n    }}\n  }},\n  \"livemode\": false,\n  \"pending_webhooks\": 1,\n  \"request\": {{\n    \"id\": null,\n    \"idempotency_key\": null\n  }},\n  \"type\": \"charge.succeeded\"\n}}"
    )
    .into_bytes()
}

fn start(archive: &Path, extra: &[(&str, &str)]) -> ServerProcess {
    let dir = archive.to_str().expect("utf-8 path");
    let mut envs = vec![
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("SINK", "file"),
        ("ARCHIVE_DIR", dir),
    ];
    envs.extend_from_slice(extra);
    ServerProcess::start(bin(), &envs)
}

fn by_id(records: &[serde_json::Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts
            .entry(r["id"].as_str().expect("id").to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn signed_events_are_archived_byte_exact_and_sealed_on_shutdown() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let mut sent = Vec::new();
    for i in 0..5 {
        let body = event(&format!("evt_exact_{i}"));
        let header = sign(SECRET, now(), &body);
        let r = post_webhook(server.addr, Some(&header), &body).expect("post");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), r#"{"received":true}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
        sent.push((body, header));
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{logs}");
    let files = segment_files(archive.path());
    assert!(!files.is_empty());
    assert!(
        files
            .iter()
            .all(|f| f.to_string_lossy().ends_with(".ndjson.gz")),
        "shutdown seals every segment: {files:?}"
    );
    let records = read_records(archive.path());
    assert_eq!(records.len(), sent.len());
    for (record, (body, header)) in records.iter().zip(&sent) {
        assert_eq!(record["raw"].as_str().expect("raw").as_bytes(), &body[..]);
        assert_eq!(record["signature"].as_str(), Some(header.as_str()));
        assert_eq!(record["type"], "charge.succeeded");
        assert_eq!(record["data"]["object"]["description"], "Zoë — 東京 ☕");
    }
    assert!(
        logs.contains("webhook archived"),
        "one log line per webhook:\n{logs}"
    );
    assert!(!logs.contains(SECRET), "the secret never reaches the log");
}

#[test]
fn every_signature_problem_is_400_and_nothing_is_archived() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let body = event("evt_forged");
    let t = now();
    let good = sign(SECRET, t, &body);
    let v1 = good.split_once(",v1=").expect("v1").1.to_owned();
    let cases: Vec<(&str, Option<String>, Vec<u8>, &str)> = vec![
        ("missing header", None, body.clone(), "missing_header"),
        (
            "empty header",
            Some(String::new()),
            body.clone(),
            "missing_header",
        ),
        (
            "garbage",
            Some("garbage".into()),
            body.clone(),
            "malformed_header",
        ),
        (
            "wrong secret",
            Some(sign("whsec_someone_else", t, &body)),
            body.clone(),
            "no_matching_signature",
        ),
        (
            "tampered body",
            Some(good.clone()),
            [&body[..], b" "].concat(),
            "no_matching_signature",
        ),
        (
            "stale",
            Some(sign(SECRET, t - 301 - 5, &body)),
            body.clone(),
            "stale_timestamp",
        ),
        (
            "future",
            Some(sign(SECRET, t + 3600, &body)),
            body.clone(),
            "future_timestamp",
        ),
        (
            "duplicate t",
            Some(format!("t={t},t={t},v1={v1}")),
            body.clone(),
            "malformed_header",
        ),
        (
            "upper-case hex",
            Some(format!("t={t},v1={}", v1.to_uppercase())),
            body.clone(),
            "no_v1_signature",
        ),
        (
            "v0 only",
            Some(format!("t={t},v0={v1}")),
            body.clone(),
            "no_v1_signature",
        ),
        (
            "leading zero t",
            Some(format!("t=0{t},v1={v1}")),
            body.clone(),
            "malformed_header",
        ),
        (
            "padded key",
            Some(format!("t={t}, v1={v1}")),
            body.clone(),
            "no_v1_signature",
        ),
    ];
    for (name, header, body, reason) in cases {
        let r = post_webhook(server.addr, header.as_deref(), &body).expect("post");
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json body");
        assert_eq!(json["reason"], reason, "{name}");
        assert!(
            !r.text().contains(&v1),
            "{name}: the response never reveals a signature"
        );
    }
    // Non-UTF-8 header bytes.
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(
            &[
                &b"POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\nStripe-Signature: t=1,v1=\xff\r\nContent-Length: 2\r\n\r\n{}"[..],
            ]
            .concat(),
        )
        .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    let (status, logs) = server.terminate();
    assert!(status.success());
    assert!(
        read_records(archive.path()).is_empty(),
        "nothing forged is archived"
    );
    assert!(logs.contains("stale_timestamp") && logs.contains("future_timestamp"));
}

#[test]
fn a_verified_body_that_is_not_an_event_is_400() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    for body in [
        &b"[1,2]"[..],
        b"{\"id\":1,\"type\":\"x\"}",
        b"not json",
        b"",
    ] {
        let r = post_webhook(server.addr, Some(&sign(SECRET, now(), body)), body).expect("post");
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(r.text().contains("not a Stripe event"), "{}", r.text());
    }
    let (_, logs) = server.terminate();
    assert!(read_records(archive.path()).is_empty());
    assert!(logs.contains("misconfigured sender"), "{logs}");
}

#[test]
fn bodies_over_the_limit_get_413_and_are_not_buffered() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[("MAX_BODY_BYTES", "4096")]);
    // A well-formed, fresh (forged) header passes the pre-check, so the size decides.
    let forged = format!("t={},v1={}", now(), "ab".repeat(32));
    // Declared too large: answered before the body is sent.
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(format!("POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\nStripe-Signature: {forged}\r\n\r\n").as_bytes())
        .expect("write head");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut raw = vec![0; 1024];
    let n = stream.read(&mut raw).expect("answer before any body byte");
    assert!(
        raw[..n].starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&raw[..n])
    );

    // Chunked, no length declared, over the limit while reading.
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    let mut req = format!("POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nStripe-Signature: {forged}\r\n\r\n").into_bytes();
    for _ in 0..5 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b'a'; 0x400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&req).expect("write chunked");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    // Exactly at the limit is fine (and verified as usual).
    let mut body = event("evt_at_limit");
    let pad = 4096 - body.len();
    body.splice(1..1, std::iter::repeat_n(b' ', pad));
    assert_eq!(body.len(), 4096);
    let r = post_webhook(server.addr, Some(&sign(SECRET, now(), &body)), &body).expect("post");
    assert_eq!(r.status, 200, "{}", r.text());

    let (_, _) = server.terminate();
    let records = read_records(archive.path());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], "evt_at_limit");
}

#[test]
fn secret_rotation_accepts_either_secret() {
    let archive = tempfile::tempdir().expect("tempdir");
    let both = format!("{OLD_SECRET},{SECRET}");
    let server = start(archive.path(), &[("STRIPE_WEBHOOK_SECRET", &both)]);
    let t = now();
    let a = event("evt_old");
    let b = event("evt_new");
    let c = event("evt_both");
    let both_sigs = signature_header(&[&secret(OLD_SECRET), &secret(SECRET)], t, &c);
    for (body, header) in [
        (&a, sign(OLD_SECRET, t, &a)),
        (&b, sign(SECRET, t, &b)),
        (&c, both_sigs),
    ] {
        let r = post_webhook(server.addr, Some(&header), body).expect("post");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let d = event("evt_other");
    let r = post_webhook(server.addr, Some(&sign("whsec_unknown", t, &d)), &d).expect("post");
    assert_eq!(r.status, 400);
    server.terminate();
    assert_eq!(read_records(archive.path()).len(), 3);
}

#[test]
fn concurrent_load_archives_every_acknowledged_event_exactly_once() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let addr = server.addr;
    let threads: Vec<_> = (0..32)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..25 {
                    let id = format!("evt_load_{thread}_{i}");
                    let body = event(&id);
                    let r =
                        post_webhook(addr, Some(&sign(SECRET, now(), &body)), &body).expect("post");
                    assert_eq!(r.status, 200, "{}", r.text());
                    acked.push(id);
                }
                acked
            })
        })
        .collect();
    let acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    server.terminate();
    let counts = by_id(&read_records(archive.path()));
    assert_eq!(counts.len(), acked.len());
    for id in &acked {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
}

#[test]
fn restart_recovers_a_torn_segment() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let body = event("evt_before_crash");
    let r = post_webhook(server.addr, Some(&sign(SECRET, now(), &body)), &body).expect("post");
    assert_eq!(r.status, 200);
    server.kill();
    // A crash mid-write: half a record after the last acknowledged line.
    let open: Vec<_> = segment_files(archive.path())
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".ndjson"))
        .collect();
    assert_eq!(open.len(), 1, "one open segment after SIGKILL: {open:?}");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&open[0])
        .expect("open segment");
    file.write_all(br#"{"v":1,"timestamp":"2026-11-26T00:00:00.000Z","id":"evt_torn","#)
        .expect("append torn line");
    drop(file);

    let server = start(archive.path(), &[]);
    let body = event("evt_after_crash");
    let r = post_webhook(server.addr, Some(&sign(SECRET, now(), &body)), &body).expect("post");
    assert_eq!(r.status, 200);
    let (status, logs) = server.terminate();
    assert!(status.success());
    assert!(
        logs.to_lowercase().contains("torn"),
        "recovery is reported:\n{logs}"
    );
    let counts = by_id(&read_records(archive.path()));
    assert_eq!(counts.get("evt_before_crash"), Some(&1));
    assert_eq!(counts.get("evt_after_crash"), Some(&1));
    assert!(
        !counts.contains_key("evt_torn"),
        "a torn line is never served"
    );
}

#[test]
fn graceful_shutdown_finishes_in_flight_webhooks() {
    let archive = tempfile::tempdir().expect("tempdir");
    let mut server = start(archive.path(), &[]);
    let body = event("evt_in_flight");
    let header = sign(SECRET, now(), &body);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    let head = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {header}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&body[..10]).expect("part of the body");
    stream.flush().expect("flush");
    // In flight: the server has read the head and the first bytes of the body.
    wait::until("the server read the partial request", WAIT, || {
        read_by_peer(&stream)
    });
    server.signal("TERM");
    // Shutting down (the listener closed) while the body is still coming.
    server.wait_for_log("shutting down", WAIT);
    stream.write_all(&body[10..]).expect("rest of the body");
    let mut raw = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let _ = stream.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let (status, logs) = server.terminate_after_signal();
    assert!(status.success(), "{logs}");
    assert_eq!(
        by_id(&read_records(archive.path())).get("evt_in_flight"),
        Some(&1)
    );
}

#[test]
fn routes_health_metrics_404_and_405() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let health = request(server.addr, "GET", "/health", &[], b"").expect("health");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.text(),
        r#"{"status":"ok","sink":"file","durable":true}"#
    );
    let r = request(server.addr, "GET", "/webhook/stripe", &[], b"").expect("get");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(
        request(server.addr, "POST", "/health", &[], b"")
            .expect("post")
            .status,
        405
    );
    assert_eq!(
        request(server.addr, "POST", "/webhook", &[], b"")
            .expect("post")
            .status,
        404
    );
    assert_eq!(
        request(server.addr, "GET", "/", &[], b"")
            .expect("get")
            .status,
        404
    );
    let body = event("evt_metrics");
    assert_eq!(
        post_webhook(server.addr, Some(&sign(SECRET, now(), &body)), &body)
            .expect("post")
            .status,
        200
    );
    assert_eq!(
        post_webhook(server.addr, None, &body).expect("post").status,
        400
    );
    // Metrics are served on the private listener only.
    let public = request(server.addr, "GET", "/metrics", &[], b"").expect("public metrics");
    assert_eq!(public.status, 404, "{}", public.text());
    let metrics = request(server.metrics_addr(), "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    assert!(
        metrics.contains(r#"stripe_webhook_requests_total{outcome="accepted"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"stripe_webhook_verification_failures_total{reason="missing_header"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("stripe_webhook_sink_put_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stripe_webhook_archived_bytes_total"),
        "{metrics}"
    );
    // Refusals made before the core are counted too.
    for outcome in ["not_found", "method_not_allowed"] {
        assert!(
            metrics.contains(&format!(
                r#"stripe_webhook_requests_total{{outcome="{outcome}"}}"#
            )),
            "{outcome}: {metrics}"
        );
    }
    server.terminate();
}

#[test]
fn refuses_to_start_without_a_valid_secret() {
    for (secret, expect) in [
        (None, "Stripe Dashboard"),
        (Some("whsec_abc\n"), "whitespace"),
        (Some(""), "Stripe Dashboard"),
    ] {
        let mut cmd = command(bin());
        cmd.env("PORT", "0").env("SINK", "memory");
        if let Some(s) = secret {
            cmd.env("STRIPE_WEBHOOK_SECRET", s);
        }
        let out = cmd.output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{secret:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.to_lowercase().contains(&expect.to_lowercase()),
            "{secret:?}: {stderr}"
        );
        assert!(
            !stderr.contains("whsec_abc"),
            "the secret is never printed: {stderr}"
        );
    }
}

/// A file-only build (`--no-default-features`) refuses `SINK=firehose` at start, saying why,
/// instead of running without the archive it was asked for.
#[cfg(not(feature = "firehose"))]
#[test]
fn a_file_only_build_refuses_the_firehose_sink() {
    let out = std::process::Command::new(bin())
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("PORT", "0")
        .env("SINK", "firehose")
        .env("FIREHOSE_DELIVERY_STREAM_NAME", "stream")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this build has no Firehose sink"),
        "{stderr}"
    );
}

#[test]
fn help_documents_every_setting() {
    let out = command(bin()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PORT",
        "HOST",
        "STRIPE_WEBHOOK_SECRET",
        "SINK",
        "ARCHIVE_DIR",
        "ARCHIVE_GZIP_LEVEL",
        "MAX_BODY_BYTES",
        "SIGNATURE_TOLERANCE_SECS",
        "AWS_REGION",
        "FIREHOSE_DELIVERY_STREAM_NAME",
        "METRICS_ADDR",
        "ALLOW_MEMORY_SINK",
        "SHUTDOWN_TIMEOUT_SECS",
        "MAX_CONNECTIONS",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "--help lacks {var}:\n{help}"
        );
    }
}

#[test]
fn the_memory_sink_starts_only_with_the_opt_in_and_says_so() {
    let out = command(bin())
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("PORT", "0")
        .env("SINK", "memory")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ALLOW_MEMORY_SINK=true"), "{stderr}");

    let server = ServerProcess::start(
        bin(),
        &[
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("SINK", "memory"),
            ("ALLOW_MEMORY_SINK", "true"),
        ],
    );
    let health = request(server.addr, "GET", "/health", &[], b"").expect("health");
    assert_eq!(
        health.text(),
        r#"{"status":"ok","sink":"memory","durable":false}"#
    );
    let (status, logs) = server.terminate();
    assert!(status.success());
    assert!(logs.contains("LOST on restart"), "{logs}");
}

#[test]
fn the_healthcheck_subcommand_probes_health_on_the_same_settings() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let probe = |port: u16| {
        command(bin())
            .arg("healthcheck")
            .env("HOST", "0.0.0.0")
            .env("PORT", port.to_string())
            .output()
            .expect("run healthcheck")
    };
    let port = server.addr.port();
    let out = probe(port);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("-> 200"), "{stdout}");
    let (status, _) = server.terminate();
    assert!(status.success());
    let out = probe(port);
    assert_eq!(out.status.code(), Some(1), "nothing listens: {out:?}");
    let out = probe(0);
    assert_eq!(out.status.code(), Some(1), "PORT=0 names no port: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PORT=0"),
        "{out:?}"
    );
}

#[test]
fn logs_are_json_without_colour_codes_when_not_on_a_terminal() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let body = event("evt_logs");
    post_webhook(server.addr, Some(&sign(SECRET, now(), &body)), &body).expect("post");
    let (status, logs) = server.terminate();
    assert!(status.success());
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in logs:\n{logs}");
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{logs}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
}

#[test]
fn a_dotenv_file_is_read_and_the_real_environment_wins() {
    let work = tempfile::tempdir().expect("tempdir");
    // The .env's PORT is taken: had it won over the real PORT=0, the server could not start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    std::fs::write(
        work.path().join(".env"),
        format!(
            "# local settings\nSTRIPE_WEBHOOK_SECRET={SECRET}\nSINK=file\nARCHIVE_DIR=./from-dotenv\nPORT={taken_port}\n"
        ),
    )
    .expect("write .env");
    let server = ServerProcess::start_in(work.path(), bin(), &[]);
    assert_ne!(
        server.addr.port(),
        taken_port,
        "PORT came from the environment"
    );
    let body = event("evt_dotenv");
    let answer = post_webhook(server.addr, Some(&sign(SECRET, now(), &body)), &body).expect("post");
    assert_eq!(
        answer.status,
        200,
        "the secret came from .env: {}",
        answer.text()
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("read settings from a .env file"), "{logs}");
    assert!(
        !segment_files(&work.path().join("from-dotenv")).is_empty(),
        "ARCHIVE_DIR came from .env"
    );
}

#[test]
fn an_archive_on_tmpfs_is_warned_about_at_start() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let tmpfs = mountinfo
        .lines()
        .filter_map(|l| {
            let (before, after) = l.split_once(" - ")?;
            (after.starts_with("tmpfs ") && before.contains(" rw"))
                .then(|| before.split(' ').nth(4).map(str::to_owned))
                .flatten()
        })
        .find(|dir| dir == "/dev/shm" || dir.starts_with("/tmp"))
        .expect("a writable tmpfs (/dev/shm) to put an archive on");
    let archive = Path::new(&tmpfs).join(format!(
        "swh-ephemeral-{}",
        stripe_webhook_testkit::unique_suffix()
    ));
    std::fs::create_dir_all(&archive).expect("create");
    let server = start(&archive, &[]);
    let (status, logs) = server.terminate();
    let _ = std::fs::remove_dir_all(&archive);
    assert!(status.success());
    assert!(
        logs.contains("tmpfs") && logs.contains("LOST when the container is replaced"),
        "{logs}"
    );
}
