//! The one entry point every front door calls: raw body + headers + receipt time in, an
//! [`Outcome`] out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt};
use stripe_webhook_sink::{RecordSink, SinkError, SinkErrorKind, SinkHealth};
use stripe_webhook_verify::Verifier;

use crate::metrics as m;
use crate::outcome::{Outcome, OutcomeKind, Refusal};

/// Default body limit: 2 MiB (Stripe events are a few KB; the largest seen are well under 1 MB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The header Stripe signs with.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// One webhook delivery as a transport received it: nothing parsed yet.
#[derive(Clone, Debug)]
pub struct WebhookRequest<'a> {
    /// The raw request body, exactly as received (what is verified and archived). It is stored as
    /// it is: a transport whose buffers are larger than the body (hyper hands out slices of its
    /// read buffer) copies it first, so a queued record never pins a larger buffer.
    pub body: Bytes,
    /// The request headers (only `Stripe-Signature` is read; two or more of it are refused).
    pub headers: &'a HeaderMap,
    /// When the transport received the request.
    pub received_at: ReceivedAt,
}

/// Limits and options of the ingest path.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Bodies larger than this are refused with 413 (transports enforce it while reading).
    pub max_body_bytes: usize,
    /// Envelope options (`raw` + `signature` on or off).
    pub envelope: EnvelopeOptions,
    /// For each of the verifier's secrets, in its order, when it was retired (a keyring entry's
    /// retirement): a signature made at or after that time under it verifies nothing. Missing or
    /// `None`: never retired. List secrets that never retire first and later retirements before
    /// earlier ones, so the first secret that matches is the one to judge.
    pub retirements: Vec<Option<Retirement>>,
}

/// When a secret was retired, and the label operators know it by (logged, never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retirement {
    /// Unix seconds: signatures made from then on under the secret verify nothing.
    pub at: i64,
    /// The keyring entry's label.
    pub label: String,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            envelope: EnvelopeOptions::default(),
            retirements: Vec::new(),
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

    /// The sink's stable name (`file`, `firehose`, `memory`, …).
    pub fn sink_name(&self) -> &'static str {
        self.inner.sink.name()
    }

    /// Whether the sink's acknowledged records survive a restart (all but the memory sink).
    pub fn sink_is_durable(&self) -> bool {
        self.inner.sink.is_durable()
    }

    /// The sink's readiness (from memory: never calls the backend).
    pub fn health(&self) -> SinkHealth {
        self.inner.sink.health()
    }

    /// Stops the sink: it takes no more records, makes everything accepted durable and visible
    /// (the file sink seals its segments, Firehose sends what is queued), and releases resources.
    ///
    /// # Errors
    /// The sink's, if it could not finish (acknowledged records stay durable either way).
    pub async fn shutdown(&self) -> Result<(), SinkError> {
        self.inner.sink.shutdown().await
    }

    /// The outcome for a request a transport refused before the core saw a complete body.
    /// Counted and logged like [`Ingest::handle`].
    pub fn refuse(&self, refusal: Refusal) -> Outcome {
        let kind = match refusal {
            Refusal::BodyTooLarge => OutcomeKind::BodyTooLarge {
                limit: self.max_body_bytes(),
            },
            Refusal::BodyTimeout => OutcomeKind::BodyTimeout,
            Refusal::BodyUnreadable => OutcomeKind::BodyUnreadable,
            Refusal::BadBodyEncoding => OutcomeKind::BadBodyEncoding,
            Refusal::Busy => OutcomeKind::Busy,
        };
        let outcome = Outcome {
            kind,
            event: None,
            latency: Duration::ZERO,
        };
        report(&outcome, 0);
        outcome
    }

    /// The checks that need no body: one `Stripe-Signature` field, its size and grammar, its `v1`
    /// count, and the time window at `received_at`. No HMAC is computed, so a pass never means
    /// authentic. Transports call it before they buffer a body, so unauthenticated senders cannot
    /// make them hold bodies for headers that would be refused anyway; a refusal is counted and
    /// logged like [`Ingest::handle`]'s, and is the answer [`Ingest::handle`] would give.
    ///
    /// # Errors
    /// The [`Outcome`] to answer (400, `bad_signature`).
    pub fn precheck(&self, headers: &HeaderMap, received_at: ReceivedAt) -> Result<(), Outcome> {
        let started = Instant::now();
        self.inner
            .verifier
            .precheck_headers(headers, received_at.unix_seconds())
            .map_err(|e| {
                let outcome = Outcome {
                    kind: OutcomeKind::SignatureRejected(e),
                    event: None,
                    latency: started.elapsed(),
                };
                report(&outcome, 0);
                outcome
            })
    }

    /// Verifies the raw body against the `Stripe-Signature` header, encodes the envelope, stores it,
    /// and says what to answer. `Accepted` only once the sink acknowledged the record as durable.
    ///
    /// The header is pre-checked first ([`Ingest::precheck`]), so a header refused without its
    /// body gets the same answer whether or not the transport pre-checked it.
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

    async fn process(
        &self,
        request: WebhookRequest<'_>,
    ) -> (OutcomeKind, Option<stripe_webhook_envelope::EventMeta>) {
        let inner = &*self.inner;
        if request.body.len() > inner.options.max_body_bytes {
            return (
                OutcomeKind::BodyTooLarge {
                    limit: inner.options.max_body_bytes,
                },
                None,
            );
        }
        let now = request.received_at.unix_seconds();
        let verified = stripe_webhook_verify::stripe_signature(request.headers).and_then(|h| {
            // Every rule but the HMAC, the timestamp's included, before any HMAC work; then the
            // HMAC alone (`verify` would check the timestamp a second time).
            inner.verifier.precheck(h, now)?;
            let verified = inner.verifier.verify_ignoring_timestamp(&request.body, h)?;
            if let Some(Some(retired)) = inner.options.retirements.get(verified.secret_index)
                && verified.timestamp >= retired.at
            {
                // Whoever signed holds a secret that was retired: refused like any forgery, and
                // told to the operator (Stripe itself still signing with it means it was retired
                // too early). Rate-limited like every refusal line.
                if let Some(suppressed) = crate::log_limit::admit_refusal_log("retired_secret") {
                    tracing::warn!(
                        keyring_entry = %retired.label,
                        signed_at = verified.timestamp,
                        retired_at = retired.at,
                        suppressed,
                        "webhook refused: signed with a retired secret (keyring entry {})",
                        retired.label
                    );
                }
                return Err(stripe_webhook_verify::VerifyError::NoMatchingSignature);
            }
            Ok(h.unwrap_or_default())
        });
        let header = match verified {
            Ok(header) => header,
            Err(e) => return (OutcomeKind::SignatureRejected(e), None),
        };
        let record = match stripe_webhook_envelope::encode(
            request.body,
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
    let status = outcome.status().as_u16();
    if let OutcomeKind::SignatureRejected(e) = &outcome.kind {
        metrics::counter!(m::VERIFICATION_FAILURES_TOTAL, "reason" => e.label()).increment(1);
    }
    // Refusals can be sent at will: their lines are rate-limited (storage failures are not).
    let suppressed = match &outcome.kind {
        OutcomeKind::Accepted
        | OutcomeKind::StorageUnavailable(_)
        | OutcomeKind::StorageFailed(_) => 0,
        _ => match crate::log_limit::admit_refusal_log(label) {
            Some(suppressed) => suppressed,
            None => return,
        },
    };
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
        OutcomeKind::SignatureRejected(p) => tracing::warn!(
            outcome = label, status, reason = p.label(), detail = %p, latency_ms,
            body_bytes = body_len, suppressed, "webhook refused: signature verification failed"
        ),
        OutcomeKind::NotAnEvent(e) => tracing::error!(
            outcome = label, status, reason = e.label(), detail = %e, body_bytes = body_len, suppressed,
            "webhook refused: signature verified but the body is not a Stripe event (misconfigured sender?)"
        ),
        OutcomeKind::BodyTooLarge { limit } => tracing::warn!(
            outcome = label,
            status,
            reason = label,
            suppressed,
            limit_bytes = *limit,
            "webhook refused: body too large"
        ),
        kind @ (OutcomeKind::BodyTimeout
        | OutcomeKind::BodyUnreadable
        | OutcomeKind::Busy
        | OutcomeKind::BadBodyEncoding) => {
            let message = match kind {
                OutcomeKind::BodyTimeout => "webhook refused: request body not received in time",
                OutcomeKind::BodyUnreadable => "webhook refused: request body could not be read",
                OutcomeKind::Busy => {
                    "webhook refused before its body was read: the budget for buffered bodies is spent (answered 503)"
                }
                _ => "webhook refused: the body is marked base64-encoded but is not valid base64",
            };
            tracing::warn!(
                outcome = label,
                status,
                reason = label,
                suppressed,
                "{message}"
            );
        }
        OutcomeKind::StorageUnavailable(e) => tracing::warn!(
            event_id, event_type, outcome = label, status, reason = e.kind().label(), error = %e,
            latency_ms, "webhook not archived: storage unavailable, answered 503 so Stripe retries"
        ),
        OutcomeKind::StorageFailed(e) => tracing::error!(
            event_id, event_type, outcome = label, status, reason = e.kind().label(), error = %e,
            latency_ms, "webhook not archived: storage failed permanently"
        ),
    }
}

#[cfg(test)]
mod tests {
    use stripe_webhook_sink::MemorySink;
    use stripe_webhook_verify::{Secret, signature_header};

    use super::*;

    /// A retired secret verifies nothing signed from its retirement on, whichever of the
    /// signatures of a rotation's overlap it carries; the secret in use still does.
    #[test]
    fn a_retired_secret_verifies_nothing_signed_after_its_retirement() {
        let old = Secret::new("whsec_retired").expect("secret");
        let new = Secret::new("whsec_in_use").expect("secret");
        let sink = Arc::new(MemorySink::new(100));
        let now = ReceivedAt::now();
        let t = now.unix_seconds();
        let ingest = Ingest::new(
            Verifier::new(vec![new.clone(), old.clone()]).expect("verifier"),
            sink.clone(),
            IngestOptions {
                retirements: vec![
                    None,
                    Some(Retirement {
                        at: t - 1,
                        label: "live-old".to_owned(),
                    }),
                ],
                ..IngestOptions::default()
            },
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let status = |secrets: &[&Secret], id: &str| {
            let body = Bytes::from(format!(
                r#"{{"id":"{id}","object":"event","type":"charge.succeeded","data":{{"object":{{}}}}}}"#
            ));
            let mut headers = HeaderMap::new();
            let header = signature_header(secrets, t, &body);
            headers.insert("stripe-signature", header.parse().expect("header"));
            let outcome = runtime.block_on(ingest.handle(WebhookRequest {
                body,
                headers: &headers,
                received_at: now,
            }));
            (outcome.status().as_u16(), outcome.label())
        };
        assert_eq!(status(&[&old], "evt_old"), (400, "bad_signature"));
        assert_eq!(status(&[&new], "evt_new"), (200, "accepted"));
        assert_eq!(status(&[&old, &new], "evt_both"), (200, "accepted"));
        assert_eq!(sink.len(), 2);

        // Retired in the future: still in use until then.
        let later = Ingest::new(
            Verifier::new(vec![old.clone()]).expect("verifier"),
            sink.clone(),
            IngestOptions {
                retirements: vec![Some(Retirement {
                    at: t + 3600,
                    label: "live-old".to_owned(),
                })],
                ..IngestOptions::default()
            },
        );
        let body = Bytes::from_static(
            br#"{"id":"evt_later","object":"event","type":"charge.succeeded","data":{"object":{}}}"#,
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "stripe-signature",
            signature_header(&[&old], t, &body).parse().expect("header"),
        );
        let outcome = runtime.block_on(later.handle(WebhookRequest {
            body,
            headers: &headers,
            received_at: now,
        }));
        assert_eq!(outcome.status(), 200);
    }
}
