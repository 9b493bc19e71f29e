//! Segment files on disk: creation under an exclusive lock, torn-tail detection and sealing.
//!
//! The names a segment has over its life (`<stem>.ndjson.creating`, `.ndjson`, `.ndjson.gz.tmp`,
//! `.ndjson.gz`, `.sealed.ndjson`) are [`stripe_webhook_envelope::layout`]'s ([`Role`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use libdeflater::CompressionLvl;
pub(crate) use stripe_webhook_envelope::layout::SegmentRole as Role;
use stripe_webhook_envelope::layout::{parse_segment_name, segment_stem};

use crate::dirs;

/// A segment: its partition directory and unique stem.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Segment {
    dir: PathBuf,
    stem: String,
}

impl Segment {
    /// A fresh, unique segment name in `dir`.
    pub(crate) fn new_unique(dir: &Path) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self {
            dir: dir.to_path_buf(),
            stem: segment_stem(millis, std::process::id(), rand::random::<u64>()),
        }
    }

    /// Splits a file path into its segment and role; `None` for files that are not segments.
    pub(crate) fn parse(path: &Path) -> Option<(Self, Role)> {
        let (stem, role) = parse_segment_name(path.file_name()?.to_str()?)?;
        Some((
            Self {
                dir: path.parent()?.to_path_buf(),
                stem: stem.to_owned(),
            },
            role,
        ))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, role: Role) -> PathBuf {
        self.dir.join(role.file_name(&self.stem))
    }

    /// The open (unsealed) segment file.
    pub(crate) fn open_path(&self) -> PathBuf {
        self.path(Role::Open)
    }
}

/// Makes the entries of `dir` (created, renamed or removed files) durable; a failure is recorded
/// ([`dirs::note_failed_sync`]), so no later sync of `dir` is taken as proof for entries made
/// before it (see [`dirs::sync_entries`]).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let synced = File::open(dir).and_then(|d| d.sync_all());
    if synced.is_err() {
        dirs::note_failed_sync(dir);
    }
    synced
}

/// Opens an existing segment file for reading and appending (the handle that carries the lock).
pub(crate) fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).open(path)
}

/// Takes the exclusive advisory lock without waiting: `Ok(false)` if another handle holds it.
pub(crate) fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Creates a new, empty, exclusively locked segment in `dir` and makes its name durable.
///
/// The file is created as `.ndjson.creating`, locked, then renamed to `.ndjson`: a recovering
/// process only ever sees an `.ndjson` that is already locked, so it can never seal a segment
/// this writer is about to append to. If the directory sync fails, or another sync of `dir`
/// failed after the rename ([`dirs::sync_entries`]), the segment is removed and the error
/// returned: the next call names a new segment and syncs that.
pub(crate) fn create(dir: &Path) -> io::Result<(Segment, File)> {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        let segment = Segment::new_unique(dir);
        let creating = segment.path(Role::Creating);
        let file = match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&creating)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        // Someone recovering stale `.creating` files holds it: they will remove it; pick another name.
        if !try_lock(&file)? {
            continue;
        }
        let failed_before = dirs::failed_syncs(dir);
        match fs::rename(&creating, segment.open_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                let _ = fs::remove_file(&creating);
                return Err(e);
            }
        }
        if let Err(e) = dirs::sync_entries(dir, failed_before, sync_dir) {
            // Not durable: not used. Remove it rather than leave an empty orphan per failed attempt.
            let _ = fs::remove_file(segment.open_path());
            return Err(e);
        }
        return Ok((segment, file));
    }
    Err(io::Error::other(
        "could not create a uniquely named segment file",
    ))
}

/// The length of the longest prefix of `file` that holds only whole, plausible lines.
///
/// Cuts (a) bytes after the last `\n` (a write torn by a crash) and (b) everything from the line
/// holding the first NUL byte on (a crash can leave unsynced ranges zero-filled; NUL never occurs in
/// JSON text, and everything written after an unsynced range was never acknowledged either).
pub(crate) fn whole_lines_len(file: &File) -> io::Result<u64> {
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    let mut kept = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(kept),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        let scan_end = chunk.iter().position(|&b| b == 0);
        if let Some(i) = chunk[..scan_end.unwrap_or(n)]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            kept = offset + i as u64 + 1;
        }
        if scan_end.is_some() {
            return Ok(kept);
        }
        offset += n as u64;
    }
}

/// How a seal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sealed {
    /// Written to its sealed name.
    Sealed,
    /// The segment held no whole line; its file was removed.
    Empty,
}

/// Seals a segment whose first `valid_len` bytes are whole lines; `file` is its locked handle,
/// `None` once its `.ndjson` name is gone (a retry after the removal or rename succeeded).
///
/// Crash-safe at every step: the sealed name appears atomically (rename after fsync), and the
/// `.ndjson` is removed only once the sealed name is durable (its directory synced).
///
/// Idempotent, so a failed seal is retried by calling it again: what an earlier attempt finished
/// is not redone (a sealed file that exists is kept; a `.ndjson` already removed or renamed is
/// done), and the directory sync that makes the result durable always runs again. A `.ndjson.gz`
/// found beside its `.ndjson` (a retry, or recovery after a crash) may have been named before a
/// directory sync failed, so its name is made again (renamed to `.ndjson.gz.tmp` and back) before
/// the sync that must prove it: the `.ndjson` is only removed after a sync that no failed sync of
/// the directory followed ([`dirs::sync_entries`]).
///
/// # Errors
/// The first step that failed. [`io::ErrorKind::NotFound`] with `file` `None` and no sealed file
/// means the segment is gone (removed by someone else): there is nothing left to seal.
pub(crate) fn seal(
    segment: &Segment,
    file: Option<&File>,
    valid_len: u64,
    gzip: Option<CompressionLvl>,
) -> io::Result<Sealed> {
    let open = segment.open_path();
    let dir = segment.dir();
    if let Some(file) = file
        && file.metadata()?.len() > valid_len
    {
        file.set_len(valid_len)?;
        file.sync_data()?;
    }
    if valid_len == 0 {
        remove_if_present(&open)?;
        sync_dir(dir)?;
        return Ok(Sealed::Empty);
    }
    let sealed = segment.path(if gzip.is_some() {
        Role::Gz
    } else {
        Role::SealedPlain
    });
    let failed_before = dirs::failed_syncs(dir);
    if sealed.try_exists()? {
        if gzip.is_some() && file.is_some() {
            remake_gz_name(segment)?;
        }
    } else {
        let Some(file) = file else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the segment's .ndjson is gone and no sealed file exists",
            ));
        };
        match gzip {
            None => fs::rename(&open, &sealed)?,
            Some(level) => write_gzip(segment, file, valid_len, level, &sealed)?,
        }
    }
    // The sealed name is durable before the `.ndjson` goes (and, on a retry after the removal,
    // this is the final sync that failed last time).
    dirs::sync_entries(dir, failed_before, sync_dir)?;
    if remove_if_present(&open)? {
        sync_dir(dir)?;
    }
    Ok(Sealed::Sealed)
}

/// Makes the entry of an existing `<stem>.ndjson.gz` again (renames it to `.ndjson.gz.tmp` and
/// back), so the next directory sync writes an operation made now rather than trusting one made
/// before a sync that may have failed (in this process or in a crashed one). A crash in between
/// leaves `.ndjson` and `.ndjson.gz.tmp`, which recovery seals again.
pub(crate) fn remake_gz_name(segment: &Segment) -> io::Result<()> {
    let (gz, tmp) = (segment.path(Role::Gz), segment.path(Role::GzTmp));
    fs::rename(&gz, &tmp)?;
    fs::rename(&tmp, &gz)
}

/// Input bytes compressed as one gzip member. libdeflate compresses a whole buffer at once; with
/// 1 MiB members its working set stays in cache (measured faster than 4 MiB members) and the file
/// is a few tenths of a percent larger than one stream would be
/// (`cargo run --release -p stripe-webhook-benches --bin seal_compression`).
pub(crate) const GZIP_MEMBER_BYTES: usize = 1 << 20;

/// Writes the first `valid_len` bytes of `file` as `<stem>.ndjson.gz.tmp` — gzip members of
/// [`GZIP_MEMBER_BYTES`] input bytes each, compressed with libdeflate at `level`; concatenated
/// members are one valid gzip file (RFC 1952) that zcat, Python's `gzip`, DuckDB and the CLI read
/// whole — syncs it, and renames it to `gz`.
fn write_gzip(
    segment: &Segment,
    file: &File,
    valid_len: u64,
    level: CompressionLvl,
    gz: &Path,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let tmp = segment.path(Role::GzTmp);
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let mut compressor = libdeflater::Compressor::new(level);
    let member = GZIP_MEMBER_BYTES.min(usize::try_from(valid_len).unwrap_or(usize::MAX));
    let mut input = vec![0; member];
    let mut output = vec![0; compressor.gzip_compress_bound(member)];
    let mut offset = 0u64;
    while offset < valid_len {
        let len = usize::try_from(valid_len - offset).map_or(member, |rest| rest.min(member));
        let chunk = &mut input[..len];
        file.read_exact_at(chunk, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(e.kind(), "segment shorter than its valid length")
            } else {
                e
            }
        })?;
        let n = compressor
            .gzip_compress(chunk, &mut output)
            .map_err(|e| io::Error::other(format!("gzip compression failed: {e:?}")))?;
        out.write_all(&output[..n])?;
        offset += len as u64;
    }
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, gz)
}

/// Removes `path`; `Ok(false)` if it was already gone.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    #[test]
    fn names_round_trip_and_are_unique() {
        let dir = Path::new("/a/b");
        let s = Segment::new_unique(dir);
        let t = Segment::new_unique(dir);
        assert_ne!(s, t);
        for role in [
            Role::Creating,
            Role::Open,
            Role::GzTmp,
            Role::Gz,
            Role::SealedPlain,
        ] {
            assert_eq!(Segment::parse(&s.path(role)), Some((s.clone(), role)));
        }
        let name = s.open_path();
        let name = name.file_name().unwrap().to_str().unwrap();
        let parts: Vec<&str> = name.trim_end_matches(".ndjson").split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert_eq!(parts[1], std::process::id().to_string());
        assert_eq!(parts[2].len(), 16);
        assert_eq!(Segment::parse(Path::new("/a/b/.healthcheck")), None);
        assert_eq!(Segment::parse(Path::new("/a/b/notes.txt")), None);
        assert_eq!(Segment::parse(Path::new("/a/b/.ndjson")), None);
    }

    fn file_with(content: &[u8]) -> (tempfile::TempDir, PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        fs::write(&path, content).unwrap();
        let file = open_existing(&path).unwrap();
        (dir, path, file)
    }

    #[test]
    fn whole_lines_len_cuts_torn_tail_and_zero_fill() {
        for (content, expected) in [
            (&b""[..], 0),
            (b"{}\n", 3),
            (b"{}\n{\"a\":1}\n{\"b", 11),
            (b"{\"b", 0),
            (b"{}\n\0\0\0\0\n{}\n", 3),
            (b"{}\n{\"a\0\":1}\n", 3),
        ] {
            let (_dir, _path, file) = file_with(content);
            assert_eq!(whole_lines_len(&file).unwrap(), expected, "{content:?}");
        }
        // Across read-buffer boundaries.
        let mut big = vec![b'x'; 100_000];
        big.push(b'\n');
        big.extend_from_slice(&[b'y'; 70_000]);
        let (_dir, _path, file) = file_with(&big);
        assert_eq!(whole_lines_len(&file).unwrap(), 100_001);
    }

    #[test]
    fn create_locks_and_seal_compresses_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let (segment, mut file) = create(dir.path()).unwrap();
        assert!(segment.open_path().exists());
        assert!(!segment.path(Role::Creating).exists());
        // Another handle cannot take the lock while we hold it.
        let other = open_existing(&segment.open_path()).unwrap();
        assert!(!try_lock(&other).unwrap());
        file.write_all(b"{\"a\":1}\n{\"b\":2}\n{\"tor").unwrap();
        assert_eq!(
            seal(&segment, Some(&file), 16, Some(CompressionLvl::fastest())).unwrap(),
            Sealed::Sealed
        );
        assert!(!segment.open_path().exists());
        assert!(!segment.path(Role::GzTmp).exists());
        let mut text = String::new();
        GzDecoder::new(File::open(segment.path(Role::Gz)).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn a_segment_larger_than_a_member_seals_into_several_members_of_the_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (segment, mut file) = create(dir.path()).unwrap();
        let mut content = Vec::new();
        let mut n = 0u64;
        while content.len() < 2 * GZIP_MEMBER_BYTES + 12_345 {
            content
                .extend_from_slice(format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", n * 7919).as_bytes());
            n += 1;
        }
        file.write_all(&content).unwrap();
        let len = content.len() as u64;
        seal(
            &segment,
            Some(&file),
            len,
            Some(CompressionLvl::new(6).unwrap()),
        )
        .unwrap();
        let gz = fs::read(segment.path(Role::Gz)).unwrap();
        // Every member starts with the gzip magic; a single-member decoder stops after the first.
        let mut first = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut first).unwrap();
        assert_eq!(
            first.len(),
            GZIP_MEMBER_BYTES,
            "the first member holds one member's bytes"
        );
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(
            all, content,
            "the members decode to the segment, byte for byte"
        );
        assert!(
            gz.len() < content.len() / 3,
            "compressed: {} of {}",
            gz.len(),
            content.len()
        );
    }

    #[test]
    fn seal_plain_renames_and_empty_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (segment, mut file) = create(dir.path()).unwrap();
        file.write_all(b"{}\n").unwrap();
        assert_eq!(
            seal(&segment, Some(&file), 3, None).unwrap(),
            Sealed::Sealed
        );
        assert_eq!(fs::read(segment.path(Role::SealedPlain)).unwrap(), b"{}\n");
        let (empty, file) = create(dir.path()).unwrap();
        assert_eq!(
            seal(&empty, Some(&file), 0, Some(CompressionLvl::default())).unwrap(),
            Sealed::Empty
        );
        assert!(!empty.open_path().exists());
        assert!(!empty.path(Role::Gz).exists());
    }

    #[test]
    fn a_seal_retried_after_it_got_midway_finishes() {
        let dir = tempfile::tempdir().unwrap();
        for gzip in [Some(CompressionLvl::fastest()), None] {
            let (segment, mut file) = create(dir.path()).unwrap();
            file.write_all(b"{}\n").unwrap();
            // The first attempt got past the removal or rename (its last directory sync failed).
            assert_eq!(
                seal(&segment, Some(&file), 3, gzip).unwrap(),
                Sealed::Sealed
            );
            let sealed = segment.path(if gzip.is_some() {
                Role::Gz
            } else {
                Role::SealedPlain
            });
            let content = fs::read(&sealed).unwrap();
            // Retried with the handle still held, and with it released: done, nothing redone.
            assert_eq!(
                seal(&segment, Some(&file), 3, gzip).unwrap(),
                Sealed::Sealed
            );
            assert_eq!(seal(&segment, None, 3, gzip).unwrap(), Sealed::Sealed);
            assert_eq!(fs::read(&sealed).unwrap(), content);
            assert!(!segment.open_path().exists());
        }
        let (empty, file) = create(dir.path()).unwrap();
        assert_eq!(seal(&empty, Some(&file), 0, None).unwrap(), Sealed::Empty);
        assert_eq!(seal(&empty, Some(&file), 0, None).unwrap(), Sealed::Empty);
        assert_eq!(seal(&empty, None, 0, None).unwrap(), Sealed::Empty);
    }

    #[test]
    fn a_segment_removed_by_someone_else_cannot_be_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (segment, mut file) = create(dir.path()).unwrap();
        file.write_all(b"{}\n").unwrap();
        fs::remove_file(segment.open_path()).unwrap();
        let error = seal(&segment, None, 3, Some(CompressionLvl::fastest())).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn seal_after_crash_between_rename_and_remove_only_removes() {
        let dir = tempfile::tempdir().unwrap();
        let (segment, mut file) = create(dir.path()).unwrap();
        file.write_all(b"{}\n").unwrap();
        fs::write(segment.path(Role::Gz), b"already sealed").unwrap();
        assert_eq!(
            seal(
                &segment,
                Some(&file),
                3,
                Some(CompressionLvl::new(9).unwrap())
            )
            .unwrap(),
            Sealed::Sealed
        );
        assert_eq!(fs::read(segment.path(Role::Gz)).unwrap(), b"already sealed");
        assert!(!segment.open_path().exists());
    }
}
