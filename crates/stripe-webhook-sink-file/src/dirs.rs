//! Durable directory entries: a record is acknowledged only under directory names that this
//! process has seen synced.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::segment::sync_dir;

/// Failed syncs per directory in this process (every thread: the writer's and the sealer's).
static FAILED_SYNCS: Mutex<BTreeMap<PathBuf, u64>> = Mutex::new(BTreeMap::new());

/// How many syncs of `dir` have failed in this process so far. Read it before making an entry in
/// `dir` and hand it to [`sync_entries`].
pub(crate) fn failed_syncs(dir: &Path) -> u64 {
    let failed = FAILED_SYNCS.lock().unwrap_or_else(PoisonError::into_inner);
    failed.get(dir).copied().unwrap_or(0)
}

/// Records that a sync of `dir` failed ([`sync_dir`] calls it).
pub(crate) fn note_failed_sync(dir: &Path) {
    let mut failed = FAILED_SYNCS.lock().unwrap_or_else(PoisonError::into_inner);
    *failed.entry(dir.to_path_buf()).or_default() += 1;
}

/// Syncs `dir` to make the entries made in it durable, where `failed_before` is
/// [`failed_syncs`]`(dir)` read before those entries were made.
///
/// A failed `fsync` may drop the directory's dirty entries and mark them clean (the directory form
/// of "fsyncgate"), so a later sync that succeeds proves nothing about entries made before the
/// failure. This sync therefore only counts if no sync of `dir` failed, on any thread, since the
/// entries were made; otherwise it fails too, and the caller makes its entry again (a new segment
/// name, a directory renamed aside and back) before the next sync.
///
/// # Errors
/// The sync's own error, or [`io::ErrorKind::Other`] when another sync of `dir` failed meanwhile.
pub(crate) fn sync_entries(
    dir: &Path,
    failed_before: u64,
    sync: fn(&Path) -> io::Result<()>,
) -> io::Result<()> {
    sync(dir)?;
    if failed_syncs(dir) != failed_before {
        return Err(io::Error::other(format!(
            "a sync of {} failed after its entry was made: the entry is made again before it is \
             trusted",
            dir.display()
        )));
    }
    Ok(())
}

/// The marker in the name of a directory moved aside while its entry is made again.
const ASIDE: &str = ".remake-";

/// Makes the entry of the directory `dir` in its parent again: renames it aside (to a dot name in
/// the same parent) and back, so the parent holds a fresh operation on that very entry for the
/// next sync to make durable. A crash in between leaves the dot name, which
/// [`restore_aside`] renames back at the next start.
fn remake_entry(dir: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(io::Error::other(format!(
            "{} has no parent entry to make again",
            dir.display()
        )));
    };
    let aside = parent.join(format!(
        ".{}{ASIDE}{}-{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    ));
    fs::rename(dir, &aside)?;
    fs::rename(&aside, dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "moving {} back to {} after making its entry again: {e}",
                aside.display(),
                dir.display()
            ),
        )
    })
}

/// Renames back every directory of the archive that a process left aside while making its entry
/// again ([`remake_entry`]) and did not move back (it crashed in between): `<base>/<prefix>`
/// itself (`ARCHIVE_DIR/webhooks`) and the `year=/month=/day=` directories under it. Nothing else
/// in `base` is looked at. Returns how many it restored.
///
/// # Errors
/// A directory that cannot be listed or renamed back.
pub(crate) fn restore_aside(base: &Path, prefix: &str) -> io::Result<usize> {
    fn walk(dir: &Path, depth: usize, prefix: &str, restored: &mut usize) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let mut path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let original = name
                .strip_prefix('.')
                .and_then(|rest| rest.split_once(ASIDE))
                .map(|(original, _)| original.to_owned());
            // In `ARCHIVE_DIR` only the archive's own directory is ours.
            if depth == 0 && original.as_deref().unwrap_or(&name) != prefix {
                continue;
            }
            if let Some(original) = original.map(|original| dir.join(original)) {
                if original.try_exists()? {
                    tracing::error!(
                        aside = %path.display(),
                        dir = %original.display(),
                        "an archive directory left aside by a crash cannot be moved back: its \
                         name exists again; move its files into it by hand"
                    );
                    continue;
                }
                fs::rename(&path, &original)?;
                sync_dir(dir)?;
                tracing::warn!(dir = %original.display(), "moved back an archive directory left aside by a crash");
                *restored += 1;
                path = original;
            }
            if depth < 3 {
                walk(&path, depth + 1, prefix, restored)?;
            }
        }
        Ok(())
    }
    let mut restored = 0;
    walk(base, 0, prefix, &mut restored)?;
    Ok(restored)
}

/// Which directory a path names now: device, inode and birth time (where the file system keeps
/// one), so a directory removed and created anew under the same name, possibly with the same
/// inode number, is not taken for the one that was synced.
type Identity = (u64, u64, u128);

/// The directory chains under `ARCHIVE_DIR` whose entries this process has made durable.
///
/// A directory's name survives a crash once its parent has been fsynced, without error, while the
/// name existed. [`DurableDirs::create`] makes that true for every directory from a partition
/// directory up to `ARCHIVE_DIR` itself (whose entry lives in `ARCHIVE_DIR`'s parent) and
/// remembers it, so each entry costs one `fsync` per process, not one per segment.
///
/// It never assumes a directory that merely exists is durable: whoever created it may not have
/// synced it yet (another process at midnight), may have failed to (a sync that returned `EIO`),
/// or may have been killed in between. Nor does it trust a sync that follows a failed one: once a
/// sync of a parent has failed in this process, an entry in it that is not yet known durable is
/// made again ([`remake_entry`]) before the parent is synced for it ([`sync_entries`]).
#[derive(Debug)]
pub(crate) struct DurableDirs {
    /// `ARCHIVE_DIR`.
    base: PathBuf,
    /// `ARCHIVE_DIR` existed before this process opened the sink (so it is the operator's).
    base_existed: bool,
    /// Directories whose own entry this process synced successfully, with the identity they had.
    durable: HashMap<PathBuf, Identity>,
    /// Syncs one directory (`sync_dir`; replaced by unit tests to inject failures).
    sync: fn(&Path) -> io::Result<()>,
}

impl DurableDirs {
    /// Nothing known durable yet, for the archive directory `base` (`ARCHIVE_DIR`).
    pub(crate) fn new(base: &Path) -> Self {
        Self {
            base: base.to_path_buf(),
            base_existed: base.is_dir(),
            durable: HashMap::new(),
            sync: sync_dir,
        }
    }

    /// Creates `dir` (`ARCHIVE_DIR` or a directory under it) and any missing parents, then syncs
    /// the parent of every directory from `dir` up to and including `ARCHIVE_DIR` whose entry this
    /// process has not synced successfully before. Returns how many directories it synced.
    ///
    /// # Errors
    /// The first creation or sync that failed; the chain is then not durable, and the next call
    /// makes the entries of that parent again and syncs what is still missing.
    pub(crate) fn create(&mut self, dir: &Path) -> io::Result<u64> {
        debug_assert!(
            dir.starts_with(&self.base),
            "{dir:?} is outside the archive"
        );
        fs::create_dir_all(dir)?;
        let mut synced = 0;
        for current in dir.ancestors() {
            let identity = identity(current)?;
            if self.durable.get(current) != Some(&identity) {
                if let Some(parent) = self.parent_to_sync(current)? {
                    let failed_before = failed_syncs(&parent);
                    if failed_before > 0 {
                        if current == self.base {
                            return Err(io::Error::other(format!(
                                "a sync of {} (which holds the archive directory's entry) failed \
                                 earlier in this process; the archive directory is not renamed to \
                                 make its entry again: restart the server",
                                parent.display()
                            )));
                        }
                        remake_entry(current)?;
                    }
                    sync_entries(&parent, failed_before, self.sync).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("syncing directory {}: {e}", parent.display()),
                        )
                    })?;
                    synced += 1;
                }
                self.durable.insert(current.to_path_buf(), identity);
            }
            if current == self.base {
                break;
            }
        }
        Ok(synced)
    }

    /// The directory holding `dir`'s entry. For `ARCHIVE_DIR` that is its real parent (a relative
    /// or `.`-ending path has no lexical one); `None` for `/`, or when the parent of an
    /// `ARCHIVE_DIR` that existed before the sink opened may not even be opened (then its entry is
    /// the operator's to keep, and this is logged).
    fn parent_to_sync(&self, dir: &Path) -> io::Result<Option<PathBuf>> {
        if dir != self.base {
            return Ok(dir.parent().map(Path::to_path_buf));
        }
        let Some(parent) = fs::canonicalize(dir)?.parent().map(Path::to_path_buf) else {
            return Ok(None);
        };
        if self.base_existed
            && let Err(e) = fs::File::open(&parent)
            && e.kind() == io::ErrorKind::PermissionDenied
        {
            tracing::warn!(
                dir = %parent.display(),
                "cannot open the directory holding the archive directory to sync it (permission \
                 denied); the archive directory existed already, so its own entry is left to the \
                 operator"
            );
            return Ok(None);
        }
        Ok(Some(parent))
    }
}

#[cfg(unix)]
fn identity(dir: &Path) -> io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir)?;
    Ok((meta.dev(), meta.ino(), birth_nanos(&meta)))
}

#[cfg(not(unix))]
fn identity(dir: &Path) -> io::Result<Identity> {
    fs::metadata(dir).map(|meta| (0, 0, birth_nanos(&meta)))
}

/// The birth time in nanoseconds since the epoch; 0 where the file system records none.
fn birth_nanos(meta: &fs::Metadata) -> u128 {
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// Directories synced by `recording_sync`, and how many more syncs fail.
        static SYNCED: RefCell<(Vec<PathBuf>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }

    fn recording_sync(dir: &Path) -> io::Result<()> {
        SYNCED.with(|s| {
            let mut s = s.borrow_mut();
            if s.1 > 0 {
                s.1 -= 1;
                note_failed_sync(dir);
                return Err(io::Error::other("injected EIO"));
            }
            s.0.push(dir.to_path_buf());
            Ok(())
        })
    }

    fn synced() -> Vec<PathBuf> {
        SYNCED.with(|s| std::mem::take(&mut s.borrow_mut().0))
    }

    fn fail_next(n: usize) {
        SYNCED.with(|s| s.borrow_mut().1 = n);
    }

    fn dirs(base: &Path) -> DurableDirs {
        DurableDirs {
            sync: recording_sync,
            ..DurableDirs::new(base)
        }
    }

    #[test]
    fn existing_directories_are_synced_once_and_new_siblings_again() {
        let tmp = tempfile::tempdir().unwrap();
        let tmp = fs::canonicalize(tmp.path()).unwrap();
        let base = tmp.join("archive");
        let day = base.join("webhooks/year=2027/month=01/day=01");
        // Created by someone else (a crashed process): existing is not durable.
        fs::create_dir_all(&day).unwrap();
        let mut dirs = dirs(&base);
        assert_eq!(dirs.create(&day).unwrap(), 5);
        let month = day.parent().unwrap();
        let year = month.parent().unwrap();
        let webhooks = year.parent().unwrap();
        assert_eq!(
            synced(),
            [month, year, webhooks, base.as_path(), tmp.as_path()]
        );
        // Known durable now: nothing to sync for the same chain.
        assert_eq!(dirs.create(&day).unwrap(), 0);
        // A new day needs only its month synced.
        assert_eq!(dirs.create(&month.join("day=02")).unwrap(), 1);
        assert_eq!(synced(), [month]);
        // A directory removed and created anew is not the one that was synced.
        fs::remove_dir(month.join("day=02")).unwrap();
        fs::remove_dir(&day).unwrap();
        // (Another directory takes the freed inode number, as would happen on a busy disk.)
        fs::create_dir(tmp.join("elsewhere")).unwrap();
        fs::create_dir(&day).unwrap();
        assert_eq!(dirs.create(&day).unwrap(), 1);
        assert_eq!(synced(), [month]);
    }

    #[test]
    fn after_a_failed_sync_the_entry_is_made_again_before_the_next_sync_is_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("archive");
        let day = base.join("webhooks/year=2027/month=01/day=01");
        let month = day.parent().unwrap().to_path_buf();
        let mut dirs = dirs(&base);
        fail_next(1); // the sync of month=01 (for day=01's entry)
        let error = dirs.create(&day).unwrap_err();
        assert!(error.to_string().contains("month=01"), "{error}");
        assert!(synced().is_empty());
        assert_eq!(failed_syncs(&month), 1);
        let inode = identity(&day).unwrap();
        let changed = fs::metadata(&month).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5)); // a distinct mtime
        // The directories exist now; the next call makes day=01's entry again (renamed aside and
        // back: the same directory, a new operation in month=01), then syncs the whole chain.
        assert_eq!(dirs.create(&day).unwrap(), 5);
        assert_eq!(synced()[0], month);
        assert_eq!(identity(&day).unwrap(), inode, "the same directory");
        assert!(
            fs::metadata(&month).unwrap().modified().unwrap() > changed,
            "no new operation on day=01's entry before the sync that must prove it"
        );
        assert_eq!(
            fs::read_dir(&month).unwrap().count(),
            1,
            "nothing left aside"
        );
        // A sync that succeeds while another sync of the same directory fails meanwhile proves
        // nothing either.
        let before = failed_syncs(&month);
        note_failed_sync(&month);
        let error = sync_entries(&month, before, recording_sync).unwrap_err();
        assert!(error.to_string().contains("made again"), "{error}");
    }

    #[test]
    fn a_directory_left_aside_by_a_crash_is_moved_back() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        // The archive's own directory left aside, and a day directory inside it.
        let webhooks_aside = base.join(format!(".webhooks{ASIDE}42-0000000000000001"));
        let month = webhooks_aside.join("year=2027/month=01");
        let day_aside = month.join(format!(".day=01{ASIDE}42-00000000000000ff"));
        fs::create_dir_all(&day_aside).unwrap();
        fs::write(day_aside.join("1-42-00.ndjson.gz"), b"x").unwrap();
        // Not the archive's: left alone.
        let other = base.join(format!(".other{ASIDE}42-0000000000000002"));
        fs::create_dir(&other).unwrap();
        assert_eq!(restore_aside(base, "webhooks").unwrap(), 2);
        assert!(
            base.join("webhooks/year=2027/month=01/day=01/1-42-00.ndjson.gz")
                .exists()
        );
        assert!(!webhooks_aside.exists());
        assert!(other.exists());
        assert_eq!(restore_aside(base, "webhooks").unwrap(), 0);
    }

    #[test]
    fn a_relative_archive_directory_syncs_its_real_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let inside = tmp.path().join("inside");
        fs::create_dir(&inside).unwrap();
        // `<tmp>/inside/..` lexically has the parent `<tmp>/inside`; its entry is in `<tmp>`'s parent.
        let base = inside.join("..");
        let mut dirs = dirs(&base);
        dirs.create(&base.join("webhooks")).unwrap();
        let real = fs::canonicalize(tmp.path()).unwrap();
        assert_eq!(
            synced(),
            [base.clone(), real.parent().unwrap().to_path_buf()]
        );
    }
}
