//! Crash safety: the server on the file sink under concurrent load is killed with SIGKILL at random
//! moments, ten times, and restarted on the same archive. Every event that got a 200 must be in the
//! archive (at least once), no record may be torn, and recovery reports what it cut.
//!
//! The kill times come from a seeded generator whose seed the test prints; `CRASH_SEED=<seed>
//! cargo test -p stripe-webhook-server --test integration crash::` replays them (the load's
//! interleaving around them is the scheduler's).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use stripe_webhook_testkit::archive::read_records;
use stripe_webhook_testkit::http::post_webhook;
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_testkit::signing::unix_now as now;
use stripe_webhook_verify::{Secret, signature_header};

const SECRET: &str = "whsec_crash_test";

#[test]
fn sigkill_under_load_never_loses_an_acknowledged_event() {
    let archive = tempfile::tempdir().expect("tempdir");
    let dir = archive.path().to_str().expect("utf-8").to_owned();
    let bin = Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"));
    let envs = [
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("SINK", "file"),
        ("ARCHIVE_DIR", dir.as_str()),
        // Small segments so rotation and sealing happen during the run too.
        ("ARCHIVE_SEGMENT_MAX_BYTES", "20000"),
    ];
    let secret = Secret::new(SECRET).expect("secret");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut rng = stripe_webhook_testkit::seeded_rng("CRASH_SEED");
    let mut logs = String::new();
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..10 {
        let server = ServerProcess::start(bin, &envs);
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (stop, acked, secret, next_id) =
                    (stop.clone(), acked.clone(), secret.clone(), next_id.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let n = next_id.fetch_add(1, Ordering::Relaxed);
                        let id = format!("evt_crash_{n}");
                        let body = format!(
                            "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"type\": \"charge.succeeded\",\n  \"created\": 1,\n  \"livemode\": false,\n  \"data\": {{\"object\": {{\"amount\": {n}, \"note\": \"{}\"}}}}\n}}",
                            "x".repeat((n % 700) as usize)
                        );
                        let header = signature_header(&[&secret], now(), body.as_bytes());
                        match post_webhook(addr, Some(&header), body.as_bytes()) {
                            Ok(r) if r.status == 200 => acked.lock().expect("lock").push(id),
                            Ok(r) => assert!(r.status >= 500, "unexpected {}: {}", r.status, r.text()),
                            Err(_) => {} // killed mid-request: no 200, so no promise.
                        }
                    }
                })
            })
            .collect();
        // A sleep on purpose: the kill lands at a random moment of the load, not after a state.
        std::thread::sleep(Duration::from_millis(rng.random_range(150..750)));
        logs.push_str(&server.kill());
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("worker");
        }
    }
    // A final clean start recovers the last crash and seals everything on shutdown.
    let server = ServerProcess::start(bin, &envs);
    let (status, last) = server.terminate();
    assert!(status.success(), "{last}");
    logs.push_str(&last);

    let records = read_records(archive.path()); // panics on a torn or non-JSON line
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        *counts.entry(r["id"].as_str().expect("id")).or_insert(0) += 1;
    }
    let acked = acked.lock().expect("lock");
    assert!(
        acked.len() > 100,
        "load actually ran: {} acknowledged",
        acked.len()
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not archived: {lost:?}");
    assert!(
        logs.contains("file sink recovery done"),
        "recovery reports what it did:\n{logs}"
    );
    eprintln!(
        "crash test: {} acknowledged, {} records archived, {} distinct ids",
        acked.len(),
        records.len(),
        counts.len()
    );
}
