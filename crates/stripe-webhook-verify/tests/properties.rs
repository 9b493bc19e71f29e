//! Property tests: signing round-trips, any single-byte change is rejected, and the parser and
//! verifier never panic on arbitrary headers.

use proptest::prelude::*;
use stripe_webhook_verify::{
    MAX_TIMESTAMP, Secret, SignatureHeader, Verified, Verifier, sign, signature_header,
};

/// A secret that passes validation: printable, no surrounding whitespace, sometimes non-ASCII.
fn secret_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "whsec_[A-Za-z0-9+/]{1,48}",
        "[!-~][ -~]{0,30}[!-~]",
        "[!-~]",
        "whsec_[a-zé日🎉]{1,10}",
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![0..=MAX_TIMESTAMP, 1_600_000_000i64..1_900_000_000]
}

/// A verifier with `secret` alone; these properties call it through
/// `verify_ignoring_timestamp`, so that any timestamp applies.
fn verifier(secret: &Secret) -> Verifier {
    Verifier::new(vec![secret.clone()]).expect("one secret")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn anything_signed_verifies(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        value in secret_value(),
        t in timestamp(),
        skew in -300i64..=300,
    ) {
        let secret = Secret::new(value).expect("generated secrets are valid");
        let header = format!("t={t},v1={}", sign(&secret, t, &body));
        prop_assert_eq!(&header, &signature_header(&[&secret], t, &body));
        let strict = Verifier::new(vec![secret.clone()]).expect("one secret");
        prop_assert_eq!(
            strict.verify(&body, Some(&header), t + skew),
            Ok(Verified { timestamp: t, secret_index: 0 })
        );
    }

    #[test]
    fn any_single_byte_change_of_the_body_is_rejected(
        body in prop::collection::vec(any::<u8>(), 1..2048),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        value in secret_value(),
        t in timestamp(),
    ) {
        let secret = Secret::new(value).expect("valid");
        let header = signature_header(&[&secret], t, &body);
        let mut tampered = body.clone();
        tampered[index.index(body.len())] ^= flip;
        prop_assert!(verifier(&secret).verify_ignoring_timestamp(&tampered, Some(&header)).is_err());
    }

    #[test]
    fn any_single_byte_change_of_t_or_the_signature_is_rejected(
        body in prop::collection::vec(any::<u8>(), 0..512),
        value in secret_value(),
        t in timestamp(),
        index in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let secret = Secret::new(value).expect("valid");
        let header = signature_header(&[&secret], t, &body);
        let mut bytes = header.clone().into_bytes();
        // Every byte after "t=": the digits of t, the comma, "v1=" and the 64 hex characters.
        let at = 2 + index.index(bytes.len() - 2);
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        // A byte change may produce invalid UTF-8, which no &str header can carry: skip those.
        if let Ok(changed) = String::from_utf8(bytes) {
            prop_assert!(
                verifier(&secret).verify_ignoring_timestamp(&body, Some(&changed)).is_err(),
                "{} accepted", changed
            );
        }
    }

    #[test]
    fn arbitrary_unicode_headers_never_panic(header in any::<String>(), body in any::<Vec<u8>>()) {
        let secret = Secret::new("whsec_x").expect("valid");
        let _ = SignatureHeader::parse(&header);
        prop_assert!(verifier(&secret).verify_ignoring_timestamp(&body, Some(&header)).is_err());
    }

    #[test]
    fn header_shaped_noise_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just("t=".to_owned()), Just("v1=".to_owned()), Just("v0=".to_owned()),
                Just(",".to_owned()), Just("=".to_owned()), Just(" ".to_owned()),
                "[0-9]{0,14}", "[0-9a-fA-F]{60,66}", "\\PC{0,8}",
            ],
            0..64,
        ),
        now in any::<i64>(),
    ) {
        let header: String = parts.concat();
        let secret = Secret::new("whsec_x").expect("valid");
        let v = Verifier::new(vec![secret]).expect("one secret");
        let parsed = SignatureHeader::parse(&header);
        let verified = v.verify(b"{}", Some(&header), now);
        // Verification never succeeds where parsing failed, and parse errors are the verify errors.
        if let Err(e) = parsed {
            prop_assert_eq!(verified, Err(e));
        } else {
            prop_assert!(verified.is_err());
        }
    }
}
