//! The ingest core of the Stripe webhook archive, shared by the hyper server and the Lambda function.
//!
//! One transport-agnostic entry point, [`Ingest::handle`]: the raw body bytes, the raw
//! `Stripe-Signature` header and the receipt time in; an [`Outcome`] out, which maps to an HTTP
//! status and a short JSON body:
//!
//! | outcome | status | body |
//! |---|---|---|
//! | verified, encoded, acknowledged durable by the sink | 200 | `{"received":true}` |
//! | any signature problem (missing, malformed, stale, future, no match) | 400 | `{"error":…,"reason":…}` |
//! | verified body that is not a Stripe event | 400 | `{"error":…,"reason":…}` |
//! | body over the limit | 413 | `{"error":"body too large",…}` |
//! | sink overloaded, timed out, unavailable, shutting down | 503 | Stripe retries |
//! | sink failed permanently | 500 | Stripe retries |
//!
//! Configuration from flags and environment lives in [`Config`], validated at start-up.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use stripe_webhook_core::{Ingest, IngestOptions, WebhookRequest};
//! use stripe_webhook_envelope::ReceivedAt;
//! use stripe_webhook_sink::MemorySink;
//! use stripe_webhook_verify::{Secret, Verifier, signature_header};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let secret = Secret::new("whsec_example").unwrap();
//! let sink = Arc::new(MemorySink::new(100));
//! let ingest = Ingest::new(Verifier::new(vec![secret.clone()]).unwrap(), sink.clone(), IngestOptions::default());
//!
//! let body = Bytes::from_static(br#"{"id":"evt_1","object":"event","type":"charge.succeeded","data":{"object":{}}}"#);
//! let received_at = ReceivedAt::now();
//! let header = signature_header(&[&secret], received_at.unix_seconds(), &body);
//! let outcome = ingest
//!     .handle(WebhookRequest { body, signature: Some(header.as_bytes()), received_at })
//!     .await;
//! assert_eq!(outcome.status(), 200);
//! assert_eq!(outcome.response_body(), r#"{"received":true}"#);
//! assert_eq!(sink.len(), 1);
//! # });
//! ```

pub mod config;
mod ingest;
pub mod metrics;

pub use config::{Config, ConfigError, SinkKind, SinkStartupError};
pub use ingest::{Ingest, IngestOptions, Outcome, OutcomeKind, SignatureProblem, WebhookRequest};
