//! Helpers shared by the CLI's integration tests.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use stripe_webhook_testkit::workspace_root;
use stripe_webhook_verify::{Secret, signature_header};

/// The CLI under test.
pub fn cli_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-webhook"))
}

/// A `Command` for the CLI with none of the caller's webhook or AWS settings leaking in.
pub fn cli() -> Command {
    let mut cmd = Command::new(cli_path());
    for (key, _) in std::env::vars() {
        if key.starts_with("STRIPE_") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Runs the CLI with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    cli().args(args).output().expect("run the CLI")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A readable account of a run, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The number after `label: ` on a line of the summary.
pub fn count(o: &Output, label: &str) -> u64 {
    let text = stdout(o);
    let prefix = format!("{label}: ");
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{}", describe(o)))
}

/// The real server binary, built once per test process (`cargo build -p stripe-webhook-server`).
pub fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", "stripe-webhook-server"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p stripe-webhook-server failed"
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { root.join(p) })
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug/stripe-webhook-server");
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).expect("secs"))
        .expect("clock")
}

/// A secret from its text.
pub fn secret(s: &str) -> Secret {
    Secret::new(s).expect("secret")
}

/// A `Stripe-Signature` header for `body`, signed now.
pub fn sign(s: &str, body: &[u8]) -> String {
    signature_header(&[&secret(s)], now(), body)
}

/// The bundled fixture events: (type, pretty-printed body).
pub fn fixtures() -> Vec<(String, String)> {
    let dir = workspace_root().join("fixtures/events");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let body = std::fs::read_to_string(&p).expect("read fixture");
            let v: serde_json::Value = serde_json::from_str(&body).expect("fixture json");
            (v["type"].as_str().expect("type").to_owned(), body)
        })
        .collect();
    out.sort();
    out
}

/// A fixture body with its top-level id replaced by `id` and, if `live`, every
/// `"livemode": false` turned true (the rest of the text kept as Stripe wrote it).
pub fn event_body(fixture: &str, id: &str, live: bool) -> String {
    let v: serde_json::Value = serde_json::from_str(fixture).expect("fixture json");
    let old = v["id"].as_str().expect("id");
    let body = fixture.replacen(&format!("\"{old}\""), &format!("\"{id}\""), 1);
    if live {
        body.replace("\"livemode\": false", "\"livemode\": true")
    } else {
        body
    }
}

/// One request received by a [`Sink`].
#[derive(Clone, Debug)]
pub struct Received {
    /// The `Stripe-Signature` header.
    pub signature: String,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// A trivial HTTP/1.1 sink on a loopback port: answers every POST `200` (and closes the
/// connection) and keeps what it received.
pub struct Sink {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Sink {
    /// Starts the sink on a background thread (it lives until the test process ends).
    pub fn start() -> Sink {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut signature = String::new();
                let mut length = 0_usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        let value = value.trim().to_owned();
                        match name.to_ascii_lowercase().as_str() {
                            "stripe-signature" => signature = value,
                            "content-length" => length = value.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                store
                    .lock()
                    .expect("lock")
                    .push(Received { signature, body });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Sink { addr, received }
    }

    /// The URL to replay to.
    pub fn url(&self) -> String {
        format!("http://{}/webhook/stripe", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}
