//! Fixture tests: every front door's event shape (REST v1 with a stage, HTTP API v2, Function URL,
//! ALB with and without multi-value headers), text and base64 bodies, real signed Stripe bodies,
//! and every refusal, through [`Function::handle`] into a memory sink.

use crate::support;

use std::sync::Arc;

use serde_json::{Value, json};
use stripe_webhook_core::{Ingest, IngestOptions};
use stripe_webhook_lambda::Function;
use stripe_webhook_service::{App, PathMatch};
use stripe_webhook_sink::{MemorySink, SinkErrorKind};
use stripe_webhook_verify::Verifier;
use support::*;

fn new_function(max_body_bytes: usize) -> (Function, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::new(1000));
    let ingest = Ingest::new(
        Verifier::new(vec![secret()]).expect("verifier"),
        sink.clone(),
        IngestOptions {
            max_body_bytes,
            ..IngestOptions::default()
        },
    );
    (Function::new(App::new(ingest, PathMatch::Suffix)), sink)
}

async fn call(function: &Function, event: Value) -> Value {
    function.handle(event).await.expect("an HTTP event")
}

fn header<'a>(shape: &str, response: &'a Value, name: &str) -> Option<&'a str> {
    if shape == "alb-multi-value" {
        response["multiValueHeaders"][name][0].as_str()
    } else {
        response["headers"][name].as_str()
    }
}

#[tokio::test]
async fn signed_bodies_are_accepted_and_archived_byte_exact_in_every_shape() {
    let (function, sink) = new_function(1 << 20);
    let mut expected = Vec::new();
    for shape in SHAPES {
        for base64 in [false, true] {
            for name in BODIES {
                let body = stripe_body(name);
                let event = webhook_event(shape, &body, base64, Some(&sign(&body)));
                let response = call(&function, event).await;
                let (status, json) = check_response(shape, &response);
                assert_eq!(
                    (status, json),
                    (200, json!({"received": true})),
                    "{shape} base64={base64} {name}"
                );
                expected.push(body);
            }
        }
    }
    let records = sink.records();
    assert_eq!(records.len(), expected.len());
    for (record, body) in records.iter().zip(&expected) {
        assert_eq!(record.body().as_ref(), body.as_slice());
        let line: Value = serde_json::from_slice(record.line()).expect("record line is JSON");
        assert_eq!(
            line["raw"].as_str().map(str::as_bytes),
            Some(body.as_slice()),
            "raw must be the exact body"
        );
    }
    // The multi-byte UTF-8 body survived both encodings.
    assert!(
        records
            .iter()
            .any(|r| std::str::from_utf8(r.body()).is_ok_and(|s| s.contains("東京")))
    );
}

#[tokio::test]
async fn signature_problems_are_refused_400_in_every_shape() {
    let (function, sink) = new_function(1 << 20);
    let body = stripe_body("customer.created.json");
    let other = stripe_body("charge.succeeded.json");
    let cases = [
        ("no_matching_signature", Some(sign(&other))),
        ("stale_timestamp", Some(sign_at(&body, now() - 3600))),
        ("missing_header", None),
        ("malformed_header", Some("garbage".to_owned())),
    ];
    for shape in SHAPES {
        for base64 in [false, true] {
            for (reason, signature) in &cases {
                let event = webhook_event(shape, &body, base64, signature.as_deref());
                let response = call(&function, event).await;
                let (status, json) = check_response(shape, &response);
                assert_eq!(status, 400, "{shape} {reason}");
                assert_eq!(json["reason"], *reason, "{shape} base64={base64}");
            }
        }
    }
    assert!(sink.is_empty(), "nothing refused may be archived");
}

#[tokio::test]
async fn malformed_base64_is_answered_400_not_an_invocation_error() {
    let (function, sink) = new_function(1 << 20);
    let body = stripe_body("charge.succeeded.json");
    for shape in SHAPES {
        for bad in [
            "not base64 at all!",
            "eyJpZCI",
            "eyJ=aWQiOg==",
            "====",
            "e30=\n",
        ] {
            let mut event = webhook_event(shape, &body, true, Some(&sign(&body)));
            event["body"] = bad.into();
            let response = call(&function, event).await;
            let (status, json) = check_response(shape, &response);
            assert_eq!(status, 400, "{shape} {bad:?}");
            assert_eq!(json["reason"], "bad_body_encoding");
        }
    }
    assert!(sink.is_empty());
}

#[tokio::test]
async fn oversized_bodies_get_413_text_and_base64() {
    let body = stripe_body("customer.created.json");
    let (function, sink) = new_function(body.len() - 1);
    for shape in SHAPES {
        for base64 in [false, true] {
            let event = webhook_event(shape, &body, base64, Some(&sign(&body)));
            let response = call(&function, event).await;
            let (status, json) = check_response(shape, &response);
            assert_eq!(status, 413, "{shape} base64={base64}");
            assert_eq!(json["limit_bytes"], body.len() - 1);
        }
    }
    assert!(sink.is_empty());
    // Exactly at the limit is fine.
    let (function, sink) = new_function(body.len());
    let event = webhook_event("function-url", &body, true, Some(&sign(&body)));
    assert_eq!(
        check_response("function-url", &call(&function, event).await).0,
        200
    );
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn stage_and_base_path_prefixes_route_to_the_webhook() {
    let (function, sink) = new_function(1 << 20);
    let body = stripe_body("charge.succeeded.json");
    for (shape, path) in [
        ("apigw-rest-v1", "/prod/webhook/stripe"),
        ("apigw-rest-v1", "/v1/payments/webhook/stripe"),
        ("apigw-http-v2", "/prod/webhook/stripe"),
        ("function-url", "/webhook/stripe"),
        ("alb", "/stripe-archive/webhook/stripe"),
    ] {
        let mut event = webhook_event(shape, &body, false, Some(&sign(&body)));
        set_route(&mut event, "POST", path);
        let (status, _) = check_response(shape, &call(&function, event).await);
        assert_eq!(status, 200, "{shape} {path}");
    }
    assert_eq!(sink.len(), 5);
}

#[tokio::test]
async fn health_not_found_and_method_not_allowed() {
    let (function, sink) = new_function(1 << 20);
    for shape in SHAPES {
        let mut event = shape_fixture(shape);
        set_route(&mut event, "GET", "/prod/health");
        let (status, json) = check_response(shape, &call(&function, event).await);
        assert_eq!(
            (status, json),
            (
                200,
                json!({"status": "ok", "sink": "memory", "durable": false})
            )
        );

        for (method, path, expected, allow) in [
            ("GET", "/webhook/stripe", 405, Some("POST")),
            ("PUT", "/prod/webhook/stripe", 405, Some("POST")),
            ("POST", "/health", 405, Some("GET, HEAD")),
            ("POST", "/", 404, None),
            ("POST", "/webhook/stripe/", 404, None),
            ("POST", "/webhook/stripe-other", 404, None),
        ] {
            let mut event = shape_fixture(shape);
            set_route(&mut event, method, path);
            let response = call(&function, event).await;
            let (status, _) = check_response(shape, &response);
            assert_eq!(status, expected, "{shape} {method} {path}");
            assert_eq!(
                header(shape, &response, "allow"),
                allow,
                "{shape} {method} {path}"
            );
        }
    }
    assert!(sink.is_empty());
}

#[tokio::test]
async fn storage_trouble_is_503_with_retry_after_and_500_when_permanent() {
    let (function, sink) = new_function(1 << 20);
    let body = stripe_body("charge.succeeded.json");
    for shape in SHAPES {
        sink.fail_next(SinkErrorKind::Unavailable);
        let response = call(
            &function,
            webhook_event(shape, &body, false, Some(&sign(&body))),
        )
        .await;
        assert_eq!(check_response(shape, &response).0, 503, "{shape}");
        assert_eq!(
            header(shape, &response, "retry-after"),
            Some("1"),
            "{shape}"
        );

        sink.fail_next(SinkErrorKind::Permanent);
        let response = call(
            &function,
            webhook_event(shape, &body, true, Some(&sign(&body))),
        )
        .await;
        assert_eq!(check_response(shape, &response).0, 500, "{shape}");
    }
    assert!(sink.is_empty());
}

#[tokio::test]
async fn a_body_that_verifies_but_is_not_an_event_is_400() {
    let (function, sink) = new_function(1 << 20);
    let body = b"[1,2,3]";
    let response = call(
        &function,
        webhook_event("alb", body, true, Some(&sign(body))),
    )
    .await;
    let (status, json) = check_response("alb", &response);
    assert_eq!(status, 400);
    assert_eq!(json["error"], "verified body is not a Stripe event");
    assert!(sink.is_empty());
}

#[tokio::test]
async fn a_payload_that_is_not_an_http_event_is_an_invocation_error() {
    let (function, _) = new_function(1 << 20);
    for payload in [
        json!({"key1": "value1"}),
        json!("text"),
        json!({"requestContext": {"http": {}}}),
    ] {
        let error = function
            .handle(payload.clone())
            .await
            .expect_err("not HTTP");
        let diagnostic = lambda_runtime::Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "NotAnHttpEvent", "{payload}");
        assert!(diagnostic.error_message.contains("not an HTTP request"));
    }
}
