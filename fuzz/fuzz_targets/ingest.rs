//! Fuzz the transport-agnostic ingest entry point, `Ingest::handle`, with arbitrary body bytes and
//! arbitrary `Stripe-Signature` bytes, over a `MemorySink`.
//!
//! Input layout: byte 0 picks the mode, byte 1 is a parameter, the rest is split by the mode.
//! - mode 0, 1 (half the inputs): the body is the rest, correctly signed here with
//!   `signature_header` at `NOW - param * 5` s (so a few are stale): reaches the encoder and the
//!   sink with arbitrary bodies;
//! - mode 2: the first `param` bytes of the rest are the raw header (any bytes, not even UTF-8),
//!   the remainder is the body;
//! - mode 3: no header at all, the body is the rest.
//!
//! Oracles, for every input:
//! - nothing panics; the status is one of 200/400/413/503/500, and it is exactly the one an
//!   independent computation predicts (413 over the limit, else 400 unless the verifier accepts the
//!   header, else 400 unless the envelope encoder accepts the body, else 200: the sink never fails);
//! - a 200 adds exactly one record to the sink: one line ending in `\n` (no other `\n`/`\r`), JSON,
//!   whose `raw` decodes to exactly the input body and `signature` to exactly the header, with the
//!   event id and type the outcome reports;
//! - a non-200 adds no record;
//! - the response body is JSON and never contains the secret (nor its value without the prefix).
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::value::RawValue;
use http::{HeaderMap, HeaderValue};
use stripe_webhook_core::{Ingest, IngestOptions, SIGNATURE_HEADER, WebhookRequest};
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_sink::MemorySink;
use stripe_webhook_verify::{Secret, Verifier, signature_header};

const SECRET: &str = "whsec_fuzz_ingest_k3y";
const NOW: i64 = 1_762_935_172;
/// Small, so libFuzzer's inputs (4 KiB by default) cross it.
const MAX_BODY_BYTES: usize = 2048;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    secret: Secret,
    verifier: Verifier,
    sink: Arc<MemorySink>,
    ingest: Ingest,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let secret = Secret::new(SECRET).expect("valid secret");
        let verifier = Verifier::new(vec![secret.clone()]).expect("one secret");
        let sink = Arc::new(MemorySink::new(16));
        let options = IngestOptions {
            max_body_bytes: MAX_BODY_BYTES,
            ..IngestOptions::default()
        };
        let ingest = Ingest::new(verifier.clone(), sink.clone(), options);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("current-thread runtime");
        Fixture {
            runtime,
            secret,
            verifier,
            sink,
            ingest,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (mode, param, rest) = match data {
        [mode, param, rest @ ..] => (mode % 4, *param, rest),
        _ => return,
    };
    let (header, body): (Option<Vec<u8>>, &[u8]) = match mode {
        0 | 1 => {
            let t = NOW - i64::from(param) * 5;
            (
                Some(signature_header(&[&f.secret], t, rest).into_bytes()),
                rest,
            )
        }
        2 => {
            let split = usize::from(param).min(rest.len());
            (Some(rest[..split].to_vec()), &rest[split..])
        }
        _ => (None, rest),
    };

    // The independent prediction.
    let header_str = header.as_deref().map(std::str::from_utf8);
    let verified = match header_str {
        Some(Err(_)) => false,
        Some(Ok(h)) => f.verifier.verify(body, Some(h), NOW).is_ok(),
        None => f.verifier.verify(body, None, NOW).is_ok(),
    };
    let received_at = ReceivedAt::from_unix_millis(NOW * 1000 + 345);
    let encodes = || {
        let h = header_str.and_then(Result::ok).unwrap_or_default();
        encode(
            Bytes::copy_from_slice(body),
            h,
            received_at,
            &EnvelopeOptions::default(),
        )
        .is_ok()
    };
    let expected = if body.len() > MAX_BODY_BYTES {
        413
    } else if !verified || !encodes() {
        400
    } else {
        200
    };

    assert!(f.sink.is_empty(), "the previous input left records behind");
    // Transports only deliver header values HTTP allows (no NUL, CR, LF, other controls).
    let mut headers = HeaderMap::new();
    if let Some(h) = header.as_deref() {
        let Ok(value) = HeaderValue::from_bytes(h) else {
            return;
        };
        headers.insert(SIGNATURE_HEADER, value);
    }
    let outcome = f.runtime.block_on(f.ingest.handle(WebhookRequest {
        body: Bytes::copy_from_slice(body),
        headers: &headers,
        received_at,
    }));
    let status = outcome.status().as_u16();
    assert!(
        [200, 400, 413, 503, 500].contains(&status),
        "status {status}"
    );
    assert_eq!(status, expected, "outcome {}", outcome.label());

    let response = outcome.response_body();
    assert_eq!(outcome.response().body(), response.as_bytes());
    serde_json::from_str::<Box<RawValue>>(&response).expect("the response body is JSON");
    assert!(!response.contains(SECRET) && !response.contains(&SECRET["whsec_".len()..]));

    let records = f.sink.take();
    if status != 200 {
        assert!(
            records.is_empty(),
            "a {status} stored {} records",
            records.len()
        );
        return;
    }
    assert!(verified);
    let [record] = records.as_slice() else {
        panic!("a 200 stored {} records, not one", records.len());
    };
    let line = record.line();
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(
        !line[..line.len() - 1]
            .iter()
            .any(|&b| b == b'\n' || b == b'\r')
    );
    let fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(line).expect("the record is JSON");
    let string = |k: &str| serde_json::from_str::<String>(fields[k].get()).expect("a string");
    assert_eq!(string("raw").as_bytes(), body);
    assert_eq!(Some(string("signature").as_bytes()), header.as_deref());
    let meta = outcome.event.as_ref().expect("a 200 names its event");
    assert_eq!(string("id"), meta.id);
    assert_eq!(string("type"), meta.event_type);
    assert_eq!(record.meta(), meta);
});
