//! The AWS Lambda front door of the Stripe webhook archive: the same ingest core as the hyper
//! server, behind a Function URL, an API Gateway REST or HTTP API, or an Application Load Balancer.
//!
//! The binary (`src/main.rs`, packaged by `cargo lambda` as `bootstrap`) builds one [`Function`] in
//! init and hands every invocation payload to [`Function::handle`]:
//!
//! - `POST` to a path ending in `/webhook/stripe` (so a REST API stage prefix such as
//!   `/prod/webhook/stripe` or a custom-domain base path routes too): the raw body bytes and the
//!   `Stripe-Signature` header go to [`Ingest::handle`], which verifies before anything parses the
//!   body and answers only once the sink made the record durable.
//! - `GET`/`HEAD` to a path ending in `/health`: `200 {"status":"ok","sink":…}`.
//! - any other method on those paths: `405`; any other path: `404`.
//! - a body marked base64 that is not valid base64: `400`; a body over `MAX_BODY_BYTES`: `413`.
//!
//! Each answer is built in the payload format the event came in ([`event::Shape`]).
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use stripe_webhook_core::{Ingest, IngestOptions};
//! use stripe_webhook_lambda::Function;
//! use stripe_webhook_sink::MemorySink;
//! use stripe_webhook_verify::{Secret, Verifier};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let secret = Secret::new("whsec_example").unwrap();
//! let ingest = Ingest::new(
//!     Verifier::new(vec![secret]).unwrap(),
//!     Arc::new(MemorySink::new(10)),
//!     IngestOptions::default(),
//! );
//! let function = Function::new(ingest, "memory");
//! let event = json!({
//!     "version": "2.0",
//!     "rawPath": "/webhook/stripe",
//!     "requestContext": {"http": {"method": "POST", "path": "/webhook/stripe"}},
//!     "headers": {"content-type": "application/json"},
//!     "body": "{}",
//!     "isBase64Encoded": false,
//! });
//! let response = function.handle(event).await.unwrap();
//! assert_eq!(response["statusCode"], 400); // no Stripe-Signature header
//! assert_eq!(response["headers"]["content-type"], "application/json");
//! # });
//! ```

pub mod event;

use serde_json::Value;
use stripe_webhook_core::{Ingest, Outcome, WebhookRequest};
use stripe_webhook_envelope::ReceivedAt;

use crate::event::{BodyError, HttpEvent, HttpResponse};

pub use crate::event::NotAnHttpEvent;

/// The path suffix that takes webhooks (the server's `/webhook/stripe`, after any stage prefix).
pub const WEBHOOK_PATH: &str = "/webhook/stripe";
/// The path suffix of the health check.
pub const HEALTH_PATH: &str = "/health";

/// The function's state, built once in init and shared by every invocation.
#[derive(Clone, Debug)]
pub struct Function {
    ingest: Ingest,
    sink_name: &'static str,
}

impl Function {
    /// Wraps the ingest core; `sink_name` is reported by `/health`.
    pub fn new(ingest: Ingest, sink_name: &'static str) -> Self {
        Self { ingest, sink_name }
    }

    /// The ingest core (for shutting the sink down).
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Answers one invocation payload with a response payload of the same shape.
    ///
    /// # Errors
    /// If the payload is not an HTTP event; the runtime reports it as an invocation error.
    pub async fn handle(&self, event: Value) -> Result<Value, NotAnHttpEvent> {
        let received_at = ReceivedAt::now();
        let mut request = HttpEvent::from_value(event)?;
        let shape = request.shape;
        let response = self.route(&mut request, received_at).await;
        Ok(response.into_event_response(shape))
    }

    async fn route(&self, request: &mut HttpEvent, received_at: ReceivedAt) -> HttpResponse {
        let (allow, known) = if request.path.ends_with(WEBHOOK_PATH) {
            ("POST", matches!(request.method.as_str(), "POST"))
        } else if request.path.ends_with(HEALTH_PATH) {
            ("GET", matches!(request.method.as_str(), "GET" | "HEAD"))
        } else {
            tracing::debug!(path = %request.path, "not found");
            return HttpResponse::json(404, r#"{"error":"not found"}"#);
        };
        if !known {
            tracing::debug!(method = %request.method, path = %request.path, "method not allowed");
            return HttpResponse::json(
                405,
                format!(r#"{{"error":"method not allowed","allow":"{allow}"}}"#),
            )
            .with_header("allow", allow);
        }
        if allow == "GET" {
            return HttpResponse::json(
                200,
                format!(r#"{{"status":"ok","sink":"{}"}}"#, self.sink_name),
            );
        }
        self.webhook(request, received_at).await
    }

    async fn webhook(&self, request: &mut HttpEvent, received_at: ReceivedAt) -> HttpResponse {
        let body = match request.take_body(self.ingest.max_body_bytes()) {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return outcome_response(&self.ingest.body_too_large()),
            Err(e @ BodyError::InvalidBase64) => {
                tracing::warn!(
                    outcome = "bad_body_encoding",
                    status = 400,
                    "webhook refused: {e}"
                );
                return HttpResponse::json(
                    400,
                    r#"{"error":"request body is not valid base64","reason":"bad_body_encoding"}"#,
                );
            }
        };
        let outcome = self
            .ingest
            .handle(WebhookRequest {
                body,
                signature: request.header("stripe-signature").map(str::as_bytes),
                received_at,
            })
            .await;
        outcome_response(&outcome)
    }
}

fn outcome_response(outcome: &Outcome) -> HttpResponse {
    let response = HttpResponse::json(outcome.status(), outcome.response_body());
    if outcome.status() == 503 {
        response.with_header("retry-after", "1")
    } else {
        response
    }
}

impl From<NotAnHttpEvent> for lambda_runtime::Diagnostic {
    fn from(error: NotAnHttpEvent) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "NotAnHttpEvent".into(),
            error_message: error.to_string(),
        }
    }
}
