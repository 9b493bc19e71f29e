//! Verification cost against its floor: one-shot HMAC-SHA256 over `t.` + body.
//!
//! For 1 KiB, 4 KiB, 64 KiB and 1 MiB bodies, `raw HMAC-SHA256` is the floor (hmac + sha2, keyed and
//! run once per iteration) and `Verifier::verify` verifies a valid one-signature header with one
//! secret. Run: `cargo bench -p stripe-webhook-benches --bench verify`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use stripe_webhook_benches::raw_hmac_sha256;
use stripe_webhook_verify::{Secret, Verifier, signature_header};

const SECRET: &str = "whsec_bench_0123456789abcdefghijklmnopqrstuv";
const T: i64 = 1_700_000_000;
const SIZES: &[(usize, &str)] = &[
    (1 << 10, "1KiB"),
    (4 << 10, "4KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn body(len: usize) -> Vec<u8> {
    let pattern = br#"{"id":"evt_1NzExample","object":"event","data":{"object":{"amount":2000}}},"#;
    pattern.iter().copied().cycle().take(len).collect()
}

fn bench(c: &mut Criterion) {
    let secret = Secret::new(SECRET).expect("valid secret");
    let verifier = Verifier::new(vec![secret.clone()]).expect("one secret");
    let mut group = c.benchmark_group("verify");
    for &(len, label) in SIZES {
        let body = body(len);
        let header = signature_header(&[&secret], T, &body);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(
            BenchmarkId::new("raw HMAC-SHA256", label),
            &body,
            |b, body| {
                b.iter(|| raw_hmac_sha256(SECRET.as_bytes(), b"1700000000.", black_box(body)));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("Verifier::verify", label),
            &body,
            |b, body| {
                b.iter(|| verifier.verify(black_box(body), Some(black_box(&header)), T + 1));
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
