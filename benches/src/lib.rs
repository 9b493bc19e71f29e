//! Benchmarks and load-test helpers for the Stripe webhook archive. The criterion benches live in
//! `benches/benches/`; run them with `cargo bench -p stripe-webhook-benches`.
