//! The private metrics listener: `GET /metrics` in Prometheus text format, kept off the public
//! webhook port. The server serves it on `METRICS_ADDR`, `stripe-webhook forward` on
//! `FORWARD_METRICS_ADDR` (feature `prometheus`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Installs the Prometheus recorder for the process (before anything records a metric): every
/// histogram of `stripe-webhook-metrics` with its buckets (histograms, not summaries, so they
/// aggregate across tasks), every description, and a task that keeps it trimmed.
///
/// # Errors
/// If a recorder is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    use stripe_webhook_core::metrics::{ALL, Kind, buckets, describe};
    let mut builder = PrometheusBuilder::new();
    for metric in ALL.iter().filter(|m| m.kind == Kind::Histogram) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), buckets(metric))?;
    }
    let handle = builder.install_recorder()?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Serves `GET /metrics` on `listener` with what `handle` ([`install_recorder`]) collected, until
/// the task is aborted.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let handle = handle.clone();
            async move { Ok::<_, Infallible>(answer(&req, &handle)) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn answer(req: &Request<Incoming>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(handle.render()),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"GET only\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: GET /metrics\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
