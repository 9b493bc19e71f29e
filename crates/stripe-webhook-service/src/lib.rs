//! The Stripe webhook archive as a service, shared by its front doors (the hyper server and the
//! Lambda function): the settings, the sink factory, and the one HTTP surface.
//!
//! - [`settings`]: [`RawSettings`] (every flag and environment variable, as given) →
//!   [`RawSettings::validate`] → [`Settings`]. Only validated settings build anything.
//! - [`Settings::start`]: builds the sink (with its start-up check) and the ingest core, and
//!   returns the [`App`].
//! - [`App`]: routes (`POST /webhook/stripe`, `GET /health`), readiness, 404/405, refusal bodies,
//!   `Retry-After`, over plain `http` types: a fully read request in, a response out. The server
//!   and the Lambda only do their own I/O around it.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Method, Request};
//! use stripe_webhook_core::ReceivedAt;
//! use stripe_webhook_service::{App, FrontDoor, RawSettings, Route};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let mut raw = <RawSettings as clap::FromArgMatches>::from_arg_matches(
//!     &<RawSettings as clap::Args>::augment_args(clap::Command::new("example"))
//!         .get_matches_from(["example", "--secret", "whsec_example"]),
//! )
//! .unwrap();
//! raw.file.archive_dir = dir.path().to_path_buf();
//! let app: App = raw.validate().unwrap().start(FrontDoor::Server).await.unwrap();
//!
//! assert_eq!(app.route(&Method::POST, "/webhook/stripe"), Route::Webhook);
//! let health = Request::get("/health").body(Bytes::new()).unwrap();
//! let response = app.respond(health, ReceivedAt::now()).await;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.body(), r#"{"status":"ok","sink":"file","durable":true}"#);
//!
//! let unsigned = Request::post("/webhook/stripe").body(Bytes::from_static(b"{}")).unwrap();
//! let response = app.respond(unsigned, ReceivedAt::now()).await;
//! assert_eq!(response.status(), 400);
//! app.shutdown().await.unwrap();
//! # });
//! ```

mod app;
mod both;
mod ephemeral;
pub mod keyring;
#[cfg(feature = "prometheus")]
pub mod metrics_listener;
pub mod settings;
mod sinks;

use std::sync::Arc;

use stripe_webhook_core::Ingest;
use stripe_webhook_sink::RecordSink;

pub use app::{App, HEALTH_PATH, PathMatch, Route, WEBHOOK_PATH};
pub use both::BothSinks;
pub use settings::{ConfigError, RawSettings, Settings, SinkKind, SinkSettings};
pub use sinks::{SinkStartupError, StartupCheck};

/// Which front door the service runs behind; decides how paths match and how the sink's start-up
/// check treats failures that may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontDoor {
    /// The hyper server: exact paths; a failed start-up check is retried for up to 30 s.
    Server,
    /// The Lambda function: paths by suffix (API Gateway stages); a start-up check that fails for
    /// a reason that may pass is logged and init goes on.
    Lambda,
}

impl FrontDoor {
    /// How this front door matches paths.
    pub fn path_match(self) -> PathMatch {
        match self {
            FrontDoor::Server => PathMatch::Exact,
            FrontDoor::Lambda => PathMatch::Suffix,
        }
    }

    /// How this front door runs the sink's start-up check.
    pub fn startup_check(self) -> StartupCheck {
        match self {
            FrontDoor::Server => StartupCheck::Retry {
                within: std::time::Duration::from_secs(30),
            },
            FrontDoor::Lambda => StartupCheck::BestEffort,
        }
    }
}

/// Why the service could not start: a setting to fix, or a sink that failed its start-up check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// A setting is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sink could not be built or failed its start-up check.
    #[error(transparent)]
    Sink(#[from] SinkStartupError),
}

impl Settings {
    /// Builds the configured sink (running its start-up check as `door` wants) and the ingest
    /// core, and returns the application.
    ///
    /// # Errors
    /// If the sink cannot be built or its check fails.
    pub async fn start(self, door: FrontDoor) -> Result<App, StartupError> {
        let sink = self.sink.build(door.startup_check()).await?;
        Ok(self.start_with(sink, door.path_match()))
    }

    /// The application over a sink built elsewhere (an embedding service's own sink, a benchmark
    /// baseline); the configured [`Settings::sink`] is ignored.
    pub fn start_with(self, sink: Arc<dyn RecordSink>, paths: PathMatch) -> App {
        App::new(Ingest::new(self.verifier, sink, self.ingest), paths)
    }
}
