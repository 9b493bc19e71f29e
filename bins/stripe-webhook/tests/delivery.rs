//! How `replay` (and `trigger`) deliver: https with a private CA, retries that wait as long as the
//! target's `Retry-After` says, dedupe that keeps the first copy that can actually be sent, and
//! `--checkpoint` only where a checkpoint means something.

use crate::common;

use std::time::{Duration, Instant, SystemTime};

use common::{
    cli, count, describe, invoice_event, private_ca, record, record_signed, run, secret_file,
    stdout, target_verifier, text, tls_target, write_segment,
};
use stripe_webhook_testkit::webhook_target::{Reply, WebhookTarget};

const SOURCE: &str = "whsec_delivery_archive";
const TARGET: &str = "whsec_delivery_target";
/// 2026-11-26T10:00:00.000Z.
const AT: i64 = 1_795_687_200_000;

/// An archive of `n` genuine records; returns the directory and the bodies in order.
fn archive(n: usize) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bodies: Vec<String> = (0..n)
        .map(|i| invoice_event(&format!("evt_d_{i}"), "invoice.paid", 100 + i as u64))
        .collect();
    let lines: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| text(&record(b, SOURCE, AT + i as i64, true)))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    write_segment(dir.path(), AT, "1-1-delivery.ndjson", &lines);
    (dir, bodies)
}

/// `replay` of the archive in `dir` to `target`, signed with [`TARGET`], verified with [`SOURCE`],
/// with `extra` arguments.
fn replay_to(
    dir: &std::path::Path,
    target: &WebhookTarget,
    extra: &[&str],
) -> std::process::Output {
    let url = target.url();
    let mut args = vec![
        "replay",
        dir.to_str().expect("path"),
        "--url",
        &url,
        "--secret",
        TARGET,
        "--source-secret",
        SOURCE,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn replay_and_trigger_deliver_over_https_to_a_target_with_a_private_ca() {
    let (dir, bodies) = archive(2);
    let keys = tempfile::tempdir().expect("tempdir");
    let ca = keys.path().join("ca.pem");
    let target = tls_target(&ca);
    let url = format!("https://localhost:{}/webhook/stripe", target.addr.port());
    let target_secret = secret_file(keys.path(), "target.secret", TARGET);
    let base = [
        "replay",
        dir.path().to_str().expect("path"),
        "--url",
        &url,
        "--secret-file",
        target_secret.to_str().expect("path"),
        "--source-secret",
        SOURCE,
        "--retries",
        "0",
    ];

    // The system's roots (here another CA, through SSL_CERT_FILE as OpenSSL reads it) do not know
    // the private CA: the certificate is refused, nothing is sent.
    let other_ca = keys.path().join("other-ca.pem");
    private_ca(&other_ca);
    let out = cli()
        .args(base)
        .env("SSL_CERT_FILE", &other_ca)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "failed (no response)"), 2, "{}", describe(&out));
    assert!(
        stdout(&out).contains("certificate"),
        "the failure names the certificate: {}",
        describe(&out)
    );
    assert!(target.received().is_empty());

    let out = run(&[&base[..], &["--ca-file", ca.to_str().expect("path")]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 2, "{}", describe(&out));
    let mut received = target.received();
    received.sort_by(|a, b| a.body.cmp(&b.body));
    assert_eq!(received.len(), 2);
    for (r, body) in received.iter().zip(&bodies) {
        assert_eq!(r.body, body.as_bytes(), "byte-exact over TLS");
        target_verifier(TARGET)
            .verify(&r.body, r.header("stripe-signature"), common::now())
            .expect("re-signed for the target");
        assert_eq!(
            r.header("host"),
            Some(&*format!("localhost:{}", target.addr.port()))
        );
    }

    // trigger (a dev tool: its secret may come from STRIPE_WEBHOOK_SECRET).
    let out = cli()
        .args([
            "trigger",
            "charge.succeeded",
            "--url",
            &url,
            "--ca-file",
            ca.to_str().expect("path"),
        ])
        .env("STRIPE_WEBHOOK_SECRET", TARGET)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).starts_with("200 ok"), "{}", describe(&out));
    let received = target.received();
    assert_eq!(received.len(), 3);
    target_verifier(TARGET)
        .verify(
            &received[2].body,
            received[2].header("stripe-signature"),
            common::now(),
        )
        .expect("trigger signs with the target's secret");
}

#[test]
fn replay_waits_as_long_as_retry_after_says_in_seconds_or_as_an_http_date() {
    let (dir, bodies) = archive(2);
    let target = WebhookTarget::start();
    // Well after the first retry's 2 s; HTTP-dates have whole seconds.
    let (now, now_instant) = (SystemTime::now(), Instant::now());
    let date = httpdate::fmt_http_date(now + Duration::from_secs(6));
    let date_instant = now_instant
        + httpdate::parse_http_date(&date)
            .expect("date")
            .duration_since(now)
            .expect("in the future");
    target.script([
        Reply::status(503).header("Retry-After", "2"),
        Reply::ok(),
        Reply::status(429).header("Retry-After", &date),
        Reply::ok(),
    ]);
    let out = replay_to(dir.path(), &target, &["--concurrency", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 2, "{}", describe(&out));
    let received = target.received();
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [503, 200, 429, 200]);
    assert_eq!(received[1].body, bodies[0].as_bytes());
    assert_eq!(received[3].body, bodies[1].as_bytes());
    let waited = |i: usize| received[i + 1].at.duration_since(received[i].at);
    assert!(
        waited(0) >= Duration::from_millis(1950),
        "Retry-After: 2 honoured: waited {:?}",
        waited(0)
    );
    assert!(
        received[3].at >= date_instant,
        "Retry-After: <HTTP-date> honoured: retried {:?} before it",
        date_instant.duration_since(received[3].at)
    );
    assert!(waited(2) >= Duration::from_secs(2), "{:?}", waited(2));
}

#[test]
fn replay_reports_a_retry_after_longer_than_it_waits_instead_of_hanging() {
    let (dir, _) = archive(1);
    let target = WebhookTarget::start();
    target.script([Reply::status(503).header("Retry-After", "3600")]);
    let started = Instant::now();
    let out = replay_to(dir.path(), &target, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&out, "refused"), 1, "{}", describe(&out));
    assert!(
        stdout(&out)
            .contains("REFUSED\tevt_d_0\t503\tRetry-After 3600 s is longer than replay waits"),
        "{}",
        describe(&out)
    );
    assert_eq!(target.received().len(), 1, "not retried");
}

#[test]
fn replay_sends_the_first_sendable_copy_of_each_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = invoice_event("evt_copy_1", "invoice.paid", 100);
    let two = invoice_event("evt_copy_2", "invoice.paid", 200);
    let three = invoice_event("evt_copy_3", "invoice.paid", 300);
    let genuine_two = record(&two, SOURCE, AT, true);
    let lines = [
        // Written before raw was turned on: no body to send.
        text(&record(&one, SOURCE, AT, false)),
        text(&record(&one, SOURCE, AT + 1, true)),
        // A forged copy (the body does not verify) before the genuine one.
        text(&record_signed(
            &invoice_event("evt_copy_2", "invoice.paid", 999_999),
            genuine_two.signature_header(),
            AT + 2,
            true,
        )),
        text(&genuine_two),
        text(&record(&three, SOURCE, AT + 3, true)),
        text(&record(&three, SOURCE, AT + 4, true)),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    write_segment(dir.path(), AT, "1-1-copies.ndjson", &lines);
    let target = WebhookTarget::start();
    let out = replay_to(dir.path(), &target, &["--concurrency", "1"]);
    // The forged copy is a problem to report (exit code 1), but does not hide the genuine one.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 3, "{}", describe(&out));
    assert_eq!(
        count(&out, "duplicate id (an earlier sendable copy was selected)"),
        1,
        "{}",
        describe(&out)
    );
    let received: Vec<Vec<u8>> = target.received().into_iter().map(|r| r.body).collect();
    assert_eq!(
        received,
        [one.into_bytes(), two.into_bytes(), three.into_bytes()]
    );
}

#[test]
fn checkpoint_with_no_dedupe_is_refused_with_the_reason() {
    let (dir, _) = archive(1);
    let checkpoint = dir.path().join("replay.checkpoint");
    let out = run(&[
        "replay",
        dir.path().to_str().expect("path"),
        "--dry-run",
        "--no-dedupe",
        "--checkpoint",
        checkpoint.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--checkpoint") && err.contains("--no-dedupe"),
        "{err}"
    );
    assert!(!checkpoint.exists(), "nothing written");
}
