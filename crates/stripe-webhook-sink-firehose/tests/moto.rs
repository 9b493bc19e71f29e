//! The sink against `moto_server` (pinned `moto[server]`): the real SDK clients with an endpoint
//! override, records read back from moto's S3 and compared byte for byte.

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use common::{padded_record, put_all, record, sink_at};
use stripe_webhook_sink::{RecordSink, SinkErrorKind};
use stripe_webhook_testkit::moto::{Moto, S3Object, STREAM_PREFIX};

const BUCKET: &str = "webhook-archive";
const STREAM: &str = "stripe-webhooks";

fn lines_of(objects: &[S3Object]) -> Vec<Bytes> {
    let mut lines = Vec::new();
    for o in objects {
        let mut rest = &o.body[..];
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            lines.push(Bytes::copy_from_slice(&rest[..end]));
            rest = &rest[end..];
        }
    }
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier (./scripts/test): needs moto_server from the pinned Python tools"]
async fn records_reach_moto_s3_byte_exact_including_oversize() {
    let moto = tokio::task::spawn_blocking(|| {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        moto.create_delivery_stream(STREAM, BUCKET);
        moto
    })
    .await
    .expect("moto setup");
    let moto = Arc::new(moto);

    let sink = sink_at(&moto.endpoint_url(), STREAM, |c| {
        c.oversize_bucket = Some(BUCKET.to_owned());
    })
    .await;
    sink.healthcheck()
        .await
        .expect("moto stream is ACTIVE DirectPut");
    let health = sink.last_health();
    assert!(health.ready);
    assert!(
        health
            .stream_arn
            .is_some_and(|a| a.ends_with(&format!("deliverystream/{STREAM}")))
    );

    let mut records: Vec<_> = (0..40).map(record).collect();
    records.extend((40..45).map(|i| padded_record(i, 20_000)));
    let big = padded_record(999, 1_500_000);
    assert!(big.len() > 1_024_000, "takes the oversize path");
    let big_body = big.body().clone();
    records.push(big.clone());
    let results = put_all(&sink, records).await;
    for (line, result) in &results {
        assert!(result.is_ok(), "{} bytes: {result:?}", line.len());
    }

    let objects = {
        let moto = Arc::clone(&moto);
        tokio::task::spawn_blocking(move || moto.objects(BUCKET))
            .await
            .expect("read back")
    };
    let (stream_objects, others): (Vec<S3Object>, Vec<S3Object>) = objects
        .into_iter()
        .partition(|o| o.key.starts_with(STREAM_PREFIX));

    // The oversize body, alone under `oversize/`, byte-exact.
    assert_eq!(
        others.len(),
        1,
        "only the oversize body outside the stream prefix"
    );
    let oversize = &others[0];
    let partition = big.received_at().partition().to_string();
    assert!(
        oversize
            .key
            .starts_with(&format!("oversize/{partition}/evt_999-")),
        "{}",
        oversize.key
    );
    assert!(oversize.key.ends_with(".json"));
    assert_eq!(oversize.body, big_body.to_vec(), "oversize body byte-exact");

    // The stream holds exactly the small records' lines and the pointer, byte-exact.
    let pointer = big.oversize_pointer(BUCKET, &oversize.key);
    let mut expected: Vec<Bytes> = results
        .iter()
        .map(|(line, _)| line.clone())
        .filter(|l| l != big.line())
        .collect();
    expected.push(pointer.line().clone());
    expected.sort();
    let got = lines_of(&stream_objects);
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "stream content differs from the Ok'd lines"
    );
    let pointer_json: serde_json::Value =
        serde_json::from_slice(pointer.line()).expect("pointer is JSON");
    assert_eq!(pointer_json["oversize"]["key"], oversize.key.as_str());
    assert_eq!(pointer_json["data"], serde_json::Value::Null);

    // Missing stream: a clear start-up error naming stream and region.
    let missing = sink_at(&moto.endpoint_url(), "no-such-stream", |_| {}).await;
    let err = missing.healthcheck().await.expect_err("missing stream");
    assert_eq!(err.kind(), SinkErrorKind::Permanent);
    assert!(
        err.message().contains("no-such-stream") && err.message().contains("us-east-1"),
        "{err}"
    );
}
