//! The operator tools against local archives written by the REAL server (file sink): `cat` and
//! its filters, `stats`, `verify` (genuine and tampered copies), and `replay` into a second real
//! server with a different secret, interrupted and resumed.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{
    cli, count, describe, event_body, failures, file_server, fixtures, post_signed, run, stdout,
};
use stripe_webhook_testkit::archive::{read_records, read_segment, segment_files};
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_testkit::wait;

const SECRET_A: &str = "whsec_archive_secret_a";
const SECRET_B: &str = "whsec_target_secret_b";

/// One event posted while building the archive.
#[derive(Clone, Debug)]
struct Posted {
    id: String,
    event_type: String,
    live: bool,
}

fn post(server: &ServerProcess, secret: &str, body: &str) {
    let r = post_signed(server, secret, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Builds an archive with the real server: 20 signed events (every bundled type, a third of them
/// live), one of them delivered twice, then 2 events through a raw-off server in the same
/// directory. Returns the 20 with raw, and the raw-off ids.
fn build_archive(dir: &Path) -> (Vec<Posted>, Vec<String>) {
    let fixtures = fixtures();
    let server = file_server(dir, SECRET_A, &[]);
    let mut posted = Vec::new();
    for i in 0..20 {
        let (event_type, fixture) = &fixtures[i % fixtures.len()];
        let id = format!("evt_cli_{i:03}");
        let live = i % 3 == 0;
        post(&server, SECRET_A, &event_body(fixture, &id, live));
        posted.push(Posted {
            id,
            event_type: event_type.clone(),
            live,
        });
    }
    // Stripe retries: the same event delivered again (a second record with the same id).
    let (_, first) = &fixtures[0];
    post(&server, SECRET_A, &event_body(first, "evt_cli_000", true));
    let (status, log) = server.terminate();
    assert!(status.success(), "server A: {status}\n{log}");

    let server = file_server(dir, SECRET_A, &[("ENVELOPE_INCLUDE_RAW", "false")]);
    let mut raw_off = Vec::new();
    for i in 0..2 {
        let id = format!("evt_rawoff_{i}");
        post(&server, SECRET_A, &event_body(&fixtures[1].1, &id, false));
        raw_off.push(id);
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "raw-off server: {status}\n{log}");
    (posted, raw_off)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

fn ids_of(ndjson: &str) -> Vec<String> {
    lines(ndjson)
        .into_iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("cat prints JSON lines");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// The receipt date of the records (the test does not straddle midnight UTC: it checks).
fn receipt_day(records: &[serde_json::Value]) -> String {
    let days: HashSet<&str> = records
        .iter()
        .map(|r| &r["timestamp"].as_str().expect("timestamp")[..10])
        .collect();
    assert_eq!(days.len(), 1, "records straddle midnight UTC: {days:?}");
    days.into_iter().next().expect("a day").to_owned()
}

#[test]
fn cat_prints_records_byte_exact_and_filters_select_what_they_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (posted, raw_off) = build_archive(dir.path());
    let archive = dir.path().to_str().expect("path");
    let total = posted.len() + 1 + raw_off.len();

    // Everything, byte for byte as stored, in segment order.
    let out = run(&["cat", archive]);
    assert!(out.status.success(), "{}", describe(&out));
    let stored: Vec<u8> = segment_files(dir.path())
        .iter()
        .flat_map(|p| read_segment(p))
        .collect();
    assert_eq!(
        out.stdout, stored,
        "cat must print the stored lines exactly"
    );
    assert_eq!(lines(&stdout(&out)).len(), total);

    let selected = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["cat", archive];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", describe(&out));
        ids_of(&stdout(&out))
    };
    // What each filter should select, read independently (testkit) from the stored records.
    let records = read_records(dir.path());
    assert_eq!(records.len(), total);
    let expect = |keep: &dyn Fn(&serde_json::Value) -> bool| -> Vec<String> {
        records
            .iter()
            .filter(|r| keep(r))
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let type_starts =
        |r: &serde_json::Value, p: &str| r["type"].as_str().is_some_and(|t| t.starts_with(p));
    // Type globs.
    let invoices = expect(&|r| type_starts(r, "invoice."));
    assert!(!invoices.is_empty());
    assert_eq!(selected(&["--type", "invoice.*"]), invoices);
    let charges_or_invoices = expect(&|r| type_starts(r, "charge.") || type_starts(r, "invoice."));
    assert!(charges_or_invoices.len() > invoices.len());
    assert_eq!(
        selected(&["--type", "charge.*,invoice.*"]),
        charges_or_invoices
    );
    assert_eq!(
        selected(&["--type", "*.succeeded"]),
        expect(&|r| r["type"]
            .as_str()
            .is_some_and(|t| t.ends_with(".succeeded")))
    );
    // Ids (both copies of a duplicated id), and --dedupe.
    assert_eq!(
        selected(&["--id", "evt_cli_000", "--id", "evt_cli_007,evt_nope"]),
        expect(&|r| r["id"] == "evt_cli_000" || r["id"] == "evt_cli_007")
    );
    assert_eq!(
        selected(&["--id", "evt_cli_000"]),
        ["evt_cli_000", "evt_cli_000"]
    );
    assert_eq!(
        selected(&["--id", "evt_cli_000", "--dedupe"]),
        ["evt_cli_000"]
    );
    let ids_file = dir.path().join("ids.txt");
    std::fs::write(&ids_file, "evt_cli_003\n\nevt_rawoff_1\n").expect("ids file");
    assert_eq!(
        selected(&["--ids-file", ids_file.to_str().expect("path")]),
        ["evt_cli_003", "evt_rawoff_1"]
    );
    // Livemode.
    let live = expect(&|r| r["livemode"] == true);
    assert_eq!(live.len(), posted.iter().filter(|p| p.live).count() + 1);
    assert_eq!(selected(&["--livemode", "true"]), live);
    assert_eq!(
        selected(&["--livemode", "false"]),
        expect(&|r| r["livemode"] == false)
    );
    // Receipt dates (partitions) and timestamps.
    let day = receipt_day(&records);
    assert_eq!(selected(&["--from", &day, "--to", &day]).len(), total);
    assert_eq!(selected(&["--to", "2000-01-01"]).len(), 0);
    assert_eq!(selected(&["--from", "2999-01-01"]).len(), 0);
    let mut stamps: Vec<&str> = records
        .iter()
        .map(|r| r["timestamp"].as_str().expect("timestamp"))
        .collect();
    stamps.sort_unstable();
    let middle = stamps[stamps.len() / 2];
    let since = expect(&|r| r["timestamp"].as_str().is_some_and(|t| t >= middle));
    assert!(!since.is_empty() && since.len() < total);
    assert_eq!(selected(&["--since", middle]), since);
    assert_eq!(selected(&["--until", middle]).len(), total - since.len());
    // Combined.
    assert_eq!(
        selected(&[
            "--livemode",
            "true",
            "--type",
            "charge.*",
            "--since",
            middle
        ]),
        expect(&|r| r["livemode"] == true
            && type_starts(r, "charge.")
            && r["timestamp"].as_str().is_some_and(|t| t >= middle))
    );
    // Bad arguments are usage errors (exit code 2).
    let out = run(&["cat", archive, "--from", "26/11/2026"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = run(&["cat", "/nonexistent/archive"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Every subcommand has help.
    for sub in ["cat", "stats", "verify", "replay", "trigger", "events"] {
        let out = run(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help: {}", describe(&out));
        assert!(stdout(&out).contains("Usage: stripe-webhook"), "{sub}");
    }
}

#[test]
fn stats_counts_days_types_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (posted, raw_off) = build_archive(dir.path());
    let archive = dir.path().to_str().expect("path");
    let out = run(&["stats", archive, "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    let total = posted.len() + 1 + raw_off.len();
    assert_eq!(stats["records"], total);
    assert_eq!(stats["distinct_ids"], total - 1);
    assert_eq!(stats["duplicate_copies"], 1);
    assert_eq!(stats["duplicated_ids"], serde_json::json!(["evt_cli_000"]));
    assert_eq!(stats["raw_off"], raw_off.len());
    assert_eq!(stats["oversize_pointers"], 0);
    assert_eq!(
        stats["by_day"][receipt_day(&read_records(dir.path()))],
        total
    );
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for p in &posted {
        *by_type.entry(p.event_type.clone()).or_default() += 1;
    }
    *by_type.entry(posted[0].event_type.clone()).or_default() += 1;
    *by_type.entry(fixtures()[1].0.clone()).or_default() += 2;
    assert_eq!(
        stats["by_type"],
        serde_json::to_value(&by_type).expect("json")
    );

    let out = run(&["stats", archive, "--type", "invoice.*"]);
    assert!(out.status.success(), "{}", describe(&out));
    let invoices = posted
        .iter()
        .filter(|p| p.event_type.starts_with("invoice."))
        .count();
    assert!(
        stdout(&out).starts_with(&format!("records: {invoices} ")),
        "{}",
        describe(&out)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn write_segment(path: &Path, content: &[u8]) {
    if path.extension().is_some_and(|e| e == "gz") {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(content).expect("gzip");
        std::fs::write(path, e.finish().expect("gzip")).expect("write");
    } else {
        std::fs::write(path, content).expect("write");
    }
}

/// Changes the first ASCII digit after `marker` in the record of `id`; returns (path, line).
fn tamper(dir: &Path, id: &str, marker: &str) -> (PathBuf, usize) {
    for path in segment_files(dir) {
        let content = read_segment(&path);
        let mut out = Vec::with_capacity(content.len());
        let mut hit = None;
        for (i, line) in content.split_inclusive(|b| *b == b'\n').enumerate() {
            let mut line = line.to_vec();
            let v: serde_json::Value =
                serde_json::from_slice(&line[..line.len() - 1]).expect("json");
            if hit.is_none() && v["id"] == id {
                let text = String::from_utf8(line.clone()).expect("utf-8");
                let start = text.find(marker).expect("marker") + marker.len();
                let at = start
                    + text[start..]
                        .bytes()
                        .position(|b| b.is_ascii_digit())
                        .expect("a digit");
                // Another digit that keeps a JSON number valid (no new leading zero).
                line[at] = if line[at] == b'9' { b'8' } else { line[at] + 1 };
                hit = Some(i + 1);
            }
            out.extend_from_slice(&line);
        }
        if let Some(line) = hit {
            write_segment(&path, &out);
            return (path, line);
        }
    }
    panic!("no record {id}");
}

#[test]
fn verify_passes_on_a_genuine_archive_and_names_each_tampered_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (posted, raw_off) = build_archive(dir.path());
    let archive = dir.path().to_str().expect("path");

    let out = run(&["verify", archive, "--secret", SECRET_A]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "verified"), posted.len() as u64 + 1);
    assert_eq!(count(&out, "failed"), 0);
    assert_eq!(
        count(&out, "not verifiable (raw off, no signature stored)"),
        raw_off.len() as u64
    );
    assert!(failures(&out).is_empty());

    // Rotation: any of several secrets; the secret from the environment.
    let out = run(&[
        "verify",
        archive,
        "--secret",
        &format!("whsec_other,{SECRET_A}"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("(by secret: #1=0 #2=21)"),
        "{}",
        describe(&out)
    );
    let out = cli()
        .args(["verify", archive])
        .env("STRIPE_WEBHOOK_SECRET", SECRET_A)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // The wrong secret: every record with a body fails.
    let out = run(&["verify", archive, "--secret", SECRET_B]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "failed"), posted.len() as u64 + 1);
    assert_eq!(failures(&out).len(), posted.len() + 1);

    // A tampered copy: one raw body changed (signature fails), one `data` changed while raw was
    // left alone (the envelope no longer says what the signed body says).
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    let charges: Vec<&Posted> = posted
        .iter()
        .filter(|p| p.event_type == "charge.succeeded")
        .collect();
    assert!(charges.len() >= 2);
    let (raw_path, raw_line) = tamper(copy.path(), &charges[0].id, "\"raw\":\"");
    let (data_path, data_line) = tamper(copy.path(), &charges[1].id, "\"amount\":");
    let out = run(&[
        "verify",
        copy.path().to_str().expect("path"),
        "--secret",
        SECRET_A,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "verified"), posted.len() as u64 - 1);
    assert_eq!(count(&out, "failed"), 2, "{}", describe(&out));
    let mut got = failures(&out);
    got.sort();
    let mut want = vec![
        (
            format!("{}:{raw_line}", raw_path.display()),
            charges[0].id.clone(),
            "signature",
        ),
        (
            format!("{}:{data_line}", data_path.display()),
            charges[1].id.clone(),
            "envelope fields differ",
        ),
    ];
    want.sort();
    assert_eq!(got.len(), 2, "{}", describe(&out));
    for ((location, id, reason), (want_location, want_id, want_reason)) in got.iter().zip(&want) {
        assert_eq!((location, id), (want_location, want_id));
        assert!(reason.contains(want_reason), "{reason}");
    }
    // --signature-only does not look at the envelope fields.
    let out = run(&[
        "verify",
        copy.path().to_str().expect("path"),
        "--secret",
        SECRET_A,
        "--signature-only",
    ]);
    assert_eq!(count(&out, "failed"), 1, "{}", describe(&out));
}

fn target_url(server: &ServerProcess) -> String {
    format!("http://{}/webhook/stripe", server.addr)
}

#[test]
fn replay_into_a_second_server_resumes_without_sending_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (posted, raw_off) = build_archive(dir.path());
    let archive = dir.path().to_str().expect("path");
    let target_dir = tempfile::tempdir().expect("tempdir");
    let target = file_server(target_dir.path(), SECRET_B, &[]);
    let url = target_url(&target);
    let checkpoint = dir.path().join("replay.checkpoint");
    let ck = checkpoint.to_str().expect("path");

    // A dry run sends nothing and says what it would send.
    let out = run(&["replay", archive, "--dry-run", "--source-secret", SECRET_A]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "would send"), posted.len() as u64);
    assert_eq!(
        count(&out, "duplicate id (an earlier sendable copy was selected)"),
        1
    );

    let out = run(&[
        "replay",
        archive,
        "--dry-run",
        "--source-secret",
        SECRET_A,
        "--no-dedupe",
        "--type",
        "charge.*",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let charges = read_records(dir.path())
        .iter()
        .filter(|r| {
            r["type"].as_str().is_some_and(|t| t.starts_with("charge.")) && r["raw"].is_string()
        })
        .count();
    assert_eq!(count(&out, "would send"), charges as u64);
    assert!(stdout(&out).contains("skipped: 2\n"), "{}", describe(&out));

    // A refusal is reported with its status (the archive's secret is wrong for the target).
    let out = run(&[
        "replay",
        archive,
        "--id",
        "evt_cli_001",
        "--url",
        &url,
        "--secret",
        SECRET_A,
        "--source-secret",
        SECRET_A,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(count(&out, "refused"), 1);
    assert!(
        stdout(&out).contains("(by status: 400=1)"),
        "{}",
        describe(&out)
    );
    assert!(stdout(&out).contains("REFUSED\tevt_cli_001\t400\t"));

    // 1: stop after 5.
    let base = [
        "replay",
        archive,
        "--url",
        &url,
        "--secret",
        SECRET_B,
        "--source-secret",
        SECRET_A,
        "--checkpoint",
        ck,
    ];
    let out = run(&[&base[..], &["--limit", "5", "--concurrency", "2"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 5);

    // 2: interrupted with Ctrl-C (SIGINT) midway through a rate-limited run.
    let child = cli()
        .args(base)
        .args(["--rate", "4", "--concurrency", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn replay");
    // Midway: this run has delivered an event (its id is in the checkpoint after the first 5).
    wait::until(
        "the interrupted run delivered one",
        Duration::from_secs(60),
        || {
            std::fs::read(&checkpoint)
                .is_ok_and(|ids| ids.iter().filter(|b| **b == b'\n').count() > 5)
        },
    );
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let second = count(&out, "sent (2xx)");
    let interrupted = describe(&out);
    assert!(
        (1..posted.len() as u64 - 5).contains(&second),
        "{}",
        describe(&out)
    );

    // 3: resume to the end.
    let out = run(&base);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        count(&out, "sent (2xx)"),
        posted.len() as u64 - 5 - second,
        "{}\n{interrupted}",
        describe(&out)
    );
    assert_eq!(count(&out, "already sent (in the checkpoint)"), 5 + second);
    assert_eq!(
        count(&out, "duplicate id (an earlier sendable copy was selected)"),
        1
    );
    assert_eq!(
        count(
            &out,
            "no body stored (record written with raw off): cannot be replayed"
        ),
        raw_off.len() as u64
    );
    assert_eq!(count(&out, "refused"), 0);

    // 4: nothing left.
    let out = run(&base);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "sent (2xx)"), 0);

    let (status, log) = target.terminate();
    assert!(status.success(), "{status}\n{log}");

    // The target archived each event exactly once, with the exact original body.
    let source_raw: HashMap<String, String> = read_records(dir.path())
        .into_iter()
        .filter(|r| r["raw"].is_string())
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_owned(),
                r["raw"].as_str().expect("raw").to_owned(),
            )
        })
        .collect();
    let replayed = read_records(target_dir.path());
    assert_eq!(replayed.len(), posted.len(), "each id exactly once");
    let ids: HashSet<&str> = replayed
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), posted.len());
    for record in &replayed {
        let id = record["id"].as_str().expect("id");
        assert_eq!(
            record["raw"].as_str(),
            Some(source_raw[id].as_str()),
            "{id}: raw differs"
        );
    }
    let checkpoint_ids: Vec<String> = std::fs::read_to_string(&checkpoint)
        .expect("checkpoint")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(checkpoint_ids.len(), posted.len());
    assert_eq!(
        checkpoint_ids.iter().collect::<HashSet<_>>().len(),
        posted.len()
    );
    // And the target's archive verifies under the target's secret.
    let out = run(&[
        "verify",
        target_dir.path().to_str().expect("path"),
        "--secret",
        SECRET_B,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "verified"), posted.len() as u64);
}

#[test]
fn unreadable_lines_are_counted_listed_briefly_and_make_exit_code_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("webhooks/year=2026/month=11/day=26");
    std::fs::create_dir_all(&day).expect("mkdir");
    let good = r#"{"v":1,"timestamp":"2026-11-26T10:00:00.000Z","id":"evt_ok","type":"x","object":"event","created":1795687200,"livemode":false,"api_version":null,"account":null,"data":{}}"#;
    let mut junk = format!("{good}\n");
    for i in 0..50 {
        junk.push_str(&format!("not json {i}\n"));
    }
    junk.push_str("{\"torn\":");
    std::fs::write(day.join("1-1-a.ndjson"), junk).expect("write");
    let out = run(&["cat", dir.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(stdout(&out), format!("{good}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let listed = stderr
        .lines()
        .filter(|l| l.starts_with("unreadable: "))
        .count();
    assert_eq!(listed, 21, "{stderr}");
    assert!(
        stderr.contains("1-1-a.ndjson:2: not an envelope record"),
        "{stderr}"
    );
    assert!(stderr.contains("counted, not listed"), "{stderr}");
    assert!(stderr.contains("51 unreadable line(s)"), "{stderr}");
}
