//! The benchmark baseline sink makes one `PutRecord` call per record, byte for byte.

use std::time::Duration;

use bytes::Bytes;
use stripe_webhook_benches::{PutRecordSink, loopback_sdk};
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_testkit::firehose_fault::{FirehoseFault, Step};

#[tokio::test]
async fn one_put_record_call_per_record() {
    let fault = FirehoseFault::start("baseline").await;
    let sdk = loopback_sdk(fault.endpoint_url()).await;
    let sink = PutRecordSink::new(&sdk, "baseline", Duration::from_secs(5));
    let mut lines = Vec::new();
    for i in 0..3 {
        let body = format!(r#"{{"id":"evt_{i}","object":"event","type":"x.y","data":{{}}}}"#);
        let record = encode(
            Bytes::from(body),
            "t=1,v1=00",
            ReceivedAt::now(),
            &EnvelopeOptions::default(),
        )
        .expect("encode");
        lines.push(record.line().clone());
        sink.put(record).await.expect("put");
    }
    let calls = fault.put_calls();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| c.operation == "PutRecord" && c.records.len() == 1)
    );
    assert_eq!(fault.accepted(), lines);

    // No retries: a failed call fails the put.
    fault.push_steps([Step::ServerError]);
    let body = Bytes::from_static(br#"{"id":"evt_x","object":"event","type":"x.y","data":{}}"#);
    let record = encode(
        body,
        "t=1,v1=00",
        ReceivedAt::now(),
        &EnvelopeOptions::default(),
    )
    .expect("encode");
    assert!(sink.put(record).await.is_err());
    assert_eq!(fault.put_calls().len(), 4);
}
