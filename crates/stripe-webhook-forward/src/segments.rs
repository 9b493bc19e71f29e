//! Reading the local archive as docs/archive-layout.md ("What readers read") says: sealed
//! `.ndjson.gz` and `.sealed.ndjson` segments, and open `.ndjson` segments (skipped while their
//! `.ndjson.gz` exists: mid-seal, the same lines), complete lines only; never `.tmp`, `.creating`
//! or dot files.
//!
//! A segment is named by its partition and stem ([`SegmentKey`]) across its life: an open
//! segment and the sealed file it becomes hold the same bytes, so an offset (uncompressed bytes)
//! into one is an offset into the other.
//!
//! An open segment is read only up to a length taken before an `fdatasync` of it made by this
//! reader: any process's `fdatasync` makes the file's written data durable, so every line read is
//! on disk whether or not its writer has synced it yet. Lines from the first one holding a NUL
//! byte are not read (a crash can leave unsynced ranges zero-filled; recovery cuts them).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use stripe_webhook_envelope::Partition;
use stripe_webhook_envelope::layout::{self, SegmentRole};

/// The longest line read (as the CLI's reader): a longer one stops its segment.
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// Bytes read from an open segment per read call.
const CHUNK: usize = 256 * 1024;

/// A segment: its partition and unique stem.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentKey {
    /// The partition (the UTC date of its records' receipt).
    pub partition: Partition,
    /// `<unix-millis>-<pid>-<random>`.
    pub stem: String,
}

impl fmt::Display for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.partition, self.stem)
    }
}

impl std::str::FromStr for SegmentKey {
    type Err = String;
    fn from_str(s: &str) -> Result<SegmentKey, String> {
        let (partition, stem) = s
            .rsplit_once('/')
            .ok_or_else(|| format!("{s:?} is not <partition>/<stem>"))?;
        let partition = partition.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if stem.is_empty() || stem.starts_with('.') || stem.contains('/') {
            return Err(format!("{s:?}: not a segment stem"));
        }
        Ok(SegmentKey {
            partition,
            stem: stem.to_owned(),
        })
    }
}

/// What a segment file is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// `.ndjson`: open (or orphaned until the next start seals it); may grow.
    Open,
    /// `.ndjson.gz`: sealed, gzip.
    SealedGz,
    /// `.sealed.ndjson`: sealed, uncompressed.
    SealedPlain,
}

/// One segment found in the archive.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    /// Its name.
    pub key: SegmentKey,
    /// The file to read.
    pub path: PathBuf,
    /// Open or sealed.
    pub state: State,
}

impl SegmentFile {
    /// Whether it is sealed (will never change).
    pub fn is_sealed(&self) -> bool {
        self.state != State::Open
    }
}

/// The partitions (day directories) under `<archive_dir>/webhooks/`, from `from` on, sorted
/// ([`layout::list_partitions`]).
///
/// # Errors
/// When `webhooks/` or a year or month directory cannot be listed (a missing `webhooks/` is
/// empty).
pub fn partitions(archive_dir: &Path, from: Partition) -> io::Result<Vec<(Partition, PathBuf)>> {
    let mut all = layout::list_partitions(archive_dir)?;
    all.retain(|(partition, _)| *partition >= from);
    Ok(all)
}

/// The segments of one partition directory, sorted by stem (creation time first), each under the
/// one name a reader reads ([`layout::list_partition`]: a sealed name wins over the open one
/// mid-seal). Files that are not the file sink's segments are not forwarded.
///
/// # Errors
/// When the directory cannot be listed (a missing one is empty).
pub fn segments(partition: Partition, dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut out: Vec<SegmentFile> = layout::list_partition(dir)?
        .into_iter()
        .filter_map(|file| {
            let (stem, role) = file.segment?;
            let state = match role {
                SegmentRole::Open => State::Open,
                SegmentRole::Gz => State::SealedGz,
                SegmentRole::SealedPlain => State::SealedPlain,
                SegmentRole::Creating | SegmentRole::GzTmp => return None,
            };
            Some(SegmentFile {
                key: SegmentKey { partition, stem },
                path: file.path,
                state,
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// One complete line read from a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Offset of its first byte in the (uncompressed) segment.
    pub start: u64,
    /// Offset just past its `\n`.
    pub end: u64,
    /// The line, without its `\n`.
    pub bytes: Vec<u8>,
}

/// What one read of a segment gave.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Complete lines, in order.
    pub lines: Vec<Line>,
    /// Where the next read starts.
    pub next: u64,
    /// The segment is sealed and `next` is its end: nothing more will ever be read from it.
    pub finished: bool,
    /// A problem that stops this segment here (a NUL byte, an over-long line, a sealed segment
    /// whose last line has no `\n`, or one shorter than the offset asked for).
    pub stopped: Option<String>,
}

/// A sealed segment's decoder, open at an offset.
type OpenDecoder = (SegmentKey, u64, BufReader<Box<dyn Read + Send>>);

/// Reads segments from offsets, keeping the last sealed segment's decoder open, so reading a
/// sealed segment a window at a time does not decompress it from the start each time.
#[derive(Default)]
pub struct SegmentReader {
    sealed: Option<OpenDecoder>,
    /// Whether to `fdatasync` open segments before reading them (the forwarder: yes; a status
    /// report that forwards nothing: no).
    pub sync_open: bool,
}

impl SegmentReader {
    /// A reader that syncs open segments before reading them.
    pub fn syncing() -> SegmentReader {
        SegmentReader {
            sealed: None,
            sync_open: true,
        }
    }

    /// Reads complete lines of `segment` from offset `from`, at most `max_lines` of them.
    ///
    /// # Errors
    /// The segment cannot be opened, synced or read (it may be mid-rename: list again).
    pub fn read(
        &mut self,
        segment: &SegmentFile,
        from: u64,
        max_lines: usize,
    ) -> io::Result<Chunk> {
        match segment.state {
            State::Open => self.read_open(segment, from, max_lines),
            State::SealedGz | State::SealedPlain => self.read_sealed(segment, from, max_lines),
        }
    }

    fn read_open(
        &mut self,
        segment: &SegmentFile,
        from: u64,
        max_lines: usize,
    ) -> io::Result<Chunk> {
        let file = File::open(&segment.path)?;
        let len = file.metadata()?.len();
        if len <= from {
            return Ok(Chunk {
                next: from,
                ..Chunk::default()
            });
        }
        if self.sync_open {
            // Makes every byte up to `len` durable, whoever wrote it (docs/forwarding.md).
            file.sync_data()?;
        }
        let mut out = Chunk {
            next: from,
            ..Chunk::default()
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut offset = from;
        let mut buf = vec![0; CHUNK];
        while offset < len && out.lines.len() < max_lines {
            let want = usize::try_from((len - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
            let n = file.read_at(&mut buf[..want], offset)?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            pending.extend_from_slice(&buf[..n]);
            let mut consumed = 0;
            while out.lines.len() < max_lines {
                let Some(nl) = pending[consumed..].iter().position(|&b| b == b'\n') else {
                    break;
                };
                let line = &pending[consumed..consumed + nl];
                if line.contains(&0) {
                    out.stopped = Some(format!("a NUL byte at offset {}", out.next));
                    return Ok(out);
                }
                let start = out.next;
                out.next = start + nl as u64 + 1;
                out.lines.push(Line {
                    start,
                    end: out.next,
                    bytes: line.to_vec(),
                });
                consumed += nl + 1;
            }
            pending.drain(..consumed);
            if pending.contains(&0) {
                out.stopped = Some(format!("a NUL byte after offset {}", out.next));
                return Ok(out);
            }
            if pending.len() > MAX_LINE_BYTES {
                out.stopped = Some(format!("a line longer than {MAX_LINE_BYTES} bytes"));
                return Ok(out);
            }
        }
        Ok(out)
    }

    fn read_sealed(
        &mut self,
        segment: &SegmentFile,
        from: u64,
        max_lines: usize,
    ) -> io::Result<Chunk> {
        let mut reader = match self.sealed.take() {
            Some((key, at, reader)) if key == segment.key && at == from => reader,
            _ => {
                let file = File::open(&segment.path)?;
                let inner: Box<dyn Read + Send> = if segment.state == State::SealedGz {
                    Box::new(MultiGzDecoder::new(file))
                } else {
                    Box::new(file)
                };
                let mut reader = BufReader::with_capacity(CHUNK, inner);
                let skipped = io::copy(&mut (&mut reader).take(from), &mut io::sink())?;
                if skipped < from {
                    // Shorter than what was read from it while open: its writer cut back bytes it
                    // never acknowledged (a failed sync) before sealing.
                    return Ok(Chunk {
                        next: from,
                        finished: true,
                        stopped: Some(format!(
                            "sealed at {skipped} bytes, shorter than the {from} already read"
                        )),
                        ..Chunk::default()
                    });
                }
                reader
            }
        };
        let mut out = Chunk {
            next: from,
            ..Chunk::default()
        };
        let mut line = Vec::new();
        while out.lines.len() < max_lines {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                out.finished = true;
                return Ok(out);
            }
            if line.last() != Some(&b'\n') {
                out.finished = true;
                out.stopped = Some(format!(
                    "a last line without a newline at offset {} (or longer than {MAX_LINE_BYTES} bytes)",
                    out.next
                ));
                return Ok(out);
            }
            let start = out.next;
            out.next = start + n as u64;
            line.pop();
            out.lines.push(Line {
                start,
                end: out.next,
                bytes: line.clone(),
            });
        }
        // More may follow: keep the decoder where it stopped.
        if reader.fill_buf()?.is_empty() {
            out.finished = true;
        } else {
            self.sealed = Some((segment.key.clone(), out.next, reader));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn day() -> Partition {
        "year=2026/month=12/day=06".parse().unwrap()
    }

    #[test]
    fn listing_follows_what_readers_read() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("webhooks/year=2026/month=12/day=06");
        std::fs::create_dir_all(&part).unwrap();
        for name in [
            "1-1-a.ndjson",
            "1-1-a.ndjson.gz",
            "2-1-b.ndjson",
            "3-1-c.ndjson.gz.tmp",
            "3-1-c.ndjson",
            "4-1-d.ndjson.creating",
            "5-1-e.sealed.ndjson",
            ".healthcheck-1-2",
            "notes.txt",
        ] {
            std::fs::write(part.join(name), b"").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("webhooks/year=2026/month=12/day=05")).unwrap();
        let parts = partitions(dir.path(), day()).unwrap();
        assert_eq!(parts.len(), 1, "{parts:?}");
        let found: Vec<(String, State)> = segments(parts[0].0, &parts[0].1)
            .unwrap()
            .into_iter()
            .map(|s| (s.key.stem, s.state))
            .collect();
        assert_eq!(
            found,
            [
                ("1-1-a".to_owned(), State::SealedGz),
                ("2-1-b".to_owned(), State::Open),
                ("3-1-c".to_owned(), State::Open),
                ("5-1-e".to_owned(), State::SealedPlain),
            ]
        );
        let key: SegmentKey = "year=2026/month=12/day=06/1-1-a".parse().unwrap();
        assert_eq!(key.to_string(), "year=2026/month=12/day=06/1-1-a");
        assert!("nope".parse::<SegmentKey>().is_err());
    }

    #[test]
    fn offsets_into_an_open_segment_hold_in_its_sealed_file() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("1-1-a.ndjson");
        let content = b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"tor";
        std::fs::write(&open, content).unwrap();
        let key = SegmentKey {
            partition: day(),
            stem: "1-1-a".into(),
        };
        let seg = SegmentFile {
            key: key.clone(),
            path: open.clone(),
            state: State::Open,
        };
        let mut reader = SegmentReader::syncing();
        let first = reader.read(&seg, 0, 2).unwrap();
        assert_eq!(first.lines.len(), 2);
        assert_eq!(first.lines[1].bytes, b"{\"b\":2}");
        assert_eq!(first.next, 16);
        let rest = reader.read(&seg, first.next, 10).unwrap();
        assert_eq!(rest.lines.len(), 1, "the torn last line is not read");
        assert!(!rest.finished);
        // Sealed: the same bytes (without the torn tail), gzip.
        let gz = dir.path().join("1-1-a.ndjson.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        enc.write_all(&content[..24]).unwrap();
        enc.finish().unwrap();
        let sealed = SegmentFile {
            key,
            path: gz,
            state: State::SealedGz,
        };
        let again = reader.read(&sealed, 16, 10).unwrap();
        assert_eq!(again.lines.len(), 1);
        assert_eq!(again.lines[0].bytes, b"{\"c\":3}");
        assert_eq!((again.lines[0].start, again.next), (16, 24));
        assert!(again.finished);
        // Reading it a line at a time keeps the decoder.
        let one = reader.read(&sealed, 0, 1).unwrap();
        assert!(!one.finished);
        let two = reader.read(&sealed, one.next, 1).unwrap();
        assert_eq!(two.lines[0].start, 8);
        // An offset past the sealed end: the writer cut unacknowledged bytes.
        let past = reader.read(&sealed, 30, 1).unwrap();
        assert!(past.finished && past.stopped.is_some() && past.lines.is_empty());
    }

    #[test]
    fn an_open_segment_stops_at_a_nul_byte() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("1-1-a.ndjson");
        std::fs::write(&open, b"{}\n\0\0\0\n{}\n").unwrap();
        let seg = SegmentFile {
            key: SegmentKey {
                partition: day(),
                stem: "1-1-a".into(),
            },
            path: open,
            state: State::Open,
        };
        let read = SegmentReader::syncing().read(&seg, 0, 10).unwrap();
        assert_eq!(read.lines.len(), 1);
        assert_eq!(read.next, 3);
        assert!(read.stopped.is_some());
    }
}
