//! `stripe-webhook-server`: receives Stripe webhooks on `POST /webhook/stripe`, verifies the
//! `Stripe-Signature` over the raw body, archives the event durably, and only then answers 200.
//!
//! A drop-in replacement for the Node service: same endpoints (`POST /webhook/stripe`,
//! `GET /health`), same environment variables (`PORT`, `STRIPE_WEBHOOK_SECRET`, `AWS_REGION`,
//! `FIREHOSE_DELIVERY_STREAM_NAME`). Run with `--help` for every setting.

use std::process::ExitCode;

use clap::Parser;
use stripe_webhook_server::{LogFormat, ServerArgs};
use stripe_webhook_service::{FrontDoor, RawSettings};

/// Verifies Stripe webhooks and archives every event, byte-exact, before answering 200.
///
/// Every option is also an environment variable (shown in brackets). Public endpoints:
/// POST /webhook/stripe, GET /health (readiness). Prometheus metrics: GET /metrics on METRICS_ADDR.
#[derive(Parser, Debug)]
#[command(name = "stripe-webhook-server", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    service: RawSettings,
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

/// Exit codes: 0 after a clean shutdown, 1 when the shutdown failed, 2 when the server could not
/// start (a setting to fix, a sink that failed its start-up check, an address in use).
fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.server.log_format);
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
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let fail = |code: u8, message: String| {
        tracing::error!("{message}");
        eprintln!("stripe-webhook-server: {message}");
        ExitCode::from(code)
    };
    let settings = match cli.service.validate() {
        Ok(settings) => settings,
        Err(e) => return fail(2, e.to_string()),
    };
    let server = match cli.server.validate(settings.ingest.max_body_bytes) {
        Ok(server) => server,
        Err(e) => return fail(2, e.to_string()),
    };
    let metrics = match server.metrics_addr {
        None => None,
        Some(_) => match stripe_webhook_server::install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => return fail(2, format!("cannot install the metrics recorder: {e}")),
        },
    };
    let app = match settings.start(FrontDoor::Server).await {
        Ok(app) => app,
        Err(e) => return fail(2, e.to_string()),
    };
    match stripe_webhook_server::serve(app, server, metrics).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ stripe_webhook_server::ServeError::Bind { .. }) => fail(2, e.to_string()),
        Err(e) => fail(1, e.to_string()),
    }
}
