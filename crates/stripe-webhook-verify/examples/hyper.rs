//! Verifying Stripe webhooks in a plain hyper 1 service.
//!
//! ```text
//! STRIPE_WEBHOOK_SECRET=whsec_... cargo run --example hyper --features http
//! stripe listen --forward-to localhost:3000/webhook/stripe
//! ```
//!
//! `POST /webhook/stripe` first refuses what the headers alone condemn (a missing, duplicated,
//! malformed, stale or future `Stripe-Signature`) without reading the body, then reads the body up
//! to a limit and verifies it. A production server also needs timeouts and a connection limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use stripe_webhook_verify::{Verifier, VerifyError, parse_secrets_named};

/// Stripe's events are far smaller; a larger body is refused while it is read.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One request in, one response out.
async fn handle<B>(verifier: &Verifier, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.method() != Method::POST || request.uri().path() != "/webhook/stripe" {
        return answer(StatusCode::NOT_FOUND, "not found");
    }
    // One receipt time for both checks: a slow body does not make a fresh signature stale.
    let received_at = unix_now();
    // No HMAC work and no body yet. A pass is not authentication: the body is verified below.
    if let Err(e) = verifier.precheck_headers(request.headers(), received_at) {
        return refuse(&e);
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return answer(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        Err(_) => return answer(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    match verifier.verify_headers(&body, &parts.headers, received_at) {
        Ok(_verified) => {
            // Store `body` (the exact bytes that were verified) durably here, then answer 200.
            answer(StatusCode::OK, "received")
        }
        Err(e) => refuse(&e),
    }
}

/// 400 with a message safe for the sender; the details go to the operator's log.
fn refuse(e: &VerifyError) -> Response<Full<Bytes>> {
    eprintln!("rejected webhook ({}): {e}", e.label());
    answer(StatusCode::BAD_REQUEST, e.public_message())
}

/// Now, in Unix seconds: the time the signature's age is checked against.
fn unix_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

fn answer(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The name is for error messages: "STRIPE_WEBHOOK_SECRET element 2 is blank: ...".
    let secrets = std::env::var("STRIPE_WEBHOOK_SECRET")?;
    let verifier = Verifier::new(parse_secrets_named("STRIPE_WEBHOOK_SECRET", &secrets)?)?;
    let verifier = Arc::new(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!(
        "listening on http://{}/webhook/stripe",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let verifier = Arc::clone(&verifier);
        let service = service_fn(move |request| {
            let verifier = Arc::clone(&verifier);
            async move { Ok::<_, Infallible>(handle(&verifier, request).await) }
        });
        tokio::spawn(async move {
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::Frame;
    use stripe_webhook_verify::{Secret, signature_header};

    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    fn secret() -> Secret {
        Secret::new("whsec_example").expect("valid")
    }

    /// A body that fails the test if anything reads it.
    struct Unread;

    impl Body for Unread {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            panic!("the body was read although the headers condemn the request");
        }
    }

    /// What the service answers to `method /webhook/stripe` with these signature fields and body.
    async fn answer<B>(method: Method, signatures: &[&str], body: B) -> (StatusCode, String)
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let verifier = Verifier::new(vec![secret()]).expect("one secret");
        let mut request = Request::builder().method(method).uri("/webhook/stripe");
        for value in signatures {
            request = request.header("stripe-signature", *value);
        }
        let response = handle(&verifier, request.body(body).expect("request")).await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
    }

    fn full(body: &[u8]) -> Full<Bytes> {
        Full::new(Bytes::copy_from_slice(body))
    }

    #[tokio::test]
    async fn a_signed_webhook_gets_200() {
        let signed = signature_header(&[&secret()], unix_now(), BODY);
        assert_eq!(
            answer(Method::POST, &[&signed], full(BODY)).await,
            (StatusCode::OK, "received".to_owned())
        );
    }

    #[tokio::test]
    async fn headers_that_condemn_the_request_are_refused_before_the_body_is_read() {
        let stale = signature_header(&[&secret()], unix_now() - 301, BODY);
        let signed = signature_header(&[&secret()], unix_now(), BODY);
        let refused = |message: &str| (StatusCode::BAD_REQUEST, message.to_owned());
        assert_eq!(
            answer(Method::POST, &[&stale], Unread).await,
            refused("timestamp outside the tolerance zone")
        );
        assert_eq!(
            answer(Method::POST, &[&signed, &signed], Unread).await,
            refused("more than one Stripe-Signature header")
        );
        assert_eq!(
            answer(Method::POST, &["t=1700000000"], Unread).await,
            refused("malformed Stripe-Signature header")
        );
        assert_eq!(
            answer(Method::POST, &[], Unread).await,
            refused("missing Stripe-Signature header")
        );
    }

    #[tokio::test]
    async fn a_forged_or_oversized_body_is_refused() {
        let signed = signature_header(&[&secret()], unix_now(), BODY);
        assert_eq!(
            answer(Method::POST, &[&signed], full(b"{}")).await,
            (
                StatusCode::BAD_REQUEST,
                "signature verification failed".to_owned()
            )
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let signed_big = signature_header(&[&secret()], unix_now(), &big);
        assert_eq!(
            answer(Method::POST, &[&signed_big], full(&big)).await,
            (StatusCode::PAYLOAD_TOO_LARGE, "body too large".to_owned())
        );
    }

    #[tokio::test]
    async fn other_methods_are_not_found() {
        assert_eq!(
            answer(Method::GET, &[], Unread).await,
            (StatusCode::NOT_FOUND, "not found".to_owned())
        );
    }
}
