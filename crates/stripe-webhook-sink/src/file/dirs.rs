//! Durable directory entries: a record is acknowledged only under directory names that this
//! process has seen synced.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::segment::sync_dir;

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
/// or may have been killed in between. A sync that fails is not remembered, so the next call
/// tries again.
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
    /// syncs what is still missing.
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
                    (self.sync)(&parent).map_err(|e| {
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
    fn a_failed_sync_fails_and_is_retried_by_the_next_call() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("archive");
        let day = base.join("webhooks/year=2027/month=01/day=01");
        let mut dirs = dirs(&base);
        fail_next(1); // the sync of month=01 (for day=01's entry)
        let error = dirs.create(&day).unwrap_err();
        assert!(error.to_string().contains("month=01"), "{error}");
        assert!(synced().is_empty());
        // The directories exist now; the next call still syncs the whole chain.
        assert_eq!(dirs.create(&day).unwrap(), 5);
        assert_eq!(synced()[0], day.parent().unwrap());
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
