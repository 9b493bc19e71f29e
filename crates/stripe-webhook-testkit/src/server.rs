//! Runs a real server binary on a free loopback port for a test, and stops it.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::http;

/// A running server process, killed on drop if still running.
#[derive(Debug)]
pub struct ServerProcess {
    /// The spawned process: the server, or the wrapper it runs under (`strace …`).
    child: Option<Child>,
    /// Whether `child` is a wrapper whose one child is the server (or that execs it in place).
    wrapped: bool,
    /// The server binary.
    bin: PathBuf,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The private metrics address (`METRICS_ADDR`, a free loopback port unless `envs` set it).
    pub metrics_addr: SocketAddr,
    log: PathBuf,
    _log_dir: tempfile_dir::Dir,
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
    /// Starts `bin` with `HOST=127.0.0.1`, `PORT=<free port>`, `METRICS_ADDR=127.0.0.1:<free
    /// port>` and `envs` (nothing else of the caller's `STRIPE_*`/`SINK`/`ARCHIVE_DIR`/… environment
    /// leaks in), then waits until `GET /health` answers 200.
    ///
    /// # Panics
    /// If it exits or is not healthy within 60 s; the panic carries its log.
    pub fn start(bin: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        Self::start_on_free_port(&[], bin, envs)
    }

    /// Like [`ServerProcess::start`], on a given port (for restarts on the same address).
    ///
    /// # Panics
    /// See [`ServerProcess::start`].
    pub fn start_on(bin: &Path, port: u16, envs: &[(&str, &str)]) -> ServerProcess {
        Self::spawn(&[], bin, port, envs).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Like [`ServerProcess::start`], with the binary run under `wrapper` (a program and its
    /// arguments, e.g. `strace -f -o log`; the binary's path is appended). The wrapper must run the
    /// server as its only child and exit with its status, as `strace` does, or exec it in place,
    /// as `setpriv` does; [`ServerProcess::pid`] and the signals go to the server itself.
    ///
    /// # Panics
    /// See [`ServerProcess::start`].
    pub fn start_under(wrapper: &[String], bin: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        assert!(!wrapper.is_empty(), "an empty wrapper command");
        Self::start_on_free_port(wrapper, bin, envs)
    }

    /// Starts on a port [`crate::free_port`] chose. Should something else still take that port
    /// between the choice and the server's bind, the server exits with "Address already in use";
    /// then it is started again on a fresh port (three tries in all). Any other failure panics at
    /// once.
    fn start_on_free_port(wrapper: &[String], bin: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        const TRIES: usize = 3;
        let mut failure = String::new();
        for _ in 0..TRIES {
            match Self::spawn(wrapper, bin, crate::free_port(), envs) {
                Ok(server) => return server,
                Err(lost) if lost.contains("Address already in use") => failure = lost,
                Err(other) => panic!("{other}"),
            }
        }
        panic!("the port was taken before the server bound it, {TRIES} times; last: {failure}")
    }

    /// Spawns the server and waits until it is healthy; `Err` carries why not and its log.
    fn spawn(
        wrapper: &[String],
        bin: &Path,
        port: u16,
        envs: &[(&str, &str)],
    ) -> Result<ServerProcess, String> {
        let dir = std::env::temp_dir().join(format!(
            "swh-server-log-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("create log dir");
        let log = dir.join("server.log");
        let log_file = File::create(&log).expect("create log file");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(bin);
                cmd
            }
        };
        for (key, _) in std::env::vars() {
            if key.starts_with("STRIPE_")
                || key.starts_with("FIREHOSE_")
                || key.starts_with("OVERSIZE_")
                || key.starts_with("ARCHIVE_")
                || key.starts_with("MEMORY_SINK_")
                || matches!(
                    key.as_str(),
                    "SINK"
                        | "ALLOW_MEMORY_SINK"
                        | "PORT"
                        | "HOST"
                        | "METRICS_ADDR"
                        | "MAX_BODY_BYTES"
                        | "LOG_FORMAT"
                )
            {
                cmd.env_remove(key);
            }
        }
        let metrics_addr = envs
            .iter()
            .find(|(key, _)| *key == "METRICS_ADDR")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], crate::free_port())));
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("METRICS_ADDR", metrics_addr.to_string())
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
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics_addr,
            log,
            _log_dir: tempfile_dir::Dir(dir),
        };
        server.wait_healthy(Duration::from_secs(60))?;
        Ok(server)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "server exited before it was healthy ({status}); log:\n{}",
                    self.logs()
                ));
            }
            if let Ok(r) = http::request(self.addr, "GET", "/health", &[], b"")
                && r.status == 200
            {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(format!(
                    "server not healthy within {timeout:?}; log:\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
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

/// Sends `signal` (`TERM`, `KILL`, …) to process `pid` with `kill(1)`; a process already gone is
/// not an error.
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}
