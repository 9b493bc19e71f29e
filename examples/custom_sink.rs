//! Plugging your own storage into the ingest core: implement `RecordSink`, hand it to `Ingest`.
//!
//! The contract: `put` resolves `Ok` only once the record is durable in your backend; an error says
//! whether retrying may help (503, Stripe retries) or not (500).
//!
//! Run: `cargo run -p stripe-webhook-examples --example custom_sink`

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use stripe_webhook_core::{Ingest, IngestOptions, SIGNATURE_HEADER, WebhookRequest};
use stripe_webhook_envelope::{ReceivedAt, Record};
use stripe_webhook_sink::{RecordSink, SinkError, SinkErrorKind};
use stripe_webhook_verify::{Secret, Verifier, signature_header};

/// A toy sink that "stores" lines in a vector and refuses events of one type, to show both paths.
#[derive(Default)]
struct VecSink {
    lines: Mutex<Vec<Bytes>>,
}

#[async_trait]
impl RecordSink for VecSink {
    fn name(&self) -> &'static str {
        "vec"
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn put(&self, record: Record) -> Result<(), SinkError> {
        if record.event_type() == "test.unavailable" {
            return Err(SinkError::new(
                SinkErrorKind::Unavailable,
                "backend is down",
            ));
        }
        self.lines
            .lock()
            .map_err(|_| SinkError::new(SinkErrorKind::Permanent, "poisoned"))?
            .push(record.line().clone());
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = Secret::new("whsec_example")?;
    let sink = Arc::new(VecSink::default());
    let ingest = Ingest::new(
        Verifier::new(vec![secret.clone()])?,
        sink.clone(),
        IngestOptions::default(),
    );
    for event_type in ["charge.succeeded", "test.unavailable"] {
        let body = Bytes::from(format!(
            r#"{{"id":"evt_{n}","object":"event","type":"{event_type}","data":{{"object":{{}}}}}}"#,
            n = event_type.len()
        ));
        let received_at = ReceivedAt::now();
        let header = signature_header(&[&secret], received_at.unix_seconds(), &body);
        let mut headers = http::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, header.parse()?);
        let outcome = ingest
            .handle(WebhookRequest {
                body,
                headers: &headers,
                received_at,
            })
            .await;
        println!(
            "{event_type}: {} {}",
            outcome.status(),
            outcome.response_body()
        );
    }
    let lines = sink.lines.lock().map_err(|_| "poisoned")?;
    println!("stored {} record(s):", lines.len());
    for line in lines.iter() {
        print!("{}", String::from_utf8_lossy(line));
    }
    Ok(())
}
