//! The AWS Lambda front door of the Stripe webhook archive: the same ingest core as the hyper
//! server, behind a Function URL, an API Gateway REST or HTTP API, or an Application Load Balancer.
//!
//! The binary (`src/main.rs`, packaged by `cargo lambda` as `bootstrap`) builds one [`Function`] in
//! init and hands every invocation payload to [`Function::handle`]:
//!
//! The function only decodes events and shapes responses: the event becomes an `http` request
//! (method, path, every header field, the exact body bytes) and the service's
//! [`App`] answers it — the same routes, readiness, refusals and bytes as the hyper server. Paths
//! match by suffix ([`PathMatch::Suffix`](stripe_webhook_service::PathMatch::Suffix)), so a REST API stage prefix such as
//! `/prod/webhook/stripe` or a custom-domain base path routes too. A body marked base64 that is not
//! valid base64 is refused by the app as `bad_body_encoding` (400), a body over `MAX_BODY_BYTES`
//! as 413, both before any decoding beyond the limit. Each answer is built in the payload format
//! the event came in ([`event::Shape`]).
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use stripe_webhook_core::{Ingest, IngestOptions};
//! use stripe_webhook_lambda::Function;
//! use stripe_webhook_service::{App, PathMatch};
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
//! let function = Function::new(App::new(ingest, PathMatch::Suffix));
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

pub mod emf;
pub mod event;

use bytes::Bytes;
use http::{Method, Request, Uri};
use serde_json::Value;
use stripe_webhook_core::{ReceivedAt, Refusal};
use stripe_webhook_service::App;

use crate::event::{BodyError, HttpEvent, into_event_response};

pub use crate::event::NotAnHttpEvent;

/// The function's state, built once in init and shared by every invocation.
#[derive(Clone, Debug)]
pub struct Function {
    app: App,
}

impl Function {
    /// Wraps the application (built with [`PathMatch::Suffix`](stripe_webhook_service::PathMatch::Suffix) for API Gateway stages).
    pub fn new(app: App) -> Self {
        Self { app }
    }

    /// The application (for shutting the sink down).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Answers one invocation payload with a response payload of the same shape.
    ///
    /// # Errors
    /// If the payload is not an HTTP event; the runtime reports it as an invocation error.
    pub async fn handle(&self, event: Value) -> Result<Value, NotAnHttpEvent> {
        let received_at = ReceivedAt::now();
        let mut event = HttpEvent::from_value(event)?;
        let shape = event.shape;
        // An unparseable method token answers like any method the route does not take.
        let method = Method::from_bytes(event.method.as_bytes()).unwrap_or(Method::TRACE);
        // A path that is not a valid URI path is routed as `/` (404), like any unknown path.
        let uri: Uri = event.path.parse().unwrap_or_else(|_| Uri::from_static("/"));
        let route = self.app.route(&method, uri.path());
        let body = if route.reads_body() {
            match event.take_body(self.app.max_body_bytes()) {
                Ok(body) => body,
                Err(e) => {
                    let refusal = match e {
                        BodyError::TooLarge => Refusal::BodyTooLarge,
                        BodyError::InvalidBase64 => Refusal::BadBodyEncoding,
                    };
                    return Ok(into_event_response(self.app.refuse(refusal), shape));
                }
            }
        } else {
            Bytes::new()
        };
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.headers_mut() = event.headers();
        *request.uri_mut() = uri;
        let response = self.app.respond(request, received_at).await;
        Ok(into_event_response(response, shape))
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
