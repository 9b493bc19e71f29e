//! A durable, append-only file of lines: the checkpoints of `replay` (ids delivered) and
//! `reconcile` (pages listed, missing events found, events fetched).
//!
//! Every [`AppendLog::append`] is written and `fdatasync`ed before it returns, and a new file's
//! directory entry is synced when it is created, so a line that was appended survives a crash.
//! A crash in the middle of an append leaves a torn last line (no `\n`): [`AppendLog::open`]
//! cuts it off, so what it returns is exactly the lines whose append completed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

/// An open append-only line file.
#[derive(Debug)]
pub(crate) struct AppendLog {
    file: File,
}

impl AppendLog {
    /// Opens (creating) `path` and reads its complete lines (without their `\n`), cutting off a
    /// torn last line.
    ///
    /// # Errors
    /// The file cannot be created, read, cut or synced.
    pub(crate) fn open(path: &Path) -> io::Result<(AppendLog, Vec<String>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        if !existed {
            // Make the new file's directory entry durable too.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
        }
        let (lines, complete, torn) = complete_lines(BufReader::new(&mut file))?;
        if torn {
            file.set_len(complete)?;
            file.sync_data()?;
        }
        Ok((AppendLog { file }, lines))
    }

    /// The complete lines of `path`, as [`AppendLog::open`] would return them, without creating
    /// the file, cutting a torn last line or opening it for writing: none if it does not exist.
    /// What a run plans from before it opens the log.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub(crate) fn read(path: &Path) -> io::Result<Vec<String>> {
        match File::open(path) {
            Ok(file) => complete_lines(BufReader::new(file)).map(|(lines, _, _)| lines),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Appends `line` (which must not contain `\n`) and a `\n`, and syncs them to disk before
    /// returning.
    ///
    /// # Errors
    /// The write or the sync failed (the line may or may not be there after a crash).
    pub(crate) fn append(&mut self, line: &str) -> io::Result<()> {
        debug_assert!(!line.contains('\n'), "one line at a time");
        self.file.write_all(format!("{line}\n").as_bytes())?;
        self.file.flush()?;
        self.file.sync_data()
    }
}

/// The complete lines of `reader` (without their `\n`), the length in bytes of the part they
/// take, and whether a torn last line (no `\n`) follows them.
fn complete_lines(mut reader: impl BufRead) -> io::Result<(Vec<String>, u64, bool)> {
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut complete: u64 = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok((lines, complete, false));
        }
        if line.pop() != Some(b'\n') {
            return Ok((lines, complete, true));
        }
        complete += n as u64;
        lines.push(String::from_utf8_lossy(&line).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        assert!(AppendLog::read(&path).expect("read").is_empty());
        assert!(!path.exists(), "read creates nothing");
        {
            let (mut log, lines) = AppendLog::open(&path).expect("open");
            assert!(lines.is_empty());
            log.append("evt_1").expect("append");
            log.append("{\"a\":1}").expect("append");
        }
        // A crash in the middle of an append leaves a torn last line.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"evt_3"))
            .expect("append");
        assert_eq!(
            AppendLog::read(&path).expect("read"),
            ["evt_1", "{\"a\":1}"],
            "the torn line is not read"
        );
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .ends_with("evt_3"),
            "nor cut"
        );
        let (mut log, lines) = AppendLog::open(&path).expect("reopen");
        assert_eq!(lines, ["evt_1", "{\"a\":1}"]);
        log.append("evt_4").expect("append");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "evt_1\n{\"a\":1}\nevt_4\n"
        );
        let (_, lines) = AppendLog::open(&path).expect("reopen");
        assert_eq!(lines.len(), 3);
    }
}
