//! One HTTP/1.1 connection: hyper I/O only. The body is read within the limits (size, time), then
//! the fully read request goes to the [`App`], which routes and answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use stripe_webhook_core::{ReceivedAt, Refusal};
use stripe_webhook_service::{App, Route};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::{ClientRequests, InRequest, Ticket};
use crate::refuse;

/// Read limits that keep slow clients from holding connections and memory.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) sources: Arc<crate::Sources>,
    /// Webhooks in progress per client forwarded by a trusted proxy.
    pub(crate) clients: Arc<ClientRequests>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) budget: BodyBudget,
}

/// How many bytes of every body are read without taking room in the budget: typical Stripe events
/// (a few KB) never wait on it, and these allowances together are bounded by the connection cap
/// (`MAX_CONNECTIONS` × 64 KiB).
pub(crate) const FREE_BODY_BYTES: usize = 64 * 1024;

/// The budget for buffered request bodies, shared by every connection (`MAX_BUFFERED_BODY_BYTES`).
/// Bodies are buffered before their signature can be checked, so this bounds what unauthenticated
/// senders can make the server hold: a body that finds no room is refused with 503 (`busy`) at once,
/// never queued.
#[derive(Clone, Debug)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// Room taken in the budget by one body; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    /// Bytes beyond the free allowance this reservation covers.
    covered: usize,
}

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Room for a body of `len` bytes (its declared length; 0 when unknown).
    fn reserve(&self, len: usize) -> Result<Reservation, Refusal> {
        let mut reservation = Reservation {
            permit: None,
            covered: 0,
        };
        self.grow(&mut reservation, len)?;
        Ok(reservation)
    }

    /// Extends `reservation` to cover a body of `len` bytes.
    fn grow(&self, reservation: &mut Reservation, len: usize) -> Result<(), Refusal> {
        let need = len.saturating_sub(FREE_BODY_BYTES);
        if need <= reservation.covered {
            return Ok(());
        }
        let more = u32::try_from(need - reservation.covered).map_err(|_| Refusal::Busy)?;
        let permit = Arc::clone(&self.bytes)
            .try_acquire_many_owned(more)
            .map_err(|_| Refusal::Busy)?;
        match &mut reservation.permit {
            Some(held) => held.merge(permit),
            None => reservation.permit = Some(permit),
        }
        reservation.covered = need;
        Ok(())
    }
}

/// Serves one accepted connection on its own task, under the graceful-shutdown watcher, until it
/// ends or is shed to make room ([`Ticket::shed`]).
pub(crate) fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    limits: Limits,
    graceful: &GracefulShutdown,
    ticket: Ticket,
) {
    let _ = stream.set_nodelay(true);
    let header_read_timeout = limits.header_read_timeout;
    let ticket = Arc::new(ticket);
    let in_service = Arc::clone(&ticket);
    let service = hyper::service::service_fn(move |req| {
        let app = Arc::clone(&app);
        let limits = limits.clone();
        // From the complete head until the response body is dropped, the connection is not shed.
        let request = in_service.request();
        async move {
            let response = handle(req, peer, &app, &limits).await;
            Ok::<_, Infallible>(response.map(|body| Tracked {
                body,
                _request: request,
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        // Boxed so it can be dropped (closing the socket) before the slot is given back.
        let mut conn = Box::pin(conn);
        loop {
            tokio::select! {
                ended = &mut conn => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                // A head that arrived meanwhile wins: only a connection still without a request
                // in progress is closed.
                () = ticket.shed() => if ticket.confirm_shed() {
                    tracing::debug!(%peer, "connection shed: no request head and the server was full");
                    break;
                },
            }
        }
        drop(conn);
        drop(ticket);
    });
}

/// A response body that keeps its connection marked "in a request" until hyper drops it (written
/// completely, or the connection is gone).
struct Tracked {
    body: Full<Bytes>,
    _request: InRequest,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
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

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    app: &App,
    limits: &Limits,
) -> Response<Full<Bytes>> {
    let received_at = ReceivedAt::now();
    // Framing hyper accepts but this server cannot answer unambiguously: refused before the body.
    if let Some(refusal) = refuse::check_framing(req.version(), req.headers()) {
        return closing(refusal.response(req.method(), peer.ip()));
    }
    let route = app.route(req.method(), req.uri().path());
    let (parts, body) = req.into_parts();
    let mut _client_request = None;
    if route == Route::Webhook {
        let client = limits.sources.client(peer.ip(), &parts.headers);
        if !limits.sources.allows(client) {
            return closing(refuse::FrontRefusal::ForbiddenSource.response(&parts.method, client));
        }
        // Behind a trusted proxy the per-address cap applies to the forwarded client.
        if limits.sources.trusts(peer.ip()) {
            match limits.clients.enter(client) {
                Some(counted) => _client_request = Some(counted),
                None => return closing(app.refuse(Refusal::Busy)),
            }
        }
    }
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

    // Before a byte of the body is buffered: a header that would be refused anyway, a declared
    // oversize body, and a body the buffering budget has no room for are answered at once.
    // What is known first is answered first: a declared length, then the header (a Lambda event
    // has its whole body, so its size is always known before the header is looked at).
    let limit = app.max_body_bytes();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return closing(app.refuse(Refusal::BodyTooLarge));
    }
    if let Some(response) = app.precheck(&parts.headers, received_at) {
        return closing(response);
    }
    let read = read_body(body, limit, declared, &limits.budget);
    let (body, _reservation) = match tokio::time::timeout(limits.body_read_timeout, read).await {
        Err(_) => return closing(app.refuse(Refusal::BodyTimeout)),
        Ok(Err(refusal)) => return closing(app.refuse(refusal)),
        Ok(Ok(read)) => read,
    };
    // The reservation is held until the answer: the bytes are released once the body has been
    // verified and stored (or refused).
    full(
        app.respond(Request::from_parts(parts, body), received_at)
            .await,
    )
}

/// Reads at most `limit` bytes of body (chunked or lying `Content-Length` alike), taking room in
/// the budget for everything beyond its free allowance; the body is owned exactly (hyper hands out
/// slices of larger read buffers, and a record can live on in a queue).
async fn read_body(
    mut body: Incoming,
    limit: usize,
    declared: Option<u64>,
    budget: &BodyBudget,
) -> Result<(Bytes, Reservation), Refusal> {
    let mut reservation = budget.reserve(declared.map_or(0, |n| n as usize))?;
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "request body could not be read");
            Refusal::BodyUnreadable
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = buf.len() + data.len();
        if total > limit {
            return Err(Refusal::BodyTooLarge);
        }
        budget.grow(&mut reservation, total)?;
        buf.extend_from_slice(&data);
    }
    let body = if buf.capacity() == buf.len() {
        buf.freeze()
    } else {
        Bytes::copy_from_slice(&buf)
    };
    Ok((body, reservation))
}
