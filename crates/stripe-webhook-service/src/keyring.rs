//! The keyring: every signing secret the archive was ever received with, labelled, with the time
//! it came into use and the time it was retired, so records stay verifiable for as long as they
//! are kept (`docs/verification.md#keyring`).
//!
//! The server and the Lambda verify webhooks with the entries not yet retired; an entry whose
//! retirement time has passed verifies no signature made from then on. `stripe-webhook verify`
//! tries every entry, and names the entry a record needs from the record's own signing time.
//! Retiring a secret means giving its entry a retirement time, never deleting it.
//!
//! The text holds one entry per line, `LABEL SECRET ACTIVE_FROM [RETIRED_AT]`, separated by
//! spaces or tabs, with RFC 3339 times (`2026-12-01T09:00:00Z`); `#` starts a comment line and
//! blank lines are ignored. Errors name the line and the field, never a secret.
//!
//! ```
//! use stripe_webhook_service::keyring::Keyring;
//!
//! let keyring = Keyring::parse(
//!     "# label       secret         active from           retired at\n\
//!      live-2025     whsec_old      2025-01-10T00:00:00Z  2026-12-02T09:00:00Z\n\
//!      live-2026-12  whsec_new      2026-12-01T09:00:00Z\n",
//! )?;
//! let dec_3 = 1_796_256_000; // 2026-12-03T00:00:00Z
//! let in_use: Vec<&str> = keyring.in_use_at(dec_3).map(|e| e.label()).collect();
//! assert_eq!(in_use, ["live-2026-12"]);
//! let signed_then: Vec<&str> = keyring.active_at(1_790_000_000).map(|e| e.label()).collect();
//! assert_eq!(signed_then, ["live-2025"]);
//! # Ok::<(), stripe_webhook_service::keyring::KeyringError>(())
//! ```

use std::fmt;
use std::path::Path;

use stripe_webhook_verify::{Secret, sign};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One secret of the keyring.
#[derive(Clone)]
pub struct KeyringEntry {
    label: String,
    secret: Secret,
    active_from: i64,
    retired_at: Option<i64>,
}

impl KeyringEntry {
    /// The entry's label (e.g. `live-2026-12`): what logs and reports name it by.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The signing secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// When it came into use, in Unix seconds.
    pub fn active_from(&self) -> i64 {
        self.active_from
    }

    /// When it was (or will be) retired, in Unix seconds; `None` while in use.
    pub fn retired_at(&self) -> Option<i64> {
        self.retired_at
    }

    /// Whether a signature made at `t` (Unix seconds) falls in its time in use.
    pub fn active_at(&self, t: i64) -> bool {
        self.active_from <= t && self.retired_at.is_none_or(|r| t < r)
    }

    /// `label (from … until …)`, for reports.
    pub fn describe(&self) -> String {
        match self.retired_at {
            Some(r) => format!(
                "{} (in use from {} until {})",
                self.label,
                rfc3339(self.active_from),
                rfc3339(r)
            ),
            None => format!("{} (in use from {})", self.label, rfc3339(self.active_from)),
        }
    }
}

impl fmt::Debug for KeyringEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringEntry")
            .field("label", &self.label)
            .field("secret", &"<redacted>")
            .field("active_from", &self.active_from)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// The parsed keyring, in file order.
#[derive(Clone, Debug)]
pub struct Keyring {
    entries: Vec<KeyringEntry>,
}

/// Why a keyring text was refused: the line (1-based) and what is wrong, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("keyring line {line}: {problem}")]
pub struct KeyringError {
    /// The line, 1-based (0: the keyring as a whole).
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl Keyring {
    /// Parses a keyring text (see the [module](self) documentation).
    ///
    /// # Errors
    /// A line without three or four fields, a label used twice or with other characters than
    /// letters, digits, `.`, `_` and `-`, a secret that is not a `whsec_…` signing secret or that
    /// appears twice, a time that is not RFC 3339, a retirement not after the entry's start, or no
    /// entry at all.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut entries: Vec<KeyringEntry> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let problem = |problem: String| KeyringError {
                line: number,
                problem,
            };
            let content = line.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let (label, secret, active_from, retired_at) = match fields[..] {
                [label, secret, from] => (label, secret, from, None),
                [label, secret, from, retired] => (label, secret, from, Some(retired)),
                _ => {
                    return Err(problem(format!(
                        "{} fields; an entry is LABEL SECRET ACTIVE_FROM [RETIRED_AT]",
                        fields.len()
                    )));
                }
            };
            let label_ok = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !label_ok {
                return Err(problem(format!(
                    "label {label:?} may hold only letters, digits, '.', '_' and '-'"
                )));
            }
            if entries.iter().any(|e| e.label == label) {
                return Err(problem(format!("label {label:?} is used twice")));
            }
            if !secret.starts_with("whsec_") {
                return Err(problem(format!(
                    "the secret of {label:?} does not start with whsec_ (a Stripe signing secret)"
                )));
            }
            let secret = Secret::new(secret)
                .map_err(|e| problem(format!("the secret of {label:?}: {e}")))?;
            // The verifier never shows a secret, so two are compared by what they sign (equal
            // secrets give equal HMACs; distinct ones collide with negligible probability).
            let fingerprint = |s: &Secret| sign(s, 0, b"keyring duplicate check");
            let this = fingerprint(&secret);
            if entries.iter().any(|e| fingerprint(&e.secret) == this) {
                return Err(problem(format!(
                    "the secret of {label:?} is already in the keyring under another label"
                )));
            }
            let time = |text: &str, what: &str| {
                parse_rfc3339(text).ok_or_else(|| {
                    problem(format!(
                        "{what} of {label:?} is not an RFC 3339 time such as 2026-12-01T09:00:00Z"
                    ))
                })
            };
            let active_from = time(active_from, "ACTIVE_FROM")?;
            let retired_at = retired_at.map(|r| time(r, "RETIRED_AT")).transpose()?;
            if retired_at.is_some_and(|r| r <= active_from) {
                return Err(problem(format!(
                    "{label:?} is retired before it came into use"
                )));
            }
            entries.push(KeyringEntry {
                label: label.to_owned(),
                secret,
                active_from,
                retired_at,
            });
        }
        if entries.is_empty() {
            return Err(KeyringError {
                line: 0,
                problem: "no entry: a keyring lists at least the secret in use".to_owned(),
            });
        }
        Ok(Keyring { entries })
    }

    /// The keyring in the file `file` if given, else in `text` (e.g. an environment variable's
    /// value; empty counts as not given); `None` when neither is. Errors start with the source's
    /// name: `{file_name} {path}` or `{text_name}`.
    ///
    /// # Errors
    /// An unreadable file, or a text [`Keyring::parse`] refuses.
    pub fn load(
        file: Option<&Path>,
        file_name: &str,
        text: Option<&str>,
        text_name: &str,
    ) -> Result<Option<Keyring>, String> {
        let (name, text) = match (file, text) {
            (Some(path), _) => {
                let name = format!("{file_name} {}", path.display());
                let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
                (name, text)
            }
            (None, Some(text)) if !text.is_empty() => (text_name.to_owned(), text.to_owned()),
            (None, _) => return Ok(None),
        };
        Keyring::parse(&text)
            .map(Some)
            .map_err(|e| format!("{name}: {e}"))
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[KeyringEntry] {
        &self.entries
    }

    /// The entries a server may verify with at `now`: not retired yet (whether or not their
    /// `ACTIVE_FROM` has come: Stripe may start signing with a new secret before the time
    /// written down, and refusing it would lose events), those never retiring first, then by
    /// retirement, latest first.
    pub fn in_use_at(&self, now: i64) -> impl Iterator<Item = &KeyringEntry> {
        let mut in_use: Vec<&KeyringEntry> = self
            .entries
            .iter()
            .filter(|e| e.retired_at.is_none_or(|r| now < r))
            .collect();
        in_use.sort_by_key(|e| std::cmp::Reverse(e.retired_at.unwrap_or(i64::MAX)));
        in_use.into_iter()
    }

    /// The entries whose time in use covers a signature made at `t`.
    pub fn active_at(&self, t: i64) -> impl Iterator<Item = &KeyringEntry> {
        self.entries.iter().filter(move |e| e.active_at(t))
    }
}

/// An RFC 3339 time as Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Unix seconds as an RFC 3339 UTC time (`2026-12-01T09:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# label  secret  active from  retired at\n\
        \n\
        live-2025\twhsec_old   2025-01-10T00:00:00Z  2026-12-02T09:00:00Z\n\
        live-2026-12  whsec_new  2026-12-01T09:00:00Z\n\
        test          whsec_test 2025-01-01T00:00:00+01:00\n";

    #[test]
    fn reads_entries_and_answers_by_time() {
        let k = Keyring::parse(TEXT).expect("parse");
        let labels = |it: &mut dyn Iterator<Item = &KeyringEntry>| {
            it.map(|e| e.label().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(
            labels(&mut k.entries().iter()),
            ["live-2025", "live-2026-12", "test"]
        );
        let old = &k.entries()[0];
        assert_eq!(
            old.active_from(),
            parse_rfc3339("2025-01-10T00:00:00Z").unwrap()
        );
        assert_eq!(k.entries()[2].active_from(), 1_735_686_000);
        let retired = old.retired_at().expect("retired");
        // Before the retirement: all in use, the retiring one last.
        assert_eq!(
            labels(&mut k.in_use_at(retired - 1)),
            ["live-2026-12", "test", "live-2025"]
        );
        assert_eq!(labels(&mut k.in_use_at(retired)), ["live-2026-12", "test"]);
        // Signing times: the overlap names both, before any entry names none.
        let overlap = parse_rfc3339("2026-12-01T10:00:00Z").unwrap();
        assert_eq!(
            labels(&mut k.active_at(overlap)),
            ["live-2025", "live-2026-12", "test"]
        );
        assert!(k.active_at(1_000_000_000).next().is_none());
        assert_eq!(
            old.describe(),
            "live-2025 (in use from 2025-01-10T00:00:00Z until 2026-12-02T09:00:00Z)"
        );
        assert!(!format!("{k:?}").contains("whsec_"), "{k:?}");
    }

    #[test]
    fn refuses_what_it_cannot_trust_naming_the_line_never_the_secret() {
        let cases = [
            ("a whsec_x", 1, "2 fields"),
            (
                "a whsec_x 2026-01-01T00:00:00Z 2027-01-01T00:00:00Z extra",
                1,
                "5 fields",
            ),
            ("a/b whsec_x 2026-01-01T00:00:00Z", 1, "may hold only"),
            (
                "a whsec_x 2026-01-01T00:00:00Z\na whsec_y 2026-01-01T00:00:00Z",
                2,
                "used twice",
            ),
            (
                "a whsec_x 2026-01-01T00:00:00Z\nb whsec_x 2026-01-01T00:00:00Z",
                2,
                "already in the keyring",
            ),
            (
                "a sk_live_x 2026-01-01T00:00:00Z",
                1,
                "does not start with whsec_",
            ),
            (
                "a whsec_x 2026-01-01",
                1,
                "ACTIVE_FROM of \"a\" is not an RFC 3339",
            ),
            (
                "a whsec_x 2026-01-01T00:00:00Z 2025-01-01T00:00:00Z",
                1,
                "retired before",
            ),
            ("# nothing\n\n", 0, "no entry"),
        ];
        for (text, line, expected) in cases {
            let err = Keyring::parse(text).expect_err(text);
            assert_eq!(err.line, line, "{text}: {err}");
            assert!(err.to_string().contains(expected), "{text}: {err}");
            assert!(
                !err.to_string().contains("whsec_x") && !err.to_string().contains("sk_live_x"),
                "{err}"
            );
        }
    }
}
