//! Fault injection for tests of real server processes: `strace` (trace syscalls, make them fail or
//! stall) and small `tmpfs` mounts (a disk that fills up and grows again), plus what a test reads
//! from `/proc`.
//!
//! Both tools need root (or ptrace and mount rights) and the Debian packages `strace` and `mount`,
//! which `./scripts/test` installs. A test that needs them fails with a message saying so; it
//! never skips.
//!
//! ```
//! let calls = stripe_webhook_testkit::faults::parse_strace(
//!     "41 1796000000.250000 fdatasync(7</a/b.ndjson>) = -1 EIO (Input/output error) (INJECTED)\n",
//! );
//! assert_eq!(calls[0].name, "fdatasync");
//! assert_eq!(calls[0].path.as_deref(), Some(std::path::Path::new("/a/b.ndjson")));
//! assert!(!calls[0].ok() && calls[0].injected());
//! ```

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Panics with a clear message unless `tool` runs (`tool --version` or `-V`).
///
/// # Panics
/// If the tool is missing.
pub fn require_tool(tool: &str, debian_package: &str) {
    let found = ["--version", "-V"].iter().any(|flag| {
        Command::new(tool)
            .arg(flag)
            .output()
            .is_ok_and(|out| out.status.success())
    });
    assert!(
        found,
        "this fault test needs `{tool}`, which is not installed: `apt-get install -y \
         --no-install-recommends {debian_package}` (./scripts/test installs it)"
    );
}

/// The wrapper command for [`ServerProcess::start_under`](crate::server::ServerProcess::start_under):
/// `strace` following every thread (`-f`), with absolute microsecond timestamps (`-ttt`), fd
/// paths decoded (`-y`), no attach/exit or signal lines, writing to `log`, with `filters` (e.g.
/// `["-e", "trace=fsync,fdatasync", "-e", "inject=fdatasync:error=EIO:when=2"]`). Read the log
/// with [`read_strace_log`].
///
/// Injected faults apply to the syscalls the filters select, so `-P <path>` (only syscalls on
/// that path, a directory's fd included) targets one file or directory. `when=N` counts the
/// selected calls of each thread separately (the file sink writes and seals on two threads).
///
/// # Panics
/// If `strace` is not installed.
pub fn strace(log: &Path, filters: &[&str]) -> Vec<String> {
    require_tool("strace", "strace");
    let mut args: Vec<String> = [
        "strace",
        "-f",
        "-qq",
        "-ttt",
        "-y",
        "-e",
        "signal=none",
        "-o",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(log.to_string_lossy().into_owned());
    args.extend(filters.iter().map(|s| (*s).to_owned()));
    args
}

/// One syscall from an `strace -f -ttt -y` log.
#[derive(Clone, Debug, PartialEq)]
pub struct Syscall {
    /// The thread that made it.
    pub tid: u32,
    /// When it was entered, in seconds since the Unix epoch.
    pub time: f64,
    /// The syscall's name (`fsync`, `fdatasync`, …).
    pub name: String,
    /// The path of its first argument when that is a file descriptor (`-y`).
    pub path: Option<PathBuf>,
    /// Everything after `=`: `0`, `-1 EIO (Input/output error) (INJECTED)`, `?` (never returned).
    pub result: String,
}

impl Syscall {
    /// It returned 0 or more.
    pub fn ok(&self) -> bool {
        self.result
            .split_whitespace()
            .next()
            .is_some_and(|r| r.parse::<i64>().is_ok_and(|n| n >= 0))
    }

    /// Its result was injected by strace.
    pub fn injected(&self) -> bool {
        self.result.contains("(INJECTED)")
    }
}

/// Reads and parses an strace log written by [`strace`].
///
/// # Panics
/// If the log cannot be read.
pub fn read_strace_log(log: &Path) -> Vec<Syscall> {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("read the strace log {}: {e}", log.display()));
    parse_strace(&text)
}

/// Parses `strace -f -ttt -y` output: `TID SECONDS name(args) = result`, joining the
/// `<unfinished ...>` / `<... name resumed>` halves of calls that interleaved with other threads.
/// Lines it does not understand are skipped.
pub fn parse_strace(text: &str) -> Vec<Syscall> {
    let mut calls = Vec::new();
    let mut unfinished: HashMap<u32, (f64, String, String)> = HashMap::new();
    for line in text.lines() {
        // `TID  SECONDS call`: strace pads the thread id with spaces.
        let Some((tid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((time, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let (Ok(tid), Ok(time)) = (tid.parse::<u32>(), time.parse::<f64>()) else {
            continue;
        };
        let rest = rest.trim_start();
        let (time, name, call) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((time, name, head)) = unfinished.remove(&tid) else {
                continue;
            };
            let tail = resumed.split_once("resumed>").map_or("", |(_, t)| t);
            (time, name, format!("{head}{tail}"))
        } else {
            let Some(paren) = rest.find('(') else {
                continue;
            };
            let name = rest[..paren].to_owned();
            if let Some(head) = rest.strip_suffix("<unfinished ...>") {
                unfinished.insert(tid, (time, name, head.trim_end().to_owned()));
                continue;
            }
            (time, name, rest.to_owned())
        };
        let Some(eq) = call.rfind(") = ").map(|i| i + 4) else {
            continue;
        };
        let args = &call[call.find('(').map_or(0, |i| i + 1)..];
        let path = args
            .split_once('<')
            .and_then(|(fd, rest)| fd.chars().all(|c| c.is_ascii_digit()).then_some(rest))
            .and_then(|rest| rest.split_once('>'))
            .map(|(path, _)| PathBuf::from(path));
        calls.push(Syscall {
            tid,
            time,
            name,
            path,
            result: call[eq..].trim().to_owned(),
        });
    }
    calls
}

/// Seconds since the Unix epoch now, as strace's `-ttt` prints them.
pub fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A `tmpfs` mounted for a test: a disk of a chosen size. Unmounted on drop (also when the test
/// panics; drop the processes using it first).
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=…`: `1m`, `64m`) on the existing directory `dir`.
    ///
    /// # Panics
    /// If `mount` is missing or fails (not root, no mount rights in this container); the message
    /// says so.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        require_tool("mount", "mount");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this fault test mounts a {size} tmpfs on {} and needs root (or mount rights): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Changes the size (`mount -o remount,size=…`), e.g. to give space back.
    ///
    /// # Panics
    /// If the remount fails.
    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {} with size={size}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Writes `name` in the mount until the file system is full (`ENOSPC`); returns the bytes
    /// written.
    ///
    /// # Panics
    /// On any other error.
    pub fn fill(&self, name: &str) -> u64 {
        let mut file = std::fs::File::create(self.dir.join(name)).expect("create the filler");
        let chunk = vec![b'x'; 4096];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => return written,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => return written, // ENOSPC
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("filling {}: {e}", self.dir.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a process of a failed test): detach it now, freed when unused.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// A `kB` figure of process `pid`'s `/proc/<pid>/status`: `field` is `VmRSS` (resident now),
/// `VmHWM` (peak resident), …; 0 when the process or the field is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The files process `pid` holds open although they were deleted (`/proc/<pid>/fd` links ending
/// in ` (deleted)`).
pub fn deleted_open_files(pid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.ends_with(" (deleted)"))
        .collect()
}

/// Waits up to `timeout` until process `pid` has exited (its main thread is a zombie or gone;
/// another thread may still be held by a tracer or stuck in the kernel). Returns how long that
/// took, or `None` if it still runs.
pub fn wait_until_exited(pid: u32, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // `pid (comm) S …`: the state follows the last `)`.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
            });
        if matches!(state.as_deref(), None | Some("Z" | "X")) {
            return Some(started.elapsed());
        }
        if started.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_split_and_injected_calls() {
        let log = "\
100  1796000000.100000 fsync(5</a/webhooks>) = 0
101 1796000000.200000 fdatasync(7</a/webhooks/x.ndjson> <unfinished ...>
100 1796000000.300000 fsync(6</a/webhooks/year=2027>) = -1 EIO (Input/output error) (INJECTED)
101 1796000000.400000 <... fdatasync resumed>) = 0
102 1796000000.500000 +++ exited with 0 +++
102 1796000000.600000 fdatasync(9</a/b c.ndjson>) = ?
";
        let calls = parse_strace(log);
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert_eq!(calls[0].path.as_deref(), Some(Path::new("/a/webhooks")));
        assert!(calls[0].ok() && !calls[0].injected());
        assert_eq!(calls[1].name, "fsync");
        assert!(!calls[1].ok() && calls[1].injected());
        // The resumed half keeps its entry time and fd.
        assert_eq!(calls[2].name, "fdatasync");
        assert_eq!(calls[2].tid, 101);
        assert!((calls[2].time - 1_796_000_000.2).abs() < 1e-6);
        assert_eq!(
            calls[2].path.as_deref(),
            Some(Path::new("/a/webhooks/x.ndjson"))
        );
        assert!(calls[2].ok());
        assert_eq!(calls[3].path.as_deref(), Some(Path::new("/a/b c.ndjson")));
        assert!(!calls[3].ok(), "never returned");
    }
}
