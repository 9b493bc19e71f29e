//! Runnable examples for the Stripe webhook archive crates (this package only hosts them):
//!
//! - `cargo run -p stripe-webhook-examples --example embed_verifier`: verify a webhook in your own
//!   service with `stripe-webhook-verify` alone (no async runtime, no HTTP framework).
//! - `cargo run -p stripe-webhook-examples --example custom_sink`: plug your own storage into the
//!   ingest core by implementing `RecordSink`.
