//! Entry points on an `http::HeaderMap` (feature `http`): the one `Stripe-Signature` field, taken
//! without guessing.

use http::HeaderMap;
use http::header::HeaderName;

use crate::error::{MalformedHeader, VerifyError};
use crate::verifier::{Verified, Verifier};

const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

/// The value of the request's one `Stripe-Signature` header field, as the `header` argument of
/// [`Verifier::verify`], [`Verifier::precheck`] and [`Verifier::verify_ignoring_timestamp`] takes
/// it.
///
/// Stripe sends exactly one field. Two or more are refused rather than picked from, because HTTP
/// frameworks disagree on which one counts (the first, the last, or all joined with `,`), and a
/// verifier that takes a different one than the code that logs or routes the request is an attack
/// surface. Available with the `http` feature.
///
/// ```
/// use http::HeaderMap;
/// use stripe_webhook_verify::{MalformedHeader, VerifyError, stripe_signature};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(stripe_signature(&headers), Ok(None));
/// headers.append("stripe-signature", "t=1,v1=ab".parse()?);
/// assert_eq!(stripe_signature(&headers), Ok(Some("t=1,v1=ab")));
/// headers.append("Stripe-Signature", "t=2,v1=cd".parse()?);
/// assert_eq!(stripe_signature(&headers), Err(VerifyError::DuplicateHeader { count: 2 }));
///
/// headers.insert("stripe-signature", http::HeaderValue::from_bytes(b"t=1,\xff")?);
/// assert_eq!(stripe_signature(&headers), Err(VerifyError::Malformed(MalformedHeader::NotUtf8)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`VerifyError::DuplicateHeader`] for two or more fields;
/// [`VerifyError::Malformed`]`(`[`MalformedHeader::NotUtf8`]`)` for a value that is not UTF-8.
/// No field is `Ok(None)`, which verification reports as [`VerifyError::MissingHeader`].
pub fn stripe_signature(headers: &HeaderMap) -> Result<Option<&str>, VerifyError> {
    let mut fields = headers.get_all(STRIPE_SIGNATURE).iter();
    let Some(value) = fields.next() else {
        return Ok(None);
    };
    let more = fields.count();
    if more > 0 {
        return Err(VerifyError::DuplicateHeader { count: 1 + more });
    }
    // UTF-8, not just visible ASCII: the same bytes decide the same here as through the `&str`
    // entry points, whose grammar already refuses every non-ASCII `t` or `v1`.
    std::str::from_utf8(value.as_bytes())
        .map(Some)
        .map_err(|_| VerifyError::Malformed(MalformedHeader::NotUtf8))
}

/// The entry points on a request's headers. Available with the `http` feature.
impl Verifier {
    /// [`Verifier::verify`] with the `Stripe-Signature` field read from `headers` by
    /// [`stripe_signature`], as of `now_unix_secs`.
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Verifier, VerifyError, signature_header};
    ///
    /// let secret = Secret::new("whsec_test_secret")?;
    /// let verifier = Verifier::new(vec![secret.clone()])?;
    /// let body = br#"{"id":"evt_1"}"#;
    /// let mut headers = http::HeaderMap::new();
    /// headers.append("stripe-signature", signature_header(&[&secret], 1_700_000_000, body).parse()?);
    /// assert!(verifier.verify_headers(body, &headers, 1_700_000_000).is_ok());
    ///
    /// // A second field, even a copy of the first, is ambiguous.
    /// let copy = headers["stripe-signature"].clone();
    /// headers.append("stripe-signature", copy);
    /// let err = verifier.verify_headers(body, &headers, 1_700_000_000).unwrap_err();
    /// assert_eq!(err, VerifyError::DuplicateHeader { count: 2 });
    /// assert_eq!(err.label(), "duplicate_header");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// See [`stripe_signature`] and [`Verifier::verify`].
    pub fn verify_headers(
        &self,
        body: &[u8],
        headers: &HeaderMap,
        now_unix_secs: i64,
    ) -> Result<Verified, VerifyError> {
        self.verify(body, stripe_signature(headers)?, now_unix_secs)
    }

    /// [`Verifier::precheck`] with the `Stripe-Signature` field read from `headers` by
    /// [`stripe_signature`]: refuse before reading the body. A pass never means authentic.
    ///
    /// ```
    /// use stripe_webhook_verify::{Secret, Verifier, VerifyError};
    ///
    /// let verifier = Verifier::new(vec![Secret::new("whsec_test_secret")?])?;
    /// let mut headers = http::HeaderMap::new();
    /// assert_eq!(verifier.precheck_headers(&headers, 1_700_000_000), Err(VerifyError::MissingHeader));
    /// headers.append("stripe-signature", format!("t=1700000000,v1={}", "0".repeat(64)).parse()?);
    /// assert_eq!(verifier.precheck_headers(&headers, 1_700_000_000), Ok(()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// See [`stripe_signature`] and [`Verifier::precheck`].
    pub fn precheck_headers(
        &self,
        headers: &HeaderMap,
        now_unix_secs: i64,
    ) -> Result<(), VerifyError> {
        self.precheck(stripe_signature(headers)?, now_unix_secs)
    }
}
