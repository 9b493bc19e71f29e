//! The dead-letter list of one destination: `dead-letters.ndjson` in its state directory, one
//! line per record that was not delivered within FORWARD_MAX_AGE (or could not be sent at all),
//! appended and `fdatasync`ed before the cursor moves past the record.
//!
//! A line is a JSON object: `dead_lettered_at`, `destination`, `id`, `type`, `archived_at`,
//! `reason`, `last_status` (the last HTTP status, or `null`), `last_error`, `attempts`,
//! `first_attempt_at`, `last_attempt_at`, `segment`, `offset`, and last `record`: the archived
//! envelope line itself, verbatim (a JSON object), so the list alone is enough to re-drive.
//!
//! Appends (the forwarder) and rewrites (a re-drive removing what it delivered) take
//! `dead-letters.lock`, so a re-drive from the CLI and a running forwarder never lose a line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cursor::write_atomic;

/// The list's file name in the destination's directory.
pub const DEAD_LETTERS_FILE: &str = "dead-letters.ndjson";
/// How many dead letters re-drives delivered, ever (one number): the destination's forwarder
/// counts `stripe_webhook_forward_deliveries_total{outcome="redriven"}` from it, whichever process
/// re-drove them.
pub const REDRIVEN_FILE: &str = "redriven";
const DEAD_LETTERS_LOCK: &str = "dead-letters.lock";

/// One dead letter, as stored (everything but the record) and read back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    /// When it was dead-lettered (RFC 3339).
    pub dead_lettered_at: String,
    /// The destination id.
    pub destination: String,
    /// The event id.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event was archived (the record's `timestamp`).
    pub archived_at: String,
    /// Why: `max_age` (retried for FORWARD_MAX_AGE), `attempts` (a backfill's `--attempts` all
    /// failed), `no_body` (the record holds no exact body:
    /// an oversize pointer, raw off, a legacy line) or `unreadable` (not an envelope record).
    pub reason: String,
    /// The last HTTP status, if an answer came.
    pub last_status: Option<u16>,
    /// The last failure, in words (no payload, no secret).
    pub last_error: Option<String>,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When the first attempt was made.
    pub first_attempt_at: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<String>,
    /// The segment (`<partition>/<stem>`) and offset the record was read from.
    pub segment: String,
    /// Offset of the record's line in its segment.
    pub offset: u64,
}

/// A dead letter read back, with its record.
#[derive(Debug, Deserialize)]
pub struct StoredDeadLetter {
    /// Everything but the record.
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// The archived envelope line, verbatim.
    pub record: Box<RawValue>,
}

fn lock(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(DEAD_LETTERS_LOCK))?;
    file.lock()?;
    Ok(file)
}

/// The stored line of a dead letter: its members, then `"record":` and the envelope line verbatim
/// (or, for a line that is not JSON, as a JSON string).
pub fn encode(letter: &DeadLetter, record_line: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(letter).unwrap_or_else(|_| b"{}".to_vec());
    out.pop(); // the closing `}`
    out.extend_from_slice(b",\"record\":");
    match std::str::from_utf8(record_line)
        .ok()
        .and_then(|s| serde_json::from_str::<&RawValue>(s).ok())
    {
        Some(raw) if raw.get().starts_with('{') => out.extend_from_slice(raw.get().as_bytes()),
        _ => {
            let text = String::from_utf8_lossy(record_line);
            out.extend_from_slice(serde_json::to_string(&*text).unwrap_or_default().as_bytes());
        }
    }
    out.extend_from_slice(b"}\n");
    out
}

/// Appends one dead letter to `dir`'s list and syncs it.
///
/// # Errors
/// The list cannot be locked, written or synced (the record then stays undelivered, retried).
pub fn append(dir: &Path, letter: &DeadLetter, record_line: &[u8]) -> io::Result<()> {
    let _lock = lock(dir)?;
    let path = dir.join(DEAD_LETTERS_FILE);
    let created = !path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(&encode(letter, record_line))?;
    file.sync_data()?;
    if created {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Every dead letter of `dir`, in the order they were appended; lines that do not parse are
/// returned as errors with their line number, never skipped silently.
///
/// # Errors
/// The list exists but cannot be read.
pub fn list(dir: &Path) -> io::Result<Vec<Result<StoredDeadLetter, String>>> {
    let file = match File::open(dir.join(DEAD_LETTERS_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        out.push(
            serde_json::from_slice::<StoredDeadLetter>(&line)
                .map_err(|e| format!("dead-letter line {}: {e}", i + 1)),
        );
    }
    Ok(out)
}

/// How many dead letters `dir` holds (lines of the list).
pub fn count(dir: &Path) -> u64 {
    let Ok(file) = File::open(dir.join(DEAD_LETTERS_FILE)) else {
        return 0;
    };
    BufReader::new(file)
        .split(b'\n')
        .filter(|l| l.as_ref().is_ok_and(|l| !l.is_empty()))
        .count() as u64
}

/// Removes the dead letters `delivered` names (by event id and dead-letter time), keeping every
/// other line, including those appended since they were listed (atomic), and adds their number to
/// [`REDRIVEN_FILE`].
///
/// # Errors
/// The list cannot be locked, read or rewritten (it is then unchanged).
pub fn remove(dir: &Path, delivered: &[(String, String)]) -> io::Result<usize> {
    let _lock = lock(dir)?;
    let path = dir.join(DEAD_LETTERS_FILE);
    let content = match std::fs::read(&path) {
        Ok(content) => content,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut kept = Vec::with_capacity(content.len());
    let mut removed = 0;
    for line in content.split_inclusive(|b| *b == b'\n') {
        let drop = serde_json::from_slice::<DeadLetter>(line.trim_ascii_end()).is_ok_and(|l| {
            delivered
                .iter()
                .any(|(id, at)| *id == l.id && *at == l.dead_lettered_at)
        });
        if drop {
            removed += 1;
        } else {
            kept.extend_from_slice(line);
        }
    }
    write_atomic(dir, DEAD_LETTERS_FILE, &kept)?;
    if removed > 0 {
        let total = redriven(dir) + removed as u64;
        write_atomic(dir, REDRIVEN_FILE, format!("{total}\n").as_bytes())?;
    }
    Ok(removed)
}

/// How many dead letters re-drives of `dir` delivered, ever (0 when none).
pub fn redriven(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(REDRIVEN_FILE))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str, at: &str) -> DeadLetter {
        DeadLetter {
            dead_lettered_at: at.into(),
            destination: "h-12345678".into(),
            id: id.into(),
            event_type: "charge.succeeded".into(),
            archived_at: "2026-12-06T10:00:00.000Z".into(),
            reason: "max_age".into(),
            last_status: Some(503),
            last_error: None,
            attempts: 4,
            first_attempt_at: None,
            last_attempt_at: None,
            segment: "year=2026/month=12/day=06/1-1-a".into(),
            offset: 0,
        }
    }

    #[test]
    fn dead_letters_keep_the_record_verbatim_and_are_removed_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let record = br#"{"v":1,"id":"evt_1","raw":"{\"id\": \"evt_1\"}"}"#;
        append(dir.path(), &letter("evt_1", "t1"), record).unwrap();
        append(dir.path(), &letter("evt_2", "t2"), b"not json").unwrap();
        append(dir.path(), &letter("evt_1", "t3"), record).unwrap();
        assert_eq!(count(dir.path()), 3);
        let all = list(dir.path()).unwrap();
        let first = all[0].as_ref().unwrap();
        assert_eq!(first.record.get().as_bytes(), record);
        assert_eq!(first.letter.last_status, Some(503));
        assert_eq!(all[1].as_ref().unwrap().record.get(), "\"not json\"");
        assert_eq!(
            remove(dir.path(), &[("evt_1".into(), "t1".into())]).unwrap(),
            1
        );
        let left: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|l| l.unwrap().letter.dead_lettered_at)
            .collect();
        assert_eq!(left, ["t2", "t3"]);
        assert_eq!(redriven(dir.path()), 1);
        remove(dir.path(), &[("evt_1".into(), "t3".into())]).unwrap();
        assert_eq!(redriven(dir.path()), 2);
    }
}
