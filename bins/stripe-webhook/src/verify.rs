//! `verify`: proves every selected record (see [`crate::check`]): its exact body verifies against
//! its stored `Stripe-Signature` with tolerance disabled, and its envelope fields are exactly
//! what the body says.
//!
//! Every line is read by the envelope crate's reader, so a record of an unknown version, or
//! without `v`, is a failure named as such, whatever its signature; `--signature-only` skips the
//! envelope comparison but not the version check (the reader cannot know what another
//! version's `raw` or `signature` mean). Records written with raw off (no signature stored,
//! oversize pointers included) are counted as not verifiable.
//!
//! Legacy lines (the Node service's `{"timestamp","type","id","data"}`, no `v`) kept neither the
//! body nor its signature: each is listed as `LEGACY` (present, not verifiable) and counted, never
//! a failure.
//!
//! Fetched records (envelope v2, written by `reconcile --archive-missing`) are never verified:
//! nothing Stripe signed was received. Each is listed as `FETCHED` (present, not signed) and
//! counted, after checking that its envelope is what its body says (a record whose envelope
//! differs fails); they do not make the exit code 1.

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use stripe_webhook_envelope::read::{ArchivedRecord, StoredBody};

use crate::archive::{Archive, Line, Source};
use crate::check::{SIGNATURE_FAILURE, body_of, prove, prove_fetched};
use crate::filter::{Filters, SelectArgs};
use crate::secrets::{ArchiveKeys, keyring, secrets};
use crate::select::{Reason, for_each_selected};
use crate::{Failure, Outcome};

/// Arguments of `verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// The endpoint signing secret(s) the archive was received with, comma-separated (all are
    /// tried, as during a rotation).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// A file holding the secret(s) instead (comma-separated or one per line); it wins over
    /// --secret and STRIPE_WEBHOOK_SECRET.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// The keyring instead of secrets (`LABEL SECRET ACTIVE_FROM [RETIRED_AT]` per line, see
    /// docs/verification.md#keyring): every entry is tried, retired ones included, and a record
    /// none verifies is told which entry it needs, from its own signing time.
    #[arg(long, env = "STRIPE_WEBHOOK_KEYRING", hide_env_values = true)]
    keyring: Option<String>,
    /// A file holding the keyring (wins over --keyring and STRIPE_WEBHOOK_KEYRING).
    #[arg(long, env = "STRIPE_WEBHOOK_KEYRING_FILE", value_name = "FILE")]
    keyring_file: Option<PathBuf>,
    /// Check the signatures only, not that the envelope fields (`id`, `type`, `data`, …) are
    /// exactly what re-encoding the verified body gives. The envelope version is still checked.
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
    fetched: u64,
    legacy: u64,
}

/// Verifies the selected records; prints each failure (`FAIL<TAB>file:line<TAB>id<TAB>reason`,
/// id `-` for a line that is not an envelope record or a segment that cannot be read) and a summary on
/// stdout. Problems (any failure or unreadable segment) give exit code 1.
pub(crate) fn verify(archive: &Archive, args: &VerifyArgs) -> Result<Outcome, Failure> {
    let source = Source::parse(&args.select.source)?;
    let filters = Filters::from_args(&args.select).map_err(Failure::Usage)?;
    let keys = archive_keys(args).map_err(Failure::Usage)?;
    let mut tally = Tally {
        by_secret: vec![0; keys.names.len()],
        ..Tally::default()
    };
    let counts = for_each_selected(
        archive,
        &source,
        &filters,
        &mut |line, record| {
            match check(archive, &keys, line, &record, args.signature_only) {
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
                Ok(Checked::Legacy) => {
                    tally.legacy += 1;
                    println!(
                        "LEGACY\t{}:{}\t{}\tlegacy Node record, not verifiable",
                        line.segment, line.number, record.id
                    );
                }
                Ok(Checked::Fetched { key, request }) => {
                    tally.fetched += 1;
                    println!(
                        "FETCHED\t{}:{}\t{}\tpresent, not signed: fetched from Stripe's API ({request}, key {key})",
                        line.segment, line.number, record.id
                    );
                }
                Err(reason) => {
                    tally.failed += 1;
                    println!(
                        "FAIL\t{}:{}\t{}\t{reason}",
                        line.segment, line.number, record.id
                    );
                }
            }
            ControlFlow::Continue(())
        },
        &mut |problem| {
            let reason = match problem.reason {
                Reason::NotARecord(e) => e.to_string(),
                Reason::Unreadable(why) => why.to_owned(),
            };
            println!("FAIL\t{}:{}\t-\t{reason}", problem.segment, problem.number);
            ControlFlow::Continue(())
        },
    )?;
    // A line that is not an envelope record (unknown or missing version, …) is a failure: it cannot be
    // proven.
    tally.failed += counts.not_records;
    println!(
        "verified: {} (by secret: {}), oversize among them: {}",
        tally.verified,
        tally
            .by_secret
            .iter()
            .zip(&keys.names)
            .map(|(n, name)| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
        tally.oversize
    );
    println!("failed: {}", tally.failed);
    println!("unreadable: {}", counts.unreadable);
    println!(
        "not verifiable (raw off, no signature stored): {}",
        tally.raw_off
    );
    println!(
        "fetched (present, not signed by Stripe; fetched from its API): {}",
        tally.fetched
    );
    println!(
        "legacy (Node service lines, present, not verifiable): {}",
        tally.legacy
    );
    Ok(if tally.failed > 0 || counts.unreadable > 0 {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}

enum Checked {
    Verified {
        secret_index: usize,
        oversize: bool,
    },
    RawOff,
    /// A line of the Node service this one replaced: present, never verifiable.
    Legacy,
    /// A fetched record whose envelope is what its body says: its request and key id.
    Fetched {
        request: String,
        key: String,
    },
}

/// The keys of `--keyring(-file)` or `--secret(-file)`; exactly one of the two is required.
fn archive_keys(args: &VerifyArgs) -> Result<ArchiveKeys, String> {
    let secrets = secrets(
        "secret",
        args.secret.as_deref(),
        args.secret_file.as_deref(),
    )?;
    let keyring = keyring(
        "keyring",
        args.keyring.as_deref(),
        args.keyring_file.as_deref(),
    )?;
    match (secrets, keyring) {
        (Some(_), Some(_)) => Err(
            "give the archive's secrets (--secret, --secret-file, STRIPE_WEBHOOK_SECRET) or its \
             keyring (--keyring, --keyring-file, STRIPE_WEBHOOK_KEYRING(_FILE)), not both"
                .to_owned(),
        ),
        (Some(list), None) => ArchiveKeys::from_secrets("secret", list),
        (None, Some(keyring)) => ArchiveKeys::from_keyring("keyring", keyring),
        (None, None) => Err(
            "the archive's signing secrets are required: --keyring-file (or \
             STRIPE_WEBHOOK_KEYRING(_FILE)), or --secret, --secret-file (or STRIPE_WEBHOOK_SECRET)"
                .to_owned(),
        ),
    }
}

fn check(
    archive: &Archive,
    keys: &ArchiveKeys,
    line: &Line<'_>,
    record: &ArchivedRecord<'_>,
    signature_only: bool,
) -> Result<Checked, String> {
    if let StoredBody::Fetched { raw, fetched } = &record.body {
        if !signature_only {
            let body = bytes::Bytes::from(raw.decode().into_owned());
            prove_fetched(line.bytes, record, &body)?;
        }
        return Ok(Checked::Fetched {
            request: fetched.request.to_string(),
            key: fetched.key.to_string(),
        });
    }
    if record.body == StoredBody::Legacy {
        return Ok(Checked::Legacy);
    }
    // Raw off: no signature, so nothing to verify (an oversize body is not even fetched).
    let Some(signature) = record.body.signature() else {
        return Ok(Checked::RawOff);
    };
    let Some(body) = body_of(archive, record)? else {
        return Ok(Checked::RawOff);
    };
    let secret_index = prove(
        &keys.verifier,
        line.bytes,
        record,
        &body,
        signature,
        signature_only,
    )
    .map_err(|reason| match keys.missing_key_hint(signature) {
        Some(hint) if reason.starts_with(SIGNATURE_FAILURE) => format!("{reason}; {hint}"),
        _ => reason,
    })?;
    Ok(Checked::Verified {
        secret_index,
        oversize: matches!(record.body, StoredBody::Oversize { .. }),
    })
}
