//! Every metric the Stripe webhook archive exports, named once.
//!
//! The crates record through the [`metrics`] facade with the constants below; the server exports
//! them in Prometheus text format on `METRICS_ADDR`, the Lambda function as CloudWatch Embedded
//! Metric Format on stdout. [`ALL`] lists each with its type, unit, labels and meaning:
//! `docs/metrics.md` is generated from it ([`markdown_table`]; a test keeps the two equal), and the
//! dashboards and alert rules in `infra/` are checked against what a real server exports.
//!
//! ```
//! use stripe_webhook_metrics::{ALL, Kind, REQUESTS_TOTAL, find};
//!
//! let requests = find(REQUESTS_TOTAL).unwrap();
//! assert_eq!(requests.kind, Kind::Counter);
//! assert_eq!(requests.labels, &["outcome"]);
//! assert!(ALL.iter().all(|m| m.name.starts_with("stripe_webhook_")));
//! ```

use metrics::Unit;

/// What kind of metric a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (Prometheus `counter`; names end in `_total`).
    Counter,
    /// A value that goes up and down (Prometheus `gauge`).
    Gauge,
    /// A distribution in [`LATENCY_BUCKETS`] or [`SIZE_BUCKETS`] (Prometheus `histogram`).
    Histogram,
}

impl Kind {
    /// The Prometheus `# TYPE` word.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The name, as exported.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The unit of its values.
    pub unit: Unit,
    /// Its label names (CloudWatch dimensions in the Lambda's EMF).
    pub labels: &'static [&'static str],
    /// What it means, for operators (the `# HELP` text).
    pub help: &'static str,
}

/// Histogram buckets for latencies, in seconds: sub-millisecond (the file sink's group commit) to
/// 10 s (a Firehose deadline, a stalled disk).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram buckets for records per Firehose call (at most 500).
pub const RECORDS_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

/// Histogram buckets for sizes in bytes (a webhook is a few KB; a Firehose call at most 4 MiB).
pub const SIZE_BUCKETS: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
];

/// Histogram buckets for forwarding delays, in seconds: a delivery right after archiving (tens of
/// milliseconds) to one after a week-long outage (the default `FORWARD_MAX_AGE`).
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0,
    259_200.0, 604_800.0,
];

/// The buckets of a histogram: latency, record-count or size buckets by its unit, and the wide
/// delivery buckets for [`FORWARD_DELIVERY_SECONDS`] (an outage puts deliveries hours or days after
/// archiving, beyond the latency buckets' 10 s).
pub fn buckets(metric: &Metric) -> &'static [f64] {
    if metric.name == FORWARD_DELIVERY_SECONDS {
        return DELIVERY_BUCKETS;
    }
    match metric.unit {
        Unit::Bytes => SIZE_BUCKETS,
        Unit::Count => RECORDS_BUCKETS,
        _ => LATENCY_BUCKETS,
    }
}

macro_rules! metrics {
    ($( $(#[$doc:meta])* $konst:ident = $name:literal, $kind:ident, $unit:ident, [$($label:literal),*], $help:literal; )*) => {
        $( $(#[$doc])* pub const $konst: &str = $name; )*
        /// Every exported metric.
        pub const ALL: &[Metric] = &[
            $( Metric { name: $name, kind: Kind::$kind, unit: Unit::$unit, labels: &[$($label),*], help: $help }, )*
        ];
    };
}

metrics! {
    /// Counter: requests to the webhook route and refusals made before it, by outcome.
    REQUESTS_TOTAL = "stripe_webhook_requests_total", Counter, Count, ["outcome"],
        "Webhook requests by outcome: accepted, bad_signature, not_an_event, body_too_large, body_timeout, body_unreadable, bad_body_encoding, busy, storage_unavailable, storage_failed, not_found, method_not_allowed, forbidden_source, bad_host, bad_transfer_encoding, unsupported_transfer_encoding, unsupported_expectation.";
    /// Histogram: seconds from the body received to the answer, by outcome.
    REQUEST_SECONDS = "stripe_webhook_request_seconds", Histogram, Seconds, ["outcome"],
        "Time from the body received to the answer, by outcome.";
    /// Counter: signature verification failures by reason.
    VERIFICATION_FAILURES_TOTAL = "stripe_webhook_verification_failures_total", Counter, Count, ["reason"],
        "Stripe-Signature verification failures by reason (no_matching_signature after a secret rotation, stale_timestamp, ...).";
    /// Histogram: seconds a sink took to acknowledge a record, by sink and result.
    SINK_PUT_SECONDS = "stripe_webhook_sink_put_seconds", Histogram, Seconds, ["sink", "result"],
        "Time for the sink to acknowledge a record durable (result ok) or fail it (result error).";
    /// Counter: records acknowledged durable.
    ARCHIVED_RECORDS_TOTAL = "stripe_webhook_archived_records_total", Counter, Count, [],
        "Records acknowledged durable by the sink.";
    /// Counter: envelope bytes acknowledged durable.
    ARCHIVED_BYTES_TOTAL = "stripe_webhook_archived_bytes_total", Counter, Bytes, [],
        "Envelope bytes acknowledged durable by the sink.";
    /// Counter: refusal log lines not written because of the log rate limit.
    LOG_LINES_SUPPRESSED_TOTAL = "stripe_webhook_log_lines_suppressed_total", Counter, Count, ["outcome"],
        "Refusal log lines suppressed by the log rate limit (a flood of bad requests), by outcome.";
    /// Gauge: 1 when the sink reports ready, 0 when not.
    SINK_READY = "stripe_webhook_sink_ready", Gauge, Count, ["sink"],
        "1 while the sink can take writes (readiness, as /health reports it), 0 while not.";

    /// Histogram: seconds per fdatasync of a segment (one per touched segment per group commit).
    FILE_SYNC_SECONDS = "stripe_webhook_file_sync_seconds", Histogram, Seconds, [],
        "File sink: time of one fdatasync of segment data (one per touched segment per group commit).";
    /// Gauge: records waiting for the file sink's writer.
    FILE_QUEUE_RECORDS = "stripe_webhook_file_queue_records", Gauge, Count, [],
        "File sink: records waiting for the writer thread (then 503 when the queue is full).";
    /// Counter: records written with a failed write or sync (never acknowledged).
    FILE_WRITE_ERRORS_TOTAL = "stripe_webhook_file_write_errors_total", Counter, Count, [],
        "File sink: failed segment creations, writes or syncs (their records were not acknowledged).";
    /// Counter: segments sealed.
    FILE_SEALED_SEGMENTS_TOTAL = "stripe_webhook_file_sealed_segments_total", Counter, Count, [],
        "File sink: segments sealed (compressed to .ndjson.gz, or renamed).";
    /// Counter: bytes of sealed segments (after compression).
    FILE_SEALED_BYTES_TOTAL = "stripe_webhook_file_sealed_bytes_total", Counter, Bytes, [],
        "File sink: bytes written by sealing (the .ndjson.gz files, compressed).";
    /// Counter: failed sealing attempts (retried; the records stay durable).
    FILE_SEAL_ERRORS_TOTAL = "stripe_webhook_file_seal_errors_total", Counter, Count, [],
        "File sink: failed sealing attempts (retried; the records stay durable in the .ndjson).";
    /// Gauge: segments written and not yet sealed (open ones and those waiting for the sealer).
    FILE_UNSEALED_SEGMENTS = "stripe_webhook_file_unsealed_segments", Gauge, Count, [],
        "File sink: segments not sealed yet (open, or rotated and waiting for the sealer).";
    /// Gauge: bytes in segments not yet sealed.
    FILE_UNSEALED_BYTES = "stripe_webhook_file_unsealed_bytes", Gauge, Bytes, [],
        "File sink: bytes in segments not sealed yet; growing without bound means sealing lags the writes.";
    /// Gauge: age of the oldest rotated segment still waiting to be sealed.
    FILE_UNSEALED_OLDEST_SECONDS = "stripe_webhook_file_unsealed_oldest_seconds", Gauge, Seconds, [],
        "File sink: how long the oldest rotated segment has waited for the sealer (0 when none waits).";

    /// Counter: PutRecordBatch calls by outcome.
    FIREHOSE_CALLS_TOTAL = "stripe_webhook_firehose_calls_total", Counter, Count, ["outcome"],
        "Firehose sink: PutRecordBatch calls by outcome (ok, partial, throttled, error, timeout, permanent, count_mismatch).";
    /// Histogram: seconds per PutRecordBatch call.
    FIREHOSE_CALL_SECONDS = "stripe_webhook_firehose_call_seconds", Histogram, Seconds, [],
        "Firehose sink: time of one PutRecordBatch call.";
    /// Histogram: records per PutRecordBatch call.
    FIREHOSE_BATCH_RECORDS = "stripe_webhook_firehose_batch_records", Histogram, Count, [],
        "Firehose sink: records per PutRecordBatch call (group commit).";
    /// Histogram: data bytes per PutRecordBatch call.
    FIREHOSE_BATCH_BYTES = "stripe_webhook_firehose_batch_bytes", Histogram, Bytes, [],
        "Firehose sink: record data bytes per PutRecordBatch call (before base64).";
    /// Counter: records Firehose accepted.
    FIREHOSE_RECORDS_TOTAL = "stripe_webhook_firehose_records_total", Counter, Count, [],
        "Firehose sink: records Firehose accepted (gave a RecordId).";
    /// Counter: records Firehose failed, by error code.
    FIREHOSE_RECORDS_FAILED_TOTAL = "stripe_webhook_firehose_records_failed_total", Counter, Count, ["code"],
        "Firehose sink: per-record and whole-call failures by error code (resent unless permanent).";
    /// Counter: records resent, by the code that failed them.
    FIREHOSE_RETRIES_TOTAL = "stripe_webhook_firehose_retries_total", Counter, Count, ["code"],
        "Firehose sink: records scheduled for a resend, by the error code that failed them.";
    /// Counter: throttling answers, by scope.
    FIREHOSE_THROTTLES_TOTAL = "stripe_webhook_firehose_throttles_total", Counter, Count, ["scope"],
        "Firehose sink: throttling seen (scope call: a whole call; record: records inside an answered call); each lowers the in-flight limit.";
    /// Gauge: PutRecordBatch calls in flight.
    FIREHOSE_IN_FLIGHT = "stripe_webhook_firehose_in_flight", Gauge, Count, [],
        "Firehose sink: PutRecordBatch calls in flight now.";
    /// Gauge: the AIMD in-flight limit.
    FIREHOSE_IN_FLIGHT_LIMIT = "stripe_webhook_firehose_in_flight_limit", Gauge, Count, [],
        "Firehose sink: calls allowed in flight now (lowered on throttling, raised on success).";
    /// Gauge: records admitted and not yet resolved.
    FIREHOSE_QUEUE_RECORDS = "stripe_webhook_firehose_queue_records", Gauge, Count, [],
        "Firehose sink: records admitted and not yet resolved (then 503 when full).";
    /// Gauge: bytes of records admitted and not yet resolved.
    FIREHOSE_QUEUE_BYTES = "stripe_webhook_firehose_queue_bytes", Gauge, Bytes, [],
        "Firehose sink: bytes of records admitted and not yet resolved.";
    /// Counter: oversize bodies sent to S3, by result.
    FIREHOSE_OVERSIZE_TOTAL = "stripe_webhook_firehose_oversize_total", Counter, Count, ["result"],
        "Firehose sink: events over Firehose's record limit whose body went to S3, by result (ok, error).";
    /// Counter: puts that failed, by sink error kind.
    FIREHOSE_PUT_ERRORS_TOTAL = "stripe_webhook_firehose_put_errors_total", Counter, Count, ["kind"],
        "Firehose sink: puts that failed, by kind (overloaded, timeout, unavailable, shutting_down, permanent).";

    /// Counter: forwarded records by destination and how they ended.
    FORWARD_DELIVERIES_TOTAL = "stripe_webhook_forward_deliveries_total", Counter, Count, ["destination", "outcome"],
        "Forwarding: records finished per destination, by outcome (delivered, dead_lettered, redriven).";
    /// Counter: delivery attempts by destination and result.
    FORWARD_ATTEMPTS_TOTAL = "stripe_webhook_forward_attempts_total", Counter, Count, ["destination", "result"],
        "Forwarding: delivery attempts per destination, by result (ok, http_4xx, http_5xx, http_429, timeout, connect_error).";
    /// Histogram: seconds from archived to delivered.
    FORWARD_DELIVERY_SECONDS = "stripe_webhook_forward_delivery_seconds", Histogram, Seconds, ["destination"],
        "Forwarding: time from a record archived (its timestamp) to its delivery acknowledged, per destination.";
    /// Gauge: records not yet finished.
    FORWARD_LAG_RECORDS = "stripe_webhook_forward_lag_records", Gauge, Count, ["destination"],
        "Forwarding: archived records the destination's cursor does not cover as finished yet.";
    /// Gauge: age of the oldest record not yet finished.
    FORWARD_LAG_SECONDS = "stripe_webhook_forward_lag_seconds", Gauge, Seconds, ["destination"],
        "Forwarding: age of the oldest archived record not yet finished for the destination (0 when none).";
    /// Gauge: entries in the dead-letter list.
    FORWARD_DEAD_LETTERS = "stripe_webhook_forward_dead_letters", Gauge, Count, ["destination"],
        "Forwarding: entries in the destination's dead-letter list (re-drive with stripe-webhook forward dead-letters --redrive).";
    /// Gauge: 1 while a destination's forwarder is stopped by an error.
    FORWARD_FAILED = "stripe_webhook_forward_failed", Gauge, Count, ["destination"],
        "Forwarding: 1 while the destination's forwarder is stopped by an error (its state cannot be written or read: restarted with backoff, the error in the log), 0 while it runs or stands by.";
    /// Counter: SendMessageBatch calls by outcome.
    SQS_CALLS_TOTAL = "stripe_webhook_sqs_calls_total", Counter, Count, ["outcome"],
        "SQS sink: SendMessageBatch calls by outcome (ok, partial, throttled, error, timeout).";
    /// Counter: messages SQS accepted.
    SQS_MESSAGES_TOTAL = "stripe_webhook_sqs_messages_total", Counter, Count, [],
        "SQS sink: messages the queue accepted (one per record; an oversize event's pointer counts once).";
    /// Counter: messages that failed, by AWS error code (retried unless permanent).
    SQS_MESSAGES_FAILED_TOTAL = "stripe_webhook_sqs_messages_failed_total", Counter, Count, ["code"],
        "SQS sink: messages not accepted by a call, by AWS error code (retried within the deadline unless the sender's fault).";
    /// Histogram: seconds per SendMessageBatch call.
    SQS_CALL_SECONDS = "stripe_webhook_sqs_call_seconds", Histogram, Seconds, [],
        "SQS sink: time of one SendMessageBatch call.";
}

/// Every outcome of [`REQUESTS_TOTAL`] (and of [`LOG_LINES_SUPPRESSED_TOTAL`], whose outcomes are
/// the refusals among them): the core's outcomes and the server's front-door refusals, each held
/// to this list by a test beside it.
pub const OUTCOMES: &[&str] = &[
    "accepted",
    "bad_signature",
    "not_an_event",
    "body_too_large",
    "body_timeout",
    "body_unreadable",
    "bad_body_encoding",
    "busy",
    "storage_unavailable",
    "storage_failed",
    "not_found",
    "method_not_allowed",
    "forbidden_source",
    "bad_host",
    "bad_transfer_encoding",
    "unsupported_transfer_encoding",
    "unsupported_expectation",
];

/// The outcomes only the hyper server's front door gives (HTTP framing and source address
/// refusals made before the app); the Lambda never counts them.
pub const SERVER_ONLY_OUTCOMES: &[&str] = &[
    "forbidden_source",
    "bad_host",
    "bad_transfer_encoding",
    "unsupported_transfer_encoding",
    "unsupported_expectation",
];

/// Every reason of [`VERIFICATION_FAILURES_TOTAL`]: the verifier's error labels (held equal to
/// them by a test in the core).
pub const VERIFICATION_REASONS: &[&str] = &[
    "missing_header",
    "duplicate_header",
    "header_too_large",
    "malformed_header",
    "no_v1_signature",
    "too_many_signatures",
    "no_matching_signature",
    "stale_timestamp",
    "future_timestamp",
];

/// The values a counter's label takes where they are a closed set known in advance: the series
/// [`register_zeros`] exports at 0 (forwarding's, per destination, are registered by the
/// forwarder). `None` for a label of an open set (AWS error codes).
pub fn known_values(metric: &str, label: &str) -> Option<&'static [&'static str]> {
    Some(match (metric, label) {
        (REQUESTS_TOTAL, "outcome") => OUTCOMES,
        (LOG_LINES_SUPPRESSED_TOTAL, "outcome") => &OUTCOMES[1..],
        (VERIFICATION_FAILURES_TOTAL, "reason") => VERIFICATION_REASONS,
        (FIREHOSE_CALLS_TOTAL, "outcome") => &[
            "ok",
            "partial",
            "throttled",
            "error",
            "timeout",
            "permanent",
            "count_mismatch",
        ],
        (FIREHOSE_THROTTLES_TOTAL, "scope") => &["call", "record"],
        (SQS_CALLS_TOTAL, "outcome") => &["ok", "partial", "throttled", "error", "timeout"],
        (FIREHOSE_OVERSIZE_TOTAL, "result") => &["ok", "error"],
        (FORWARD_DELIVERIES_TOTAL, "outcome") => &["delivered", "dead_lettered", "redriven"],
        (FORWARD_ATTEMPTS_TOTAL, "result") => &[
            "ok",
            "http_4xx",
            "http_5xx",
            "http_429",
            "timeout",
            "connect_error",
        ],
        (FIREHOSE_PUT_ERRORS_TOTAL, "kind") => &[
            "overloaded",
            "timeout",
            "unavailable",
            "shutting_down",
            "permanent",
        ],
        _ => return None,
    })
}

/// One counter series: a name and, for a labelled counter, its one label and value.
pub type Series = (&'static str, Option<(&'static str, &'static str)>);

/// Every counter series with a known label set, for a process whose sink is `sink` (`file`,
/// `firehose`, `memory`, or two joined by `+`: `firehose+sqs`): the ingest counters, and the
/// sinks' own (`stripe_webhook_<sink>_…`). Counters of an open label set are left out: their
/// series appear with their first increment.
pub fn zero_series(sink: &str) -> Vec<Series> {
    let sink_prefixes: Vec<String> = sink
        .split('+')
        .map(|s| format!("stripe_webhook_{s}_"))
        .collect();
    let is_sink_metric = |name: &str| {
        // A sink's counters only where that sink runs; forwarding's only where it is configured
        // (their series are labelled by destination and appear with their first delivery).
        [
            "stripe_webhook_file_",
            "stripe_webhook_firehose_",
            "stripe_webhook_sqs_",
            "stripe_webhook_forward_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
    };
    let mut out = Vec::new();
    for m in ALL.iter().filter(|m| m.kind == Kind::Counter) {
        if is_sink_metric(m.name) && !sink_prefixes.iter().any(|p| m.name.starts_with(p)) {
            continue;
        }
        match m.labels {
            [] => out.push((m.name, None)),
            [label] => {
                if let Some(values) = known_values(m.name, label) {
                    out.extend(values.iter().map(|v| (m.name, Some((*label, *v)))));
                }
            }
            _ => {}
        }
    }
    out
}

/// Registers every series of [`zero_series`] at 0 with the installed recorder, so a fresh
/// process's first scrape shows each counter the dashboards and alert rules query (and
/// `increase()` sees its first step) instead of "no data".
pub fn register_zeros(sink: &str) {
    for (name, label) in zero_series(sink) {
        match label {
            None => metrics::counter!(name).increment(0),
            Some((label, value)) => metrics::counter!(name, label => value).increment(0),
        }
    }
}

/// The metric named `name`.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

/// Registers every metric's description and unit with the installed recorder.
pub fn describe() {
    for m in ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

/// The Markdown table of every metric (name, type, unit, labels, meaning), as `docs/metrics.md`
/// holds it.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| metric | type | unit | labels | meaning |\n|---|---|---|---|---|\n");
    for m in ALL {
        let labels = if m.labels.is_empty() {
            "–".to_owned()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {labels} | {} |\n",
            m.name,
            m.kind.label(),
            m.unit.as_str(),
            m.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_typed_by_suffix() {
        let mut names: Vec<_> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name is defined twice");
        for m in ALL {
            assert!(m.name.starts_with("stripe_webhook_"), "{}", m.name);
            assert_eq!(
                m.name.ends_with("_total"),
                m.kind == Kind::Counter,
                "{}",
                m.name
            );
            assert!(
                m.labels.len() <= 2,
                "{}: keep CloudWatch dimensions few",
                m.name
            );
        }
    }

    #[test]
    fn zero_series_cover_each_known_label_set_of_the_sink_in_use() {
        let file = zero_series("file");
        assert!(file.contains(&(REQUESTS_TOTAL, Some(("outcome", "bad_signature")))));
        assert!(file.contains(&(
            VERIFICATION_FAILURES_TOTAL,
            Some(("reason", "stale_timestamp"))
        )));
        assert!(file.contains(&(ARCHIVED_RECORDS_TOTAL, None)));
        assert!(file.contains(&(FILE_WRITE_ERRORS_TOTAL, None)));
        assert!(
            !file
                .iter()
                .any(|(n, _)| n.starts_with("stripe_webhook_firehose_"))
        );
        assert!(!file.contains(&(LOG_LINES_SUPPRESSED_TOTAL, Some(("outcome", "accepted")))));
        let firehose = zero_series("firehose");
        assert!(firehose.contains(&(FIREHOSE_PUT_ERRORS_TOTAL, Some(("kind", "timeout")))));
        assert!(
            !firehose
                .iter()
                .any(|(n, _)| n.starts_with("stripe_webhook_file_"))
        );
        assert!(
            !firehose
                .iter()
                .any(|(n, _)| n.starts_with("stripe_webhook_sqs_"))
        );
        let both = zero_series("firehose+sqs");
        assert!(both.contains(&(FIREHOSE_PUT_ERRORS_TOTAL, Some(("kind", "timeout")))));
        assert!(both.contains(&(SQS_CALLS_TOTAL, Some(("outcome", "partial")))));
        assert!(both.contains(&(SQS_MESSAGES_TOTAL, None)));
        assert!(!both.iter().any(|(n, _)| *n == SQS_MESSAGES_FAILED_TOTAL));
        // An open label set (AWS error codes) is not guessed.
        assert!(!firehose.iter().any(|(n, _)| *n == FIREHOSE_RETRIES_TOTAL));
        // The outcome list is the one the help text gives.
        let help = find(REQUESTS_TOTAL).expect("requests").help;
        for outcome in OUTCOMES {
            assert!(
                help.contains(outcome),
                "{outcome} missing from the help text"
            );
        }
        assert_eq!(help.matches(", ").count() + 1, OUTCOMES.len(), "{help}");
        assert!(SERVER_ONLY_OUTCOMES.iter().all(|o| OUTCOMES.contains(o)));
    }

    #[test]
    fn buckets_rise_and_span_sub_millisecond_to_ten_seconds() {
        for b in [LATENCY_BUCKETS, RECORDS_BUCKETS, SIZE_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
        assert!(LATENCY_BUCKETS[0] < 0.001 && *LATENCY_BUCKETS.last().unwrap() >= 10.0);
        assert_eq!(*RECORDS_BUCKETS.last().unwrap(), 500.0);
    }

    /// `docs/metrics.md` carries the table generated from [`ALL`]; regenerate it with
    /// `UPDATE_METRICS_DOC=1 cargo test -p stripe-webhook-metrics`.
    #[test]
    fn the_docs_table_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
        let doc = std::fs::read_to_string(&path).expect("docs/metrics.md");
        let (begin, end) = ("<!-- metrics:begin -->\n", "<!-- metrics:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let table = markdown_table();
        if std::env::var_os("UPDATE_METRICS_DOC").is_some() {
            let updated = format!("{}{table}{}", &doc[..start], &doc[stop..]);
            std::fs::write(&path, updated).expect("write docs/metrics.md");
            return;
        }
        assert_eq!(
            &doc[start..stop],
            table,
            "docs/metrics.md is stale: rerun with UPDATE_METRICS_DOC=1"
        );
    }
}
