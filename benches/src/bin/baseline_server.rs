//! `baseline_server`: the real server (same settings, same HTTP surface, same hyper front door)
//! on the benchmark baseline sink, one Firehose `PutRecord` per webhook ([`PutRecordSink`]), to
//! measure the Firehose sink's micro-batching against the replaced Node service's design.
//!
//! Configured like `stripe-webhook-server` with `SINK=firehose` (`FIREHOSE_DELIVERY_STREAM_NAME`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `FIREHOSE_DEADLINE_MS`, …). Never for production.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use stripe_webhook_benches::PutRecordSink;
use stripe_webhook_server::ServerArgs;
use stripe_webhook_service::{PathMatch, RawSettings, SinkSettings};

/// The server on one PutRecord per webhook (benchmark baseline).
#[derive(Parser, Debug)]
#[command(name = "baseline_server")]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    service: RawSettings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    stripe_webhook_benches::run_main("baseline_server", run(cli), |()| {})
}

async fn run(cli: Cli) -> Result<(), String> {
    let settings = cli.service.validate().map_err(|e| e.to_string())?;
    let server = cli
        .server
        .validate(settings.ingest.max_body_bytes)
        .map_err(|e| e.to_string())?;
    let SinkSettings::Firehose { config, region, .. } = &settings.sink else {
        return Err("baseline_server needs SINK=firehose and FIREHOSE_DELIVERY_STREAM_NAME".into());
    };
    let sink =
        PutRecordSink::from_env(config.stream_name.clone(), region.clone(), config.deadline).await;
    let app = settings.start_with(Arc::new(sink), PathMatch::Exact);
    let metrics = match server.metrics_addr {
        Some(_) => Some(stripe_webhook_server::install_recorder().map_err(|e| e.to_string())?),
        None => None,
    };
    let listeners = stripe_webhook_server::Listeners::bind(&server).map_err(|e| e.to_string())?;
    stripe_webhook_server::serve(app, server, listeners, metrics)
        .await
        .map_err(|e| e.to_string())
}
