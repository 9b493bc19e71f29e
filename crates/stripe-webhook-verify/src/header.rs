//! The strict `Stripe-Signature` header grammar.

use std::fmt;

use crate::error::{MalformedHeader, VerifyError};

/// Headers longer than this many bytes are refused before any HMAC work.
///
/// ```
/// use stripe_webhook_verify::{MAX_HEADER_BYTES, SignatureHeader, VerifyError};
///
/// let long = format!("t=1,v0={}", "a".repeat(MAX_HEADER_BYTES));
/// assert_eq!(
///     SignatureHeader::parse(&long).unwrap_err(),
///     VerifyError::HeaderTooLarge { len: long.len(), max: MAX_HEADER_BYTES }
/// );
/// ```
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Headers with more `v1=` elements than this are refused before any HMAC work.
///
/// ```
/// use stripe_webhook_verify::{MAX_V1_SIGNATURES, SignatureHeader, VerifyError};
///
/// let v1 = format!(",v1={}", "0".repeat(64));
/// let header = format!("t=1{}", v1.repeat(MAX_V1_SIGNATURES + 1));
/// assert_eq!(
///     SignatureHeader::parse(&header).unwrap_err(),
///     VerifyError::TooManySignatures { count: 17, max: MAX_V1_SIGNATURES }
/// );
/// ```
pub const MAX_V1_SIGNATURES: usize = 16;

/// The largest timestamp the grammar admits (12 digits).
///
/// ```
/// use stripe_webhook_verify::{MAX_TIMESTAMP, MalformedHeader, SignatureHeader, VerifyError};
///
/// let v1 = "0".repeat(64);
/// let max = format!("t={MAX_TIMESTAMP},v1={v1}");
/// assert_eq!(SignatureHeader::parse(&max)?.timestamp(), MAX_TIMESTAMP);
/// assert_eq!(
///     SignatureHeader::parse(&format!("t={},v1={v1}", MAX_TIMESTAMP + 1)).unwrap_err(),
///     VerifyError::Malformed(MalformedHeader::BadTimestamp)
/// );
/// # Ok::<(), VerifyError>(())
/// ```
pub const MAX_TIMESTAMP: i64 = 999_999_999_999;

/// A parsed `Stripe-Signature` header: exactly one canonical `t` and 1 to
/// [`MAX_V1_SIGNATURES`] decoded `v1` candidates. Parsing allocates nothing.
///
/// The verifier parses with it; on its own it reads a header's time without any secret (e.g. to
/// tell which secret should have signed an archived webhook). A parsed header is not authentic.
///
/// ```
/// use stripe_webhook_verify::SignatureHeader;
///
/// let v1 = "ab".repeat(32);
/// let header = format!("t=1700000000,v1={v1},v0=ignored");
/// let parsed = SignatureHeader::parse(&header)?;
/// assert_eq!(parsed.timestamp(), 1_700_000_000);
/// assert_eq!(parsed.signatures(), [[0xab; 32]]);
/// assert_eq!(format!("{parsed:?}"), "SignatureHeader { timestamp: 1700000000, v1_candidates: 1 }");
/// # Ok::<(), stripe_webhook_verify::VerifyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    timestamp_digits: &'a str,
    timestamp: i64,
    candidates: [[u8; 32]; MAX_V1_SIGNATURES],
    len: usize,
}

impl<'a> SignatureHeader<'a> {
    /// Parses a header with the strict grammar: split on `,`, each element on its first `=`, no
    /// trimming; elements without `=` and unknown keys (including `v0`) are ignored; exactly one `t`
    /// of 1 to 12 digits without a leading zero; `v1` values that are not 64 lowercase hex characters
    /// are not candidates. Size and candidate-count limits are checked here, before any HMAC.
    ///
    /// ```
    /// use stripe_webhook_verify::{MalformedHeader, SignatureHeader, VerifyError};
    ///
    /// let v1 = "0".repeat(64);
    /// assert!(SignatureHeader::parse(&format!("t=1700000000,v1={v1}")).is_ok());
    /// assert_eq!(SignatureHeader::parse("").unwrap_err(), VerifyError::MissingHeader);
    /// assert_eq!(
    ///     SignatureHeader::parse(&format!("t=017,v1={v1}")).unwrap_err(),
    ///     VerifyError::Malformed(MalformedHeader::BadTimestamp)
    /// );
    /// // No trimming: " v1" is not "v1", and upper-case hex is not a candidate.
    /// assert_eq!(
    ///     SignatureHeader::parse(&format!("t=1, v1={v1},v1={}", "A".repeat(64))).unwrap_err(),
    ///     VerifyError::NoV1Signature
    /// );
    /// ```
    ///
    /// # Errors
    /// [`VerifyError::MissingHeader`] (empty), [`VerifyError::HeaderTooLarge`],
    /// [`VerifyError::Malformed`], [`VerifyError::TooManySignatures`] or
    /// [`VerifyError::NoV1Signature`], in that order of precedence.
    pub fn parse(header: &'a str) -> Result<SignatureHeader<'a>, VerifyError> {
        if header.is_empty() {
            return Err(VerifyError::MissingHeader);
        }
        if header.len() > MAX_HEADER_BYTES {
            return Err(VerifyError::HeaderTooLarge {
                len: header.len(),
                max: MAX_HEADER_BYTES,
            });
        }
        let mut timestamp: Option<(&'a str, Option<i64>)> = None;
        let mut duplicate = false;
        let mut v1_count = 0usize;
        let mut candidates = [[0u8; 32]; MAX_V1_SIGNATURES];
        let mut len = 0usize;
        for (key, value) in header.split(',').filter_map(|e| e.split_once('=')) {
            match key {
                "t" if timestamp.is_some() => duplicate = true,
                "t" => timestamp = Some((value, parse_timestamp(value))),
                "v1" => {
                    v1_count += 1;
                    if len < MAX_V1_SIGNATURES
                        && let Some(sig) = decode_lower_hex_32(value)
                    {
                        candidates[len] = sig;
                        len += 1;
                    }
                }
                _ => {}
            }
        }
        let (timestamp_digits, timestamp) = match timestamp {
            _ if duplicate => {
                return Err(VerifyError::Malformed(MalformedHeader::DuplicateTimestamp));
            }
            None => return Err(VerifyError::Malformed(MalformedHeader::NoTimestamp)),
            Some((_, None)) => return Err(VerifyError::Malformed(MalformedHeader::BadTimestamp)),
            Some((digits, Some(t))) => (digits, t),
        };
        if v1_count > MAX_V1_SIGNATURES {
            return Err(VerifyError::TooManySignatures {
                count: v1_count,
                max: MAX_V1_SIGNATURES,
            });
        }
        if len == 0 {
            return Err(VerifyError::NoV1Signature);
        }
        Ok(SignatureHeader {
            timestamp_digits,
            timestamp,
            candidates,
            len,
        })
    }

    /// The `t` value, in seconds since the Unix epoch (0 to [`MAX_TIMESTAMP`]).
    ///
    /// ```
    /// use stripe_webhook_verify::SignatureHeader;
    ///
    /// let header = format!("t=1700000000,v1={}", "0".repeat(64));
    /// assert_eq!(SignatureHeader::parse(&header)?.timestamp(), 1_700_000_000);
    /// # Ok::<(), stripe_webhook_verify::VerifyError>(())
    /// ```
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The `t` value exactly as it appears in the header (the signed digits).
    ///
    /// ```
    /// use stripe_webhook_verify::SignatureHeader;
    ///
    /// let header = format!("t=1700000000,v1={}", "0".repeat(64));
    /// assert_eq!(SignatureHeader::parse(&header)?.timestamp_digits(), "1700000000");
    /// # Ok::<(), stripe_webhook_verify::VerifyError>(())
    /// ```
    pub fn timestamp_digits(&self) -> &'a str {
        self.timestamp_digits
    }

    /// The decoded `v1` candidates, in header order.
    ///
    /// ```
    /// use stripe_webhook_verify::SignatureHeader;
    ///
    /// let header = format!("t=1,v1={},v1=nothex,v1={}", "01".repeat(32), "ff".repeat(32));
    /// assert_eq!(SignatureHeader::parse(&header)?.signatures(), [[0x01; 32], [0xff; 32]]);
    /// # Ok::<(), stripe_webhook_verify::VerifyError>(())
    /// ```
    pub fn signatures(&self) -> &[[u8; 32]] {
        &self.candidates[..self.len]
    }
}

impl fmt::Debug for SignatureHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureHeader")
            .field("timestamp", &self.timestamp)
            .field("v1_candidates", &self.len)
            .finish()
    }
}

/// 1 to 12 ASCII digits, no leading zero except `0` itself.
fn parse_timestamp(digits: &str) -> Option<i64> {
    let bytes = digits.as_bytes();
    let canonical = matches!(bytes.len(), 1..=12)
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes.len() == 1 || bytes[0] != b'0');
    canonical.then(|| {
        bytes
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    })
}

/// Exactly 64 lowercase hex characters, decoded. (Hex decoding of the attacker's own input: no
/// secret is involved, so branching here leaks nothing.)
fn decode_lower_hex_32(value: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = value.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_timestamp_accepts_canonical_digits_only() {
        assert_eq!(parse_timestamp("0"), Some(0));
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_timestamp("999999999999"), Some(MAX_TIMESTAMP));
        for bad in ["", "00", "01", "1000000000000", "+1", "-1", "1 ", "٣"] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decode_lower_hex_32_round_trips_and_refuses_upper_case() {
        let hex = "00ff10aa".repeat(8);
        assert_eq!(
            decode_lower_hex_32(&hex).map(|b| b[..4].to_vec()),
            Some(vec![0, 255, 16, 170])
        );
        assert_eq!(decode_lower_hex_32(&hex.to_uppercase()), None);
        assert_eq!(decode_lower_hex_32(&hex[..62]), None);
    }

    #[test]
    fn debug_shows_timestamp_and_count_only() {
        let header = format!("t=5,v1={}", "ab".repeat(32));
        let parsed = SignatureHeader::parse(&header).expect("valid");
        assert_eq!(
            format!("{parsed:?}"),
            "SignatureHeader { timestamp: 5, v1_candidates: 1 }"
        );
        assert_eq!(parsed.timestamp_digits(), "5");
    }
}
