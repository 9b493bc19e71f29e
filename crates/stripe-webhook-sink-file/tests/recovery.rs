//! Start-up recovery of orphaned segments, and sinks sharing one directory.

use crate::common;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use stripe_webhook_envelope::{ARCHIVE_PREFIX, ReceivedAt};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_file::{FileSink, FileSinkConfig, RecoveryOutcome};

const T: i64 = 1_795_731_281_123; // 2026-11-26T22:14:41.123Z

/// A partition directory with a hand-written segment stem in it.
fn orphan(dir: &std::path::Path, stem: &str) -> (PathBuf, PathBuf) {
    let pdir = dir
        .join(ARCHIVE_PREFIX)
        .join(ReceivedAt::from_unix_millis(T).partition().to_string());
    fs::create_dir_all(&pdir).unwrap();
    (pdir.clone(), pdir.join(format!("{stem}.ndjson")))
}

fn two_lines() -> Vec<u8> {
    [record("evt_1", T), record("evt_2", T)]
        .iter()
        .flat_map(|r| r.line().to_vec())
        .collect()
}

#[tokio::test]
async fn cuts_a_torn_last_line_and_seals_whole_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let (pdir, path) = orphan(dir.path(), "1795731281123-4242-00000000000000aa");
    let whole = two_lines();
    let torn = br#"{"v":1,"timestamp":"2026-11-26T22:14:41.123Z","id":"evt_3","ty"#;
    fs::write(&path, [whole.as_slice(), torn].concat()).unwrap();

    let (sink, report) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(report.segments_recovered(), 1);
    assert_eq!(report.bytes_cut(), torn.len() as u64);
    let seg = &report.segments[0];
    assert_eq!(seg.path, path);
    assert_eq!(seg.original_len, (whole.len() + torn.len()) as u64);
    assert_eq!(seg.kept_len, whole.len() as u64);
    assert_eq!(seg.outcome, RecoveryOutcome::Sealed);

    assert!(!path.exists());
    let sealed = pdir.join("1795731281123-4242-00000000000000aa.ndjson.gz");
    assert_eq!(gunzip(&sealed), whole);
    assert_eq!(
        files(dir.path(), "").len(),
        1,
        "only the sealed file is left"
    );
    sink.shutdown().await.unwrap();
}

#[tokio::test]
async fn finishes_interrupted_seals_and_removes_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let whole = two_lines();
    // Crash while writing the gzip: a partial .gz.tmp beside the segment.
    let (pdir, mid_gzip) = orphan(dir.path(), "1-1-0000000000000001");
    fs::write(&mid_gzip, &whole).unwrap();
    fs::write(
        pdir.join("1-1-0000000000000001.ndjson.gz.tmp"),
        b"\x1f\x8b partial",
    )
    .unwrap();
    // Crash after the rename, before the removal: a complete .gz beside the segment.
    let (_, after_rename) = orphan(dir.path(), "1-1-0000000000000002");
    fs::write(&after_rename, &whole).unwrap();
    let complete = pdir.join("1-1-0000000000000002.ndjson.gz");
    fs::write(&complete, b"complete gzip").unwrap();
    // Crash right after creating a segment: an empty .ndjson and a stray .creating file.
    let (_, empty) = orphan(dir.path(), "1-1-0000000000000003");
    fs::write(&empty, b"").unwrap();
    fs::write(pdir.join("1-1-0000000000000004.ndjson.creating"), b"").unwrap();

    let (sink, report) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    let outcome = |path: &PathBuf| {
        report
            .segments
            .iter()
            .find(|s| &s.path == path)
            .map(|s| s.outcome.clone())
    };
    assert_eq!(outcome(&mid_gzip), Some(RecoveryOutcome::Sealed));
    assert_eq!(outcome(&after_rename), Some(RecoveryOutcome::AlreadySealed));
    assert_eq!(outcome(&empty), Some(RecoveryOutcome::Removed));
    assert_eq!(report.stale_files_removed, 2, "{report:?}");
    assert_eq!(report.bytes_cut(), 0);

    assert_eq!(gunzip(&pdir.join("1-1-0000000000000001.ndjson.gz")), whole);
    assert_eq!(
        fs::read(&complete).unwrap(),
        b"complete gzip",
        "left untouched"
    );
    let mut left: Vec<String> = fs::read_dir(&pdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "1-1-0000000000000001.ndjson.gz",
            "1-1-0000000000000002.ndjson.gz"
        ]
    );
    sink.shutdown().await.unwrap();
}

#[tokio::test]
async fn leaves_segments_locked_by_a_live_sink_alone() {
    let dir = tempfile::tempdir().unwrap();
    let now = ReceivedAt::now().unix_millis();
    let (live, report) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(report.live_segments_skipped, 0);
    let first = record("evt_live_1", now);
    live.put(first.clone()).await.unwrap();
    let live_segment = open_segments(dir.path());
    assert_eq!(live_segment.len(), 1);

    let (other, report) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(report.live_segments_skipped, 1);
    assert!(report.segments.is_empty(), "{report:?}");
    assert_eq!(fs::read(&live_segment[0]).unwrap(), first.line().to_vec());

    // Both keep working, each in its own segment.
    let second = record("evt_live_2", now);
    live.put(second.clone()).await.unwrap();
    let third = record("evt_other", now);
    other.put(third.clone()).await.unwrap();
    assert_eq!(
        fs::read(&live_segment[0]).unwrap(),
        [first.line().to_vec(), second.line().to_vec()].concat()
    );
    assert_eq!(open_segments(dir.path()).len(), 2);

    live.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
    assert_eq!(sealed_lines(dir.path()), lines_of(&[first, second, third]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sinks_in_one_directory_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let now = ReceivedAt::now().unix_millis();
    let a = Arc::new(
        FileSink::open(FileSinkConfig::new(dir.path()))
            .await
            .unwrap()
            .0,
    );
    let b = Arc::new(
        FileSink::open(FileSinkConfig::new(dir.path()))
            .await
            .unwrap()
            .0,
    );
    let records: Vec<_> = (0..400).map(|i| record(&format!("evt_{i}"), now)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, r) in records.iter().cloned().enumerate() {
        let sink = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.spawn(async move { sink.put(r).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(a.stats().records + b.stats().records, 400);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    assert_eq!(files(dir.path(), ".ndjson.gz").len(), 2);
    assert_eq!(sealed_lines(dir.path()), lines_of(&records));
}

#[tokio::test]
async fn a_crashed_writer_is_recovered_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let now = ReceivedAt::now().unix_millis();
    let r = record("evt_1", now);
    {
        let (sink, _) = FileSink::open(FileSinkConfig::new(dir.path()))
            .await
            .unwrap();
        sink.put(r.clone()).await.unwrap();
        // Simulate a crash mid-write: a torn line after the acknowledged one. The sink is leaked,
        // like a killed process whose lock the OS would drop: copy the file so the lock is gone.
        let path = open_segments(dir.path()).remove(0);
        let copy = path.with_file_name("9-9-0000000000000009.ndjson");
        fs::write(&copy, [r.line().as_ref(), b"{\"torn\":"].concat()).unwrap();
        sink.shutdown().await.unwrap();
    }
    let (sink, report) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(report.segments_recovered(), 1);
    assert_eq!(report.bytes_cut(), 8);
    sink.shutdown().await.unwrap();
    assert_eq!(sealed_lines(dir.path()), lines_of(&[r.clone(), r]));
}
