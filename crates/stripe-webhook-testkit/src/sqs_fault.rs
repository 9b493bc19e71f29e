//! A fault-injecting Amazon SQS endpoint on loopback, for tests: the faults moto cannot make.
//!
//! It speaks the subset of SQS's JSON protocol (`awsJson1.0`) a producer uses: `POST /` with
//! `X-Amz-Target: AmazonSQS.SendMessageBatch` or `AmazonSQS.GetQueueAttributes`. Errors are an
//! HTTP status plus `{"__type": "...", "message": "..."}`; every answer carries an
//! `x-amzn-RequestId` header. The real AWS SDK talks to it through an endpoint override
//! (`AWS_ENDPOINT_URL_SQS` for a binary that also talks to moto).
//!
//! Each `SendMessageBatch` consumes the next scripted [`Step`] (the Firehose fault endpoint's steps,
//! with SQS's answers: `Throttle` is 400 `RequestThrottled`, `ServerError` 500 `InternalError`,
//! `FailIndices` fails those entries in `Failed` with `InternalError`, `SenderFault: false`,
//! `WrongCount(n)` answers only the first `n` entries). SQS's limits are enforced before the step
//! (at most 10 entries, 1 MiB in total). Every entry answered in `Successful` is logged
//! ([`SqsFault::accepted`]): a producer must never acknowledge an entry that is not in it.
//!
//! ```
//! use stripe_webhook_testkit::sqs_fault::{SqsFault, Step};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let fault = SqsFault::start("stripe-events", false).await;
//! fault.push_steps([Step::Throttle, Step::FailIndices(vec![1])]);
//! assert!(fault.queue_url().ends_with("/123456789012/stripe-events"));
//! assert!(fault.accepted().is_empty());
//! # });
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use crate::firehose_fault::Step;

/// SQS's limit on entries per `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's limit on one call's message bodies together (1 MiB).
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// One message answered in `Successful`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// `MessageBody`.
    pub body: String,
    /// `MessageAttributes` as `(name, StringValue)`, in request order.
    pub attributes: Vec<(String, String)>,
    /// `MessageGroupId`, if any.
    pub group_id: Option<String>,
    /// `MessageDeduplicationId`, if any.
    pub deduplication_id: Option<String>,
}

struct State {
    queue_url: String,
    fifo: bool,
    script: VecDeque<Step>,
    default_step: Step,
    calls: Vec<String>,
    accepted: Vec<SentMessage>,
    next_id: u64,
}

/// A running fault-injecting SQS endpoint serving one queue. Stops when dropped.
pub struct SqsFault {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl SqsFault {
    /// Starts the endpoint on a free loopback port, serving the queue `name` (FIFO if `fifo`; the
    /// name should then end in `.fifo`). Calls naming another queue get 400 `QueueDoesNotExist`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(name: &str, fifo: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback for the SQS fault endpoint");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            queue_url: format!("http://{addr}/123456789012/{name}"),
            fifo,
            script: VecDeque::new(),
            default_step: Step::Accept,
            calls: Vec::new(),
            accepted: Vec::new(),
            next_id: 0,
        }));
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Self { addr, state, task }
    }

    /// The endpoint URL to give the SDK (`http://127.0.0.1:<port>`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The queue's URL (`http://127.0.0.1:<port>/123456789012/<name>`).
    pub fn queue_url(&self) -> String {
        self.lock().queue_url.clone()
    }

    /// Environment for an AWS client talking to this endpoint only: [`crate::aws_client_env`].
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        crate::aws_client_env(&self.endpoint_url())
    }

    /// Appends steps to the script; each `SendMessageBatch` consumes one.
    pub fn push_steps(&self, steps: impl IntoIterator<Item = Step>) {
        self.lock().script.extend(steps);
    }

    /// What a call does once the script is exhausted.
    pub fn set_default(&self, step: Step) {
        self.lock().default_step = step;
    }

    /// The outcome of every `SendMessageBatch` so far (`accept`, `partial`, `throttle`, …).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Every message answered in `Successful`, in order (duplicates included).
    pub fn accepted(&self) -> Vec<SentMessage> {
        self.lock().accepted.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for SqsFault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Connections live in this set, so aborting the accept task closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&state)));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

#[derive(Debug)]
struct InjectedReset;

impl std::fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for InjectedReset {}

type Reply = Result<Response<Full<Bytes>>, InjectedReset>;

fn entry_message(e: &Value) -> SentMessage {
    let attributes = e["MessageAttributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v["StringValue"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    SentMessage {
        body: e["MessageBody"].as_str().unwrap_or("").to_owned(),
        attributes,
        group_id: e["MessageGroupId"].as_str().map(str::to_owned),
        deduplication_id: e["MessageDeduplicationId"].as_str().map(str::to_owned),
    }
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Reply {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(InjectedReset),
    };
    let operation = target
        .strip_prefix("AmazonSQS.")
        .unwrap_or(&target)
        .to_owned();
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return Ok(error_reply(
            400,
            "SerializationException",
            "body is not JSON",
            "bad-json",
        ));
    };
    let (request_id, known, fifo, step) = {
        let mut s = lock(&state);
        s.next_id += 1;
        let request_id = format!("sqs-fault-req-{:06}", s.next_id);
        let known = json["QueueUrl"].as_str() == Some(s.queue_url.as_str());
        let step = (known && operation == "SendMessageBatch").then(|| {
            let default = s.default_step.clone();
            s.script.pop_front().unwrap_or(default)
        });
        (request_id, known, s.fifo, step)
    };
    let record = |outcome: &str| lock(&state).calls.push(outcome.to_owned());
    if !known {
        return Ok(error_reply(
            400,
            "com.amazonaws.sqs#QueueDoesNotExist",
            "The specified queue does not exist.",
            &request_id,
        ));
    }
    let Some(mut step) = step else {
        if operation == "GetQueueAttributes" {
            let mut attrs = json!({
                "QueueArn": "arn:aws:sqs:us-east-1:123456789012:fault",
                "MaximumMessageSize": MAX_BATCH_BYTES.to_string(),
            });
            if fifo {
                attrs["FifoQueue"] = json!("true");
            }
            return Ok(json_reply(200, &json!({"Attributes": attrs}), &request_id));
        }
        return Ok(error_reply(
            400,
            "UnsupportedOperation",
            &operation,
            &request_id,
        ));
    };
    let entries: Vec<Value> = json["Entries"].as_array().cloned().unwrap_or_default();
    let total: usize = entries
        .iter()
        .map(|e| e["MessageBody"].as_str().map_or(0, str::len))
        .sum();
    if entries.is_empty() || entries.len() > MAX_BATCH_ENTRIES {
        record("limits");
        return Ok(error_reply(
            400,
            "com.amazonaws.sqs#TooManyEntriesInBatchRequest",
            "0 or more than 10 entries",
            &request_id,
        ));
    }
    if total > MAX_BATCH_BYTES {
        record("limits");
        return Ok(error_reply(
            400,
            "com.amazonaws.sqs#BatchRequestTooLong",
            "batch too long",
            &request_id,
        ));
    }
    while let Step::Delay(d, inner) = step {
        tokio::time::sleep(d).await;
        step = *inner;
    }
    let answer = |failed: &[usize], answered: usize| {
        let mut s = lock(&state);
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (i, e) in entries.iter().enumerate().take(answered) {
            let id = e["Id"].as_str().unwrap_or("").to_owned();
            if failed.contains(&i) {
                bad.push(json!({"Id": id, "SenderFault": false, "Code": "InternalError", "Message": "injected"}));
            } else {
                s.accepted.push(entry_message(e));
                ok.push(json!({"Id": id, "MessageId": format!("{request_id}-{i}"),
                               "MD5OfMessageBody": "00000000000000000000000000000000"}));
            }
        }
        json_reply(200, &json!({"Successful": ok, "Failed": bad}), &request_id)
    };
    let reply = match &step {
        Step::Accept => {
            record("accept");
            answer(&[], entries.len())
        }
        Step::FailIndices(failed) => {
            record("partial");
            answer(failed, entries.len())
        }
        Step::WrongCount(n) => {
            record("wrong_count");
            answer(&[], *n)
        }
        Step::Throttle => {
            record("throttle");
            error_reply(
                400,
                "com.amazonaws.sqs#RequestThrottled",
                "Rate exceeded",
                &request_id,
            )
        }
        Step::ServerError => {
            record("server_error");
            error_reply(
                500,
                "com.amazonaws.sqs#InternalError",
                "internal error",
                &request_id,
            )
        }
        Step::Reset => {
            record("reset");
            return Err(InjectedReset);
        }
        Step::Stall => {
            record("stall");
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
        Step::Error { status, error_type } => {
            record(error_type);
            error_reply(*status, error_type, "injected error", &request_id)
        }
        Step::Delay(..) => unreachable!("delays were unwrapped above"),
    };
    Ok(reply)
}

fn json_reply(status: u16, body: &Value, request_id: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-RequestId", request_id)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error_reply(
    status: u16,
    error_type: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    json_reply(
        status,
        &json!({"__type": error_type, "message": message}),
        request_id,
    )
}
