//! The HTTP events Lambda delivers, decoded by hand, and the matching response shapes.
//!
//! Four front doors send one of three JSON shapes:
//!
//! | front door | shape | detected by |
//! |---|---|---|
//! | Function URL, API Gateway HTTP API (payload 2.0) | [`Shape::HttpV2`] | `requestContext.http` |
//! | Application Load Balancer | [`Shape::Alb`] | `requestContext.elb` |
//! | API Gateway REST API (payload 1.0), HTTP API with payload 1.0 | [`Shape::RestV1`] | `httpMethod`, no `elb` |
//!
//! Decoding is owned here instead of `aws_lambda_events`, whose deserializer panics on a malformed
//! base64 body: a bad body must be answered `400`, not reported as an unexplained invocation error.
//! The body bytes stay exact: a text body is the JSON string's UTF-8, a base64 body is decoded with
//! the standard alphabet, and nothing else (no charset or line-ending conversion) happens.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use serde_json::{Map, Value, json};

/// Which payload format an event uses; the response must use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// API Gateway REST API (and HTTP API payload format 1.0).
    RestV1,
    /// API Gateway HTTP API payload format 2.0 and Lambda Function URLs.
    HttpV2,
    /// Application Load Balancer.
    Alb {
        /// The target group has multi-value headers on (the request carried `multiValueHeaders`):
        /// the response must use `multiValueHeaders` too.
        multi_value: bool,
    },
}

/// An invocation payload that is not an HTTP request from a Function URL, API Gateway or an ALB
/// (for example a test event sent with `aws lambda invoke`). Reported as an invocation error.
#[derive(Debug, thiserror::Error)]
#[error(
    "the event is not an HTTP request from a Function URL, API Gateway (REST or HTTP API) or an \
     Application Load Balancer: {0}"
)]
pub struct NotAnHttpEvent(&'static str);

/// Why the body could not be turned into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// `isBase64Encoded` is true but `body` is not valid standard base64.
    #[error("the request body is marked base64-encoded but is not valid base64")]
    InvalidBase64,
    /// The body (after decoding) is larger than the limit.
    #[error("the request body is larger than the limit")]
    TooLarge,
}

/// One HTTP request taken out of a Lambda event. Nothing of the body has been parsed.
#[derive(Debug)]
pub struct HttpEvent {
    /// The payload format (decides the response shape).
    pub shape: Shape,
    /// The request method, upper case as sent (`POST`).
    pub method: String,
    /// The request path as the front door passed it (REST APIs may prefix the stage: `/prod/…`).
    pub path: String,
    headers: Map<String, Value>,
    multi_value_headers: Map<String, Value>,
    body: Option<String>,
    base64: bool,
}

fn take_object(value: Option<&mut Value>) -> Map<String, Value> {
    match value.map(Value::take) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn take_string(value: Option<&mut Value>) -> Option<String> {
    match value.map(Value::take) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

impl HttpEvent {
    /// Takes the request out of an invocation payload.
    ///
    /// # Errors
    /// If the payload is not one of the three HTTP event shapes.
    pub fn from_value(mut event: Value) -> Result<Self, NotAnHttpEvent> {
        let Some(object) = event.as_object_mut() else {
            return Err(NotAnHttpEvent("the payload is not a JSON object"));
        };
        let context = object.get("requestContext").and_then(Value::as_object);
        let (shape, method, path) = if let Some(http) = context
            .and_then(|c| c.get("http"))
            .and_then(Value::as_object)
        {
            let method = http.get("method").and_then(Value::as_str);
            let path = object
                .get("rawPath")
                .and_then(Value::as_str)
                .or_else(|| http.get("path").and_then(Value::as_str));
            let (Some(method), Some(path)) = (method, path) else {
                return Err(NotAnHttpEvent(
                    "a payload 2.0 event without requestContext.http.method or rawPath",
                ));
            };
            (Shape::HttpV2, method.to_owned(), path.to_owned())
        } else {
            let is_alb = context.is_some_and(|c| c.contains_key("elb"));
            let method = object.get("httpMethod").and_then(Value::as_str);
            let path = object.get("path").and_then(Value::as_str);
            let (Some(method), Some(path)) = (method, path) else {
                return Err(NotAnHttpEvent(
                    "neither requestContext.http (payload 2.0) nor httpMethod and path (payload 1.0, ALB)",
                ));
            };
            let shape = if is_alb {
                Shape::Alb {
                    multi_value: object
                        .get("multiValueHeaders")
                        .is_some_and(Value::is_object),
                }
            } else {
                Shape::RestV1
            };
            (shape, method.to_owned(), path.to_owned())
        };
        Ok(Self {
            shape,
            method,
            path,
            headers: take_object(object.get_mut("headers")),
            multi_value_headers: take_object(object.get_mut("multiValueHeaders")),
            body: take_string(object.get_mut("body")),
            base64: object
                .get("isBase64Encoded")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// The request headers as an [`http::HeaderMap`]. `multiValueHeaders` (REST APIs, ALB with
    /// multi-value headers on) carry every field, so a repeated header stays visible as repeated;
    /// otherwise `headers` (HTTP API v2 and Function URLs join repeats with commas, REST and
    /// single-value ALB keep the last). Names and values that are not valid HTTP are dropped.
    pub fn headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        let mut add = |name: &str, value: &Value| {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                map.append(name, value);
            }
        };
        if self.multi_value_headers.is_empty() {
            for (name, value) in &self.headers {
                add(name, value);
            }
        } else {
            for (name, values) in &self.multi_value_headers {
                for value in values.as_array().into_iter().flatten() {
                    add(name, value);
                }
            }
        }
        map
    }

    /// Whether the body came base64-encoded.
    pub fn is_base64_encoded(&self) -> bool {
        self.base64
    }

    /// The exact body bytes (empty if there is none), refusing a body over `limit` bytes before
    /// decoding more than the limit allows.
    ///
    /// # Errors
    /// [`BodyError::InvalidBase64`] for a malformed base64 body, [`BodyError::TooLarge`] over the
    /// limit.
    pub fn take_body(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        if !self.base64 {
            if body.len() > limit {
                return Err(BodyError::TooLarge);
            }
            return Ok(Bytes::from(body.into_bytes()));
        }
        // Every 4 base64 characters carry at most 3 bytes: refuse early what cannot fit.
        if body.len() / 4 * 3 > limit.saturating_add(3) {
            return Err(BodyError::TooLarge);
        }
        let bytes = BASE64
            .decode(body.as_bytes())
            .map_err(|_| BodyError::InvalidBase64)?;
        if bytes.len() > limit {
            return Err(BodyError::TooLarge);
        }
        Ok(Bytes::from(bytes))
    }
}

/// The Lambda response payload for `response`, in the shape the front door expects.
pub fn into_event_response(response: Response<Bytes>, shape: Shape) -> Value {
    let (parts, body) = response.into_parts();
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), value.into());
        }
    }
    let mut payload = json!({
        "statusCode": parts.status.as_u16(),
        "body": String::from_utf8_lossy(&body),
        "isBase64Encoded": false,
    });
    let object = payload
        .as_object_mut()
        .unwrap_or_else(|| unreachable!("json! object literal"));
    if shape == Shape::HttpV2 {
        // Optional for AWS; emulators built on `aws_lambda_events` (cargo lambda watch) require it.
        object.insert("cookies".into(), Value::Array(Vec::new()));
    }
    if let Shape::Alb { multi_value } = shape {
        let reason = parts.status.canonical_reason().unwrap_or("Unknown");
        object.insert(
            "statusDescription".into(),
            format!("{} {reason}", parts.status.as_u16()).into(),
        );
        if multi_value {
            let multi = headers
                .into_iter()
                .map(|(name, value)| (name, Value::Array(vec![value])))
                .collect::<Map<_, _>>();
            object.insert("multiValueHeaders".into(), Value::Object(multi));
            return payload;
        }
    }
    object.insert("headers".into(), Value::Object(headers));
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(body: Value, base64: bool) -> Value {
        json!({
            "version": "2.0",
            "rawPath": "/webhook/stripe",
            "headers": {"stripe-signature": "t=1,v1=ab"},
            "requestContext": {"http": {"method": "POST", "path": "/webhook/stripe"}},
            "body": body,
            "isBase64Encoded": base64,
        })
    }

    #[test]
    fn detects_the_three_shapes() {
        let e = HttpEvent::from_value(v2(json!("x"), false)).expect("v2");
        assert_eq!(e.shape, Shape::HttpV2);
        assert_eq!(
            (e.method.as_str(), e.path.as_str()),
            ("POST", "/webhook/stripe")
        );

        let alb = json!({"httpMethod": "GET", "path": "/health",
            "requestContext": {"elb": {"targetGroupArn": "arn"}}, "multiValueHeaders": {}});
        let e = HttpEvent::from_value(alb).expect("alb");
        assert_eq!(e.shape, Shape::Alb { multi_value: true });

        let v1 = json!({"httpMethod": "POST", "path": "/webhook/stripe",
            "requestContext": {"stage": "prod", "path": "/prod/webhook/stripe"}});
        assert_eq!(HttpEvent::from_value(v1).expect("v1").shape, Shape::RestV1);

        assert!(HttpEvent::from_value(json!({"key1": "value1"})).is_err());
        assert!(HttpEvent::from_value(json!([1, 2])).is_err());
    }

    #[test]
    fn headers_are_case_insensitive_and_repeats_stay_visible() {
        let e = HttpEvent::from_value(json!({
            "httpMethod": "POST", "path": "/",
            "headers": {"Stripe-Signature": "single"},
        }))
        .expect("v1");
        let headers = e.headers();
        assert_eq!(headers["stripe-signature"], "single");
        assert!(headers.get("missing").is_none());

        // REST APIs send both maps; the multi-value one keeps every field.
        let e = HttpEvent::from_value(json!({
            "httpMethod": "POST", "path": "/",
            "headers": {"Stripe-Signature": "second"},
            "multiValueHeaders": {"Stripe-Signature": ["first", "second"], "X-Other": ["x"]},
        }))
        .expect("v1");
        let headers = e.headers();
        let values: Vec<_> = headers.get_all("stripe-signature").iter().collect();
        assert_eq!(values, ["first", "second"]);
        assert_eq!(headers["x-other"], "x");
    }

    #[test]
    fn body_decoding_is_exact_and_bounded() {
        let mut e = HttpEvent::from_value(v2(json!("héllo\r\n"), false)).expect("v2");
        assert_eq!(e.take_body(100).expect("text"), "héllo\r\n".as_bytes());

        let mut e =
            HttpEvent::from_value(v2(json!(BASE64.encode([0u8, 255, 10])), true)).expect("v2");
        assert_eq!(e.take_body(3).expect("base64"), &[0u8, 255, 10][..]);

        let mut e = HttpEvent::from_value(v2(json!("not base64!"), true)).expect("v2");
        assert_eq!(e.take_body(100), Err(BodyError::InvalidBase64));

        let mut e = HttpEvent::from_value(v2(json!(BASE64.encode([1u8; 4])), true)).expect("v2");
        assert_eq!(e.take_body(3), Err(BodyError::TooLarge));

        let mut e = HttpEvent::from_value(v2(json!("abcd"), false)).expect("v2");
        assert_eq!(e.take_body(3), Err(BodyError::TooLarge));

        let mut e = HttpEvent::from_value(v2(Value::Null, false)).expect("v2");
        assert_eq!(e.take_body(3).expect("no body"), Bytes::new());
    }

    #[test]
    fn responses_take_the_event_shape() {
        let r = || {
            let mut r = Response::new(Bytes::from_static(b"{}"));
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            r
        };
        let v2 = into_event_response(r(), Shape::HttpV2);
        assert_eq!(v2["statusCode"], 503);
        assert_eq!(v2["headers"]["retry-after"], "1");
        assert_eq!(v2["isBase64Encoded"], false);
        assert!(v2.get("statusDescription").is_none());
        assert_eq!(v2["cookies"], json!([]));

        let alb = into_event_response(r(), Shape::Alb { multi_value: false });
        assert_eq!(alb["statusDescription"], "503 Service Unavailable");
        assert_eq!(alb["headers"]["content-type"], "application/json");

        let alb = into_event_response(r(), Shape::Alb { multi_value: true });
        assert_eq!(
            alb["multiValueHeaders"]["content-type"][0],
            "application/json"
        );
        assert!(alb.get("headers").is_none());
    }
}
