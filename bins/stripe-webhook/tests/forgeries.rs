//! The audit and replay paths against an archive that someone other than the server may have
//! written to: `verify` fails every record it cannot check completely, and `replay` sends only
//! records that verify against the archive's own secret (unless told loudly not to check), to a
//! target and with a secret given explicitly.

use crate::common;

use common::{
    cli, count, describe, failures, invoice_event, record, record_signed, run, secret_file, stdout,
    target_verifier, text, write_segment,
};
use stripe_webhook_testkit::webhook_target::WebhookTarget;

const SOURCE: &str = "whsec_forgeries_archive";
const TARGET: &str = "whsec_forgeries_target";
/// 2026-11-26T10:00:00.000Z.
const AT: i64 = 1_795_687_200_000;

#[test]
fn verify_fails_records_of_an_unknown_or_missing_version_whatever_their_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let genuine = text(&record(
        &invoice_event("evt_v_1", "invoice.paid", 1000),
        SOURCE,
        AT,
        true,
    ));
    // `raw` and `signature` kept, so the signature still holds; the fields queries read changed.
    let refund = |line: &str| {
        line.replacen(
            "\"type\":\"invoice.paid\"",
            "\"type\":\"charge.refunded\"",
            1,
        )
        .replacen("\"amount_due\":1000", "\"amount_due\":99999999", 1)
    };
    let v3 = refund(&genuine.replacen("{\"v\":1,", "{\"v\":3,", 1));
    let no_v = refund(&genuine.replacen("{\"v\":1,", "{", 1));
    let v_text = genuine.replacen("{\"v\":1,", "{\"v\":\"1\",", 1);
    // Relabelled as a fetched record (v2), its signature kept: neither kind of record.
    let v2 = refund(&genuine.replacen("{\"v\":1,", "{\"v\":2,", 1));
    assert!(v3 != genuine && no_v != genuine && v_text != genuine && v2 != genuine);
    let segment = write_segment(
        dir.path(),
        AT,
        "1-1-versions.ndjson",
        &[&genuine, &v3, &no_v, &v_text, &v2],
    );
    let archive = dir.path().to_str().expect("path");

    for extra in [&[][..], &["--signature-only"][..]] {
        let mut args = vec!["verify", archive, "--secret", SOURCE];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", describe(&out));
        assert_eq!(count(&out, "verified"), 1, "{}", describe(&out));
        assert_eq!(count(&out, "failed"), 4, "{}", describe(&out));
        let got = failures(&out);
        let at = |n: usize| format!("{}:{n}", segment.display());
        let expected = [
            (2, "unknown envelope version 3"),
            (3, "no envelope version"),
            (4, "unknown envelope version \"1\""),
            (5, "which a fetched (v2) record never has"),
        ];
        assert_eq!(got.len(), expected.len(), "{}", describe(&out));
        for ((location, _, why), (line, reason)) in got.iter().zip(expected) {
            assert_eq!(*location, at(line));
            assert!(why.contains(reason), "{why}");
        }
        assert_eq!(
            count(
                &out,
                "fetched (present, not signed by Stripe; fetched from its API)"
            ),
            0
        );
    }
}

/// A genuine record, a record whose body does not match its signature, a record whose
/// envelope fields do not match its (genuine) body, and a raw-off record.
fn archive_with_forgeries(dir: &std::path::Path) -> (String, Vec<String>) {
    let ok_body = invoice_event("evt_r_1", "invoice.paid", 1000);
    let ok = text(&record(&ok_body, SOURCE, AT, true));
    // Someone who can write the archive writes a record of their own, with a signature header
    // copied from a genuine record: consistent envelope, but the body does not verify.
    let genuine_2 = record(
        &invoice_event("evt_r_2", "invoice.paid", 1000),
        SOURCE,
        AT,
        true,
    );
    let forged = text(&record_signed(
        &invoice_event("evt_r_2", "invoice.paid", 500_000),
        genuine_2.signature_header(),
        AT + 1,
        true,
    ));
    // A genuine body under edited envelope fields.
    let relabelled = text(&record(
        &invoice_event("evt_r_3", "invoice.paid", 1000),
        SOURCE,
        AT + 2,
        true,
    ))
    .replacen(
        "\"type\":\"invoice.paid\"",
        "\"type\":\"charge.refunded\"",
        1,
    );
    let raw_off = text(&record(
        &invoice_event("evt_r_4", "invoice.paid", 1000),
        SOURCE,
        AT + 3,
        false,
    ));
    write_segment(
        dir,
        AT,
        "1-1-forgeries.ndjson",
        &[&ok, &forged, &relabelled, &raw_off],
    );
    let sent_unverified = vec![
        ok_body,
        invoice_event("evt_r_2", "invoice.paid", 500_000),
        invoice_event("evt_r_3", "invoice.paid", 1000),
    ];
    (dir.to_str().expect("path").to_owned(), sent_unverified)
}

#[test]
fn replay_sends_only_records_whose_source_signature_and_envelope_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, bodies) = archive_with_forgeries(dir.path());
    let keys = tempfile::tempdir().expect("tempdir");
    let target_secret = secret_file(keys.path(), "target.secret", TARGET);
    let source_secret = secret_file(keys.path(), "source.secret", SOURCE);
    let target = WebhookTarget::start();

    let out = run(&[
        "replay",
        &archive,
        "--url",
        &target.url(),
        "--secret-file",
        target_secret.to_str().expect("path"),
        "--source-secret-file",
        source_secret.to_str().expect("path"),
    ]);
    // Forgeries are problems: exit code 1, each named.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 1, "{}", describe(&out));
    assert_eq!(
        count(&out, "source does not verify (listed as UNVERIFIED)"),
        2,
        "{}",
        describe(&out)
    );
    let text = stdout(&out);
    let unverified: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("UNVERIFIED\t"))
        .collect();
    assert_eq!(unverified.len(), 2, "{}", describe(&out));
    assert!(
        unverified[0].starts_with("UNVERIFIED\tevt_r_2\t") && unverified[0].contains("signature"),
        "{}",
        unverified[0]
    );
    assert!(
        unverified[1].starts_with("UNVERIFIED\tevt_r_3\t")
            && unverified[1].contains("envelope fields differ"),
        "{}",
        unverified[1]
    );
    let received = target.received();
    assert_eq!(received.len(), 1, "{}", describe(&out));
    assert_eq!(received[0].body, bodies[0].as_bytes());
    target_verifier(TARGET)
        .verify(
            &received[0].body,
            received[0].header("stripe-signature"),
            common::now(),
        )
        .expect("re-signed for the target");

    // The source secret from the command line works the same.
    let out = run(&[
        "replay",
        &archive,
        "--dry-run",
        "--source-secret",
        &format!("whsec_old,{SOURCE}"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "would send"), 1, "{}", describe(&out));
}

#[test]
fn replay_without_the_archive_secret_needs_the_loud_opt_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, bodies) = archive_with_forgeries(dir.path());
    let target = WebhookTarget::start();
    let base = [
        "replay",
        &archive,
        "--url",
        &target.url(),
        "--secret",
        TARGET,
    ];

    let out = run(&base);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--source-secret") && err.contains("--unverified-source"),
        "{err}"
    );
    assert!(target.received().is_empty());

    let out = run(&[&base[..], &["--unverified-source"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING") && err.to_lowercase().contains("not verified"),
        "{err}"
    );
    assert_eq!(count(&out, "sent (2xx)"), 3, "{}", describe(&out));
    let mut received: Vec<Vec<u8>> = target.received().into_iter().map(|r| r.body).collect();
    let mut expected: Vec<Vec<u8>> = bodies.into_iter().map(String::into_bytes).collect();
    received.sort();
    expected.sort();
    assert_eq!(received, expected, "the forged and relabelled records too");
}

#[test]
fn replay_never_takes_its_target_or_secret_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, _) = archive_with_forgeries(dir.path());
    let target = WebhookTarget::start();
    let with_env = |args: &[&str]| {
        cli()
            .args(args)
            .env("STRIPE_WEBHOOK_URL", target.url())
            .env("STRIPE_WEBHOOK_SECRET", TARGET)
            .output()
            .expect("run")
    };

    let out = with_env(&["replay", &archive]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--url"),
        "{}",
        describe(&out)
    );
    let out = with_env(&[
        "replay",
        &archive,
        "--url",
        &target.url(),
        "--source-secret",
        SOURCE,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--secret"),
        "{}",
        describe(&out)
    );
    let keys = tempfile::tempdir().expect("tempdir");
    let file = secret_file(keys.path(), "target.secret", TARGET);
    let out = with_env(&[
        "replay",
        &archive,
        "--url",
        &target.url(),
        "--secret",
        TARGET,
        "--secret-file",
        file.to_str().expect("path"),
        "--source-secret",
        SOURCE,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(target.received().is_empty(), "nothing may be sent");
}
