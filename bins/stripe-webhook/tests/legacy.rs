//! An archive shared with the Node service this one replaced: its lines
//! (`{"timestamp","type","id","data"}`, no `v`) sit beside envelope v1 records in one segment.
//! Every tool reads them as legacy records: `verify` lists them `LEGACY` and exits 0, `cat`
//! prints them, `stats` counts them, and `reconcile` counts their ids as present (it neither
//! reports nor fetches them again). A line that only looks like one (a v1 record that lost its
//! `v`) is still a failure.

use crate::common;

use common::{
    cli, count, describe, invoice_event, now, record, run, stdout, text, with_created,
    write_segment,
};
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_testkit::fake_stripe::{Access, FakeStripe};

const SECRET: &str = "whsec_legacy_archive";
const KEY: &str = "sk_test_51Legacy0123456789abcdefghijklmnop";

/// A line as the Node service wrote it: `JSON.stringify({timestamp, type, id, data})`.
fn node_line(id: &str, event_type: &str, at_millis: i64) -> String {
    format!(
        r#"{{"timestamp":"{}","type":"{event_type}","id":"{id}","data":{{"object":{{"id":"in_{id}","amount_due":1200}}}}}}"#,
        ReceivedAt::from_unix_millis(at_millis).rfc3339_millis()
    )
}

#[test]
fn node_lines_are_legacy_records_in_every_tool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = (now() - 1800) * 1000;
    let created = (now() - 1800).to_string();
    let v1_body = with_created(
        &invoice_event("evt_1LegacyV1", "invoice.paid", 100),
        &created,
    );
    let v1 = text(&record(&v1_body, SECRET, at, true));
    let node_a = node_line("evt_1LegacyNodeA", "invoice.paid", at + 1);
    let node_b = node_line("evt_1LegacyNodeB", "invoice.created", at + 2);
    write_segment(dir.path(), at, "1-shared.ndjson", &[&node_a, &v1, &node_b]);
    let archive = dir.path().to_str().expect("utf-8");

    let o = run(&["verify", archive, "--secret", SECRET]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(count(&o, "verified"), 1, "{}", describe(&o));
    assert_eq!(count(&o, "failed"), 0, "{}", describe(&o));
    assert_eq!(
        count(&o, "legacy (Node service lines, present, not verifiable)"),
        2,
        "{}",
        describe(&o)
    );
    let listed: Vec<Vec<String>> = stdout(&o)
        .lines()
        .filter(|l| l.starts_with("LEGACY\t"))
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(listed.len(), 2, "{}", describe(&o));
    assert_eq!(listed[0][2], "evt_1LegacyNodeA");
    assert!(listed[0][1].ends_with("1-shared.ndjson:1"), "{listed:?}");
    assert_eq!(listed[0][3], "legacy Node record, not verifiable");

    let o = run(&["cat", archive]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(stdout(&o), format!("{node_a}\n{v1}\n{node_b}\n"));
    let o = run(&["cat", archive, "--type", "invoice.created"]);
    assert_eq!(stdout(&o), format!("{node_b}\n"), "{}", describe(&o));

    let o = run(&["stats", archive, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(stats["records"], 3, "{stats}");
    assert_eq!(stats["legacy"], 2, "{stats}");
    assert_eq!(stats["unreadable"], 0, "{stats}");

    // Stripe lists all three events and one more: only that one is missing.
    let stripe = FakeStripe::start();
    stripe.key(KEY, Access::Secret);
    for (id, ty) in [
        ("evt_1LegacyNodeA", "invoice.paid"),
        ("evt_1LegacyNodeB", "invoice.created"),
        ("evt_1LegacyV1", "invoice.paid"),
        ("evt_1LegacyMissing", "invoice.paid"),
    ] {
        stripe.event(&with_created(&invoice_event(id, ty, 100), &created), None);
    }
    let since = ReceivedAt::from_unix_millis((now() - 3600) * 1000).rfc3339_millis();
    let o = cli()
        .args(["reconcile", archive, "--since", &since])
        .env("STRIPE_API_BASE", stripe.url())
        .env("STRIPE_API_KEY", KEY)
        .output()
        .expect("reconcile");
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = stdout(&o);
    let missing: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("MISSING\t")?.split('\t').next())
        .collect();
    assert_eq!(missing, ["evt_1LegacyMissing"], "{}", describe(&o));

    // A v1 record with its `v` removed is not legacy: still a failure.
    let stripped = v1.replacen("\"v\":1,", "", 1);
    write_segment(dir.path(), at, "2-tampered.ndjson", &[&stripped]);
    let o = run(&["verify", archive, "--secret", SECRET]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(count(&o, "failed"), 1, "{}", describe(&o));
    assert!(
        stdout(&o).contains("no envelope version"),
        "{}",
        describe(&o)
    );
}

/// `verify … | head`: the reader closes the pipe after one line; the CLI stops quietly with 141
/// (as a shell reports SIGPIPE), without a panic message.
#[test]
fn a_reader_that_closes_the_pipe_ends_verify_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    let at = (now() - 1800) * 1000;
    let lines: Vec<String> = (0..20_000)
        .map(|i| node_line(&format!("evt_1Pipe{i:05}"), "invoice.paid", at + i))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    write_segment(dir.path(), at, "1-node.ndjson", &refs);
    let mut child = cli()
        .args([
            "verify",
            dir.path().to_str().expect("utf-8"),
            "--secret",
            SECRET,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn verify");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read one line");
    assert!(first.starts_with("LEGACY\t"), "{first}");
    let o = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
