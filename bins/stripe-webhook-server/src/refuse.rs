//! Requests the front door refuses before the [`App`](stripe_webhook_service::App) sees them:
//! ambiguous or unsupported HTTP framing, and webhooks from outside `ALLOWED_SOURCE_IPS`. Each is
//! answered with its precise status and a JSON body like the app's, counted in
//! `stripe_webhook_requests_total{outcome}` and logged under the shared refusal rate limit; the
//! connection is closed after the answer (the body is never read).

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version, header};
use stripe_webhook_core::metrics as m;

/// Why a request was refused at the front door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrontRefusal {
    /// HTTP/1.1 without exactly one `Host` header (RFC 9112 §3.2): 400.
    BadHost,
    /// `Transfer-Encoding: chunked` more than once (RFC 9112 §7): 400.
    BadTransferEncoding,
    /// A transfer coding this server does not decode: 501 (RFC 9112 §6.1).
    UnsupportedTransferEncoding,
    /// An `Expect` other than `100-continue`: 417 (RFC 9110 §10.1.1).
    UnsupportedExpectation,
    /// A webhook from an address outside `ALLOWED_SOURCE_IPS`: 403.
    ForbiddenSource,
}

impl FrontRefusal {
    /// The `outcome` label of `stripe_webhook_requests_total` and the body's `reason`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::BadHost => "bad_host",
            Self::BadTransferEncoding => "bad_transfer_encoding",
            Self::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Self::UnsupportedExpectation => "unsupported_expectation",
            Self::ForbiddenSource => "forbidden_source",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::BadHost | Self::BadTransferEncoding => StatusCode::BAD_REQUEST,
            Self::UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            Self::UnsupportedExpectation => StatusCode::EXPECTATION_FAILED,
            Self::ForbiddenSource => StatusCode::FORBIDDEN,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::BadHost => "an HTTP/1.1 request needs exactly one Host header",
            Self::BadTransferEncoding => "malformed Transfer-Encoding: chunked more than once",
            Self::UnsupportedTransferEncoding => "only the chunked transfer coding is supported",
            Self::UnsupportedExpectation => "only Expect: 100-continue is supported",
            Self::ForbiddenSource => "source address not allowed",
        }
    }

    /// The answer (`Connection: close` is added by the caller), counted and logged
    /// (rate-limited); `source` is the address the decision was made on, for the log.
    pub(crate) fn response(self, method: &Method, source: IpAddr) -> Response<Bytes> {
        let outcome = self.label();
        metrics::counter!(m::REQUESTS_TOTAL, "outcome" => outcome).increment(1);
        if let Some(suppressed) = stripe_webhook_core::admit_refusal_log(outcome) {
            tracing::info!(%method, %source, outcome, reason = outcome, suppressed, "request refused");
        }
        stripe_webhook_core::json_response(
            self.status(),
            format!(r#"{{"error":"{}","reason":"{outcome}"}}"#, self.message()),
        )
    }
}

/// The framing checks hyper leaves to the server: `Some` is the refusal.
///
/// hyper already handles `Content-Length` with `Transfer-Encoding` (chunked wins, the
/// `Content-Length` is dropped and the connection is closed after the answer, as RFC 9112 §6.3
/// allows, so nothing behind the body is read as a request) and refuses (400, connection closed)
/// differing `Content-Length`s, obsolete line folding, invalid bytes in a header, a
/// `Transfer-Encoding` whose last coding is not `chunked`, and too many or too large headers (431).
/// What it accepts and this refuses: an HTTP/1.1 request without exactly one `Host`; a
/// `Transfer-Encoding` that is not exactly one `chunked` (`gzip, chunked` would hand over a body
/// still gzip-encoded; `chunked, chunked` is malformed); an `Expect` this server cannot meet.
pub(crate) fn check_framing(version: Version, headers: &HeaderMap) -> Option<FrontRefusal> {
    if version == Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return Some(FrontRefusal::BadHost);
    }
    let codings: Vec<String> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(list)
        .collect();
    if !codings.is_empty() && codings != ["chunked"] {
        return Some(if codings.iter().all(|c| c == "chunked") {
            FrontRefusal::BadTransferEncoding
        } else {
            FrontRefusal::UnsupportedTransferEncoding
        });
    }
    let expectations: Vec<String> = headers
        .get_all(header::EXPECT)
        .iter()
        .flat_map(list)
        .collect();
    if expectations.iter().any(|e| e != "100-continue") {
        return Some(FrontRefusal::UnsupportedExpectation);
    }
    None
}

/// The members of a comma-separated header value, trimmed and lowercased; an unreadable value is
/// one member that matches nothing.
fn list(value: &HeaderValue) -> Vec<String> {
    match value.to_str() {
        Ok(text) => text
            .split(',')
            .map(|member| member.trim().to_ascii_lowercase())
            .filter(|member| !member.is_empty())
            .collect(),
        Err(_) => vec![String::from("\u{fffd}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Every front-door refusal is a catalogued outcome, exported at 0 from start.
    #[test]
    fn every_refusal_is_a_catalogued_outcome() {
        for refusal in [
            FrontRefusal::BadHost,
            FrontRefusal::BadTransferEncoding,
            FrontRefusal::UnsupportedTransferEncoding,
            FrontRefusal::UnsupportedExpectation,
            FrontRefusal::ForbiddenSource,
        ] {
            assert!(m::OUTCOMES.contains(&refusal.label()), "{refusal:?}");
        }
    }

    #[test]
    fn framing_table() {
        use FrontRefusal::*;
        let v11 = Version::HTTP_11;
        for (version, pairs, expected) in [
            (v11, &[("host", "x")][..], None),
            (v11, &[][..], Some(BadHost)),
            (v11, &[("host", "x"), ("host", "y")][..], Some(BadHost)),
            (Version::HTTP_10, &[][..], None),
            (
                v11,
                &[("host", "x"), ("transfer-encoding", "Chunked")][..],
                None,
            ),
            (
                v11,
                &[("host", "x"), ("transfer-encoding", "chunked, chunked")][..],
                Some(BadTransferEncoding),
            ),
            (
                v11,
                &[
                    ("host", "x"),
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ][..],
                Some(BadTransferEncoding),
            ),
            (
                v11,
                &[("host", "x"), ("transfer-encoding", "gzip, chunked")][..],
                Some(UnsupportedTransferEncoding),
            ),
            (v11, &[("host", "x"), ("expect", "100-Continue")][..], None),
            (
                v11,
                &[("host", "x"), ("expect", "100-continue, x")][..],
                Some(UnsupportedExpectation),
            ),
        ] {
            assert_eq!(
                check_framing(version, &headers(pairs)),
                expected,
                "{version:?} {pairs:?}"
            );
        }
    }
}
