//! Measures the file sink's durable put throughput with 1 and with 64 concurrent putters.
//!
//! `cargo run -p stripe-webhook-benches --release --bin file_sink_throughput -- [seconds] [dir]`
//!
//! Each put resolves only after `fdatasync`; group commit lets concurrent puts share syncs, so the
//! syncs-per-record figure falls as concurrency rises. The directory defaults to a temporary one
//! under `$TMPDIR`: point it at the disk you will archive to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_file::{FileSink, FileSinkConfig};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(3, |s| s.parse().expect("seconds"));
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .next()
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let body = Bytes::from(format!(
        r#"{{"id":"evt_1","object":"event","type":"charge.succeeded","api_version":"2024-06-20","created":1700000000,"livemode":false,"data":{{"object":{{"id":"ch_1","object":"charge","amount":1000,"currency":"usd","description":"{}"}}}}}}"#,
        "x".repeat(1000)
    ));
    println!("dir: {}", dir.display());
    println!("putters  records/s  syncs/record  avg batch");
    for putters in [1usize, 64] {
        let (sink, _) = FileSink::open(FileSinkConfig::new(&dir))
            .await
            .expect("open");
        let sink = Arc::new(sink);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let tasks: Vec<_> = (0..putters)
            .map(|_| {
                let sink = Arc::clone(&sink);
                let body = body.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let record = encode(
                            body.clone(),
                            "t=1,v1=00",
                            ReceivedAt::now(),
                            &EnvelopeOptions::default(),
                        )
                        .expect("encode");
                        sink.put(record).await.expect("put");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("putter");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let stats = sink.stats();
        sink.shutdown().await.expect("shutdown");
        println!(
            "{putters:>7}  {:>9.0}  {:>12.3}  {:>9.1}",
            stats.records as f64 / elapsed,
            stats.syncs as f64 / stats.records as f64,
            stats.records as f64 / stats.batches as f64,
        );
    }
}
