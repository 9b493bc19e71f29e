//! The benchmark baseline: the replaced Node service's design, one Firehose `PutRecord` per
//! webhook, no batching and no retries. It exists only to be measured against the real Firehose
//! sink; it is not part of the service.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_firehose::config::retry::RetryConfig;
use aws_sdk_firehose::primitives::Blob;
use stripe_webhook_sink::{Record, RecordSink, SinkError, SinkErrorKind};

/// One `PutRecord` call per record (the Node service's design). A call that fails for any reason
/// fails the put with [`SinkErrorKind::Unavailable`] (503, so Stripe retries).
#[derive(Debug)]
pub struct PutRecordSink {
    client: aws_sdk_firehose::Client,
    stream: String,
    deadline: Duration,
}

impl PutRecordSink {
    /// A sink writing to `stream` with the SDK configuration of `sdk` and SDK retries off.
    pub fn new(sdk: &aws_config::SdkConfig, stream: impl Into<String>, deadline: Duration) -> Self {
        let client = aws_sdk_firehose::Client::from_conf(
            aws_sdk_firehose::config::Builder::from(sdk)
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        Self {
            client,
            stream: stream.into(),
            deadline,
        }
    }

    /// Loads the AWS configuration from the environment (`region` overriding it) and builds the
    /// sink.
    pub async fn from_env(
        stream: impl Into<String>,
        region: Option<String>,
        deadline: Duration,
    ) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        Self::new(&loader.load().await, stream, deadline)
    }
}

#[async_trait]
impl RecordSink for PutRecordSink {
    fn name(&self) -> &'static str {
        "firehose-put-record"
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn put(&self, record: Record) -> Result<(), SinkError> {
        let data = aws_sdk_firehose::types::Record::builder()
            .data(Blob::new(record.line().to_vec()))
            .build()
            .map_err(|e| SinkError::new(SinkErrorKind::Permanent, e.to_string()))?;
        let send = self
            .client
            .put_record()
            .delivery_stream_name(&self.stream)
            .record(data)
            .send();
        match tokio::time::timeout(self.deadline, send).await {
            Err(_) => Err(SinkError::new(
                SinkErrorKind::Timeout,
                format!("PutRecord of event {} timed out", record.id()),
            )),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SinkError::new(
                SinkErrorKind::Unavailable,
                format!(
                    "PutRecord of event {} failed: {}",
                    record.id(),
                    aws_sdk_firehose::error::DisplayErrorContext(&e)
                ),
            )),
        }
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
