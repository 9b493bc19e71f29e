//! The file sink end to end: durability, group commit, rotation, sealing, recovery, shutdown.

use crate::common;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use stripe_webhook_envelope::{ARCHIVE_PREFIX, ReceivedAt};
use stripe_webhook_sink::{RecordSink, SinkErrorKind};
use stripe_webhook_sink_file::{FileSink, FileSinkConfig};

const DAY: i64 = 86_400_000;

async fn open(config: FileSinkConfig) -> FileSink {
    let (sink, report) = FileSink::open(config).await.unwrap();
    assert_eq!(report.segments_recovered(), 0, "{report:?}");
    sink
}

#[tokio::test]
async fn put_is_durable_byte_exact_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(FileSinkConfig::new(dir.path())).await;
    sink.healthcheck().await.unwrap();
    assert!(sink.health().ready);
    // Today and two future days: none is due for sealing, so the open segments can be read.
    let now = ReceivedAt::now().unix_millis();
    let records: Vec<_> = (0..9)
        .map(|i| record(&format!("evt_{i}"), now + (i % 3) * DAY))
        .collect();
    for r in &records {
        sink.put(r.clone()).await.unwrap();
    }
    for day in 0..3 {
        let partition = ReceivedAt::from_unix_millis(now + day * DAY).partition();
        let pdir = dir.path().join(ARCHIVE_PREFIX).join(partition.to_string());
        let segments = open_segments(&pdir);
        assert_eq!(segments.len(), 1, "{segments:?}");
        let expected: Vec<u8> = records
            .iter()
            .filter(|r| r.received_at().partition() == partition)
            .flat_map(|r| r.line().to_vec())
            .collect();
        assert_eq!(fs::read(&segments[0]).unwrap(), expected);
    }
    let stats = sink.stats();
    assert_eq!((stats.records, stats.segments_created), (9, 3));
    assert_eq!(
        stats.bytes,
        records.iter().map(|r| r.len() as u64).sum::<u64>()
    );
    sink.shutdown().await.unwrap();
    assert_eq!(sealed_lines(dir.path()), lines_of(&records));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(open(FileSinkConfig::new(dir.path())).await);
    let now = ReceivedAt::now().unix_millis();
    let records: Vec<_> = (0..2000)
        .map(|i| record(&format!("evt_{i}"), now))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for r in records.clone() {
        let sink = Arc::clone(&sink);
        tasks.spawn(async move { sink.put(r).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let stats = sink.stats();
    assert_eq!(stats.records, 2000);
    assert!(
        stats.syncs * 4 < stats.records,
        "group commit should share syncs: {stats:?}"
    );
    assert_eq!(
        stats.syncs, stats.batches,
        "one partition: one sync per batch"
    );
    sink.shutdown().await.unwrap();
    // Every line exactly once.
    assert_eq!(sealed_lines(dir.path()), lines_of(&records));
}

#[tokio::test]
async fn rotates_by_size_into_valid_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let now = ReceivedAt::now().unix_millis();
    let records: Vec<_> = (0..10).map(|i| record(&format!("evt_{i}"), now)).collect();
    let line_len = records[0].len() as u64;
    let mut config = FileSinkConfig::new(dir.path());
    config.max_segment_bytes = 3 * line_len;
    let sink = open(config).await;
    for r in &records {
        sink.put(r.clone()).await.unwrap();
    }
    sink.flush().await.unwrap();
    // 10 records, 3 per segment: three sealed segments, the fourth still open with one record.
    let sealed = files(dir.path(), ".ndjson.gz");
    assert_eq!(sealed.len(), 3, "{sealed:?}");
    for path in &sealed {
        assert_eq!(gunzip(path).len() as u64, 3 * line_len);
    }
    let open_now = open_segments(dir.path());
    assert_eq!(open_now.len(), 1);
    assert_eq!(fs::read(&open_now[0]).unwrap(), records[9].line().to_vec());
    assert!(files(dir.path(), ".gz.tmp").is_empty());
    sink.shutdown().await.unwrap();
    assert_eq!(sealed_lines(dir.path()), lines_of(&records));
}

#[tokio::test]
async fn rotates_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FileSinkConfig::new(dir.path());
    config.max_segment_age = Duration::from_millis(100);
    let sink = open(config).await;
    let now = ReceivedAt::now().unix_millis();
    sink.put(record("evt_1", now)).await.unwrap();
    assert_eq!(open_segments(dir.path()).len(), 1);
    // No further record arrives: the writer wakes up by itself to seal the segment.
    eventually("the aged segment to be sealed", || {
        files(dir.path(), ".ndjson.gz").len() == 1 && open_segments(dir.path()).is_empty()
    })
    .await;
    sink.put(record("evt_2", now)).await.unwrap();
    assert_eq!(
        open_segments(dir.path()).len(),
        1,
        "a new segment is opened"
    );
    sink.shutdown().await.unwrap();
    assert_eq!(sealed_lines(dir.path()).len(), 2);
}

#[tokio::test]
async fn day_boundary_uses_receipt_date_and_seals_past_days() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(FileSinkConfig::new(dir.path())).await;
    // Written now (days after that midnight), but received just before and at a midnight.
    let now = ReceivedAt::now().unix_millis();
    let last_ms_of_day = now - now.rem_euclid(DAY) - 5 * DAY - 1;
    let before = record("evt_before", last_ms_of_day);
    let after = record("evt_after", last_ms_of_day + 1);
    let today = record("evt_today", now);
    for r in [&before, &after, &today] {
        sink.put(r.clone()).await.unwrap();
    }
    sink.flush().await.unwrap();
    let root = dir.path().join(ARCHIVE_PREFIX);
    // Both past days are over (plus grace): sealed right after the write.
    assert_ne!(
        before.received_at().partition(),
        after.received_at().partition()
    );
    for r in [&before, &after] {
        let day = r.received_at().partition().to_string();
        let sealed = files(&root.join(&day), ".ndjson.gz");
        assert_eq!(sealed.len(), 1, "{day}: {sealed:?}");
        assert_eq!(gunzip(&sealed[0]), r.line().to_vec());
        assert!(open_segments(&root.join(&day)).is_empty());
    }
    // Today's segment stays open.
    let today_dir = root.join(today.received_at().partition().to_string());
    assert_eq!(open_segments(&today_dir).len(), 1);
    sink.shutdown().await.unwrap();
}

#[tokio::test]
async fn uncompressed_sealing_renames() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FileSinkConfig::new(dir.path());
    config.sealed_gzip_level = None;
    let sink = open(config).await;
    let r = record("evt_1", ReceivedAt::now().unix_millis());
    sink.put(r.clone()).await.unwrap();
    sink.shutdown().await.unwrap();
    let sealed = files(dir.path(), ".sealed.ndjson");
    assert_eq!(sealed.len(), 1);
    assert_eq!(fs::read(&sealed[0]).unwrap(), r.line().to_vec());
    assert!(open_segments(dir.path()).is_empty());
    assert!(files(dir.path(), ".gz").is_empty());
}

#[tokio::test]
async fn shutdown_seals_everything_and_refuses_puts() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(FileSinkConfig::new(dir.path())).await;
    let now = ReceivedAt::now().unix_millis();
    let records: Vec<_> = (0..4)
        .map(|i| record(&format!("evt_{i}"), now + i * DAY))
        .collect();
    for r in &records {
        sink.put(r.clone()).await.unwrap();
    }
    assert_eq!(open_segments(dir.path()).len(), 4);
    sink.shutdown().await.unwrap();
    assert!(open_segments(dir.path()).is_empty());
    assert_eq!(files(dir.path(), ".ndjson.gz").len(), 4);
    assert_eq!(sealed_lines(dir.path()), lines_of(&records));

    let err = sink.put(record("evt_late", now)).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::ShuttingDown);
    assert_eq!(
        sink.healthcheck().await.unwrap_err().kind(),
        SinkErrorKind::ShuttingDown
    );
    sink.flush().await.unwrap();
    sink.shutdown().await.unwrap();
    assert_eq!(sink.stats().records, 4);
}

#[tokio::test]
async fn dropping_the_sink_seals_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(FileSinkConfig::new(dir.path())).await;
    sink.put(record("evt_1", ReceivedAt::now().unix_millis()))
        .await
        .unwrap();
    drop(sink);
    eventually("the dropped sink's segment to be sealed", || {
        files(dir.path(), ".ndjson.gz").len() == 1 && open_segments(dir.path()).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_fails_fast_with_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FileSinkConfig::new(dir.path());
    config.queue_capacity = 1;
    let sink = Arc::new(open(config).await);
    let now = ReceivedAt::now().unix_millis();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let sink = Arc::clone(&sink);
        let r = record(&format!("evt_{i}"), now);
        tasks.spawn(async move { (sink.put(r.clone()).await, r) });
    }
    let (mut accepted, mut overloaded) = (Vec::new(), 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            (Ok(()), r) => accepted.push(r),
            (Err(e), _) => {
                assert_eq!(e.kind(), SinkErrorKind::Overloaded);
                assert!(e.is_retryable());
                overloaded += 1;
            }
        }
    }
    assert!(overloaded > 0, "a one-record queue never filled up");
    assert!(!accepted.is_empty());
    sink.shutdown().await.unwrap();
    assert_eq!(sealed_lines(dir.path()), lines_of(&accepted));
}

#[tokio::test]
async fn unusable_partition_fails_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(FileSinkConfig::new(dir.path())).await;
    let now = ReceivedAt::now().unix_millis();
    let blocked = ReceivedAt::from_unix_millis(now + DAY).partition();
    // A file where the partition's day directory should be.
    let path = dir.path().join(ARCHIVE_PREFIX).join(blocked.to_string());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"not a directory").unwrap();
    let err = sink
        .put(record("evt_blocked", now + DAY))
        .await
        .unwrap_err();
    assert!(err.message().contains("creating a segment"), "{err}");
    assert!(!sink.health().ready, "not ready after a failed write");
    sink.put(record("evt_ok", now)).await.unwrap();
    assert!(sink.health().ready, "ready again after a good write");
    assert_eq!(sink.stats().records, 1);

    // The blocked partition again: not ready; once the obstacle is gone, its next put succeeds.
    sink.put(record("evt_blocked", now + DAY))
        .await
        .unwrap_err();
    assert!(!sink.health().ready);
    fs::remove_file(&path).unwrap();
    sink.put(record("evt_blocked", now + DAY)).await.unwrap();
    assert!(sink.health().ready);
    assert_eq!(sink.stats().records, 2);
    sink.shutdown().await.unwrap();
    assert!(!sink.health().ready, "a closed sink is not ready");
}

#[tokio::test]
async fn healthcheck_fails_when_the_directory_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = FileSink::open(FileSinkConfig::new(file.join("archive")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Permanent, "{err}");

    let sink = open(FileSinkConfig::new(dir.path().join("archive"))).await;
    sink.healthcheck().await.unwrap();
    // The probe file is gone.
    let root = dir.path().join("archive").join(ARCHIVE_PREFIX);
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    sink.shutdown().await.unwrap();
}

#[test]
fn open_blocking_works_outside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, report) = FileSink::open_blocking(FileSinkConfig::new(dir.path())).unwrap();
    assert_eq!(report.segments_recovered(), 0);
    assert_eq!(sink.dir(), dir.path());
    assert!(matches!(
        FileSink::open_blocking(FileSinkConfig {
            queue_capacity: 0,
            ..FileSinkConfig::new(dir.path())
        }),
        Err(e) if e.kind() == SinkErrorKind::Permanent
    ));
    let refused = FileSink::open_blocking(FileSinkConfig {
        write_timeout: Duration::ZERO,
        ..FileSinkConfig::new(dir.path())
    });
    assert!(
        matches!(&refused, Err(e) if e.kind() == SinkErrorKind::Permanent
            && e.to_string().contains("write_timeout")),
        "{refused:?}"
    );
    for level in [0, 10] {
        let refused = FileSink::open_blocking(FileSinkConfig {
            sealed_gzip_level: Some(level),
            ..FileSinkConfig::new(dir.path())
        });
        assert!(
            matches!(&refused, Err(e) if e.kind() == SinkErrorKind::Permanent
                && e.to_string().contains("sealed_gzip_level")),
            "level {level}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn a_gzip_level_outside_1_to_9_is_refused_at_open() {
    for level in [0, 10, 12, u32::MAX] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = FileSinkConfig::new(dir.path());
        config.sealed_gzip_level = Some(level);
        let error = FileSink::open(config).await.expect_err("refused");
        assert_eq!(error.kind(), SinkErrorKind::Permanent, "{level}");
        assert!(error.message().contains("1 to 9"), "{level}: {error}");
    }
    for level in [Some(1), Some(9), None] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = FileSinkConfig::new(dir.path());
        config.sealed_gzip_level = level;
        open(config).await.shutdown().await.unwrap();
    }
}
