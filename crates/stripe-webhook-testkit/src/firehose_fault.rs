//! A fault-injecting Amazon Data Firehose endpoint on loopback, for tests and benchmarks.
//!
//! It speaks the subset of Firehose's `awsJson1.1` protocol a producer uses: `POST /` with
//! `X-Amz-Target: Firehose_20150804.PutRecordBatch`, `.PutRecord` or `.DescribeDeliveryStream`.
//! Errors are an HTTP status plus `{"__type": "...", "message": "..."}`; every answer carries an
//! `x-amzn-RequestId` header. The real AWS SDK talks to it through an endpoint override.
//!
//! Each put call consumes the next scripted [`Step`] (then the default step, [`Step::Accept`] unless
//! changed). AWS's real limits are enforced before the step: at most [`MAX_BATCH_RECORDS`] records,
//! [`MAX_BATCH_BYTES`] of data, [`MAX_RECORD_BYTES`] per record, otherwise HTTP 400
//! `InvalidArgumentException` for the whole call. Every call is recorded (decoded `Data` bytes, time),
//! and so is every record that was answered with a `RecordId` ([`FirehoseFault::accepted`]): a
//! producer must never acknowledge a record that is not in that log.
//!
//! ```
//! use stripe_webhook_testkit::firehose_fault::{FirehoseFault, Step};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let fault = FirehoseFault::start("test-stream").await;
//! fault.push_steps([Step::Throttle, Step::FailIndices(vec![1])]);
//! assert!(fault.endpoint_url().starts_with("http://127.0.0.1:"));
//! assert!(fault.calls().is_empty());
//! # });
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
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

/// Firehose's limit on records per `PutRecordBatch` call.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Firehose's limit on the data of one `PutRecordBatch` call (4 MiB, decoded).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Firehose's limit on one record's data, before base64.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

const TARGET_PREFIX: &str = "Firehose_20150804.";

/// What the endpoint does with one put call (`PutRecordBatch` or `PutRecord`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Accept every record (HTTP 200, a `RecordId` each).
    Accept,
    /// Wait, then behave like the inner step.
    Delay(Duration, Box<Step>),
    /// HTTP 503 `ServiceUnavailableException` for the whole call (throttling).
    Throttle,
    /// HTTP 500 `InternalFailure` for the whole call.
    ServerError,
    /// HTTP 200 with the records at these indices failed (`ServiceUnavailableException`), the
    /// others accepted. For `PutRecord`, any index fails the call with HTTP 503.
    FailIndices(Vec<usize>),
    /// HTTP 200 with this many response entries, whatever the request held. Nothing is logged as
    /// accepted: a producer must treat a count mismatch as a failure of every record. When the
    /// count happens to equal the batch size, the answer is a genuine acceptance (a producer cannot
    /// tell it apart), so it is logged as one.
    WrongCount(usize),
    /// Close the connection without answering.
    Reset,
    /// Never answer (the client's timeout decides).
    Stall,
    /// An error answer with this HTTP status and `__type` (e.g. 400 `ResourceNotFoundException`).
    Error {
        /// HTTP status.
        status: u16,
        /// The error code sent as `__type`.
        error_type: String,
    },
}

/// One call the endpoint received.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    /// The operation (`PutRecordBatch`, `PutRecord`, `DescribeDeliveryStream`).
    pub operation: String,
    /// The stream the call named.
    pub stream_name: String,
    /// The decoded `Data` of each record, in request order (empty for `DescribeDeliveryStream`).
    pub records: Vec<Bytes>,
    /// When the request was fully read.
    pub at: Instant,
    /// The request id sent back in `x-amzn-RequestId`.
    pub request_id: String,
    /// What was done with it (`accept`, `throttle`, `limits`, …).
    pub outcome: String,
}

/// A Direct PUT stream's quotas, combined for `PutRecord` and `PutRecordBatch`, per one-second
/// window. AWS's defaults: 2,000 calls, 500,000 records and 5 MiB per second in us-east-1,
/// us-west-2 and eu-west-1; 1,000 calls, 100,000 records and 1 MiB per second elsewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Put calls per second; calls over it are throttled whole (503 `ServiceUnavailableException`).
    pub calls_per_second: Option<u32>,
    /// Records per second; records over it fail inside an answered call (`ServiceUnavailableException`
    /// "Slow down.", `FailedPutCount`), as Firehose reports throughput throttling.
    pub records_per_second: Option<u32>,
    /// Record data bytes (before base64) per second; records over it fail like records over the
    /// records quota.
    pub bytes_per_second: Option<u64>,
}

impl Quota {
    /// The default quota of a stream in us-east-1, us-west-2 or eu-west-1.
    pub const LARGE_REGION: Quota = Quota {
        calls_per_second: Some(2_000),
        records_per_second: Some(500_000),
        bytes_per_second: Some(5 * 1024 * 1024),
    };
    /// The default quota of a stream in the other regions.
    pub const OTHER_REGIONS: Quota = Quota {
        calls_per_second: Some(1_000),
        records_per_second: Some(100_000),
        bytes_per_second: Some(1024 * 1024),
    };
}

/// Use of the quota in the current one-second window.
#[derive(Clone, Copy, Debug)]
struct QuotaWindow {
    quota: Quota,
    start: Instant,
    calls: u32,
    records: u32,
    bytes: u64,
}

impl QuotaWindow {
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.start) >= Duration::from_secs(1) {
            self.start = now;
            self.calls = 0;
            self.records = 0;
            self.bytes = 0;
        }
    }

    /// Counts a call; false when it is over the call quota.
    fn admit_call(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.calls += 1;
        self.quota.calls_per_second.is_none_or(|q| self.calls <= q)
    }

    /// Counts a record of `len` bytes; false when it is over the records or bytes quota.
    fn admit_record(&mut self, now: Instant, len: usize) -> bool {
        self.roll(now);
        let records = self.records + 1;
        let bytes = self.bytes + len as u64;
        let fits = self.quota.records_per_second.is_none_or(|q| records <= q)
            && self.quota.bytes_per_second.is_none_or(|q| bytes <= q);
        if fits {
            self.records = records;
            self.bytes = bytes;
        }
        fits
    }
}

struct State {
    stream_name: String,
    stream_status: String,
    stream_type: String,
    /// `DescribeDeliveryStream` calls still to throttle.
    describes_to_throttle: usize,
    script: VecDeque<Step>,
    default_step: Step,
    latency: Duration,
    quota: Option<QuotaWindow>,
    calls: Vec<RecordedCall>,
    accepted: Vec<Bytes>,
    next_id: u64,
}

/// A running fault-injecting Firehose endpoint. Stops when dropped.
pub struct FirehoseFault {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FirehoseFault {
    /// Starts the endpoint on a free loopback port, serving one delivery stream named `stream_name`
    /// (ACTIVE, DirectPut). Calls naming another stream get 400 `ResourceNotFoundException`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(stream_name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback for the Firehose fault endpoint");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            stream_name: stream_name.to_owned(),
            stream_status: "ACTIVE".to_owned(),
            describes_to_throttle: 0,
            stream_type: "DirectPut".to_owned(),
            script: VecDeque::new(),
            default_step: Step::Accept,
            latency: Duration::ZERO,
            quota: None,
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

    /// Environment for an AWS client (the SDK, or a binary under test) talking to this endpoint
    /// only: [`crate::aws_client_env`].
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        crate::aws_client_env(&self.endpoint_url())
    }

    /// The stream this endpoint serves.
    pub fn stream_name(&self) -> String {
        self.lock().stream_name.clone()
    }

    /// Appends steps to the script; each put call consumes one.
    pub fn push_steps(&self, steps: impl IntoIterator<Item = Step>) {
        self.lock().script.extend(steps);
    }

    /// What a put call does once the script is exhausted.
    pub fn set_default(&self, step: Step) {
        self.lock().default_step = step;
    }

    /// A latency added to every put call before its step (benchmarks: real Firehose answers in
    /// roughly 20 to 50 ms).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Enforces a per-stream call quota only, like Firehose's (1,000 or 2,000 put calls per second,
    /// depending on the region): calls over it in a one-second window are throttled with 503
    /// `ServiceUnavailableException`, before their scripted step. `None` (the default) disables it.
    pub fn set_call_quota(&self, per_second: Option<u32>) {
        self.set_quota(per_second.map(|calls| Quota {
            calls_per_second: Some(calls),
            ..Quota::default()
        }));
    }

    /// Enforces Firehose's quotas (calls, records and bytes per second; see [`Quota`]). Calls over
    /// the call quota are throttled whole before their scripted step; records over the records or
    /// bytes quota fail inside the answer of an accepting step. `None` disables every quota.
    pub fn set_quota(&self, quota: Option<Quota>) {
        self.lock().quota = quota.map(|quota| QuotaWindow {
            quota,
            start: Instant::now(),
            calls: 0,
            records: 0,
            bytes: 0,
        });
    }

    /// The status and type `DescribeDeliveryStream` reports (default `ACTIVE`, `DirectPut`).
    pub fn set_stream(&self, status: &str, stream_type: &str) {
        let mut s = self.lock();
        s.stream_status = status.to_owned();
        s.stream_type = stream_type.to_owned();
    }

    /// Answers the next `calls` `DescribeDeliveryStream` calls with `400 LimitExceededException`,
    /// as AWS does past its limit of 5 calls per second per account.
    pub fn throttle_describes(&self, calls: usize) {
        self.lock().describes_to_throttle = calls;
    }

    /// Every call received so far, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    /// The put calls (`PutRecordBatch`, `PutRecord`) received so far, in arrival order.
    pub fn put_calls(&self) -> Vec<RecordedCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.operation != "DescribeDeliveryStream")
            .cloned()
            .collect()
    }

    /// The `Data` of every record answered with a `RecordId`, in order (duplicates included).
    pub fn accepted(&self) -> Vec<Bytes> {
        self.lock().accepted.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for FirehoseFault {
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
                    // Errors here are resets we injected or clients going away.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Returned by the service to make hyper drop the connection without an answer.
#[derive(Debug)]
struct InjectedReset;

impl std::fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for InjectedReset {}

type Reply = Result<Response<Full<Bytes>>, InjectedReset>;

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
        .strip_prefix(TARGET_PREFIX)
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
    let stream_name = json["DeliveryStreamName"].as_str().unwrap_or("").to_owned();
    let records = match operation.as_str() {
        "PutRecordBatch" => json["Records"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| decode_data(&r["Data"]))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
        "PutRecord" => vec![decode_data(&json["Record"]["Data"])],
        _ => Vec::new(),
    };
    let Some(records) = records.into_iter().collect::<Option<Vec<Bytes>>>() else {
        return Ok(error_reply(
            400,
            "SerializationException",
            "Data is not base64",
            "bad-b64",
        ));
    };

    // Decide under the lock, act (sleep, answer) outside it.
    let (request_id, step, latency, known_stream, describe, throttle_describe) = {
        let mut s = lock(&state);
        s.next_id += 1;
        let request_id = format!("fault-req-{:06}", s.next_id);
        let known = stream_name == s.stream_name;
        let is_put = matches!(operation.as_str(), "PutRecordBatch" | "PutRecord");
        let over_quota = is_put
            && known
            && s.quota
                .as_mut()
                .is_some_and(|q| !q.admit_call(Instant::now()));
        let step = if over_quota {
            Some(Step::Throttle)
        } else if is_put && known {
            let default = s.default_step.clone();
            Some(s.script.pop_front().unwrap_or(default))
        } else {
            None
        };
        let describe = json!({
            "DeliveryStreamDescription": {
                "DeliveryStreamName": s.stream_name,
                "DeliveryStreamARN": format!("arn:aws:firehose:us-east-1:123456789012:deliverystream/{}", s.stream_name),
                "DeliveryStreamStatus": s.stream_status,
                "DeliveryStreamType": s.stream_type,
                "VersionId": "1",
                "CreateTimestamp": 1_700_000_000.0,
                "Destinations": [],
                "HasMoreDestinations": false,
            }
        });
        s.calls.push(RecordedCall {
            operation: operation.clone(),
            stream_name: stream_name.clone(),
            records: records.clone(),
            at: Instant::now(),
            request_id: request_id.clone(),
            outcome: String::new(),
        });
        let throttle_describe =
            operation == "DescribeDeliveryStream" && s.describes_to_throttle > 0;
        if throttle_describe {
            s.describes_to_throttle -= 1;
        }
        (
            request_id,
            step,
            s.latency,
            known,
            describe,
            throttle_describe,
        )
    };
    let set_outcome = |outcome: &str| {
        let mut s = lock(&state);
        if let Some(call) = s
            .calls
            .iter_mut()
            .rev()
            .find(|c| c.request_id == request_id)
        {
            call.outcome = outcome.to_owned();
        }
    };

    if !known_stream {
        set_outcome("not_found");
        let msg = format!("Firehose {stream_name} under account 123456789012 not found.");
        return Ok(error_reply(
            400,
            "ResourceNotFoundException",
            &msg,
            &request_id,
        ));
    }
    let Some(mut step) = step else {
        if throttle_describe {
            set_outcome("throttle");
            return Ok(error_reply(
                400,
                "LimitExceededException",
                "Rate exceeded for DescribeDeliveryStream",
                &request_id,
            ));
        }
        if operation == "DescribeDeliveryStream" {
            set_outcome("describe");
            return Ok(json_reply(200, &describe, &request_id));
        }
        set_outcome("unknown_operation");
        return Ok(error_reply(
            400,
            "UnknownOperationException",
            &operation,
            &request_id,
        ));
    };

    if let Some(problem) = limit_violation(&operation, &records) {
        set_outcome("limits");
        return Ok(error_reply(
            400,
            "InvalidArgumentException",
            &problem,
            &request_id,
        ));
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    while let Step::Delay(d, inner) = step {
        tokio::time::sleep(d).await;
        step = *inner;
    }
    let batch = operation == "PutRecordBatch";
    let reply = match &step {
        Step::Accept => {
            set_outcome("accept");
            accept(&state, &records, &[], batch, &request_id)
        }
        Step::FailIndices(failed) if batch => {
            set_outcome("partial");
            accept(&state, &records, failed, batch, &request_id)
        }
        Step::FailIndices(failed) if failed.contains(&0) => {
            set_outcome("throttle");
            error_reply(
                503,
                "ServiceUnavailableException",
                "Slow down.",
                &request_id,
            )
        }
        Step::FailIndices(_) => {
            set_outcome("accept");
            accept(&state, &records, &[], batch, &request_id)
        }
        Step::Throttle => {
            set_outcome("throttle");
            error_reply(
                503,
                "ServiceUnavailableException",
                "Slow down.",
                &request_id,
            )
        }
        Step::ServerError => {
            set_outcome("server_error");
            error_reply(500, "InternalFailure", "internal failure", &request_id)
        }
        Step::WrongCount(n) if batch && *n == records.len() => {
            set_outcome("accept");
            accept(&state, &records, &[], batch, &request_id)
        }
        Step::WrongCount(n) => {
            set_outcome("wrong_count");
            let entries: Vec<Value> = (0..*n)
                .map(|i| json!({"RecordId": format!("{request_id}-bogus-{i}")}))
                .collect();
            json_reply(
                200,
                &json!({"FailedPutCount": 0, "Encrypted": false, "RequestResponses": entries}),
                &request_id,
            )
        }
        Step::Reset => {
            set_outcome("reset");
            return Err(InjectedReset);
        }
        Step::Stall => {
            set_outcome("stall");
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
        Step::Error { status, error_type } => {
            set_outcome(error_type);
            error_reply(*status, error_type, "injected error", &request_id)
        }
        Step::Delay(..) => unreachable!("delays were unwrapped above"),
    };
    Ok(reply)
}

fn decode_data(v: &Value) -> Option<Bytes> {
    BASE64.decode(v.as_str()?).ok().map(Bytes::from)
}

fn limit_violation(operation: &str, records: &[Bytes]) -> Option<String> {
    if records.is_empty() {
        return Some(format!("{operation}: at least one record is required"));
    }
    if records.len() > MAX_BATCH_RECORDS {
        return Some(format!(
            "{} records exceed the limit of {MAX_BATCH_RECORDS}",
            records.len()
        ));
    }
    if let Some((i, r)) = records
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() > MAX_RECORD_BYTES)
    {
        return Some(format!(
            "record {i} has {} bytes, more than {MAX_RECORD_BYTES}",
            r.len()
        ));
    }
    let total: usize = records.iter().map(Bytes::len).sum();
    (total > MAX_BATCH_BYTES)
        .then(|| format!("{total} bytes exceed the call limit of {MAX_BATCH_BYTES}"))
}

fn accept(
    state: &Mutex<State>,
    records: &[Bytes],
    failed: &[usize],
    batch: bool,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut s = lock(state);
    let mut entries = Vec::with_capacity(records.len());
    let now = Instant::now();
    for (i, data) in records.iter().enumerate() {
        let over_quota = !failed.contains(&i)
            && s.quota
                .as_mut()
                .is_some_and(|q| !q.admit_record(now, data.len()));
        if over_quota && !batch {
            drop(s);
            return error_reply(503, "ServiceUnavailableException", "Slow down.", request_id);
        }
        if failed.contains(&i) || over_quota {
            entries.push(json!({
                "ErrorCode": "ServiceUnavailableException",
                "ErrorMessage": "Slow down.",
            }));
        } else {
            s.accepted.push(data.clone());
            entries.push(json!({"RecordId": format!("{request_id}-{i}")}));
        }
    }
    drop(s);
    let body = if batch {
        let failed_count = entries
            .iter()
            .filter(|e| e.get("ErrorCode").is_some())
            .count();
        json!({"FailedPutCount": failed_count, "Encrypted": false, "RequestResponses": entries})
    } else {
        json!({"RecordId": format!("{request_id}-0"), "Encrypted": false})
    };
    json_reply(200, &body, request_id)
}

fn json_reply(status: u16, body: &Value, request_id: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/x-amz-json-1.1")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_match_aws() {
        assert!(limit_violation("PutRecordBatch", &[]).is_some());
        let ok = vec![Bytes::from(vec![b'a'; MAX_RECORD_BYTES])];
        assert!(limit_violation("PutRecordBatch", &ok).is_none());
        let big = vec![Bytes::from(vec![b'a'; MAX_RECORD_BYTES + 1])];
        assert!(limit_violation("PutRecordBatch", &big).is_some());
        let many = vec![Bytes::from_static(b"x\n"); MAX_BATCH_RECORDS + 1];
        assert!(limit_violation("PutRecordBatch", &many).is_some());
        let heavy = vec![Bytes::from(vec![b'a'; 1_000_000]); 5];
        assert!(limit_violation("PutRecordBatch", &heavy).is_some());
    }
}
