//! Settings in two stages: [`RawSettings`] (flags and environment variables, as given) →
//! [`RawSettings::validate`] → [`Settings`] (checked, typed, ready to build the service). Only a
//! [`Settings`] can build a sink, so nothing is ever built from unvalidated input.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use stripe_webhook_core::{DEFAULT_MAX_BODY_BYTES, IngestOptions, ReceivedAt, Retirement};
use stripe_webhook_envelope::EnvelopeOptions;
use stripe_webhook_sink_file::FileSinkConfig;
use stripe_webhook_verify::{Secret, Tolerance, Verifier, parse_secrets_named};

use crate::keyring::{Keyring, KeyringEntry};

/// Where archive records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// Durable local NDJSON segments under `ARCHIVE_DIR` (fdatasync before ack, group commit).
    File,
    /// In-process memory, bounded. For tests and demos: every record is lost on restart, so it
    /// starts only with `ALLOW_MEMORY_SINK=true`.
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

/// Every setting of the service, as given by flags and environment variables (nothing checked
/// yet beyond each value's type). Flatten it into a binary's clap parser, or read it from the
/// environment alone with [`RawSettings::from_env`]; then [`RawSettings::validate`].
#[derive(Clone, Args)]
pub struct RawSettings {
    /// Stripe webhook signing secret(s), `whsec_…`; several (key rotation, Connect, thin events,
    /// `stripe listen`) comma-separated, without spaces.
    #[arg(long = "secret", env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub secrets: Option<String>,

    /// The keyring instead of STRIPE_WEBHOOK_SECRET: one entry per line, `LABEL SECRET
    /// ACTIVE_FROM [RETIRED_AT]` (docs/verification.md#keyring); entries not yet retired verify.
    #[arg(long, env = "STRIPE_WEBHOOK_KEYRING", hide_env_values = true)]
    pub keyring: Option<String>,

    /// A file holding the keyring instead (wins over STRIPE_WEBHOOK_KEYRING).
    #[arg(long, env = "STRIPE_WEBHOOK_KEYRING_FILE", value_name = "FILE")]
    pub keyring_file: Option<std::path::PathBuf>,

    /// Signature tolerance in seconds: the maximum age of a signed timestamp (replay protection).
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

    /// Sink: `file`, `firehose` or `memory`. Default: `firehose` when
    /// FIREHOSE_DELIVERY_STREAM_NAME is set, else `file`.
    #[arg(long, env = "SINK", value_enum)]
    pub sink: Option<SinkKind>,

    /// Allow SINK=memory: records live only in this process and are lost on restart, yet answered
    /// 200. For tests and demos only.
    #[arg(long, env = "ALLOW_MEMORY_SINK", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_memory_sink: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub file: FileSinkArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub firehose: FirehoseSinkArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub sqs: SqsArgs,

    /// Memory sink: the most records it holds before answering 503.
    #[arg(long, env = "MEMORY_SINK_CAPACITY", default_value_t = 1_000_000)]
    pub memory_sink_capacity: usize,
}

/// The file sink's settings.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "File sink (SINK=file)")]
pub struct FileSinkArgs {
    /// The archive directory (records go to `webhooks/year=…/month=…/day=…/`).
    #[arg(long, env = "ARCHIVE_DIR", default_value = "./archive")]
    pub archive_dir: PathBuf,

    /// Seal a segment once it holds this many bytes.
    #[arg(long, env = "ARCHIVE_SEGMENT_MAX_BYTES", default_value_t = FileSinkConfig::DEFAULT_MAX_SEGMENT_BYTES)]
    pub archive_segment_max_bytes: u64,

    /// Seal a segment once it is this many seconds old.
    #[arg(long, env = "ARCHIVE_SEGMENT_MAX_AGE_SECS", default_value_t = FileSinkConfig::DEFAULT_MAX_SEGMENT_AGE.as_secs())]
    pub archive_segment_max_age_secs: u64,

    /// Gzip level of sealed segments, 1 (fastest) to 9 (smallest). Level 6 seals roughly
    /// 80-100 MB/s per core; lower it when archiving faster than that for long.
    #[arg(long, env = "ARCHIVE_GZIP_LEVEL", default_value_t = FileSinkConfig::DEFAULT_GZIP_LEVEL,
          value_parser = clap::value_parser!(u32).range(1..=9))]
    pub archive_gzip_level: u32,

    /// The longest a webhook waits for its record to be written and fsynced, in milliseconds;
    /// past it the webhook gets 503 (Stripe retries) and `/health` reports not ready while that
    /// write is still stuck (a stalled disk, an NFS/EFS mount that stopped answering). Must be
    /// positive.
    #[arg(long, env = "ARCHIVE_WRITE_TIMEOUT_MS",
          default_value_t = FileSinkConfig::DEFAULT_WRITE_TIMEOUT.as_millis() as u64)]
    pub archive_write_timeout_ms: u64,

    /// The longest opening the archive may take at start, in seconds (creating and syncing its
    /// directories, sealing segments a crash left open); past it the server exits 2 naming a
    /// stalled disk instead of hanging. Must be positive.
    #[arg(long, env = "ARCHIVE_OPEN_TIMEOUT_SECS",
          default_value_t = FileSinkConfig::DEFAULT_OPEN_TIMEOUT.as_secs())]
    pub archive_open_timeout_secs: u64,
}

/// The Firehose sink's settings.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Firehose sink (SINK=firehose)")]
pub struct FirehoseSinkArgs {
    /// AWS region of the Firehose stream (the AWS SDK also reads AWS_REGION itself).
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// The Direct PUT delivery stream's name; setting it makes `firehose` the default sink.
    #[arg(long, env = "FIREHOSE_DELIVERY_STREAM_NAME")]
    pub firehose_delivery_stream_name: Option<String>,

    /// Total deadline per webhook in milliseconds; past it the webhook gets 503.
    #[arg(long, env = "FIREHOSE_DEADLINE_MS", default_value_t = 5000)]
    pub firehose_deadline_ms: u64,

    /// The most `PutRecordBatch` calls in flight at once: where the adaptive limit starts, and the
    /// most it climbs back to. High enough that concurrent webhooks do not wait behind calls in
    /// flight (one round trip each); throttling halves the limit (AIMD), so instances sharing a
    /// stream settle under its call quota.
    #[arg(long, env = "FIREHOSE_MAX_IN_FLIGHT", default_value_t = 64)]
    pub firehose_max_in_flight: usize,

    /// The most records waiting to be sent before new webhooks get 503.
    #[arg(long, env = "FIREHOSE_QUEUE_RECORDS", default_value_t = 10_000)]
    pub firehose_queue_records: usize,

    /// The most bytes waiting to be sent before new webhooks get 503.
    #[arg(long, env = "FIREHOSE_QUEUE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub firehose_queue_bytes: usize,

    /// Wait this many milliseconds for more records before sending a batch (0: never wait).
    #[arg(long, env = "FIREHOSE_LINGER_MS", default_value_t = 0)]
    pub firehose_linger_ms: u64,

    /// S3 bucket for events over Firehose's 1,024,000-byte record limit.
    #[arg(long, env = "OVERSIZE_S3_BUCKET")]
    pub oversize_s3_bucket: Option<String>,

    /// Key prefix for oversized events in OVERSIZE_S3_BUCKET.
    #[arg(long, env = "OVERSIZE_S3_PREFIX", default_value = "oversize/")]
    pub oversize_s3_prefix: String,
}

/// The SQS destination's settings (beside the Firehose sink; docs/forwarding-sqs.md).
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "SQS destination (with SINK=firehose)")]
pub struct SqsArgs {
    /// The queue every verified record is also sent to (`https://sqs.<region>.amazonaws.com/<account>/<name>`,
    /// `.fifo` for a FIFO queue); a webhook is answered 200 only when Firehose and the queue both
    /// accepted it. Needs SINK=firehose.
    #[arg(long, env = "FORWARD_SQS_QUEUE_URL")]
    pub forward_sqs_queue_url: Option<String>,

    /// Total time SQS may take per webhook in milliseconds, retries included; past it the webhook
    /// gets 503.
    #[arg(long, env = "FORWARD_SQS_DEADLINE_MS", default_value_t = 5000)]
    pub forward_sqs_deadline_ms: u64,

    /// The most `SendMessageBatch` calls in flight at once.
    #[arg(long, env = "FORWARD_SQS_MAX_IN_FLIGHT", default_value_t = 64)]
    pub forward_sqs_max_in_flight: usize,

    /// The most messages waiting to be sent before new webhooks get 503.
    #[arg(long, env = "FORWARD_SQS_QUEUE_RECORDS", default_value_t = 10_000)]
    pub forward_sqs_queue_records: usize,

    /// Send messages over this many bytes through the oversize pointer even when the queue's
    /// `MaximumMessageSize` would take them (default: the queue's limit, read at start).
    #[arg(long, env = "FORWARD_SQS_MAX_MESSAGE_BYTES")]
    pub forward_sqs_max_message_bytes: Option<usize>,
}

impl std::fmt::Debug for RawSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSettings")
            .field("secrets", &self.secrets.as_ref().map(|_| "<redacted>"))
            .field("keyring", &self.keyring.as_ref().map(|_| "<redacted>"))
            .field("keyring_file", &self.keyring_file)
            .field("sink", &self.sink)
            .field("file", &self.file)
            .field("firehose", &self.firehose)
            .field("sqs", &self.sqs)
            .finish_non_exhaustive()
    }
}

/// A setting a person has to fix. The message names the variable and says how.
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
    /// Both STRIPE_WEBHOOK_SECRET and a keyring were given.
    #[error(
        "STRIPE_WEBHOOK_SECRET and a keyring (STRIPE_WEBHOOK_KEYRING or STRIPE_WEBHOOK_KEYRING_FILE) \
         are both set: use one. A keyring lists every secret, the current one included"
    )]
    SecretAndKeyring,
    /// The keyring cannot be read, is malformed, or has no entry in use; the message starts with
    /// where it came from (`STRIPE_WEBHOOK_KEYRING` or `STRIPE_WEBHOOK_KEYRING_FILE <path>`) and
    /// never shows a secret.
    #[error("{0}")]
    Keyring(String),
    /// The tolerance is not a positive number of seconds.
    #[error("SIGNATURE_TOLERANCE_SECS must be a positive number of seconds, got {0:?}")]
    Tolerance(String),
    /// The tolerance is `disabled`, which only audits may use.
    #[error(
        "SIGNATURE_TOLERANCE_SECS=disabled turns off replay protection: any captured webhook \
         would be accepted for ever. It is for audits of an archive (`stripe-webhook verify`), never \
         for a live endpoint; use a number of seconds (Stripe's default is 300)"
    )]
    ToleranceDisabled,
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
    /// The Firehose sink was chosen in a build without it.
    #[error(
        "SINK=firehose: this build has no Firehose sink (built without the `firehose` feature of \
         stripe-webhook-service)"
    )]
    FirehoseNotBuilt,
    /// An SQS queue was given without the Firehose sink.
    #[error(
        "FORWARD_SQS_QUEUE_URL is set but SINK={0}: the SQS destination runs beside the Firehose \
         sink only (SINK=firehose, FIREHOSE_DELIVERY_STREAM_NAME). With the {0} sink, deliver events \
         to your application by HTTP forwarding from the archive instead, or unset \
         FORWARD_SQS_QUEUE_URL"
    )]
    SqsNeedsFirehose(&'static str),
    /// An SQS queue was given in a build without the SQS destination.
    #[error(
        "FORWARD_SQS_QUEUE_URL: this build has no SQS destination (built without the `sqs` feature \
         of stripe-webhook-service)"
    )]
    SqsNotBuilt,
    /// The memory sink was chosen without the opt-in.
    #[error(
        "SINK=memory keeps records only in this process's memory: every record is lost on restart, \
         yet each is answered 200, so Stripe never resends it. It is for tests and demos. Set \
         ALLOW_MEMORY_SINK=true to start anyway, or use SINK=file (ARCHIVE_DIR) or SINK=firehose"
    )]
    MemorySinkNotAllowed,
}

/// The validated settings: everything needed to build the ingest core and its sink.
#[derive(Debug)]
pub struct Settings {
    /// The signature verifier (secrets keyed, tolerance set).
    pub verifier: Verifier,
    /// Body limit and envelope options.
    pub ingest: IngestOptions,
    /// The chosen sink and its configuration.
    pub sink: SinkSettings,
}

/// The chosen sink, configured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SinkSettings {
    /// The durable file sink.
    File(FileSinkConfig),
    /// The memory sink (opted in with `ALLOW_MEMORY_SINK`).
    Memory {
        /// The most records it holds.
        capacity: usize,
    },
    /// The Firehose sink.
    #[cfg(feature = "firehose")]
    Firehose {
        /// The sink's configuration.
        config: stripe_webhook_sink_firehose::FirehoseSinkConfig,
        /// `AWS_REGION`, overriding the SDK's own region lookup when set.
        region: Option<String>,
        /// The SQS destination beside it (`FORWARD_SQS_QUEUE_URL`), if any.
        #[cfg(feature = "sqs")]
        sqs: Option<Box<stripe_webhook_sink_sqs::SqsSinkConfig>>,
    },
}

impl SinkSettings {
    /// Which sink this is.
    pub fn kind(&self) -> SinkKind {
        match self {
            SinkSettings::File(_) => SinkKind::File,
            SinkSettings::Memory { .. } => SinkKind::Memory,
            #[cfg(feature = "firehose")]
            SinkSettings::Firehose { .. } => SinkKind::Firehose,
        }
    }
}

impl RawSettings {
    /// Reads the settings from environment variables alone (the Lambda function).
    ///
    /// # Errors
    /// If a variable cannot be parsed as its type; the message names it.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct EnvOnly {
            #[command(flatten)]
            settings: RawSettings,
        }
        <EnvOnly as clap::Parser>::try_parse_from(["stripe-webhook"]).map(|e| e.settings)
    }

    /// The sink to use: `SINK` if set, else `firehose` when a stream is configured, else `file`.
    pub fn sink_kind(&self) -> SinkKind {
        match (self.sink, &self.firehose.firehose_delivery_stream_name) {
            (Some(kind), _) => kind,
            (None, Some(stream)) if !stream.is_empty() => SinkKind::Firehose,
            (None, _) => SinkKind::File,
        }
    }

    /// Checks every setting and builds the typed [`Settings`]. Consumes the raw settings, so the
    /// secret string does not outlive start-up (the verifier keeps keyed secrets only).
    ///
    /// # Errors
    /// The first problem found, with a message a person can act on.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let (verifier, retirements) = self.verifier()?;
        positive(
            "MAX_BODY_BYTES",
            self.max_body_bytes as u64,
            "a positive number of bytes",
        )?;
        let ingest = IngestOptions {
            max_body_bytes: self.max_body_bytes,
            envelope: EnvelopeOptions::default().include_raw(self.include_raw),
            retirements,
        };
        let kind = self.sink_kind();
        if kind != SinkKind::Firehose && self.firehose.firehose_delivery_stream_name.is_some() {
            tracing::warn!(
                sink = kind.label(),
                "FIREHOSE_DELIVERY_STREAM_NAME is set but SINK={}: the Firehose settings are ignored",
                kind.label()
            );
        }
        let queue_url = self
            .sqs
            .forward_sqs_queue_url
            .clone()
            .filter(|u| !u.is_empty());
        if queue_url.is_some() && kind != SinkKind::Firehose {
            return Err(ConfigError::SqsNeedsFirehose(kind.label()));
        }
        let sink = match kind {
            SinkKind::File => SinkSettings::File(self.file.validate()?),
            SinkKind::Memory => {
                if !self.allow_memory_sink {
                    return Err(ConfigError::MemorySinkNotAllowed);
                }
                positive(
                    "MEMORY_SINK_CAPACITY",
                    self.memory_sink_capacity as u64,
                    "at least 1",
                )?;
                SinkSettings::Memory {
                    capacity: self.memory_sink_capacity,
                }
            }
            SinkKind::Firehose => self.firehose.validate(self.sqs)?,
        };
        Ok(Settings {
            verifier,
            ingest,
            sink,
        })
    }

    /// The verifier's secrets: the keyring's entries in use now (with their retirements), or
    /// STRIPE_WEBHOOK_SECRET's list (never retired).
    fn secrets(&self) -> Result<(Vec<Secret>, Vec<Option<Retirement>>), ConfigError> {
        let list = self.secrets.as_deref().filter(|list| !list.is_empty());
        let keyring = Keyring::load(
            self.keyring_file.as_deref(),
            "STRIPE_WEBHOOK_KEYRING_FILE",
            self.keyring.as_deref(),
            "STRIPE_WEBHOOK_KEYRING",
        )
        .map_err(ConfigError::Keyring)?;
        match (list, keyring) {
            (Some(_), Some(_)) => Err(ConfigError::SecretAndKeyring),
            (None, None) => Err(ConfigError::MissingSecret),
            (None, Some(keyring)) => {
                let now = ReceivedAt::now().unix_seconds();
                let in_use: Vec<&KeyringEntry> = keyring.in_use_at(now).collect();
                let retired: Vec<&str> = keyring
                    .entries()
                    .iter()
                    .filter(|e| e.retired_at().is_some_and(|r| r <= now))
                    .map(KeyringEntry::label)
                    .collect();
                if in_use.is_empty() {
                    return Err(ConfigError::Keyring(format!(
                        "the keyring: every entry is retired ({}): add the endpoint's current signing secret",
                        retired.join(", ")
                    )));
                }
                let labels: Vec<&str> = in_use.iter().map(|e| e.label()).collect();
                tracing::info!(
                    in_use = %labels.join(","),
                    retired = %retired.join(","),
                    "keyring: verifying with {} entr{} in use; {} retired entr{} kept for audits",
                    labels.len(),
                    if labels.len() == 1 { "y" } else { "ies" },
                    retired.len(),
                    if retired.len() == 1 { "y" } else { "ies" },
                );
                Ok(in_use
                    .into_iter()
                    .map(|e| {
                        let retirement = e.retired_at().map(|at| Retirement {
                            at,
                            label: e.label().to_owned(),
                        });
                        (e.secret().clone(), retirement)
                    })
                    .unzip())
            }
            (Some(list), None) => {
                // The verifier's errors name a bad element by the variable it came from:
                // "STRIPE_WEBHOOK_SECRET element 2 is blank: …".
                let secrets = parse_secrets_named("STRIPE_WEBHOOK_SECRET", list)
                    .map_err(ConfigError::Secret)?;
                for (i, secret) in secrets.iter().enumerate() {
                    if !secret.has_whsec_prefix() {
                        tracing::warn!(
                            element = i + 1,
                            "STRIPE_WEBHOOK_SECRET element {} does not start with whsec_; Stripe signing secrets do",
                            i + 1
                        );
                    }
                }
                let never = vec![None; secrets.len()];
                Ok((secrets, never))
            }
        }
    }

    fn verifier(&self) -> Result<(Verifier, Vec<Option<Retirement>>), ConfigError> {
        let (secrets, retirements) = self.secrets()?;
        let raw = self.signature_tolerance_secs.as_str();
        if raw.eq_ignore_ascii_case("disabled") {
            return Err(ConfigError::ToleranceDisabled);
        }
        let tolerance = raw
            .parse::<u64>()
            .ok()
            .and_then(|secs| Tolerance::seconds(secs).ok())
            .ok_or_else(|| ConfigError::Tolerance(raw.to_owned()))?;
        let verifier = Verifier::new(secrets)
            .map_err(ConfigError::Secret)?
            .with_tolerance(tolerance)
            .with_max_future_skew(self.signature_max_future_secs);
        Ok((verifier, retirements))
    }
}

/// Refuses zero for a setting that must be positive.
pub fn positive(name: &'static str, value: u64, what: &'static str) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::OutOfRange {
            name,
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

impl FileSinkArgs {
    fn validate(self) -> Result<FileSinkConfig, ConfigError> {
        positive(
            "ARCHIVE_SEGMENT_MAX_BYTES",
            self.archive_segment_max_bytes,
            "a positive number of bytes",
        )?;
        positive(
            "ARCHIVE_SEGMENT_MAX_AGE_SECS",
            self.archive_segment_max_age_secs,
            "a positive number of seconds",
        )?;
        positive(
            "ARCHIVE_WRITE_TIMEOUT_MS",
            self.archive_write_timeout_ms,
            "a positive number of milliseconds",
        )?;
        positive(
            "ARCHIVE_OPEN_TIMEOUT_SECS",
            self.archive_open_timeout_secs,
            "a positive number of seconds",
        )?;
        Ok(FileSinkConfig {
            max_segment_bytes: self.archive_segment_max_bytes,
            max_segment_age: Duration::from_secs(self.archive_segment_max_age_secs),
            sealed_gzip_level: Some(self.archive_gzip_level),
            write_timeout: Duration::from_millis(self.archive_write_timeout_ms),
            open_timeout: Duration::from_secs(self.archive_open_timeout_secs),
            ..FileSinkConfig::new(self.archive_dir)
        })
    }
}

impl SqsArgs {
    #[cfg(not(feature = "sqs"))]
    #[cfg_attr(not(feature = "firehose"), allow(dead_code))]
    fn validate(self, _oversize: (Option<String>, String)) -> Result<(), ConfigError> {
        match self.forward_sqs_queue_url.filter(|u| !u.is_empty()) {
            Some(_) => Err(ConfigError::SqsNotBuilt),
            None => Ok(()),
        }
    }

    /// The SQS sink's configuration when a queue is given; the oversize bucket and prefix are the
    /// Firehose sink's (one oversize path).
    #[cfg(feature = "sqs")]
    fn validate(
        self,
        (bucket, prefix): (Option<String>, String),
    ) -> Result<Option<Box<stripe_webhook_sink_sqs::SqsSinkConfig>>, ConfigError> {
        let Some(url) = self.forward_sqs_queue_url.filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(ConfigError::OutOfRange {
                name: "FORWARD_SQS_QUEUE_URL",
                what: "a queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)",
                value: url,
            });
        }
        positive(
            "FORWARD_SQS_DEADLINE_MS",
            self.forward_sqs_deadline_ms,
            "a positive number of milliseconds",
        )?;
        positive(
            "FORWARD_SQS_MAX_IN_FLIGHT",
            self.forward_sqs_max_in_flight as u64,
            "at least 1",
        )?;
        positive(
            "FORWARD_SQS_QUEUE_RECORDS",
            self.forward_sqs_queue_records as u64,
            "at least 1",
        )?;
        if let Some(bytes) = self.forward_sqs_max_message_bytes
            && !(1024..=stripe_webhook_sink_sqs::MAX_MESSAGE_BYTES).contains(&bytes)
        {
            return Err(ConfigError::OutOfRange {
                name: "FORWARD_SQS_MAX_MESSAGE_BYTES",
                what: "1024 to 1048576 bytes",
                value: bytes.to_string(),
            });
        }
        let mut config = stripe_webhook_sink_sqs::SqsSinkConfig::new(url);
        config.deadline = Duration::from_millis(self.forward_sqs_deadline_ms);
        config.max_in_flight = self.forward_sqs_max_in_flight;
        config.max_queue_records = self.forward_sqs_queue_records;
        config.max_message_bytes = self.forward_sqs_max_message_bytes;
        config.oversize_bucket = bucket;
        config.oversize_prefix = prefix;
        Ok(Some(Box::new(config)))
    }
}

impl FirehoseSinkArgs {
    #[cfg(not(feature = "firehose"))]
    fn validate(self, _sqs: SqsArgs) -> Result<SinkSettings, ConfigError> {
        Err(ConfigError::FirehoseNotBuilt)
    }

    #[cfg(feature = "firehose")]
    fn validate(self, sqs: SqsArgs) -> Result<SinkSettings, ConfigError> {
        use stripe_webhook_sink_firehose::{FirehoseSinkConfig, MAX_RECORD_BYTES};
        let stream = match self.firehose_delivery_stream_name {
            Some(stream) if !stream.is_empty() => stream,
            _ => return Err(ConfigError::MissingStream),
        };
        positive(
            "FIREHOSE_DEADLINE_MS",
            self.firehose_deadline_ms,
            "a positive number of milliseconds",
        )?;
        positive(
            "FIREHOSE_MAX_IN_FLIGHT",
            self.firehose_max_in_flight as u64,
            "at least 1",
        )?;
        positive(
            "FIREHOSE_QUEUE_RECORDS",
            self.firehose_queue_records as u64,
            "at least 1",
        )?;
        if self.firehose_queue_bytes <= MAX_RECORD_BYTES {
            return Err(ConfigError::OutOfRange {
                name: "FIREHOSE_QUEUE_BYTES",
                what: "more than 1024000 (one record of Firehose's maximum size must fit)",
                value: self.firehose_queue_bytes.to_string(),
            });
        }
        let mut config = FirehoseSinkConfig::new(stream);
        config.deadline = Duration::from_millis(self.firehose_deadline_ms);
        config.max_in_flight = self.firehose_max_in_flight;
        config.max_queue_records = self.firehose_queue_records;
        config.max_queue_bytes = self.firehose_queue_bytes;
        config.linger = Duration::from_millis(self.firehose_linger_ms);
        config.oversize_bucket = self.oversize_s3_bucket.filter(|b| !b.is_empty());
        config.oversize_prefix = self.oversize_s3_prefix;
        let oversize = (
            config.oversize_bucket.clone(),
            config.oversize_prefix.clone(),
        );
        #[cfg(feature = "sqs")]
        let sqs = sqs.validate(oversize)?;
        #[cfg(not(feature = "sqs"))]
        sqs.validate(oversize)?;
        Ok(SinkSettings::Firehose {
            config,
            region: self.aws_region.filter(|r| !r.is_empty()),
            #[cfg(feature = "sqs")]
            sqs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: RawSettings,
    }

    fn parse(args: &[&str]) -> Result<RawSettings, clap::Error> {
        let args = std::iter::once("test")
            .chain(["--secret", "whsec_test"])
            .chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(args).map(|cli| cli.settings)
    }

    fn refused(args: &[&str]) -> String {
        match parse(args).expect("parses").validate() {
            Ok(settings) => panic!("{args:?} accepted: {settings:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn gzip_level_defaults_to_6_and_must_be_1_to_9() {
        assert_eq!(parse(&[]).unwrap().file.archive_gzip_level, 6);
        assert_eq!(
            parse(&["--archive-gzip-level", "1"])
                .unwrap()
                .file
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

    #[test]
    fn the_file_sink_is_the_default_and_firehose_follows_a_stream() {
        let file = parse(&[]).unwrap().validate().unwrap();
        assert_eq!(file.sink.kind(), SinkKind::File);
        let SinkSettings::File(config) = file.sink else {
            unreachable!()
        };
        assert_eq!(config.dir, PathBuf::from("./archive"));
        #[cfg(feature = "firehose")]
        {
            let firehose = parse(&["--firehose-delivery-stream-name", "s"])
                .unwrap()
                .validate()
                .unwrap();
            assert_eq!(firehose.sink.kind(), SinkKind::Firehose);
            assert!(refused(&["--sink", "firehose"]).contains("FIREHOSE_DELIVERY_STREAM_NAME"));
        }
        // A file-only build refuses Firehose with a message rather than starting another sink.
        #[cfg(not(feature = "firehose"))]
        assert!(
            refused(&["--firehose-delivery-stream-name", "s"])
                .contains("without the `firehose` feature")
        );
    }

    /// The Firehose flags' defaults are literals (the settings exist without the `firehose`
    /// feature); they must be the sink's own defaults.
    #[cfg(feature = "firehose")]
    #[test]
    fn firehose_defaults_are_the_sinks_defaults() {
        let settings = parse(&["--firehose-delivery-stream-name", "s"])
            .unwrap()
            .validate()
            .unwrap();
        let SinkSettings::Firehose { config, .. } = settings.sink else {
            unreachable!()
        };
        let sinks = stripe_webhook_sink_firehose::FirehoseSinkConfig::new("s");
        assert_eq!(config.deadline, sinks.deadline);
        assert_eq!(config.max_in_flight, sinks.max_in_flight);
        assert_eq!(config.max_queue_records, sinks.max_queue_records);
        assert_eq!(config.max_queue_bytes, sinks.max_queue_bytes);
        assert_eq!(config.linger, sinks.linger);
        assert_eq!(config.oversize_prefix, sinks.oversize_prefix);
    }

    #[test]
    fn an_sqs_queue_is_refused_without_the_firehose_sink() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/events";
        let message = refused(&["--forward-sqs-queue-url", url]);
        assert!(
            message.starts_with("FORWARD_SQS_QUEUE_URL is set but SINK=file"),
            "{message}"
        );
        assert!(message.contains("HTTP forwarding"), "{message}");
        let message = refused(&[
            "--sink",
            "memory",
            "--allow-memory-sink",
            "true",
            "--forward-sqs-queue-url",
            url,
        ]);
        assert!(message.contains("SINK=memory"), "{message}");
        // An empty value is no queue.
        let file = parse(&["--forward-sqs-queue-url", ""]).unwrap().validate();
        assert!(file.is_ok());
    }

    /// The SQS flags' defaults are literals; they must be the sink's own defaults, and the
    /// oversize bucket is the Firehose sink's.
    #[cfg(feature = "sqs")]
    #[test]
    fn an_sqs_queue_rides_with_the_firehose_sink_and_its_defaults_are_the_sinks() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo";
        let settings = parse(&[
            "--firehose-delivery-stream-name",
            "s",
            "--oversize-s3-bucket",
            "archive",
            "--forward-sqs-queue-url",
            url,
        ])
        .unwrap()
        .validate()
        .unwrap();
        let SinkSettings::Firehose { sqs: Some(sqs), .. } = settings.sink else {
            unreachable!("a Firehose sink with a queue")
        };
        let sinks = stripe_webhook_sink_sqs::SqsSinkConfig::new(url);
        assert!(sqs.is_fifo());
        assert_eq!(sqs.queue_url, url);
        assert_eq!(sqs.deadline, sinks.deadline);
        assert_eq!(sqs.max_in_flight, sinks.max_in_flight);
        assert_eq!(sqs.max_queue_records, sinks.max_queue_records);
        assert_eq!(sqs.max_message_bytes, None);
        assert_eq!(sqs.oversize_bucket.as_deref(), Some("archive"));
        assert_eq!(sqs.oversize_prefix, sinks.oversize_prefix);
        let without = parse(&["--firehose-delivery-stream-name", "s"])
            .unwrap()
            .validate()
            .unwrap();
        assert!(matches!(
            without.sink,
            SinkSettings::Firehose { sqs: None, .. }
        ));
        for (args, name) in [
            (
                &["--forward-sqs-queue-url", "sqs/events"][..],
                "FORWARD_SQS_QUEUE_URL",
            ),
            (
                &[
                    "--forward-sqs-queue-url",
                    url,
                    "--forward-sqs-deadline-ms",
                    "0",
                ],
                "FORWARD_SQS_DEADLINE_MS",
            ),
            (
                &[
                    "--forward-sqs-queue-url",
                    url,
                    "--forward-sqs-max-message-bytes",
                    "100",
                ],
                "FORWARD_SQS_MAX_MESSAGE_BYTES",
            ),
        ] {
            let mut all = vec!["--firehose-delivery-stream-name", "s"];
            all.extend_from_slice(args);
            let message = refused(&all);
            assert!(message.starts_with(name), "{args:?}: {message}");
        }
    }

    #[test]
    fn the_memory_sink_needs_an_explicit_opt_in() {
        let message = refused(&["--sink", "memory"]);
        assert!(message.contains("ALLOW_MEMORY_SINK=true"), "{message}");
        let settings = parse(&["--sink", "memory", "--allow-memory-sink", "true"])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(settings.sink.kind(), SinkKind::Memory);
    }

    #[test]
    fn a_live_endpoint_refuses_a_disabled_tolerance() {
        let message = refused(&["--signature-tolerance-secs", "disabled"]);
        assert!(message.contains("replay protection"), "{message}");
        for bad in ["0", "-1", "5m"] {
            let message = refused(&[&format!("--signature-tolerance-secs={bad}")]);
            assert!(message.contains("SIGNATURE_TOLERANCE_SECS"), "{message}");
        }
    }

    #[test]
    fn zero_limits_deadlines_and_ages_are_refused_by_name() {
        for (flag, name) in [
            ("--max-body-bytes", "MAX_BODY_BYTES"),
            ("--archive-segment-max-bytes", "ARCHIVE_SEGMENT_MAX_BYTES"),
            (
                "--archive-segment-max-age-secs",
                "ARCHIVE_SEGMENT_MAX_AGE_SECS",
            ),
        ] {
            let message = refused(&[flag, "0"]);
            assert!(message.starts_with(name), "{flag}: {message}");
        }
        #[cfg(feature = "firehose")]
        for (flag, name) in [
            ("--firehose-deadline-ms", "FIREHOSE_DEADLINE_MS"),
            ("--firehose-max-in-flight", "FIREHOSE_MAX_IN_FLIGHT"),
            ("--firehose-queue-records", "FIREHOSE_QUEUE_RECORDS"),
            ("--firehose-queue-bytes", "FIREHOSE_QUEUE_BYTES"),
        ] {
            let message = refused(&["--firehose-delivery-stream-name", "s", flag, "0"]);
            assert!(message.starts_with(name), "{flag}: {message}");
        }
        assert!(
            refused(&[
                "--sink",
                "memory",
                "--allow-memory-sink",
                "true",
                "--memory-sink-capacity",
                "0"
            ])
            .starts_with("MEMORY_SINK_CAPACITY")
        );
        // Negative numbers are not numbers of these types: clap names the variable.
        let message = parse(&["--firehose-deadline-ms=-5"])
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("FIREHOSE_DEADLINE_MS"), "{message}");
    }

    #[test]
    fn secrets_are_required_and_never_printed() {
        let raw = <Cli as clap::Parser>::try_parse_from(["test"])
            .unwrap()
            .settings;
        assert!(matches!(raw.validate(), Err(ConfigError::MissingSecret)));
        let raw = parse(&[]).unwrap();
        assert!(!format!("{raw:?}").contains("whsec_test"));
    }

    #[test]
    fn a_keyring_verifies_with_its_entries_in_use_and_nothing_else() {
        let keyring = |text: &str| {
            <Cli as clap::Parser>::try_parse_from(["test", "--keyring", text])
                .unwrap()
                .settings
        };
        let now = ReceivedAt::now().unix_seconds();
        let at = crate::keyring::rfc3339;
        let text = format!(
            "gone whsec_gone 2024-01-01T00:00:00Z {}\n\
             retiring whsec_retiring 2025-01-01T00:00:00Z {}\n\
             current whsec_current {}\n",
            at(now - 86_400),
            at(now + 3600),
            at(now - 7200),
        );
        let settings = keyring(&text).validate().expect("valid");
        assert_eq!(
            settings.verifier.secrets().len(),
            2,
            "the retired entry is not used"
        );
        assert_eq!(
            settings.ingest.retirements,
            [
                None,
                Some(Retirement {
                    at: now + 3600,
                    label: "retiring".to_owned()
                })
            ]
        );
        let err = keyring(&format!(
            "gone whsec_gone 2024-01-01T00:00:00Z {}\n",
            at(now - 1)
        ))
        .validate()
        .expect_err("all retired")
        .to_string();
        assert!(err.contains("every entry is retired (gone)"), "{err}");
        let err = keyring("bad whsec_bad yesterday")
            .validate()
            .expect_err("malformed")
            .to_string();
        assert!(
            err.starts_with("STRIPE_WEBHOOK_KEYRING: keyring line 1:")
                && !err.contains("whsec_bad"),
            "{err}"
        );
        let both = <Cli as clap::Parser>::try_parse_from([
            "test",
            "--secret",
            "whsec_x",
            "--keyring",
            &text,
        ])
        .unwrap()
        .settings;
        assert!(matches!(
            both.validate(),
            Err(ConfigError::SecretAndKeyring)
        ));
        let missing = <Cli as clap::Parser>::try_parse_from([
            "test",
            "--keyring-file",
            "/nonexistent/keyring",
        ])
        .unwrap()
        .settings;
        let err = missing.validate().expect_err("unreadable").to_string();
        assert!(
            err.starts_with("STRIPE_WEBHOOK_KEYRING_FILE /nonexistent/keyring: "),
            "{err}"
        );
        assert!(!format!("{:?}", keyring(&text)).contains("whsec_"));
    }
}
