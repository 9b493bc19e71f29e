//! The verifier, its tolerance, and the signing helpers that share its HMAC path.
//!
//! Time comes in one way: as the `now_unix_secs` argument of the calls that check it
//! ([`Verifier::verify`], [`Verifier::precheck`] and their `http::HeaderMap` forms). The verifier
//! reads no clock of its own, so it is a pure function of its inputs: a server passes the time it
//! received the request (the same instant for the pre-check before the body and the verification
//! after it, however long the body took), a test or a replay tool passes a fixed time, and nothing
//! has to be configured on a shared `Verifier` for either. Archive audits, where no time applies,
//! call [`Verifier::verify_ignoring_timestamp`]: the one way to skip the age check, visible where
//! it is used rather than hidden in a verifier's configuration.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use hmac::Mac;
use subtle::{Choice, ConstantTimeEq};

use crate::error::{ConfigError, VerifyError};
use crate::header::SignatureHeader;
use crate::secret::Secret;

/// The default tolerance and maximum future skew, in seconds (Stripe's SDK default).
///
/// ```
/// use stripe_webhook_verify::{DEFAULT_TOLERANCE_SECS, Tolerance};
///
/// assert_eq!(DEFAULT_TOLERANCE_SECS, 300);
/// assert_eq!(Tolerance::default(), Tolerance::seconds(DEFAULT_TOLERANCE_SECS)?);
/// # Ok::<(), stripe_webhook_verify::ConfigError>(())
/// ```
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// How old a signed timestamp may be: a positive number of seconds, [`DEFAULT_TOLERANCE_SECS`]
/// by default. A signature is stale when `now - t > tolerance` (`now - t == tolerance` is
/// accepted).
///
/// There is no "disabled" tolerance: a verifier always checks the time it is given, and an
/// archive audit calls [`Verifier::verify_ignoring_timestamp`] instead.
///
/// ```
/// use stripe_webhook_verify::{ConfigError, Tolerance};
///
/// let ten_minutes = Tolerance::seconds(600)?;
/// assert_ne!(ten_minutes, Tolerance::default());
/// assert_eq!(Tolerance::seconds(0), Err(ConfigError::ZeroTolerance));
/// # Ok::<(), ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tolerance(NonZeroU64);

impl Tolerance {
    /// A tolerance of `secs` seconds.
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Tolerance, Verifier, VerifyError, signature_header};
    ///
    /// let secret = Secret::new("whsec_test_secret")?;
    /// let verifier = Verifier::new(vec![secret.clone()])?.with_tolerance(Tolerance::seconds(60)?);
    /// let header = signature_header(&[&secret], 1_700_000_000, b"{}");
    /// assert!(verifier.verify(b"{}", Some(&header), 1_700_000_060).is_ok());
    /// assert_eq!(
    ///     verifier.verify(b"{}", Some(&header), 1_700_000_061),
    ///     Err(VerifyError::Stale { age_secs: 61, tolerance_secs: 60 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::ZeroTolerance`] for 0: an archive audit calls
    /// [`Verifier::verify_ignoring_timestamp`] instead.
    pub fn seconds(secs: u64) -> Result<Tolerance, ConfigError> {
        NonZeroU64::new(secs)
            .map(Tolerance)
            .ok_or(ConfigError::ZeroTolerance)
    }
}

impl Default for Tolerance {
    /// [`DEFAULT_TOLERANCE_SECS`] (300 seconds).
    fn default() -> Tolerance {
        Tolerance(NonZeroU64::new(DEFAULT_TOLERANCE_SECS).expect("300 is not zero"))
    }
}

/// A successful verification: when the webhook was signed, and with which secret.
///
/// ```
/// use stripe_webhook_verify::{Secret, Verified, Verifier, signature_header};
///
/// let (old, new) = (Secret::new("whsec_old")?, Secret::new("whsec_new")?);
/// let verifier = Verifier::new(vec![old, new.clone()])?;
/// let header = signature_header(&[&new], 1_700_000_000, b"{}");
/// assert_eq!(
///     verifier.verify(b"{}", Some(&header), 1_700_000_000)?,
///     Verified { timestamp: 1_700_000_000, secret_index: 1 }
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The header's `t`, seconds since the Unix epoch.
    pub timestamp: i64,
    /// Index (in the verifier's secret list) of the first secret whose signature matched.
    pub secret_index: usize,
}

/// Verifies `Stripe-Signature` headers against one or more secrets, with the strict profile.
///
/// One entry point per input shape, each taking the time to check against as Unix seconds:
///
/// | input | verify the body | pre-check the header, no HMAC |
/// |---|---|---|
/// | header value, `Option<&str>` | [`Verifier::verify`] | [`Verifier::precheck`] |
/// | `http::HeaderMap` (feature `http`) | `verify_headers` | `precheck_headers` |
///
/// and [`Verifier::verify_ignoring_timestamp`] for archive audits.
///
/// Cheap to clone (the secrets are shared). `Debug` is redacted.
///
/// ```
/// use stripe_webhook_verify::{Secret, Verifier};
///
/// let verifier = Verifier::new(vec![Secret::new("whsec_test_secret")?])?;
/// assert_eq!(
///     format!("{verifier:?}"),
///     "Verifier { secrets: [Secret(whsec_…redacted)], tolerance: Tolerance(300), \
///      max_future_skew_secs: 300 }"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    secrets: Arc<[Secret]>,
    tolerance: Tolerance,
    max_future_skew_secs: u64,
}

impl Verifier {
    /// A verifier accepting a signature under any of `secrets`, with the default tolerance and
    /// maximum future skew (300 s each).
    ///
    /// ```
    /// use stripe_webhook_verify::{ConfigError, Secret, Verifier};
    ///
    /// let verifier = Verifier::new(vec![Secret::new("whsec_a")?, Secret::new("whsec_b")?])?;
    /// assert_eq!(verifier.secrets().len(), 2);
    /// assert_eq!(Verifier::new(vec![]).unwrap_err(), ConfigError::NoSecrets);
    /// # Ok::<(), ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::NoSecrets`] for an empty list.
    pub fn new(secrets: Vec<Secret>) -> Result<Verifier, ConfigError> {
        if secrets.is_empty() {
            return Err(ConfigError::NoSecrets);
        }
        Ok(Verifier {
            secrets: secrets.into(),
            tolerance: Tolerance::default(),
            max_future_skew_secs: DEFAULT_TOLERANCE_SECS,
        })
    }

    /// Sets how old a timestamp may be (default 300 s).
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Tolerance, Verifier};
    ///
    /// let secret = Secret::new("whsec_test_secret")?;
    /// let verifier = Verifier::new(vec![secret])?.with_tolerance(Tolerance::seconds(600)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_tolerance(self, tolerance: Tolerance) -> Verifier {
        Verifier { tolerance, ..self }
    }

    /// Sets how far in the future a timestamp may be (default 300 s; 0 refuses any timestamp
    /// ahead of `now`).
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Verifier, VerifyError, signature_header};
    ///
    /// let secret = Secret::new("whsec_test_secret")?;
    /// let verifier = Verifier::new(vec![secret.clone()])?.with_max_future_skew(5);
    /// let header = signature_header(&[&secret], 1_700_000_010, b"{}");
    /// assert_eq!(
    ///     verifier.verify(b"{}", Some(&header), 1_700_000_000),
    ///     Err(VerifyError::Future { ahead_secs: 10, max_skew_secs: 5 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_max_future_skew(self, secs: u64) -> Verifier {
        Verifier {
            max_future_skew_secs: secs,
            ..self
        }
    }

    /// The configured secrets, in order ([`Verified::secret_index`] indexes this slice), e.g. to
    /// warn about those without the `whsec_` prefix.
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Verifier};
    ///
    /// let verifier = Verifier::new(vec![Secret::new("whsec_a")?, Secret::new("sk_test_a")?])?;
    /// let suspicious: Vec<usize> = (0..verifier.secrets().len())
    ///     .filter(|&i| !verifier.secrets()[i].has_whsec_prefix())
    ///     .collect();
    /// assert_eq!(suspicious, [1]);
    /// # Ok::<(), stripe_webhook_verify::ConfigError>(())
    /// ```
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// Verifies `body` (the raw request bytes) against the `Stripe-Signature` header value, as of
    /// `now_unix_secs` (seconds since the Unix epoch: the time the request was received).
    ///
    /// Order: header size and grammar (no HMAC yet), then the signature under each secret (one
    /// HMAC per secret, compared in constant time with every candidate), then the timestamp, so a
    /// `Stale` or `Future` error always concerns an authentic signature.
    ///
    /// ```
    /// use std::time::{SystemTime, UNIX_EPOCH};
    /// use stripe_webhook_verify::{Secret, Verifier, VerifyError, signature_header};
    ///
    /// let secret = Secret::new("whsec_test_secret")?;
    /// let verifier = Verifier::new(vec![secret.clone()])?;
    /// let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    /// let body = br#"{"id":"evt_1"}"#;
    /// let header = signature_header(&[&secret], now, body);
    ///
    /// let verified = verifier.verify(body, Some(&header), now)?;
    /// assert_eq!((verified.timestamp, verified.secret_index), (now, 0));
    /// assert_eq!(verifier.verify(body, None, now), Err(VerifyError::MissingHeader));
    /// assert_eq!(
    ///     verifier.verify(b"{}", Some(&header), now),
    ///     Err(VerifyError::NoMatchingSignature)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Every [`VerifyError`] except `DuplicateHeader`.
    pub fn verify(
        &self,
        body: &[u8],
        header: Option<&str>,
        now_unix_secs: i64,
    ) -> Result<Verified, VerifyError> {
        let verified = self.verify_ignoring_timestamp(body, header)?;
        self.check_timestamp(verified.timestamp, now_unix_secs)?;
        Ok(verified)
    }

    /// Applies every rule that does not need the body, as of `now_unix_secs`, with no HMAC work:
    /// for servers that refuse a webhook from its headers before they buffer its body.
    ///
    /// The rules: missing header, size cap, grammar, no `v1`, candidate cap, and the stale and
    /// future checks.
    ///
    /// **Passing the pre-check never means authentic**: anyone can write a well-formed, fresh
    /// header. Verify the body before trusting it: with [`Verifier::verify`], or, at the same
    /// `now` after a passed pre-check, with [`Verifier::verify_ignoring_timestamp`] (the time was
    /// just checked).
    ///
    /// For a given header and time, an error here is the error `verify` gives for that header
    /// with any body, with one exception: `Stale` and `Future` are reported here before the
    /// signature is checked, so they need not concern an authentic signature (`verify` would
    /// report a forged, stale header as [`VerifyError::NoMatchingSignature`]). Whatever `verify`
    /// accepts, the pre-check accepts.
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Verifier, VerifyError};
    ///
    /// let verifier = Verifier::new(vec![Secret::new("whsec_test_secret")?])?;
    /// // Well-formed and fresh, but forged: the pre-check cannot tell.
    /// let forged = format!("t=1700000000,v1={}", "0".repeat(64));
    /// assert_eq!(verifier.precheck(Some(&forged), 1_700_000_000), Ok(()));
    /// // Stale: refused before the body is read.
    /// assert_eq!(
    ///     verifier.precheck(Some(&forged), 1_700_000_400),
    ///     Err(VerifyError::Stale { age_secs: 400, tolerance_secs: 300 })
    /// );
    /// assert_eq!(verifier.precheck(Some("t=1700000000"), 0), Err(VerifyError::NoV1Signature));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Every [`VerifyError`] except `NoMatchingSignature` and `DuplicateHeader`.
    pub fn precheck(&self, header: Option<&str>, now_unix_secs: i64) -> Result<(), VerifyError> {
        let parsed = SignatureHeader::parse(header.unwrap_or_default())?;
        self.check_timestamp(parsed.timestamp(), now_unix_secs)
    }

    /// The stale and future checks of `t` at `now`.
    fn check_timestamp(&self, t: i64, now: i64) -> Result<(), VerifyError> {
        check_time(t, now, self.tolerance.0.get(), self.max_future_skew_secs)
    }

    /// Verifies the signature only, whatever the timestamp: every rule of [`Verifier::verify`]
    /// but the stale and future checks. For re-verifying archived webhooks (their signatures are
    /// as old as the archive), and for the body after a [`Verifier::precheck`] that already
    /// checked the time. Never on its own on a live endpoint: without a time check, a captured
    /// webhook can be replayed forever.
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Verifier, VerifyError, signature_header};
    ///
    /// let secret = Secret::new("whsec_test_secret")?;
    /// let verifier = Verifier::new(vec![secret.clone()])?;
    /// // Signed in 2015, audited today.
    /// let header = signature_header(&[&secret], 1_420_070_400, b"{}");
    /// assert_eq!(verifier.verify_ignoring_timestamp(b"{}", Some(&header))?.timestamp, 1_420_070_400);
    /// assert_eq!(
    ///     verifier.verify_ignoring_timestamp(b"{ }", Some(&header)),
    ///     Err(VerifyError::NoMatchingSignature)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Every [`VerifyError`] except `Stale`, `Future` and `DuplicateHeader`.
    pub fn verify_ignoring_timestamp(
        &self,
        body: &[u8],
        header: Option<&str>,
    ) -> Result<Verified, VerifyError> {
        let parsed = SignatureHeader::parse(header.unwrap_or_default())?;
        let digits = parsed.timestamp_digits().as_bytes();
        self.secrets
            .iter()
            .position(|secret| {
                let expected = mac(secret, digits, body);
                let hit = parsed
                    .signatures()
                    .iter()
                    .fold(Choice::from(0), |hit, candidate| {
                        hit | expected.ct_eq(candidate)
                    });
                bool::from(hit)
            })
            .map(|secret_index| Verified {
                timestamp: parsed.timestamp(),
                secret_index,
            })
            .ok_or(VerifyError::NoMatchingSignature)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets)
            .field("tolerance", &self.tolerance)
            .field("max_future_skew_secs", &self.max_future_skew_secs)
            .finish()
    }
}

fn check_time(t: i64, now: i64, tolerance: u64, max_skew: u64) -> Result<(), VerifyError> {
    let delta = i128::from(now) - i128::from(t);
    let secs = u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX);
    if delta >= 0 && secs > tolerance {
        Err(VerifyError::Stale {
            age_secs: secs,
            tolerance_secs: tolerance,
        })
    } else if delta < 0 && secs > max_skew {
        Err(VerifyError::Future {
            ahead_secs: secs,
            max_skew_secs: max_skew,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
thread_local! {
    /// HMAC computations on this thread, so tests can prove when HMAC work happens.
    pub(crate) static HMAC_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// HMAC-SHA256 over `digits`, `.`, `body` with the secret's pre-keyed state: the one code path
/// shared by verification and signing.
fn mac(secret: &Secret, digits: &[u8], body: &[u8]) -> [u8; 32] {
    #[cfg(test)]
    HMAC_CALLS.with(|c| c.set(c.get() + 1));
    let mut mac = secret.keyed().clone();
    mac.update(digits);
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `v1` signature of `body` at `timestamp` under `secret`: 64 lowercase hex characters.
///
/// ```
/// use stripe_webhook_verify::{Secret, Verifier, sign};
///
/// let secret = Secret::new("whsec_test_secret")?;
/// let v1 = sign(&secret, 1_700_000_000, b"{}");
/// assert_eq!(v1.len(), 64);
/// let header = format!("t=1700000000,v1={v1}");
/// assert!(Verifier::new(vec![secret])?.verify(b"{}", Some(&header), 1_700_000_000).is_ok());
/// # Ok::<(), stripe_webhook_verify::ConfigError>(())
/// ```
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp.to_string().as_bytes(), body))
}

/// A `Stripe-Signature` header, `t=<timestamp>,v1=<sig1>[,v1=<sig2>...]`, with one `v1` per secret
/// in order (as Stripe sends during a secret rotation).
///
/// ```
/// use stripe_webhook_verify::{Secret, sign, signature_header};
///
/// let (old, new) = (Secret::new("whsec_old")?, Secret::new("whsec_new")?);
/// let header = signature_header(&[&old, &new], 1_700_000_000, b"{}");
/// assert_eq!(
///     header,
///     format!(
///         "t=1700000000,v1={},v1={}",
///         sign(&old, 1_700_000_000, b"{}"),
///         sign(&new, 1_700_000_000, b"{}")
///     )
/// );
/// # Ok::<(), stripe_webhook_verify::ConfigError>(())
/// ```
pub fn signature_header(secrets: &[&Secret], timestamp: i64, body: &[u8]) -> String {
    let digits = timestamp.to_string();
    let mut header = format!("t={digits}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac(secret, digits.as_bytes(), body)));
    }
    header
}
