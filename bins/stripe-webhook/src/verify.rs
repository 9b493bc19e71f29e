//! `verify`: re-verifies every selected record's exact body against its stored
//! `Stripe-Signature`, with tolerance disabled, and checks that the envelope's own fields are
//! what the body says (re-encoding the body must give back the stored line).

use std::ops::ControlFlow;

use bytes::Bytes;
use clap::Args;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};
use stripe_webhook_verify::{Tolerance, Verifier, parse_secrets};

use crate::archive::{Archive, Line, Source};
use crate::filter::{Filters, SelectArgs, parse_instant};
use crate::record::{Body, Envelope};
use crate::select::for_each_selected;
use crate::{Failure, Outcome};

/// Arguments of `verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// The endpoint signing secret(s) the archive was received with, comma-separated (all are
    /// tried, as during a rotation).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// Check the signatures only, not that the envelope fields (`id`, `type`, `data`, …) are
    /// exactly what re-encoding the verified body gives.
    #[arg(long)]
    signature_only: bool,
}

/// Verification counts.
#[derive(Debug, Default)]
struct Tally {
    verified: u64,
    by_secret: Vec<u64>,
    failed: u64,
    raw_off: u64,
    oversize: u64,
}

/// Verifies the selected records; prints each failure (`FAIL<TAB>file:line<TAB>id<TAB>reason`)
/// and a summary on stdout. Problems (any failure or unreadable line) give exit code 1.
pub(crate) fn verify(archive: &Archive, args: &VerifyArgs) -> Result<Outcome, Failure> {
    let source = Source::parse(&args.select.source)?;
    let filters = Filters::from_args(&args.select).map_err(Failure::Usage)?;
    let secrets =
        parse_secrets(&args.secret).map_err(|e| Failure::Usage(format!("--secret: {e}")))?;
    let verifier = Verifier::new(secrets)
        .map_err(|e| Failure::Usage(format!("--secret: {e}")))?
        .with_tolerance(Tolerance::Disabled);
    let mut tally = Tally {
        by_secret: vec![0; verifier.secret_count()],
        ..Tally::default()
    };
    let counts = for_each_selected(
        archive,
        &source,
        &filters,
        &mut |line, envelope| {
            match check(archive, &verifier, line, &envelope, !args.signature_only) {
                Ok(Checked::Verified {
                    secret_index,
                    oversize,
                }) => {
                    tally.verified += 1;
                    tally.oversize += u64::from(oversize);
                    if let Some(n) = tally.by_secret.get_mut(secret_index) {
                        *n += 1;
                    }
                }
                Ok(Checked::RawOff) => tally.raw_off += 1,
                Err(reason) => {
                    tally.failed += 1;
                    println!(
                        "FAIL\t{}:{}\t{}\t{reason}",
                        line.segment, line.number, envelope.id
                    );
                }
            }
            ControlFlow::Continue(())
        },
        &mut |problem| {
            println!(
                "FAIL\t{}:{}\t-\t{}",
                problem.segment, problem.number, problem.reason
            );
            ControlFlow::Continue(())
        },
    )?;
    println!(
        "verified: {} (by secret: {}), oversize among them: {}",
        tally.verified,
        tally
            .by_secret
            .iter()
            .enumerate()
            .map(|(i, n)| format!("#{}={n}", i + 1))
            .collect::<Vec<_>>()
            .join(" "),
        tally.oversize
    );
    println!("failed: {}", tally.failed);
    println!("unreadable: {}", counts.unreadable);
    println!(
        "not verifiable (raw off, no body stored): {}",
        tally.raw_off
    );
    Ok(if tally.failed > 0 || counts.unreadable > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

enum Checked {
    Verified { secret_index: usize, oversize: bool },
    RawOff,
}

fn check(
    archive: &Archive,
    verifier: &Verifier,
    line: &Line<'_>,
    envelope: &Envelope<'_>,
    check_envelope: bool,
) -> Result<Checked, String> {
    let (body, pointer) = match envelope.body()? {
        Body::Inline(body) => (Bytes::from(body), None),
        Body::S3(pointer) => (Bytes::from(archive.fetch_oversize(pointer)?), Some(pointer)),
        Body::Missing => return Ok(Checked::RawOff),
    };
    let signature = envelope
        .signature
        .as_deref()
        .ok_or("no signature stored with the body")?;
    let verified = verifier
        .verify(&body, Some(signature))
        .map_err(|e| format!("signature: {e}"))?;
    if check_envelope && envelope.v == Some(1) {
        let at = ReceivedAt::from_unix_millis(
            parse_instant(&envelope.timestamp).map_err(|e| format!("timestamp: {e}"))?,
        );
        let record = encode(body, signature, at, &EnvelopeOptions::default())
            .map_err(|e| format!("the verified body is not an archivable event: {e}"))?;
        let expected = match pointer {
            Some(p) => record.oversize_pointer(&p.bucket, &p.key),
            None => record,
        };
        let expected = expected.line();
        if &expected[..expected.len() - 1] != line.bytes {
            return Err(format!(
                "the envelope fields differ from what the verified body says (first difference at byte {})",
                first_difference(&expected[..expected.len() - 1], line.bytes)
            ));
        }
    }
    Ok(Checked::Verified {
        secret_index: verified.secret_index,
        oversize: pointer.is_some(),
    })
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.len().min(b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_points_at_the_byte() {
        assert_eq!(first_difference(b"abc", b"abd"), 2);
        assert_eq!(first_difference(b"ab", b"abc"), 2);
        assert_eq!(first_difference(b"", b""), 0);
    }
}
