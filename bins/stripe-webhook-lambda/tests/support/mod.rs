//! Shared by the Lambda integration tests: event-shape fixtures, real Stripe bodies, signing.

#![allow(dead_code, unreachable_pub)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use stripe_webhook_verify::{Secret, signature_header};

/// The signing secret every test uses.
pub const SECRET: &str = "whsec_lambda_test_secret_0123456789";

/// The event-shape fixtures in `tests/fixtures/`, each with how its answer must look.
pub const SHAPES: &[&str] = &[
    "apigw-rest-v1",
    "apigw-http-v2",
    "function-url",
    "alb",
    "alb-multi-value",
];

/// Real-shaped Stripe bodies from the shared `fixtures/events/`: pretty-printed, multi-byte UTF-8.
pub const BODIES: &[&str] = &[
    "customer.created.json",
    "checkout.session.completed.json",
    "charge.succeeded.json",
];

pub fn secret() -> Secret {
    Secret::new(SECRET).expect("test secret")
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A valid `Stripe-Signature` for `body`, signed at `timestamp`.
pub fn sign_at(body: &[u8], timestamp: i64) -> String {
    signature_header(&[&secret()], timestamp, body)
}

/// A valid `Stripe-Signature` for `body`, signed now.
pub fn sign(body: &[u8]) -> String {
    sign_at(body, now())
}

/// A Stripe event body from the workspace's shared fixtures, byte for byte.
pub fn stripe_body(name: &str) -> Vec<u8> {
    let path = stripe_webhook_testkit::workspace_root()
        .join("fixtures/events")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// An event-shape fixture from `tests/fixtures/<name>.json`.
pub fn shape_fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Sets (or, with `None`, removes) the `Stripe-Signature` header wherever the fixture carries it.
pub fn set_signature(event: &mut Value, signature: Option<&str>) {
    for map in ["headers", "multiValueHeaders"] {
        let Some(headers) = event.get_mut(map).and_then(Value::as_object_mut) else {
            continue;
        };
        let keys: Vec<String> = headers
            .keys()
            .filter(|k| k.eq_ignore_ascii_case("stripe-signature"))
            .cloned()
            .collect();
        for key in keys {
            match signature {
                None => {
                    headers.remove(&key);
                }
                Some(sig) if map == "multiValueHeaders" => {
                    headers.insert(key, Value::Array(vec![sig.into()]));
                }
                Some(sig) => {
                    headers.insert(key, sig.into());
                }
            }
        }
    }
}

/// Sets the body, as text (must be UTF-8) or base64.
pub fn set_body(event: &mut Value, body: &[u8], base64: bool) {
    event["body"] = if base64 {
        BASE64.encode(body).into()
    } else {
        String::from_utf8(body.to_vec()).expect("text body").into()
    };
    event["isBase64Encoded"] = base64.into();
}

/// Sets the request path (and, for payload 1.0/2.0, the context's copy) and method.
pub fn set_route(event: &mut Value, method: &str, path: &str) {
    if event.get("rawPath").is_some() {
        event["rawPath"] = path.into();
        event["requestContext"]["http"]["path"] = path.into();
        event["requestContext"]["http"]["method"] = method.into();
    } else {
        event["path"] = path.into();
        event["httpMethod"] = method.into();
    }
}

/// A fixture around `body`, signed with `signature`.
pub fn webhook_event(shape: &str, body: &[u8], base64: bool, signature: Option<&str>) -> Value {
    let mut event = shape_fixture(shape);
    set_body(&mut event, body, base64);
    set_signature(&mut event, signature);
    event
}

/// Asserts the response is in the shape the front door expects; returns (status, body JSON).
pub fn check_response(shape: &str, response: &Value) -> (u16, Value) {
    let status = response["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("{shape}: no numeric statusCode in {response}"))
        as u16;
    assert_eq!(response["isBase64Encoded"], false, "{shape}: {response}");
    let content_type = match shape {
        "alb-multi-value" => {
            assert!(response.get("headers").is_none(), "{shape}: {response}");
            response["multiValueHeaders"]["content-type"][0].clone()
        }
        _ => response["headers"]["content-type"].clone(),
    };
    assert_eq!(content_type, "application/json", "{shape}: {response}");
    if shape.starts_with("alb") {
        let description = response["statusDescription"].as_str().unwrap_or_default();
        assert!(
            description.starts_with(&format!("{status} ")) && description.len() > 4,
            "{shape}: statusDescription {description:?}"
        );
    } else {
        assert!(
            response.get("statusDescription").is_none(),
            "{shape}: {response}"
        );
    }
    let body = response["body"]
        .as_str()
        .unwrap_or_else(|| panic!("{shape}: body is not a string: {response}"));
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{shape}: body {body:?}: {e}"));
    (status, json)
}
