//! `stripe-webhook-server`: receives Stripe webhooks on `POST /webhook/stripe`, verifies the
//! `Stripe-Signature` over the raw body, archives the event durably, and only then answers 200.
//!
//! A drop-in replacement for the Node service: same endpoints (`POST /webhook/stripe`,
//! `GET /health`), same environment variables (`PORT`, `STRIPE_WEBHOOK_SECRET`, `AWS_REGION`,
//! `FIREHOSE_DELIVERY_STREAM_NAME`). Run with `--help` for every setting.

mod http;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use stripe_webhook_core::{Config, Ingest};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line (for log pipelines).
    Json,
}

/// Verifies Stripe webhooks and archives every event, byte-exact, before answering 200.
///
/// Every option is also an environment variable (shown in brackets). Endpoints: POST /webhook/stripe,
/// GET /health, GET /metrics (Prometheus).
#[derive(Parser, Debug)]
#[command(name = "stripe-webhook-server", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    host: String,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3001)]
    port: u16,

    #[command(flatten)]
    config: Config,

    /// Seconds a client may take to send the request head before the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    header_read_timeout_secs: u64,

    /// Seconds a client may take to send the request body before it gets 408.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 30)]
    body_read_timeout_secs: u64,

    /// The most connections served at once; further clients wait in the kernel's accept queue.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,

    /// On SIGTERM/SIGINT, seconds to let in-flight webhooks finish before closing connections.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 25)]
    shutdown_timeout_secs: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("stripe-webhook-server: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let (verifier, options) = cli.config.validate().map_err(|e| e.to_string())?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    stripe_webhook_core::metrics::describe();

    let sink_kind = cli.config.sink_kind();
    let sink = cli.config.build_sink().await.map_err(|e| e.to_string())?;
    let ingest = Ingest::new(verifier, sink, options);

    let addr: SocketAddr = format!("{}:{}", cli.host, cli.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", cli.host, cli.port).parse())
        .map_err(|_| format!("HOST={} PORT={} is not a valid address", cli.host, cli.port))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        address = %local,
        sink = sink_kind.label(),
        max_body_bytes = ingest.max_body_bytes(),
        "listening: POST /webhook/stripe, GET /health, GET /metrics"
    );

    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });

    let state = Arc::new(http::State::new(ingest.clone(), metrics, sink_kind.label()));
    let limits = http::Limits {
        header_read_timeout: Duration::from_secs(cli.header_read_timeout_secs.max(1)),
        body_read_timeout: Duration::from_secs(cli.body_read_timeout_secs.max(1)),
    };
    let connections = Arc::new(Semaphore::new(cli.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        http::serve_connection(stream, peer, state.clone(), limits, &graceful, permit);
    }

    drop(listener);
    state.begin_shutdown();
    tracing::info!("shutting down: no new connections; finishing in-flight webhooks");
    let timeout = Duration::from_secs(cli.shutdown_timeout_secs);
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_secs = cli.shutdown_timeout_secs,
            "in-flight webhooks did not finish in time; their senders get no 200 and will retry"
        );
    }
    match ingest.sink().shutdown().await {
        Ok(()) => {
            tracing::info!("sink flushed and closed; bye");
            Ok(())
        }
        Err(e) => Err(format!("sink shutdown failed: {e}")),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => if r.is_ok() { tracing::info!("SIGINT received") },
    }
}
