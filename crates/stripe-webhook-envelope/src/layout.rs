//! The archive layout, in one place: the prefixes, the `year=/month=/day=` partitions, the names
//! a segment has over its life, and which files a reader reads (docs/archive-layout.md).
//!
//! ```text
//! <ARCHIVE_DIR or s3://bucket>/
//!   webhooks/year=YYYY/month=MM/day=DD/<file>   records (ARCHIVE_PREFIX, Partition)
//!   oversize/…                                   oversize bodies, not records (OVERSIZE_PREFIX)
//!   errors/…                                     Firehose's error output, not records (ERROR_OUTPUT_PREFIX)
//! ```
//!
//! On local disk, `<file>` is a segment of the file sink; over its life it has these names
//! ([`SegmentRole`]), and a reader reads what [`classify`] says:
//!
//! | name                     | role                                                    | [`FileClass`] |
//! |--------------------------|---------------------------------------------------------|---------------|
//! | `<stem>.ndjson.creating` | being created; renamed to `.ndjson` once locked          | `Ignore`      |
//! | `<stem>.ndjson`          | open (appended to by its writer) or orphaned: unsealed   | `Open`        |
//! | `<stem>.ndjson.gz.tmp`   | gzip being written while sealing                         | `Ignore`      |
//! | `<stem>.ndjson.gz`       | sealed, gzip (appears complete, by rename)               | `Sealed`      |
//! | `<stem>.sealed.ndjson`   | sealed, uncompressed                                     | `Sealed`      |
//! | `.…` (dot files), `*.tmp`, `*.creating` | probes, directories set aside, temporaries | `Ignore`   |
//! | anything else            | not a segment name: a Firehose object copied from S3, a file put there by hand | `Other` |
//!
//! What readers read: a complete, stable view (exports, audits) reads [`FileClass::Sealed`]
//! only. A reader that also wants the newest records reads [`FileClass::Open`] segments too,
//! with two rules: skip a `<stem>.ndjson` whose `<stem>.ndjson.gz` exists (mid-seal: the same
//! lines), and drop a last line without `\n` (being written, or torn). [`list_partition`] and
//! [`list_archive`] apply the first rule and give the files in archive order; the second is the
//! reader's, as it reads.
//!
//! ```
//! use stripe_webhook_envelope::layout::{self, FileClass, SegmentRole};
//!
//! let stem = layout::segment_stem(1_795_731_281_123, 4242, 0x5f0c_2a9e_81d4_b373);
//! assert_eq!(stem, "1795731281123-4242-5f0c2a9e81d4b373");
//! let sealed = SegmentRole::Gz.file_name(&stem);
//! assert_eq!(sealed, "1795731281123-4242-5f0c2a9e81d4b373.ndjson.gz");
//! assert_eq!(layout::parse_segment_name(&sealed), Some((stem.as_str(), SegmentRole::Gz)));
//!
//! assert_eq!(layout::classify(&sealed), FileClass::Sealed);
//! assert_eq!(layout::classify(&SegmentRole::Open.file_name(&stem)), FileClass::Open);
//! assert_eq!(layout::classify(&SegmentRole::GzTmp.file_name(&stem)), FileClass::Ignore);
//! assert_eq!(layout::classify(".healthcheck-42-00ff"), FileClass::Ignore);
//! assert_eq!(layout::classify("stream-1-2026-11-26-23-58-01-x.gz"), FileClass::Other);
//! ```
//!
//! Listing a partition of a local archive in archive order (a forwarder or exporter walking the
//! days one by one: [`list_partitions`], then [`list_partition`] for each):
//!
//! ```
//! use stripe_webhook_envelope::ReceivedAt;
//! use stripe_webhook_envelope::layout::{self, FileClass};
//!
//! let archive_dir = tempfile::tempdir()?;
//! let day = ReceivedAt::from_unix_millis(1_795_731_281_123).partition();
//! let dir = layout::partition_dir(archive_dir.path(), day);
//! assert!(dir.ends_with("webhooks/year=2026/month=11/day=26"));
//! std::fs::create_dir_all(&dir)?;
//! for name in [
//!     "1795731281123-7-00.ndjson.gz",      // sealed
//!     "1795731290000-7-01.ndjson",         // mid-seal: its .ndjson.gz exists, so skipped
//!     "1795731290000-7-01.ndjson.gz",
//!     "1795731299999-7-02.ndjson",         // open: the newest records
//!     "1795731299999-8-03.ndjson.creating", // never read
//! ] {
//!     std::fs::write(dir.join(name), b"")?;
//! }
//! let files = layout::list_partition(&dir)?;
//! let read: Vec<(&str, FileClass)> = files
//!     .iter()
//!     .map(|f| (f.path.file_name().unwrap().to_str().unwrap(), f.class))
//!     .collect();
//! assert_eq!(read, [
//!     ("1795731281123-7-00.ndjson.gz", FileClass::Sealed),
//!     ("1795731290000-7-01.ndjson.gz", FileClass::Sealed),
//!     ("1795731299999-7-02.ndjson", FileClass::Open),
//! ]);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The archive prefix every record lives under, on S3 and on local disk.
pub const ARCHIVE_PREFIX: &str = "webhooks";

/// The default prefix of oversize event bodies (the Firehose sink's `OVERSIZE_S3_PREFIX`): each
/// object is one raw body, which a pointer record under [`ARCHIVE_PREFIX`] names. Not records.
pub const OVERSIZE_PREFIX: &str = "oversize";

/// The prefix of Firehose's error output (what it could not deliver, in its own JSON wrapper).
/// Not records.
pub const ERROR_OUTPUT_PREFIX: &str = "errors";

/// The top-level prefixes beside [`ARCHIVE_PREFIX`] that hold no records: a reader given a
/// whole bucket or archive directory skips them.
pub const NON_RECORD_PREFIXES: [&str; 2] = [OVERSIZE_PREFIX, ERROR_OUTPUT_PREFIX];

/// `<ARCHIVE_DIR>/webhooks`: the root of a local archive's partition tree.
pub fn archive_root(archive_dir: &Path) -> PathBuf {
    archive_dir.join(ARCHIVE_PREFIX)
}

/// `<ARCHIVE_DIR>/webhooks/year=YYYY/month=MM/day=DD`: where the file sink writes the records
/// received on `partition`'s day.
pub fn partition_dir(archive_dir: &Path, partition: Partition) -> PathBuf {
    archive_root(archive_dir)
        .join(format!("year={:04}", partition.year))
        .join(format!("month={:02}", partition.month))
        .join(format!("day={:02}", partition.day))
}

/// A UTC calendar day of the archive layout: `year=YYYY/month=MM/day=DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    /// Four-digit year.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of month, 1 to 31.
    pub day: u8,
}

impl fmt::Display for Partition {
    /// Formats the Hive-style path segment, without leading or trailing slash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "year={:04}/month={:02}/day={:02}",
            self.year, self.month, self.day
        )
    }
}

impl FromStr for Partition {
    type Err = ParsePartitionError;

    /// Parses exactly what [`Partition`]'s `Display` writes for the years 0000 to 9999:
    /// `year=YYYY/month=MM/day=DD`, a valid calendar date.
    ///
    /// ```
    /// use stripe_webhook_envelope::Partition;
    ///
    /// let p: Partition = "year=2026/month=11/day=26".parse()?;
    /// assert_eq!((p.year, p.month, p.day), (2026, 11, 26));
    /// assert_eq!(p.to_string(), "year=2026/month=11/day=26");
    /// assert!("year=2026/month=2/day=26".parse::<Partition>().is_err());
    /// assert!("year=2026/month=02/day=30".parse::<Partition>().is_err());
    /// # Ok::<(), stripe_webhook_envelope::ParsePartitionError>(())
    /// ```
    fn from_str(s: &str) -> Result<Partition, ParsePartitionError> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(year), Some(month), Some(day), None) => {
                Partition::from_components(year, month, day)
            }
            _ => None,
        }
        .ok_or(ParsePartitionError)
    }
}

impl Partition {
    /// The partition named by three consecutive components of a local path or an S3 key, e.g.
    /// `webhooks/year=2026/month=11/day=26/segment.ndjson.gz` (`/` or `\` separated); the
    /// first one if there are several, `None` if there is none.
    ///
    /// On local disk the file sink names a partition by each record's receipt date. On S3,
    /// Firehose names it by the arrival time of the *oldest* record in the object, so an object
    /// can hold records received on the next day: a reader selecting days widens its partition
    /// range and filters on each record's own `timestamp`.
    ///
    /// ```
    /// use stripe_webhook_envelope::Partition;
    ///
    /// let p = Partition::in_path("webhooks/year=2026/month=11/day=26/archive-1-2026-11-26-23-58-01-x.gz");
    /// assert_eq!(p.map(|p| p.to_string()).as_deref(), Some("year=2026/month=11/day=26"));
    /// assert_eq!(Partition::in_path("webhooks/year=2026/month=11/x.gz"), None);
    /// ```
    pub fn in_path(path: &str) -> Option<Partition> {
        split_at_partition(path).map(|(_, partition, _)| partition)
    }

    /// The partition of the path components `year=YYYY`, `month=MM` and `day=DD` (a valid date).
    fn from_components(year: &str, month: &str, day: &str) -> Option<Partition> {
        let digits = |part: &str, name: &str, width: usize| -> Option<u32> {
            let value = part.strip_prefix(name)?.strip_prefix('=')?;
            (value.len() == width && value.bytes().all(|d| d.is_ascii_digit()))
                .then(|| value.parse().ok())?
        };
        let year = i32::try_from(digits(year, "year", 4)?).ok()?;
        let month = u8::try_from(digits(month, "month", 2)?).ok()?;
        let day = u8::try_from(digits(day, "day", 2)?).ok()?;
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
        Some(Partition { year, month, day })
    }
}

/// Splits a local path or an S3 key (`/` or `\` separated) at its first partition: what comes
/// before it (empty, or ending in a separator), the partition, and what follows it (empty, or
/// starting with a separator). `None` if it names no partition.
///
/// ```
/// use stripe_webhook_envelope::layout::split_at_partition;
///
/// let (before, day, after) = split_at_partition("archive/webhooks/year=2026/month=11/day=26/x.gz").unwrap();
/// assert_eq!((before, day.to_string().as_str(), after), ("archive/webhooks/", "year=2026/month=11/day=26", "/x.gz"));
/// // A key relative to `webhooks/` that starts with its partition: keys after it sort by day.
/// assert_eq!(split_at_partition("year=2026/month=11/day=26/x.gz").unwrap().0, "");
/// assert_eq!(split_at_partition("webhooks/x.gz"), None);
/// ```
pub fn split_at_partition(path: &str) -> Option<(&str, Partition, &str)> {
    // (start, end) of every component, in bytes.
    let mut components = Vec::new();
    let mut start = 0;
    for (i, c) in path.char_indices() {
        if c == '/' || c == '\\' {
            components.push((start, i));
            start = i + 1;
        }
    }
    components.push((start, path.len()));
    components.windows(3).find_map(|w| {
        let part = |(from, to): (usize, usize)| &path[from..to];
        let partition = Partition::from_components(part(w[0]), part(w[1]), part(w[2]))?;
        Some((&path[..w[0].0], partition, &path[w[2].1..]))
    })
}

/// Why a text is not a `year=YYYY/month=MM/day=DD` partition.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[error("not an archive partition (expected `year=YYYY/month=MM/day=DD`, a valid date)")]
pub struct ParsePartitionError;

/// The unique stem of a segment: `<unix-millis>-<pid>-<random as 16 lowercase hex digits>`, the
/// wall-clock time it was created, the writing process's id and 64 random bits. Unique across
/// processes and restarts, so several processes may share one `ARCHIVE_DIR`; names sort by
/// creation time to the millisecond (13 digits until the year 2286).
pub fn segment_stem(unix_millis: u128, pid: u32, random: u64) -> String {
    format!("{unix_millis}-{pid}-{random:016x}")
}

/// The names a segment has over its life in its partition directory: `<stem><suffix>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentRole {
    /// `<stem>.ndjson.creating`: being created, an empty file renamed to `.ndjson` once its lock
    /// is taken. Never read.
    Creating,
    /// `<stem>.ndjson`: open (appended to by its writer, which holds an exclusive `flock`) or
    /// orphaned (its writer is gone) until the next start seals it.
    Open,
    /// `<stem>.ndjson.gz.tmp`: gzip output being written while sealing. Never read.
    GzTmp,
    /// `<stem>.ndjson.gz`: sealed, gzip; appears complete, by rename.
    Gz,
    /// `<stem>.sealed.ndjson`: sealed, uncompressed (a file sink configured without compression).
    SealedPlain,
}

impl SegmentRole {
    /// Every role, longest suffix first (`.sealed.ndjson` and `.ndjson.gz.tmp` end like shorter
    /// ones): the order to match names in.
    pub const ALL: [SegmentRole; 5] = [
        SegmentRole::GzTmp,
        SegmentRole::Gz,
        SegmentRole::Creating,
        SegmentRole::SealedPlain,
        SegmentRole::Open,
    ];

    /// The suffix after the stem.
    pub const fn suffix(self) -> &'static str {
        match self {
            SegmentRole::Creating => ".ndjson.creating",
            SegmentRole::Open => ".ndjson",
            SegmentRole::GzTmp => ".ndjson.gz.tmp",
            SegmentRole::Gz => ".ndjson.gz",
            SegmentRole::SealedPlain => ".sealed.ndjson",
        }
    }

    /// The file name of the segment `stem` in this role.
    pub fn file_name(self, stem: &str) -> String {
        format!("{stem}{}", self.suffix())
    }

    /// Whether and how readers read a file in this role.
    pub const fn class(self) -> FileClass {
        match self {
            SegmentRole::Creating | SegmentRole::GzTmp => FileClass::Ignore,
            SegmentRole::Open => FileClass::Open,
            SegmentRole::Gz | SegmentRole::SealedPlain => FileClass::Sealed,
        }
    }
}

/// Splits a segment file name into its stem and role; `None` for names that are not segments
/// (no segment suffix, an empty stem, or a dot file).
pub fn parse_segment_name(name: &str) -> Option<(&str, SegmentRole)> {
    let (stem, role) = SegmentRole::ALL
        .into_iter()
        .find_map(|role| name.strip_suffix(role.suffix()).map(|stem| (stem, role)))?;
    (!stem.is_empty() && !stem.starts_with('.')).then_some((stem, role))
}

/// What a reader does with a file in the archive, judging by its name ([`classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileClass {
    /// A sealed segment (`.ndjson.gz`, `.sealed.ndjson`): complete and stable, never changes.
    Sealed,
    /// An open segment (`<stem>.ndjson`): the newest records. May grow, may end in a partial
    /// line (drop a last line without `\n`), and is skipped when its `<stem>.ndjson.gz` exists
    /// (mid-seal: the same lines). It disappears once sealed; its lines are then in
    /// `<stem>.ndjson.gz` (or `<stem>.sealed.ndjson`).
    Open,
    /// Not a segment name: a Firehose object (on S3, or copied from it), or a file put there by
    /// hand. Complete as far as the layout knows: the operator CLI reads it (gzip or plain by
    /// its content); a reader of the file sink's own archive may skip it.
    Other,
    /// Never read: dot files (the sink's probes and directories set aside), `*.tmp` and
    /// `*.creating` (being written).
    Ignore,
}

/// Whether and how a reader reads the file `name` (a file name, not a path): see [`FileClass`].
pub fn classify(name: &str) -> FileClass {
    if name.is_empty()
        || name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with(".creating")
    {
        return FileClass::Ignore;
    }
    match parse_segment_name(name) {
        Some((_, role)) => role.class(),
        None => FileClass::Other,
    }
}

/// A file a reader reads, as listed by [`list_partition`] or [`list_archive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveFile {
    /// Its path.
    pub path: PathBuf,
    /// Its class: [`FileClass::Sealed`], [`FileClass::Open`] or [`FileClass::Other`], never
    /// [`FileClass::Ignore`].
    pub class: FileClass,
    /// Its segment stem and role when its name is a segment's (`None` for [`FileClass::Other`]):
    /// an open segment and the sealed file it becomes share the stem, and hold the same bytes.
    pub segment: Option<(String, SegmentRole)>,
    /// Its length when listed (an open segment may have grown since).
    pub len: u64,
}

/// The partition directories (`year=YYYY/month=MM/day=DD`) of the local archive in
/// `archive_dir`, in day order, with their paths; empty when there is no `webhooks/` yet.
/// Directories that do not name a valid partition, and dot directories, are left out.
///
/// ```
/// use stripe_webhook_envelope::layout;
///
/// let archive_dir = tempfile::tempdir()?;
/// for day in ["year=2026/month=12/day=01", "year=2026/month=11/day=30", "year=2026/month=11/day=31"] {
///     std::fs::create_dir_all(layout::archive_root(archive_dir.path()).join(day))?;
/// }
/// let days: Vec<String> = layout::list_partitions(archive_dir.path())?
///     .into_iter()
///     .map(|(partition, _)| partition.to_string())
///     .collect();
/// assert_eq!(days, ["year=2026/month=11/day=30", "year=2026/month=12/day=01"]);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// When `webhooks/` or a directory under it cannot be read.
pub fn list_partitions(archive_dir: &Path) -> io::Result<Vec<(Partition, PathBuf)>> {
    fn dirs(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str()
                && !name.starts_with('.')
                && entry.file_type()?.is_dir()
            {
                out.push((name.to_owned(), entry.path()));
            }
        }
        Ok(out)
    }
    let root = archive_root(archive_dir);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (year, year_dir) in dirs(&root)? {
        for (month, month_dir) in dirs(&year_dir)? {
            for (day, day_dir) in dirs(&month_dir)? {
                if let Some(partition) = Partition::from_components(&year, &month, &day) {
                    out.push((partition, day_dir));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The files to read in one directory (a partition: `…/webhooks/year=YYYY/month=MM/day=DD`),
/// in archive order, not descending into subdirectories: sealed and open segments and other
/// files, without what is never read ([`FileClass::Ignore`]) and without an open
/// `<stem>.ndjson` whose `<stem>.ndjson.gz` exists (mid-seal: the same lines).
///
/// Archive order is by file name: for the file sink's segments, the order in which they were
/// created (to the millisecond; see [`segment_stem`]). Segments of several processes sharing a
/// directory overlap in time, so it is not the order of every record across segments; within a
/// segment, lines are in the order they were acknowledged.
///
/// A listing is a snapshot: an open segment listed here may be sealed (and its `.ndjson` gone)
/// before it is opened; its lines are then in its `.ndjson.gz`, which the next listing gives.
///
/// A directory that does not exist (a day with no records yet) lists as empty.
///
/// # Errors
/// When `dir` cannot be read.
pub fn list_partition(dir: &Path) -> io::Result<Vec<ArchiveFile>> {
    let mut out = Vec::new();
    match walk(dir, Descend::No, &mut out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => Ok(Vec::new()),
        Err(e) => Err(e),
        Ok(()) => Ok(out),
    }
}

/// The files to read under `root` (an archive's `webhooks/` directory, a partition, or any
/// directory of a local archive), as [`list_partition`] lists each directory, descending into
/// every subdirectory that is not a dot directory, and skipping [`NON_RECORD_PREFIXES`]
/// directly under `root`. Sorted by path: day by day, in archive order within a day.
///
/// # Errors
/// When a directory cannot be read.
pub fn list_archive(root: &Path) -> io::Result<Vec<ArchiveFile>> {
    let mut out = Vec::new();
    walk(root, Descend::Top, &mut out)?;
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Descend {
    No,
    Top,
    Below,
}

fn walk(dir: &Path, descend: Descend, out: &mut Vec<ArchiveFile>) -> io::Result<()> {
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
            let skipped = descend == Descend::Top && NON_RECORD_PREFIXES.contains(&name);
            if descend != Descend::No && !skipped {
                walk(&path, Descend::Below, out)?;
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let class = classify(name);
        let segment = parse_segment_name(name);
        let mid_seal = match segment {
            Some((stem, SegmentRole::Open)) => path
                .with_file_name(SegmentRole::Gz.file_name(stem))
                .exists(),
            _ => false,
        };
        if class != FileClass::Ignore && !mid_seal {
            out.push(ArchiveFile {
                segment: segment.map(|(stem, role)| (stem.to_owned(), role)),
                path,
                class,
                len: meta.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_from_their_text_and_from_paths() {
        let p: Partition = "year=2026/month=11/day=26".parse().unwrap();
        assert_eq!(
            p,
            Partition {
                year: 2026,
                month: 11,
                day: 26
            }
        );
        for bad in [
            "year=2026/month=11/day=26/",
            "year=2026/month=11",
            "year=26/month=11/day=26",
            "year=2026/month=11/day=31",
            "year=2026/month=00/day=01",
            "year=2026/day=26/month=11",
            "year=+026/month=11/day=26",
        ] {
            assert_eq!(bad.parse::<Partition>(), Err(ParsePartitionError), "{bad}");
        }
        assert_eq!(
            Partition::in_path(
                "s3-key/errors/x/year=2026/month=11/day=26/a/year=2027/month=01/day=01/b"
            ),
            Some(p),
            "the first partition"
        );
        assert_eq!(
            Partition::in_path(r"C:\archive\webhooks\year=2026\month=11\day=26\s.gz"),
            Some(p)
        );
        assert_eq!(
            Partition::in_path("webhooks/year=2026/month=11/day=32/s.gz"),
            None
        );
        assert_eq!(NON_RECORD_PREFIXES, ["oversize", "errors"]);
    }

    #[test]
    fn split_at_partition_gives_what_surrounds_it() {
        let p = Partition {
            year: 2026,
            month: 11,
            day: 26,
        };
        assert_eq!(
            split_at_partition("year=2026/month=11/day=26"),
            Some(("", p, ""))
        );
        assert_eq!(
            split_at_partition("b/webhooks/year=2026/month=11/day=26/"),
            Some(("b/webhooks/", p, "/"))
        );
        assert_eq!(
            split_at_partition("x/year=2026/month=11/day=31/year=2026/month=11/day=26/s"),
            Some(("x/year=2026/month=11/day=31/", p, "/s"))
        );
        assert_eq!(split_at_partition(""), None);
        assert_eq!(split_at_partition("year=2026/month=11"), None);
    }

    #[test]
    fn partition_dir_is_the_partition_under_webhooks() {
        let p: Partition = "year=2027/month=01/day=05".parse().unwrap();
        assert_eq!(
            partition_dir(Path::new("/a"), p),
            Path::new("/a/webhooks/year=2027/month=01/day=05")
        );
    }

    #[test]
    fn segment_names_round_trip_and_classify() {
        let stem = segment_stem(1, 2, 3);
        assert_eq!(stem, "1-2-0000000000000003");
        for role in SegmentRole::ALL {
            let name = role.file_name(&stem);
            assert_eq!(parse_segment_name(&name), Some((stem.as_str(), role)));
            assert_eq!(classify(&name), role.class(), "{name}");
        }
        for name in [
            ".healthcheck-1-2",
            ".ndjson",
            ".x.ndjson.gz",
            ".day=01.remake-1-2",
        ] {
            assert_eq!(parse_segment_name(name), None, "{name}");
            assert_eq!(classify(name), FileClass::Ignore, "{name}");
        }
        assert_eq!(classify("a.json.tmp"), FileClass::Ignore);
        assert_eq!(classify("a.creating"), FileClass::Ignore);
        assert_eq!(classify(""), FileClass::Ignore);
        assert_eq!(parse_segment_name("notes.txt"), None);
        assert_eq!(classify("notes.txt"), FileClass::Other);
        assert_eq!(classify("stream-1-2026-11-26-x.gz"), FileClass::Other);
    }

    fn names(files: &[ArchiveFile], root: &Path) -> Vec<String> {
        files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn lists_what_readers_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let day = root.join("year=2026/month=11/day=26");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::create_dir_all(root.join("oversize/year=2026/month=11/day=26")).unwrap();
        std::fs::create_dir_all(root.join(".webhooks.remake-1-2")).unwrap();
        for name in [
            "2-x.ndjson",
            "1-x.ndjson.gz",
            "3-x.ndjson",
            "3-x.ndjson.gz",
            "4-x.ndjson.gz.tmp",
            "5-x.ndjson.creating",
            "6-x.sealed.ndjson",
            "firehose-object.gz",
            ".hidden",
        ] {
            std::fs::write(day.join(name), b"x").unwrap();
        }
        std::fs::write(
            root.join("oversize/year=2026/month=11/day=26/b.json"),
            b"{}",
        )
        .unwrap();
        std::fs::write(root.join(".webhooks.remake-1-2/1-x.ndjson.gz"), b"").unwrap();
        let all = list_archive(root).unwrap();
        assert_eq!(
            names(&all, root),
            [
                "year=2026/month=11/day=26/1-x.ndjson.gz",
                "year=2026/month=11/day=26/2-x.ndjson",
                "year=2026/month=11/day=26/3-x.ndjson.gz",
                "year=2026/month=11/day=26/6-x.sealed.ndjson",
                "year=2026/month=11/day=26/firehose-object.gz",
            ]
        );
        assert_eq!(
            all.iter().map(|f| f.class).collect::<Vec<_>>(),
            [
                FileClass::Sealed,
                FileClass::Open,
                FileClass::Sealed,
                FileClass::Sealed,
                FileClass::Other
            ]
        );
        assert!(all.iter().all(|f| f.len == 1));
        assert_eq!(
            all.iter()
                .map(|f| f
                    .segment
                    .as_ref()
                    .map(|(stem, role)| (stem.as_str(), *role)))
                .collect::<Vec<_>>(),
            [
                Some(("1-x", SegmentRole::Gz)),
                Some(("2-x", SegmentRole::Open)),
                Some(("3-x", SegmentRole::Gz)),
                Some(("6-x", SegmentRole::SealedPlain)),
                None
            ]
        );
        assert_eq!(list_partition(&day).unwrap(), all);
        assert_eq!(list_partition(root).unwrap(), [], "no descent");
        assert_eq!(list_partition(&root.join("missing")).unwrap(), []);
        assert!(
            list_partition(&day.join("1-x.ndjson.gz")).is_err(),
            "not a directory"
        );
    }
}
