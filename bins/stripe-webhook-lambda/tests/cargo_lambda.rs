//! Real emulator test: `cargo lambda watch` (cargo-lambda 1.9.2 from the pinned venv, offline)
//! serves the Function URL and invoke APIs; the function is the binary this test run built, attached
//! with `--only-lambda-apis` so the emulator does not compile the workspace a second time with other
//! features. Signed webhooks POSTed to `/lambda-url/<function>/webhook/stripe` (JSON bodies arrive
//! as text, other content types base64) are answered 200 and archived byte-exact; a forged one 400.
//! `cargo lambda invoke --data-file` sends an API Gateway REST (v1) event through the same emulator.

use crate::support;

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use stripe_webhook_testkit::{PythonEnv, archive, free_port, http, python_bin_dir};
use support::*;

const FUNCTION: &str = "stripe-webhook-lambda";

/// A child in its own process group; the whole group is killed on drop.
struct Group(Child);

impl Group {
    fn spawn(mut command: Command, log: &Path) -> Self {
        let log = File::create(log).expect("create log");
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        Group(command.spawn().expect("spawn"))
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{}", self.0.id()))
            .status();
    }

    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.signal("KILL");
            let _ = self.0.wait();
        }
    }
}

fn cargo_lambda() -> (PathBuf, String) {
    let bin = python_bin_dir(PythonEnv::Test);
    let exe = bin.join("cargo-lambda");
    assert!(
        exe.exists(),
        "{} missing from the pinned venv",
        exe.display()
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (exe, path)
}

fn wait_listening(addr: SocketAddr, log: &Path) {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cargo lambda watch not listening on {addr} within 60 s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "full tier (./scripts/test): needs cargo-lambda from the pinned Python tools"]
fn cargo_lambda_watch_serves_the_function_url_and_invokes() {
    let (exe, path) = cargo_lambda();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive_dir = dir.path().join("archive");
    // Chosen in advance: `cargo lambda watch` takes its port on the command line and does not
    // report one the kernel picked.
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // The emulator: Function URLs, the invoke API and the Runtime API, no function build.
    let watch_log = dir.path().join("watch.log");
    let mut watch = Command::new(&exe);
    watch
        .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
        .args([
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .args(["--package", FUNCTION, "--bin", FUNCTION, "--offline"])
        .current_dir(stripe_webhook_testkit::workspace_root())
        .env("PATH", &path);
    let watch = Group::spawn(watch, &watch_log);
    wait_listening(addr, &watch_log);

    // The function, attached to the emulator's Runtime API under its name.
    let fn_log = dir.path().join("function.log");
    let mut function = Command::new(env!("CARGO_BIN_EXE_stripe-webhook-lambda"));
    function
        .env_clear()
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://{addr}/.rt/{FUNCTION}"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RUST_LOG", "info")
        .env("SINK", "file")
        .env("ARCHIVE_DIR", &archive_dir)
        .env("STRIPE_WEBHOOK_SECRET", SECRET);
    let mut function = Group::spawn(function, &fn_log);
    let logs = || {
        format!(
            "function log:\n{}\nwatch log:\n{}",
            std::fs::read_to_string(&fn_log).unwrap_or_default(),
            std::fs::read_to_string(&watch_log).unwrap_or_default()
        )
    };

    let url = |p: &str| format!("/lambda-url/{FUNCTION}{p}");
    let health = http::request(addr, "GET", &url("/health"), &[], b"").expect("GET health");
    assert_eq!(
        (health.status, health.text().as_str()),
        (200, r#"{"status":"ok","sink":"file","durable":true}"#),
        "{}",
        logs()
    );

    let mut accepted = Vec::new();
    // JSON content type: the emulator passes the body as text.
    let body = stripe_body("customer.created.json");
    let signature = sign(&body);
    let r = http::request(
        addr,
        "POST",
        &url("/webhook/stripe"),
        &[
            ("Content-Type", "application/json"),
            ("Stripe-Signature", &signature),
        ],
        &body,
    )
    .expect("POST webhook");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, r#"{"received":true}"#),
        "{}",
        logs()
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    accepted.push(body);

    // Another content type: the emulator base64-encodes the body.
    let body = stripe_body("checkout.session.completed.json");
    let signature = sign(&body);
    let r = http::request(
        addr,
        "POST",
        &url("/webhook/stripe"),
        &[
            ("Content-Type", "application/octet-stream"),
            ("Stripe-Signature", &signature),
        ],
        &body,
    )
    .expect("POST webhook");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), logs());
    accepted.push(body);

    // Forged: 400, nothing archived.
    let body = stripe_body("charge.succeeded.json");
    let forged = sign(b"something else");
    let r = http::request(
        addr,
        "POST",
        &url("/webhook/stripe"),
        &[
            ("Content-Type", "application/json"),
            ("Stripe-Signature", &forged),
        ],
        &body,
    )
    .expect("POST webhook");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no_matching_signature"));

    // `cargo lambda invoke --data-file` with an API Gateway REST event on a stage.
    let body = stripe_body("charge.succeeded.json");
    let mut event = webhook_event("apigw-rest-v1", &body, true, Some(&sign(&body)));
    set_route(&mut event, "POST", "/prod/webhook/stripe");
    let event_file = dir.path().join("rest-v1.json");
    std::fs::write(&event_file, event.to_string()).expect("write event");
    let output = Command::new(&exe)
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
        .args([
            "--invoke-port",
            &port.to_string(),
            "--output-format",
            "json",
        ])
        .arg("--data-file")
        .arg(&event_file)
        .arg(FUNCTION)
        .env("PATH", &path)
        .output()
        .expect("run cargo lambda invoke");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        logs()
    );
    let response: Value = serde_json::from_slice(&output.stdout).expect("invoke output JSON");
    let (status, json) = check_response("apigw-rest-v1", &response);
    assert_eq!(
        (status, json["received"].as_bool()),
        (200, Some(true)),
        "{response}"
    );
    accepted.push(body);

    // SIGTERM: the function closes the sink and exits 0; the archive holds exactly the accepted.
    function.signal("TERM");
    let status = function
        .wait(Duration::from_secs(30))
        .expect("function exits on SIGTERM");
    assert!(status.success(), "{status}; {}", logs());
    let records = archive::read_records(&archive_dir);
    assert_eq!(records.len(), accepted.len(), "{}", logs());
    for (record, body) in records.iter().zip(&accepted) {
        assert_eq!(
            record["raw"].as_str().map(str::as_bytes),
            Some(body.as_slice())
        );
    }
    watch.signal("TERM");
    drop(watch);
}
