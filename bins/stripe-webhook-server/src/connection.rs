//! One HTTP/1.1 connection: hyper I/O only. The body is read within the limits (size, time), then
//! the fully read request goes to the [`App`], which routes and answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use stripe_webhook_core::{ReceivedAt, Refusal};
use stripe_webhook_service::{App, Route};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Read limits that keep slow clients from holding connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
}

/// Serves one accepted connection on its own task, under the graceful-shutdown watcher.
pub(crate) fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    limits: Limits,
    graceful: &GracefulShutdown,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(handle(req, &app, limits).await) }
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

/// The app's answer, as a hyper body.
fn full(response: Response<Bytes>) -> Response<Full<Bytes>> {
    response.map(Full::new)
}

/// An answer after which the connection must close: the request body was not (fully) read.
fn closing(response: Response<Bytes>) -> Response<Full<Bytes>> {
    let mut response = full(response);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn handle(req: Request<Incoming>, app: &App, limits: Limits) -> Response<Full<Bytes>> {
    let received_at = ReceivedAt::now();
    let route = app.route(req.method(), req.uri().path());
    let (parts, body) = req.into_parts();
    if !route.reads_body() {
        // The body of a refused request is never read: close the connection after the answer.
        let response = app
            .respond(Request::from_parts(parts, Bytes::new()), received_at)
            .await;
        return if route == Route::Health {
            full(response)
        } else {
            closing(response)
        };
    }

    // Refuse a declared oversize body before reading a byte of it.
    let limit = app.max_body_bytes();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return closing(app.refuse(Refusal::BodyTooLarge));
    }

    // Read at most `limit` bytes (chunked or lying Content-Length alike), within the body timeout.
    let read = tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limit).collect(),
    );
    let body = match read.await {
        Err(_) => return closing(app.refuse(Refusal::BodyTimeout)),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return closing(app.refuse(Refusal::BodyTooLarge));
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request body could not be read");
            return closing(app.refuse(Refusal::BodyUnreadable));
        }
        // Own exactly the body: hyper may hand out a slice of a larger read buffer, and a record
        // can live on in a queue.
        Ok(Ok(collected)) => Bytes::copy_from_slice(&collected.to_bytes()),
    };
    full(
        app.respond(Request::from_parts(parts, body), received_at)
            .await,
    )
}
