//! Reads a local archive (the file sink's layout) back for assertions.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Every segment file under `<dir>/webhooks/`, sorted: open `.ndjson` and sealed `.ndjson.gz`.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".ndjson") || n.ends_with(".ndjson.gz"))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("webhooks"), &mut out);
    out.sort();
    out
}

/// The content of one segment, decompressed if sealed.
///
/// # Panics
/// If the file cannot be read or is not valid gzip.
pub fn read_segment(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("gunzip {}: {e}", path.display()));
        out
    } else {
        raw
    }
}

/// Every record line in the archive (without the trailing `\n`), parsed as JSON.
///
/// # Panics
/// If a segment holds a line that is not JSON or a torn last line (no final `\n`): the archive must
/// never serve either.
pub fn read_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for path in segment_files(dir) {
        let content = read_segment(&path);
        if content.is_empty() {
            continue;
        }
        assert!(
            content.ends_with(b"\n"),
            "{}: last line is torn (no trailing newline)",
            path.display()
        );
        for line in content[..content.len() - 1].split(|b| *b == b'\n') {
            let value: serde_json::Value = serde_json::from_slice(line)
                .unwrap_or_else(|e| panic!("{}: a line is not JSON ({e})", path.display()));
            records.push(value);
        }
    }
    records
}
