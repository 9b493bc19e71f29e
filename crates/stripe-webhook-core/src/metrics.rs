//! Metric names the core records through the `metrics` facade. The server exports them at
//! `GET /metrics` in Prometheus text format; any other `metrics` recorder works too.

/// Counter: webhooks by `outcome` (`accepted`, `bad_signature`, `not_an_event`, `body_too_large`,
/// `storage_unavailable`, `storage_failed`).
pub const REQUESTS_TOTAL: &str = "stripe_webhook_requests_total";
/// Histogram: seconds spent in the core per webhook, by `outcome`.
pub const REQUEST_SECONDS: &str = "stripe_webhook_request_seconds";
/// Counter: signature verification failures by `reason`.
pub const VERIFICATION_FAILURES_TOTAL: &str = "stripe_webhook_verification_failures_total";
/// Histogram: seconds a sink `put` took, by `sink` and `result`.
pub const SINK_PUT_SECONDS: &str = "stripe_webhook_sink_put_seconds";
/// Counter: envelope bytes acknowledged durable by the sink.
pub const ARCHIVED_BYTES_TOTAL: &str = "stripe_webhook_archived_bytes_total";
/// Counter: records acknowledged durable by the sink.
pub const ARCHIVED_RECORDS_TOTAL: &str = "stripe_webhook_archived_records_total";

/// Registers descriptions (units and help text) for the core's metrics with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(REQUESTS_TOTAL, "Webhooks received, by outcome.");
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Time from body received to answer, by outcome."
    );
    describe_counter!(
        VERIFICATION_FAILURES_TOTAL,
        "Stripe-Signature verification failures, by reason."
    );
    describe_histogram!(
        SINK_PUT_SECONDS,
        Unit::Seconds,
        "Time for the sink to acknowledge a record durable."
    );
    describe_counter!(
        ARCHIVED_BYTES_TOTAL,
        Unit::Bytes,
        "Envelope bytes acknowledged durable."
    );
    describe_counter!(ARCHIVED_RECORDS_TOTAL, "Records acknowledged durable.");
}
