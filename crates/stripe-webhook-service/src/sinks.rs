//! The sink factory: validated [`SinkSettings`] → a running sink that passed its start-up check.

use std::sync::Arc;

use stripe_webhook_sink::{FileSink, MemorySink, RecordSink, SinkError};

use crate::settings::{SinkKind, SinkSettings};

/// A sink could not be built or failed its start-up check.
#[derive(Debug, thiserror::Error)]
#[error("{} sink failed at start-up: {source}", sink.label())]
pub struct SinkStartupError {
    /// Which sink.
    pub sink: SinkKind,
    /// Why.
    #[source]
    pub source: SinkError,
}

impl SinkSettings {
    /// Builds the sink and runs its start-up check ([`RecordSink::healthcheck`]: directory
    /// writable, stream ACTIVE, …). The file sink recovers orphaned segments first and logs the
    /// report; the memory sink logs loudly that it is not durable.
    ///
    /// # Errors
    /// If the sink cannot be opened or its check fails.
    pub async fn build(&self) -> Result<Arc<dyn RecordSink>, SinkStartupError> {
        let fail = |source| SinkStartupError {
            sink: self.kind(),
            source,
        };
        let sink: Arc<dyn RecordSink> = match self {
            SinkSettings::Memory { capacity } => {
                tracing::warn!(
                    sink = "memory",
                    capacity,
                    "SINK=memory (ALLOW_MEMORY_SINK=true): records are kept only in this process and \
                     are LOST on restart, yet every one is answered 200. Never use it for real traffic."
                );
                Arc::new(MemorySink::new(*capacity))
            }
            SinkSettings::File(config) => {
                let (sink, report) = FileSink::open(config.clone()).await.map_err(fail)?;
                report.log();
                Arc::new(sink)
            }
            #[cfg(feature = "firehose")]
            SinkSettings::Firehose { config, region } => Arc::new(
                stripe_webhook_sink_firehose::FirehoseSink::from_env(
                    config.clone(),
                    region.clone(),
                )
                .await
                .map_err(fail)?,
            ),
        };
        sink.healthcheck().await.map_err(fail)?;
        Ok(sink)
    }
}
