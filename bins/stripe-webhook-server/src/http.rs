//! HTTP/1.1 front door: routing, body limits, read timeouts, and the mapping of core outcomes to
//! responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use stripe_webhook_core::{Ingest, WebhookRequest};
use stripe_webhook_envelope::ReceivedAt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// The only path that takes webhooks (the Node service's).
pub(crate) const WEBHOOK_PATH: &str = "/webhook/stripe";

/// Shared by every connection.
pub(crate) struct State {
    ingest: Ingest,
    metrics: PrometheusHandle,
    sink_name: &'static str,
    shutting_down: AtomicBool,
}

impl State {
    pub(crate) fn new(ingest: Ingest, metrics: PrometheusHandle, sink_name: &'static str) -> Self {
        Self {
            ingest,
            metrics,
            sink_name,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// From now on `/health` answers 503, so load balancers stop sending traffic.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

/// Read limits that keep slow clients from holding connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
}

/// Serves one accepted connection on its own task, under the graceful-shutdown watcher.
pub(crate) fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    limits: Limits,
    graceful: &GracefulShutdown,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(req, &state, limits).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(permit);
    });
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response after which the connection must close: the request body was not (fully) read.
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn route(req: Request<Incoming>, state: &State, limits: Limits) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match (path, req.method()) {
        (WEBHOOK_PATH, &Method::POST) => webhook(req, state, limits).await,
        ("/health", &Method::GET | &Method::HEAD) => health(state),
        ("/metrics", &Method::GET) => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.render())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (WEBHOOK_PATH | "/health" | "/metrics", method) => {
            let allow = if path == WEBHOOK_PATH { "POST" } else { "GET" };
            tracing::debug!(%method, path, "method not allowed");
            let mut response = closing(json(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(r#"{{"error":"method not allowed","allow":"{allow}"}}"#),
            ));
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
        _ => closing(json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#)),
    }
}

fn health(state: &State) -> Response<Full<Bytes>> {
    let sink = state.ingest.sink().health();
    let detail = serde_json::to_string(&sink.detail).unwrap_or_else(|_| "\"\"".to_owned());
    let (status, word) = if state.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else if !sink.healthy {
        (StatusCode::SERVICE_UNAVAILABLE, "sink_unhealthy")
    } else {
        (StatusCode::OK, "ok")
    };
    json(
        status,
        format!(
            r#"{{"status":"{word}","sink":"{}","sink_detail":{detail}}}"#,
            state.sink_name
        ),
    )
}

async fn webhook(req: Request<Incoming>, state: &State, limits: Limits) -> Response<Full<Bytes>> {
    let received_at = ReceivedAt::now();
    let limit = state.ingest.max_body_bytes();
    let (parts, body) = req.into_parts();

    // Refuse a declared oversize body before reading a byte of it.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(state);
    }

    // Read at most `limit` bytes (chunked or lying Content-Length alike), within the body timeout.
    let body = match tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limit).collect(),
    )
    .await
    {
        Err(_) => {
            tracing::warn!(
                timeout_secs = limits.body_read_timeout.as_secs(),
                "webhook refused: request body not received in time"
            );
            return closing(json(
                StatusCode::REQUEST_TIMEOUT,
                r#"{"error":"request body not received in time"}"#,
            ));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(state),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "webhook refused: request body could not be read");
            return closing(json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"request body could not be read"}"#,
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };

    let signature = parts
        .headers
        .get("stripe-signature")
        .map(HeaderValue::as_bytes);
    let outcome = state
        .ingest
        .handle(WebhookRequest {
            body,
            signature,
            received_at,
        })
        .await;
    let status =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json(status, outcome.response_body());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn too_large(state: &State) -> Response<Full<Bytes>> {
    let outcome = state.ingest.body_too_large();
    closing(json(StatusCode::PAYLOAD_TOO_LARGE, outcome.response_body()))
}
