//! `bootstrap`: the Lambda function. Init builds the ingest core once (configuration from the same
//! environment variables as the server, the sink and its AWS client, the start-up health check),
//! then the runtime loop answers one HTTP event per invocation with [`Function::handle`].
//!
//! Logs are JSON lines on stdout (CloudWatch), one per webhook; `AWS_LAMBDA_LOG_LEVEL` or
//! `RUST_LOG` sets the level (default `info`). A configuration or sink problem is logged and
//! reported to the Runtime API's `/init/error`, and the process exits.

use std::process::ExitCode;
use std::time::Instant;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use stripe_webhook_lambda::Function;
use stripe_webhook_lambda::emf::EmfRecorder;
use stripe_webhook_service::{App, FrontDoor, RawSettings};

fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_ascii_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

fn main() -> ExitCode {
    let started = Instant::now();
    init_tracing();
    // Metrics as CloudWatch Embedded Metric Format on stdout, flushed after every invocation, with
    // the function's name (AWS_LAMBDA_FUNCTION_NAME, `local` without it) as a dimension.
    let metrics = EmfRecorder::from_env();
    if metrics::set_global_recorder(metrics.clone()).is_err() {
        tracing::warn!("a metrics recorder was already installed; EMF metrics are off");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let function = match init(started).await {
            Ok(function) => function,
            Err(message) => {
                tracing::error!(error = %message, "init failed; the function cannot take webhooks");
                report_init_error(&message).await;
                return ExitCode::FAILURE;
            }
        };
        // The request outcomes the CloudWatch alarms divide by each other, at 0 from the first
        // invocation of this sandbox (only those a function gives: every series written is a
        // custom metric).
        let sink = function.app().ingest().sink_name();
        metrics.zero_at_next_flush(
            stripe_webhook_core::metrics::zero_series(sink)
                .into_iter()
                .filter(|(name, label)| {
                    *name == stripe_webhook_core::metrics::REQUESTS_TOTAL
                        && !label.is_some_and(|(_, outcome)| {
                            stripe_webhook_core::metrics::SERVER_ONLY_OUTCOMES.contains(&outcome)
                        })
                }),
        );
        spawn_shutdown_handler(function.app().clone());
        let handler = service_fn(move |event: LambdaEvent<Value>| {
            let function = function.clone();
            let metrics = metrics.clone();
            async move {
                let request_id = event.context.request_id.clone();
                let response = function.handle(event.payload).await;
                // Before the answer: a frozen sandbox must not keep this invocation's metrics.
                let now_ms = stripe_webhook_core::ReceivedAt::now().unix_millis();
                let flushed = metrics.flush(
                    &mut std::io::stdout().lock(),
                    now_ms,
                    &[("function_request_id", &request_id)],
                );
                if let Err(e) = flushed {
                    tracing::warn!(error = %e, "could not write the invocation's metrics");
                }
                response
            }
        });
        match lambda_runtime::run(handler).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "the Lambda runtime loop stopped");
                ExitCode::FAILURE
            }
        }
    })
}

/// Reads and validates the settings and builds the sink: everything that runs once per
/// execution environment.
async fn init(started: Instant) -> Result<Function, String> {
    let raw = RawSettings::from_env().map_err(|e| {
        // clap's message, without its usage hints (there is no command line here).
        e.to_string().lines().next().unwrap_or_default().to_owned()
    })?;
    let settings = raw.validate().map_err(|e| e.to_string())?;
    let app = settings
        .start(FrontDoor::Lambda)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        sink = app.ingest().sink_name(),
        max_body_bytes = app.max_body_bytes(),
        init_ms = started.elapsed().as_secs_f64() * 1000.0,
        "initialised: POST …/webhook/stripe, GET …/health"
    );
    Ok(Function::new(app))
}

/// Tells Lambda why init failed (`POST /runtime/init/error`), so the invoker sees the reason.
async fn report_init_error(message: &str) {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return;
    }
    let body = serde_json::json!({"errorType": "Runtime.InitError", "errorMessage": message});
    let request = lambda_runtime_api_client::build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .body(lambda_runtime_api_client::body::Body::from(
            body.to_string(),
        ));
    let result = match (
        request,
        lambda_runtime_api_client::Client::builder().build(),
    ) {
        (Ok(request), Ok(client)) => client.call(request).await.map(drop),
        (Err(e), _) => Err(e.into()),
        (_, Err(e)) => Err(e.into()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "could not report the init error to the Runtime API");
    }
}

/// On SIGTERM or SIGINT, closes the sink (the file sink seals its open segment) and exits.
///
/// Lambda sends SIGTERM at shutdown only when an extension is registered; otherwise the process is
/// frozen and killed, which loses nothing: every acknowledged record was already durable. Locally
/// (`cargo lambda watch`, tests) this leaves a tidy archive.
fn spawn_shutdown_handler(app: App) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            tracing::warn!("cannot listen for SIGTERM");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
        }
        let code = match app.shutdown().await {
            Ok(()) => {
                tracing::info!("sink flushed and closed; bye");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "sink shutdown failed");
                1
            }
        };
        std::process::exit(code);
    });
}
