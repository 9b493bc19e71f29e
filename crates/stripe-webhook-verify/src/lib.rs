//! Strict, constant-time verification of Stripe webhook signatures (`Stripe-Signature`).
//!
//! Pure and synchronous: a `&[u8]` body, an `Option<&str>` header and the time in, a small
//! [`Verified`] or [`VerifyError`] out. No async runtime, no HTTP framework. HMAC-SHA256 comes from
//! the RustCrypto `hmac` and `sha2` crates, comparison from `subtle`.
//!
//! The verifier implements Stripe's scheme exactly (key: the secret's UTF-8 bytes, `whsec_`
//! included; message: `t`, `.`, the raw body bytes; lowercase hex HMAC-SHA256 in `v1`) and is
//! stricter than the official SDKs where they disagree on input Stripe never produces: exactly one
//! `t` of canonical digits, `v1` only as 64 lowercase hex characters, no trimming, size and
//! candidate caps before any HMAC work, and distinct errors for stale and future timestamps.
//! Several secrets may be configured at once (rotation, Connect, `stripe listen`).
//!
//! ```
//! use stripe_webhook_verify::{Secret, Tolerance, Verifier, VerifyError, signature_header};
//!
//! let secret = Secret::new("whsec_test_secret")?;
//! let verifier = Verifier::new(vec![secret.clone()])?.with_tolerance(Tolerance::seconds(300)?);
//!
//! let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
//! let header = signature_header(&[&secret], 1_700_000_000, body);
//!
//! // The time is an argument: the time the request was received, in Unix seconds.
//! let verified = verifier.verify(body, Some(&header), 1_700_000_060)?;
//! assert_eq!((verified.timestamp, verified.secret_index), (1_700_000_000, 0));
//!
//! // A replay ten minutes later is stale, and says so.
//! let err = verifier.verify(body, Some(&header), 1_700_000_600).unwrap_err();
//! assert_eq!(err, VerifyError::Stale { age_secs: 600, tolerance_secs: 300 });
//! assert_eq!(err.to_string(), "timestamp is 600 s old, tolerance is 300 s");
//!
//! // A forged body does not verify.
//! let err = verifier.verify(b"{}", Some(&header), 1_700_000_060).unwrap_err();
//! assert_eq!(err.label(), "no_matching_signature");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The entry points
//!
//! One per input shape, each given the time to check against as Unix seconds (the verifier reads
//! no clock: a server passes the request's receipt time, a test a fixed one):
//!
//! | input | verify the body | pre-check the header, no HMAC |
//! |---|---|---|
//! | header value, `Option<&str>` | [`Verifier::verify`] | [`Verifier::precheck`] |
//! | [`http::HeaderMap`] (feature `http`) | [`Verifier::verify_headers`] | [`Verifier::precheck_headers`] |
//!
//! and [`Verifier::verify_ignoring_timestamp`], which checks everything but the time, for archive
//! audits (and for the body after a pre-check that checked the time).
//!
//! # Refusing before the body is read
//!
//! [`Verifier::precheck`] applies every rule that needs only the header (missing, too large,
//! malformed, no or too many `v1`, stale, future) with no HMAC work, so a server can refuse such a
//! request before it buffers the body. A pass never means authentic: verify the body afterwards.
//!
//! # Feature `http`
//!
//! Entry points on an [`http::HeaderMap`] (http 1.x), so a server need not pick the header out
//! itself: [`Verifier::verify_headers`], [`Verifier::precheck_headers`], and [`stripe_signature`],
//! which refuses a request with two or more `Stripe-Signature` fields
//! ([`VerifyError::DuplicateHeader`]) or a value that is not UTF-8.
//!
//! The crate's examples embed the verifier in a server (`cargo run --example axum --features
//! http`); `cargo test --all-features` compiles and tests them:
//!
//! - `examples/no_framework.rs`: a handler given a body, a header value and the receipt time, with
//!   two secrets as during a rotation (no feature needed).
//! - `examples/axum.rs`: an axum handler that answers 200 or 400 from
//!   [`Verifier::verify_headers`].
//! - `examples/hyper.rs`: a plain hyper 1 service that refuses from the headers
//!   ([`Verifier::precheck_headers`]) before it reads a size-limited body, then verifies it.
//!
//! [`http::HeaderMap`]: https://docs.rs/http/1/http/header/struct.HeaderMap.html
//! [`Verifier::verify_headers`]: struct.Verifier.html#method.verify_headers
//! [`Verifier::precheck_headers`]: struct.Verifier.html#method.precheck_headers
//! [`stripe_signature`]: fn.stripe_signature.html
//!
// The axum and hyper examples need the `http` feature: with it they compile as doctests, without
// it they are shown only (`cargo test` builds and runs them as examples either way, `test = true`).
//! <details><summary><code>examples/no_framework.rs</code></summary>
//!
//! ```rust,no_run
#![doc = include_str!("../examples/no_framework.rs")]
//! ```
//!
//! </details>
//!
//! <details><summary><code>examples/axum.rs</code></summary>
//!
#![cfg_attr(feature = "http", doc = "```rust,no_run")]
#![cfg_attr(not(feature = "http"), doc = "```rust,ignore")]
#![doc = include_str!("../examples/axum.rs")]
//! ```
//!
//! </details>
//!
//! <details><summary><code>examples/hyper.rs</code></summary>
//!
#![cfg_attr(feature = "http", doc = "```rust,no_run")]
#![cfg_attr(not(feature = "http"), doc = "```rust,ignore")]
#![doc = include_str!("../examples/hyper.rs")]
//! ```
//!
//! </details>

mod error;
mod header;
#[cfg(feature = "http")]
mod header_map;
mod secret;
mod verifier;

#[cfg(test)]
mod rules;

/// The README's examples, compiled as doctests (one of them uses the `http` feature).
#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use error::{ConfigError, MalformedHeader, SecretSource, VerifyError};
pub use header::{MAX_HEADER_BYTES, MAX_TIMESTAMP, MAX_V1_SIGNATURES, SignatureHeader};
#[cfg(feature = "http")]
pub use header_map::stripe_signature;
pub use secret::{Secret, WHSEC_PREFIX, parse_secrets_named};
pub use verifier::{DEFAULT_TOLERANCE_SECS, Tolerance, Verified, Verifier, sign, signature_header};
