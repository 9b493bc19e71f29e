//! `firehose_endpoint`: the testkit's fault-injecting Amazon Data Firehose endpoint
//! ([`stripe_webhook_testkit::firehose_fault`]) as a standalone process, for benchmarks.
//!
//! It serves one Direct PUT stream (`--stream`) on a free loopback port, accepts every record after
//! `--latency-ms` per put call (real Firehose answers in roughly 20 to 50 ms), and serves its
//! statistics as one JSON object at `GET /stats` on a side port (`--port`, 0 = a free one). At start
//! it prints one JSON line, `{"endpoint_url": "http://127.0.0.1:…", "stats_url": "http://…/stats",
//! "stream": "…"}`; on SIGTERM or SIGINT it prints the final statistics as one JSON line and exits 0.
//!
//! With `--call-quota N` it throttles put calls over N per second with 503, as Firehose's
//! per-stream request quota does.
//!
//! ```text
//! firehose_endpoint --stream bench-stream --latency-ms 30 --call-quota 1000 --port 0
//! ```
//!
//! Statistics: `elapsed_s` (since start, the endpoint's own clock, for rates), `put_calls`,
//! `calls` per operation, `outcomes` (`throttle` counts calls refused over the quota), `records` (records in put calls), `accepted_records`,
//! `accepted_bytes` (their decoded `Data`), `accepted_billed_bytes` (each record rounded up to
//! Firehose's 5 KiB billing increment), `billed_increments` (how many accepted records bill 1, 2, …
//! increments), `max_records_per_call`. Every call is kept in memory (the
//! testkit records them), so a long run grows this process, not the server under test.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use stripe_webhook_testkit::firehose_fault::{FirehoseFault, Quota};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Firehose bills ingestion in increments of 5 KiB per record.
const BILLING_INCREMENT: u64 = 5 * 1024;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "firehose_endpoint",
    about = "Fault-injecting Firehose endpoint for benchmarks (prints stats on SIGTERM)"
)]
struct Cli {
    /// The delivery stream name the endpoint accepts.
    #[arg(long, default_value = "bench-stream")]
    stream: String,
    /// Latency added to every put call, in milliseconds.
    #[arg(long, default_value_t = 30)]
    latency_ms: u64,
    /// Loopback port of the statistics side server (`GET /stats`); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Per-stream put-call quota per second, as Firehose enforces it (1,000 or 2,000 depending on
    /// the region): calls over it in a one-second window get 503 `ServiceUnavailableException`.
    /// 0 disables it.
    #[arg(long, default_value_t = 0)]
    call_quota: u32,
    /// Per-stream records quota per second (500,000 or 100,000): records over it fail inside the
    /// answer with `ServiceUnavailableException`. 0 disables it.
    #[arg(long, default_value_t = 0)]
    records_quota: u32,
    /// Per-stream data quota in bytes per second (5 MiB or 1 MiB): records over it fail like
    /// records over the records quota. 0 disables it.
    #[arg(long, default_value_t = 0)]
    bytes_quota: u64,
}

/// `bytes` rounded up to the billing increment (a record of 0 bytes still bills one increment).
fn billed(bytes: u64) -> u64 {
    bytes.div_ceil(BILLING_INCREMENT).max(1) * BILLING_INCREMENT
}

/// The statistics of everything `fault` received since `started`, as one JSON object.
fn stats(fault: &FirehoseFault, started: Instant) -> serde_json::Value {
    let calls = fault.calls();
    let mut per_operation: BTreeMap<&str, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut put_calls, mut records, mut max_records) = (0_u64, 0_u64, 0_usize);
    for call in &calls {
        *per_operation.entry(call.operation.as_str()).or_default() += 1;
        *outcomes.entry(call.outcome.as_str()).or_default() += 1;
        if call.operation != "DescribeDeliveryStream" {
            put_calls += 1;
            records += call.records.len() as u64;
            max_records = max_records.max(call.records.len());
        }
    }
    let accepted = fault.accepted();
    let accepted_bytes: u64 = accepted.iter().map(|r| r.len() as u64).sum();
    let accepted_billed: u64 = accepted.iter().map(|r| billed(r.len() as u64)).sum();
    let mut increments: BTreeMap<String, u64> = BTreeMap::new();
    for record in &accepted {
        let n = billed(record.len() as u64) / BILLING_INCREMENT;
        *increments.entry(n.to_string()).or_default() += 1;
    }
    serde_json::json!({
        "elapsed_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "put_calls": put_calls,
        "calls": per_operation,
        "outcomes": outcomes,
        "records": records,
        "max_records_per_call": max_records,
        "accepted_records": accepted.len(),
        "accepted_bytes": accepted_bytes,
        "accepted_billed_bytes": accepted_billed,
        "billed_increments": increments,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stripe_webhook_benches::run_main("firehose_endpoint", run(cli), |()| {})
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let started = Instant::now();
    let fault = Arc::new(FirehoseFault::start(&cli.stream).await);
    fault.set_latency(Duration::from_millis(cli.latency_ms));
    let quota = Quota {
        calls_per_second: (cli.call_quota > 0).then_some(cli.call_quota),
        records_per_second: (cli.records_quota > 0).then_some(cli.records_quota),
        bytes_per_second: (cli.bytes_quota > 0).then_some(cli.bytes_quota),
    };
    fault.set_quota((quota != Quota::default()).then_some(quota));
    let listener = TcpListener::bind(("127.0.0.1", cli.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", cli.port))?;
    let stats_addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({
            "endpoint_url": fault.endpoint_url(),
            "stats_url": format!("http://{stats_addr}/stats"),
            "stream": cli.stream,
            "latency_ms": cli.latency_ms,
            "call_quota": cli.call_quota,
            "records_quota": cli.records_quota,
            "bytes_quota": cli.bytes_quota,
        })
    );
    let side = tokio::spawn(serve_stats(listener, Arc::clone(&fault), started));
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    side.abort();
    println!("{}", stats(&fault, started));
    Ok(())
}

/// Serves `GET /stats` (anything else: 404) until aborted.
async fn serve_stats(listener: TcpListener, fault: Arc<FirehoseFault>, started: Instant) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let fault = Arc::clone(&fault);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let fault = Arc::clone(&fault);
                async move {
                    let response = if req.uri().path() == "/stats" {
                        let body = stats(&fault, started).to_string();
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"GET /stats\n")))
                    };
                    Ok::<_, Infallible>(
                        response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_each_record_up_to_5_kib() {
        assert_eq!(billed(0), 5120);
        assert_eq!(billed(1), 5120);
        assert_eq!(billed(5120), 5120);
        assert_eq!(billed(5121), 10_240);
        assert_eq!(billed(12_000), 15_360);
    }

    #[tokio::test]
    async fn stats_count_calls_records_and_billed_bytes() {
        let fault = FirehoseFault::start("s").await;
        let started = Instant::now();
        let empty = stats(&fault, started);
        assert_eq!(empty["put_calls"], 0);
        assert_eq!(empty["accepted_billed_bytes"], 0);
        let client = put_batch(&fault.endpoint_url(), &["a\n", "bb\n"]).await;
        assert_eq!(client, 200);
        let s = stats(&fault, started);
        assert_eq!(s["put_calls"], 1);
        assert_eq!(s["records"], 2);
        assert_eq!(s["accepted_records"], 2);
        assert_eq!(s["accepted_bytes"], 5);
        assert_eq!(s["accepted_billed_bytes"], 10_240);
        assert_eq!(s["max_records_per_call"], 2);
        assert_eq!(s["billed_increments"]["1"], 2);
        assert_eq!(s["calls"]["PutRecordBatch"], 1);
    }

    /// One `PutRecordBatch` call with these records, over a raw hyper client; the HTTP status.
    async fn put_batch(url: &str, records: &[&str]) -> u16 {
        use base64::Engine as _;
        let records: Vec<_> = records
            .iter()
            .map(|r| serde_json::json!({"Data": base64::engine::general_purpose::STANDARD.encode(r)}))
            .collect();
        let body = serde_json::json!({"DeliveryStreamName": "s", "Records": records}).to_string();
        let authority = url.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::post("/")
            .header("host", authority)
            .header("x-amz-target", "Firehose_20150804.PutRecordBatch")
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        sender
            .send_request(request)
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}
