//! One delivery attempt: `POST` of the exact body with a fresh `Stripe-Signature` computed with the
//! destination's secret, and what the answer means.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use stripe_webhook_verify::{Secret, signature_header};

/// What one attempt gave, as the `result` label of `stripe_webhook_forward_attempts_total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx within the timeout: delivered.
    Ok(u16),
    /// Another status (`retry_after`: what its `Retry-After` asked for, on a 429 or 503).
    Status {
        /// The status code.
        status: u16,
        /// The wait asked for.
        retry_after: Option<Duration>,
    },
    /// No complete answer within FORWARD_TIMEOUT.
    Timeout,
    /// No answer at all: connection refused or closed, TLS, DNS, protocol.
    Failed(String),
}

impl Attempt {
    /// The metric label: `ok`, `http_4xx` (also any other non-2xx below 500: redirects are not
    /// followed), `http_5xx`, `http_429`, `timeout`, `connect_error`.
    pub fn label(&self) -> &'static str {
        match self {
            Attempt::Ok(_) => "ok",
            Attempt::Status { status: 429, .. } => "http_429",
            Attempt::Status { status, .. } if *status >= 500 => "http_5xx",
            Attempt::Status { .. } => "http_4xx",
            Attempt::Timeout => "timeout",
            Attempt::Failed(_) => "connect_error",
        }
    }

    /// The status, if an answer came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Attempt::Ok(status) | Attempt::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// In words, for logs and dead letters (never a payload: the answer's body is not read).
    pub fn describe(&self) -> String {
        match self {
            Attempt::Ok(status) => format!("HTTP {status}"),
            Attempt::Status { status, .. } => format!("HTTP {status}"),
            Attempt::Timeout => "no answer within FORWARD_TIMEOUT".to_owned(),
            Attempt::Failed(why) => why.clone(),
        }
    }
}

/// Posts to one destination (cheap to clone: clones share the connection pool).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    url: Arc<str>,
    secret: Secret,
}

impl Sender {
    /// A sender to `url`, signing with `secret`; every attempt must be answered within `timeout`.
    /// `https://` is verified against the system's roots (the platform store, or
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR`); proxies come from the environment.
    ///
    /// # Errors
    /// No usable root certificate for an `https://` URL, or a client the platform cannot build.
    pub fn new(url: &str, secret: Secret, timeout: Duration) -> Result<Sender, String> {
        // reqwest is built without a TLS provider of its own (`rustls-no-provider`, as in the
        // CLI): what it sets up even for http:// needs the process default, ring. Installing it
        // again is a no-op (`Err` when already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "stripe-webhook-forward/",
                env!("CARGO_PKG_VERSION")
            ))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            builder = builder.tls_backend_preconfigured(tls_config()?);
        }
        let client = builder
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        Ok(Sender {
            client,
            url: url.into(),
            secret,
        })
    }

    /// One attempt: `POST` of `body` (exact bytes), signed now.
    pub async fn post(&self, body: Bytes, event_id: &str, attempt: u32, fetched: bool) -> Attempt {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = signature_header(
            &[&self.secret],
            i64::try_from(now).unwrap_or(i64::MAX),
            &body,
        );
        let mut request = self
            .client
            .post(&*self.url)
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header("stripe-signature", signature)
            .header("stripe-webhook-forwarded", "1")
            .header("stripe-webhook-event-id", event_id)
            .header("stripe-webhook-attempt", attempt.to_string());
        if fetched {
            request = request.header("stripe-webhook-fetched", "1");
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Attempt::Timeout,
            Err(e) => return Attempt::Failed(chain(&e.without_url())),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| stripe_webhook_backoff::parse_retry_after(v, SystemTime::now()));
        // The answer must arrive whole within the timeout too (a 2xx whose body never ends is not
        // an acknowledgement); its content is not kept.
        match response.bytes().await {
            Ok(_) => {}
            Err(e) if e.is_timeout() => return Attempt::Timeout,
            Err(e) => return Attempt::Failed(chain(&e.without_url())),
        }
        if (200..300).contains(&status) {
            Attempt::Ok(status)
        } else {
            Attempt::Status {
                status,
                retry_after: retry_after.filter(|_| status == 429 || status == 503),
            }
        }
    }
}

fn tls_config() -> Result<rustls::ClientConfig, String> {
    let roots = system_roots()
        .map_err(|why| format!("{why} for an https:// FORWARD_URL (set SSL_CERT_FILE)"))?;
    client_tls_config(roots)
}

/// The system's CA certificates (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the platform's store).
///
/// # Errors
/// No usable certificate at all, saying why.
pub fn system_roots() -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(format!(
            "no usable CA certificate in the system's store ({why})"
        ));
    }
    Ok(roots)
}

/// The project's one HTTPS client configuration (the forwarder's and the CLI's): rustls with
/// ring, its safe default protocol versions, HTTP/1.1 by ALPN, servers verified against `roots`.
///
/// # Errors
/// The provider refuses the protocol versions (not with ring's defaults).
pub fn client_tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_labelled_as_the_metric_says() {
        let status = |status| Attempt::Status {
            status,
            retry_after: None,
        };
        assert_eq!(Attempt::Ok(204).label(), "ok");
        assert_eq!(status(429).label(), "http_429");
        assert_eq!(status(503).label(), "http_5xx");
        assert_eq!(status(404).label(), "http_4xx");
        assert_eq!(status(302).label(), "http_4xx");
        assert_eq!(Attempt::Timeout.label(), "timeout");
        assert_eq!(Attempt::Failed("x".into()).label(), "connect_error");
        for a in [Attempt::Ok(200), status(500), Attempt::Timeout] {
            assert!(
                stripe_webhook_metrics::known_values(
                    stripe_webhook_metrics::FORWARD_ATTEMPTS_TOTAL,
                    "result"
                )
                .unwrap()
                .contains(&a.label())
            );
        }
    }
}
