//! Test support shared by the workspace's integration tests.
//!
//! - [`python`]: the pinned Python tools (Stripe's SDK, moto, cfn-lint, DuckDB, cargo-lambda),
//!   installed on first use into the git-ignored `.venv` by `scripts/venv.sh`. A test that needs them
//!   never skips: it installs them or fails with the installer's message.
//! - [`server`]: the real server binary on a port it picks, started with a cleared environment.
//! - [`wait`]: waiting for a state a test needs, polled with a deadline, instead of sleeping.
//! - [`seeded_rng`]: the random source of a randomised test, its seed printed and replayable.
//! - [`free_port`]: a port chosen in advance, for a third-party helper server that must be told
//!   its port (our own servers take `PORT=0` and report theirs).
//! - [`aws_client_env`] and [`env_pairs`]: the environment that points an AWS client at an
//!   emulator ([`moto`] or [`firehose_fault`]) and nothing else.
//! - [`faults`]: `strace` fault injection and small `tmpfs` mounts for tests of real processes.
//! - [`workspace_root`]: the repository root, for fixtures and scripts.
//! - [`webhook_target`]: a scripted, recording webhook target (plain or over a test's TLS).
//! - [`forward_target`]: a webhook target answering each request as the test decides (statuses,
//!   hangs, closed connections), for the forwarder.
//! - [`fake_stripe`]: a fake of Stripe's event, account and key endpoints, with scripted faults.
//!
//! ```
//! let root = stripe_webhook_testkit::workspace_root();
//! assert!(root.join("Cargo.toml").exists());
//! ```

pub mod archive;
pub mod fake_stripe;
pub mod faults;
pub mod firehose_fault;
pub mod forward_target;
pub mod http;
pub mod lambda_runtime_api;
pub mod moto;
pub mod server;
pub mod signing;
pub mod sqs_fault;
pub mod wait;
pub mod webhook_target;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// A loopback port that was free a moment ago, for a third-party helper server that must be told
/// its port before it starts and does not report one the kernel picked (`moto_server -p`,
/// `cargo lambda watch --invoke-port`). The workspace's own servers take port 0 and report the
/// port they bound instead ([`server::ServerProcess`]), which leaves nothing to race.
///
/// Ports come from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), never from
/// it: a port that `bind(0)` handed out and released is in that range, where any client socket
/// (a test opening ten thousand connections beside this one) can take it as its local port before
/// the server binds it, and the server then fails with "address in use". Below the range only a
/// listener can take a port. A process-wide cursor, starting at an offset drawn from the process id
/// and the clock, never hands out the same port twice in one process, and each candidate is checked
/// by binding it.
///
/// # Panics
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static CURSOR: OnceLock<AtomicU32> = OnceLock::new();

    let ephemeral_low = ephemeral_low().unwrap_or(32_768);
    let Some(span) = ephemeral_low
        .checked_sub(LOWEST)
        .filter(|span| *span >= 1_000)
    else {
        // No room below the ephemeral range: fall back to the kernel's choice.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        return listener.local_addr().expect("local addr").port();
    };
    let cursor = CURSOR.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        AtomicU32::new(std::process::id().wrapping_mul(7_919).wrapping_add(nanos))
    });
    for _ in 0..span {
        let candidate = LOWEST + cursor.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(candidate).expect("below the ephemeral range fits in u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOWEST}..{ephemeral_low}");
}

/// The lowest port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where client
/// sockets take their local ports.
fn ephemeral_low() -> Option<u32> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// The random source of a randomised test: seeded from the environment variable `var` when it is
/// set (decimal or `0x` hex), to replay a run, else from fresh entropy. The seed is printed either
/// way (the test harness shows it with a failing test's output), with the variable that replays
/// it. What the seed decides replays exactly; threads and timing around it may still differ.
///
/// # Panics
/// If `var` is set but not a number.
pub fn seeded_rng(var: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let seed = match std::env::var(var) {
        Ok(value) => {
            let trimmed = value.trim();
            let parsed = match trimmed.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => trimmed.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{var}={value:?} is not a seed (u64, or 0x hex): {e}"))
        }
        Err(_) => rand::random(),
    };
    eprintln!("random seed {seed:#x}: replay with {var}={seed:#x}");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Environment for an AWS client (the SDK in a test, or a binary under test) that talks only to
/// the emulator at `endpoint`: static test credentials, region [`moto::REGION`], the instance
/// metadata service off (so nothing waits on a credential lookup), and `AWS_ENDPOINT_URL`.
pub fn aws_client_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_SESSION_TOKEN", "testing".to_owned()),
        ("AWS_REGION", moto::REGION.to_owned()),
        ("AWS_DEFAULT_REGION", moto::REGION.to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
    ]
}

/// `base` (owned values, such as [`aws_client_env`]'s) followed by `extra`, as the `(&str, &str)`
/// pairs [`server::ServerProcess::start`] and `Command::envs` take.
pub fn env_pairs<'a>(
    base: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.iter()
        .map(|(key, value)| (*key, value.as_str()))
        .chain(extra.iter().copied())
        .collect()
}

/// Which pinned Python environment a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PythonEnv {
    /// `.venv`: stripe, moto, cfn-lint, duckdb, python-hcl2, cargo-lambda.
    Test,
    /// `.venv-checkov`: checkov alone (it pins many libraries of its own).
    Checkov,
}

impl PythonEnv {
    fn arg(self) -> &'static str {
        match self {
            PythonEnv::Test => "test",
            PythonEnv::Checkov => "checkov",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            PythonEnv::Test => ".venv",
            PythonEnv::Checkov => ".venv-checkov",
        }
    }
}

/// The `bin/` directory of a pinned Python environment, installing it first if needed.
///
/// # Panics
/// With the installer's message if the environment cannot be installed: a test that needs these tools
/// fails rather than skips.
pub fn python_bin_dir(env: PythonEnv) -> PathBuf {
    static TEST: OnceLock<PathBuf> = OnceLock::new();
    static CHECKOV: OnceLock<PathBuf> = OnceLock::new();
    let cell = match env {
        PythonEnv::Test => &TEST,
        PythonEnv::Checkov => &CHECKOV,
    };
    cell.get_or_init(|| {
        let root = workspace_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/venv.sh"))
            .arg(env.arg())
            .status()
            .expect("run scripts/venv.sh");
        assert!(
            status.success(),
            "scripts/venv.sh {} failed ({status}); the pinned Python tools this test needs are missing",
            env.arg()
        );
        root.join(env.dir()).join("bin")
    })
    .clone()
}

/// The pinned test environment's `python`, installing it first if needed.
///
/// # Panics
/// See [`python_bin_dir`].
pub fn python() -> PathBuf {
    python_bin_dir(PythonEnv::Test).join("python")
}

/// A string unique within this process run (for scratch file names).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package with `autotests = false` has one integration-test binary, `tests/main.rs`, whose
    /// modules are the files beside it: a file there that `main.rs` does not declare would never be
    /// compiled or run, silently.
    #[test]
    fn every_integration_test_file_is_a_module_of_its_packages_one_binary() {
        let root = workspace_root();
        let mut checked = 0;
        for group in ["bins", "crates"] {
            for package in std::fs::read_dir(root.join(group)).expect("read the workspace") {
                let dir = package.expect("a directory entry").path();
                let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
                if !manifest.lines().any(|l| l.trim() == "autotests = false") {
                    continue;
                }
                let main = std::fs::read_to_string(dir.join("tests/main.rs")).unwrap_or_else(|e| {
                    panic!(
                        "{}: autotests = false needs tests/main.rs: {e}",
                        dir.display()
                    )
                });
                for file in std::fs::read_dir(dir.join("tests")).expect("read tests/") {
                    let path = file.expect("a directory entry").path();
                    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                        continue;
                    };
                    if path.extension().is_none_or(|e| e != "rs") || stem == "main" {
                        continue;
                    }
                    assert!(
                        main.lines().any(|l| l.trim() == format!("mod {stem};")),
                        "{} is not declared in {} (`mod {stem};`): it would never run",
                        path.display(),
                        dir.join("tests/main.rs").display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 30, "only {checked} integration-test files found");
    }

    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ephemeral_low = ephemeral_low().expect("the kernel's ephemeral range");
        // Hold a client connection's worth of ephemeral ports open meanwhile: none may be chosen.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect"))
            .collect();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for port in &ports {
            assert!(
                u32::from(*port) < ephemeral_low,
                "{port} is in the ephemeral range"
            );
            assert!(
                clients
                    .iter()
                    .all(|c| c.local_addr().unwrap().port() != *port),
                "{port} is a client's local port"
            );
            TcpListener::bind(("127.0.0.1", *port)).expect("a handed-out port binds");
        }
    }
}
