//! `seal_compression`: what sealing a file-sink segment costs, per compressor and level, on
//! realistic records (the bundled events, encoded as the server encodes them, each with a distinct
//! id and receipt time), measured in one run against the baseline the sink used to seal with
//! (zlib-rs through flate2, one gzip stream, level 6).
//!
//! `cargo run --release -p stripe-webhook-benches --bin seal_compression -- [MiB] [events-dir]`
//!
//! Prints one Markdown table: compressor, level, MB/s of input, output size and the ratio of each
//! to the baseline's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(64, |a| a.parse().expect("MiB"));
    let dir: PathBuf = args.next().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events"),
        PathBuf::from,
    );
    let segment = segment(&dir, mib << 20);
    println!(
        "{} MiB of {} records (bundled events, raw on)\n",
        segment.len() >> 20,
        segment.iter().filter(|&&b| b == b'\n').count()
    );
    println!("| compressor | level | MB/s | output MiB | time vs baseline | size vs baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (base_secs, base_len) = measure(|| zlib(&segment, 6));
    let row = |name: &str, level: u32, (secs, len): (f64, usize)| {
        println!(
            "| {name} | {level} | {:.0} | {:.1} | {:.2} | {:.3} |",
            segment.len() as f64 / secs / 1e6,
            len as f64 / f64::from(1 << 20),
            secs / base_secs,
            len as f64 / base_len as f64
        );
    };
    row("zlib-rs stream (baseline)", 6, (base_secs, base_len));
    row("zlib-rs stream", 1, measure(|| zlib(&segment, 1)));
    for level in [1, 3, 4, 5, 6, 7, 9] {
        row(
            "libdeflate, 4 MiB members",
            level,
            measure(|| libdeflate(&segment, level, 4 << 20)),
        );
    }
    for (kib, level) in [(1024, 5), (1024, 6), (256, 6)] {
        row(
            &format!("libdeflate, {kib} KiB members"),
            level,
            measure(|| libdeflate(&segment, level, kib << 10)),
        );
    }
    ExitCode::SUCCESS
}

/// A segment of at least `bytes` bytes of envelope lines.
fn segment(dir: &Path, bytes: usize) -> Vec<u8> {
    let mut bodies: Vec<String> = std::fs::read_dir(dir)
        .expect("events dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| std::fs::read_to_string(p).expect("event"))
        .collect();
    bodies.sort();
    let mut out = Vec::with_capacity(bytes + (1 << 20));
    let mut n = 0u64;
    while out.len() < bytes {
        let body = &bodies[n as usize % bodies.len()];
        // A distinct id of Stripe's shape, as the load generator makes them.
        let id = format!(
            "evt_1Q{:022}",
            n.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 10u64.pow(18)
        );
        let body = body.replacen(
            "\"id\": \"evt_",
            &format!("\"id\": \"{id}\", \"x_\": \"evt_"),
            1,
        );
        let received = ReceivedAt::from_unix_millis(1_795_731_281_123 + n as i64 * 3);
        let header = format!("t={},v1={:064x}", received.unix_seconds(), n);
        let record = encode(
            Bytes::from(body),
            &header,
            received,
            &EnvelopeOptions::default(),
        )
        .expect("encode");
        out.extend_from_slice(record.line());
        n += 1;
    }
    out
}

/// Best of three runs: seconds and output length.
fn measure(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut len = 0;
    for _ in 0..3 {
        let started = Instant::now();
        len = f();
        best = best.min(started.elapsed().as_secs_f64());
    }
    (best, len)
}

fn zlib(input: &[u8], level: u32) -> usize {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(input).expect("compress");
    encoder.finish().expect("finish").len()
}

fn libdeflate(input: &[u8], level: u32, member: usize) -> usize {
    let level = libdeflater::CompressionLvl::new(level as i32).expect("level");
    let mut compressor = libdeflater::Compressor::new(level);
    let mut out = vec![0; compressor.gzip_compress_bound(member)];
    input
        .chunks(member)
        .map(|chunk| compressor.gzip_compress(chunk, &mut out).expect("compress"))
        .sum()
}
