//! The oversize path, shared by every sink with a record size limit (Firehose, SQS): the verified
//! body goes to S3 and a pointer record ([`Record::oversize_pointer`]) takes the record's place
//! (specified in `docs/envelope-format.md` §6).

use std::time::Duration;

use aws_sdk_firehose::config::retry::RetryConfig;
use aws_sdk_firehose::config::timeout::TimeoutConfig;
use aws_sdk_s3::operation::RequestId;
use stripe_webhook_sink::{Record, SinkError, SinkErrorKind};
use tokio::time::Instant;

use crate::classify::{CallFailure, Class};

/// The limit a sink puts bodies to S3 for: named in errors, counted in its metric.
#[derive(Clone, Copy, Debug)]
pub struct OversizeLimit {
    /// What the record is too large for, for messages (`a Firehose record (1024000 bytes at most)`).
    pub what: &'static str,
    /// The counter of bodies stored, by `result` (`ok`, `error`), if the sink has one.
    pub metric: Option<&'static str>,
}

/// Stores bodies too large for a sink in `OVERSIZE_S3_BUCKET` and makes their pointer records.
#[derive(Clone, Debug)]
pub struct OversizeStore {
    s3: aws_sdk_s3::Client,
    bucket: Option<String>,
    prefix: String,
    limit: OversizeLimit,
}

impl OversizeStore {
    /// An S3 client from `sdk` with standard retries (3 attempts) within `deadline`, path-style
    /// when an endpoint override (`AWS_ENDPOINT_URL`, emulators) is set. Without `bucket`, every
    /// [`OversizeStore::store`] fails [`SinkErrorKind::Permanent`]. A non-empty `prefix` gets a
    /// trailing `/` if it lacks one.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        bucket: Option<String>,
        mut prefix: String,
        deadline: Duration,
        limit: OversizeLimit,
    ) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(deadline.min(Duration::from_secs(2)))
            .operation_attempt_timeout(deadline)
            .operation_timeout(deadline)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .retry_config(RetryConfig::standard().with_max_attempts(3))
                .timeout_config(timeouts)
                .force_path_style(sdk.endpoint_url().is_some())
                .build(),
        );
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self {
            s3,
            bucket,
            prefix,
            limit,
        }
    }

    /// Writes `record`'s body to S3 (before `deadline`) and returns the pointer record naming it.
    ///
    /// # Errors
    /// [`SinkErrorKind::Permanent`] without a bucket or when S3 refuses for good,
    /// [`SinkErrorKind::Timeout`] past the deadline, [`SinkErrorKind::Unavailable`] otherwise.
    pub async fn store(&self, record: &Record, deadline: Instant) -> Result<Record, SinkError> {
        let OversizeLimit { what, metric } = self.limit;
        let Some(bucket) = self.bucket.as_deref() else {
            return Err(SinkError::new(
                SinkErrorKind::Permanent,
                format!(
                    "event {} is {} bytes, too large for {what}, and no oversize bucket is \
                     configured: set OVERSIZE_S3_BUCKET",
                    record.id(),
                    record.len()
                ),
            ));
        };
        let key = oversize_key(&self.prefix, record);
        let send = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(
                record.body().clone(),
            ))
            .send();
        let stored = tokio::time::timeout_at(deadline, send).await;
        let result = if matches!(stored, Ok(Ok(_))) {
            "ok"
        } else {
            "error"
        };
        if let Some(metric) = metric {
            metrics::counter!(metric, "result" => result).increment(1);
        }
        match stored {
            Err(_) => Err(SinkError::new(
                SinkErrorKind::Timeout,
                format!(
                    "oversize body of event {} not stored in s3://{bucket}/{key} within the deadline",
                    record.id()
                ),
            )),
            Ok(Err(err)) => {
                let f = CallFailure::from_sdk(&err);
                let kind = match f.class {
                    Class::Permanent => SinkErrorKind::Permanent,
                    _ => SinkErrorKind::Unavailable,
                };
                tracing::error!(event_id = record.id(), request_id = ?f.request_id, code = %f.code, bucket, key, "oversize body not stored");
                Err(SinkError::new(
                    kind,
                    format!(
                        "oversize body of event {} not stored in s3://{bucket}/{key}: {} ({}): {}",
                        record.id(),
                        f.code,
                        f.request_id_text(),
                        f.message
                    ),
                ))
            }
            Ok(Ok(out)) => {
                tracing::info!(event_id = record.id(), request_id = ?out.request_id(), bucket, key, bytes = record.body().len(), "oversize body stored in S3");
                Ok(record.oversize_pointer(bucket, &key))
            }
        }
    }
}

/// `<prefix>year=YYYY/month=MM/day=DD/<event id>-<receipt millis>-<random>.json`.
fn oversize_key(prefix: &str, record: &Record) -> String {
    let id: String = record
        .id()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let received = record.received_at();
    format!(
        "{prefix}{}/{id}-{}-{:016x}.json",
        received.partition(),
        received.unix_millis(),
        rand::random::<u64>()
    )
}
