//! `stripe-webhook-server`: receives Stripe webhooks on `POST /webhook/stripe`, verifies the
//! `Stripe-Signature` over the raw body, archives the event durably, and only then answers 200.
//!
//! A drop-in replacement for the Node service: same endpoints (`POST /webhook/stripe`,
//! `GET /health`), same environment variables (`PORT`, `STRIPE_WEBHOOK_SECRET`, `AWS_REGION`,
//! `FIREHOSE_DELIVERY_STREAM_NAME`). Run with `--help` for every setting.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stripe_webhook_forward::ForwardArgs;
use stripe_webhook_server::ServerArgs;
use stripe_webhook_service::settings::SinkSettings;
use stripe_webhook_service::{FrontDoor, RawSettings};

/// Verifies Stripe webhooks and archives every event, byte-exact, before answering 200.
///
/// Every option is also an environment variable (shown in brackets), and a `.env` file in the
/// working directory is read when present (the real environment wins). Public endpoints:
/// POST /webhook/stripe, GET /health (readiness). Prometheus metrics: GET /metrics on METRICS_ADDR.
#[derive(Parser, Debug)]
#[command(name = "stripe-webhook-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    service: RawSettings,

    #[command(flatten)]
    forward: ForwardArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Probes a running server's GET /health on HOST/PORT (for container health checks: scratch
    /// images have no curl). Exit 0 when it answers 200 (ready), 1 otherwise.
    Healthcheck {
        /// Liveness instead of readiness: exit 0 on any HTTP answer.
        #[arg(long)]
        live: bool,
    },
}

/// Exit codes: 0 after a clean shutdown, 1 when the shutdown failed, 2 when the server could not
/// start (a setting to fix, a sink that failed its start-up check, an address in use).
fn main() -> ExitCode {
    // Before clap reads the environment; variables already set win over the file.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { live }) = cli.command {
        return stripe_webhook_server::healthcheck(&cli.server, live);
    }
    stripe_webhook_server::init_logging(cli.server.log_format);
    match dotenv {
        Ok(path) => tracing::info!(path = %path.display(), "read settings from a .env file"),
        Err(e) if e.not_found() => {}
        Err(e) => tracing::warn!(error = %e, "a .env file exists but could not be read; ignored"),
    }
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
    // Forwarding reads the local archive, which only the file sink writes.
    let forward = match (cli.forward.runs_in_server(), &settings.sink) {
        (false, _) => None,
        (true, SinkSettings::File(_)) if !settings.ingest.envelope.includes_raw() => {
            return fail(
                2,
                "FORWARD_URL forwards each record's exact body, which ENVELOPE_INCLUDE_RAW=false \
                 does not keep: turn it on (the default) or unset FORWARD_URL"
                    .to_owned(),
            );
        }
        (true, SinkSettings::File(config)) => match cli.forward.validate() {
            Ok(forward) => Some((config.dir.clone(), forward)),
            Err(e) => return fail(2, e.to_string()),
        },
        (true, other) => {
            return fail(
                2,
                format!(
                    "FORWARD_URL forwards from the local archive, which only the file sink writes, \
                     but SINK={}: on AWS use the SQS destination instead (FORWARD_SQS_QUEUE_URL, \
                     docs/forwarding-sqs.md), or unset FORWARD_URL",
                    other.kind().label()
                ),
            );
        }
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
    if metrics.is_some() {
        // Every counter of a known label set at 0, so the first scrape already has each series
        // the dashboards and alert rules query.
        stripe_webhook_core::metrics::register_zeros(app.ingest().sink_name());
        if let Some((_, forward)) = &forward {
            stripe_webhook_forward::register_zeros(&forward.destinations);
        }
    }
    let listeners = match stripe_webhook_server::Listeners::bind(&server) {
        Ok(listeners) => listeners,
        Err(e) => return fail(2, e.to_string()),
    };
    // The forwarder: a background task beside the sink (it only reads the archive; ingest never
    // waits for it), stopped after the server.
    let stop_forwarding = tokio_util::sync::CancellationToken::new();
    let forwarder = forward.map(|(archive_dir, forward)| {
        tokio::spawn(stripe_webhook_forward::run(
            archive_dir,
            forward,
            stop_forwarding.clone(),
        ))
    });
    let served = stripe_webhook_server::serve(app, server, listeners, metrics).await;
    if let Some(forwarder) = forwarder {
        stop_forwarding.cancel();
        match tokio::time::timeout(FORWARDER_STOP, forwarder).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "forwarding had stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "the forwarder task failed"),
            Err(_) => tracing::warn!(
                "the forwarder did not stop within 5 s; deliveries in flight are sent again by the \
                 next start"
            ),
        }
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e.to_string()),
    }
}

/// How long the forwarder may take to stop (store its cursor) after the server has.
const FORWARDER_STOP: std::time::Duration = std::time::Duration::from_secs(5);
