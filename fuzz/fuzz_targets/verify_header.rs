//! Fuzz the strict `Stripe-Signature` parser and verifier.
//!
//! Input: header bytes, then a 0xFF separator (never valid UTF-8), then the body. The header is
//! decoded lossily so every input exercises the parser. Oracles:
//! - nothing panics;
//! - `verify` fails with exactly the parser's error whenever parsing fails;
//! - a success means one of the parsed candidates is `sign()` under the matched secret;
//! - a header signed here for this body always verifies (round trip through the same HMAC path).
#![no_main]

use std::sync::OnceLock;

use stripe_webhook_verify::{
    MAX_TIMESTAMP, Secret, SignatureHeader, Verifier, sign, signature_header,
};

const NOW: i64 = 1_700_000_000;

fn fixture() -> &'static (Vec<Secret>, Verifier) {
    static FIXTURE: OnceLock<(Vec<Secret>, Verifier)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let secrets = vec![
            Secret::new("whsec_fuzz_old").expect("valid"),
            Secret::new("whsec_fuzz_new").expect("valid"),
        ];
        let verifier = Verifier::new(secrets.clone()).expect("two secrets");
        (secrets, verifier)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (secrets, verifier) = fixture();
    let (header, body) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let header = String::from_utf8_lossy(header);

    let parsed = SignatureHeader::parse(&header);
    let verified = verifier.verify(body, Some(&header), NOW);
    match (&parsed, &verified) {
        (Err(parse_error), _) => assert_eq!(verified.as_ref().err(), Some(parse_error)),
        (Ok(parsed), Ok(ok)) => {
            let expected = sign(&secrets[ok.secret_index], parsed.timestamp(), body);
            assert!(parsed.signatures().iter().any(|s| hex_eq(s, &expected)));
        }
        (Ok(_), Err(_)) => {}
    }

    let seed = body
        .iter()
        .take(8)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let t = i64::try_from(seed % (MAX_TIMESTAMP as u64 + 1)).expect("at most 12 digits");
    let signed = signature_header(&[&secrets[1]], t, body);
    let ok = verifier
        .verify_ignoring_timestamp(body, Some(&signed))
        .expect("own signature verifies");
    assert_eq!((ok.timestamp, ok.secret_index), (t, 1));
});

fn hex_eq(bytes: &[u8; 32], hex: &str) -> bool {
    hex.len() == 64
        && bytes
            .iter()
            .zip(hex.as_bytes().chunks_exact(2))
            .all(|(b, pair)| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    == Some(*b)
            })
}
