//! Forwarding inside the server, end to end: webhooks posted to a real server are forwarded from
//! its archive to a real HTTP target that fails in every way (500s, answers that never come,
//! connections closed without an answer, 429 with Retry-After), while the server is SIGKILLed
//! twice mid-delivery and restarted. At the end every acknowledged event was delivered at least
//! once, byte-exact, with a signature Stripe's official Python SDK accepts; duplicates stay within
//! the in-flight bound; nothing was delivered that the server did not acknowledge.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_testkit::forward_target::{Answer, ForwardTarget};
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_testkit::signing::sign_now;

const INGEST_SECRET: &str = "whsec_ingest_secret_for_forward_test";
const DESTINATION_SECRET: &str = "whsec_destination_secret_for_forward_test";
/// FORWARD_CONCURRENCY in this test; the window is 16 × it.
const CONCURRENCY: usize = 4;
const WINDOW: usize = 16 * CONCURRENCY;

/// splitmix64, seeded from the clock (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Waits until `done`, failing only when `progress` (a count that grows as the forwarder works)
/// stood still for `stall`: on a loaded machine the forwarder may be slow, but a stuck one fails
/// here, with `diagnose()` in the message.
fn wait_while_progressing(
    stall: Duration,
    what: &str,
    mut progress: impl FnMut() -> (usize, bool),
    diagnose: impl FnOnce() -> String,
) {
    let (mut last, mut since) = (usize::MAX, Instant::now());
    loop {
        let (count, done) = progress();
        if done {
            return;
        }
        if count != last {
            (last, since) = (count, Instant::now());
        }
        if since.elapsed() >= stall {
            panic!(
                "waiting for {what}: no progress for {stall:?} (at {count})\n{}",
                diagnose()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn post_events(
    server: &ServerProcess,
    from: usize,
    n: usize,
    seed: u64,
    acknowledged: &mut HashMap<String, Vec<u8>>,
) {
    for i in from..from + n {
        let id = format!("evt_fwd_{seed:x}_{i}");
        // Pretty-printed like Stripe's bodies, so byte-exactness is tested.
        let body = format!(
            "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"type\": \"charge.succeeded\",\n  \"created\": 1795731281,\n  \"data\": {{\n    \"object\": {{\n      \"id\": \"ch_{i}\",\n      \"amount\": {}\n    }}\n  }}\n}}",
            i * 100
        );
        let signature = sign_now(INGEST_SECRET, body.as_bytes());
        let response = stripe_webhook_testkit::http::post_webhook(
            server.addr,
            Some(&signature),
            body.as_bytes(),
        )
        .expect("post");
        assert_eq!(response.status, 200, "{}", response.text());
        acknowledged.insert(id, body.into_bytes());
    }
}

#[test]
#[ignore = "full tier (./scripts/test): needs Stripe's Python SDK"]
fn every_acknowledged_event_is_forwarded_through_target_faults_and_two_sigkills() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    println!("seed {seed:#x}");
    let mut rng = Rng(seed);
    let requests = AtomicUsize::new(0);
    let target = ForwardTarget::start(move |_| {
        let n = requests.fetch_add(1, Ordering::SeqCst);
        match n {
            0..8 => Answer::status(500),
            8..12 => Answer::Hang,
            12..16 => Answer::Close,
            16..20 => Answer::Status(429, vec![("Retry-After".into(), "1".into())]),
            _ => match rng.next() % 20 {
                0 => Answer::status(500),
                1 => Answer::Close,
                2 => Answer::Status(429, vec![("Retry-After".into(), "1".into())]),
                3 => Answer::Hang,
                _ => Answer::status(200),
            },
        }
    });
    let archive = tempfile::tempdir().unwrap();
    let archive_dir = archive.path().display().to_string();
    let url = target.url();
    let start =
        ReceivedAt::from_unix_millis(ReceivedAt::now().unix_millis() - 60_000).rfc3339_millis();
    let concurrency = CONCURRENCY.to_string();
    let envs: Vec<(&str, &str)> = vec![
        ("STRIPE_WEBHOOK_SECRET", INGEST_SECRET),
        ("SINK", "file"),
        ("ARCHIVE_DIR", &archive_dir),
        // Small segments: records move from open segments to sealed ones while forwarded.
        ("ARCHIVE_SEGMENT_MAX_BYTES", "4096"),
        ("FORWARD_URL", &url),
        ("FORWARD_SECRET", DESTINATION_SECRET),
        ("FORWARD_START", &start),
        ("FORWARD_CONCURRENCY", &concurrency),
        ("FORWARD_TIMEOUT", "1s"),
        ("FORWARD_RETRY_MAX", "1s"),
    ];
    let bin = Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"));
    let mut acknowledged = HashMap::new();

    let server = ServerProcess::start(bin, &envs);
    post_events(&server, 0, 40, seed, &mut acknowledged);
    let no_diagnosis = String::new;
    wait_while_progressing(
        Duration::from_secs(60),
        "deliveries under way",
        || (target.received().len(), target.received().len() >= 25),
        no_diagnosis,
    );
    let _ = server.kill();

    let server = ServerProcess::start(bin, &envs);
    post_events(&server, 40, 40, seed, &mut acknowledged);
    wait_while_progressing(
        Duration::from_secs(60),
        "more deliveries",
        || (target.received().len(), target.delivered().len() >= 50),
        no_diagnosis,
    );
    let _ = server.kill();

    let server = ServerProcess::start(bin, &envs);
    post_events(&server, 80, 40, seed, &mut acknowledged);
    let missing = || {
        let delivered: std::collections::HashSet<String> = target
            .delivered()
            .iter()
            .filter_map(|r| r.header("stripe-webhook-event-id").map(str::to_owned))
            .collect();
        let mut missing: Vec<String> = acknowledged
            .keys()
            .filter(|id| !delivered.contains(*id))
            .cloned()
            .collect();
        missing.sort();
        missing
    };
    // Progress is every request the target sees (retries included): a forwarder that keeps
    // trying is waited for; one that stopped fails within a minute, its state in the message.
    wait_while_progressing(
        Duration::from_secs(60),
        "every acknowledged event delivered",
        || (target.received().len(), missing().is_empty()),
        || {
            let id = stripe_webhook_forward::destination_id(&url).expect("destination id");
            let cursor = stripe_webhook_forward::forward_dir(archive.path())
                .join(id)
                .join(stripe_webhook_forward::cursor::CURSOR_FILE);
            let cursor = std::fs::read_to_string(cursor).unwrap_or_default();
            format!(
                "not delivered: {:?}\ncursor: {cursor}\nserver log:\n{}",
                missing(),
                server.logs()
            )
        },
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(!logs.contains(DESTINATION_SECRET) && !logs.contains(INGEST_SECRET));

    let delivered = target.delivered();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &delivered {
        let id = r
            .header("stripe-webhook-event-id")
            .expect("event id header");
        let body = acknowledged
            .get(id)
            .unwrap_or_else(|| panic!("{id} was delivered but never acknowledged"));
        assert_eq!(&r.body, body, "{id}: the body is the exact archived body");
        assert_eq!(r.header("stripe-webhook-forwarded"), Some("1"));
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let attempt: u32 = r
            .header("stripe-webhook-attempt")
            .and_then(|a| a.parse().ok())
            .expect("attempt header");
        assert!(attempt >= 1);
        assert!(r.request_line.starts_with("POST /hooks/stripe "));
        *per_id.entry(id).or_default() += 1;
    }
    assert_eq!(per_id.len(), acknowledged.len());
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    println!(
        "{} deliveries of {} events ({duplicates} duplicates), {} requests in all",
        delivered.len(),
        acknowledged.len(),
        target.received().len()
    );
    assert!(
        duplicates <= 2 * WINDOW,
        "{duplicates} duplicates: more than the window ({WINDOW}) per SIGKILL"
    );

    // Every delivery verifies with Stripe's SDK, as the application would check it.
    let input = json!({
        "secret": DESTINATION_SECRET,
        "tolerance": 3600,
        "deliveries": delivered.iter().map(|r| json!({
            "body": String::from_utf8(r.body.clone()).expect("UTF-8"),
            "header": r.header("stripe-signature").expect("signature"),
        })).collect::<Vec<_>>(),
    });
    let script = stripe_webhook_testkit::workspace_root()
        .join("crates/stripe-webhook-forward/tests/stripe_sdk_verify.py");
    let mut child = Command::new(stripe_webhook_testkit::python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the pinned python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(out["stripe_version"], "16.1.0");
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), delivered.len());
    for (r, d) in results.iter().zip(&delivered) {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(
            r["id"].as_str(),
            d.header("stripe-webhook-event-id"),
            "the SDK's event is the delivered one"
        );
    }
}

/// Runs the server with `envs` (on any free port) expecting it to refuse to start: exit code 2,
/// and the message on stderr.
fn refused(envs: &[(&str, &str)]) -> String {
    let archive = tempfile::tempdir().unwrap();
    let output = stripe_webhook_testkit::server::command(Path::new(env!(
        "CARGO_BIN_EXE_stripe-webhook-server"
    )))
    .env("HOST", "127.0.0.1")
    .env("PORT", "0")
    .env("METRICS_ADDR", "off")
    .env("STRIPE_WEBHOOK_SECRET", INGEST_SECRET)
    .env("ARCHIVE_DIR", archive.path())
    .envs(envs.iter().copied())
    .output()
    .expect("run the server");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn forwarding_settings_that_cannot_work_stop_the_start_with_a_clear_message() {
    let url = "http://127.0.0.1:9/hook?token=sekrit";
    let memory = refused(&[
        ("SINK", "memory"),
        ("ALLOW_MEMORY_SINK", "true"),
        ("FORWARD_URL", url),
        ("FORWARD_SECRET", DESTINATION_SECRET),
    ]);
    assert!(
        memory.contains("only the file sink writes") && memory.contains("forwarding-sqs.md"),
        "{memory}"
    );
    let raw_off = refused(&[
        ("ENVELOPE_INCLUDE_RAW", "false"),
        ("FORWARD_URL", url),
        ("FORWARD_SECRET", DESTINATION_SECRET),
    ]);
    assert!(raw_off.contains("ENVELOPE_INCLUDE_RAW=false"), "{raw_off}");
    let mismatch = refused(&[
        ("FORWARD_URL", &format!("{url},http://127.0.0.1:9/other")),
        ("FORWARD_SECRET", DESTINATION_SECRET),
    ]);
    assert!(
        mismatch.contains("FORWARD_URL element(s) 2 have no secret"),
        "{mismatch}"
    );
    for message in [&memory, &raw_off, &mismatch] {
        assert!(!message.contains("sekrit") && !message.contains(DESTINATION_SECRET));
    }
}
