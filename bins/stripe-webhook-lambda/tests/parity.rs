//! Both front doors answer the same bytes for the same request: every route, every method, every
//! refusal the app makes, sent once to the real hyper server (over TCP) and once through the Lambda
//! function (as an API Gateway REST event, whose `multiValueHeaders` keep repeated fields), each on
//! its own memory sink. Status, `content-type`, `allow`, `retry-after` and body must be equal; only
//! hop-by-hop and framing headers (`connection`, `content-length`, `date`) may differ.

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use stripe_webhook_core::{Ingest, IngestOptions};
use stripe_webhook_lambda::Function;
use stripe_webhook_server::{Listeners, ServerSettings, serve};
use stripe_webhook_service::{App, PathMatch};
use stripe_webhook_sink::{MemorySink, SinkErrorKind};
use stripe_webhook_testkit::http::request;
use stripe_webhook_verify::Verifier;
use support::*;

const MAX_BODY: usize = 64 * 1024;

fn app(sink: Arc<MemorySink>, paths: PathMatch) -> App {
    let ingest = Ingest::new(
        Verifier::new(vec![secret()]).expect("verifier"),
        sink,
        IngestOptions {
            max_body_bytes: MAX_BODY,
            ..IngestOptions::default()
        },
    );
    App::new(ingest, paths)
}

/// The server on its own thread and runtime, on a port the kernel picked; it runs until the test
/// process ends. It is listening when this returns (connections wait in the accept queue until
/// `serve` takes them).
fn start_server(app: App) -> SocketAddr {
    let settings = ServerSettings {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: None,
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        max_connections: 64,
        max_connections_per_source: 0,
        sources: stripe_webhook_server::Sources::default(),
        max_buffered_body_bytes: 1 << 20,
        shutdown_timeout: Duration::from_secs(5),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listeners = runtime
        .block_on(async { Listeners::bind(&settings) })
        .expect("bind");
    let addr = listeners.public.local_addr().expect("bound address");
    std::thread::spawn(move || {
        runtime
            .block_on(serve(app, settings, listeners, None))
            .expect("server");
    });
    addr
}

/// One answer, reduced to what must be equal on both front doors.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

const COMPARED: &[&str] = &["content-type", "allow", "retry-after"];

fn compared(headers: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut headers: Vec<_> = headers
        .into_iter()
        .filter(|(name, _)| COMPARED.contains(&name.as_str()))
        .collect();
    headers.sort();
    headers
}

fn rest_event(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    let mut single = Map::new();
    let mut multi = Map::new();
    for (name, value) in headers {
        single.insert((*name).to_owned(), json!(value));
        multi
            .entry((*name).to_owned())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("array")
            .push(json!(value));
    }
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "requestContext": {"stage": "prod", "path": format!("/prod{path}")},
        "body": String::from_utf8(body.to_vec()).expect("UTF-8 test bodies"),
        "isBase64Encoded": false,
    })
}

fn lambda_answer(runtime: &tokio::runtime::Runtime, function: &Function, event: Value) -> Answer {
    let response = runtime
        .block_on(function.handle(event))
        .expect("an HTTP event");
    let headers = response["headers"]
        .as_object()
        .expect("REST v1 answers carry headers")
        .iter()
        .map(|(name, value)| {
            let value = value
                .as_array()
                .and_then(|v| v.first())
                .unwrap_or(value)
                .as_str()
                .expect("string header")
                .to_owned();
            (name.to_ascii_lowercase(), value)
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    Answer {
        status: response["statusCode"].as_u64().expect("statusCode") as u16,
        headers: compared(headers),
        body: response["body"].as_str().expect("body").to_owned(),
    }
}

#[test]
fn the_server_and_the_lambda_answer_the_same_bytes() {
    let server_sink = Arc::new(MemorySink::new(100));
    let lambda_sink = Arc::new(MemorySink::new(100));
    let addr = start_server(app(Arc::clone(&server_sink), PathMatch::Exact));
    let function = Function::new(app(Arc::clone(&lambda_sink), PathMatch::Suffix));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let event = stripe_body("charge.succeeded.json");
    let good = sign(&event);
    let stale = sign_at(&event, now() - 3600);
    let not_an_event = b"[1,2,3]".to_vec();
    let not_an_event_sig = sign(&not_an_event);
    let large = vec![b' '; MAX_BODY + 1];
    let large_sig = sign(&large);
    let json = ("Content-Type", "application/json");

    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
        Option<SinkErrorKind>,
        u16,
    );
    let cases: Vec<Case<'_>> = vec![
        ("health", "GET", "/health", vec![], b"", None, 200),
        ("health HEAD", "HEAD", "/health", vec![], b"", None, 200),
        (
            "POST health",
            "POST",
            "/health",
            vec![json],
            b"{}",
            None,
            405,
        ),
        ("DELETE health", "DELETE", "/health", vec![], b"", None, 405),
        (
            "GET webhook",
            "GET",
            "/webhook/stripe",
            vec![],
            b"",
            None,
            405,
        ),
        (
            "PUT webhook",
            "PUT",
            "/webhook/stripe",
            vec![json],
            b"{}",
            None,
            405,
        ),
        ("root", "GET", "/", vec![], b"", None, 404),
        (
            "other path",
            "POST",
            "/webhook",
            vec![json],
            b"{}",
            None,
            404,
        ),
        (
            "metrics is private",
            "GET",
            "/metrics",
            vec![],
            b"",
            None,
            404,
        ),
        (
            "no signature",
            "POST",
            "/webhook/stripe",
            vec![json],
            &event,
            None,
            400,
        ),
        (
            "malformed signature",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", "v1=nope")],
            &event,
            None,
            400,
        ),
        (
            "wrong signature",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", &not_an_event_sig)],
            &event,
            None,
            400,
        ),
        (
            "stale signature",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", &stale)],
            &event,
            None,
            400,
        ),
        (
            "two signature fields",
            "POST",
            "/webhook/stripe",
            vec![
                json,
                ("Stripe-Signature", &good),
                ("Stripe-Signature", "t=1"),
            ],
            &event,
            None,
            400,
        ),
        (
            "not an event",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", &not_an_event_sig)],
            &not_an_event,
            None,
            400,
        ),
        (
            "too large",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", &large_sig)],
            &large,
            None,
            413,
        ),
        (
            "sink overloaded",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", &good)],
            &event,
            Some(SinkErrorKind::Overloaded),
            503,
        ),
        (
            "sink failed",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", &good)],
            &event,
            Some(SinkErrorKind::Permanent),
            500,
        ),
        (
            "accepted",
            "POST",
            "/webhook/stripe",
            vec![json, ("Stripe-Signature", &good)],
            &event,
            None,
            200,
        ),
    ];

    for (name, method, path, headers, body, failure, status) in &cases {
        if let Some(kind) = failure {
            server_sink.fail_next(*kind);
            lambda_sink.fail_next(*kind);
        }
        let server = request(addr, method, path, headers, body).expect("server request");
        let server = Answer {
            status: server.status,
            body: server.text(),
            headers: compared(server.headers),
        };
        let lambda = lambda_answer(&runtime, &function, rest_event(method, path, headers, body));
        assert_eq!(server.status, *status, "{name}: {server:?}");
        assert_eq!(server, lambda, "{name}");
    }
    // Only the accepted webhook was stored, once on each side, from the same body.
    let (server, lambda) = (server_sink.records(), lambda_sink.records());
    assert_eq!((server.len(), lambda.len()), (1, 1));
    assert_eq!(server[0].body(), lambda[0].body());
}
