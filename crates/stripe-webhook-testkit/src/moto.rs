//! A `moto_server` (the pinned `moto[server]`) on a free loopback port: an AWS emulator for S3,
//! Firehose and SQS in end-to-end tests.
//!
//! [`Moto::start`] launches it from the pinned test environment (installing it on first use, never
//! skipping), waits until it answers, and kills it on drop. Helpers create a bucket and a Direct PUT
//! delivery stream writing to it, and read every object back (through the pinned `boto3`, path-style)
//! for byte comparisons. Clients talk to it with [`Moto::client_env`]: static test credentials,
//! region `us-east-1`, no instance metadata, `AWS_ENDPOINT_URL` pointing at the server.
//!
//! moto writes one uncompressed object per put call, immediately, and leaves `!{timestamp:…}`
//! expressions in prefixes unexpanded: assert on content, not on keys beyond the prefix.
//!
//! ```no_run
//! let moto = stripe_webhook_testkit::moto::Moto::start();
//! moto.create_bucket("archive");
//! moto.create_delivery_stream("webhooks", "archive");
//! for object in moto.objects("archive") {
//!     println!("{} ({} bytes)", object.key, object.body.len());
//! }
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::{PythonEnv, free_port, python, python_bin_dir};

/// The region every moto-backed test uses.
pub const REGION: &str = "us-east-1";
/// The prefix the helper's delivery stream writes under.
pub const STREAM_PREFIX: &str = "webhooks/";

/// One S3 object read back from moto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    /// The object key.
    pub key: String,
    /// The object's bytes.
    pub body: Vec<u8>,
}

/// One SQS message read back from moto.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct QueueMessage {
    /// The message body.
    pub body: String,
    /// The message attributes (string values).
    pub attributes: std::collections::BTreeMap<String, String>,
    /// `MessageGroupId` (FIFO queues).
    pub group_id: Option<String>,
    /// `MessageDeduplicationId` (FIFO queues).
    pub deduplication_id: Option<String>,
}

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port and waits (up to 60 s) until it answers.
    ///
    /// Blocking: call it before heavy async work, or from `spawn_blocking`.
    ///
    /// # Panics
    /// If the pinned environment cannot be installed or the server does not come up.
    pub fn start() -> Self {
        let bin = python_bin_dir(PythonEnv::Test).join("moto_server");
        // Chosen in advance: moto_server takes its port on the command line and does not report
        // one the kernel picked.
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut moto = Self { child, port };
        let started = Instant::now();
        while !moto.answers() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited early: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
    }

    /// The endpoint URL (`http://127.0.0.1:<port>`).
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for an AWS client (SDK or the server binary) talking to this moto only.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        crate::aws_client_env(&self.endpoint_url())
    }

    /// Creates an S3 bucket.
    ///
    /// # Panics
    /// If moto refuses.
    pub fn create_bucket(&self, bucket: &str) {
        self.boto("s3.create_bucket(Bucket=sys.argv[1])", &[bucket]);
    }

    /// Creates a Direct PUT delivery stream with an extended S3 destination to `bucket`, prefix
    /// [`STREAM_PREFIX`], no compression.
    ///
    /// # Panics
    /// If moto refuses.
    pub fn create_delivery_stream(&self, stream: &str, bucket: &str) {
        self.boto(
            "firehose.create_delivery_stream(DeliveryStreamName=sys.argv[1], \
             DeliveryStreamType='DirectPut', ExtendedS3DestinationConfiguration={\
             'RoleARN': 'arn:aws:iam::123456789012:role/firehose', \
             'BucketARN': 'arn:aws:s3:::' + sys.argv[2], 'Prefix': sys.argv[3], \
             'CompressionFormat': 'UNCOMPRESSED'})",
            &[stream, bucket, STREAM_PREFIX],
        );
    }

    /// Creates an SQS queue with these attributes (`FifoQueue`, `MaximumMessageSize`, …; a FIFO
    /// queue's name must end in `.fifo`) and returns its URL.
    ///
    /// # Panics
    /// If moto refuses.
    pub fn create_queue(&self, name: &str, attributes: &[(&str, &str)]) -> String {
        let attributes: serde_json::Map<String, serde_json::Value> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let out = self.boto(
            "print(sqs.create_queue(QueueName=sys.argv[1], Attributes=json.loads(sys.argv[2]))['QueueUrl'])",
            &[name, &serde_json::Value::Object(attributes).to_string()],
        );
        out.trim().to_owned()
    }

    /// Deletes the queue at `url`.
    ///
    /// # Panics
    /// If moto refuses.
    pub fn delete_queue(&self, url: &str) {
        self.boto("sqs.delete_queue(QueueUrl=sys.argv[1])", &[url]);
    }

    /// Receives and deletes every message in the queue at `url`, in the order SQS hands them out
    /// (deleting each lets a FIFO queue hand out the next of its group).
    ///
    /// # Panics
    /// If moto refuses or answers garbage.
    pub fn receive_all(&self, url: &str) -> Vec<QueueMessage> {
        let out = self.boto(
            "out = []\n\
             while True:\n    \
                 r = sqs.receive_message(QueueUrl=sys.argv[1], MaxNumberOfMessages=10, \
                 VisibilityTimeout=600, MessageAttributeNames=['All'], \
                 MessageSystemAttributeNames=['All'])\n    \
                 ms = r.get('Messages', [])\n    \
                 if not ms: break\n    \
                 for m in ms:\n        \
                     sqs.delete_message(QueueUrl=sys.argv[1], ReceiptHandle=m['ReceiptHandle'])\n        \
                     a = m.get('Attributes', {})\n        \
                     out.append({'body': m['Body'], \
                     'attributes': {k: v['StringValue'] for k, v in m.get('MessageAttributes', {}).items()}, \
                     'group_id': a.get('MessageGroupId'), 'deduplication_id': a.get('MessageDeduplicationId')})\n\
             print(json.dumps(out))",
            &[url],
        );
        serde_json::from_str(out.trim()).expect("message list from boto3")
    }

    /// Every object in `bucket`, sorted by key, with its bytes.
    ///
    /// # Panics
    /// If moto refuses or answers garbage.
    pub fn objects(&self, bucket: &str) -> Vec<S3Object> {
        let out = self.boto(
            "out = []\n\
             for page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1]):\n    \
                 for o in page.get('Contents', []):\n        \
                     body = s3.get_object(Bucket=sys.argv[1], Key=o['Key'])['Body'].read()\n        \
                     out.append([o['Key'], base64.b64encode(body).decode()])\n\
             print(json.dumps(sorted(out)))",
            &[bucket],
        );
        let list: Vec<(String, String)> =
            serde_json::from_str(out.trim()).expect("object list from boto3");
        list.into_iter()
            .map(|(key, b64)| S3Object {
                key,
                body: BASE64.decode(b64).expect("base64 object body"),
            })
            .collect()
    }

    /// Runs a boto3 snippet against this moto (`s3`, path-style, `firehose` and `sqs` clients are in
    /// scope, arguments in `sys.argv[1..]`) and returns its stdout.
    fn boto(&self, snippet: &str, args: &[&str]) -> String {
        let program = format!(
            "import base64, json, sys, boto3\n\
             from botocore.config import Config\n\
             kw = dict(endpoint_url={url:?}, region_name={REGION:?}, \
             aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             s3 = boto3.client('s3', config=Config(s3={{'addressing_style': 'path'}}), **kw)\n\
             firehose = boto3.client('firehose', **kw)\n\
             sqs = boto3.client('sqs', **kw)\n\
             {snippet}\n",
            url = self.endpoint_url(),
        );
        let output = Command::new(python())
            .arg("-c")
            .arg(program)
            .args(args)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run the pinned python");
        assert!(
            output.status.success(),
            "boto3 against moto failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output from boto3")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
