//! Reading the archive: a local directory or an S3 prefix, gzip or plain, streamed line by line.
//!
//! Nothing here holds more than one line (plus the decoder's and reader's fixed buffers) in
//! memory: local files are read through a [`BufReader`], S3 objects by streaming their body, and
//! gzip (detected by its magic bytes, whatever the name) through a [`MultiGzDecoder`] (Firehose
//! objects and sealed segments may hold several gzip members).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::operation::get_object::GetObjectError;
use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stripe_webhook_envelope::read::{OversizeMismatch, OversizePointer};
use stripe_webhook_envelope::{ARCHIVE_PREFIX, NON_RECORD_PREFIXES, Partition};
use tokio::io::AsyncReadExt;
use tokio::runtime::Handle;

use crate::filter::{DayRange, date_partition, partition_date};

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
    #[error("{0}")]
    S3(String),
}

/// Storage classes whose objects must be restored before they can be read (Glacier Flexible
/// Retrieval and Deep Archive; Glacier Instant Retrieval reads like Standard).
pub(crate) const ARCHIVED_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

/// What `restore` did for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Restored {
    /// A restore was requested now.
    Requested,
    /// A restore requested earlier is still running.
    InProgress,
    /// Already restored: readable now (until the restored copy expires).
    Available,
    /// Not in an archival storage class: readable as it is.
    NotArchived,
    /// The request failed (why).
    Failed(String),
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
    handle: Handle,
    s3: OnceLock<aws_sdk_s3::Client>,
    progress: ProgressBar,
}

impl Archive {
    /// An archive reader that runs S3 calls on `handle` (call it from outside the runtime, e.g.
    /// a blocking thread).
    pub(crate) fn new(handle: Handle, progress: ProgressBar) -> Archive {
        Archive {
            handle,
            s3: OnceLock::new(),
            progress,
        }
    }

    /// The progress bar scans advance.
    pub(crate) fn progress(&self) -> &ProgressBar {
        &self.progress
    }

    /// The S3 client from the normal AWS configuration (environment, profile, instance role);
    /// path-style addressing when an endpoint URL is configured (`AWS_ENDPOINT_URL`, e.g. moto).
    fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3.get_or_init(|| {
            let config = self.handle.block_on(aws_config::load_defaults(
                aws_config::BehaviorVersion::latest(),
            ));
            let mut builder = aws_sdk_s3::config::Builder::from(&config);
            if config.endpoint_url().is_some() {
                builder = builder.force_path_style(true);
            }
            aws_sdk_s3::Client::from_conf(builder.build())
        })
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
            Source::S3 { bucket, prefix } => self.scan_s3(bucket, prefix, partitions, visit),
        }
    }

    fn scan_local(
        &self,
        dir: &Path,
        partitions: DayRange,
        visit: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        let root = if dir.join(ARCHIVE_PREFIX).is_dir() {
            dir.join(ARCHIVE_PREFIX)
        } else {
            dir.to_path_buf()
        };
        let meta = std::fs::metadata(&root).map_err(|source| ArchiveError::Io {
            what: format!("archive {}", root.display()),
            source,
        })?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            list_local(&root, true, &mut files).map_err(|source| ArchiveError::Io {
                what: format!("listing {}", root.display()),
                source,
            })?;
            files
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

    fn scan_s3(
        &self,
        bucket: &str,
        prefix: &str,
        partitions: DayRange,
        visit: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        // Under `…webhooks/` keys sort by date: start at the first partition wanted.
        let start_after = match partitions.from {
            Some(from) if prefix.ends_with(&format!("{ARCHIVE_PREFIX}/")) => {
                Some(format!("{prefix}{}/", date_partition(from)))
            }
            _ => None,
        };
        self.list_objects(bucket, prefix, start_after, &mut |object| {
            let Some(key) = object.key() else {
                return ControlFlow::Continue(());
            };
            let relative = key.strip_prefix(prefix).unwrap_or(key);
            if key.ends_with('/')
                || NON_RECORD_PREFIXES
                    .iter()
                    .any(|n| relative.split('/').next() == Some(n))
            {
                return ControlFlow::Continue(());
            }
            if let Some(day) = Partition::in_path(key).and_then(partition_date) {
                if partitions.is_after(day) && relative.starts_with("year=") {
                    return ControlFlow::Break(());
                }
                if !partitions.contains(day) {
                    return ControlFlow::Continue(());
                }
            }
            let name = format!("s3://{bucket}/{key}");
            match self.open_s3(bucket, key) {
                Ok(reader) => self.read_segment(&name, reader, visit),
                Err(reason) => visit(Event::Unreadable {
                    segment: &name,
                    number: 0,
                    reason,
                }),
            }
        })
    }

    /// Hands every object under `s3://bucket/prefix` (after `start_after`, if given) to `visit`,
    /// in key order, page by page, until `visit` breaks.
    ///
    /// # Errors
    /// When a page cannot be listed.
    fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<String>,
        visit: &mut dyn FnMut(&aws_sdk_s3::types::Object) -> ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        let client = self.s3();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .handle
                .block_on(
                    client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_start_after(start_after.clone())
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| {
                    ArchiveError::S3(format!(
                        "listing s3://{bucket}/{prefix}: {}",
                        DisplayErrorContext(&e)
                    ))
                })?;
            for object in page.contents() {
                if visit(object).is_break() {
                    return Ok(());
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    /// Opens an S3 object as a blocking reader over its streamed body. An object in an archival
    /// storage class that is not restored is named as such, with how to restore it.
    fn open_s3(&self, bucket: &str, key: &str) -> Result<S3Reader, String> {
        let output = self
            .handle
            .block_on(self.s3().get_object().bucket(bucket).key(key).send())
            .map_err(|e| match e.as_service_error() {
                Some(GetObjectError::InvalidObjectState(state)) => {
                    let class = state
                        .storage_class()
                        .map_or("an archival storage class", |c| c.as_str());
                    self.not_restored(bucket, key, class)
                }
                _ => format!(
                    "cannot get s3://{bucket}/{key}: {}",
                    DisplayErrorContext(&e)
                ),
            })?;
        Ok(S3Reader {
            handle: self.handle.clone(),
            body: Box::new(output.body.into_async_read()),
        })
    }

    /// Why an object in `class` cannot be read: not restored, or its restore still running (from
    /// its `x-amz-restore` header), and how to restore it.
    fn not_restored(&self, bucket: &str, key: &str, class: &str) -> String {
        let restore = self
            .handle
            .block_on(self.s3().head_object().bucket(bucket).key(key).send())
            .ok()
            .and_then(|head| head.restore().map(str::to_owned));
        let day = Partition::in_path(key)
            .and_then(partition_date)
            .map(|d| d.to_string());
        match restore {
            Some(r) if r.contains("ongoing-request=\"true\"") => format!(
                "s3://{bucket}/{key} is in storage class {class} and its restore is still in \
                 progress: read it again once the restore completes (hours for GLACIER, up to 48 h \
                 for DEEP_ARCHIVE)"
            ),
            _ => format!(
                "s3://{bucket}/{key} is in storage class {class} and not restored: restore it \
                 first ({}, or `aws s3api restore-object --bucket {bucket} --key {key} \
                 --restore-request Days=7`), then read it once the restore completes",
                match day {
                    Some(day) => format!(
                        "`stripe-webhook restore s3://{bucket}/{} --from {day} --to {day}`",
                        key.split("year=").next().unwrap_or_default()
                    ),
                    None => "`stripe-webhook restore`".to_owned(),
                }
            ),
        }
    }

    /// Requests restores of the objects under `s3://bucket/prefix` whose partition is in `days`
    /// (all of them when `days` is unbounded) and whose storage class needs one
    /// ([`ARCHIVED_CLASSES`]), keeping each restored copy `keep_days` days. `visit` sees every
    /// object listed, with what was done.
    ///
    /// # Errors
    /// When the prefix cannot be listed.
    pub(crate) fn restore(
        &self,
        bucket: &str,
        prefix: &str,
        days: DayRange,
        keep_days: i32,
        tier: aws_sdk_s3::types::Tier,
        visit: &mut dyn FnMut(&str, Restored),
    ) -> Result<(), ArchiveError> {
        self.list_objects(bucket, prefix, None, &mut |object| {
            let Some(key) = object.key() else {
                return ControlFlow::Continue(());
            };
            let wanted = match Partition::in_path(key).and_then(partition_date) {
                Some(day) => days.contains(day),
                None => days.is_all(),
            };
            if wanted && !key.ends_with('/') {
                let archived = object
                    .storage_class()
                    .is_some_and(|c| ARCHIVED_CLASSES.contains(&c.as_str()));
                let outcome = if archived {
                    self.restore_one(bucket, key, keep_days, &tier)
                } else {
                    Restored::NotArchived
                };
                visit(key, outcome);
            }
            ControlFlow::Continue(())
        })
    }

    /// Requests a restore of one archived object unless it is restored or being restored.
    fn restore_one(
        &self,
        bucket: &str,
        key: &str,
        keep_days: i32,
        tier: &aws_sdk_s3::types::Tier,
    ) -> Restored {
        use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest};
        let client = self.s3();
        let head = self
            .handle
            .block_on(client.head_object().bucket(bucket).key(key).send());
        match head.map(|h| h.restore().map(str::to_owned)) {
            Err(e) => Restored::Failed(format!("head: {}", DisplayErrorContext(&e))),
            Ok(Some(r)) if r.contains("ongoing-request=\"true\"") => Restored::InProgress,
            Ok(Some(_)) => Restored::Available,
            Ok(None) => {
                let request = match GlacierJobParameters::builder().tier(tier.clone()).build() {
                    Ok(job) => RestoreRequest::builder()
                        .days(keep_days)
                        .glacier_job_parameters(job)
                        .build(),
                    Err(e) => return Restored::Failed(e.to_string()),
                };
                let sent = self.handle.block_on(
                    client
                        .restore_object()
                        .bucket(bucket)
                        .key(key)
                        .restore_request(request)
                        .send(),
                );
                match sent {
                    Ok(_) => Restored::Requested,
                    Err(e)
                        if e.as_service_error().and_then(|s| s.meta().code())
                            == Some("RestoreAlreadyInProgress") =>
                    {
                        Restored::InProgress
                    }
                    Err(e) => Restored::Failed(DisplayErrorContext(&e).to_string()),
                }
            }
        }
    }

    /// Fetches an oversize event's body and checks its length and SHA-256 against the pointer
    /// (reading at most one byte more than the pointer says).
    pub(crate) fn fetch_oversize(&self, pointer: &OversizePointer<'_>) -> Result<Vec<u8>, String> {
        let (bucket, key) = (&pointer.bucket, &pointer.key);
        let mut reader = self.open_s3(bucket, key)?;
        let mut body = Vec::with_capacity(usize::try_from(pointer.bytes).unwrap_or(0).min(1 << 26));
        (&mut reader)
            .take(pointer.bytes.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?;
        pointer.check(&body).map_err(|mismatch| match mismatch {
            OversizeMismatch::Length { expected, found } if found > expected => format!(
                "oversize body s3://{bucket}/{key} is more than {expected} bytes, the pointer says {expected}"
            ),
            other => format!("oversize body s3://{bucket}/{key}: {other}"),
        })?;
        Ok(body)
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

/// Lists segment files under `dir`, sorted by path, skipping files that are not (or not yet)
/// segments: dot files, `*.tmp`, `*.creating`, and an open `<stem>.ndjson` whose sealed
/// `<stem>.ndjson.gz` already exists (the same lines, mid-seal).
fn list_local(dir: &Path, top: bool, out: &mut Vec<(PathBuf, u64)>) -> io::Result<()> {
    let mut entries: Vec<(PathBuf, std::fs::Metadata)> = std::fs::read_dir(dir)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.metadata()?))))
        .collect::<io::Result<_>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, meta) in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if meta.is_dir() {
            if !(top && NON_RECORD_PREFIXES.contains(&name)) {
                list_local(&path, false, out)?;
            }
        } else if meta.is_file() && is_segment_name(&path, name) {
            out.push((path, meta.len()));
        }
    }
    Ok(())
}

/// Whether a path outside any partition, or in one of `partitions`.
fn in_partitions(path: &str, partitions: DayRange) -> bool {
    Partition::in_path(path)
        .and_then(partition_date)
        .is_none_or(|d| partitions.contains(d))
}

fn is_segment_name(path: &Path, name: &str) -> bool {
    let temporary = name.ends_with(".tmp") || name.ends_with(".creating");
    let mid_seal = name.ends_with(".ndjson") && path.with_file_name(format!("{name}.gz")).exists();
    !temporary && !mid_seal
}

/// A blocking [`Read`] over an S3 object body, driven on the runtime from a non-runtime thread.
struct S3Reader {
    handle: Handle,
    body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.block_on(self.body.read(buf))
    }
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
    fn lists_segments_in_order_and_skips_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = dir.path().join("year=2026/month=11/day=26");
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
            std::fs::write(day.join(name), b"").expect("write");
        }
        std::fs::write(dir.path().join("oversize/body.json"), b"{}").expect("write");
        let mut out = Vec::new();
        list_local(dir.path(), true, &mut out).expect("list");
        let names: Vec<String> = out
            .iter()
            .map(|(p, _)| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["1-x.ndjson.gz", "2-x.ndjson", "3-x.ndjson.gz"]);
    }
}
