//! Envelope encoding cost against verification's floor (one-shot HMAC-SHA256 over `t.` + body).
//!
//! Bodies of ~1 KiB, 4 KiB, 64 KiB and 1 MiB are realistic pretty-printed Stripe events: the
//! `charge.succeeded` shape with its `data.object` padded with Stripe-like line items (short keys,
//! nulls, escapes, some non-ASCII), like an invoice with many lines. `encode` (raw on, the
//! default, and raw off) is measured beside `raw HMAC-SHA256` over the same body; the target is
//! encode faster than verification. Run:
//! `cargo bench -p stripe-webhook-benches --bench envelope`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use stripe_webhook_benches::raw_hmac_sha256;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};

const SECRET: &str = "whsec_bench_0123456789abcdefghijklmnopqrstuv";
const SIGNATURE: &str =
    "t=1762935172,v1=7d2f0c6e8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d";
const SIZES: &[(usize, &str)] = &[
    (1 << 10, "1KiB"),
    (4 << 10, "4KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

const HEAD: &str = r#"{
  "id": "evt_3SSxq2LkdIwHu7ix0qZ1cF6b",
  "object": "event",
  "api_version": "2025-10-29.clover",
  "created": 1762935171,
  "data": {
    "object": {
      "id": "ch_3SSxq2LkdIwHu7ix0Yf8kT1m",
      "object": "charge",
      "amount": 4999,
      "captured": true,
      "currency": "usd",
      "customer": "cus_TMbX3kqfZ2yH8d",
      "description": "Acme Cloud Pro (monthly) – Zoë Ångström",
      "lines": ["#;

const TAIL: &str = r#"
      ],
      "livemode": false,
      "metadata": {
        "order_id": "ord_20251112_0042"
      },
      "status": "succeeded"
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": "req_Q4kZ8mWvT1xRbN",
    "idempotency_key": "3f1c2a9e-7b4d-4e0a-9c51-1d2e8f6a7b90"
  },
  "type": "charge.succeeded"
}"#;

fn line_item(i: usize) -> String {
    format!(
        r#"
        {{
          "id": "il_1SSz2aLkdIwHu7ix{i:08}",
          "object": "line_item",
          "amount": 1250,
          "currency": "usd",
          "description": "1 × Widget \"M\" (at $12.50 / month)",
          "discountable": true,
          "invoice": null,
          "livemode": false,
          "metadata": {{}},
          "period": {{
            "end": 1765531680,
            "start": 1762939680
          }},
          "proration": false,
          "quantity": 1,
          "unit_amount_decimal": "1250.0"
        }}"#
    )
}

/// A pretty-printed event of at least `len` bytes (at most one line item more).
fn body(len: usize) -> Bytes {
    let mut s = String::from(HEAD);
    let mut i = 0;
    while s.len() + TAIL.len() < len || i == 0 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&line_item(i));
        i += 1;
    }
    s.push_str(TAIL);
    Bytes::from(s)
}

fn bench(c: &mut Criterion) {
    let at = ReceivedAt::from_unix_millis(1_762_935_172_345);
    let raw_on = EnvelopeOptions::default();
    let raw_off = EnvelopeOptions::default().include_raw(false);
    let mut group = c.benchmark_group("envelope");
    for &(len, label) in SIZES {
        let body = body(len);
        encode(body.clone(), SIGNATURE, at, &raw_on).expect("the bench body encodes");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", label), &body, |b, body| {
            b.iter(|| encode(black_box(body.clone()), SIGNATURE, at, &raw_on));
        });
        group.bench_with_input(
            BenchmarkId::new("encode raw-off", label),
            &body,
            |b, body| {
                b.iter(|| encode(black_box(body.clone()), SIGNATURE, at, &raw_off));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw HMAC-SHA256", label),
            &body,
            |b, body| {
                b.iter(|| raw_hmac_sha256(SECRET.as_bytes(), b"1762935172.", black_box(body)));
            },
        );
    }
    group.finish();
}

/// `criterion_group!` generates an undocumented `pub fn`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}

criterion_main!(group::benches);
