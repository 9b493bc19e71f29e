//! Reading the archive: a local directory or an S3 prefix, gzip or plain, streamed line by line.
//!
//! Nothing here holds more than one line (plus the decoder's and reader's fixed buffers) in
//! memory: local files are read through a [`BufReader`], S3 objects by streaming their body, and
//! gzip (detected by its magic bytes, whatever the name) through a [`MultiGzDecoder`] (Firehose
//! objects and sealed segments may hold several gzip members).
//!
//! Which files of a local archive are read, and in which order, is
//! [`stripe_webhook_envelope::layout`]'s ([`layout::list_archive`]). S3 (listing, reading,
//! restores) is the `s3` feature's ([`s3`]); a build without it refuses `s3://` sources.

#[cfg(feature = "s3")]
mod s3;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
#[cfg(not(feature = "s3"))]
use stripe_webhook_envelope::read::OversizePointer;
use stripe_webhook_envelope::{Partition, layout};
use tokio::runtime::Handle;

use crate::filter::{DayRange, partition_date};

#[cfg(feature = "s3")]
pub(crate) use s3::Restored;

/// Why an `s3://` source is refused by a build without the `s3` feature.
#[cfg(not(feature = "s3"))]
const NO_S3: &str = "this build has no S3 support; rebuild with the default features";

/// The longest line read (a record is one line); longer ones make their segment unreadable.
const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;
/// Read buffer size for segments and decoders.
const BUFFER_BYTES: usize = 64 * 1024;

/// Where the archive is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A local directory.
    Local(PathBuf),
    /// An S3 prefix.
    #[cfg(feature = "s3")]
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (may be empty).
        prefix: String,
    },
}

impl Source {
    /// `s3://bucket/prefix` or a local path.
    pub(crate) fn parse(s: &str) -> Result<Source, ArchiveError> {
        match s.strip_prefix("s3://") {
            #[cfg(not(feature = "s3"))]
            Some(_) => Err(ArchiveError::Usage(format!("{s:?}: {NO_S3}"))),
            #[cfg(feature = "s3")]
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(ArchiveError::Usage(format!("{s:?}: no bucket name")));
                }
                Ok(Source::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                })
            }
            None => Ok(Source::Local(PathBuf::from(s))),
        }
    }
}

/// Why the archive could not be read at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// A bad source argument.
    #[error("{0}")]
    Usage(String),
    /// A local I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An S3 failure.
    #[cfg(feature = "s3")]
    #[error("{0}")]
    S3(String),
}

/// One line of a segment, as stored (without its `\n`).
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// The segment: a local path or `s3://bucket/key`.
    pub(crate) segment: &'a str,
    /// 1-based line number in the (decompressed) segment.
    pub(crate) number: u64,
    /// The bytes, without the trailing `\n`.
    pub(crate) bytes: &'a [u8],
}

/// What a scan reports.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A complete line.
    Line(Line<'a>),
    /// Something that is not a complete line: a torn last line, a segment that cannot be opened
    /// or decoded. `number` is the line it happened at (0: the segment as a whole).
    Unreadable {
        /// The segment.
        segment: &'a str,
        /// The line number, or 0.
        number: u64,
        /// Why.
        reason: String,
    },
}

/// Reads archives; owns the (lazily connected) S3 client.
pub(crate) struct Archive {
    #[cfg(feature = "s3")]
    s3: s3::S3,
    progress: ProgressBar,
}

impl Archive {
    /// An archive reader that runs S3 calls on `handle` (call it from outside the runtime, e.g.
    /// a blocking thread).
    pub(crate) fn new(handle: Handle, progress: ProgressBar) -> Archive {
        #[cfg(not(feature = "s3"))]
        let _ = handle; // only S3 calls run on the runtime
        Archive {
            #[cfg(feature = "s3")]
            s3: s3::S3::new(handle),
            progress,
        }
    }

    /// The progress bar scans advance.
    pub(crate) fn progress(&self) -> &ProgressBar {
        &self.progress
    }

    /// Streams every line of every segment under `source` whose partition (when its path has
    /// one) is in `partitions`, in key order. `visit` may stop the scan early.
    ///
    /// Partitions are named by arrival (see [`crate::filter`]): callers pass the days a
    /// selection needs widened with [`DayRange::partitions`] and filter on each record.
    ///
    /// # Errors
    /// When the source cannot be listed at all; problems with single segments are reported
    /// through `visit` as [`Event::Unreadable`] and the scan goes on.
    pub(crate) fn scan(
        &self,
        source: &Source,
        partitions: DayRange,
        visit: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        match source {
            Source::Local(dir) => self.scan_local(dir, partitions, visit),
            #[cfg(feature = "s3")]
            Source::S3 { bucket, prefix } => self.scan_s3(bucket, prefix, partitions, visit),
        }
    }

    fn scan_local(
        &self,
        dir: &Path,
        partitions: DayRange,
        visit: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        let root = if layout::archive_root(dir).is_dir() {
            layout::archive_root(dir)
        } else {
            dir.to_path_buf()
        };
        let meta = std::fs::metadata(&root).map_err(|source| ArchiveError::Io {
            what: format!("archive {}", root.display()),
            source,
        })?;
        let files = if meta.is_dir() {
            layout::list_archive(&root)
                .map_err(|source| ArchiveError::Io {
                    what: format!("listing {}", root.display()),
                    source,
                })?
                .into_iter()
                .map(|file| (file.path, file.len))
                .collect()
        } else {
            vec![(root.clone(), meta.len())]
        };
        let files: Vec<(PathBuf, u64)> = files
            .into_iter()
            .filter(|(path, _)| in_partitions(&path.to_string_lossy(), partitions))
            .collect();
        self.progress
            .set_length(files.iter().map(|(_, len)| len).sum());
        for (path, _) in files {
            let name = path.display().to_string();
            let flow = match File::open(&path) {
                Ok(file) => self.read_segment(&name, file, visit),
                Err(e) => visit(Event::Unreadable {
                    segment: &name,
                    number: 0,
                    reason: format!("cannot open: {e}"),
                }),
            };
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// An oversize event's body is on S3, which this build cannot read.
    #[cfg(not(feature = "s3"))]
    pub(crate) fn fetch_oversize(&self, pointer: &OversizePointer<'_>) -> Result<Vec<u8>, String> {
        Err(format!(
            "oversize body s3://{}/{}: {NO_S3}",
            pointer.bucket, pointer.key
        ))
    }

    /// Streams the lines of one segment (gzip or plain).
    fn read_segment(
        &self,
        name: &str,
        reader: impl Read,
        visit: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let counted = Counting {
            inner: reader,
            progress: &self.progress,
        };
        let mut plain = BufReader::with_capacity(BUFFER_BYTES, counted);
        let gzip = match plain.fill_buf() {
            Ok(head) => head.starts_with(&[0x1f, 0x8b]),
            Err(e) => {
                return visit(Event::Unreadable {
                    segment: name,
                    number: 0,
                    reason: format!("cannot read: {e}"),
                });
            }
        };
        if gzip {
            let decoded = BufReader::with_capacity(BUFFER_BYTES, MultiGzDecoder::new(plain));
            read_lines(name, decoded, visit)
        } else {
            read_lines(name, plain, visit)
        }
    }
}

fn read_lines(
    name: &str,
    mut reader: impl BufRead,
    visit: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut line = Vec::with_capacity(16 * 1024);
    let mut number = 0;
    loop {
        line.clear();
        number += 1;
        let read = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => return ControlFlow::Continue(()),
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                if line.is_empty() {
                    continue;
                }
                visit(Event::Line(Line {
                    segment: name,
                    number,
                    bytes: &line,
                }))?;
            }
            Ok(n) if n as u64 > MAX_LINE_BYTES => {
                return visit(Event::Unreadable {
                    segment: name,
                    number,
                    reason: format!(
                        "line longer than {MAX_LINE_BYTES} bytes; rest of segment skipped"
                    ),
                });
            }
            Ok(n) => {
                return visit(Event::Unreadable {
                    segment: name,
                    number,
                    reason: format!(
                        "torn last line ({n} bytes, no trailing newline): segment still being written, or cut short"
                    ),
                });
            }
            Err(e) => {
                return visit(Event::Unreadable {
                    segment: name,
                    number,
                    reason: format!("read error: {e}"),
                });
            }
        }
    }
}

/// Whether a path outside any partition, or in one of `partitions`.
fn in_partitions(path: &str, partitions: DayRange) -> bool {
    Partition::in_path(path)
        .and_then(partition_date)
        .is_none_or(|d| partitions.contains(d))
}

/// Advances the progress bar by the (compressed) bytes read.
struct Counting<'p, R> {
    inner: R,
    progress: &'p ProgressBar,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// A progress bar on stderr counting bytes read (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(what: &str) -> ProgressBar {
    progress(
        what,
        "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
    )
}

/// A spinner on stderr with a message, for work of unknown length such as listing an API
/// (hidden when stderr is not a terminal).
pub(crate) fn progress_spinner(what: &str) -> ProgressBar {
    let spinner = progress(what, "{spinner} {prefix} [{elapsed_precise}] {msg}");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner
}

fn progress(what: &str, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn lines_of(bytes: &[u8]) -> Vec<String> {
        let archive = Archive::new(
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .handle()
                .clone(),
            ProgressBar::hidden(),
        );
        let mut out = Vec::new();
        let flow = archive.read_segment("seg", bytes, &mut |event| {
            out.push(match event {
                Event::Line(l) => format!("{}:{}", l.number, String::from_utf8_lossy(l.bytes)),
                Event::Unreadable { number, reason, .. } => format!("{number}! {reason}"),
            });
            ControlFlow::Continue(())
        });
        assert!(flow.is_continue());
        out
    }

    #[test]
    fn reads_plain_and_multi_member_gzip() {
        assert_eq!(
            lines_of(b"{\"a\":1}\n{\"b\":2}\n"),
            ["1:{\"a\":1}", "2:{\"b\":2}"]
        );
        let mut gz = Vec::new();
        for part in [&b"one\n"[..], b"two\nthree\n"] {
            let mut e = GzEncoder::new(Vec::new(), Compression::fast());
            e.write_all(part).expect("write");
            gz.extend(e.finish().expect("finish"));
        }
        assert_eq!(lines_of(&gz), ["1:one", "2:two", "3:three"]);
    }

    #[test]
    fn reports_a_torn_last_line_and_bad_gzip() {
        let out = lines_of(b"one\ntw");
        assert_eq!(out[0], "1:one");
        assert!(out[1].starts_with("2! torn last line (2 bytes"), "{out:?}");
        let out = lines_of(&[0x1f, 0x8b, 0, 1, 2, 3]);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("1! read error"), "{out:?}");
    }

    #[test]
    #[cfg(feature = "s3")]
    fn parses_sources() {
        assert_eq!(
            Source::parse("s3://b/webhooks/").expect("s3"),
            Source::S3 {
                bucket: "b".into(),
                prefix: "webhooks/".into()
            }
        );
        assert_eq!(
            Source::parse("s3://b").expect("s3"),
            Source::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert!(Source::parse("s3:///x").is_err());
        assert_eq!(
            Source::parse("./archive").expect("local"),
            Source::Local(PathBuf::from("./archive"))
        );
    }

    #[test]
    #[cfg(not(feature = "s3"))]
    fn a_build_without_s3_refuses_s3_sources_and_reads_local_ones() {
        let error = Source::parse("s3://b/webhooks/")
            .expect_err("no S3")
            .to_string();
        assert_eq!(
            error,
            "\"s3://b/webhooks/\": this build has no S3 support; rebuild with the default features"
        );
        assert_eq!(
            Source::parse("./archive").expect("local"),
            Source::Local(PathBuf::from("./archive"))
        );
    }

    #[test]
    fn scans_what_readers_read_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = dir.path().join("webhooks/year=2026/month=11/day=26");
        std::fs::create_dir_all(&day).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("oversize")).expect("mkdir");
        for name in [
            "2-x.ndjson",
            "1-x.ndjson.gz",
            "3-x.ndjson",
            "3-x.ndjson.gz",
            "4-x.ndjson.gz.tmp",
            "5-x.ndjson.creating",
            ".hidden",
        ] {
            std::fs::write(day.join(name), format!("{name}\n")).expect("write");
        }
        std::fs::write(dir.path().join("oversize/body.json"), b"{}\n").expect("write");
        let archive = Archive::new(
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .handle()
                .clone(),
            ProgressBar::hidden(),
        );
        let mut lines = Vec::new();
        archive
            .scan(
                &Source::Local(dir.path().to_path_buf()),
                DayRange {
                    from: None,
                    to: None,
                },
                &mut |event| {
                    if let Event::Line(line) = event {
                        lines.push(String::from_utf8_lossy(line.bytes).into_owned());
                    }
                    ControlFlow::Continue(())
                },
            )
            .expect("scan");
        assert_eq!(lines, ["1-x.ndjson.gz", "2-x.ndjson", "3-x.ndjson.gz"]);
    }
}
