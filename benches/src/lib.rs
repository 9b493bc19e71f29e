//! Benchmarks and load-test helpers for the Stripe webhook archive. The criterion benches live in
//! `benches/benches/`; run them with `cargo bench -p stripe-webhook-benches`.
//!
//! Shared here: the HMAC-SHA256 floor both criterion benches compare against, the `main` of the
//! benchmark binaries (`bare_hyper`, `loadgen`, `firehose_endpoint`, `baseline_server`), and the
//! Firehose baseline [`PutRecordSink`] (one `PutRecord` per webhook, the replaced Node service's
//! design), which lives here and not in the production sink.
//!
//! ```
//! let mac = stripe_webhook_benches::raw_hmac_sha256(b"whsec_key", b"1700000000.", b"{}");
//! assert_eq!(mac.len(), 32);
//! ```

mod put_record_sink;

pub use put_record_sink::PutRecordSink;

use std::future::Future;
use std::process::ExitCode;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The floor verification is measured against: one HMAC-SHA256 keyed with `key` over
/// `signed_prefix` (`"<t>."`) then `body`, with nothing else (no parsing, no comparison).
#[inline]
pub fn raw_hmac_sha256(key: &[u8], signed_prefix: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(signed_prefix);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// An AWS SDK configuration for a local Firehose endpoint (the testkit's fault endpoint):
/// `us-east-1`, static test credentials, `endpoint_url`.
pub async fn loopback_sdk(endpoint_url: String) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_firehose::config::Credentials::new(
            "t", "t", None, None, "loopback",
        ))
        .endpoint_url(endpoint_url)
        .load()
        .await
}

/// The `main` of a benchmark binary: runs `future` on a multi-thread Tokio runtime and hands its
/// value to `on_success` (exit 0). An error is printed as `<name>: <message>` (exit 2); a runtime
/// that cannot start exits 1.
pub fn run_main<T>(
    name: &str,
    future: impl Future<Output = Result<T, String>>,
    on_success: impl FnOnce(T),
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(value) => {
            on_success(value);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{name}: {message}");
            ExitCode::from(2)
        }
    }
}
