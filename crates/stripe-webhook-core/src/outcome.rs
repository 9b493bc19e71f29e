//! What became of one webhook, and the HTTP answer it gets: status, headers, body, metric label.
//!
//! Every answer to `POST /webhook/stripe` is an [`Outcome`], whether the core decided it (signature,
//! envelope, sink) or a transport refused the request before the core saw a body ([`Refusal`]).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use stripe_webhook_envelope::{EnvelopeError, EventMeta};
use stripe_webhook_sink::SinkError;
use stripe_webhook_verify::VerifyError;

/// How long a sender should wait before retrying a 503 (`Retry-After`, seconds). Stripe applies its
/// own schedule; other senders and load balancers honour the header.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A request a transport refused before the core saw a complete body. Each is counted and logged
/// like every other outcome ([`crate::Ingest::refuse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is larger than [`crate::Ingest::max_body_bytes`] (declared or counted while
    /// reading): 413.
    BodyTooLarge,
    /// The body did not arrive within the transport's read timeout: 408.
    BodyTimeout,
    /// The body could not be read (connection error, malformed chunked framing): 400.
    BodyUnreadable,
    /// The body is marked base64-encoded (Lambda) but is not valid base64: 400.
    BadBodyEncoding,
    /// The transport's budget for buffering unauthenticated request bodies is spent: 503 with
    /// `Retry-After`, before any of the body is read.
    Busy,
}

/// Why a webhook was refused or failed. Decides the HTTP status.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// Verified, encoded, and acknowledged durable by the sink: 200.
    Accepted,
    /// The `Stripe-Signature` header is missing, malformed, duplicated, stale, or matches no
    /// secret: 400.
    SignatureRejected(VerifyError),
    /// The body verified but is not a Stripe event (not a JSON object with string `id` and `type`): 400.
    NotAnEvent(EnvelopeError),
    /// The body is larger than the configured limit: 413.
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The body did not arrive in time: 408.
    BodyTimeout,
    /// The body could not be read: 400.
    BodyUnreadable,
    /// A body marked base64 is not valid base64: 400.
    BadBodyEncoding,
    /// The transport cannot buffer another body now: 503 with `Retry-After`.
    Busy,
    /// The sink could not make the record durable now (overloaded, timed out, unavailable, shutting
    /// down): 503 with `Retry-After`, so Stripe retries.
    StorageUnavailable(SinkError),
    /// The sink failed for good (a permanent error): 500. Stripe still retries 5xx answers.
    StorageFailed(SinkError),
}

/// The result of one webhook: what happened, for which event, and how long it took.
#[derive(Debug)]
pub struct Outcome {
    /// What happened.
    pub kind: OutcomeKind,
    /// The event's id and type, once known (after verification and encoding).
    pub event: Option<EventMeta>,
    /// Time spent in the core, from the call to the answer.
    pub latency: Duration,
}

impl Outcome {
    /// The HTTP status this outcome answers.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            OutcomeKind::Accepted => StatusCode::OK,
            OutcomeKind::SignatureRejected(_)
            | OutcomeKind::NotAnEvent(_)
            | OutcomeKind::BodyUnreadable
            | OutcomeKind::BadBodyEncoding => StatusCode::BAD_REQUEST,
            OutcomeKind::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OutcomeKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            OutcomeKind::Busy | OutcomeKind::StorageUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            OutcomeKind::StorageFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable label for metrics and logs: `accepted`, `bad_signature`, `not_an_event`,
    /// `body_too_large`, `body_timeout`, `body_unreadable`, `bad_body_encoding`, `busy`,
    /// `storage_unavailable`, `storage_failed`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            OutcomeKind::Accepted => "accepted",
            OutcomeKind::SignatureRejected(_) => "bad_signature",
            OutcomeKind::NotAnEvent(_) => "not_an_event",
            OutcomeKind::BodyTooLarge { .. } => "body_too_large",
            OutcomeKind::BodyTimeout => "body_timeout",
            OutcomeKind::BodyUnreadable => "body_unreadable",
            OutcomeKind::BadBodyEncoding => "bad_body_encoding",
            OutcomeKind::Busy => "busy",
            OutcomeKind::StorageUnavailable(_) => "storage_unavailable",
            OutcomeKind::StorageFailed(_) => "storage_failed",
        }
    }

    /// The `Retry-After` seconds this answer carries: [`RETRY_AFTER_SECS`] for a 503, else none.
    pub fn retry_after(&self) -> Option<u32> {
        (self.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS)
    }

    /// The short JSON response body for the sender. Never echoes the body, a secret, an expected
    /// signature or a backend's error text; carries a stable reason label the sender's dashboard
    /// shows.
    pub fn response_body(&self) -> String {
        let refused =
            |error: &str, reason: &str| format!(r#"{{"error":"{error}","reason":"{reason}"}}"#);
        match &self.kind {
            OutcomeKind::Accepted => r#"{"received":true}"#.to_owned(),
            OutcomeKind::SignatureRejected(p) => {
                refused("signature verification failed", p.label())
            }
            OutcomeKind::NotAnEvent(e) => refused("verified body is not a Stripe event", e.label()),
            OutcomeKind::BodyTooLarge { limit } => format!(
                r#"{{"error":"body too large","reason":"body_too_large","limit_bytes":{limit}}}"#
            ),
            OutcomeKind::BodyTimeout => refused("request body not received in time", self.label()),
            OutcomeKind::BodyUnreadable => refused("request body could not be read", self.label()),
            OutcomeKind::BadBodyEncoding => {
                refused("request body is not valid base64", self.label())
            }
            OutcomeKind::Busy => refused("server busy, retry later", self.label()),
            OutcomeKind::StorageUnavailable(e) => {
                refused("storage unavailable, retry later", e.kind().label())
            }
            OutcomeKind::StorageFailed(_) => refused("storage failed", self.label()),
        }
    }

    /// The whole HTTP answer: [`Outcome::status`], `content-type: application/json`,
    /// `retry-after` when [`Outcome::retry_after`] says so, and [`Outcome::response_body`].
    pub fn response(&self) -> Response<Bytes> {
        let mut response = json_response(self.status(), self.response_body());
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    /// Whether the sender should retry (any 5xx).
    pub fn is_retryable(&self) -> bool {
        self.status().is_server_error()
    }
}

/// A response with `content-type: application/json` and `body`.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_webhook_sink::SinkErrorKind;

    fn outcome(kind: OutcomeKind) -> Outcome {
        Outcome {
            kind,
            event: None,
            latency: Duration::ZERO,
        }
    }

    fn not_an_event() -> EnvelopeError {
        stripe_webhook_envelope::encode(
            Bytes::from_static(b"[]"),
            "t=1,v1=00",
            stripe_webhook_envelope::ReceivedAt::from_unix_millis(0),
            &stripe_webhook_envelope::EnvelopeOptions::default(),
        )
        .unwrap_err()
    }

    /// Every outcome: status, headers, body and metric label, in one table.
    #[test]
    fn every_outcome_maps_to_one_answer() {
        let unavailable = || SinkError::new(SinkErrorKind::Overloaded, "queue full: /secret/path");
        let permanent = || {
            SinkError::new(
                SinkErrorKind::Permanent,
                "AccessDenied: arn:aws:iam::123456789012:role/x",
            )
        };
        let table: Vec<(OutcomeKind, u16, Option<&str>, &str, &str)> = vec![
            (
                OutcomeKind::Accepted,
                200,
                None,
                r#"{"received":true}"#,
                "accepted",
            ),
            (
                OutcomeKind::SignatureRejected(VerifyError::NoMatchingSignature),
                400,
                None,
                r#"{"error":"signature verification failed","reason":"no_matching_signature"}"#,
                "bad_signature",
            ),
            (
                OutcomeKind::SignatureRejected(VerifyError::MissingHeader),
                400,
                None,
                r#"{"error":"signature verification failed","reason":"missing_header"}"#,
                "bad_signature",
            ),
            (
                OutcomeKind::SignatureRejected(VerifyError::Malformed(
                    stripe_webhook_verify::MalformedHeader::NotUtf8,
                )),
                400,
                None,
                r#"{"error":"signature verification failed","reason":"malformed_header"}"#,
                "bad_signature",
            ),
            (
                OutcomeKind::SignatureRejected(VerifyError::DuplicateHeader { count: 2 }),
                400,
                None,
                r#"{"error":"signature verification failed","reason":"duplicate_header"}"#,
                "bad_signature",
            ),
            (
                OutcomeKind::NotAnEvent(not_an_event()),
                400,
                None,
                r#"{"error":"verified body is not a Stripe event","reason":"not_an_object"}"#,
                "not_an_event",
            ),
            (
                OutcomeKind::BodyTooLarge { limit: 2048 },
                413,
                None,
                r#"{"error":"body too large","reason":"body_too_large","limit_bytes":2048}"#,
                "body_too_large",
            ),
            (
                OutcomeKind::BodyTimeout,
                408,
                None,
                r#"{"error":"request body not received in time","reason":"body_timeout"}"#,
                "body_timeout",
            ),
            (
                OutcomeKind::BodyUnreadable,
                400,
                None,
                r#"{"error":"request body could not be read","reason":"body_unreadable"}"#,
                "body_unreadable",
            ),
            (
                OutcomeKind::BadBodyEncoding,
                400,
                None,
                r#"{"error":"request body is not valid base64","reason":"bad_body_encoding"}"#,
                "bad_body_encoding",
            ),
            (
                OutcomeKind::Busy,
                503,
                Some("1"),
                r#"{"error":"server busy, retry later","reason":"busy"}"#,
                "busy",
            ),
            (
                OutcomeKind::StorageUnavailable(unavailable()),
                503,
                Some("1"),
                r#"{"error":"storage unavailable, retry later","reason":"overloaded"}"#,
                "storage_unavailable",
            ),
            (
                OutcomeKind::StorageFailed(permanent()),
                500,
                None,
                r#"{"error":"storage failed","reason":"storage_failed"}"#,
                "storage_failed",
            ),
        ];
        for (kind, status, retry_after, body, label) in table {
            assert!(
                stripe_webhook_metrics::OUTCOMES.contains(&label),
                "{label}: not in the metrics catalogue's outcomes (exported at 0 from start)"
            );
            let outcome = outcome(kind);
            let response = outcome.response();
            assert_eq!(response.status().as_u16(), status, "{outcome:?}");
            assert_eq!(outcome.label(), label);
            assert_eq!(response.headers()["content-type"], "application/json");
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap()),
                retry_after,
                "{outcome:?}"
            );
            assert_eq!(
                response.headers().len(),
                1 + usize::from(retry_after.is_some())
            );
            assert_eq!(response.body(), body.as_bytes(), "{outcome:?}");
            assert_eq!(outcome.is_retryable(), status >= 500);
        }
    }

    /// The reasons exported at 0 from start are exactly the verifier's labels.
    #[test]
    fn the_catalogue_lists_every_verification_reason() {
        use stripe_webhook_verify::MalformedHeader;
        let mut labels: Vec<&str> = [
            VerifyError::MissingHeader,
            VerifyError::DuplicateHeader { count: 2 },
            VerifyError::HeaderTooLarge {
                len: 9000,
                max: 8192,
            },
            VerifyError::Malformed(MalformedHeader::NotUtf8),
            VerifyError::NoV1Signature,
            VerifyError::TooManySignatures { count: 17, max: 16 },
            VerifyError::NoMatchingSignature,
            VerifyError::Stale {
                age_secs: 1,
                tolerance_secs: 0,
            },
            VerifyError::Future {
                ahead_secs: 1,
                max_skew_secs: 0,
            },
        ]
        .iter()
        .map(VerifyError::label)
        .collect();
        let mut catalogue = stripe_webhook_metrics::VERIFICATION_REASONS.to_vec();
        labels.sort_unstable();
        catalogue.sort_unstable();
        assert_eq!(labels, catalogue);
    }
}
