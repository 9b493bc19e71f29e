//! `loadgen`: a closed-loop HTTP/1.1 load generator for `POST /webhook/stripe` (a wrk equivalent
//! that sends distinct, correctly signed, realistic Stripe events).
//!
//! Each of `--connections` keep-alive hyper http1 client connections runs on its own task and has
//! one request in flight at a time. Every request is a distinct event: a fixture body from
//! `--events-dir` with its top-level `id` value replaced, as text, by a fresh unique `evt_…` id
//! (every other byte unchanged), signed with `--secret` and the current timestamp. The load runs for
//! `--warmup` seconds unmeasured, then `--duration` seconds measured; requests completing inside the
//! measured window give the throughput and the latency distribution. At the end no new request is
//! started and the in-flight ones are awaited, so `ok_total` (every 200 of the run, warm-up
//! included) is exact: a durable sink must hold exactly that many records.
//!
//! ```text
//! loadgen --url http://127.0.0.1:3001/webhook/stripe --secret whsec_… \
//!         --events-dir fixtures/events --connections 32 --warmup 2 --duration 10
//! ```
//!
//! Prints one JSON line: `requests`, `seconds`, `rps` (answers of any status in the window),
//! `ok_rps` (answers 200 in the window: webhooks acknowledged per second), `p50_ms`, `p99_ms`, `max_ms`, `errors`
//! (non-200 answers and transport failures over the whole run), plus `ok_total`,
//! `status_counts`, `transport_errors`, `connections`, `gen_us` (measured cost of building and
//! signing one request body before the run) and `id_tag` (the prefix every event id of this run
//! starts with, to find its records in an archive).
//!
//! With `--rate N` the load is open loop instead (soak tests): the connections together start `N`
//! requests per second on a fixed schedule (connection `i` of `c` at `t0 + (k·c + i)/N`), whatever
//! the answers take; a request's latency counts from its scheduled start, so a slow server shows in
//! the latencies rather than in a lower offered rate. Use enough connections that
//! `connections / N` exceeds the worst latency. Also printed then: `rate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::value::RawValue;
use stripe_webhook_verify::{Secret, signature_header};
use tokio::net::TcpStream;

/// Stripe's own `User-Agent` for webhook deliveries.
const STRIPE_USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Closed-loop load generator for POST /webhook/stripe"
)]
struct Cli {
    /// Target URL, e.g. `http://127.0.0.1:3001/webhook/stripe`.
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds of load before the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Webhook signing secret (`whsec_…`).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// Directory of realistic Stripe event bodies (`*.json`).
    #[arg(long, default_value = "fixtures/events")]
    events_dir: PathBuf,
    /// Open loop: start this many requests per second in total, on a fixed schedule, instead of
    /// one after the other on each connection.
    #[arg(long)]
    rate: Option<f64>,
}

/// A fixture body split around the value of its top-level `id`.
#[derive(Debug, Clone)]
struct Template {
    /// Bytes before the id value's opening quote.
    prefix: Vec<u8>,
    /// Bytes after the id value's closing quote.
    suffix: Vec<u8>,
}

impl Template {
    /// Splits `body` (a JSON object) around the string value of its top-level `"id"` key.
    fn parse(body: &[u8]) -> Result<Template, String> {
        let members: BTreeMap<String, &RawValue> =
            serde_json::from_slice(body).map_err(|e| format!("not a JSON object: {e}"))?;
        let raw = members
            .get("id")
            .ok_or_else(|| "no top-level \"id\"".to_owned())?
            .get();
        if !raw.starts_with('"') {
            return Err(format!("top-level \"id\" is not a string: {raw}"));
        }
        // `raw` borrows from `body`: its offset is the distance between the two pointers.
        let start = (raw.as_ptr() as usize)
            .checked_sub(body.as_ptr() as usize)
            .filter(|s| body.get(*s..*s + raw.len()) == Some(raw.as_bytes()))
            .ok_or_else(|| "cannot locate the top-level \"id\" in the body".to_owned())?;
        Ok(Template {
            prefix: body[..start].to_vec(),
            suffix: body[start + raw.len()..].to_vec(),
        })
    }

    /// The body with `id` as the top-level id value.
    fn render(&self, id: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.prefix.len() + id.len() + 2 + self.suffix.len());
        body.extend_from_slice(&self.prefix);
        body.push(b'"');
        body.extend_from_slice(id.as_bytes());
        body.push(b'"');
        body.extend_from_slice(&self.suffix);
        body
    }
}

/// Unique event ids shaped like Stripe's (`evt_` and 24 alphanumerics): a random per-run tag of 8
/// characters, then a counter in base 62, zero-padded to 16.
#[derive(Debug)]
struct EventIds {
    tag: String,
    next: AtomicU64,
}

impl EventIds {
    const ALPHABET: &'static [u8] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    fn new() -> EventIds {
        let mut rng = rand::rng();
        let tag = (0..8)
            .map(|_| char::from(Self::ALPHABET[rng.random_range(0..Self::ALPHABET.len())]))
            .collect();
        EventIds {
            tag,
            next: AtomicU64::new(0),
        }
    }

    fn next_id(&self) -> String {
        let mut n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut digits = [b'0'; 16];
        for d in digits.iter_mut().rev() {
            *d = Self::ALPHABET[(n % 62) as usize];
            n /= 62;
        }
        let mut id = String::with_capacity(28);
        id.push_str("evt_");
        id.push_str(&self.tag);
        id.extend(digits.iter().map(|&b| char::from(b)));
        id
    }
}

/// Everything a connection task needs to build requests.
struct Generator {
    templates: Vec<Template>,
    ids: EventIds,
    secret: Secret,
}

impl Generator {
    /// A fresh signed body for the `n`-th template (cyclic): `(body, Stripe-Signature)`.
    fn signed(&self, n: usize) -> (Vec<u8>, String) {
        let body = self.templates[n % self.templates.len()].render(&self.ids.next_id());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signature = signature_header(&[&self.secret], now, &body);
        (body, signature)
    }
}

/// Where and how long to send.
struct Target {
    authority: String,
    path: String,
    measure_start: Instant,
    measure_end: Instant,
    /// Open loop: when the schedule starts, the interval between two requests of one connection,
    /// and the number of connections.
    schedule: Option<(Instant, Duration, usize)>,
}

/// One connection task's tally.
#[derive(Default)]
struct Tally {
    /// Latencies (ns) of the requests that completed inside the measured window.
    latencies_ns: Vec<u64>,
    /// Answers 200 that completed inside the measured window.
    ok_in_window: u64,
    ok_total: u64,
    status_counts: BTreeMap<u16, u64>,
    transport_errors: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stripe_webhook_benches::run_main("loadgen", run(cli), |line| println!("{line}"))
}

fn load_templates(dir: &Path) -> Result<Vec<Template>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no *.json event bodies in {}", dir.display()));
    }
    paths
        .iter()
        .map(|p| {
            let body = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Template::parse(&body).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

async fn run(cli: Cli) -> Result<String, String> {
    let uri: Uri = cli
        .url
        .parse()
        .map_err(|e| format!("--url {}: {e}", cli.url))?;
    if uri.scheme_str() != Some("http") {
        return Err("--url must be http://host:port/path".to_owned());
    }
    let authority = uri
        .authority()
        .ok_or("--url has no host")?
        .as_str()
        .to_owned();
    let authority = if uri.port().is_some() {
        authority
    } else {
        format!("{authority}:80")
    };
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let connections = cli.connections.max(1);
    let generator = Arc::new(Generator {
        templates: load_templates(&cli.events_dir)?,
        ids: EventIds::new(),
        secret: Secret::new(cli.secret).map_err(|e| format!("--secret: {e}"))?,
    });

    // The cost of building and signing one request (the load path pays it per request).
    let samples = 2_000;
    let started = Instant::now();
    let mut bytes = 0;
    for n in 0..samples {
        bytes += generator.signed(n).0.len();
    }
    let gen_us = started.elapsed().as_secs_f64() * 1e6 / samples as f64;
    let mean_body_bytes = bytes / samples;

    let now = Instant::now();
    let schedule = match cli.rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => Some((
            now,
            Duration::from_secs_f64(connections as f64 / rate),
            connections,
        )),
        Some(rate) => return Err(format!("--rate must be a positive number, got {rate}")),
        None => None,
    };
    let measure_start = now + Duration::from_secs_f64(cli.warmup.max(0.0));
    let target = Arc::new(Target {
        authority,
        path,
        measure_start,
        measure_end: measure_start + Duration::from_secs_f64(cli.duration.max(0.001)),
        schedule,
    });
    let tasks: Vec<_> = (0..connections)
        .map(|i| tokio::spawn(drive(i, generator.clone(), target.clone())))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task
            .await
            .map_err(|e| format!("a connection task failed: {e}"))?;
        total.latencies_ns.extend(tally.latencies_ns);
        total.ok_total += tally.ok_total;
        total.ok_in_window += tally.ok_in_window;
        total.transport_errors += tally.transport_errors;
        for (status, count) in tally.status_counts {
            *total.status_counts.entry(status).or_default() += count;
        }
    }

    let seconds = (target.measure_end - target.measure_start).as_secs_f64();
    let mut latencies = total.latencies_ns;
    latencies.sort_unstable();
    let errors = total.transport_errors
        + total
            .status_counts
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(_, c)| c)
            .sum::<u64>();
    let ms = |ns: u64| (ns as f64 / 1e6 * 1000.0).round() / 1000.0;
    let status_counts: serde_json::Map<String, serde_json::Value> = total
        .status_counts
        .iter()
        .map(|(s, c)| (s.to_string(), (*c).into()))
        .collect();
    Ok(serde_json::json!({
        "requests": latencies.len(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "rps": (latencies.len() as f64 / seconds).round(),
        "ok_rps": (total.ok_in_window as f64 / seconds).round(),
        "p50_ms": ms(percentile(&latencies, 50.0)),
        "p99_ms": ms(percentile(&latencies, 99.0)),
        "max_ms": ms(latencies.last().copied().unwrap_or(0)),
        "errors": errors,
        "ok_total": total.ok_total,
        "transport_errors": total.transport_errors,
        "status_counts": status_counts,
        "connections": connections,
        "warmup_s": cli.warmup,
        "gen_us": (gen_us * 100.0).round() / 100.0,
        "mean_body_bytes": mean_body_bytes,
        "id_tag": format!("evt_{}", generator.ids.tag),
        "rate": cli.rate,
    })
    .to_string())
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One connection's closed loop: (re)connect, then send one request at a time until the end of the
/// measured window; the last request is awaited.
async fn drive(index: usize, generator: Arc<Generator>, target: Arc<Target>) -> Tally {
    let mut tally = Tally::default();
    let mut n = index;
    // Open loop: this connection's k-th request is due at `start + (k + index / c) * interval`.
    let mut due = target.schedule.map(|(start, interval, connections)| {
        start + interval.mul_f64(index as f64 / connections as f64)
    });
    'connect: while Instant::now() < target.measure_end {
        let stream = match TcpStream::connect(&target.authority).await {
            Ok(s) => s,
            Err(_) => {
                tally.transport_errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
            {
                Ok(pair) => pair,
                Err(_) => {
                    tally.transport_errors += 1;
                    continue;
                }
            };
        tokio::spawn(conn);
        while Instant::now() < target.measure_end {
            let (body, signature) = generator.signed(n);
            n += 1;
            let request = Request::builder()
                .method(Method::POST)
                .uri(target.path.as_str())
                .header(header::HOST, target.authority.as_str())
                .header(header::USER_AGENT, STRIPE_USER_AGENT)
                .header(header::ACCEPT, "*/*; q=0.5, application/xml")
                .header(header::CACHE_CONTROL, "no-cache")
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .header(header::CONTENT_LENGTH, body.len())
                .header("stripe-signature", signature)
                .body(Full::new(Bytes::from(body)))
                .expect("a request built from valid parts");
            if sender.ready().await.is_err() {
                tally.transport_errors += 1;
                continue 'connect;
            }
            // Open loop: wait for this request's slot; its latency counts from the slot.
            let started = match due.as_mut() {
                Some(slot) => {
                    let at = *slot;
                    *slot += target.schedule.map_or(Duration::ZERO, |s| s.1);
                    if at >= target.measure_end {
                        break 'connect;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    at
                }
                None => Instant::now(),
            };
            let closing;
            let status = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    closing = response
                        .headers()
                        .get(header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    if response.into_body().collect().await.is_err() {
                        tally.transport_errors += 1;
                        continue 'connect;
                    }
                    status
                }
                Err(_) => {
                    tally.transport_errors += 1;
                    continue 'connect;
                }
            };
            let finished = Instant::now();
            *tally.status_counts.entry(status).or_default() += 1;
            if status == 200 {
                tally.ok_total += 1;
            }
            if finished >= target.measure_start && finished <= target.measure_end {
                if status == 200 {
                    tally.ok_in_window += 1;
                }
                tally
                    .latencies_ns
                    .push((finished - started).as_nanos() as u64);
            }
            if closing || sender.is_closed() {
                continue 'connect;
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_webhook_verify::Verifier;

    const EVENT: &str = "{\n  \"id\": \"evt_1NG8Du2eZvKYlo2CUI79vXWy\",\n  \"object\": \"event\",\n  \"data\": {\"object\": {\"id\": \"pi_3MtwBwLkdIwHu7ix28a3tqPa\", \"object\": \"payment_intent\"}},\n  \"type\": \"payment_intent.succeeded\"\n}\n";

    #[test]
    fn template_replaces_only_the_top_level_id() {
        let template = Template::parse(EVENT.as_bytes()).unwrap();
        let body = String::from_utf8(template.render("evt_fresh")).unwrap();
        assert_eq!(
            body,
            EVENT.replace("evt_1NG8Du2eZvKYlo2CUI79vXWy", "evt_fresh")
        );
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["id"], "evt_fresh");
        assert_eq!(value["data"]["object"]["id"], "pi_3MtwBwLkdIwHu7ix28a3tqPa");
    }

    #[test]
    fn every_fixture_gets_a_fresh_top_level_id_and_nothing_else() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events");
        assert!(load_templates(&dir).unwrap().len() >= 5);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let original = std::fs::read(&path).unwrap();
            let body = Template::parse(&original).unwrap().render("evt_fresh");
            let mut before: serde_json::Value = serde_json::from_slice(&original).unwrap();
            let mut after: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(after["id"], "evt_fresh", "{}", path.display());
            before["id"] = serde_json::Value::Null;
            after["id"] = serde_json::Value::Null;
            assert_eq!(before, after, "{}", path.display());
        }
    }

    #[test]
    fn template_finds_an_id_that_is_not_the_first_key() {
        let event = r#"{"object":"event","data":{"id":"x"},"id":"evt_old"}"#;
        let body = Template::parse(event.as_bytes()).unwrap().render("evt_new");
        assert_eq!(
            body,
            br#"{"object":"event","data":{"id":"x"},"id":"evt_new"}"#
        );
    }

    #[test]
    fn template_refuses_bodies_without_a_string_id() {
        assert!(Template::parse(br#"{"data":{"id":"x"}}"#).is_err());
        assert!(Template::parse(br#"{"id":42}"#).is_err());
        assert!(Template::parse(b"[1,2]").is_err());
    }

    #[test]
    fn event_ids_are_distinct_and_shaped_like_stripes() {
        let ids = EventIds::new();
        let all: std::collections::HashSet<String> = (0..10_000).map(|_| ids.next_id()).collect();
        assert_eq!(all.len(), 10_000);
        for id in &all {
            assert_eq!(id.len(), 28, "{id}");
            assert!(id.starts_with("evt_"));
            assert!(id[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
    }

    #[test]
    fn generated_requests_verify_and_differ() {
        let secret = Secret::new("whsec_loadgen_test").unwrap();
        let generator = Generator {
            templates: vec![Template::parse(EVENT.as_bytes()).unwrap()],
            ids: EventIds::new(),
            secret: secret.clone(),
        };
        let verifier = Verifier::new(vec![secret]).unwrap();
        let (a, sig_a) = generator.signed(0);
        let (b, sig_b) = generator.signed(1);
        assert_ne!(a, b);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        verifier.verify(&a, Some(&sig_a), now).unwrap();
        verifier.verify(&b, Some(&sig_b), now).unwrap();
        assert!(verifier.verify(&a, Some(&sig_b), now).is_err());
    }

    /// Open-loop options against `url`: `connections`, `duration` s (no warm-up), `rate` per second.
    fn open_loop_cli(url: String, connections: usize, duration: f64, rate: f64) -> Cli {
        Cli {
            url,
            connections,
            duration,
            warmup: 0.0,
            secret: "whsec_loadgen_test".to_owned(),
            events_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events"),
            rate: Some(rate),
        }
    }

    /// A loopback server answering `status` to everything; its address.
    async fn status_server(status: u16) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |_req| async move {
                        let mut response = hyper::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }),
                ));
            }
        });
        addr
    }

    /// Runs loadgen open loop against a server answering `status`; its JSON output.
    async fn open_loop_against(
        status: u16,
        connections: usize,
        duration: f64,
        rate: f64,
    ) -> serde_json::Value {
        let addr = status_server(status).await;
        let cli = open_loop_cli(
            format!("http://{addr}/webhook/stripe"),
            connections,
            duration,
            rate,
        );
        serde_json::from_str(&run(cli).await.unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_sends_at_the_requested_rate() {
        let out = open_loop_against(200, 4, 1.0, 200.0).await;
        // 200/s for 1 s on a fixed schedule: 200 requests, whatever the server's speed.
        assert_eq!(out["ok_total"], 200, "{out}");
        assert_eq!(out["errors"], 0, "{out}");
        assert_eq!(out["rate"], 200.0);
        assert_eq!(out["ok_rps"], out["rps"], "{out}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_other_than_200_are_not_acknowledged_webhooks() {
        let out = open_loop_against(503, 2, 0.5, 100.0).await;
        assert_eq!(out["ok_rps"], 0.0, "{out}");
        assert_eq!(out["ok_total"], 0, "{out}");
        assert!(out["rps"].as_f64().unwrap() > 0.0, "{out}");
        assert_eq!(out["errors"], out["status_counts"]["503"], "{out}");
    }

    #[tokio::test]
    async fn open_loop_refuses_a_non_positive_rate() {
        let cli = open_loop_cli("http://127.0.0.1:9/webhook/stripe".to_owned(), 1, 1.0, 0.0);
        assert!(run(cli).await.unwrap_err().contains("--rate"));
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
