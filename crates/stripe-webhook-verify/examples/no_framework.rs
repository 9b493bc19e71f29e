//! Verifying Stripe webhooks with no HTTP framework: a body, a header value and the time in.
//!
//! ```text
//! cargo run -p stripe-webhook-verify --example no_framework
//! ```
//!
//! Whatever HTTP stack you use, hand the verifier the raw body bytes (before any JSON parsing), the
//! `Stripe-Signature` header value and the time the request arrived; parse the body only after it
//! verified.

use std::time::{SystemTime, UNIX_EPOCH};

use stripe_webhook_verify::{Secret, Verifier, VerifyError, parse_secrets_named, signature_header};

/// What your handler would answer to a request received at `received_at` (Unix seconds).
fn handle(
    verifier: &Verifier,
    body: &[u8],
    header: Option<&str>,
    received_at: i64,
) -> (u16, String) {
    match verifier.verify(body, header, received_at) {
        // Verified: now it is safe to parse and act on the body.
        Ok(verified) => (
            200,
            format!(
                "verified (signed at {}, secret #{})",
                verified.timestamp,
                verified.secret_index + 1
            ),
        ),
        // Any signature problem is a 400; the error names the reason and never a secret or MAC.
        Err(e @ VerifyError::Stale { .. }) => (400, format!("stale, check clocks: {e}")),
        Err(e) => (400, format!("{}: {e}", e.label())),
    }
}

/// Two secrets, as during a rotation. In production: the list from your configuration, named as
/// your users know it, e.g.
/// `parse_secrets_named("STRIPE_WEBHOOK_SECRET", &std::env::var("STRIPE_WEBHOOK_SECRET")?)`.
fn verifier() -> Result<Verifier, Box<dyn std::error::Error>> {
    let secrets = parse_secrets_named("example", "whsec_old_rotating_out,whsec_new_current")?;
    Ok(Verifier::new(secrets)?)
}

const BODY: &[u8] =
    br#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{}}}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifier = verifier()?;
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let new = Secret::new("whsec_new_current")?;
    let header = signature_header(&[&new], now, BODY);

    for (name, body, header) in [
        ("genuine", BODY, Some(header.as_str())),
        (
            "tampered body",
            &b"{\"id\":\"evt_1\"}"[..],
            Some(header.as_str()),
        ),
        ("no header", BODY, None),
        ("garbage header", BODY, Some("t=abc,v1=zz")),
    ] {
        let (status, message) = handle(&verifier, body, header, now);
        println!("{name:>15}: {status} {message}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn answers_200_only_for_a_genuine_fresh_webhook() {
        let verifier = verifier().expect("verifier");
        let new = Secret::new("whsec_new_current").expect("secret");
        let header = signature_header(&[&new], NOW, BODY);
        assert_eq!(
            handle(&verifier, BODY, Some(&header), NOW),
            (200, format!("verified (signed at {NOW}, secret #2)"))
        );
        assert_eq!(handle(&verifier, b"{}", Some(&header), NOW).0, 400);
        assert_eq!(
            handle(&verifier, BODY, None, NOW),
            (
                400,
                "missing_header: Stripe-Signature header is missing or empty".to_owned()
            )
        );
        let (status, message) = handle(&verifier, BODY, Some(&header), NOW + 301);
        assert_eq!(status, 400);
        assert!(message.starts_with("stale, check clocks: "), "{message}");
    }
}
