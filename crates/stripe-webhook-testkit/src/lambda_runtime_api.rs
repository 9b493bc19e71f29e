//! A small AWS Lambda Runtime API emulator on loopback, to drive a real Lambda binary in tests.
//!
//! It serves what a custom runtime calls:
//!
//! - `GET /2018-06-01/runtime/invocation/next`: a long poll, held until an event is queued
//!   ([`LambdaRuntimeApi::enqueue`]); answered with the event JSON and the
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` and
//!   `Lambda-Runtime-Invoked-Function-Arn` headers. Every poll's arrival time is recorded
//!   ([`LambdaRuntimeApi::next_polls`]), which times init.
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `…/{id}/error`: recorded per request
//!   id ([`LambdaRuntimeApi::result`], [`LambdaRuntimeApi::invoke`]).
//! - `POST /2018-06-01/runtime/init/error`: recorded ([`LambdaRuntimeApi::init_errors`]).
//!
//! ```
//! use stripe_webhook_testkit::lambda_runtime_api::LambdaRuntimeApi;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let api = LambdaRuntimeApi::start().await;
//! assert!(api.runtime_api().starts_with("127.0.0.1:"));
//! let env = api.function_env();
//! assert!(env.iter().any(|(k, _)| *k == "AWS_LAMBDA_FUNCTION_NAME"));
//! let id = api.enqueue(&serde_json::json!({"hello": "world"}));
//! assert!(api.result(&id).is_none()); // no runtime polled it yet
//! assert!(api.next_polls().is_empty());
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The function name the emulator reports (in the ARN and [`LambdaRuntimeApi::function_env`]).
pub const FUNCTION_NAME: &str = "stripe-webhook-test";

const PREFIX: &str = "/2018-06-01/runtime";

/// How a runtime answered one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvocationResult {
    /// `POST …/invocation/{id}/response` with this body.
    Response(Bytes),
    /// `POST …/invocation/{id}/error`: the `Lambda-Runtime-Function-Error-Type` header (if any) and
    /// the body (usually `{"errorType":…,"errorMessage":…}`).
    Error {
        /// The error type header.
        error_type: Option<String>,
        /// The error body.
        body: Bytes,
    },
}

impl InvocationResult {
    /// The response body parsed as JSON.
    ///
    /// # Panics
    /// If this is an error report or the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        match self {
            InvocationResult::Response(body) => serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("invocation response is not JSON ({e}): {body:?}")),
            InvocationResult::Error { error_type, body } => {
                panic!("the invocation failed ({error_type:?}): {body:?}")
            }
        }
    }
}

/// A `POST /runtime/init/error` report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitError {
    /// The `Lambda-Runtime-Function-Error-Type` header, if any.
    pub error_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Bytes)>,
    next_polls: Vec<Instant>,
    in_flight: Vec<String>,
    results: HashMap<String, InvocationResult>,
    init_errors: Vec<InitError>,
    counter: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `f` returns `Some`, re-checking after every state change.
    async fn wait_for<T>(&self, mut f: impl FnMut(&mut State) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = f(&mut self.lock()) {
                return value;
            }
            notified.await;
        }
    }
}

/// The running emulator; stops serving when dropped.
#[derive(Debug)]
pub struct LambdaRuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl LambdaRuntimeApi {
    /// Starts the emulator on a free loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Runtime API emulator");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(serve(req, &shared).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, shared, task }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (`127.0.0.1:<port>`).
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// The environment a Lambda runtime needs to start against this emulator:
    /// `AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`,
    /// `AWS_LAMBDA_FUNCTION_VERSION`, `AWS_LAMBDA_LOG_GROUP_NAME`, `AWS_LAMBDA_LOG_STREAM_NAME`.
    pub fn function_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.runtime_api()),
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{FUNCTION_NAME}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local".to_owned()),
        ]
    }

    /// Queues an event for the next `GET …/invocation/next`; returns its request id.
    pub fn enqueue(&self, event: &serde_json::Value) -> String {
        self.enqueue_raw(Bytes::from(event.to_string()))
    }

    /// Queues raw event bytes (need not be JSON); returns the request id.
    pub fn enqueue_raw(&self, event: Bytes) -> String {
        let id = {
            let mut state = self.shared.lock();
            state.counter += 1;
            let id = format!("req-{:08}-{:x}", state.counter, std::process::id());
            state.queue.push_back((id.clone(), event));
            id
        };
        self.shared.changed.notify_waiters();
        id
    }

    /// The answer to a request id, if the runtime posted one.
    pub fn result(&self, id: &str) -> Option<InvocationResult> {
        self.shared.lock().results.get(id).cloned()
    }

    /// Waits up to `timeout` for the answer to a request id.
    pub async fn wait_result(&self, id: &str, timeout: Duration) -> Option<InvocationResult> {
        tokio::time::timeout(
            timeout,
            self.shared.wait_for(|state| state.results.get(id).cloned()),
        )
        .await
        .ok()
    }

    /// Queues an event and waits for its answer.
    ///
    /// # Panics
    /// If no answer arrives within `timeout`.
    pub async fn invoke(&self, event: &serde_json::Value, timeout: Duration) -> InvocationResult {
        let id = self.enqueue(event);
        self.wait_result(&id, timeout)
            .await
            .unwrap_or_else(|| panic!("no answer to invocation {id} within {timeout:?}"))
    }

    /// When each `GET …/invocation/next` arrived, in order.
    pub fn next_polls(&self) -> Vec<Instant> {
        self.shared.lock().next_polls.clone()
    }

    /// Waits up to `timeout` for the first `GET …/invocation/next` (the end of init).
    pub async fn wait_first_poll(&self, timeout: Duration) -> Option<Instant> {
        tokio::time::timeout(
            timeout,
            self.shared
                .wait_for(|state| state.next_polls.first().copied()),
        )
        .await
        .ok()
    }

    /// Every `POST /runtime/init/error` received.
    pub fn init_errors(&self) -> Vec<InitError> {
        self.shared.lock().init_errors.clone()
    }

    /// Waits up to `timeout` for an init error report.
    pub async fn wait_init_error(&self, timeout: Duration) -> Option<InitError> {
        tokio::time::timeout(
            timeout,
            self.shared
                .wait_for(|state| state.init_errors.first().cloned()),
        )
        .await
        .ok()
    }

    /// Request ids handed to the runtime and not answered yet.
    pub fn in_flight(&self) -> Vec<String> {
        self.shared.lock().in_flight.clone()
    }
}

impl Drop for LambdaRuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

fn epoch_millis(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

async fn serve(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(route) = path.strip_prefix(PREFIX) else {
        return text(StatusCode::NOT_FOUND, "unknown path");
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    match (&method, route) {
        (&Method::GET, "/invocation/next") => next(shared).await,
        (&Method::POST, "/init/error") => {
            shared
                .lock()
                .init_errors
                .push(InitError { error_type, body });
            shared.changed.notify_waiters();
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        (&Method::POST, route) => {
            let Some(rest) = route.strip_prefix("/invocation/") else {
                return text(StatusCode::NOT_FOUND, "unknown path");
            };
            let result = if let Some(id) = rest.strip_suffix("/response") {
                (id, InvocationResult::Response(body))
            } else if let Some(id) = rest.strip_suffix("/error") {
                (id, InvocationResult::Error { error_type, body })
            } else {
                return text(StatusCode::NOT_FOUND, "unknown path");
            };
            {
                let mut state = shared.lock();
                let Some(pos) = state.in_flight.iter().position(|i| i == result.0) else {
                    return text(
                        StatusCode::BAD_REQUEST,
                        r#"{"errorType":"InvalidRequestID","errorMessage":"unknown or already answered request id"}"#,
                    );
                };
                state.in_flight.remove(pos);
                state.results.insert(result.0.to_owned(), result.1);
            }
            shared.changed.notify_waiters();
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => text(StatusCode::NOT_FOUND, "unknown path"),
    }
}

async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    shared.lock().next_polls.push(Instant::now());
    shared.changed.notify_waiters();
    let (id, event) = shared
        .wait_for(|state| {
            let (id, event) = state.queue.pop_front()?;
            state.in_flight.push(id.clone());
            Some((id, event))
        })
        .await;
    let deadline = epoch_millis(SystemTime::now() + Duration::from_secs(30));
    let mut response = text(StatusCode::OK, event);
    let headers = response.headers_mut();
    let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION_NAME}");
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        ("lambda-runtime-invoked-function-arn", arn),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}
