//! The pure ingest core of the Stripe webhook archive, shared by every front door (the hyper
//! server, the Lambda function, anything that embeds it).
//!
//! One entry point, [`Ingest::handle`]: the raw body bytes, the request headers and the receipt
//! time in; an [`Outcome`] out, which knows its HTTP answer ([`Outcome::response`]: status,
//! headers, body) and its metric label. Requests a transport refuses before the core sees a body
//! (too large, too slow, unreadable, bad base64) go through [`Ingest::refuse`], so every answer is
//! counted and logged in one place. [`Ingest::health`] and [`Ingest::shutdown`] speak for the sink.
//!
//! | outcome | status | body |
//! |---|---|---|
//! | verified, encoded, acknowledged durable by the sink | 200 | `{"received":true}` |
//! | any signature problem (missing, malformed, duplicated, stale, future, no match) | 400 | `{"error":…,"reason":…}` |
//! | verified body that is not a Stripe event | 400 | `{"error":…,"reason":…}` |
//! | body unreadable, or marked base64 and not base64 | 400 | `{"error":…,"reason":…}` |
//! | body not received in time | 408 | `{"error":…,"reason":"body_timeout"}` |
//! | body over the limit | 413 | `{"error":"body too large",…}` |
//! | sink overloaded, timed out, unavailable, shutting down | 503 + `Retry-After` | Stripe retries |
//! | sink failed permanently | 500 | Stripe retries |
//!
//! No configuration, no AWS, no async runtime here: the service crate (`stripe-webhook-service`)
//! reads settings and builds sinks; the binaries do I/O.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::HeaderMap;
//! use stripe_webhook_core::{Ingest, IngestOptions, ReceivedAt, WebhookRequest};
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
//! let mut headers = HeaderMap::new();
//! let header = signature_header(&[&secret], received_at.unix_seconds(), &body);
//! headers.insert("stripe-signature", header.parse().unwrap());
//! let outcome = ingest
//!     .handle(WebhookRequest { body, headers: &headers, received_at })
//!     .await;
//! assert_eq!(outcome.status(), 200);
//! assert_eq!(outcome.response().body(), r#"{"received":true}"#);
//! assert_eq!(sink.len(), 1);
//! assert!(ingest.health().ready);
//! # });
//! ```

/// The README's example, compiled as a doctest so the README cannot drift from the crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod ingest;
mod log_limit;
mod outcome;

pub use ingest::{
    DEFAULT_MAX_BODY_BYTES, Ingest, IngestOptions, Retirement, SIGNATURE_HEADER, WebhookRequest,
};
pub use log_limit::{REFUSALS_PER_SECOND, admit_refusal_log};
pub use outcome::{Outcome, OutcomeKind, RETRY_AFTER_SECS, Refusal, json_response};
pub use stripe_webhook_envelope::ReceivedAt;
/// The metric names (re-exported from `stripe-webhook-metrics`).
pub use stripe_webhook_metrics as metrics;
pub use stripe_webhook_sink::{SinkError, SinkErrorKind, SinkHealth};
