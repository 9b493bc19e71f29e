//! A sealed segment larger than one gzip member (the file sink seals with libdeflate, in members of
//! 1 MiB of input) is one valid gzip file for every reader the README names: `zcat`, Python's
//! `gzip`, DuckDB's `read_json`, and this CLI. The archive is written by the real server.

use crate::common;

use std::process::Command;

use common::*;
use stripe_webhook_testkit::archive::segment_files;

const SECRET: &str = "whsec_multi_member_test";

#[test]
#[ignore = "full tier (./scripts/test): needs zcat, Python and DuckDB from the pinned tools"]
fn a_multi_member_segment_reads_whole_in_zcat_python_duckdb_and_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let server = file_server(&archive, SECRET, &[]);
    // About 3 MiB of records: three gzip members or more in one sealed segment.
    let fixtures = fixtures();
    let mut ids = Vec::new();
    let mut bytes = 0;
    while bytes < 3 * 1024 * 1024 {
        let (_, fixture) = &fixtures[ids.len() % fixtures.len()];
        let id = format!("evt_mm{:010}", ids.len());
        let body = event_body(fixture, &id, false);
        let r = post_signed(&server, SECRET, body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        bytes += body.len() * 2;
        ids.push(id);
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");

    let sealed: Vec<_> = segment_files(&archive)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    let gz = &sealed[0];
    let members = count_members(&std::fs::read(gz).expect("read"));
    assert!(members >= 3, "{members} gzip members");

    // zcat
    let zcat = Command::new("zcat").arg(gz).output().expect("run zcat");
    assert!(zcat.status.success());
    let lines: Vec<&[u8]> = zcat
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), ids.len(), "zcat");

    let python = stripe_webhook_testkit::python();
    // The pinned Python environment's count of the records in `gz`, by `script`.
    let count_with = |script: &str, reader: &str| {
        let out = Command::new(&python)
            .args(["-c", script])
            .arg(gz)
            .output()
            .unwrap_or_else(|e| panic!("run {reader}: {e}"));
        assert!(
            out.status.success(),
            "{reader}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            ids.len().to_string(),
            "{reader}"
        );
    };
    // Python's gzip.
    count_with(
        "import gzip,sys; print(sum(1 for l in gzip.open(sys.argv[1]) if l.strip()))",
        "python gzip",
    );

    // DuckDB's read_json (the README's query shape), from the pinned environment.
    count_with(
        "import duckdb,sys; print(duckdb.sql(\"SELECT count(DISTINCT id) FROM read_json('\" + sys.argv[1] + \"', format='newline_delimited')\").fetchall()[0][0])",
        "duckdb",
    );

    // The CLI.
    let out = run(&["cat", archive.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        ids.len(),
        "stripe-webhook cat"
    );
    assert_eq!(zcat.stdout, out.stdout, "byte for byte the same lines");
}

/// Gzip members in `gz`: each decoded member is followed by the next one's magic bytes.
fn count_members(gz: &[u8]) -> usize {
    let mut rest = gz;
    let mut members = 0;
    while !rest.is_empty() {
        let mut decoder = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut decoder, &mut std::io::sink()).expect("a gzip member");
        let left = decoder.into_inner();
        assert!(left.len() < rest.len());
        rest = left;
        members += 1;
    }
    members
}
