//! Verifying Stripe webhooks inside your own service with `stripe-webhook-verify` alone.
//!
//! Whatever HTTP stack you use, hand the verifier the raw body bytes (before any JSON parsing) and
//! the `Stripe-Signature` header; parse the body only after it verified.
//!
//! Run: `cargo run -p stripe-webhook-examples --example embed_verifier`

use std::time::{SystemTime, UNIX_EPOCH};

use stripe_webhook_verify::{Secret, Verifier, VerifyError, parse_secrets, signature_header};

/// What your handler would answer.
fn handle(verifier: &Verifier, body: &[u8], header: Option<&str>) -> (u16, String) {
    match verifier.verify(body, header) {
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production: parse_secrets(&std::env::var("STRIPE_WEBHOOK_SECRET")?). Two secrets here,
    // as during a rotation.
    let secrets = parse_secrets("whsec_old_rotating_out,whsec_new_current")?;
    let verifier = Verifier::new(secrets)?;

    let body = br#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{}}}"#;
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let new = Secret::new("whsec_new_current")?;
    let header = signature_header(&[&new], now, body);

    for (name, body, header) in [
        ("genuine", &body[..], Some(header.as_str())),
        (
            "tampered body",
            &b"{\"id\":\"evt_1\"}"[..],
            Some(header.as_str()),
        ),
        ("no header", &body[..], None),
        ("garbage header", &body[..], Some("t=abc,v1=zz")),
    ] {
        let (status, message) = handle(&verifier, body, header);
        println!("{name:>15}: {status} {message}");
    }
    Ok(())
}
