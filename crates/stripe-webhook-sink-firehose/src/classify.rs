//! Which AWS failures are worth retrying: shared by the sinks that call AWS (Firehose, SQS, the
//! oversize bodies' S3 writes).

use aws_sdk_firehose::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::operation::RequestId;
use aws_smithy_types::retry::ErrorKind;

/// How a failed call (or record) should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Retry later, and slow down: Firehose said `ServiceUnavailableException` (its throttling).
    Throttled,
    /// Retry later: 5xx, timeouts, connection errors, unparseable answers.
    Transient,
    /// Do not retry: invalid argument, missing stream, KMS, credentials, access.
    Permanent,
}

/// Error codes that mean "slow down" (Firehose's, SQS's, the SDKs' generic ones).
const THROTTLE_CODES: &[&str] = &[
    "ServiceUnavailableException",
    "RequestThrottled",
    "KmsThrottled",
    "ThrottlingException",
    "Throttling",
    "SlowDown",
    "LimitExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// Error codes that are transient though sent with a 4xx status.
const TRANSIENT_CODES: &[&str] = &[
    "InternalFailure",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Error codes that no retry will fix (the KMS family is matched by prefix).
const PERMANENT_CODES: &[&str] = &[
    "InvalidArgumentException",
    "ResourceNotFoundException",
    "InvalidKMSResourceException",
    "InvalidSourceException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
];

/// The class of an error code, if the code alone decides it.
pub fn classify_code(code: &str) -> Option<Class> {
    if PERMANENT_CODES.contains(&code) || code.starts_with("KMS") {
        Some(Class::Permanent)
    } else if THROTTLE_CODES.contains(&code) {
        Some(Class::Throttled)
    } else if TRANSIENT_CODES.contains(&code) {
        Some(Class::Transient)
    } else {
        None
    }
}

/// A failed SDK call, reduced to what the sink needs: class, code, request id, message.
#[derive(Clone, Debug)]
pub struct CallFailure {
    /// Whether and how to retry.
    pub class: Class,
    /// The AWS error code, or a short label (`timeout`, `dispatch`, `response`, `construction`).
    pub code: String,
    /// The AWS request id, when the call got an answer.
    pub request_id: Option<String>,
    /// Operator-facing description, without payloads.
    pub message: String,
}

impl CallFailure {
    /// Classifies any SDK error.
    pub fn from_sdk<E>(err: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let request_id = err.request_id().map(str::to_owned);
        let message = DisplayErrorContext(err).to_string();
        let (class, code) = match err {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("Unknown").to_owned();
                let status = err.raw_response().map(|r| r.status().as_u16());
                let class = classify_code(&code).unwrap_or(match status {
                    Some(s) if s >= 500 => Class::Transient,
                    // 4xx: invalid argument, resource not found, KMS, credentials, access denied.
                    Some(_) => Class::Permanent,
                    None => Class::Transient,
                });
                (class, code)
            }
            SdkError::TimeoutError(_) => (Class::Transient, "timeout".to_owned()),
            SdkError::ResponseError(_) => (Class::Transient, "response".to_owned()),
            SdkError::DispatchFailure(d) => {
                let transient = d.is_io()
                    || d.is_timeout()
                    || matches!(
                        d.as_other(),
                        Some(
                            ErrorKind::TransientError
                                | ErrorKind::ServerError
                                | ErrorKind::ThrottlingError
                        )
                    );
                // An unclassified dispatch failure is raised before the request leaves: credentials
                // that cannot be resolved, an endpoint that cannot be built.
                let class = if transient {
                    Class::Transient
                } else {
                    Class::Permanent
                };
                (class, "dispatch".to_owned())
            }
            SdkError::ConstructionFailure(_) => (Class::Permanent, "construction".to_owned()),
            _ => (Class::Transient, "unknown".to_owned()),
        };
        Self {
            class,
            code,
            request_id,
            message,
        }
    }

    /// A whole-call timeout imposed by the sink (the records' deadline came first).
    pub fn deadline() -> Self {
        Self {
            class: Class::Transient,
            code: "timeout".to_owned(),
            request_id: None,
            message: "the call did not answer before the records' deadline".to_owned(),
        }
    }

    /// `request id <id>` or `no request id`, for messages.
    pub fn request_id_text(&self) -> String {
        match &self.request_id {
            Some(id) => format!("request id {id}"),
            None => "no request id".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            classify_code("ServiceUnavailableException"),
            Some(Class::Throttled)
        );
        assert_eq!(classify_code("InternalFailure"), Some(Class::Transient));
        assert_eq!(
            classify_code("InvalidArgumentException"),
            Some(Class::Permanent)
        );
        assert_eq!(
            classify_code("KMS.DisabledException"),
            Some(Class::Permanent)
        );
        assert_eq!(classify_code("SomethingNew"), None);
    }
}
