//! Throughput of the Firehose sink against the test kit's fault-injecting endpoint with a realistic
//! per-call latency: group commit (`PutRecordBatch`) versus the one-`PutRecord`-per-webhook baseline.
//!
//! `cargo run -p stripe-webhook-benches --release --bin firehose_sink_throughput -- [records] [latency_ms] [concurrency]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stripe_webhook_benches::{PutRecordSink, loopback_sdk};
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_firehose::{FirehoseSink, FirehoseSinkConfig};
use stripe_webhook_testkit::firehose_fault::FirehoseFault;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric argument"))
        .collect();
    let records = args.first().copied().unwrap_or(5_000);
    let latency = Duration::from_millis(args.get(1).copied().unwrap_or(30) as u64);
    let concurrency = args.get(2).copied().unwrap_or(200);
    println!("{records} records of ~5 KB, {concurrency} concurrent webhooks, {latency:?} per call");
    for baseline in [false, true] {
        let fault = FirehoseFault::start("bench").await;
        fault.set_latency(latency);
        let sdk = loopback_sdk(fault.endpoint_url()).await;
        let deadline = Duration::from_secs(60);
        let sink: Arc<dyn RecordSink> = if baseline {
            Arc::new(PutRecordSink::new(&sdk, "bench", deadline))
        } else {
            let mut config = FirehoseSinkConfig::new("bench");
            config.deadline = deadline;
            Arc::new(FirehoseSink::new(config, &sdk))
        };
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (sink, next) = (Arc::clone(&sink), Arc::clone(&next));
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= records {
                            return latencies;
                        }
                        let body = format!(
                            r#"{{"id":"evt_{i}","type":"x.y","object":"event","data":{{"object":{{"pad":"{}"}}}}}}"#,
                            "a".repeat(2_400)
                        );
                        let record = encode(
                            Bytes::from(body),
                            "t=1,v1=00",
                            ReceivedAt::now(),
                            &EnvelopeOptions::default(),
                        )
                        .expect("encode");
                        let t = Instant::now();
                        sink.put(record).await.expect("put");
                        latencies.push(t.elapsed());
                    }
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for w in workers {
            latencies.extend(w.await.expect("worker"));
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "{:<28} {:>8.0} records/s  {:>5} calls  p50 {:>6.1?}  p99 {:>6.1?}",
            if baseline {
                "PutRecord per webhook"
            } else {
                "PutRecordBatch group commit"
            },
            records as f64 / elapsed.as_secs_f64(),
            fault.put_calls().len(),
            p(0.5),
            p(0.99),
        );
        assert_eq!(fault.accepted().len(), records);
    }
}
