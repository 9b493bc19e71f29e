//! The one HTTP surface both front doors answer with: a fully read request in, a response out.
//!
//! Routes are defined here and nowhere else:
//!
//! | route | method | answer |
//! |---|---|---|
//! | `/webhook/stripe` | `POST` | the ingest core's [`Outcome`](stripe_webhook_core::Outcome) |
//! | `/health` | `GET`, `HEAD` | readiness: `200 {"status":"ok",…}` or `503 {"status":"not_ready"\|"shutting_down",…}` |
//! | either path | any other | `405` with `Allow` |
//! | any other path | any | `404` |
//!
//! Transports do only their own I/O: the hyper server reads the body within its limits, the Lambda
//! decodes its event. A request they refuse while reading (too large, too slow, unreadable, bad
//! base64) is answered by [`App::refuse`], so every answer and every refusal is counted in
//! `stripe_webhook_requests_total` and both front doors answer the same bytes for the same request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use stripe_webhook_core::{
    Ingest, ReceivedAt, Refusal, WebhookRequest, json_response, metrics as m,
};
use stripe_webhook_sink::SinkError;

/// The path that takes webhooks (the Node service's).
pub const WEBHOOK_PATH: &str = "/webhook/stripe";
/// The readiness path.
pub const HEALTH_PATH: &str = "/health";

/// How request paths are matched against [`WEBHOOK_PATH`] and [`HEALTH_PATH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// The path is exactly the route (the server).
    Exact,
    /// The path ends with the route (Lambda: API Gateway stage prefixes such as
    /// `/prod/webhook/stripe` and custom-domain base paths).
    Suffix,
}

/// Where a request goes, decided from its method and path alone (before any body is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST` to the webhook path: read the body, then [`App::respond`].
    Webhook,
    /// `GET`/`HEAD` to the health path.
    Health,
    /// A known path with another method: 405.
    MethodNotAllowed {
        /// The methods the path takes (the `Allow` header).
        allow: &'static str,
    },
    /// Any other path: 404.
    NotFound,
}

impl Route {
    /// Whether the transport must read the request body for this route.
    pub fn reads_body(self) -> bool {
        self == Route::Webhook
    }
}

/// The application: routes, readiness, refusals. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ingest: Ingest,
    paths: PathMatch,
    shutting_down: AtomicBool,
}

impl App {
    /// The application over `ingest`, matching paths as `paths` says.
    pub fn new(ingest: Ingest, paths: PathMatch) -> Self {
        Self {
            inner: Arc::new(Inner {
                ingest,
                paths,
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// The ingest core.
    pub fn ingest(&self) -> &Ingest {
        &self.inner.ingest
    }

    /// The body limit transports enforce while reading (then [`Refusal::BodyTooLarge`]).
    pub fn max_body_bytes(&self) -> usize {
        self.inner.ingest.max_body_bytes()
    }

    /// Where a request with this method and path goes.
    pub fn route(&self, method: &Method, path: &str) -> Route {
        let is = |route: &str| match self.inner.paths {
            PathMatch::Exact => path == route,
            PathMatch::Suffix => path.ends_with(route),
        };
        if is(WEBHOOK_PATH) {
            if method == Method::POST {
                Route::Webhook
            } else {
                Route::MethodNotAllowed { allow: "POST" }
            }
        } else if is(HEALTH_PATH) {
            if method == Method::GET || method == Method::HEAD {
                Route::Health
            } else {
                Route::MethodNotAllowed { allow: "GET, HEAD" }
            }
        } else {
            Route::NotFound
        }
    }

    /// Answers a fully read request (for routes that read no body, the body is ignored).
    /// A `HEAD` answer has the `GET` answer's status and headers and no body.
    pub async fn respond(
        &self,
        request: Request<Bytes>,
        received_at: ReceivedAt,
    ) -> Response<Bytes> {
        let head = request.method() == Method::HEAD;
        let mut response = match self.route(request.method(), request.uri().path()) {
            Route::Webhook => {
                let (parts, body) = request.into_parts();
                self.inner
                    .ingest
                    .handle(WebhookRequest {
                        body,
                        headers: &parts.headers,
                        received_at,
                    })
                    .await
                    .response()
            }
            Route::Health => self.health(),
            Route::MethodNotAllowed { allow } => {
                refused(&request, "method_not_allowed");
                let mut response = json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!(
                        r#"{{"error":"method not allowed","reason":"method_not_allowed","allow":"{allow}"}}"#
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                response
            }
            Route::NotFound => {
                refused(&request, "not_found");
                json_response(
                    StatusCode::NOT_FOUND,
                    r#"{"error":"not found","reason":"not_found"}"#,
                )
            }
        };
        if head {
            *response.body_mut() = Bytes::new();
        }
        response
    }

    /// The header checks a transport runs before it buffers a webhook body
    /// ([`Ingest::precheck`]): `Some` is the refusal (400, counted and logged) to send instead of
    /// reading the body.
    pub fn precheck(
        &self,
        headers: &http::HeaderMap,
        received_at: ReceivedAt,
    ) -> Option<Response<Bytes>> {
        self.inner
            .ingest
            .precheck(headers, received_at)
            .err()
            .map(|outcome| outcome.response())
    }

    /// Answers a webhook request the transport refused while reading it (counted and logged by
    /// the core like every other outcome).
    pub fn refuse(&self, refusal: Refusal) -> Response<Bytes> {
        self.inner.ingest.refuse(refusal).response()
    }

    /// Readiness: `200 {"status":"ok","sink":…,"durable":…}` while the sink can take writes,
    /// `503` with `"status":"not_ready"` when it cannot (its last write or call failed) and
    /// `"status":"shutting_down"` once shutdown began. The body never carries backend detail
    /// (paths, AWS error text): the sinks log that when their state changes.
    pub fn health(&self) -> Response<Bytes> {
        let ingest = &self.inner.ingest;
        let (status, word) = if self.inner.shutting_down.load(Ordering::Acquire) {
            (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
        } else if !ingest.health().ready {
            (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
        } else {
            (StatusCode::OK, "ok")
        };
        json_response(
            status,
            format!(
                r#"{{"status":"{word}","sink":"{}","durable":{}}}"#,
                ingest.sink_name(),
                ingest.sink_is_durable()
            ),
        )
    }

    /// From now on `/health` answers `503 shutting_down`, so load balancers stop sending traffic;
    /// webhooks are still answered until [`App::shutdown`].
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    /// Begins shutdown (if not yet) and stops the sink: it takes no more records and makes
    /// everything accepted durable and visible.
    ///
    /// # Errors
    /// The sink's, if it could not finish.
    pub async fn shutdown(&self) -> Result<(), SinkError> {
        self.begin_shutdown();
        self.inner.ingest.shutdown().await
    }
}

/// Counts and logs (rate-limited, like the core's refusals) a refusal the router made.
fn refused(request: &Request<Bytes>, outcome: &'static str) {
    metrics::counter!(m::REQUESTS_TOTAL, "outcome" => outcome).increment(1);
    if let Some(suppressed) = stripe_webhook_core::admit_refusal_log(outcome) {
        let path = request.uri().path();
        tracing::info!(
            method = %request.method(),
            path = path.get(..200).unwrap_or(path),
            outcome,
            reason = outcome,
            suppressed,
            "request refused"
        );
    }
}
