//! Verifying Stripe webhooks in an axum handler.
//!
//! ```text
//! STRIPE_WEBHOOK_SECRET=whsec_... cargo run --example axum --features http
//! stripe listen --forward-to localhost:3000/webhook/stripe
//! ```
//!
//! The handler verifies the raw body against the request's `Stripe-Signature` field and answers 200,
//! or 400 with a message safe for the sender. (axum's `Bytes` extractor buffers at most 2 MB by
//! default; see `examples/hyper.rs` for refusing from the headers before the body is read.)

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use stripe_webhook_verify::{Verifier, parse_secrets_named};

/// `POST /webhook/stripe`: the raw body and the headers in, 200 or 400 out.
async fn webhook(
    State(verifier): State<Arc<Verifier>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    // The signature's age is checked against the time the request arrived.
    match verifier.verify_headers(&body, &headers, unix_now()) {
        Ok(_verified) => {
            // Store `body` (the exact bytes that were verified) durably here, then answer 200.
            (StatusCode::OK, "received")
        }
        Err(e) => {
            // `e` is for the operator, `e.label()` for metrics, `e.public_message()` for the sender.
            eprintln!("rejected webhook ({}): {e}", e.label());
            (StatusCode::BAD_REQUEST, e.public_message())
        }
    }
}

/// Now, in Unix seconds: the time the signature's age is checked against.
fn unix_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

fn app(verifier: Verifier) -> Router {
    Router::new()
        .route("/webhook/stripe", post(webhook))
        .with_state(Arc::new(verifier))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The name is for error messages: "STRIPE_WEBHOOK_SECRET element 2 is blank: ...".
    let secrets = std::env::var("STRIPE_WEBHOOK_SECRET")?;
    let verifier = Verifier::new(parse_secrets_named("STRIPE_WEBHOOK_SECRET", &secrets)?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!(
        "listening on http://{}/webhook/stripe",
        listener.local_addr()?
    );
    axum::serve(listener, app(verifier)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use stripe_webhook_verify::{Secret, signature_header};
    use tower::ServiceExt;

    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    fn secret() -> Secret {
        Secret::new("whsec_example").expect("valid")
    }

    /// What the app answers to `POST /webhook/stripe` with these signature fields and body.
    async fn answer(signatures: &[&str], body: &'static [u8]) -> (StatusCode, String) {
        let verifier = Verifier::new(vec![secret()]).expect("one secret");
        let mut request = Request::post("/webhook/stripe");
        for value in signatures {
            request = request.header("stripe-signature", *value);
        }
        let request = request.body(Body::from(body)).expect("request");
        let response = app(verifier).oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
    }

    #[tokio::test]
    async fn a_signed_webhook_gets_200() {
        let signed = signature_header(&[&secret()], unix_now(), BODY);
        assert_eq!(
            answer(&[&signed], BODY).await,
            (StatusCode::OK, "received".to_owned())
        );
    }

    #[tokio::test]
    async fn a_stale_webhook_gets_400() {
        let stale = signature_header(&[&secret()], unix_now() - 301, BODY);
        assert_eq!(
            answer(&[&stale], BODY).await,
            (
                StatusCode::BAD_REQUEST,
                "timestamp outside the tolerance zone".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn a_forgery_a_missing_or_a_duplicated_header_gets_400() {
        let signed = signature_header(&[&secret()], unix_now(), BODY);
        let refused = |message: &str| (StatusCode::BAD_REQUEST, message.to_owned());
        assert_eq!(
            answer(&[&signed], b"{}").await,
            refused("signature verification failed")
        );
        assert_eq!(
            answer(&[], BODY).await,
            refused("missing Stripe-Signature header")
        );
        assert_eq!(
            answer(&[&signed, &signed], BODY).await,
            refused("more than one Stripe-Signature header")
        );
    }
}
