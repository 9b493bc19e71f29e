//! The S3 side of the archive reader (the `s3` feature): listing and streaming objects under a
//! prefix, reading oversize bodies, and requesting restores of archived objects.

use std::io::Read;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::operation::get_object::GetObjectError;
use stripe_webhook_envelope::layout::{
    self, ARCHIVE_PREFIX, FileClass, NON_RECORD_PREFIXES, Partition,
};
use stripe_webhook_envelope::read::{OversizeMismatch, OversizePointer};
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use super::{Archive, ArchiveError, Event};
use crate::filter::{DayRange, date_partition, partition_date};

/// Storage classes whose objects must be restored before they can be read (Glacier Flexible
/// Retrieval and Deep Archive; Glacier Instant Retrieval reads like Standard).
pub(crate) const ARCHIVED_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

/// What `restore` did for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Restored {
    /// A restore was requested now.
    Requested,
    /// A restore requested earlier is still running.
    InProgress,
    /// Already restored: readable now (until the restored copy expires).
    Available,
    /// Not in an archival storage class: readable as it is.
    NotArchived,
    /// The request failed (why).
    Failed(String),
}

/// The S3 client, connected on first use, and the runtime its calls run on.
pub(super) struct S3 {
    handle: Handle,
    client: OnceLock<aws_sdk_s3::Client>,
}

impl S3 {
    /// Runs S3 calls on `handle` (from outside the runtime, e.g. a blocking thread).
    pub(super) fn new(handle: Handle) -> S3 {
        S3 {
            handle,
            client: OnceLock::new(),
        }
    }
}

/// A blocking [`Read`] over an S3 object's streamed body, driven on the runtime.
type ObjectReader = SyncIoBridge<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;

impl Archive {
    /// The S3 client from the normal AWS configuration (environment, profile, instance role);
    /// path-style addressing when an endpoint URL is configured (`AWS_ENDPOINT_URL`, e.g. moto).
    fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3.client.get_or_init(|| {
            let config = self.s3.handle.block_on(aws_config::load_defaults(
                aws_config::BehaviorVersion::latest(),
            ));
            let mut builder = aws_sdk_s3::config::Builder::from(&config);
            if config.endpoint_url().is_some() {
                builder = builder.force_path_style(true);
            }
            aws_sdk_s3::Client::from_conf(builder.build())
        })
    }

    pub(super) fn scan_s3(
        &self,
        bucket: &str,
        prefix: &str,
        partitions: DayRange,
        visit: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        // Under `…webhooks/` keys sort by date: start at the first partition wanted.
        let start_after = match partitions.from {
            Some(from) if prefix.ends_with(&format!("{ARCHIVE_PREFIX}/")) => {
                Some(format!("{prefix}{}/", date_partition(from)))
            }
            _ => None,
        };
        self.list_objects(bucket, prefix, start_after, &mut |object| {
            let Some(key) = object.key() else {
                return ControlFlow::Continue(());
            };
            let relative = key.strip_prefix(prefix).unwrap_or(key);
            let name = key.rsplit('/').next().unwrap_or(key);
            if layout::classify(name) == FileClass::Ignore
                || NON_RECORD_PREFIXES
                    .iter()
                    .any(|n| relative.split('/').next() == Some(n))
            {
                return ControlFlow::Continue(());
            }
            if let Some((before, partition, _)) = layout::split_at_partition(key)
                && let Some(day) = partition_date(partition)
            {
                // Keys below a partition tree sort by day: none after this one is wanted.
                if partitions.is_after(day) && before.len() == prefix.len() {
                    return ControlFlow::Break(());
                }
                if !partitions.contains(day) {
                    return ControlFlow::Continue(());
                }
            }
            let name = format!("s3://{bucket}/{key}");
            match self.open_s3(bucket, key) {
                Ok(reader) => self.read_segment(&name, reader, visit),
                Err(reason) => visit(Event::Unreadable {
                    segment: &name,
                    number: 0,
                    reason,
                }),
            }
        })
    }

    /// Hands every object under `s3://bucket/prefix` (after `start_after`, if given) to `visit`,
    /// in key order, page by page, until `visit` breaks.
    ///
    /// # Errors
    /// When a page cannot be listed.
    fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<String>,
        visit: &mut dyn FnMut(&aws_sdk_s3::types::Object) -> ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        let client = self.s3();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .s3
                .handle
                .block_on(
                    client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_start_after(start_after.clone())
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| {
                    ArchiveError::S3(format!(
                        "listing s3://{bucket}/{prefix}: {}",
                        DisplayErrorContext(&e)
                    ))
                })?;
            for object in page.contents() {
                if visit(object).is_break() {
                    return Ok(());
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    /// Opens an S3 object as a blocking reader over its streamed body. An object in an archival
    /// storage class that is not restored is named as such, with how to restore it.
    fn open_s3(&self, bucket: &str, key: &str) -> Result<ObjectReader, String> {
        let output = self
            .s3
            .handle
            .block_on(self.s3().get_object().bucket(bucket).key(key).send())
            .map_err(|e| match e.as_service_error() {
                Some(GetObjectError::InvalidObjectState(state)) => {
                    let class = state
                        .storage_class()
                        .map_or("an archival storage class", |c| c.as_str());
                    self.not_restored(bucket, key, class)
                }
                _ => format!(
                    "cannot get s3://{bucket}/{key}: {}",
                    DisplayErrorContext(&e)
                ),
            })?;
        Ok(SyncIoBridge::new_with_handle(
            Box::new(output.body.into_async_read()),
            self.s3.handle.clone(),
        ))
    }

    /// Why an object in `class` cannot be read: not restored, or its restore still running (from
    /// its `x-amz-restore` header), and how to restore it.
    fn not_restored(&self, bucket: &str, key: &str, class: &str) -> String {
        let restore = self
            .s3
            .handle
            .block_on(self.s3().head_object().bucket(bucket).key(key).send())
            .ok()
            .and_then(|head| head.restore().map(str::to_owned));
        let day = Partition::in_path(key)
            .and_then(partition_date)
            .map(|d| d.to_string());
        match restore {
            Some(r) if r.contains("ongoing-request=\"true\"") => format!(
                "s3://{bucket}/{key} is in storage class {class} and its restore is still in \
                 progress: read it again once the restore completes (hours for GLACIER, up to 48 h \
                 for DEEP_ARCHIVE)"
            ),
            _ => format!(
                "s3://{bucket}/{key} is in storage class {class} and not restored: restore it \
                 first ({}, or `aws s3api restore-object --bucket {bucket} --key {key} \
                 --restore-request Days=7`), then read it once the restore completes",
                match day {
                    Some(day) => format!(
                        "`stripe-webhook restore s3://{bucket}/{} --from {day} --to {day}`",
                        layout::split_at_partition(key).map_or("", |(before, ..)| before)
                    ),
                    None => "`stripe-webhook restore`".to_owned(),
                }
            ),
        }
    }

    /// Requests restores of the objects under `s3://bucket/prefix` whose partition is in `days`
    /// (all of them when `days` is unbounded) and whose storage class needs one
    /// ([`ARCHIVED_CLASSES`]), keeping each restored copy `keep_days` days. `visit` sees every
    /// object listed, with what was done.
    ///
    /// # Errors
    /// When the prefix cannot be listed.
    pub(crate) fn restore(
        &self,
        bucket: &str,
        prefix: &str,
        days: DayRange,
        keep_days: i32,
        tier: aws_sdk_s3::types::Tier,
        visit: &mut dyn FnMut(&str, Restored),
    ) -> Result<(), ArchiveError> {
        self.list_objects(bucket, prefix, None, &mut |object| {
            let Some(key) = object.key() else {
                return ControlFlow::Continue(());
            };
            let wanted = match Partition::in_path(key).and_then(partition_date) {
                Some(day) => days.contains(day),
                None => days.is_all(),
            };
            if wanted && !key.ends_with('/') {
                let archived = object
                    .storage_class()
                    .is_some_and(|c| ARCHIVED_CLASSES.contains(&c.as_str()));
                let outcome = if archived {
                    self.restore_one(bucket, key, keep_days, &tier)
                } else {
                    Restored::NotArchived
                };
                visit(key, outcome);
            }
            ControlFlow::Continue(())
        })
    }

    /// Requests a restore of one archived object unless it is restored or being restored.
    fn restore_one(
        &self,
        bucket: &str,
        key: &str,
        keep_days: i32,
        tier: &aws_sdk_s3::types::Tier,
    ) -> Restored {
        use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest};
        let client = self.s3();
        let head = self
            .s3
            .handle
            .block_on(client.head_object().bucket(bucket).key(key).send());
        match head.map(|h| h.restore().map(str::to_owned)) {
            Err(e) => Restored::Failed(format!("head: {}", DisplayErrorContext(&e))),
            Ok(Some(r)) if r.contains("ongoing-request=\"true\"") => Restored::InProgress,
            Ok(Some(_)) => Restored::Available,
            Ok(None) => {
                let request = match GlacierJobParameters::builder().tier(tier.clone()).build() {
                    Ok(job) => RestoreRequest::builder()
                        .days(keep_days)
                        .glacier_job_parameters(job)
                        .build(),
                    Err(e) => return Restored::Failed(e.to_string()),
                };
                let sent = self.s3.handle.block_on(
                    client
                        .restore_object()
                        .bucket(bucket)
                        .key(key)
                        .restore_request(request)
                        .send(),
                );
                match sent {
                    Ok(_) => Restored::Requested,
                    Err(e)
                        if e.as_service_error().and_then(|s| s.meta().code())
                            == Some("RestoreAlreadyInProgress") =>
                    {
                        Restored::InProgress
                    }
                    Err(e) => Restored::Failed(DisplayErrorContext(&e).to_string()),
                }
            }
        }
    }

    /// Fetches an oversize event's body and checks its length and SHA-256 against the pointer
    /// (reading at most one byte more than the pointer says).
    pub(crate) fn fetch_oversize(&self, pointer: &OversizePointer<'_>) -> Result<Vec<u8>, String> {
        let (bucket, key) = (&pointer.bucket, &pointer.key);
        let mut reader = self.open_s3(bucket, key)?;
        let mut body = Vec::with_capacity(usize::try_from(pointer.bytes).unwrap_or(0).min(1 << 26));
        (&mut reader)
            .take(pointer.bytes.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?;
        pointer.check(&body).map_err(|mismatch| match mismatch {
            OversizeMismatch::Length { expected, found } if found > expected => format!(
                "oversize body s3://{bucket}/{key} is more than {expected} bytes, the pointer says {expected}"
            ),
            other => format!("oversize body s3://{bucket}/{key}: {other}"),
        })?;
        Ok(body)
    }
}
