//! Whether an archived record is what Stripe sent, as `verify` reports it and `replay` requires
//! before re-signing a body: its exact body verifies against its stored `Stripe-Signature` with
//! the archive's secret(s), whatever its age (`verify_ignoring_timestamp`); and the stored line is
//! exactly what encoding that body again gives (so `id`, `type`, `data`, … are the signed body's,
//! not someone's edit). An
//! oversize body is fetched from where its pointer says and must have the pointer's size and
//! SHA-256; where it is stored does not matter once it verifies.
//!
//! A fetched record (envelope v2: an event `reconcile --archive-missing` fetched from Stripe's
//! API) has no signature, so it can never be proven: [`prove_fetched`] only checks that its
//! line is exactly what encoding its body with its provenance gives.

use bytes::Bytes;
use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};
use stripe_webhook_envelope::{EnvelopeOptions, Record, encode, encode_fetched};
use stripe_webhook_verify::Verifier;

use crate::archive::Archive;

/// How [`prove`]'s message starts when the signature is what failed.
pub(crate) const SIGNATURE_FAILURE: &str = "signature: ";

/// The record's exact body: `raw` decoded, or the oversize body fetched from S3 and checked
/// against its pointer; `None` when the record was written with raw off, or is a legacy (Node
/// service) line, which never kept it.
///
/// # Errors
/// An oversize body that cannot be fetched or is not the one its pointer names.
pub(crate) fn body_of(
    archive: &Archive,
    record: &ArchivedRecord<'_>,
) -> Result<Option<Bytes>, String> {
    match &record.body {
        StoredBody::Inline { raw, .. } | StoredBody::Fetched { raw, .. } => {
            Ok(Some(Bytes::from(raw.decode().into_owned())))
        }
        StoredBody::Oversize { pointer, .. } => archive
            .fetch_oversize(pointer)
            .map(|b| Some(Bytes::from(b))),
        StoredBody::NotStored | StoredBody::Legacy => Ok(None),
    }
}

/// Proves `record` (read from `line`, without its `\n`) with its `body` and stored `signature`:
/// returns the index of the secret that verified it.
///
/// With `signature_only`, the envelope fields are not compared with the body.
///
/// # Errors
/// Why the record is not proven: the signature does not verify, the verified body is not an
/// event, or the envelope differs from what the body says (first differing byte).
pub(crate) fn prove(
    verifier: &Verifier,
    line: &[u8],
    record: &ArchivedRecord<'_>,
    body: &Bytes,
    signature: &str,
    signature_only: bool,
) -> Result<usize, String> {
    // Archived signatures are as old as the archive: every rule but the time.
    let verified = verifier
        .verify_ignoring_timestamp(body, Some(signature))
        .map_err(|e| format!("{SIGNATURE_FAILURE}{e}"))?;
    if !signature_only {
        let encoded = encode(
            body.clone(),
            signature,
            record.received_at,
            &EnvelopeOptions::default(),
        )
        .map_err(|e| format!("the verified body is not an archivable event: {e}"))?;
        let expected = match &record.body {
            StoredBody::Oversize { pointer, .. } => {
                encoded.oversize_pointer(&pointer.bucket, &pointer.key)
            }
            _ => encoded,
        };
        same_line(&expected, line, "verified")?;
    }
    Ok(verified.secret_index)
}

/// Checks that a fetched record's line (without its `\n`) is exactly what encoding its `body`
/// with its provenance and `timestamp` gives: its envelope says what its body says. This is not
/// a proof that Stripe sent the body (nothing signed it).
///
/// # Errors
/// The record is not a fetched record, its body is not an event, or the line differs (first
/// differing byte).
pub(crate) fn prove_fetched(
    line: &[u8],
    record: &ArchivedRecord<'_>,
    body: &Bytes,
) -> Result<(), String> {
    let StoredBody::Fetched { fetched, .. } = &record.body else {
        return Err("not a fetched record".to_owned());
    };
    let encoded = encode_fetched(body.clone(), fetched, record.received_at)
        .map_err(|e| format!("the fetched body is not an archivable event: {e}"))?;
    same_line(&encoded, line, "fetched")
}

/// Whether `line` (without its `\n`) is exactly `expected`'s line; else the first differing
/// byte, naming the body as `what` ("verified", "fetched").
fn same_line(expected: &Record, line: &[u8], what: &str) -> Result<(), String> {
    let expected = expected.line();
    let expected = &expected[..expected.len() - 1];
    if expected == line {
        return Ok(());
    }
    Err(format!(
        "the envelope fields differ from what the {what} body says (first difference at byte {})",
        first_difference(expected, line)
    ))
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.len().min(b.len()))
}

#[cfg(test)]
mod tests {
    use stripe_webhook_verify::{Secret, signature_header};

    use super::*;

    #[test]
    fn first_difference_points_at_the_byte() {
        assert_eq!(first_difference(b"abc", b"abd"), 2);
        assert_eq!(first_difference(b"ab", b"abc"), 2);
        assert_eq!(first_difference(b"", b""), 0);
    }

    #[test]
    fn proves_genuine_records_and_names_what_differs() {
        let secret = Secret::new("whsec_check").expect("secret");
        let verifier = Verifier::new(vec![
            Secret::new("whsec_other").expect("secret"),
            secret.clone(),
        ])
        .expect("verifier");
        let body = Bytes::from_static(b"{\n  \"id\": \"evt_1\",\n  \"type\": \"invoice.paid\",\n  \"data\": {\"object\": {\"amount\": 1}}\n}");
        let signature = signature_header(&[&secret], 1_700_000_000, &body);
        let at = stripe_webhook_envelope::ReceivedAt::from_unix_millis(1_795_687_200_000);
        let record =
            encode(body.clone(), &signature, at, &EnvelopeOptions::default()).expect("encode");
        let line = &record.line()[..record.line().len() - 1];
        let read = ArchivedRecord::parse(line).expect("read");
        assert_eq!(
            prove(&verifier, line, &read, &body, &signature, false),
            Ok(1)
        );

        let pointer = record.oversize_pointer("b", "oversize/k.json");
        let pointer_line = &pointer.line()[..pointer.line().len() - 1];
        let read = ArchivedRecord::parse(pointer_line).expect("read");
        assert_eq!(
            prove(&verifier, pointer_line, &read, &body, &signature, false),
            Ok(1)
        );
        // A pointer relabelled as another event: the signature holds, the envelope does not.
        let relabelled = String::from_utf8(pointer_line.to_vec())
            .expect("utf-8")
            .replacen("\"id\":\"evt_1\"", "\"id\":\"evt_2\"", 1);
        let read = ArchivedRecord::parse(relabelled.as_bytes()).expect("read");
        let err = prove(
            &verifier,
            relabelled.as_bytes(),
            &read,
            &body,
            &signature,
            false,
        )
        .expect_err("relabelled");
        assert!(err.contains("envelope fields differ"), "{err}");
        assert_eq!(
            prove(
                &verifier,
                relabelled.as_bytes(),
                &read,
                &body,
                &signature,
                true
            ),
            Ok(1)
        );

        // A fetched record is consistent or not, never proven by a signature.
        let fetched = stripe_webhook_envelope::Fetched {
            api: "https://api.stripe.com".into(),
            request: "GET /v1/events/evt_1".into(),
            key: "rk_test_...abcd".into(),
            account: None,
            stripe_version: None,
            request_id: None,
        };
        let written = encode_fetched(body.clone(), &fetched, at).expect("encode");
        let fetched_line = &written.line()[..written.line().len() - 1];
        let read_fetched = ArchivedRecord::parse(fetched_line).expect("read");
        assert_eq!(prove_fetched(fetched_line, &read_fetched, &body), Ok(()));
        let relabelled = String::from_utf8(fetched_line.to_vec())
            .expect("utf-8")
            .replacen(
                "\"type\":\"invoice.paid\"",
                "\"type\":\"invoice.voided\"",
                1,
            );
        let read_relabelled = ArchivedRecord::parse(relabelled.as_bytes()).expect("read");
        let err =
            prove_fetched(relabelled.as_bytes(), &read_relabelled, &body).expect_err("relabelled");
        assert!(err.contains("envelope fields differ"), "{err}");
        assert!(prove_fetched(line, &ArchivedRecord::parse(line).expect("read"), &body).is_err());

        let forged = Bytes::from_static(b"{\"id\":\"evt_1\",\"type\":\"invoice.paid\"}");
        let err = prove(&verifier, line, &read, &forged, &signature, true).expect_err("forged");
        assert!(err.starts_with("signature: "), "{err}");
    }
}
