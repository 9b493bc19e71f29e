//! Crash safety with the Firehose sink: the real server binary, configured only through the
//! environment, writes to the testkit's fault-injecting Firehose endpoint while eight client threads
//! post distinct signed events. The endpoint misbehaves on a random script (latency, partial
//! failures at random indices, 503 throttles, 500s, resets, wrong entry counts, permanent errors,
//! a stall); the server is SIGKILLed at random moments six times and restarted; the endpoint itself
//! is killed and restarted mid-load twice. Afterwards every event that got a 200 must be in the
//! endpoint's accepted log (merged across its instances): its exact envelope line, re-encoded here
//! from the body byte-exact. Duplicates are allowed (delivery is at least once).
//!
//! The endpoint binds a new port each time it starts, so the server reaches it through a small TCP
//! relay on a fixed port. Killing the endpoint first cuts the relay (every relayed connection is
//! aborted and awaited), then reads the instance's accepted log, then drops it: any `RecordId` the
//! server can ever have seen was logged before the log was read.
//!
//! The random choices come from a seeded generator whose seed the test prints; `CRASH_SEED=<seed>
//! cargo test -p stripe-webhook-server --test integration crash_firehose::` replays them (the
//! load's interleaving around them is the scheduler's).

// The Firehose sink only: a file-only server (`--no-default-features`) refuses SINK=firehose.
#![cfg(feature = "firehose")]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use serde_json::Value;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_testkit::firehose_fault::{
    FirehoseFault, MAX_BATCH_RECORDS, RecordedCall, Step,
};
use stripe_webhook_testkit::http::post_webhook;
use stripe_webhook_testkit::seeded_rng;
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_verify::{Secret, signature_header};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

const SECRET: &str = "whsec_crash_firehose_test";
const STREAM: &str = "stripe-webhooks-crash";
const SERVER_KILLS: usize = 6;
const WORKERS: usize = 8;
/// Rounds (of the server's life) in which the endpoint is killed and restarted mid-load.
const ENDPOINT_RESTART_ROUNDS: [usize; 2] = [1, 4];

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The test's random choices (the endpoint's script, the kill and restart times), drawn from
/// [`seeded_rng`] so that the printed seed replays them.
struct Rng(StdRng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(self.0.random_range(from..to))
    }

    /// A generator of its own for a part of the test, seeded from this one.
    fn split(&mut self) -> Rng {
        Rng(StdRng::seed_from_u64(self.0.random()))
    }
}

/// One misbehaviour (or not) of the endpoint for one put call.
fn random_step(rng: &mut Rng) -> Step {
    let indices = |rng: &mut Rng| {
        (0..1 + rng.below(3))
            .map(|_| rng.below(6) as usize)
            .collect()
    };
    match rng.below(100) {
        0..=54 => Step::Accept,
        55..=62 => Step::Delay(rng.millis(1, 150), Box::new(Step::Accept)),
        63..=72 => Step::FailIndices(indices(rng)),
        73..=76 => Step::Delay(rng.millis(1, 80), Box::new(Step::FailIndices(indices(rng)))),
        77..=82 => Step::Throttle,
        83..=88 => Step::ServerError,
        89..=93 => Step::Reset,
        // Never the batch's own size: the endpoint logs nothing as accepted for this step, yet
        // entries matching the batch would be indistinguishable from a full acceptance.
        94..=95 => Step::WrongCount(0),
        96 => Step::WrongCount(MAX_BATCH_RECORDS + 1 + rng.below(3) as usize),
        _ => Step::Error {
            status: 400,
            error_type: "InvalidArgumentException".to_owned(),
        },
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TCP relay on a fixed loopback port to whichever endpoint instance is current.
struct Relay {
    addr: SocketAddr,
    state: Arc<Mutex<RelayState>>,
    accept_task: JoinHandle<()>,
}

struct RelayState {
    /// `None` while the endpoint is down: connections are closed at once.
    target: Option<SocketAddr>,
    connections: JoinSet<()>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let state = Arc::new(Mutex::new(RelayState {
            target: None,
            connections: JoinSet::new(),
        }));
        let accept_task = tokio::spawn(relay_loop(listener, Arc::clone(&state)));
        Relay {
            addr,
            state,
            accept_task,
        }
    }

    fn set_target(&self, target: SocketAddr) {
        lock(&self.state).target = Some(target);
    }

    /// Stops relaying: new connections are closed, every relayed one is aborted, and this returns
    /// only once they are all gone (no byte of the old endpoint reaches the server afterwards).
    async fn cut(&self) {
        let mut connections = {
            let mut s = lock(&self.state);
            s.target = None;
            std::mem::replace(&mut s.connections, JoinSet::new())
        };
        connections.shutdown().await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept_task.abort();
        lock(&self.state).connections.abort_all();
    }
}

async fn relay_loop(listener: TcpListener, state: Arc<Mutex<RelayState>>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let mut s = lock(&state);
        while s.connections.try_join_next().is_some() {}
        // Endpoint down: `inbound` is dropped, the client sees the connection closed.
        if let Some(target) = s.target {
            s.connections.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }
}

/// The fault-injecting endpoint behind the relay, restartable, with its logs merged across
/// instances.
struct Endpoint {
    runtime: Runtime,
    relay: Relay,
    current: Option<FirehoseFault>,
    rng: Rng,
    /// Accepted record data of every instance so far (current one excluded until harvested).
    accepted: Vec<Bytes>,
    /// Put calls of every instance so far, with the instance's number.
    calls: Vec<(usize, RecordedCall)>,
    instances: usize,
}

impl Endpoint {
    fn start(rng: Rng) -> Endpoint {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let relay = runtime.block_on(Relay::start());
        let mut endpoint = Endpoint {
            runtime,
            relay,
            current: None,
            rng,
            accepted: Vec::new(),
            calls: Vec::new(),
            instances: 0,
        };
        endpoint.start_instance();
        endpoint
    }

    /// What the server is configured with.
    fn url(&self) -> String {
        format!("http://{}", self.relay.addr)
    }

    fn start_instance(&mut self) {
        let fault = self.runtime.block_on(FirehoseFault::start(STREAM));
        fault.set_latency(self.rng.millis(0, 15));
        let mut steps: Vec<Step> = (0..20_000).map(|_| random_step(&mut self.rng)).collect();
        // One stall per instance: that call hangs until the sink's deadline.
        let at = self.rng.below(300) as usize;
        steps[at] = Step::Stall;
        fault.push_steps(steps);
        let addr = fault
            .endpoint_url()
            .trim_start_matches("http://")
            .parse()
            .expect("endpoint addr");
        self.relay.set_target(addr);
        self.current = Some(fault);
        self.instances += 1;
    }

    /// Put-call outcomes (`accept`, `partial`, `throttle`, …) of every instance so far.
    fn outcomes(&self) -> BTreeMap<&str, usize> {
        let mut outcomes = BTreeMap::new();
        for (_, call) in &self.calls {
            *outcomes.entry(call.outcome.as_str()).or_default() += 1;
        }
        outcomes
    }

    /// Where a record with this event id went: (instance, request id, outcome, index, batch size).
    fn trace(&self, id: &str) -> Vec<String> {
        let needle = format!("\"id\":\"{id}\"");
        let needle = needle.as_str();
        self.calls
            .iter()
            .flat_map(|(instance, call)| {
                call.records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| std::str::from_utf8(r).is_ok_and(|r| r.contains(needle)))
                    .map(move |(i, _)| {
                        let (id, outcome) = (&call.request_id, &call.outcome);
                        format!("#{instance} {id} {outcome} [{i}/{}]", call.records.len())
                    })
            })
            .collect()
    }

    /// Kills the current instance: cut the relay, then harvest its logs, then drop it.
    fn kill_instance(&mut self) {
        self.runtime.block_on(self.relay.cut());
        let fault = self.current.take().expect("an instance is running");
        self.accepted.extend(fault.accepted());
        let instance = self.instances;
        self.calls
            .extend(fault.put_calls().into_iter().map(|c| (instance, c)));
        drop(fault);
    }
}

/// A pretty-printed event with escapes and non-ASCII text, as Stripe sends them.
fn event(id: &str, n: u64) -> Vec<u8> {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"api_version\": \"2025-10-29.clover\",\n  \"created\": 1764195281,\n  \"data\": {{\n    \"object\": {{\n      \"amount\": {n},\n      \"description\": \"Zoë — 東京 ☕ \\\"quoted\\\" \\n\\t\\u00e9\",\n      \"pad\": \"{}\"\n    }}\n  }},\n  \"livemode\": false,\n  \"type\": \"charge.succeeded\"\n}}",
        "x".repeat((n % 900) as usize)
    )
    .into_bytes()
}

/// One event the server answered 200, with what is needed to re-encode its line.
struct Acked {
    id: String,
    body: Vec<u8>,
    header: String,
    /// Unix millis just before sending and just after the answer.
    window: (i64, i64),
}

#[derive(Default)]
struct Tally {
    acked: Vec<Acked>,
    statuses: BTreeMap<u16, usize>,
    errors: usize,
}

/// Parses the envelope's `timestamp` (`2026-11-26T22:14:41.123Z`) to Unix millis.
fn parse_timestamp(s: &str) -> i64 {
    let num = |range: std::ops::Range<usize>| -> i64 { s[range].parse().expect("digits") };
    assert_eq!(s.len(), 24, "timestamp {s}");
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    let millis = secs * 1000 + num(20..23);
    assert_eq!(ReceivedAt::from_unix_millis(millis).rfc3339_millis(), s);
    millis
}

#[test]
fn sigkill_and_endpoint_restarts_under_firehose_faults_never_lose_an_acknowledged_event() {
    let started = Instant::now();
    let mut rng = Rng(seeded_rng("CRASH_SEED"));
    let mut endpoint = Endpoint::start(rng.split());
    let url = endpoint.url();
    let aws = stripe_webhook_testkit::aws_client_env(&url);
    let envs = stripe_webhook_testkit::env_pairs(
        &aws,
        &[
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("SINK", "firehose"),
            ("FIREHOSE_DELIVERY_STREAM_NAME", STREAM),
        ],
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"));
    let secret = Secret::new(SECRET).expect("secret");
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(0));

    for round in 0..SERVER_KILLS {
        let server = ServerProcess::start(bin, &envs);
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (stop, tally, secret, next_id) =
                    (stop.clone(), tally.clone(), secret.clone(), next_id.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let n = next_id.fetch_add(1, Ordering::Relaxed);
                        let id = format!("evt_crash_firehose_{n}");
                        let body = event(&id, n);
                        let sent = now_millis();
                        let header = signature_header(&[&secret], sent / 1000, &body);
                        let result = post_webhook(addr, Some(&header), &body);
                        let answered = now_millis();
                        let mut t = lock(&tally);
                        match result {
                            Ok(r) => {
                                *t.statuses.entry(r.status).or_default() += 1;
                                if r.status == 200 {
                                    t.acked.push(Acked {
                                        id,
                                        body,
                                        header,
                                        window: (sent, answered),
                                    });
                                } else {
                                    assert!(
                                        r.status == 503 || r.status == 500,
                                        "unexpected {}: {}",
                                        r.status,
                                        r.text()
                                    );
                                }
                            }
                            // Killed mid-request (or not restarted yet): no 200, so no promise.
                            Err(_) => {
                                t.errors += 1;
                                drop(t);
                                // A pause on purpose: no busy loop while the server is down.
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    }
                })
            })
            .collect();
        // Sleeps on purpose: the endpoint's restart and the server's kill land at random moments
        // of the load, not after a state.
        if ENDPOINT_RESTART_ROUNDS.contains(&round) {
            std::thread::sleep(rng.millis(300, 1200));
            endpoint.kill_instance();
            std::thread::sleep(rng.millis(200, 1000));
            endpoint.start_instance();
        }
        std::thread::sleep(rng.millis(800, 3000));
        let logs = server.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("worker");
        }
        assert!(!logs.contains("panicked"), "server panicked:\n{logs}");
    }
    endpoint.kill_instance();

    // Every accepted record is one envelope line of JSON.
    let mut by_id: HashMap<String, Vec<&Bytes>> = HashMap::new();
    for line in &endpoint.accepted {
        assert_eq!(line.last(), Some(&b'\n'), "record ends in a newline");
        assert!(!line[..line.len() - 1].contains(&b'\n'), "one line");
        let v: Value = serde_json::from_slice(line).expect("accepted record is JSON");
        let id = v["id"].as_str().expect("id").to_owned();
        by_id.entry(id).or_default().push(line);
    }

    let tally = lock(&tally);
    let mut lost = Vec::new();
    for a in &tally.acked {
        let found = by_id.get(&a.id).is_some_and(|lines| {
            lines.iter().any(|line| {
                let v: Value = serde_json::from_slice(line).expect("JSON");
                let at = parse_timestamp(v["timestamp"].as_str().expect("timestamp"));
                let expected = encode(
                    Bytes::from(a.body.clone()),
                    &a.header,
                    ReceivedAt::from_unix_millis(at),
                    &EnvelopeOptions::default(),
                )
                .expect("a valid event");
                v["raw"].as_str().map(str::as_bytes) == Some(a.body.as_slice())
                    && expected.line() == *line
                    && (a.window.0 - 1000..=a.window.1 + 1000).contains(&at)
            })
        });
        if !found {
            lost.push(a.id.as_str());
        }
    }
    let duplicates = endpoint.accepted.len() - by_id.len();
    eprintln!(
        "crash_firehose: {} acknowledged, {} client answers {:?}, {} connection errors; \
         endpoint: {} instances, {} records accepted ({} distinct ids, {} duplicates), \
         put calls {:?}; {:.1} s",
        tally.acked.len(),
        tally.statuses.values().sum::<usize>(),
        tally.statuses,
        tally.errors,
        endpoint.instances,
        endpoint.accepted.len(),
        by_id.len(),
        duplicates,
        endpoint.outcomes(),
        started.elapsed().as_secs_f64()
    );
    let traces: Vec<String> = lost
        .iter()
        .map(|id| format!("{id}: {:?}", endpoint.trace(id)))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never accepted by Firehose ({} events):\n{}",
        lost.len(),
        traces.join("\n")
    );
    assert!(
        tally.acked.len() > 200,
        "load actually ran: {} acknowledged",
        tally.acked.len()
    );
    assert_eq!(endpoint.instances, 1 + ENDPOINT_RESTART_ROUNDS.len());
    for outcome in ["accept", "partial", "throttle", "server_error", "reset"] {
        assert!(
            endpoint.outcomes().get(outcome).copied().unwrap_or(0) > 0,
            "fault {outcome} exercised: {:?}",
            endpoint.outcomes()
        );
    }
}
