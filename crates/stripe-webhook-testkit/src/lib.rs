//! Test support shared by the workspace's integration tests.
//!
//! - [`python`]: the pinned Python tools (Stripe's SDK, moto, cfn-lint, DuckDB, cargo-lambda),
//!   installed on first use into the git-ignored `.venv` by `scripts/venv.sh`. A test that needs them
//!   never skips: it installs them or fails with the installer's message.
//! - [`free_port`]: a free loopback port for a helper server.
//! - [`faults`]: `strace` fault injection and small `tmpfs` mounts for tests of real processes.
//! - [`workspace_root`]: the repository root, for fixtures and scripts.
//! - [`webhook_target`]: a scripted, recording webhook target (plain or over a test's TLS).
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
pub mod http;
pub mod lambda_runtime_api;
pub mod moto;
pub mod server;
pub mod signing;
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

/// A loopback port that was free a moment ago (bind to port 0, read it, release it).
///
/// # Panics
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").port()
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
