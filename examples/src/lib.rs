//! Runnable examples for the Stripe webhook archive crates (this package only hosts them):
//!
//! - `cargo run -p stripe-webhook-examples --example custom_sink`: plug your own storage into the
//!   ingest core by implementing `RecordSink`.
//!
//! Embedding the verifier alone is shown by `stripe-webhook-verify`'s own examples, which are
//! published with it: `no_framework`, `axum` and `hyper` (`cargo run -p stripe-webhook-verify
//! --example no_framework`).
