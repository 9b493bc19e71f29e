//! Configuration from environment variables and flags, in one typed place, validated at start-up.
//!
//! Both binaries use [`Config`]: the server parses flags and environment, the Lambda function
//! environment only ([`Config::from_env`]). Every setting is a `--flag` and an environment variable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use stripe_webhook_envelope::EnvelopeOptions;
use stripe_webhook_sink::{RecordSink, SinkError};
use stripe_webhook_verify::{Tolerance, Verifier};

use crate::IngestOptions;

/// Default body limit: 2 MiB (Stripe events are a few KB; the largest seen are well under 1 MB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Where archive records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// Durable local NDJSON segments under `ARCHIVE_DIR` (fdatasync before ack, group commit).
    File,
    /// In-process memory, bounded. For tests and trying things out: nothing survives a restart.
    Memory,
    /// Amazon Data Firehose (`FIREHOSE_DELIVERY_STREAM_NAME`), delivering gzip NDJSON to S3.
    Firehose,
}

impl SinkKind {
    /// The name used in logs and `/health`.
    pub fn label(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Memory => "memory",
            SinkKind::Firehose => "firehose",
        }
    }
}

/// Everything the ingest core and its sinks need, from flags and environment.
#[derive(Clone, Args)]
pub struct Config {
    /// Stripe webhook signing secret(s), `whsec_…`; several (key rotation, Connect, thin events,
    /// `stripe listen`) comma-separated, without spaces.
    #[arg(long = "secret", env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub secrets: Option<String>,

    /// Signature tolerance in seconds (the maximum age of a signed timestamp), or `disabled`.
    #[arg(long, env = "SIGNATURE_TOLERANCE_SECS", default_value = "300")]
    pub signature_tolerance_secs: String,

    /// How far in the future a signed timestamp may be, in seconds (clock skew).
    #[arg(long, env = "SIGNATURE_MAX_FUTURE_SECS", default_value_t = 300)]
    pub signature_max_future_secs: u64,

    /// Largest accepted request body in bytes; larger bodies get 413 without being buffered.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Keep the exact body (`raw`) and the `Stripe-Signature` header in each record, so the archive
    /// can be re-verified and replayed. Turn off only where storage cost matters more.
    #[arg(long, env = "ENVELOPE_INCLUDE_RAW", default_value_t = true, action = clap::ArgAction::Set)]
    pub include_raw: bool,

    /// Sink: `file`, `memory` or `firehose`. Default: `firehose` when
    /// FIREHOSE_DELIVERY_STREAM_NAME is set, else `file`.
    #[arg(long, env = "SINK", value_enum)]
    pub sink: Option<SinkKind>,

    /// File sink: the archive directory (records go to `webhooks/year=…/month=…/day=…/`).
    #[arg(long, env = "ARCHIVE_DIR", default_value = "./archive")]
    pub archive_dir: PathBuf,

    /// File sink: seal a segment once it holds this many bytes.
    #[arg(long, env = "ARCHIVE_SEGMENT_MAX_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub archive_segment_max_bytes: u64,

    /// File sink: seal a segment once it is this many seconds old.
    #[arg(long, env = "ARCHIVE_SEGMENT_MAX_AGE_SECS", default_value_t = 3600)]
    pub archive_segment_max_age_secs: u64,

    /// File sink: gzip level of sealed segments, 1 (fastest) to 9 (smallest). Level 6 seals
    /// roughly 80-100 MB/s per core; lower it when archiving faster than that for long.
    #[arg(long, env = "ARCHIVE_GZIP_LEVEL", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(1..=9))]
    pub archive_gzip_level: u32,

    /// Memory sink: the most records it holds before answering 503.
    #[arg(long, env = "MEMORY_SINK_CAPACITY", default_value_t = 1_000_000)]
    pub memory_sink_capacity: usize,

    /// AWS region of the Firehose stream (the AWS SDK also reads AWS_REGION itself).
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// Firehose: the delivery stream name.
    #[arg(long, env = "FIREHOSE_DELIVERY_STREAM_NAME")]
    pub firehose_delivery_stream_name: Option<String>,

    /// Firehose: total deadline per webhook in milliseconds; past it the webhook gets 503.
    #[arg(long, env = "FIREHOSE_DEADLINE_MS", default_value_t = 5000)]
    pub firehose_deadline_ms: u64,

    /// Firehose: the most `PutRecordBatch` calls in flight at once.
    #[arg(long, env = "FIREHOSE_MAX_IN_FLIGHT", default_value_t = 4)]
    pub firehose_max_in_flight: usize,

    /// Firehose: the most records waiting to be sent before new webhooks get 503.
    #[arg(long, env = "FIREHOSE_QUEUE_RECORDS", default_value_t = 10_000)]
    pub firehose_queue_records: usize,

    /// Firehose: the most bytes waiting to be sent before new webhooks get 503.
    #[arg(long, env = "FIREHOSE_QUEUE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub firehose_queue_bytes: usize,

    /// Firehose: wait this many milliseconds for more records before sending a batch (0: never wait).
    #[arg(long, env = "FIREHOSE_LINGER_MS", default_value_t = 0)]
    pub firehose_linger_ms: u64,

    /// Firehose: send one `PutRecord` per webhook instead of micro-batched `PutRecordBatch` calls.
    /// The Node service's design, kept only as a benchmark baseline: never use it in production.
    #[arg(long, env = "FIREHOSE_ONE_CALL_PER_RECORD", default_value_t = false, action = clap::ArgAction::Set, hide = true)]
    pub firehose_one_call_per_record: bool,

    /// Firehose: S3 bucket for events over Firehose's 1,024,000-byte record limit.
    #[arg(long, env = "OVERSIZE_S3_BUCKET")]
    pub oversize_s3_bucket: Option<String>,

    /// Firehose: key prefix for oversized events in OVERSIZE_S3_BUCKET.
    #[arg(long, env = "OVERSIZE_S3_PREFIX", default_value = "oversize/")]
    pub oversize_s3_prefix: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("secrets", &self.secrets.as_ref().map(|_| "<redacted>"))
            .field("sink", &self.sink_kind())
            .field("archive_dir", &self.archive_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("signature_tolerance_secs", &self.signature_tolerance_secs)
            .field("include_raw", &self.include_raw)
            .field(
                "firehose_delivery_stream_name",
                &self.firehose_delivery_stream_name,
            )
            .finish_non_exhaustive()
    }
}

/// A configuration a person has to fix. The message says what and how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No signing secret configured.
    #[error(
        "STRIPE_WEBHOOK_SECRET is not set: the server will not accept webhooks it cannot verify. \
         Get the endpoint's signing secret (whsec_…) from the Stripe Dashboard (Developers → Webhooks → \
         your endpoint → Signing secret), or run `stripe listen --forward-to localhost:3001/webhook/stripe`, \
         which prints one. Several secrets are comma-separated."
    )]
    MissingSecret,
    /// A signing secret is malformed.
    #[error("STRIPE_WEBHOOK_SECRET: {0}")]
    Secret(stripe_webhook_verify::ConfigError),
    /// The tolerance is not a positive number of seconds nor `disabled`.
    #[error(
        "SIGNATURE_TOLERANCE_SECS must be a positive number of seconds or `disabled`, got {0:?}"
    )]
    Tolerance(String),
    /// A numeric setting is out of range.
    #[error("{name} must be {what}, got {value}")]
    OutOfRange {
        /// The environment variable.
        name: &'static str,
        /// What it must be.
        what: &'static str,
        /// What it was.
        value: String,
    },
    /// The Firehose sink was chosen without a stream.
    #[error(
        "SINK=firehose needs FIREHOSE_DELIVERY_STREAM_NAME (the Direct PUT stream, created by \
         infra/cloudformation or infra/terraform) and AWS_REGION"
    )]
    MissingStream,
}

/// A sink could not be built or failed its start-up health check.
#[derive(Debug, thiserror::Error)]
#[error("{sink} sink failed at start-up: {source}")]
pub struct SinkStartupError {
    /// Which sink.
    pub sink: &'static str,
    /// Why.
    #[source]
    pub source: SinkError,
}

impl Config {
    /// Reads the configuration from environment variables alone (for the Lambda function).
    ///
    /// # Errors
    /// If a variable cannot be parsed; the message names it.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct EnvOnly {
            #[command(flatten)]
            config: Config,
        }
        <EnvOnly as clap::Parser>::try_parse_from(["stripe-webhook"]).map(|e| e.config)
    }

    /// The sink to use: `SINK` if set, else `firehose` when a stream is configured, else `file`.
    pub fn sink_kind(&self) -> SinkKind {
        match (self.sink, &self.firehose_delivery_stream_name) {
            (Some(kind), _) => kind,
            (None, Some(stream)) if !stream.is_empty() => SinkKind::Firehose,
            (None, _) => SinkKind::File,
        }
    }

    /// Validates the secrets and tolerance and builds the verifier.
    ///
    /// # Errors
    /// A missing or malformed secret, or a bad tolerance, with a message saying how to fix it.
    pub fn verifier(&self) -> Result<Verifier, ConfigError> {
        let list = match self.secrets.as_deref() {
            None | Some("") => return Err(ConfigError::MissingSecret),
            Some(list) => list,
        };
        let secrets = stripe_webhook_verify::parse_secrets(list).map_err(ConfigError::Secret)?;
        for (i, secret) in secrets.iter().enumerate() {
            if !secret.has_whsec_prefix() {
                tracing::warn!(
                    element = i + 1,
                    "STRIPE_WEBHOOK_SECRET element {} does not start with whsec_; Stripe signing secrets do",
                    i + 1
                );
            }
        }
        let tolerance = self.tolerance()?;
        Ok(Verifier::new(secrets)
            .map_err(ConfigError::Secret)?
            .with_tolerance(tolerance)
            .with_max_future_skew(self.signature_max_future_secs))
    }

    fn tolerance(&self) -> Result<Tolerance, ConfigError> {
        let raw = self.signature_tolerance_secs.as_str();
        if raw.eq_ignore_ascii_case("disabled") {
            return Ok(Tolerance::Disabled);
        }
        raw.parse::<u64>()
            .ok()
            .and_then(|secs| Tolerance::seconds(secs).ok())
            .ok_or_else(|| ConfigError::Tolerance(raw.to_owned()))
    }

    /// The ingest options (body limit, envelope options).
    ///
    /// # Errors
    /// A zero body limit.
    pub fn ingest_options(&self) -> Result<IngestOptions, ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::OutOfRange {
                name: "MAX_BODY_BYTES",
                what: "a positive number of bytes",
                value: self.max_body_bytes.to_string(),
            });
        }
        Ok(IngestOptions {
            max_body_bytes: self.max_body_bytes,
            envelope: EnvelopeOptions::default().include_raw(self.include_raw),
        })
    }

    /// Checks everything that can be checked without touching the sink: secrets, tolerance, limits,
    /// and that the chosen sink has what it needs.
    ///
    /// # Errors
    /// The first problem found, with a message a person can act on.
    pub fn validate(&self) -> Result<(Verifier, IngestOptions), ConfigError> {
        let verifier = self.verifier()?;
        let options = self.ingest_options()?;
        if self.sink_kind() == SinkKind::Firehose
            && self
                .firehose_delivery_stream_name
                .as_deref()
                .is_none_or(str::is_empty)
        {
            return Err(ConfigError::MissingStream);
        }
        for (name, value) in [
            ("FIREHOSE_MAX_IN_FLIGHT", self.firehose_max_in_flight),
            ("FIREHOSE_QUEUE_RECORDS", self.firehose_queue_records),
            ("MEMORY_SINK_CAPACITY", self.memory_sink_capacity),
        ] {
            if value == 0 {
                return Err(ConfigError::OutOfRange {
                    name,
                    what: "at least 1",
                    value: value.to_string(),
                });
            }
        }
        Ok((verifier, options))
    }

    /// Builds the chosen sink and runs its start-up health check.
    ///
    /// # Errors
    /// If the sink cannot be opened or its health check fails (directory not writable, stream
    /// missing or not ACTIVE, …).
    pub async fn build_sink(&self) -> Result<Arc<dyn RecordSink>, SinkStartupError> {
        let kind = self.sink_kind();
        let fail = |source| SinkStartupError {
            sink: kind.label(),
            source,
        };
        let sink: Arc<dyn RecordSink> = match kind {
            SinkKind::Memory => Arc::new(stripe_webhook_sink::MemorySink::new(
                self.memory_sink_capacity,
            )),
            SinkKind::File => {
                let config = stripe_webhook_sink::FileSinkConfig {
                    max_segment_bytes: self.archive_segment_max_bytes,
                    max_segment_age: Duration::from_secs(self.archive_segment_max_age_secs),
                    sealed_gzip_level: Some(self.archive_gzip_level),
                    ..stripe_webhook_sink::FileSinkConfig::new(self.archive_dir.clone())
                };
                let (sink, report) = stripe_webhook_sink::FileSink::open(config)
                    .await
                    .map_err(fail)?;
                report.log();
                Arc::new(sink)
            }
            SinkKind::Firehose => {
                let stream = self
                    .firehose_delivery_stream_name
                    .clone()
                    .unwrap_or_default();
                let mut config = stripe_webhook_sink_firehose::FirehoseSinkConfig::new(stream);
                config.deadline = Duration::from_millis(self.firehose_deadline_ms);
                config.max_in_flight = self.firehose_max_in_flight;
                config.max_queue_records = self.firehose_queue_records;
                config.max_queue_bytes = self.firehose_queue_bytes;
                config.linger = Duration::from_millis(self.firehose_linger_ms);
                config.oversize_bucket = self.oversize_s3_bucket.clone();
                config.oversize_prefix = self.oversize_s3_prefix.clone();
                config.one_call_per_record = self.firehose_one_call_per_record;
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = &self.aws_region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let sdk = loader.load().await;
                Arc::new(stripe_webhook_sink_firehose::FirehoseSink::new(
                    config, &sdk,
                ))
            }
        };
        sink.healthcheck().await.map_err(fail)?;
        Ok(sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        <Cli as clap::Parser>::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|cli| cli.config)
    }

    #[test]
    fn gzip_level_defaults_to_6_and_must_be_1_to_9() {
        assert_eq!(parse(&[]).unwrap().archive_gzip_level, 6);
        assert_eq!(
            parse(&["--archive-gzip-level", "1"])
                .unwrap()
                .archive_gzip_level,
            1
        );
        for bad in ["0", "10", "fast"] {
            let message = parse(&["--archive-gzip-level", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"))
                .to_string();
            assert!(message.contains("--archive-gzip-level"), "{message}");
        }
    }
}
