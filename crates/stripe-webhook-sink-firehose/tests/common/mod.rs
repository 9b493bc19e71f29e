//! Helpers shared by the Firehose sink's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_firehose::config::Credentials;
use bytes::Bytes;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, Record, encode};
use stripe_webhook_sink::SinkError;
use stripe_webhook_sink_firehose::{FirehoseSink, FirehoseSinkConfig};

/// The fixed `Stripe-Signature` header the records carry (never verified here).
pub const SIGNATURE: &str =
    "t=1700000000,v1=0000000000000000000000000000000000000000000000000000000000000000";

/// A small record for event `evt_<i>`.
pub fn record(i: usize) -> Record {
    let body = format!(r#"{{"id":"evt_{i}","type":"x.y","object":"event","data":{{}}}}"#);
    encode(
        Bytes::from(body),
        SIGNATURE,
        ReceivedAt::now(),
        &EnvelopeOptions::default(),
    )
    .expect("encode a minimal event")
}

/// A record for event `evt_<i>` whose body carries `pad` bytes of padding.
pub fn padded_record(i: usize, pad: usize) -> Record {
    let body = format!(
        r#"{{"id":"evt_{i}","type":"x.y","object":"event","data":{{"object":{{"pad":"{}"}}}}}}"#,
        "a".repeat(pad)
    );
    encode(
        Bytes::from(body),
        SIGNATURE,
        ReceivedAt::now(),
        &EnvelopeOptions::default(),
    )
    .expect("encode a padded event")
}

/// An SDK configuration talking only to `endpoint` with static test credentials.
pub async fn sdk_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A sink for `stream` at `endpoint`, with `tweak` applied to the default configuration.
pub async fn sink_at(
    endpoint: &str,
    stream: &str,
    tweak: impl FnOnce(&mut FirehoseSinkConfig),
) -> Arc<FirehoseSink> {
    let mut config = FirehoseSinkConfig::new(stream);
    tweak(&mut config);
    Arc::new(FirehoseSink::new(config, &sdk_for(endpoint).await))
}

/// Puts every record concurrently; returns each record's line with its outcome.
pub async fn put_all(
    sink: &Arc<FirehoseSink>,
    records: Vec<Record>,
) -> Vec<(Bytes, Result<(), SinkError>)> {
    use stripe_webhook_sink::RecordSink;
    let tasks: Vec<_> = records
        .into_iter()
        .map(|r| {
            let sink = Arc::clone(sink);
            tokio::spawn(async move {
                let line = r.line().clone();
                (line, sink.put(r).await)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("put task"));
    }
    out
}

/// The core safety property: every line given `Ok` was accepted by the endpoint (as a multiset:
/// duplicates there are fine, an `Ok` without an accepted copy is a loss).
pub fn assert_ok_subset_of_accepted(
    results: &[(Bytes, Result<(), SinkError>)],
    accepted: &[Bytes],
) {
    let mut pool: Vec<&Bytes> = accepted.iter().collect();
    for (line, result) in results {
        if result.is_ok() {
            let pos = pool.iter().position(|a| *a == line).unwrap_or_else(|| {
                panic!(
                    "Ok given for a record the endpoint never accepted: {} bytes",
                    line.len()
                )
            });
            pool.swap_remove(pos);
        }
    }
}
