//! One test per rule of the strict profile (the README's "Rules" table), named after the rule.

use crate::verifier::HMAC_CALLS;
use crate::*;

const T: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"id":"evt_1"}"#;

fn secret(s: &str) -> Secret {
    Secret::new(s).expect("valid secret")
}

fn verifier(secrets: &[&str]) -> Verifier {
    Verifier::new(secrets.iter().map(|s| secret(s)).collect()).expect("non-empty")
}

fn sig(s: &str) -> String {
    sign(&secret(s), T, BODY)
}

fn check(v: &Verifier, header: &str) -> Result<Verified, VerifyError> {
    v.verify(BODY, Some(header), T)
}

fn hmac_calls<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = HMAC_CALLS.with(|c| c.get());
    let r = f();
    (r, HMAC_CALLS.with(|c| c.get()) - before)
}

// ---- The algorithm ----

#[test]
fn key_is_the_secret_utf8_bytes_with_prefix_not_base64_decoded() {
    // Independent vector: Python's hmac.new(b"whsec_test_secret", b'1700000000.{"id":"evt_1"}', sha256).
    let expected = "248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a";
    assert_eq!(sign(&secret("whsec_test_secret"), T, BODY), expected);
    let v = verifier(&["whsec_test_secret"]);
    assert!(check(&v, &format!("t={T},v1={expected}")).is_ok());
}

#[test]
fn message_is_timestamp_dot_raw_body_bytes_even_if_not_utf8() {
    // Python: hmac.new(b"whsec_test_secret", b"1700000000.\xff\xfe\x00", sha256).
    let body = b"\xff\xfe\x00";
    let expected = "85d4833a625631e100b3adc6ffb883f0d4731dea854b842839400e28c283a066";
    assert_eq!(sign(&secret("whsec_test_secret"), T, body), expected);
    let v = verifier(&["whsec_test_secret"]);
    let header = format!("t={T},v1={expected}");
    assert_eq!(
        v.verify(body, Some(&header), T),
        Ok(Verified {
            timestamp: T,
            secret_index: 0
        })
    );
}

#[test]
fn expected_signature_is_lowercase_hex_64() {
    let s = sig("whsec_a");
    assert_eq!(s.len(), 64);
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(
        signature_header(&[&secret("whsec_a")], T, BODY),
        format!("t={T},v1={s}")
    );
}

#[test]
fn accept_if_any_v1_matches_under_any_secret() {
    let v = verifier(&["whsec_a", "whsec_b"]);
    let junk = "0".repeat(64);
    let header = format!("t={T},v1={junk},v1={}", sig("whsec_b"));
    assert_eq!(
        check(&v, &header),
        Ok(Verified {
            timestamp: T,
            secret_index: 1
        })
    );
    assert_eq!(
        check(&v, &format!("t={T},v1={}", sig("whsec_c"))),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn age_check_comes_after_the_signature_check() {
    let v = verifier(&["whsec_a"]);
    let forged = format!("t={T},v1={}", "0".repeat(64));
    // Long after T: a forgery is reported as a forgery, not as stale.
    assert_eq!(
        v.verify(BODY, Some(&forged), T + 10_000),
        Err(VerifyError::NoMatchingSignature)
    );
    let genuine = format!("t={T},v1={}", sig("whsec_a"));
    assert!(matches!(
        v.verify(BODY, Some(&genuine), T + 10_000),
        Err(VerifyError::Stale { .. })
    ));
}

#[test]
fn v0_and_unknown_schemes_and_keys_are_ignored() {
    let v = verifier(&["whsec_a"]);
    let good = sig("whsec_a");
    let header = format!("v0={good},t={T},v2=zz,foo=bar,v1={good},v0=abc");
    assert!(check(&v, &header).is_ok());
    // A v0 holding the right MAC is still not a v1 signature.
    assert_eq!(
        check(&v, &format!("t={T},v0={good}")),
        Err(VerifyError::NoV1Signature)
    );
}

// ---- Header grammar ----

#[test]
fn no_trimming_space_before_key_is_not_the_key() {
    let v = verifier(&["whsec_a"]);
    let good = sig("whsec_a");
    assert_eq!(
        check(&v, &format!("t={T}, v1={good}")),
        Err(VerifyError::NoV1Signature)
    );
    assert_eq!(
        check(&v, &format!(" t={T},v1={good}")),
        Err(VerifyError::Malformed(MalformedHeader::NoTimestamp))
    );
    assert_eq!(
        check(&v, &format!("t={T},v1= {good}")),
        Err(VerifyError::NoV1Signature)
    );
    assert_eq!(
        check(&v, &format!("t={T},v1={good} ")),
        Err(VerifyError::NoV1Signature)
    );
}

#[test]
fn elements_without_equals_and_empty_elements_are_ignored() {
    let v = verifier(&["whsec_a"]);
    let header = format!(",junk,t={T},,v1={},", sig("whsec_a"));
    assert!(check(&v, &header).is_ok());
}

#[test]
fn split_on_first_equals_only() {
    let v = verifier(&["whsec_a"]);
    // "t==1" has key "t" and value "=1": not digits.
    assert_eq!(
        check(&v, &format!("t=={T},v1={}", sig("whsec_a"))),
        Err(VerifyError::Malformed(MalformedHeader::BadTimestamp))
    );
    assert_eq!(
        check(&v, &format!("t={T},v1={}=", sig("whsec_a"))),
        Err(VerifyError::NoV1Signature)
    );
}

#[test]
fn duplicate_t_is_rejected() {
    let v = verifier(&["whsec_a"]);
    let good = sig("whsec_a");
    let dup = Err(VerifyError::Malformed(MalformedHeader::DuplicateTimestamp));
    assert_eq!(check(&v, &format!("t={T},t={T},v1={good}")), dup);
    assert_eq!(check(&v, &format!("t=1,v1={good},t={T}")), dup);
    assert_eq!(check(&v, &format!("t={T},v1={good},t=abc")), dup);
}

#[test]
fn missing_t_is_rejected() {
    let v = verifier(&["whsec_a"]);
    assert_eq!(
        check(&v, &format!("v1={}", sig("whsec_a"))),
        Err(VerifyError::Malformed(MalformedHeader::NoTimestamp))
    );
}

#[test]
fn t_is_1_to_12_digits_without_leading_zero() {
    let v = verifier(&["whsec_a"]);
    for bad in [
        "abc",
        "",
        "+1",
        "-1",
        "0123",
        "123abc",
        " 1700000000",
        "1700000000 ",
        "1_700",
        "1.5e9",
        "12345678901234567890",
        "1234567890123",
        "00",
        "１７",
    ] {
        let header = format!("t={bad},v1={}", "0".repeat(64));
        assert_eq!(
            check(&v, &header),
            Err(VerifyError::Malformed(MalformedHeader::BadTimestamp)),
            "t={bad:?}"
        );
    }
    for (good, t) in [("0", 0), ("7", 7), ("999999999999", MAX_TIMESTAMP)] {
        let s = secret("whsec_a");
        let header = format!("t={good},v1={}", sign(&s, t, BODY));
        let got = v.verify_ignoring_timestamp(BODY, Some(&header));
        assert_eq!(
            got,
            Ok(Verified {
                timestamp: t,
                secret_index: 0
            }),
            "t={good}"
        );
    }
}

#[test]
fn v1_must_be_exactly_64_lowercase_hex() {
    let v = verifier(&["whsec_a"]);
    let good = sig("whsec_a");
    for bad in [
        good[..63].to_owned(),
        format!("{good}0"),
        good.to_uppercase(),
        format!("{}g", &good[..63]),
        format!("{}é", &good[..62]),
        "sig=junk".to_owned(),
        String::new(),
    ] {
        assert_eq!(
            check(&v, &format!("t={T},v1={bad}")),
            Err(VerifyError::NoV1Signature),
            "{bad}"
        );
    }
    // An unusable v1 beside a good one does not spoil it.
    assert!(check(&v, &format!("t={T},v1={},v1={good}", good.to_uppercase())).is_ok());
}

#[test]
fn header_over_8_kib_is_refused_before_any_hmac() {
    let v = verifier(&["whsec_a"]);
    let base = format!("t={T},v1={}", sig("whsec_a"));
    let pad = |total: usize| format!("{base},x={}", "y".repeat(total - base.len() - 3));
    let at_limit = pad(MAX_HEADER_BYTES);
    assert_eq!(at_limit.len(), 8192);
    assert!(check(&v, &at_limit).is_ok());
    let over = pad(MAX_HEADER_BYTES + 1);
    let (result, calls) = hmac_calls(|| check(&v, &over));
    assert_eq!(
        result,
        Err(VerifyError::HeaderTooLarge {
            len: 8193,
            max: 8192
        })
    );
    assert_eq!(calls, 0);
}

#[test]
fn more_than_16_v1_candidates_are_refused_before_any_hmac() {
    let v = verifier(&["whsec_a"]);
    let good = sig("whsec_a");
    let with = |n: usize| format!("t={T}{}", format!(",v1={good}").repeat(n));
    assert!(check(&v, &with(16)).is_ok());
    let (result, calls) = hmac_calls(|| check(&v, &with(17)));
    assert_eq!(
        result,
        Err(VerifyError::TooManySignatures { count: 17, max: 16 })
    );
    assert_eq!(calls, 0);
    // Unusable v1 values count too: the cap is on v1 elements.
    let junk = format!("t={T},v1={good}{}", ",v1=x".repeat(16));
    assert_eq!(
        check(&v, &junk),
        Err(VerifyError::TooManySignatures { count: 17, max: 16 })
    );
}

#[test]
fn one_hmac_per_secret_not_per_candidate() {
    let v = verifier(&["whsec_a", "whsec_b", "whsec_c"]);
    let header = format!(
        "t={T}{},v1={}",
        format!(",v1={}", "0".repeat(64)).repeat(15),
        sig("whsec_c")
    );
    let (result, calls) = hmac_calls(|| check(&v, &header));
    assert_eq!(
        result,
        Ok(Verified {
            timestamp: T,
            secret_index: 2
        })
    );
    assert_eq!(calls, 3);
}

#[test]
fn unsigned_header_is_no_v1_signature() {
    let v = verifier(&["whsec_a"]);
    let (result, calls) = hmac_calls(|| check(&v, &format!("t={T}")));
    assert_eq!(result, Err(VerifyError::NoV1Signature));
    assert_eq!(calls, 0);
}

#[test]
fn missing_or_empty_header_is_missing_header() {
    let v = verifier(&["whsec_a"]);
    assert_eq!(v.verify(BODY, None, T), Err(VerifyError::MissingHeader));
    assert_eq!(v.verify(BODY, Some(""), T), Err(VerifyError::MissingHeader));
}

// ---- Time ----

#[test]
fn stale_is_a_distinct_error_with_the_age() {
    let v = verifier(&["whsec_a"]).with_tolerance(Tolerance::seconds(300).expect("positive"));
    let header = format!("t={T},v1={}", sig("whsec_a"));
    let err = v.verify(BODY, Some(&header), T + 412).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Stale {
            age_secs: 412,
            tolerance_secs: 300
        }
    );
    assert_eq!(
        err.to_string(),
        "timestamp is 412 s old, tolerance is 300 s"
    );
    assert_eq!(err.label(), "stale_timestamp");
}

#[test]
fn age_equal_to_tolerance_is_accepted() {
    let v = verifier(&["whsec_a"]).with_tolerance(Tolerance::seconds(60).expect("positive"));
    let header = format!("t={T},v1={}", sig("whsec_a"));
    assert!(v.verify(BODY, Some(&header), T + 60).is_ok());
    assert_eq!(
        v.verify(BODY, Some(&header), T + 61),
        Err(VerifyError::Stale {
            age_secs: 61,
            tolerance_secs: 60
        })
    );
}

#[test]
fn future_beyond_max_skew_is_a_distinct_error() {
    let header = format!("t={T},v1={}", sig("whsec_a"));
    let v = verifier(&["whsec_a"]);
    assert!(v.verify(BODY, Some(&header), T - 300).is_ok());
    let err = v.verify(BODY, Some(&header), T - 301).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Future {
            ahead_secs: 301,
            max_skew_secs: 300
        }
    );
    assert_eq!(err.label(), "future_timestamp");
    let strict = v.with_max_future_skew(5);
    assert!(strict.verify(BODY, Some(&header), T - 5).is_ok());
    assert_eq!(
        strict.verify(BODY, Some(&header), T - 6),
        Err(VerifyError::Future {
            ahead_secs: 6,
            max_skew_secs: 5
        })
    );
}

#[test]
fn tolerance_zero_is_a_config_error_and_ignoring_the_time_is_explicit() {
    assert_eq!(Tolerance::seconds(0), Err(ConfigError::ZeroTolerance));
    assert_eq!(
        Tolerance::default(),
        Tolerance::seconds(300).expect("positive")
    );
    // The one way to skip the time rules is to say so where the webhook is verified.
    let v = verifier(&["whsec_a"]);
    let header = format!("t={T},v1={}", sig("whsec_a"));
    assert!(v.verify_ignoring_timestamp(BODY, Some(&header)).is_ok());
    assert!(v.verify(BODY, Some(&header), T + 100_000_000).is_err());
    assert!(v.verify(BODY, Some(&header), 0).is_err());
    assert!(v.verify_ignoring_timestamp(b"x", Some(&header)).is_err());
    assert_eq!(
        v.verify_ignoring_timestamp(BODY, Some(&header)),
        v.verify(BODY, Some(&header), T)
    );
}

#[test]
fn time_is_the_callers() {
    // The verifier reads no clock: the same call at the same `now` decides the same, whenever
    // it runs.
    let header = format!("t={T},v1={}", sig("whsec_a"));
    let v = verifier(&["whsec_a"]);
    assert!(v.verify(BODY, Some(&header), T + 300).is_ok());
    assert!(matches!(
        v.verify(BODY, Some(&header), T + 301),
        Err(VerifyError::Stale { age_secs: 301, .. })
    ));
}

#[test]
fn extreme_clocks_do_not_overflow() {
    let header = format!(
        "t={MAX_TIMESTAMP},v1={}",
        sign(&secret("whsec_a"), MAX_TIMESTAMP, BODY)
    );
    let v = verifier(&["whsec_a"]);
    assert!(matches!(
        v.verify(BODY, Some(&header), i64::MIN),
        Err(VerifyError::Future { .. })
    ));
    let header = format!("t=0,v1={}", sign(&secret("whsec_a"), 0, BODY));
    assert_eq!(
        v.verify(BODY, Some(&header), i64::MAX),
        Err(VerifyError::Stale {
            age_secs: i64::MAX as u64,
            tolerance_secs: 300
        })
    );
}

// ---- Secrets ----

#[test]
fn several_secrets_rotation_good_signature_first_or_last() {
    let v = verifier(&["whsec_new"]);
    let (old, new) = (sig("whsec_old"), sig("whsec_new"));
    assert!(check(&v, &format!("t={T},v1={new},v1={old}")).is_ok());
    assert!(check(&v, &format!("t={T},v1={old},v1={new}")).is_ok());
    let both = verifier(&["whsec_old", "whsec_new"]);
    assert_eq!(
        check(&both, &format!("t={T},v1={new}")).map(|x| x.secret_index),
        Ok(1)
    );
    let header = signature_header(&[&secret("whsec_old"), &secret("whsec_new")], T, BODY);
    assert_eq!(header, format!("t={T},v1={old},v1={new}"));
    assert_eq!(check(&v, &header).map(|x| x.secret_index), Ok(0));
    assert_eq!(both.secrets().len(), 2);
}

#[test]
fn blank_secret_is_refused_at_construction() {
    for blank in ["", " ", "\n", "\t \r\n"] {
        assert_eq!(
            Secret::new(blank).err(),
            Some(ConfigError::BlankSecret(SecretSource::Single))
        );
    }
    assert_eq!(Verifier::new(vec![]).err(), Some(ConfigError::NoSecrets));
    assert_eq!(
        parse_secrets_named("STRIPE_WEBHOOK_SECRET", "").err(),
        Some(ConfigError::EmptySecretList("STRIPE_WEBHOOK_SECRET".into()))
    );
    let err = parse_secrets_named("STRIPE_WEBHOOK_SECRET", "whsec_a,").unwrap_err();
    assert_eq!(
        err.to_string(),
        "STRIPE_WEBHOOK_SECRET element 2 is blank: set it to the endpoint's signing secret (whsec_...)"
    );
}

#[test]
fn whitespace_or_newline_padded_secret_is_refused_not_trimmed() {
    for bad in [
        "whsec_a\n",
        " whsec_a",
        "whsec_a ",
        "whsec_a\r\n",
        "\twhsec_a",
        "whsec_a\nwhsec_b",
    ] {
        assert_eq!(
            Secret::new(bad).err(),
            Some(ConfigError::SecretWhitespace(SecretSource::Single)),
            "{bad:?}"
        );
    }
    let err = parse_secrets_named("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "STRIPE_WEBHOOK_SECRET element 2 has leading/trailing whitespace or a newline \
         (check your .env file); it is refused rather than trimmed"
    );
    let err = parse_secrets_named("MY_SECRETS", "whsec_a\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("MY_SECRETS element 1 has leading/trailing whitespace")
    );
    let ok = parse_secrets_named("STRIPE_WEBHOOK_SECRET", "whsec_a,whsec_b").expect("two secrets");
    assert_eq!(ok.len(), 2);
}

#[test]
fn non_whsec_secret_is_allowed_and_flagged() {
    let s = secret("sk_test_not_a_webhook_secret");
    assert!(!s.has_whsec_prefix());
    assert!(secret("whsec_x").has_whsec_prefix());
    let v = Verifier::new(vec![s.clone()]).expect("allowed");
    let header = signature_header(&[&s], T, BODY);
    assert!(check(&v, &header).is_ok());
    assert_eq!(
        v.secrets().iter().filter(|s| !s.has_whsec_prefix()).count(),
        1
    );
}

#[test]
fn secrets_never_appear_in_debug_display_or_errors() {
    let value = "whsec_S3cr3tV4lue";
    let s = secret(value);
    let v = Verifier::new(vec![s.clone(), secret("other_S3cr3tV4lue")]).expect("valid");
    let texts = [
        format!("{s:?}"),
        format!("{s}"),
        format!("{v:?}"),
        format!(
            "{:?}",
            parse_secrets_named("STRIPE_WEBHOOK_SECRET", &format!("{value},{value} ")).unwrap_err()
        ),
        parse_secrets_named("STRIPE_WEBHOOK_SECRET", &format!("{value},{value} "))
            .unwrap_err()
            .to_string(),
    ];
    for text in &texts {
        assert!(!text.contains("S3cr3t"), "{text}");
    }
    assert_eq!(texts[0], "Secret(whsec_…redacted)");
    assert_eq!(format!("{}", secret("x")), "Secret(…redacted)");
}

// ---- Errors ----

#[test]
fn errors_tell_the_operator_what_went_wrong_without_expected_macs() {
    let v = verifier(&["whsec_a"]);
    let expected = sig("whsec_a");
    let wrong = format!("t={T},v1={}", "1".repeat(64));
    let errors = [
        v.verify(BODY, None, T).unwrap_err(),
        check(&v, &"x".repeat(9000)).unwrap_err(),
        check(&v, "t=1,t=2").unwrap_err(),
        check(&v, &format!("t={T}")).unwrap_err(),
        check(&v, &format!("t={T}{}", ",v1=x".repeat(17))).unwrap_err(),
        check(&v, &wrong).unwrap_err(),
        v.verify(BODY, Some(&format!("t={T},v1={expected}")), T + 999)
            .unwrap_err(),
        v.verify(BODY, Some(&format!("t={T},v1={expected}")), T - 999)
            .unwrap_err(),
    ];
    let reasons: Vec<_> = errors.iter().map(VerifyError::label).collect();
    assert_eq!(
        reasons,
        [
            "missing_header",
            "header_too_large",
            "malformed_header",
            "no_v1_signature",
            "too_many_signatures",
            "no_matching_signature",
            "stale_timestamp",
            "future_timestamp"
        ]
    );
    for e in &errors {
        let (display, debug) = (e.to_string(), format!("{e:?}"));
        assert!(!display.contains(&expected) && !debug.contains(&expected));
        assert!(!e.public_message().is_empty());
    }
    assert_eq!(
        errors[1].to_string(),
        "Stripe-Signature header is 9000 bytes, the limit is 8192 bytes"
    );
    assert_eq!(
        errors[2].to_string(),
        "malformed Stripe-Signature header: more than one t= timestamp element"
    );
    assert_eq!(
        errors[7].to_string(),
        "timestamp is 999 s in the future, the allowed clock skew is 300 s"
    );
}

#[test]
fn header_field_errors_have_stable_labels_and_public_messages() {
    let duplicate = VerifyError::DuplicateHeader { count: 2 };
    assert_eq!(duplicate.label(), "duplicate_header");
    assert_eq!(
        duplicate.public_message(),
        "more than one Stripe-Signature header"
    );
    assert_eq!(
        duplicate.to_string(),
        "2 Stripe-Signature header fields; exactly one is allowed"
    );
    let not_utf8 = VerifyError::Malformed(MalformedHeader::NotUtf8);
    assert_eq!(not_utf8.label(), "malformed_header");
    assert_eq!(MalformedHeader::NotUtf8.label(), "not_utf8");
    assert_eq!(
        not_utf8.public_message(),
        "malformed Stripe-Signature header"
    );
    assert_eq!(
        not_utf8.to_string(),
        "malformed Stripe-Signature header: the header value is not valid UTF-8"
    );
}

// ---- Pre-check (the header alone, before the body is read) ----

#[test]
fn precheck_applies_every_header_rule_with_no_hmac() {
    let v = verifier(&["whsec_a"]);
    let good = format!("t={T},v1={}", sig("whsec_a"));
    let many = format!("t={T}{}", ",v1=x".repeat(17));
    let big = "x".repeat(MAX_HEADER_BYTES + 1);
    let cases: [(Option<&str>, i64, Result<(), VerifyError>); 8] = [
        (Some(&good), T, Ok(())),
        (None, T, Err(VerifyError::MissingHeader)),
        (
            Some(&big),
            T,
            Err(VerifyError::HeaderTooLarge {
                len: 8193,
                max: 8192,
            }),
        ),
        (
            Some("t=1,t=2"),
            T,
            Err(VerifyError::Malformed(MalformedHeader::DuplicateTimestamp)),
        ),
        (Some("t=1"), T, Err(VerifyError::NoV1Signature)),
        (
            Some(&many),
            T,
            Err(VerifyError::TooManySignatures { count: 17, max: 16 }),
        ),
        (
            Some(&good),
            T + 301,
            Err(VerifyError::Stale {
                age_secs: 301,
                tolerance_secs: 300,
            }),
        ),
        (
            Some(&good),
            T - 301,
            Err(VerifyError::Future {
                ahead_secs: 301,
                max_skew_secs: 300,
            }),
        ),
    ];
    for (header, now, expected) in cases {
        let (result, calls) = hmac_calls(|| v.precheck(header, now));
        assert_eq!(result, expected, "{header:?} at {now}");
        assert_eq!(calls, 0, "{header:?}");
    }
    // A pass is not authentication: a well-formed, fresh forgery passes.
    let forged = format!("t={T},v1={}", "0".repeat(64));
    assert_eq!(v.precheck(Some(&forged), T), Ok(()));
    assert_eq!(check(&v, &forged), Err(VerifyError::NoMatchingSignature));
}

#[test]
fn precheck_reports_stale_or_future_before_the_signature_is_checked() {
    let v = verifier(&["whsec_a"]);
    let forged = format!("t={T},v1={}", "0".repeat(64));
    assert!(matches!(
        v.precheck(Some(&forged), T + 10_000),
        Err(VerifyError::Stale { .. })
    ));
    assert_eq!(
        v.verify(BODY, Some(&forged), T + 10_000),
        Err(VerifyError::NoMatchingSignature)
    );
    assert!(matches!(
        v.precheck(Some(&forged), T - 10_000),
        Err(VerifyError::Future { .. })
    ));
}

#[test]
fn precheck_then_verify_ignoring_timestamp_is_verify_with_one_time_check() {
    // The core's path: every rule but the HMAC before the body, then the HMAC alone.
    let v = verifier(&["whsec_a"]);
    let good = format!("t={T},v1={}", sig("whsec_a"));
    let (pre, calls) = hmac_calls(|| v.precheck(Some(&good), T));
    assert_eq!((pre, calls), (Ok(()), 0));
    let (verified, calls) = hmac_calls(|| v.verify_ignoring_timestamp(BODY, Some(&good)));
    assert_eq!(calls, 1);
    assert_eq!(verified, v.verify(BODY, Some(&good), T));
    assert_eq!(v.precheck(Some("t=1"), 0), Err(VerifyError::NoV1Signature));
    assert_eq!(
        v.verify_ignoring_timestamp(BODY, Some("t=1")),
        Err(VerifyError::NoV1Signature)
    );
}

#[test]
fn precheck_uses_the_callers_time() {
    let good = format!("t={T},v1={}", sig("whsec_a"));
    let v = verifier(&["whsec_a"]);
    assert_eq!(v.precheck(Some(&good), T + 300), Ok(()));
    assert!(matches!(
        v.precheck(Some(&good), T + 301),
        Err(VerifyError::Stale { age_secs: 301, .. })
    ));
}

mod precheck_properties {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;

    /// Headers of every shape: signed by the right or a wrong secret, over the body or not, with
    /// extra elements around, or header-shaped noise.
    fn header(body: Vec<u8>) -> impl Strategy<Value = (String, i64)> {
        let t = prop_oneof![0..=MAX_TIMESTAMP, T - 1000..T + 1000];
        let noise = prop::collection::vec(
            prop_oneof![
                Just("t=".to_owned()),
                Just("v1=".to_owned()),
                Just(",".to_owned()),
                Just("=".to_owned()),
                "[0-9]{0,14}",
                "[0-9a-f]{64}",
                "\\PC{0,8}",
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat());
        (
            t,
            prop_oneof![Just("whsec_a"), Just("whsec_b")],
            any::<bool>(),
            noise.clone(),
            noise,
        )
            .prop_flat_map(move |(t, key, over_body, before, after)| {
                let signed_body = if over_body {
                    body.clone()
                } else {
                    b"other".to_vec()
                };
                let signed = signature_header(&[&secret(key)], t, &signed_body);
                prop_oneof![
                    3 => Just((signed.clone(), t)),
                    1 => Just((format!("{before},{signed},{after}"), t)),
                    1 => Just((format!("{before}{after}"), t)),
                ]
            })
    }

    /// For any header, body and time: zero HMACs in the pre-check; whatever `verify` accepts,
    /// the pre-check accepts; every pre-check refusal is `verify`'s, except that a stale or
    /// future one may be a forgery to `verify`. Counts the cases so each branch is exercised.
    #[test]
    fn precheck_accepts_what_verify_accepts_and_refuses_as_verify_does() {
        let inputs = (
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_flat_map(|body| (Just(body.clone()), header(body))),
            prop_oneof![-700i64..=700, any::<i64>().prop_map(|n| n / 2)],
            prop_oneof![
                Just(Tolerance::seconds(u64::MAX).expect("positive")),
                (1u64..=600).prop_map(|s| Tolerance::seconds(s).expect("positive")),
            ],
            0u64..=600,
        );
        let counts = std::cell::RefCell::new(std::collections::BTreeMap::<&str, usize>::new());
        let mut runner = prop::test_runner::TestRunner::new(ProptestConfig::with_cases(1024));
        let result = runner.run(
            &inputs,
            |((body, (header, t)), offset, tolerance, max_skew)| {
                let v = verifier(&["whsec_a"])
                    .with_tolerance(tolerance)
                    .with_max_future_skew(max_skew);
                let now = t.saturating_add(offset);
                let (pre, calls) = hmac_calls(|| v.precheck(Some(&header), now));
                prop_assert_eq!(calls, 0);
                let verified = v.verify(&body, Some(&header), now);
                // After a pre-check that passed at `now`, the HMAC alone decides as `verify`.
                if pre.is_ok() {
                    prop_assert_eq!(
                        &v.verify_ignoring_timestamp(&body, Some(&header)),
                        &verified
                    );
                }
                let case = match (&pre, &verified) {
                    (Ok(()), Ok(_)) => "both accept",
                    (Ok(()), Err(VerifyError::NoMatchingSignature)) => "precheck passes a forgery",
                    (Ok(()), Err(e)) => return Err(TestCaseError::fail(format!("verify: {e:?}"))),
                    (Err(time @ (VerifyError::Stale { .. } | VerifyError::Future { .. })), _) => {
                        prop_assert!(
                            verified == Err(time.clone())
                                || verified == Err(VerifyError::NoMatchingSignature),
                            "{:?} vs {:?}",
                            time,
                            verified
                        );
                        if verified.is_err() && verified != Err(VerifyError::NoMatchingSignature) {
                            "same time refusal"
                        } else {
                            "time refusal of a forgery"
                        }
                    }
                    (Err(e), _) => {
                        prop_assert_eq!(&verified, &Err(e.clone()));
                        "same header refusal"
                    }
                };
                *counts.borrow_mut().entry(case).or_default() += 1;
                Ok(())
            },
        );
        if let Err(e) = result {
            panic!("{e}");
        }
        let counts = counts.into_inner();
        for case in [
            "both accept",
            "precheck passes a forgery",
            "same time refusal",
            "time refusal of a forgery",
            "same header refusal",
        ] {
            assert!(
                counts.get(case).copied().unwrap_or(0) >= 20,
                "{case}: {counts:?}"
            );
        }
    }
}

// ---- One header field (feature "http") ----

#[cfg(feature = "http")]
mod header_fields {
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    fn fields(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.append("content-type", HeaderValue::from_static("application/json"));
        for value in values {
            let value = HeaderValue::from_bytes(value).expect("a valid header value");
            map.append("stripe-signature", value);
        }
        map
    }

    #[test]
    fn two_or_more_stripe_signature_fields_are_refused_as_ambiguous() {
        let v = verifier(&["whsec_a"]);
        let good = format!("t={T},v1={}", sig("whsec_a"));
        let forged = format!("t={T},v1={}", "0".repeat(64));
        for (values, count) in [
            (vec![good.as_bytes(), good.as_bytes()], 2),
            (vec![forged.as_bytes(), good.as_bytes()], 2),
            (vec![good.as_bytes(), b"".as_slice()], 2),
            (vec![good.as_bytes(), good.as_bytes(), good.as_bytes()], 3),
        ] {
            let map = fields(&values);
            let duplicate = VerifyError::DuplicateHeader { count };
            let (result, calls) = hmac_calls(|| v.verify_headers(BODY, &map, T));
            assert_eq!(result, Err(duplicate.clone()));
            assert_eq!(calls, 0);
            assert_eq!(stripe_signature(&map), Err(duplicate.clone()));
            assert_eq!(v.precheck_headers(&map, T), Err(duplicate));
        }
        // Header names are case-insensitive: these are two fields of the same header.
        let mut map = HeaderMap::new();
        map.append("Stripe-Signature", good.parse().expect("value"));
        map.append("STRIPE-SIGNATURE", good.parse().expect("value"));
        assert_eq!(
            v.verify_headers(BODY, &map, T),
            Err(VerifyError::DuplicateHeader { count: 2 })
        );
    }

    #[test]
    fn one_field_decides_as_the_str_entry_point_and_none_is_missing_header() {
        let v = verifier(&["whsec_a"]);
        let good = format!("t={T},v1={}", sig("whsec_a"));
        let map = fields(&[good.as_bytes()]);
        assert_eq!(stripe_signature(&map), Ok(Some(good.as_str())));
        assert_eq!(v.verify_headers(BODY, &map, T), check(&v, &good));
        assert!(v.verify_headers(BODY, &map, T).is_ok());
        assert_eq!(v.precheck_headers(&map, T), Ok(()));
        assert!(matches!(
            v.precheck_headers(&map, T + 301),
            Err(VerifyError::Stale { .. })
        ));
        let none = fields(&[]);
        assert_eq!(stripe_signature(&none), Ok(None));
        assert_eq!(
            v.verify_headers(BODY, &none, T),
            Err(VerifyError::MissingHeader)
        );
        assert_eq!(
            v.precheck_headers(&none, T),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn a_field_that_is_not_utf8_is_malformed_and_utf8_goes_to_the_grammar() {
        let v = verifier(&["whsec_a"]);
        let good = format!("t={T},v1={}", sig("whsec_a"));
        let not_utf8 = VerifyError::Malformed(MalformedHeader::NotUtf8);
        let mut bytes = format!("{good},x=").into_bytes();
        bytes.push(0xff);
        let map = fields(&[&bytes]);
        let (result, calls) = hmac_calls(|| v.verify_headers(BODY, &map, T));
        assert_eq!(result, Err(not_utf8.clone()));
        assert_eq!(calls, 0);
        assert_eq!(stripe_signature(&map), Err(not_utf8.clone()));
        assert_eq!(v.precheck_headers(&map, T), Err(not_utf8));
        // Non-ASCII UTF-8 is text: the grammar decides, as through `verify`.
        let map = fields(&[format!("{good},x=é").as_bytes()]);
        assert!(v.verify_headers(BODY, &map, T).is_ok());
        let map = fields(&[format!("t=１７,v1={}", sig("whsec_a")).as_bytes()]);
        assert_eq!(
            v.verify_headers(BODY, &map, T),
            Err(VerifyError::Malformed(MalformedHeader::BadTimestamp))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_one_field_decides_as_its_text_would(
            bytes in prop::collection::vec(any::<u8>(), 0..160),
            signed in any::<bool>(),
            now in T - 400..T + 400,
        ) {
            let v = verifier(&["whsec_a"]);
            let good = format!("t={T},v1={}", sig("whsec_a"));
            let mut value = if signed { good.into_bytes() } else { Vec::new() };
            value.extend(bytes);
            // Only bytes a header value can hold (no control characters but tab).
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut map = HeaderMap::new();
            map.insert("stripe-signature", value.clone());
            let expected = match std::str::from_utf8(value.as_bytes()) {
                Ok(text) => v.verify(BODY, Some(text), now),
                Err(_) => Err(VerifyError::Malformed(MalformedHeader::NotUtf8)),
            };
            prop_assert_eq!(v.verify_headers(BODY, &map, now), expected);
        }
    }
}

// ---- Also in the crate ----

#[test]
fn sign_and_header_builder_share_the_verification_hmac_path() {
    let s = secret("whsec_a");
    let (header, calls) = hmac_calls(|| signature_header(&[&s, &s], T, BODY));
    assert_eq!(calls, 2);
    let parsed = SignatureHeader::parse(&header).expect("valid");
    assert_eq!(parsed.signatures().len(), 2);
    assert_eq!(hex::encode(parsed.signatures()[0]), sign(&s, T, BODY));
}
