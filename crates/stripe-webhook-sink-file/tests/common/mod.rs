//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, Record, encode};

/// A record for event `id`, received at `received_ms`.
pub fn record(id: &str, received_ms: i64) -> Record {
    let body = format!(r#"{{"id":"{id}","type":"x.y","object":"event","data":{{}}}}"#);
    encode(
        Bytes::from(body),
        "t=1,v1=00",
        ReceivedAt::from_unix_millis(received_ms),
        &EnvelopeOptions::default(),
    )
    .expect("a minimal valid body encodes")
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, suffix, out);
            } else if path.to_str().unwrap().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, suffix, &mut out);
    out.sort();
    out
}

/// Open (unsealed) segments: `.ndjson` but not `.sealed.ndjson`.
pub fn open_segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".ndjson")
        .into_iter()
        .filter(|p| !p.to_str().unwrap().ends_with(".sealed.ndjson"))
        .collect()
}

/// The decompressed content of a gzip file (fails on an invalid or truncated stream).
pub fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every line in every sealed `.ndjson.gz` under `dir`, sorted.
pub fn sealed_lines(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = files(dir, ".ndjson.gz")
        .iter()
        .flat_map(|p| {
            let text = String::from_utf8(gunzip(p)).unwrap();
            assert!(text.ends_with('\n'), "{} ends mid-line", p.display());
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// The lines of `records`, without their newlines, sorted.
pub fn lines_of(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| std::str::from_utf8(r.line()).unwrap().trim_end().to_owned())
        .collect();
    lines.sort();
    lines
}

/// Waits (up to 10 s) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
