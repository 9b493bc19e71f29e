//! Start-up recovery: seals segments left unsealed by a process that is gone.

use std::collections::BTreeMap;

use libdeflater::CompressionLvl;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::segment::{self, Role, Segment};
use crate::{dirs, io_error};
use stripe_webhook_sink::SinkError;

/// What [`FileSink::open`](crate::FileSink::open) found and did in the archive directory.
///
/// An orphaned segment is an `.ndjson` whose lock nobody holds: its writer crashed or was killed.
/// Recovery cuts off its torn tail (bytes after the last `\n`, written by a crash mid-write and
/// never acknowledged), makes the cut durable, and seals it. Segments locked by a live writer (this
/// or another process sharing the directory) are never touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// One entry per orphaned segment that was handled.
    pub segments: Vec<RecoveredSegment>,
    /// Unsealed segments left alone because a live writer holds their lock.
    pub live_segments_skipped: usize,
    /// Stale files removed: half-created segments (`.ndjson.creating`) and interrupted gzip output
    /// (`.ndjson.gz.tmp`).
    pub stale_files_removed: usize,
}

/// One orphaned segment and what recovery did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredSegment {
    /// The segment's `.ndjson` path.
    pub path: PathBuf,
    /// Its length as found.
    pub original_len: u64,
    /// Its length after cutting the torn tail: whole lines only.
    pub kept_len: u64,
    /// What happened to it.
    pub outcome: RecoveryOutcome,
}

impl RecoveredSegment {
    /// Bytes cut off the end (a torn, never acknowledged write).
    pub fn bytes_cut(&self) -> u64 {
        self.original_len - self.kept_len
    }
}

/// The fate of an orphaned segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// Sealed (to `.ndjson.gz`, or `.sealed.ndjson` without compression).
    Sealed,
    /// It held no whole line and was removed.
    Removed,
    /// A complete `.ndjson.gz` already existed (a crash after sealing); the `.ndjson` was removed.
    AlreadySealed,
    /// Recovery failed (the message says why); the segment is left in place for the next start.
    Failed(String),
}

impl RecoveryReport {
    /// How many orphaned segments were handled.
    pub fn segments_recovered(&self) -> usize {
        self.segments.len()
    }

    /// Total torn bytes cut.
    pub fn bytes_cut(&self) -> u64 {
        self.segments.iter().map(RecoveredSegment::bytes_cut).sum()
    }

    /// Logs a summary at `info` (or `warn` when bytes were cut or a segment failed).
    pub fn log(&self) {
        let failed = self
            .segments
            .iter()
            .filter(|s| matches!(s.outcome, RecoveryOutcome::Failed(_)))
            .count();
        if self.bytes_cut() > 0 || failed > 0 {
            tracing::warn!(
                segments = self.segments_recovered(),
                bytes_cut = self.bytes_cut(),
                failed,
                live_skipped = self.live_segments_skipped,
                "file sink recovered orphaned segments"
            );
        } else {
            tracing::info!(
                segments = self.segments_recovered(),
                live_skipped = self.live_segments_skipped,
                stale_removed = self.stale_files_removed,
                "file sink recovery done"
            );
        }
    }
}

/// Recovers every orphaned segment under `root` (the `<dir>/webhooks` tree).
pub(crate) fn recover(
    root: &Path,
    gzip: Option<CompressionLvl>,
) -> Result<RecoveryReport, SinkError> {
    let mut found: BTreeMap<Segment, Vec<Role>> = BTreeMap::new();
    collect(root, 0, &mut found)
        .map_err(|e| io_error(&format!("listing {}", root.display()), &e))?;
    let mut report = RecoveryReport::default();
    for (segment, roles) in found {
        if roles.contains(&Role::Creating) {
            remove_if_orphaned(&segment.path(Role::Creating), &mut report);
        }
        if roles.contains(&Role::Open) {
            recover_open(&segment, gzip, &mut report);
        }
    }
    Ok(report)
}

/// Collects segment files down the `year=/month=/day=` tree.
fn collect(dir: &Path, depth: usize, found: &mut BTreeMap<Segment, Vec<Role>>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if depth < 3 {
                collect(&path, depth + 1, found)?;
            }
        } else if let Some((segment, role)) = Segment::parse(&path) {
            found.entry(segment).or_default().push(role);
        }
    }
    Ok(())
}

/// Opens `path` and takes its lock; `None` if it is gone or a live writer holds it.
fn lock_orphan(path: &Path, report: &mut RecoveryReport) -> io::Result<Option<File>> {
    let file = match segment::open_existing(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !segment::try_lock(&file)? {
        report.live_segments_skipped += 1;
        return Ok(None);
    }
    // Its owner may have sealed and removed it between our open and our lock.
    if !same_file(&file, path)? {
        return Ok(None);
    }
    Ok(Some(file))
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(held.dev() == named.dev() && held.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> io::Result<bool> {
    Ok(path.exists())
}

fn remove_if_orphaned(path: &Path, report: &mut RecoveryReport) {
    let result = lock_orphan(path, report).and_then(|file| match file {
        Some(_lock) => remove_stale(path, report),
        None => Ok(()),
    });
    if let Err(error) = result {
        tracing::warn!(file = %path.display(), %error, "could not remove a stale segment file");
    }
}

fn remove_stale(path: &Path, report: &mut RecoveryReport) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            report.stale_files_removed += 1;
            tracing::info!(file = %path.display(), "removed a stale segment file");
            segment::sync_dir(path.parent().unwrap_or(Path::new(".")))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn recover_open(segment: &Segment, gzip: Option<CompressionLvl>, report: &mut RecoveryReport) {
    let path = segment.open_path();
    let mut entry = RecoveredSegment {
        path: path.clone(),
        original_len: 0,
        kept_len: 0,
        outcome: RecoveryOutcome::Failed(String::new()),
    };
    match recover_locked(segment, gzip, &mut entry, report) {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::error!(segment = %path.display(), %error, "could not recover an orphaned segment");
            entry.outcome = RecoveryOutcome::Failed(error.to_string());
        }
    }
    report.segments.push(entry);
}

/// Recovers one segment; `Ok(false)` if it is not an orphan after all.
fn recover_locked(
    segment: &Segment,
    gzip: Option<CompressionLvl>,
    entry: &mut RecoveredSegment,
    report: &mut RecoveryReport,
) -> io::Result<bool> {
    let Some(file) = lock_orphan(&entry.path, report)? else {
        return Ok(false);
    };
    entry.original_len = file.metadata()?.len();
    entry.kept_len = entry.original_len;
    // We hold the lock, so no live sealer is writing this temporary file.
    let tmp = segment.path(Role::GzTmp);
    if tmp.exists() {
        remove_stale(&tmp, report)?;
    }
    if segment.path(Role::Gz).exists() {
        // A `.gz` only ever appears complete (renamed after fsync): the crash came after sealing.
        // Its name may not be durable (the crashed process may have died, or had its directory
        // sync fail, right after the rename): make it again and sync before the `.ndjson` goes.
        let failed_before = dirs::failed_syncs(segment.dir());
        segment::remake_gz_name(segment)?;
        dirs::sync_entries(segment.dir(), failed_before, segment::sync_dir)?;
        fs::remove_file(&entry.path)?;
        segment::sync_dir(segment.dir())?;
        entry.outcome = RecoveryOutcome::AlreadySealed;
        return Ok(true);
    }
    entry.kept_len = segment::whole_lines_len(&file)?;
    if entry.bytes_cut() > 0 {
        tracing::warn!(
            segment = %entry.path.display(),
            bytes_cut = entry.bytes_cut(),
            kept = entry.kept_len,
            "cut a torn, never acknowledged tail off an orphaned segment"
        );
        file.set_len(entry.kept_len)?;
        file.sync_data()?;
    }
    entry.outcome = match segment::seal(segment, Some(&file), entry.kept_len, gzip)? {
        segment::Sealed::Sealed => RecoveryOutcome::Sealed,
        segment::Sealed::Empty => RecoveryOutcome::Removed,
    };
    Ok(true)
}
