//! The durable cursor of one destination: how far into the archive every record is finished
//! (delivered, dead-lettered, or not forwarded by FORWARD_TYPES or FORWARD_START).
//!
//! Records land in partitions by their own receipt time and several segments may be open at once
//! (several servers may share one archive), so one (file, offset) is not enough. The cursor is:
//!
//! - `start`: records received before it are never forwarded (FORWARD_START when the cursor was
//!   made; moved by `stripe-webhook forward cursor`);
//! - `done_before`: every partition (day) before it is finished: each of its segments was sealed
//!   and read to its end, and the day ended more than [`DAY_CLOSE_MARGIN`] ago, so no new segment
//!   can appear in it;
//! - `segments`: for each segment of a later partition that was started, the offset (uncompressed
//!   bytes) below which every record is finished but the few listed as `pending` (in flight, or
//!   waiting behind their object), and whether the whole sealed segment is finished.
//!
//! It is written atomically (a temporary file, `fsync`, `rename`, `fsync` of the directory) and
//! only after the deliveries it covers were acknowledged (or their dead letters synced), so a
//! restart re-delivers at most the records after it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stripe_webhook_envelope::{Partition, ReceivedAt};

use crate::segments::SegmentKey;

/// How long after a UTC day ended its partition is closed (once every segment in it is finished):
/// covers the file sink's day-seal grace (2 minutes), a write delayed by a stalled disk, and clock
/// differences between servers sharing the archive.
pub const DAY_CLOSE_MARGIN: Duration = Duration::from_secs(3600);

/// The cursor file's name in the destination's directory.
pub const CURSOR_FILE: &str = "cursor.json";

/// Progress in one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCursor {
    /// Every record before this offset is finished, except those in `pending`.
    pub offset: u64,
    /// The offsets of the records before `offset` that are not finished yet (in flight when the
    /// cursor was written, or waiting behind their object): sent again after a restart. At most
    /// the forwarder's window of them, so the cursor stays small however long one record fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<u64>,
    /// The segment is sealed and every record in it is finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

/// The durable cursor (see the [module](self) documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version, 1.
    pub v: u32,
    /// Records received before this are not forwarded (RFC 3339, milliseconds).
    pub start: String,
    /// Every partition before this one is finished (`year=YYYY/month=MM/day=DD`).
    pub done_before: String,
    /// Segments of `done_before` and later, by `<partition>/<stem>`.
    pub segments: BTreeMap<String, SegmentCursor>,
}

impl Cursor {
    /// A new cursor starting at `start`: partitions before its day are finished.
    pub fn starting_at(start: ReceivedAt) -> Cursor {
        Cursor {
            v: 1,
            start: start.rfc3339_millis(),
            done_before: start.partition().to_string(),
            segments: BTreeMap::new(),
        }
    }

    /// `start` as a time.
    pub fn start_at(&self) -> ReceivedAt {
        ReceivedAt::parse_rfc3339_millis(&self.start).unwrap_or(ReceivedAt::from_unix_millis(0))
    }

    /// `done_before` as a partition.
    pub fn done_before(&self) -> Partition {
        self.done_before.parse().unwrap_or(Partition {
            year: 1970,
            month: 1,
            day: 1,
        })
    }

    /// The progress recorded for a segment (offset 0 when none).
    pub fn segment(&self, key: &SegmentKey) -> SegmentCursor {
        self.segments
            .get(&key.to_string())
            .cloned()
            .unwrap_or_default()
    }

    /// Parses a cursor file's content.
    ///
    /// # Errors
    /// Not a cursor of version 1 (the message says what is wrong).
    pub fn parse(bytes: &[u8]) -> Result<Cursor, String> {
        let cursor: Cursor = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if cursor.v != 1 {
            return Err(format!("cursor version {} (this build reads 1)", cursor.v));
        }
        if ReceivedAt::parse_rfc3339_millis(&cursor.start).is_none() {
            return Err("`start` is not a time of the form YYYY-MM-DDTHH:MM:SS.mmmZ".into());
        }
        cursor
            .done_before
            .parse::<Partition>()
            .map_err(|e| format!("`done_before`: {e}"))?;
        for key in cursor.segments.keys() {
            key.parse::<SegmentKey>()?;
        }
        Ok(cursor)
    }

    /// Reads the cursor of the destination directory `dir`; `None` if it has none yet.
    ///
    /// # Errors
    /// An unreadable or malformed cursor file (never replaced silently: that could skip or
    /// repeat a whole archive).
    pub fn load(dir: &Path) -> Result<Option<Cursor>, String> {
        let path = dir.join(CURSOR_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Cursor::parse(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the cursor to `dir` atomically and durably.
    ///
    /// # Errors
    /// Any step of the write failed; the previous cursor is then still in place.
    pub fn store(&self, dir: &Path) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomic(dir, CURSOR_FILE, &bytes)
    }

    /// Closes every partition from `done_before` on that is finished: the day ended more than
    /// [`DAY_CLOSE_MARGIN`] before `now`, and every segment listed in it (`listed`, the segments
    /// the archive holds in that partition) is done. Stops at the first partition that is not.
    pub fn close_days(
        &mut self,
        now: ReceivedAt,
        listed: &BTreeMap<Partition, Vec<SegmentKey>>,
    ) -> bool {
        let margin = i64::try_from(DAY_CLOSE_MARGIN.as_millis()).unwrap_or(i64::MAX);
        let closable_before = ReceivedAt::from_unix_millis(now.unix_millis() - margin).partition();
        let mut changed = false;
        let mut day = self.done_before();
        while day < closable_before {
            let finished = listed
                .get(&day)
                .is_none_or(|keys| keys.iter().all(|k| self.segment(k).done));
            if !finished {
                break;
            }
            day = next_day(day);
            let prefix = day.to_string();
            self.segments
                .retain(|key, _| key.as_str() >= prefix.as_str());
            self.done_before = prefix;
            changed = true;
        }
        changed
    }
}

/// The day after `day`.
pub fn next_day(day: Partition) -> Partition {
    let next = time::Month::try_from(day.month)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(day.year, m, day.day).ok())
        .and_then(time::Date::next_day);
    match next {
        Some(d) => Partition {
            year: d.year(),
            month: u8::from(d.month()),
            day: d.day(),
        },
        None => day,
    }
}

/// Writes `name` in `dir` atomically: `name.tmp` written and synced, renamed over `name`, then the
/// directory synced (so the rename itself is durable).
///
/// # Errors
/// Any failed step; `name` is then unchanged (or, after a failed directory sync, may be either).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// The lock file's name in the destination's directory.
pub const LOCK_FILE: &str = "lock";

/// The destination's state directory, `$ARCHIVE_DIR/forward/<destination-id>/`, created (and
/// synced into its parent) if needed.
///
/// # Errors
/// When it cannot be created.
pub fn state_dir(archive_dir: &Path, id: &str) -> io::Result<PathBuf> {
    let forward = archive_dir.join("forward");
    let dir = forward.join(id);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        File::open(&forward)?.sync_all()?;
        File::open(archive_dir)?.sync_all()?;
    }
    Ok(dir)
}

/// The exclusive lock of one destination, held while a forwarder (or a cursor move) works on it.
#[derive(Debug)]
pub struct DestinationLock {
    _file: File,
}

impl DestinationLock {
    /// Takes the lock without waiting; `Ok(None)` while another process (or handle) holds it. The
    /// holder's pid is written into the file, for the message others show.
    ///
    /// # Errors
    /// The lock file cannot be opened or locked.
    pub fn try_take(dir: &Path, holder: &str) -> io::Result<Option<DestinationLock>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        file.set_len(0)?;
        file.write_all(format!("{holder} pid {}\n", std::process::id()).as_bytes())?;
        Ok(Some(DestinationLock { _file: file }))
    }

    /// Who holds the lock of `dir`, as written by its holder; `None` when nobody does.
    pub fn holder(dir: &Path) -> Option<String> {
        let file = File::open(dir.join(LOCK_FILE)).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => Some(
                std::fs::read_to_string(dir.join(LOCK_FILE))
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SegmentKey {
        s.parse().unwrap()
    }

    #[test]
    fn a_cursor_round_trips_and_refuses_what_it_does_not_know() {
        let mut c = Cursor::starting_at(
            ReceivedAt::parse_rfc3339_millis("2026-12-05T10:00:00.000Z").unwrap(),
        );
        assert_eq!(c.done_before, "year=2026/month=12/day=05");
        c.segments.insert(
            "year=2026/month=12/day=05/1-2-ab".into(),
            SegmentCursor {
                offset: 42,
                pending: vec![7, 30],
                done: false,
            },
        );
        c.segments.insert(
            "year=2026/month=12/day=06/3-2-cd".into(),
            SegmentCursor {
                offset: 7,
                pending: Vec::new(),
                done: true,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        c.store(dir.path()).unwrap();
        assert!(!dir.path().join("cursor.json.tmp").exists());
        let back = Cursor::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, c);
        assert_eq!(
            back.segment(&key("year=2026/month=12/day=05/1-2-ab"))
                .offset,
            42
        );
        assert_eq!(
            back.segment(&key("year=2026/month=12/day=07/9-9-ff"))
                .offset,
            0
        );
        assert_eq!(Cursor::load(&dir.path().join("none")).unwrap(), None);
        assert!(Cursor::parse(br#"{"v":2,"start":"","done_before":"","segments":{}}"#).is_err());
        let bad = br#"{"v":1,"start":"2026-12-05T10:00:00.000Z","done_before":"year=2026/month=12/day=05","segments":{"x":{"offset":1}}}"#;
        assert!(Cursor::parse(bad).is_err());
        std::fs::write(dir.path().join(CURSOR_FILE), b"{garbage").unwrap();
        assert!(Cursor::load(dir.path()).is_err(), "never replaced silently");
    }

    #[test]
    fn days_close_only_when_finished_and_long_over() {
        let start = ReceivedAt::parse_rfc3339_millis("2026-12-04T23:00:00.000Z").unwrap();
        let mut c = Cursor::starting_at(start);
        let d4 = key("year=2026/month=12/day=04/1-1-a");
        let d5 = key("year=2026/month=12/day=05/2-1-b");
        let mut listed = BTreeMap::new();
        listed.insert(d4.partition, vec![d4.clone()]);
        listed.insert(d5.partition, vec![d5.clone()]);
        c.segments.insert(
            d4.to_string(),
            SegmentCursor {
                offset: 9,
                pending: Vec::new(),
                done: true,
            },
        );
        c.segments.insert(d5.to_string(), SegmentCursor::default());
        // 30 minutes into the 5th: the 4th is not closed yet (margin).
        let early = ReceivedAt::parse_rfc3339_millis("2026-12-05T00:30:00.000Z").unwrap();
        assert!(!c.close_days(early, &listed));
        // Two days later: the 4th closes, the 5th has an unfinished segment.
        let later = ReceivedAt::parse_rfc3339_millis("2026-12-07T12:00:00.000Z").unwrap();
        assert!(c.close_days(later, &listed));
        assert_eq!(c.done_before, "year=2026/month=12/day=05");
        assert!(!c.segments.contains_key(&d4.to_string()));
        assert!(c.segments.contains_key(&d5.to_string()));
        c.segments.get_mut(&d5.to_string()).unwrap().done = true;
        assert!(c.close_days(later, &listed));
        // The 6th has no segment at all and is over: closed too; the 7th is today.
        assert_eq!(c.done_before, "year=2026/month=12/day=07");
        assert!(c.segments.is_empty());
        let feb = "year=2028/month=02/day=28".parse().unwrap();
        assert_eq!(next_day(feb).to_string(), "year=2028/month=02/day=29");
    }

    #[test]
    fn one_lock_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DestinationLock::try_take(dir.path(), "forwarder").unwrap();
        assert!(lock.is_some());
        assert!(
            DestinationLock::try_take(dir.path(), "other")
                .unwrap()
                .is_none()
        );
        let holder = DestinationLock::holder(dir.path()).unwrap();
        assert!(holder.starts_with("forwarder pid "), "{holder}");
        drop(lock);
        assert_eq!(DestinationLock::holder(dir.path()), None);
        assert!(
            DestinationLock::try_take(dir.path(), "other")
                .unwrap()
                .is_some()
        );
    }
}
