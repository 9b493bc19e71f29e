//! The forwarder against a real archive (written by the file sink) and a real HTTP target:
//! per-object order, a long outage ending in dead letters that a re-drive delivers, and a restart
//! that resumes from the cursor.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_forward::glob::TypeFilter;
use stripe_webhook_forward::{Destination, ForwardSettings, Order, Start, cursor, dead_letters};
use stripe_webhook_sink::RecordSink;
use stripe_webhook_sink_file::{FileSink, FileSinkConfig};
use stripe_webhook_testkit::forward_target::{Answer, ForwardTarget};
use stripe_webhook_testkit::webhook_target::ReceivedRequest;
use stripe_webhook_verify::Secret;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_forward_test_destination";

fn body(id: &str, object: &str) -> String {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"type\": \"charge.updated\",\n  \"data\": {{\"object\": {{\"id\": \"{object}\", \"amount\": 100}}}}\n}}"
    )
}

async fn archive(sink: &FileSink, events: &[(&str, &str)]) {
    for (id, object) in events {
        let record = encode(
            Bytes::from(body(id, object)),
            "t=1,v1=00",
            ReceivedAt::now(),
            &EnvelopeOptions::default(),
        )
        .expect("encode");
        sink.put(record).await.expect("archived");
    }
}

fn settings(url: String, order: Order, max_age: Option<Duration>) -> ForwardSettings {
    let id = stripe_webhook_forward::destination_id(&url).expect("id");
    ForwardSettings {
        destinations: vec![Destination {
            url,
            secret: Secret::new(SECRET).expect("secret"),
            id,
        }],
        types: TypeFilter::default(),
        max_age,
        concurrency: 4,
        order,
        timeout: Duration::from_secs(2),
        start: Start::At(ReceivedAt::from_unix_millis(
            ReceivedAt::now().unix_millis() - 60_000,
        )),
        retry_max: Duration::from_millis(300),
    }
}

fn event_id(r: &ReceivedRequest) -> String {
    r.header("stripe-webhook-event-id")
        .unwrap_or("?")
        .to_owned()
}

fn ids(requests: &[ReceivedRequest]) -> Vec<String> {
    requests.iter().map(event_id).collect()
}

fn position(list: &[String], id: &str) -> usize {
    list.iter()
        .position(|x| x == id)
        .unwrap_or_else(|| panic!("{id} not in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_object_order_holds_back_only_the_failing_objects_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let released = Arc::clone(&release);
    let target = ForwardTarget::start(move |r| {
        if event_id(r) == "evt_a1" && !released.load(Ordering::SeqCst) {
            Answer::status(500)
        } else {
            Answer::status(200)
        }
    });
    archive(
        &sink,
        &[
            ("evt_a1", "ch_A"),
            ("evt_b1", "ch_B"),
            ("evt_a2", "ch_A"),
            ("evt_c1", "ch_C"),
            ("evt_a3", "ch_A"),
            ("evt_b2", "ch_B"),
        ],
    )
    .await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(stripe_webhook_forward::run(
        dir.path().to_path_buf(),
        settings(target.url(), Order::Object, None),
        cancel.clone(),
    ));
    // Other objects flow while ch_A's first event fails.
    stripe_webhook_testkit::wait::until_async(
        "ch_B and ch_C delivered",
        Duration::from_secs(30),
        || {
            let done = ids(&target.delivered());
            ["evt_b1", "evt_b2", "evt_c1"]
                .iter()
                .all(|id| done.contains(&(*id).to_owned()))
        },
    )
    .await;
    stripe_webhook_testkit::wait::until_async("evt_a1 retried", Duration::from_secs(30), || {
        ids(&target.received())
            .iter()
            .filter(|id| *id == "evt_a1")
            .count()
            >= 3
    })
    .await;
    let seen = ids(&target.received());
    assert!(
        !seen.contains(&"evt_a2".to_owned()) && !seen.contains(&"evt_a3".to_owned()),
        "ch_A's later events waited: {seen:?}"
    );
    let done = ids(&target.delivered());
    assert!(position(&done, "evt_b1") < position(&done, "evt_b2"));
    // The failing event goes through: its object's later events follow, in archive order.
    release.store(true, Ordering::SeqCst);
    stripe_webhook_testkit::wait::until_async("ch_A delivered", Duration::from_secs(30), || {
        target.delivered().len() == 6
    })
    .await;
    let done = ids(&target.delivered());
    assert!(position(&done, "evt_a1") < position(&done, "evt_a2"));
    assert!(position(&done, "evt_a2") < position(&done, "evt_a3"));
    cancel.cancel();
    run.await.unwrap().unwrap();
    sink.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_ends_in_dead_letters_that_a_redrive_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let is_down = Arc::clone(&down);
    let target = ForwardTarget::start(move |_| {
        if is_down.load(Ordering::SeqCst) {
            Answer::Status(503, vec![("Retry-After".into(), "0".into())])
        } else {
            Answer::status(200)
        }
    });
    let events: Vec<(String, String)> = (0..12)
        .map(|i| (format!("evt_outage_{i}"), format!("ch_{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = events
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    archive(&sink, &refs).await;
    // A week, shortened: every record older than 1.5 s is dead-lettered after its next attempt.
    let settings = settings(target.url(), Order::None, Some(Duration::from_millis(1500)));
    let dest = settings.destinations[0].clone();
    let state = dir.path().join("forward").join(&dest.id);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(stripe_webhook_forward::run(
        dir.path().to_path_buf(),
        settings.clone(),
        cancel.clone(),
    ));
    stripe_webhook_testkit::wait::until_async(
        "every record dead-lettered",
        Duration::from_secs(60),
        || dead_letters::count(&state) == 12,
    )
    .await;
    assert!(target.delivered().is_empty());
    let letters: Vec<_> = dead_letters::list(&state)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let archived = stripe_webhook_testkit::archive::read_records(dir.path());
    for letter in &letters {
        assert_eq!(letter.letter.reason, "max_age");
        assert_eq!(letter.letter.last_status, Some(503));
        assert!(letter.letter.attempts >= 1);
        let record: serde_json::Value = serde_json::from_str(letter.record.get()).unwrap();
        assert!(
            archived.contains(&record),
            "the record is the archived line"
        );
    }
    // The cursor moved past them: nothing is left to forward.
    stripe_webhook_testkit::wait::until_async(
        "cursor past the dead letters",
        Duration::from_secs(10),
        || {
            stripe_webhook_forward::status::destination_status(
                dir.path(),
                &state,
                true,
                &TypeFilter::default(),
            )
            .is_ok_and(|s| s.lag_records == 0)
        },
    )
    .await;
    // The destination is back: a re-drive delivers every dead letter, byte-exact, and empties
    // the list, beside the running forwarder.
    down.store(false, Ordering::SeqCst);
    let report =
        stripe_webhook_forward::redrive(dir.path(), &dest, Duration::from_secs(2), None, 3)
            .await
            .unwrap();
    assert_eq!(report.delivered.len(), 12, "{report:?}");
    assert!(report.failed.is_empty());
    assert_eq!(dead_letters::count(&state), 0);
    let delivered = target.delivered();
    assert_eq!(delivered.len(), 12);
    for r in &delivered {
        let id = event_id(r);
        let object = id.replace("evt_outage_", "ch_");
        assert_eq!(r.body, body(&id, &object).as_bytes(), "byte-exact");
    }
    cancel.cancel();
    run.await.unwrap().unwrap();
    sink.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_cursor_and_sealing_keeps_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileSinkConfig {
        max_segment_bytes: 2048,
        ..FileSinkConfig::new(dir.path())
    };
    let (sink, _) = FileSink::open(config.clone()).await.unwrap();
    let target = ForwardTarget::start(|_| Answer::status(204));
    let first: Vec<(String, String)> = (0..20)
        .map(|i| (format!("evt_r{i}"), format!("ch_{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = first
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    archive(&sink, &refs).await;
    let settings = settings(target.url(), Order::None, None);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(stripe_webhook_forward::run(
        dir.path().to_path_buf(),
        settings.clone(),
        cancel.clone(),
    ));
    stripe_webhook_testkit::wait::until_async("the first 20", Duration::from_secs(30), || {
        target.delivered().len() == 20
    })
    .await;
    cancel.cancel();
    run.await.unwrap().unwrap();
    // Stopped cleanly: the cursor covers all 20. Seal everything, archive more, run again.
    sink.shutdown().await.unwrap();
    let (sink, _) = FileSink::open(config).await.unwrap();
    let second: Vec<(String, String)> = (20..30)
        .map(|i| (format!("evt_r{i}"), format!("ch_{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = second
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    archive(&sink, &refs).await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(stripe_webhook_forward::run(
        dir.path().to_path_buf(),
        settings,
        cancel.clone(),
    ));
    stripe_webhook_testkit::wait::until_async("the next 10", Duration::from_secs(30), || {
        target.delivered().len() >= 30
    })
    .await;
    cancel.cancel();
    run.await.unwrap().unwrap();
    let mut all = ids(&target.delivered());
    assert_eq!(
        all.len(),
        30,
        "nothing delivered twice after a clean stop: {all:?}"
    );
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 30);
    sink.shutdown().await.unwrap();
    assert!(Path::new(&dir.path().join("forward")).is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_with_pending_records_sends_exactly_those_again_and_a_damaged_segment_holds_back_only_itself()
 {
    use stripe_webhook_forward::cursor::{Cursor, SegmentCursor, state_dir};
    use stripe_webhook_forward::segments::{self, SegmentReader};

    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    let events: Vec<(String, String)> = (0..5)
        .map(|i| (format!("evt_p{i}"), format!("ch_{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = events
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    archive(&sink, &refs).await;
    sink.shutdown().await.unwrap();
    let parts = segments::partitions(dir.path(), ReceivedAt::now().partition()).unwrap();
    let (partition, part_dir) = parts[0].clone();
    let files = segments::segments(partition, &part_dir).unwrap();
    assert_eq!(files.len(), 1);
    let chunk = SegmentReader::default().read(&files[0], 0, 10).unwrap();
    assert_eq!(chunk.lines.len(), 5);
    // A damaged sealed segment beside it (not gzip): it must not stop the others.
    std::fs::write(part_dir.join("1-1-0000000000000000.ndjson.gz"), b"not gzip").unwrap();

    let target = ForwardTarget::start(|_| Answer::status(200));
    let settings = settings(target.url(), Order::None, None);
    let state = state_dir(dir.path(), &settings.destinations[0].id).unwrap();
    // The last run finished every record but the 2nd and 4th (in flight when it was killed).
    let mut cursor = Cursor::starting_at(ReceivedAt::from_unix_millis(
        ReceivedAt::now().unix_millis() - 60_000,
    ));
    cursor.segments.insert(
        files[0].key.to_string(),
        SegmentCursor {
            offset: chunk.next,
            pending: vec![chunk.lines[1].start, chunk.lines[3].start],
            done: false,
        },
    );
    cursor.store(&state).unwrap();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(stripe_webhook_forward::run(
        dir.path().to_path_buf(),
        settings,
        cancel.clone(),
    ));
    stripe_webhook_testkit::wait::until_async(
        "the two pending records",
        Duration::from_secs(30),
        || target.delivered().len() >= 2,
    )
    .await;
    stripe_webhook_testkit::wait::until_async(
        "the segment finished",
        Duration::from_secs(30),
        || {
            Cursor::load(&state)
                .ok()
                .flatten()
                .is_some_and(|c| c.segment(&files[0].key).done)
        },
    )
    .await;
    cancel.cancel();
    run.await.unwrap().unwrap();
    let mut sent = ids(&target.delivered());
    sent.sort();
    assert_eq!(sent, ["evt_p1", "evt_p3"], "exactly the pending ones, once");
}

/// A destination whose forwarder stops on an error (here a damaged cursor) is restarted with
/// backoff rather than left stopped, and delivers once the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_stopped_by_an_error_is_restarted_and_delivers_once_it_is_mended() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    archive(&sink, &[("evt_m1", "ch_1"), ("evt_m2", "ch_2")]).await;
    let target = ForwardTarget::start(|_| Answer::status(200));
    let settings = settings(target.url(), Order::None, None);
    let state = dir
        .path()
        .join("forward")
        .join(&settings.destinations[0].id);
    std::fs::create_dir_all(&state).unwrap();
    let cursor = state.join("cursor.json");
    std::fs::write(&cursor, b"{not a cursor").unwrap();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(stripe_webhook_forward::run(
        dir.path().to_path_buf(),
        settings,
        cancel.clone(),
    ));
    // A try takes the destination's lock (creating its file) and, failing, releases it; a
    // forwarder that started would hold it for good.
    stripe_webhook_testkit::wait::until_async(
        "a first failed start",
        Duration::from_secs(30),
        || {
            state.join(cursor::LOCK_FILE).exists()
                && cursor::DestinationLock::holder(&state).is_none()
        },
    )
    .await;
    assert!(
        !run.is_finished(),
        "the forwarder gave up on the destination"
    );
    assert!(target.delivered().is_empty());
    // Mended (the operator moves the cursor): the next restart forwards both.
    std::fs::remove_file(&cursor).unwrap();
    stripe_webhook_testkit::wait::until_async(
        "both events after the mend",
        Duration::from_secs(30),
        || target.delivered().len() == 2,
    )
    .await;
    cancel.cancel();
    run.await.unwrap().unwrap();
    sink.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_delivers_exactly_the_range_and_dead_letters_what_keeps_failing() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = FileSink::open(FileSinkConfig::new(dir.path()))
        .await
        .unwrap();
    // Six records, a day apart (six partitions), the oldest five days ago.
    const DAY: i64 = 86_400_000;
    let now = ReceivedAt::now().unix_millis();
    let at = |i: i64| ReceivedAt::from_unix_millis(now - (5 - i) * DAY);
    for i in 0..6 {
        let id = format!("evt_day_{i}");
        let record = encode(
            Bytes::from(body(&id, &format!("ch_{i}"))),
            "t=1,v1=00",
            at(i),
            &EnvelopeOptions::default(),
        )
        .expect("encode");
        sink.put(record).await.expect("archived");
    }
    // The target refuses one event for good.
    let target = ForwardTarget::start(|r| {
        if r.header("stripe-webhook-event-id") == Some("evt_day_3") {
            Answer::status(500)
        } else {
            Answer::status(200)
        }
    });
    let settings = settings(target.url(), Order::None, None);
    let dest = settings.destinations[0].clone();
    // [day 1, day 4): from the first record's exact time (inclusive) to the fourth's (exclusive).
    let report = stripe_webhook_forward::backfill(
        dir.path(),
        &dest,
        &settings,
        (at(1), at(4)),
        2,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.delivered, 2, "{report:?}");
    assert_eq!(report.dead_lettered, ["evt_day_3"], "{report:?}");
    assert!(
        report.unread.is_empty() && !report.interrupted,
        "{report:?}"
    );
    let mut delivered = ids(&target.delivered());
    delivered.sort();
    assert_eq!(delivered, ["evt_day_1", "evt_day_2"]);
    // Each attempt is signed afresh with the destination's secret, over the exact body.
    let secret = Secret::new(SECRET).unwrap();
    let verifier = stripe_webhook_verify::Verifier::new(vec![secret]).unwrap();
    for r in &target.delivered() {
        assert_eq!(
            r.body,
            body(&event_id(r), &event_id(r).replace("evt_day_", "ch_")).as_bytes()
        );
        let header = r.header("stripe-signature");
        verifier
            .verify(&r.body, header, ReceivedAt::now().unix_millis() / 1000)
            .expect("the forwarded signature verifies");
    }
    // Two attempts for the failing one, then its dead letter, re-drivable like the forwarder's.
    let attempts = ids(&target.received())
        .iter()
        .filter(|id| *id == "evt_day_3")
        .count();
    assert_eq!(attempts, 2);
    let state = dir.path().join("forward").join(&dest.id);
    let letters: Vec<_> = dead_letters::list(&state)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.id, "evt_day_3");
    assert_eq!(letters[0].letter.reason, "attempts");
    assert_eq!(letters[0].letter.attempts, 2);
    assert_eq!(letters[0].letter.last_status, Some(500));
    // The cursor was not touched: a backfill of a destination without one creates none.
    assert!(!state.join(cursor::CURSOR_FILE).exists());
    assert_eq!(
        stripe_webhook_forward::destination_dirs(dir.path()),
        vec![state.clone()],
        "listed by `forward status` for its dead letter"
    );
    sink.shutdown().await.unwrap();
}
