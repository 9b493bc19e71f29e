//! The verifier, its clock and tolerance, and the signing helpers that share its HMAC path.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::Mac;
use subtle::{Choice, ConstantTimeEq};

use crate::error::{ConfigError, VerifyError};
use crate::header::SignatureHeader;
use crate::secret::Secret;

/// The default tolerance and maximum future skew, in seconds (Stripe's SDK default).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// How old a signed timestamp may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tolerance {
    /// Accept if `now - t <= seconds`.
    Seconds(NonZeroU64),
    /// No timestamp check at all (neither age nor future skew): for re-verifying an archive or a
    /// backfill. Must be chosen explicitly; a zero tolerance is a configuration error.
    Disabled,
}

impl Tolerance {
    /// A tolerance of `secs` seconds.
    ///
    /// # Errors
    /// [`ConfigError::ZeroTolerance`] for 0: use [`Tolerance::Disabled`] to turn the check off.
    pub fn seconds(secs: u64) -> Result<Tolerance, ConfigError> {
        NonZeroU64::new(secs)
            .map(Tolerance::Seconds)
            .ok_or(ConfigError::ZeroTolerance)
    }
}

impl Default for Tolerance {
    /// 300 seconds.
    fn default() -> Tolerance {
        Tolerance::Seconds(NonZeroU64::new(DEFAULT_TOLERANCE_SECS).expect("300 is not zero"))
    }
}

/// A source of the current time, injectable for tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch (negative before it).
    fn now_unix_secs(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_secs(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
        }
    }
}

/// A clock stopped at the given Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix_secs(&self) -> i64 {
        self.0
    }
}

/// A successful verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The header's `t`, seconds since the Unix epoch.
    pub timestamp: i64,
    /// Index (in the verifier's secret list) of the first secret whose signature matched.
    pub secret_index: usize,
}

/// Verifies `Stripe-Signature` headers against one or more secrets, with the strict profile.
///
/// Cheap to clone (the secrets are shared). `Debug` is redacted.
#[derive(Clone)]
pub struct Verifier {
    secrets: Arc<[Secret]>,
    tolerance: Tolerance,
    max_future_skew_secs: u64,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// A verifier accepting a signature under any of `secrets`, with the default tolerance (300 s),
    /// maximum future skew (300 s) and the system clock.
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
            clock: Arc::new(SystemClock),
        })
    }

    /// Sets how old a timestamp may be.
    #[must_use]
    pub fn with_tolerance(self, tolerance: Tolerance) -> Verifier {
        Verifier { tolerance, ..self }
    }

    /// Sets how far in the future a timestamp may be (default 300 s).
    #[must_use]
    pub fn with_max_future_skew(self, secs: u64) -> Verifier {
        Verifier {
            max_future_skew_secs: secs,
            ..self
        }
    }

    /// Sets the clock [`Verifier::verify`] reads.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock + 'static) -> Verifier {
        Verifier {
            clock: Arc::new(clock),
            ..self
        }
    }

    /// The number of configured secrets.
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// The configured secrets, e.g. to warn about those without the `whsec_` prefix.
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// The configured tolerance.
    pub fn tolerance(&self) -> Tolerance {
        self.tolerance
    }

    /// Verifies `body` (the raw request bytes) against the `Stripe-Signature` header at the
    /// clock's current time.
    ///
    /// # Errors
    /// See [`VerifyError`].
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<Verified, VerifyError> {
        self.verify_at(body, header, self.clock.now_unix_secs())
    }

    /// Verifies `body` against the header as of `now_unix_secs`.
    ///
    /// Order: header size and grammar (no HMAC yet), then the signature under each secret (one
    /// HMAC per secret, compared in constant time with every candidate), then the timestamp, so a
    /// `Stale` or `Future` error always concerns an authentic signature.
    ///
    /// # Errors
    /// See [`VerifyError`].
    pub fn verify_at(
        &self,
        body: &[u8],
        header: Option<&str>,
        now_unix_secs: i64,
    ) -> Result<Verified, VerifyError> {
        let verified = self.verify_ignoring_timestamp(body, header)?;
        self.check_timestamp(verified.timestamp, now_unix_secs)?;
        Ok(verified)
    }

    /// [`Verifier::precheck_at`] at the clock's current time.
    ///
    /// # Errors
    /// See [`Verifier::precheck_at`].
    pub fn precheck(&self, header: Option<&str>) -> Result<(), VerifyError> {
        self.precheck_at(header, self.clock.now_unix_secs())
    }

    /// Applies every rule that does not need the body, with no HMAC work: for servers that refuse
    /// a webhook from its headers before they buffer its body.
    ///
    /// The rules: missing header, size cap, grammar, no `v1`, candidate cap and, unless the
    /// tolerance is [`Tolerance::Disabled`], the stale and future checks.
    ///
    /// **Passing the pre-check never means authentic**: anyone can write a well-formed, fresh
    /// header. Call [`Verifier::verify_at`] on the body before trusting it.
    ///
    /// For a given header and time, an error here is the error `verify_at` gives for that header
    /// with any body, with one exception: `Stale` and `Future` are reported here before the
    /// signature is checked, so they need not concern an authentic signature (`verify_at` would
    /// report a forged, stale header as [`VerifyError::NoMatchingSignature`]). Whatever `verify_at`
    /// accepts, the pre-check accepts.
    ///
    /// # Errors
    /// Every [`VerifyError`] except `NoMatchingSignature` and `DuplicateHeader`.
    pub fn precheck_at(&self, header: Option<&str>, now_unix_secs: i64) -> Result<(), VerifyError> {
        let parsed = SignatureHeader::parse(header.unwrap_or_default())?;
        self.check_timestamp(parsed.timestamp(), now_unix_secs)
    }

    /// The stale and future checks of `t` at `now`, unless the tolerance is disabled.
    fn check_timestamp(&self, t: i64, now: i64) -> Result<(), VerifyError> {
        match self.tolerance {
            Tolerance::Seconds(tolerance) => {
                check_time(t, now, tolerance.get(), self.max_future_skew_secs)
            }
            Tolerance::Disabled => Ok(()),
        }
    }

    /// Verifies the signature only, whatever the timestamp: for archive audits and backfills.
    ///
    /// # Errors
    /// Every [`VerifyError`] except `Stale` and `Future`.
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
            .field("clock", &self.clock)
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
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp.to_string().as_bytes(), body))
}

/// A `Stripe-Signature` header, `t=<timestamp>,v1=<sig1>[,v1=<sig2>...]`, with one `v1` per secret
/// in order (as Stripe sends during a secret rotation).
pub fn signature_header(secrets: &[&Secret], timestamp: i64, body: &[u8]) -> String {
    let digits = timestamp.to_string();
    let mut header = format!("t={digits}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac(secret, digits.as_bytes(), body)));
    }
    header
}
