//! Error types: [`VerifyError`] for rejected webhooks, [`ConfigError`] for refused configuration.

use std::fmt;

/// Why a `Stripe-Signature` header was rejected as malformed (see [`VerifyError::Malformed`]).
///
/// ```
/// use stripe_webhook_verify::{MalformedHeader, SignatureHeader, VerifyError};
///
/// let err = SignatureHeader::parse("t=1,t=2").unwrap_err();
/// assert_eq!(err, VerifyError::Malformed(MalformedHeader::DuplicateTimestamp));
/// assert_eq!(err.to_string(), "malformed Stripe-Signature header: more than one t= timestamp element");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedHeader {
    /// No `t=` element.
    NoTimestamp,
    /// More than one `t=` element: ambiguous, since SDKs disagree on which one wins.
    DuplicateTimestamp,
    /// A `t` value that is not 1 to 12 ASCII digits without a leading zero.
    BadTimestamp,
    /// The header field's bytes are not UTF-8 (only from an `http::HeaderMap`: a `&str` header is
    /// UTF-8 by construction).
    NotUtf8,
}

impl MalformedHeader {
    /// A stable snake_case label for logs and metrics.
    ///
    /// ```
    /// use stripe_webhook_verify::MalformedHeader;
    ///
    /// assert_eq!(MalformedHeader::BadTimestamp.label(), "bad_timestamp");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            MalformedHeader::NoTimestamp => "no_timestamp",
            MalformedHeader::DuplicateTimestamp => "duplicate_timestamp",
            MalformedHeader::BadTimestamp => "bad_timestamp",
            MalformedHeader::NotUtf8 => "not_utf8",
        }
    }
}

impl fmt::Display for MalformedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MalformedHeader::NoTimestamp => "no t= timestamp element",
            MalformedHeader::DuplicateTimestamp => "more than one t= timestamp element",
            MalformedHeader::BadTimestamp => {
                "t= is not 1 to 12 decimal digits without a leading zero"
            }
            MalformedHeader::NotUtf8 => "the header value is not valid UTF-8",
        })
    }
}

/// Why a webhook was rejected. Every variant maps to HTTP 400 at the edge (see
/// [`VerifyError::public_message`]); the `Display` text is for operators and never contains an
/// expected MAC or a secret.
///
/// ```
/// use stripe_webhook_verify::{Secret, Verifier, VerifyError};
///
/// let verifier = Verifier::new(vec![Secret::new("whsec_test_secret")?])?;
/// let err = verifier.verify(b"{}", Some("t=1700000000"), 1_700_000_000).unwrap_err();
/// assert_eq!(err, VerifyError::NoV1Signature);
/// assert_eq!(err.label(), "no_v1_signature"); // for metrics
/// assert_eq!(err.public_message(), "malformed Stripe-Signature header"); // for the sender
/// assert_eq!( // for the operator's log
///     err.to_string(),
///     "Stripe-Signature header has no v1 signature (64 lowercase hex characters)"
/// );
/// # Ok::<(), stripe_webhook_verify::ConfigError>(())
/// ```
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// No `Stripe-Signature` header, or an empty one.
    #[error("Stripe-Signature header is missing or empty")]
    MissingHeader,
    /// More than one `Stripe-Signature` header field: ambiguous, since HTTP frameworks disagree on
    /// which one counts (the first, the last, or all of them joined with `,`).
    #[error("{count} Stripe-Signature header fields; exactly one is allowed")]
    DuplicateHeader {
        /// How many `Stripe-Signature` fields the request has (2 or more).
        count: usize,
    },
    /// The header is longer than the limit; refused before any HMAC work.
    #[error("Stripe-Signature header is {len} bytes, the limit is {max} bytes")]
    HeaderTooLarge {
        /// The header's length in bytes.
        len: usize,
        /// The limit ([`crate::MAX_HEADER_BYTES`]).
        max: usize,
    },
    /// The header's timestamp is missing, duplicated or not canonical digits, or the header value is
    /// not UTF-8.
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(MalformedHeader),
    /// No `v1=` element holds 64 lowercase hex characters.
    #[error("Stripe-Signature header has no v1 signature (64 lowercase hex characters)")]
    NoV1Signature,
    /// More `v1=` elements than the limit; refused before any HMAC work.
    #[error("Stripe-Signature header has {count} v1 signatures, the limit is {max}")]
    TooManySignatures {
        /// How many `v1=` elements the header has.
        count: usize,
        /// The limit ([`crate::MAX_V1_SIGNATURES`]).
        max: usize,
    },
    /// No `v1` signature matches the body under any configured secret.
    #[error(
        "no v1 signature matches the body under any configured secret \
         (wrong signing secret for this endpoint, or the body was altered before verification)"
    )]
    NoMatchingSignature,
    /// The signature is valid but the timestamp is older than the tolerance (replay or clock skew).
    #[error("timestamp is {age_secs} s old, tolerance is {tolerance_secs} s")]
    Stale {
        /// `now - t` in seconds.
        age_secs: u64,
        /// The configured tolerance in seconds.
        tolerance_secs: u64,
    },
    /// The signature is valid but the timestamp is further in the future than the allowed skew.
    #[error(
        "timestamp is {ahead_secs} s in the future, the allowed clock skew is {max_skew_secs} s"
    )]
    Future {
        /// `t - now` in seconds.
        ahead_secs: u64,
        /// The configured maximum future skew in seconds.
        max_skew_secs: u64,
    },
}

impl VerifyError {
    /// A stable snake_case label for metrics and logs: it never changes for a given variant.
    ///
    /// ```
    /// use stripe_webhook_verify::VerifyError;
    ///
    /// let err = VerifyError::Stale { age_secs: 600, tolerance_secs: 300 };
    /// assert_eq!(err.label(), "stale_timestamp");
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader => "missing_header",
            VerifyError::DuplicateHeader { .. } => "duplicate_header",
            VerifyError::HeaderTooLarge { .. } => "header_too_large",
            VerifyError::Malformed(_) => "malformed_header",
            VerifyError::NoV1Signature => "no_v1_signature",
            VerifyError::TooManySignatures { .. } => "too_many_signatures",
            VerifyError::NoMatchingSignature => "no_matching_signature",
            VerifyError::Stale { .. } => "stale_timestamp",
            VerifyError::Future { .. } => "future_timestamp",
        }
    }

    /// A short message safe to return to the (untrusted) client in a 400 response.
    ///
    /// ```
    /// use stripe_webhook_verify::VerifyError;
    ///
    /// let err = VerifyError::Future { ahead_secs: 900, max_skew_secs: 300 };
    /// assert_eq!(err.public_message(), "timestamp outside the tolerance zone");
    /// ```
    pub fn public_message(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader => "missing Stripe-Signature header",
            VerifyError::DuplicateHeader { .. } => "more than one Stripe-Signature header",
            VerifyError::HeaderTooLarge { .. }
            | VerifyError::Malformed(_)
            | VerifyError::NoV1Signature
            | VerifyError::TooManySignatures { .. } => "malformed Stripe-Signature header",
            VerifyError::NoMatchingSignature => "signature verification failed",
            VerifyError::Stale { .. } | VerifyError::Future { .. } => {
                "timestamp outside the tolerance zone"
            }
        }
    }
}

/// Where a refused secret came from, for [`ConfigError`] messages (never the value itself).
///
/// ```
/// use stripe_webhook_verify::SecretSource;
///
/// assert_eq!(SecretSource::Single.to_string(), "the webhook signing secret");
/// let element = SecretSource::Element { list: "--secret-file s.txt".into(), index: 3 };
/// assert_eq!(element.to_string(), "--secret-file s.txt element 3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A single secret passed to [`crate::Secret::new`].
    Single,
    /// Element `index` (1-based) of a comma-separated list that the caller named `list`
    /// ([`crate::parse_secrets_named`]).
    Element {
        /// The list's name as the caller gave it: an environment variable, a flag, a file.
        list: String,
        /// 1-based position in the list.
        index: usize,
    },
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Single => f.write_str("the webhook signing secret"),
            SecretSource::Element { list, index } => write!(f, "{list} element {index}"),
        }
    }
}

/// A configuration the verifier refuses at construction time. Messages say what to fix and never
/// contain a secret.
///
/// ```
/// use stripe_webhook_verify::{ConfigError, Tolerance, Verifier};
///
/// assert_eq!(Verifier::new(vec![]).unwrap_err(), ConfigError::NoSecrets);
/// let err = Tolerance::seconds(0).unwrap_err();
/// assert_eq!(err, ConfigError::ZeroTolerance);
/// assert!(err.to_string().starts_with("tolerance must be a positive number of seconds"));
/// ```
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A secret that is empty or only whitespace.
    #[error("{0} is blank: set it to the endpoint's signing secret (whsec_...)")]
    BlankSecret(SecretSource),
    /// A secret with leading/trailing whitespace or a control character such as a newline.
    #[error(
        "{0} has leading/trailing whitespace or a newline (check your .env file); \
         it is refused rather than trimmed"
    )]
    SecretWhitespace(SecretSource),
    /// An empty secret list.
    #[error("{0} is empty: set it to one or more comma-separated signing secrets (whsec_...)")]
    EmptySecretList(String),
    /// A verifier built with no secret.
    #[error("a webhook verifier needs at least one signing secret")]
    NoSecrets,
    /// A tolerance of zero seconds (an archive audit, which checks no time, calls
    /// `Verifier::verify_ignoring_timestamp` instead).
    #[error(
        "tolerance must be a positive number of seconds; \
         to check no time at all (archive audits), call Verifier::verify_ignoring_timestamp"
    )]
    ZeroTolerance,
}
