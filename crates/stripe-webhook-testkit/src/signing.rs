//! Signing test webhooks as Stripe does, through the verifier crate's own `sign` path.

use std::time::{SystemTime, UNIX_EPOCH};

use stripe_webhook_verify::{Secret, signature_header};

/// Seconds since the Unix epoch, now.
///
/// # Panics
/// If the clock is before 1970.
pub fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

/// A `Stripe-Signature` header for `body`, signed at `timestamp` with one secret.
///
/// # Panics
/// If `secret` is not a valid signing secret (tests pass literals).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let secret = Secret::new(secret).expect("valid test secret");
    signature_header(&[&secret], timestamp, body)
}

/// A `Stripe-Signature` header for `body`, signed now.
///
/// # Panics
/// See [`sign`].
pub fn sign_now(secret: &str, body: &[u8]) -> String {
    sign(secret, unix_now(), body)
}
