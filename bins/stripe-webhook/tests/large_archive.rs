//! Reading streams: a 100,000-record archive (~240 MB of NDJSON in gzip segments) goes through
//! `replay --dry-run` (every line read, parsed, filtered, its raw body decoded and verified
//! against its signature, its envelope compared with the body, deduped) and `stats` while the
//! CLI's peak resident memory stays under a fixed bound (the dedupe sets of 100,000 ids
//! included).

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{cli, count, describe, event_body, fixtures, secret};
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_testkit::faults::proc_status_kib;
use stripe_webhook_verify::signature_header;

const RECORDS: usize = 100_000;
/// Four segments of ~58 MB each (uncompressed): reading a whole segment into memory would
/// already break the bound.
const SEGMENTS: usize = 4;
const BOUND_BYTES: u64 = 48 * 1024 * 1024;
/// 2026-11-20T08:00:00.000Z.
const START_MILLIS: i64 = 1_795_651_200_000 - 6 * 86_400_000 + 8 * 3_600_000;

/// Writes `RECORDS` realistic records (bundled pretty-printed events, `customer.created` and a
/// thin `v1.billing.meter.error_report_triggered`, encoded by the real envelope encoder with raw
/// and signature: ~2.4 KB a line on average) into `SEGMENTS` gzip segments over several days.
/// Each record gets its own id by overwriting a fixed-width placeholder in a template line, and
/// its own genuine signature (fixed timestamp, so the header keeps its length) the same way.
fn generate(dir: &Path) -> u64 {
    let fixtures = fixtures();
    let fixture = |ty: &str| {
        fixtures
            .iter()
            .find(|(t, _)| t == ty)
            .map(|(_, body)| body.clone())
            .unwrap_or_else(|| panic!("{ty} fixture"))
    };
    let kinds = [
        fixture("customer.created"),
        fixture("v1.billing.meter.error_report_triggered"),
    ];
    let placeholder = "evt_LARGE_PLACEHOLDER_00000000";
    let secret = secret("whsec_large");
    let mut total = 0;
    for segment in 0..SEGMENTS {
        let at = START_MILLIS + i64::try_from(segment).expect("small") * 43_200_000;
        let body = event_body(&kinds[segment % 2], placeholder, segment % 4 == 0);
        let signed = |body: &[u8]| signature_header(&[&secret], at / 1000, body);
        let header = signed(body.as_bytes());
        let record = encode(
            Bytes::from(body.clone()),
            &header,
            ReceivedAt::from_unix_millis(at),
            &EnvelopeOptions::default(),
        )
        .expect("encode");
        let template = record.line().to_vec();
        let header_at = template
            .windows(header.len())
            .position(|w| w == header.as_bytes())
            .expect("the signature header in the line");
        let mut body = body.into_bytes();
        let body_slot = body
            .windows(placeholder.len())
            .position(|w| w == placeholder.as_bytes())
            .expect("the id in the body");
        let slots: Vec<usize> = template
            .windows(placeholder.len())
            .enumerate()
            .filter(|(_, w)| *w == placeholder.as_bytes())
            .map(|(i, _)| i)
            .collect();
        assert!(
            slots.len() >= 2,
            "the id appears in the envelope and in raw"
        );
        let partition = ReceivedAt::from_unix_millis(at).partition();
        let day_dir = dir.join(format!("webhooks/{partition}"));
        std::fs::create_dir_all(&day_dir).expect("mkdir");
        let file = std::fs::File::create(day_dir.join(format!("{at}-1-{segment:016x}.ndjson.gz")))
            .expect("create segment");
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::fast(),
        );
        let mut line = template.clone();
        for i in 0..RECORDS / SEGMENTS {
            let id = format!("evt_LARGE_{segment:02}_{i:017}");
            assert_eq!(id.len(), placeholder.len());
            for &slot in &slots {
                line[slot..slot + id.len()].copy_from_slice(id.as_bytes());
            }
            body[body_slot..body_slot + id.len()].copy_from_slice(id.as_bytes());
            let header = signed(&body);
            line[header_at..header_at + header.len()].copy_from_slice(header.as_bytes());
            gz.write_all(&line).expect("write");
            total += line.len() as u64;
        }
        gz.finish()
            .and_then(|mut w| w.flush())
            .expect("finish segment");
    }
    total
}

/// Peak resident set (VmHWM) of a running process, polled until it exits.
fn run_measuring(args: &[&str]) -> (std::process::Output, u64, Duration) {
    let started = Instant::now();
    let mut child = cli()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain the pipes on threads so the child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).map(|_| v)
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).map(|_| v)
    });
    let mut peak_kib = 0_u64;
    let status = loop {
        peak_kib = peak_kib.max(proc_status_kib(child.id(), "VmHWM"));
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = std::process::Output {
        status,
        stdout: out_thread.join().expect("join").expect("stdout"),
        stderr: err_thread.join().expect("join").expect("stderr"),
    };
    assert!(peak_kib > 0, "VmHWM was never read");
    (output, peak_kib * 1024, started.elapsed())
}

#[test]
fn a_100k_record_archive_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let bytes = generate(dir.path());
    let generated_in = started.elapsed();
    let archive = dir.path().to_str().expect("path");
    assert!(bytes > 200_000_000, "{bytes} bytes of NDJSON");
    assert!(bytes < 300_000_000, "{bytes} bytes of NDJSON");

    let (out, peak, took) = run_measuring(&[
        "replay",
        archive,
        "--dry-run",
        "--source-secret",
        "whsec_large",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count(&out, "would send"), RECORDS as u64);
    println!(
        "replay --dry-run over {RECORDS} records ({:.0} MB NDJSON, generated in {generated_in:.1?}): \
         peak RSS {:.1} MiB in {took:.1?}",
        bytes as f64 / 1e6,
        peak as f64 / 1_048_576.0
    );
    assert!(
        peak < BOUND_BYTES,
        "peak RSS {peak} bytes is over the {BOUND_BYTES}-byte bound"
    );

    let (out, peak, took) = run_measuring(&["stats", archive, "--json", "--from", "2026-11-20"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stats["records"], RECORDS);
    assert_eq!(stats["distinct_ids"], RECORDS);
    println!(
        "stats over {RECORDS} records: peak RSS {:.1} MiB in {took:.1?}",
        peak as f64 / 1_048_576.0
    );
    assert!(peak < BOUND_BYTES, "stats peak RSS {peak} bytes");

    // `cat | head -1`: the reader going away ends cat early and cleanly.
    let started = Instant::now();
    let mut child = cli()
        .args(["cat", archive])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("read a line");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "cat after its reader left");
    assert!(first.starts_with("{\"v\":1,"), "{first}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
