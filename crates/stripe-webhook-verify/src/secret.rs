//! Signing secrets: validated at construction, redacted everywhere, keyed once.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{ConfigError, SecretSource};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The prefix of every Stripe webhook signing secret.
///
/// ```
/// use stripe_webhook_verify::{Secret, WHSEC_PREFIX};
///
/// let value = "whsec_test_secret";
/// assert!(value.starts_with(WHSEC_PREFIX));
/// assert!(Secret::new(value)?.has_whsec_prefix());
/// # Ok::<(), stripe_webhook_verify::ConfigError>(())
/// ```
pub const WHSEC_PREFIX: &str = "whsec_";

/// A webhook signing secret.
///
/// The HMAC key is the secret string's UTF-8 bytes, `whsec_` prefix included (not base64-decoded).
/// The keyed HMAC state is computed once here, so verification only hashes the message.
/// `Debug` and `Display` are redacted: they show at most whether the value starts with `whsec_`.
///
/// ```
/// use stripe_webhook_verify::Secret;
///
/// let secret = Secret::new("whsec_test_secret")?;
/// assert_eq!(format!("{secret:?}"), "Secret(whsec_…redacted)");
/// assert_eq!(Secret::new("sk_test_123")?.to_string(), "Secret(…redacted)");
/// # Ok::<(), stripe_webhook_verify::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Secret {
    value: Box<str>,
    keyed: HmacSha256,
}

impl Secret {
    /// Validates a secret: refuses a blank value, and a value with leading/trailing whitespace or any
    /// control character (a newline pasted into an env file). A value without the `whsec_` prefix is
    /// accepted; check [`Secret::has_whsec_prefix`] to warn about it.
    ///
    /// ```
    /// use stripe_webhook_verify::{ConfigError, Secret, SecretSource};
    ///
    /// assert!(Secret::new("whsec_test_secret").is_ok());
    /// assert_eq!(
    ///     Secret::new("whsec_test_secret\n").unwrap_err(),
    ///     ConfigError::SecretWhitespace(SecretSource::Single)
    /// );
    /// assert_eq!(Secret::new(" ").unwrap_err(), ConfigError::BlankSecret(SecretSource::Single));
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::BlankSecret`] or [`ConfigError::SecretWhitespace`].
    pub fn new(value: impl Into<String>) -> Result<Secret, ConfigError> {
        Secret::from_source(value.into(), SecretSource::Single)
    }

    fn from_source(value: String, source: SecretSource) -> Result<Secret, ConfigError> {
        if value.trim().is_empty() {
            return Err(ConfigError::BlankSecret(source));
        }
        if value.trim() != value || value.chars().any(char::is_control) {
            return Err(ConfigError::SecretWhitespace(source));
        }
        let keyed = HmacSha256::new_from_slice(value.as_bytes())
            .expect("HMAC-SHA256 accepts keys of any length");
        Ok(Secret {
            value: value.into_boxed_str(),
            keyed,
        })
    }

    /// Whether the secret starts with `whsec_`, as every Stripe signing secret does. A `false` here
    /// usually means an API key or another secret was configured by mistake: callers should warn.
    ///
    /// ```
    /// use stripe_webhook_verify::Secret;
    ///
    /// assert!(Secret::new("whsec_test_secret")?.has_whsec_prefix());
    /// assert!(!Secret::new("sk_live_oops")?.has_whsec_prefix());
    /// # Ok::<(), stripe_webhook_verify::ConfigError>(())
    /// ```
    pub fn has_whsec_prefix(&self) -> bool {
        self.value.starts_with(WHSEC_PREFIX)
    }

    /// The HMAC state keyed with this secret, ready for the message.
    pub(crate) fn keyed(&self) -> &HmacSha256 {
        &self.keyed
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has_whsec_prefix() {
            f.write_str("Secret(whsec_…redacted)")
        } else {
            f.write_str("Secret(…redacted)")
        }
    }
}

/// Parses a comma-separated secret list (`"whsec_a,whsec_b"`, e.g. as read from an environment
/// variable) that the caller calls `name`: errors say where the bad secret came from as
/// `{name} element {n}` (1-based), never what it is. Each element is validated as by
/// [`Secret::new`]; nothing is trimmed, so `"whsec_a, whsec_b"` is an error naming element 2.
///
/// ```
/// use stripe_webhook_verify::{ConfigError, SecretSource, parse_secrets_named};
///
/// let secrets = parse_secrets_named("WEBHOOK_SECRETS", "whsec_old,whsec_new")?;
/// assert_eq!(secrets.len(), 2);
///
/// let err = parse_secrets_named("WEBHOOK_SECRETS", "whsec_old, whsec_new").unwrap_err();
/// assert_eq!(
///     err,
///     ConfigError::SecretWhitespace(SecretSource::Element {
///         list: "WEBHOOK_SECRETS".into(),
///         index: 2
///     })
/// );
/// assert!(err.to_string().starts_with("WEBHOOK_SECRETS element 2 has leading/trailing whitespace"));
/// assert_eq!(
///     parse_secrets_named("--secret", "").unwrap_err().to_string(),
///     "--secret is empty: set it to one or more comma-separated signing secrets (whsec_...)"
/// );
/// # Ok::<(), ConfigError>(())
/// ```
///
/// # Errors
/// [`ConfigError::EmptySecretList`] for an empty string, else the first refused element's error.
pub fn parse_secrets_named(name: &str, list: &str) -> Result<Vec<Secret>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::EmptySecretList(name.to_owned()));
    }
    list.split(',')
        .enumerate()
        .map(|(i, value)| {
            Secret::from_source(
                value.to_owned(),
                SecretSource::Element {
                    list: name.to_owned(),
                    index: i + 1,
                },
            )
        })
        .collect()
}
