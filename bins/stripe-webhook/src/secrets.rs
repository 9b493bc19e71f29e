//! Signing secrets from the command line or from a file (so they stay out of `ps` and shell
//! history).
//!
//! A secret file holds the same comma-separated list as the flag, or one secret per line; a final
//! newline is ignored and nothing else is trimmed (a stray space or `\r` is refused, naming the
//! file and the element).

use std::path::Path;

use stripe_webhook_verify::{Secret, Tolerance, Verifier, parse_secrets_named};

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

/// A verifier for an archive's bodies with the secrets of `--{flag}`: no age check (archived
/// signatures are as old as the archive).
///
/// # Errors
/// A list the verifier refuses (naming `--{flag}`).
pub(crate) fn archive_verifier(flag: &str, secrets: Vec<Secret>) -> Result<Verifier, String> {
    Verifier::new(secrets)
        .map(|v| v.with_tolerance(Tolerance::Disabled))
        .map_err(|e| format!("--{flag}: {e}"))
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
