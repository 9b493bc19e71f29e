//! Reads a local archive (the file sink's layout) back for assertions.

use std::io::Read;
use std::path::{Path, PathBuf};

use stripe_webhook_envelope::layout::{self, FileClass};

/// Every segment file under `<dir>/webhooks/` that a reader reads, in the layout's order
/// ([`layout::list_archive`]): open `.ndjson` and sealed `.ndjson.gz` or `.sealed.ndjson`, without
/// an open segment whose `.ndjson.gz` exists. Empty when there is no `webhooks/` yet.
///
/// # Panics
/// If the archive cannot be listed.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let root = layout::archive_root(dir);
    if !root.exists() {
        return Vec::new();
    }
    layout::list_archive(&root)
        .unwrap_or_else(|e| panic!("list {}: {e}", root.display()))
        .into_iter()
        .filter(|file| matches!(file.class, FileClass::Sealed | FileClass::Open))
        .map(|file| file.path)
        .collect()
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
