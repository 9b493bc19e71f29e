//! Signing secrets from the command line or from a file (so they stay out of `ps` and shell
//! history).
//!
//! A secret file holds the same comma-separated list as the flag, or one secret per line; a final
//! newline is ignored and nothing else is trimmed (a stray space or `\r` is refused, naming the
//! file and the element).

use std::path::Path;

use stripe_webhook_service::keyring::{Keyring, rfc3339};
use stripe_webhook_verify::{Secret, SignatureHeader, Verifier, parse_secrets_named};

/// The secrets given by `--{flag}-file` (`file`) or `--{flag}` (`value`), if either was; the file
/// wins, so an explicit `--{flag}-file` overrides a `--{flag}` taken from the environment.
///
/// # Errors
/// An unreadable file, or a secret the verifier refuses (the message never shows a secret).
pub(crate) fn secrets(
    flag: &str,
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Vec<Secret>>, String> {
    match (value, file) {
        (_, Some(path)) => {
            let name = format!("--{flag}-file {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            parse_secrets_named(&name, &text.split('\n').collect::<Vec<_>>().join(","))
                .map(Some)
                .map_err(|e| format!("{name}: {e}"))
        }
        (Some(list), None) => parse_secrets_named(&format!("--{flag}"), list)
            .map(Some)
            .map_err(|e| format!("--{flag}: {e}")),
        (None, None) => Ok(None),
    }
}

/// The keyring given by `--{flag}-file` (`file`) or `--{flag}` (`text`, e.g. from
/// STRIPE_WEBHOOK_KEYRING), if either was; the file wins.
///
/// # Errors
/// An unreadable file or a keyring that does not parse (the message names the line, never a
/// secret).
pub(crate) fn keyring(
    flag: &str,
    text: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Keyring>, String> {
    Keyring::load(file, &format!("--{flag}-file"), text, &format!("--{flag}"))
}

/// The keys an archive is proven with: a verifier (no age check: archived signatures are as old
/// as the archive), a name for each of its secrets (`#1`, … or the keyring's labels), and the
/// keyring they came from, if any.
pub(crate) struct ArchiveKeys {
    /// Tries every secret; records are proven with `verify_ignoring_timestamp` (see
    /// [`crate::check::prove`]).
    pub(crate) verifier: Verifier,
    /// The name of each secret, in the verifier's order.
    pub(crate) names: Vec<String>,
    keyring: Option<Keyring>,
}

impl ArchiveKeys {
    /// Keys from a list of secrets, named `#1`, `#2`, ….
    ///
    /// # Errors
    /// A list the verifier refuses (naming `--{flag}`).
    pub(crate) fn from_secrets(flag: &str, secrets: Vec<Secret>) -> Result<ArchiveKeys, String> {
        let names = (1..=secrets.len()).map(|i| format!("#{i}")).collect();
        Ok(ArchiveKeys {
            verifier: archive_verifier(flag, secrets)?,
            names,
            keyring: None,
        })
    }

    /// Keys from every entry of a keyring, retired ones included (records are judged by the
    /// secret that signed them, whenever that was), named by their labels.
    ///
    /// # Errors
    /// None in practice (a parsed keyring has at least one secret).
    pub(crate) fn from_keyring(flag: &str, keyring: Keyring) -> Result<ArchiveKeys, String> {
        let entries = keyring.entries();
        let names = entries.iter().map(|e| e.label().to_owned()).collect();
        let secrets = entries.iter().map(|e| e.secret().clone()).collect();
        Ok(ArchiveKeys {
            verifier: archive_verifier(flag, secrets)?,
            names,
            keyring: Some(keyring),
        })
    }

    /// For a stored signature no key verified: which keyring entry the record needs, from the
    /// signature's own time (`None` without a keyring or a readable timestamp).
    pub(crate) fn missing_key_hint(&self, signature: &str) -> Option<String> {
        let keyring = self.keyring.as_ref()?;
        let t = SignatureHeader::parse(signature).ok()?.timestamp();
        let active: Vec<String> = keyring.active_at(t).map(|e| e.describe()).collect();
        Some(if active.is_empty() {
            let before = keyring
                .entries()
                .iter()
                .filter(|e| e.retired_at().is_some_and(|r| r <= t))
                .max_by_key(|e| e.retired_at())
                .map(|e| format!("; the last retired before then: {}", e.describe()))
                .unwrap_or_default();
            let after = keyring
                .entries()
                .iter()
                .filter(|e| e.active_from() > t)
                .min_by_key(|e| e.active_from())
                .map(|e| format!("; the next in use after: {}", e.describe()))
                .unwrap_or_default();
            format!(
                "signed at {}, when no keyring entry was in use: the keyring lacks the secret that \
                 signed it (add that endpoint secret as an entry covering this time){before}{after}",
                rfc3339(t)
            )
        } else {
            format!(
                "signed at {}, when {} {} in use, and none verifies it: a forged or edited \
                 record, or a secret missing from the keyring",
                rfc3339(t),
                active.join(" and "),
                if active.len() == 1 { "was" } else { "were" }
            )
        })
    }
}

/// A verifier for an archive's bodies with the secrets of `--{flag}`. Records are proven with
/// `verify_ignoring_timestamp` ([`crate::check::prove`]): no age check, archived signatures are as
/// old as the archive.
///
/// # Errors
/// A list the verifier refuses (naming `--{flag}`).
pub(crate) fn archive_verifier(flag: &str, secrets: Vec<Secret>) -> Result<Verifier, String> {
    Verifier::new(secrets).map_err(|e| format!("--{flag}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_from_flags_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count =
            |v: Option<&str>, f: Option<&Path>| secrets("secret", v, f).map(|s| s.map(|s| s.len()));
        assert_eq!(count(Some("whsec_a,whsec_b"), None), Ok(Some(2)));
        assert_eq!(count(None, None), Ok(None));
        for (content, n) in [
            ("whsec_a\n", 1),
            ("whsec_a,whsec_b\n", 2),
            ("whsec_a\nwhsec_b", 2),
        ] {
            let path = dir.path().join("s");
            std::fs::write(&path, content).expect("write");
            assert_eq!(count(None, Some(&path)), Ok(Some(n)), "{content:?}");
        }
        let path = dir.path().join("crlf");
        std::fs::write(&path, "whsec_a\r\n").expect("write");
        let err = count(None, Some(&path)).expect_err("refused");
        assert!(
            err.contains("--secret-file") && !err.contains("whsec_a"),
            "{err}"
        );
        let err = count(None, Some(&dir.path().join("missing"))).expect_err("missing");
        assert!(err.starts_with("--secret-file "), "{err}");
        let err = count(Some(""), None).expect_err("empty");
        assert!(err.starts_with("--secret: "), "{err}");
    }
}
