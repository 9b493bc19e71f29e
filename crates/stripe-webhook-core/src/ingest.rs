//! The one entry point both binaries call: raw body + `Stripe-Signature` + receipt time in, an
//! [`Outcome`] out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stripe_webhook_envelope::{EnvelopeError, EnvelopeOptions, EventMeta, ReceivedAt};
use stripe_webhook_sink::{RecordSink, SinkError, SinkErrorKind};
use stripe_webhook_verify::{Verifier, VerifyError};

use crate::metrics as m;

/// One webhook delivery as a transport received it: nothing parsed yet.
#[derive(Clone, Debug)]
pub struct WebhookRequest<'a> {
    /// The raw request body, exactly as received (what is verified and archived).
    pub body: Bytes,
    /// The raw `Stripe-Signature` header value, if present (bytes: a header need not be UTF-8).
    pub signature: Option<&'a [u8]>,
    /// When the transport received the request.
    pub received_at: ReceivedAt,
}

/// Why a webhook was refused or failed. Decides the HTTP status.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// Verified, encoded, and acknowledged durable by the sink: 200.
    Accepted,
    /// The `Stripe-Signature` header is missing, malformed, stale, or matches no secret: 400.
    SignatureRejected(SignatureProblem),
    /// The body verified but is not a Stripe event (not a JSON object with string `id` and `type`): 400.
    NotAnEvent(EnvelopeError),
    /// The body is larger than the configured limit: 413.
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The sink could not make the record durable now (overloaded, timed out, unavailable, shutting
    /// down): 503, so Stripe retries.
    StorageUnavailable(SinkError),
    /// The sink failed for good (a permanent error): 500. Stripe still retries 5xx answers.
    StorageFailed(SinkError),
}

/// A signature problem: the verifier's error, or a header that is not even text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureProblem {
    /// The verifier refused the header or the signature.
    Verify(VerifyError),
    /// The header bytes are not valid UTF-8.
    HeaderNotUtf8,
}

impl SignatureProblem {
    /// A stable snake_case label for metrics and the response body.
    pub fn label(&self) -> &'static str {
        match self {
            SignatureProblem::Verify(e) => e.label(),
            SignatureProblem::HeaderNotUtf8 => "malformed_header",
        }
    }
}

impl std::fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureProblem::Verify(e) => write!(f, "{e}"),
            SignatureProblem::HeaderNotUtf8 => {
                f.write_str("Stripe-Signature header is not valid UTF-8")
            }
        }
    }
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
    /// The HTTP status code this outcome maps to.
    pub fn status(&self) -> u16 {
        match self.kind {
            OutcomeKind::Accepted => 200,
            OutcomeKind::SignatureRejected(_) | OutcomeKind::NotAnEvent(_) => 400,
            OutcomeKind::BodyTooLarge { .. } => 413,
            OutcomeKind::StorageUnavailable(_) => 503,
            OutcomeKind::StorageFailed(_) => 500,
        }
    }

    /// A stable label for metrics and logs: `accepted`, `bad_signature`, `not_an_event`,
    /// `body_too_large`, `storage_unavailable`, `storage_failed`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            OutcomeKind::Accepted => "accepted",
            OutcomeKind::SignatureRejected(_) => "bad_signature",
            OutcomeKind::NotAnEvent(_) => "not_an_event",
            OutcomeKind::BodyTooLarge { .. } => "body_too_large",
            OutcomeKind::StorageUnavailable(_) => "storage_unavailable",
            OutcomeKind::StorageFailed(_) => "storage_failed",
        }
    }

    /// The short JSON response body for the sender. Never echoes the body, a secret or an expected
    /// signature; carries a stable reason label the sender's dashboard shows.
    pub fn response_body(&self) -> String {
        match &self.kind {
            OutcomeKind::Accepted => r#"{"received":true}"#.to_owned(),
            OutcomeKind::SignatureRejected(p) => format!(
                r#"{{"error":"signature verification failed","reason":"{}"}}"#,
                p.label()
            ),
            OutcomeKind::NotAnEvent(e) => format!(
                r#"{{"error":"verified body is not a Stripe event","reason":"{}"}}"#,
                e.label()
            ),
            OutcomeKind::BodyTooLarge { limit } => {
                format!(r#"{{"error":"body too large","limit_bytes":{limit}}}"#)
            }
            OutcomeKind::StorageUnavailable(e) => format!(
                r#"{{"error":"storage unavailable, retry later","reason":"{}"}}"#,
                e.kind()
            ),
            OutcomeKind::StorageFailed(_) => r#"{"error":"storage failed"}"#.to_owned(),
        }
    }

    /// Whether the sender should retry (any 5xx).
    pub fn is_retryable(&self) -> bool {
        self.status() >= 500
    }
}

/// Limits and options of the ingest path.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Bodies larger than this are refused with 413 (transports enforce it while reading).
    pub max_body_bytes: usize,
    /// Envelope options (`raw` + `signature` on or off).
    pub envelope: EnvelopeOptions,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            envelope: EnvelopeOptions::default(),
        }
    }
}

/// The ingest core: a verifier, a sink and the options, shared by every request.
///
/// Cheap to clone (all `Arc`s inside).
#[derive(Clone, Debug)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Verifier,
    sink: Arc<dyn RecordSink>,
    options: IngestOptions,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("verifier", &self.verifier)
            .field("sink", &self.sink.name())
            .field("options", &self.options)
            .finish()
    }
}

impl Ingest {
    /// Builds the core from a verifier, a sink and the options.
    pub fn new(verifier: Verifier, sink: Arc<dyn RecordSink>, options: IngestOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                verifier,
                sink,
                options,
            }),
        }
    }

    /// The body limit transports must enforce while reading.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.options.max_body_bytes
    }

    /// The sink, for health reporting and shutdown.
    pub fn sink(&self) -> &Arc<dyn RecordSink> {
        &self.inner.sink
    }

    /// The outcome for a body the transport stopped reading because it exceeded
    /// [`Ingest::max_body_bytes`]. Records metrics and logs like [`Ingest::handle`].
    pub fn body_too_large(&self) -> Outcome {
        let outcome = Outcome {
            kind: OutcomeKind::BodyTooLarge {
                limit: self.max_body_bytes(),
            },
            event: None,
            latency: Duration::ZERO,
        };
        report(&outcome, 0);
        outcome
    }

    /// Verifies the raw body against the `Stripe-Signature` header, encodes the envelope, stores it,
    /// and says what to answer. `Accepted` only once the sink acknowledged the record as durable.
    pub async fn handle(&self, request: WebhookRequest<'_>) -> Outcome {
        let started = Instant::now();
        let body_len = request.body.len();
        let (kind, event) = self.process(request).await;
        let outcome = Outcome {
            kind,
            event,
            latency: started.elapsed(),
        };
        report(&outcome, body_len);
        outcome
    }

    async fn process(&self, request: WebhookRequest<'_>) -> (OutcomeKind, Option<EventMeta>) {
        let inner = &*self.inner;
        if request.body.len() > inner.options.max_body_bytes {
            return (
                OutcomeKind::BodyTooLarge {
                    limit: inner.options.max_body_bytes,
                },
                None,
            );
        }
        let header = match request.signature.map(std::str::from_utf8) {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => {
                return (
                    OutcomeKind::SignatureRejected(SignatureProblem::HeaderNotUtf8),
                    None,
                );
            }
        };
        if let Err(e) =
            inner
                .verifier
                .verify_at(&request.body, header, request.received_at.unix_seconds())
        {
            return (
                OutcomeKind::SignatureRejected(SignatureProblem::Verify(e)),
                None,
            );
        }
        // Verified: a header was present.
        let header = header.unwrap_or_default();
        // Own the body: the transport's buffer may be far larger than this body (hyper hands out
        // slices of its read buffer), and a record can live on in a queue or a memory sink.
        let body = Bytes::copy_from_slice(&request.body);
        let record = match stripe_webhook_envelope::encode(
            body,
            header,
            request.received_at,
            &inner.options.envelope,
        ) {
            Ok(record) => record,
            Err(e) => return (OutcomeKind::NotAnEvent(e), None),
        };
        let meta = record.meta().clone();
        let bytes = record.len();
        let sink_started = Instant::now();
        let result = inner.sink.put(record).await;
        metrics::histogram!(m::SINK_PUT_SECONDS, "sink" => inner.sink.name(), "result" => if result.is_ok() { "ok" } else { "error" })
            .record(sink_started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                metrics::counter!(m::ARCHIVED_BYTES_TOTAL).increment(bytes as u64);
                metrics::counter!(m::ARCHIVED_RECORDS_TOTAL).increment(1);
                (OutcomeKind::Accepted, Some(meta))
            }
            Err(e) if e.kind() == SinkErrorKind::Permanent => {
                (OutcomeKind::StorageFailed(e), Some(meta))
            }
            Err(e) => (OutcomeKind::StorageUnavailable(e), Some(meta)),
        }
    }
}

/// One metrics update and one log line per webhook.
fn report(outcome: &Outcome, body_len: usize) {
    let label = outcome.label();
    metrics::counter!(m::REQUESTS_TOTAL, "outcome" => label).increment(1);
    metrics::histogram!(m::REQUEST_SECONDS, "outcome" => label)
        .record(outcome.latency.as_secs_f64());
    let (event_id, event_type) = match &outcome.event {
        Some(meta) => (meta.id.as_str(), meta.event_type.as_str()),
        None => ("", ""),
    };
    let latency_ms = outcome.latency.as_secs_f64() * 1000.0;
    let status = outcome.status();
    match &outcome.kind {
        OutcomeKind::Accepted => tracing::info!(
            event_id,
            event_type,
            outcome = label,
            status,
            latency_ms,
            body_bytes = body_len,
            "webhook archived"
        ),
        OutcomeKind::SignatureRejected(p) => {
            metrics::counter!(m::VERIFICATION_FAILURES_TOTAL, "reason" => p.label()).increment(1);
            tracing::warn!(
                outcome = label, status, reason = p.label(), detail = %p, latency_ms,
                body_bytes = body_len, "webhook refused: signature verification failed"
            );
        }
        OutcomeKind::NotAnEvent(e) => tracing::error!(
            outcome = label, status, reason = e.label(), detail = %e, body_bytes = body_len,
            "webhook refused: signature verified but the body is not a Stripe event (misconfigured sender?)"
        ),
        OutcomeKind::BodyTooLarge { limit } => tracing::warn!(
            outcome = label,
            status,
            limit_bytes = *limit,
            "webhook refused: body too large"
        ),
        OutcomeKind::StorageUnavailable(e) => tracing::warn!(
            event_id, event_type, outcome = label, status, error = %e, latency_ms,
            "webhook not archived: storage unavailable, answered 503 so Stripe retries"
        ),
        OutcomeKind::StorageFailed(e) => tracing::error!(
            event_id, event_type, outcome = label, status, error = %e, latency_ms,
            "webhook not archived: storage failed permanently"
        ),
    }
}
