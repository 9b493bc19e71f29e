//! `bare_hyper`: the throughput ceiling for the HTTP load benchmark.
//!
//! A hyper 1 + tokio (multi-thread) HTTP/1.1 server that reads the whole request body and answers
//! `200 {"received":true}` to every request, with no verification and no sink. Its connection setup
//! mirrors `stripe-webhook-server` (`bins/stripe-webhook-server/src/http.rs`): `TCP_NODELAY`, the
//! http1 builder with a tokio timer, a 10 s header-read timeout, and keep-alive on; the runtime is
//! `new_multi_thread().enable_all()` with default worker threads, as in the server's `main`.
//!
//! ```text
//! bare_hyper --host 127.0.0.1 --port 8080
//! ```
//!
//! It prints `listening on <addr>` once bound (so `--port 0` can be used) and exits on SIGTERM or
//! SIGINT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The server's default `HEADER_READ_TIMEOUT_SECS`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer the real server gives to an accepted webhook.
const RECEIVED: &str = r#"{"received":true}"#;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "bare_hyper",
    about = "Bare hyper HTTP/1.1 server: the load-test ceiling"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the bound address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stripe_webhook_benches::run_main("bare_hyper", run(cli), |()| {})
}

async fn run(cli: Cli) -> Result<(), String> {
    let addr: SocketAddr = format!("{}:{}", cli.host, cli.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", cli.host, cli.port).parse())
        .map_err(|_| {
            format!(
                "--host {} --port {} is not a valid address",
                cli.host, cli.port
            )
        })?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local}");

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    eprintln!("bare_hyper: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Reads the whole body, then answers 200 `{"received":true}` (a 400 if the body cannot be read).
async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let ok = req.into_body().collect().await.is_ok();
    let mut response = Response::new(Full::new(Bytes::from_static(if ok {
        RECEIVED.as_bytes()
    } else {
        br#"{"error":"request body could not be read"}"#
    })));
    if !ok {
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
