//! Runs a real server binary for a test on a loopback port the kernel picks (`PORT=0`), learns
//! the port from the server's start-up log line, and stops it.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::http;

/// How long a server may take from its spawn to its first healthy `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's start-up log line for its public listener, logged once it accepts, with the bound
/// address in its `address` field (`stripe_webhook_server::serve`).
const LISTENING: &str = "listening: POST /webhook/stripe";
/// The start-up log line for the metrics listener, logged before [`LISTENING`] when metrics are
/// served.
const METRICS_LISTENING: &str = "metrics: GET /metrics";

/// `bin` (a server binary) as a command with a cleared environment, run in the system's temporary
/// directory so that no `.env` file near the test (a developer's) is read: for a test that runs
/// it once (`--help`, a refused start) and adds what it needs.
pub fn command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear().current_dir(std::env::temp_dir());
    cmd
}

/// A running server process, killed on drop if still running.
#[derive(Debug)]
pub struct ServerProcess {
    /// The spawned process: the server, or the wrapper it runs under (`strace …`).
    child: Option<Child>,
    /// Whether `child` is a wrapper whose one child is the server (or that execs it in place).
    wrapped: bool,
    /// The server binary.
    bin: PathBuf,
    /// The address it listens on (the one its start-up log line gives).
    pub addr: SocketAddr,
    /// The private metrics address, unless `METRICS_ADDR=off`.
    metrics_addr: Option<SocketAddr>,
    log: PathBuf,
    _scratch: tempfile_dir::Dir,
}

mod tempfile_dir {
    use std::path::PathBuf;

    /// A scratch directory removed on drop (kept small: std only).
    #[derive(Debug)]
    pub(crate) struct Dir(pub(crate) PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl ServerProcess {
    /// Starts `bin` with a cleared environment holding only `HOST=127.0.0.1`, `PORT=0`,
    /// `METRICS_ADDR=127.0.0.1:0`, `RUST_LOG=info` and `envs` (which win), in an empty scratch
    /// working directory (so no `.env` file is read); takes the addresses it bound from its
    /// start-up log lines, then waits until `GET /health` answers 200.
    ///
    /// # Panics
    /// If it exits or is not healthy within 60 s; the panic carries its log.
    pub fn start(bin: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        Self::spawn(&[], None, bin, envs)
    }

    /// Like [`ServerProcess::start`], in the working directory `dir` (where the server reads a
    /// `.env` file and resolves relative paths).
    ///
    /// # Panics
    /// See [`ServerProcess::start`].
    pub fn start_in(dir: &Path, bin: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        Self::spawn(&[], Some(dir), bin, envs)
    }

    /// Like [`ServerProcess::start`], with the binary run under `wrapper` (a program and its
    /// arguments, e.g. `strace -f -o log`; the binary's path is appended), which is looked up on
    /// the caller's `PATH` and gets that `PATH` too. The wrapper must run the server as its only
    /// child and exit with its status, as `strace` does, or exec it in place, as `setpriv` does;
    /// [`ServerProcess::pid`] and the signals go to the server itself.
    ///
    /// # Panics
    /// See [`ServerProcess::start`].
    pub fn start_under(wrapper: &[String], bin: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        assert!(!wrapper.is_empty(), "an empty wrapper command");
        Self::spawn(wrapper, None, bin, envs)
    }

    /// Spawns the server and waits until it is healthy.
    fn spawn(
        wrapper: &[String],
        dir: Option<&Path>,
        bin: &Path,
        envs: &[(&str, &str)],
    ) -> ServerProcess {
        let scratch = std::env::temp_dir().join(format!(
            "swh-server-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        let work = scratch.join("work");
        std::fs::create_dir_all(&work).expect("create the server's scratch directory");
        let log = scratch.join("server.log");
        let log_file = File::create(&log).expect("create log file");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(bin);
                cmd
            }
        };
        cmd.env_clear();
        if !wrapper.is_empty()
            && let Some(path) = std::env::var_os("PATH")
        {
            cmd.env("PATH", path);
        }
        cmd.current_dir(dir.unwrap_or(&work))
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file);
        let child = cmd.spawn().unwrap_or_else(|e| match wrapper.first() {
            Some(program) => panic!("spawn {program} (running {}): {e}", bin.display()),
            None => panic!("spawn {}: {e}", bin.display()),
        });
        let mut server = ServerProcess {
            child: Some(child),
            wrapped: !wrapper.is_empty(),
            bin: bin.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            log,
            _scratch: tempfile_dir::Dir(scratch),
        };
        if let Err(failure) = server.wait_started() {
            panic!("{failure}");
        }
        server
    }

    /// Waits for the start-up line that gives the bound address, then for `GET /health` 200.
    fn wait_started(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let within = |what: &str, server: &mut ServerProcess| -> Result<(), String> {
            if let Some(status) = server.exit_status() {
                return Err(format!(
                    "server exited ({status}) before it was {what}; log:\n{}",
                    server.logs()
                ));
            }
            if started.elapsed() >= START_TIMEOUT {
                return Err(format!(
                    "server not {what} within {START_TIMEOUT:?}; log:\n{}",
                    server.logs()
                ));
            }
            Ok(())
        };
        self.addr = loop {
            let logs = self.logs();
            if let Some(addr) = logged_address(&logs, LISTENING) {
                self.metrics_addr = logged_address(&logs, METRICS_LISTENING);
                break addr;
            }
            within("listening", self)?;
            std::thread::sleep(Duration::from_millis(20));
        };
        loop {
            if let Ok(r) = http::request(self.addr, "GET", "/health", &[], b"")
                && r.status == 200
            {
                return Ok(());
            }
            within("healthy", self)?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The spawned process's exit status, once it exited.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The private metrics address (`METRICS_ADDR`, a loopback port the kernel picked unless
    /// `envs` set it).
    ///
    /// # Panics
    /// If the server serves no metrics (`METRICS_ADDR=off`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .expect("the server serves no metrics (METRICS_ADDR=off)")
    }

    /// Waits until the server's log contains `text` (a state the test needs reached, such as
    /// `shutting down` after a signal).
    ///
    /// # Panics
    /// If `text` does not appear within `within`, or the process exits without logging it; the
    /// panic carries the log.
    pub fn wait_for_log(&mut self, text: &str, within: Duration) {
        let started = Instant::now();
        loop {
            // Read the status first: a process that exited has written its whole log.
            let exited = self.exit_status();
            let logs = self.logs();
            if logs.contains(text) {
                return;
            }
            if let Some(status) = exited {
                panic!("server exited ({status}) without logging {text:?}; log:\n{logs}");
            }
            assert!(
                started.elapsed() < within,
                "server did not log {text:?} within {within:?}; log:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id (not its wrapper's); 0 once it was stopped.
    pub fn pid(&self) -> u32 {
        let Some(child) = self.child.as_ref() else {
            return 0;
        };
        if !self.wrapped {
            return child.id();
        }
        let children = format!("/proc/{0}/task/{0}/children", child.id());
        let first_child = std::fs::read_to_string(&children)
            .ok()
            .and_then(|list| list.split_whitespace().next()?.parse().ok());
        // A wrapper that execs the server in place (`setpriv …`) is the server.
        let execed = || {
            let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).ok();
            exe.is_some() && exe == std::fs::canonicalize(&self.bin).ok()
        };
        match first_child {
            Some(pid) => pid,
            None if execed() => child.id(),
            None => 0,
        }
    }

    /// Sends `signal` (a name for `kill`, e.g. `TERM`) to the server without waiting.
    ///
    /// # Panics
    /// If the server is not running.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        assert_ne!(pid, 0, "the server is not running");
        send_signal(pid, signal);
    }

    /// Sends SIGTERM and waits (up to 60 s) for the process to exit.
    ///
    /// # Panics
    /// If it does not exit in time.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let status = self.signal_and_wait("TERM");
        (status, self.logs())
    }

    /// Waits (up to 60 s) for a process that was already signalled by the test to exit.
    ///
    /// # Panics
    /// If it does not exit in time.
    pub fn terminate_after_signal(mut self) -> (ExitStatus, String) {
        let status = self.signal_and_wait("0");
        (status, self.logs())
    }

    /// Sends SIGKILL and waits.
    pub fn kill(mut self) -> String {
        let _ = self.signal_and_wait("KILL");
        self.logs()
    }

    fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let pid = self.pid();
        let mut child = self.child.take().expect("process already stopped");
        // 0 would mean "the whole process group": a wrapped server that already exited.
        if pid != 0 {
            send_signal(pid, signal);
        }
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!(
                    "server did not exit within 60 s of SIG{signal}; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.wrapped && self.child.is_some() {
            let server = self.pid();
            if server != 0 {
                send_signal(server, "KILL");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `address` field of the first log line carrying `message`, in the server's JSON log format
/// (`"address":"127.0.0.1:43121"`) or its pretty one (`address=127.0.0.1:43121`).
fn logged_address(logs: &str, message: &str) -> Option<SocketAddr> {
    logs.lines()
        .filter(|line| line.contains(message))
        .find_map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(json) => json["address"].as_str()?.parse().ok(),
                Err(_) => line
                    .split_once(" address=")?
                    .1
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok(),
            },
        )
}

/// Sends `signal` (`TERM`, `KILL`, …) to process `pid` with `kill(1)`; a process already gone is
/// not an error.
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_address_is_read_from_either_log_format() {
        let json = concat!(
            r#"{"timestamp":"2026-12-06T10:00:00.000Z","level":"INFO","address":"127.0.0.1:9464","message":"metrics: GET /metrics (Prometheus text format)"}"#,
            "\n",
            r#"{"timestamp":"2026-12-06T10:00:00.001Z","level":"INFO","address":"127.0.0.1:43121","sink":"file","message":"listening: POST /webhook/stripe, GET /health"}"#,
            "\n",
        );
        assert_eq!(
            logged_address(json, LISTENING),
            Some(SocketAddr::from(([127, 0, 0, 1], 43121)))
        );
        assert_eq!(
            logged_address(json, METRICS_LISTENING),
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let pretty = "2026-12-06T10:00:00.001Z  INFO stripe_webhook_server: listening: POST \
                      /webhook/stripe, GET /health address=[::1]:3001 sink=\"file\"\n";
        assert_eq!(
            logged_address(pretty, LISTENING),
            Some("[::1]:3001".parse().expect("addr"))
        );
        // A line still being written, or no such line yet.
        let torn = r#"{"level":"INFO","message":"listening: POST /webhook/stripe, GET /health","address":"127.0.0.1:4"#;
        assert_eq!(logged_address(torn, LISTENING), None);
        assert_eq!(logged_address(json, "no such message"), None);
    }
}
