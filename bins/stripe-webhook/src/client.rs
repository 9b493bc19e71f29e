//! The HTTP client for posting signed webhook bodies and calling Stripe's API: `reqwest`, with a
//! connection pool, proxies from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, as curl reads them; loopback is not exempt unless `NO_PROXY` says so), a timeout
//! per request (connecting, sending and reading the whole answer), and answers of at most
//! [`MAX_RESPONSE_BYTES`]. Redirects are not followed (a 3xx is an answer like any other).
//!
//! `https://` targets are verified against the system's root certificates (the platform store,
//! or `SSL_CERT_FILE`/`SSL_CERT_DIR`), or against exactly the CA certificates of a PEM file
//! (`--ca-file`, for a private CA). TLS 1.2 and 1.3, with the ring provider (quick to build; the
//! CLI builds without the AWS SDK and its aws-lc-rs when the `s3` feature is off).

use std::error::Error as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The largest answer read: a page of 100 Stripe events, or a webhook endpoint's reply, is far
/// smaller; anything larger is refused rather than held in memory.
pub(crate) const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Where webhooks are posted: a parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    https: bool,
    host: String,
    port: u16,
    path_and_query: String,
}

impl Target {
    /// Parses an `http://` or `https://` URL (other schemes are refused).
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "--url {url:?}: only http:// and https:// are supported"
                ));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("--url {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target {
            https,
            host,
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path_and_query,
        })
    }

    /// Whether it is an `https://` target.
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// Its path and query (`/` when the URL has none).
    pub(crate) fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// `scheme://host[:port]`, the port only when it is not the scheme's default.
    pub(crate) fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{}", self.port)
        }
    }
}

/// How `https://` connections verify the server: a rustls client configuration.
#[derive(Clone)]
pub(crate) struct Tls {
    config: rustls::ClientConfig,
}

impl Tls {
    /// The TLS setup for `target`: `Tls::new(ca_file)` for an `https://` target, none for an
    /// `http://` one.
    ///
    /// # Errors
    /// What [`Tls::new`] refuses, or a `ca_file` given for an `http://` target (`what` names the
    /// target in the message: `--url`, `API base`).
    pub(crate) fn for_target(
        target: &Target,
        ca_file: Option<&Path>,
        what: &str,
    ) -> Result<Option<Tls>, String> {
        if target.is_https() {
            Tls::new(ca_file).map(Some)
        } else if ca_file.is_some() {
            Err(format!("--ca-file is for an https:// {what}"))
        } else {
            Ok(None)
        }
    }

    /// Trusts the CA certificates in the PEM file `ca_file` only, or else the system's roots.
    ///
    /// # Errors
    /// An unreadable or empty CA file, or no usable system root at all.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Tls, String> {
        let roots = match ca_file {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "--ca-file {}: no PEM certificate in it",
                        path.display()
                    ));
                }
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
                }
                roots
            }
            None => stripe_webhook_forward::delivery::system_roots()
                .map_err(|why| format!("{why}: give --ca-file"))?,
        };
        let config = stripe_webhook_forward::delivery::client_tls_config(roots)?;
        Ok(Tls { config })
    }
}

/// A response: status, headers, what its `Retry-After` asks for, and the body.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The header fields.
    pub(crate) headers: http::HeaderMap,
    /// How long `Retry-After` (seconds or an HTTP-date) asks to wait, if present and valid.
    pub(crate) retry_after: Option<Duration>,
    /// The body, exactly as received.
    pub(crate) body: Bytes,
}

impl Response {
    /// The body as (lossy) text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The first `max_chars` characters of `text` on one line (control characters as spaces), for a
/// report or an error message.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No complete answer within the client's timeout.
    Timeout(Duration),
    /// Connection, TLS, proxy or protocol failure, or an answer over [`MAX_RESPONSE_BYTES`].
    Failed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout(timeout) => write!(f, "no response within {timeout:?}"),
            SendError::Failed(why) => f.write_str(why),
        }
    }
}

/// A client of one [`Target`]: a pool of kept-alive connections to it (or through a proxy),
/// cheap to clone (clones share the pool).
#[derive(Clone)]
pub(crate) struct Client {
    client: reqwest::Client,
    target: Target,
    timeout: Duration,
    /// The largest answer read ([`MAX_RESPONSE_BYTES`]; smaller in tests).
    max_body: usize,
}

impl Client {
    /// A client of `target`; `tls` is required for an `https://` one; every request must be
    /// answered in full within `timeout`.
    ///
    /// # Errors
    /// An `https://` target without `tls`, or a client the platform cannot build.
    pub(crate) fn new(
        target: Target,
        tls: Option<Tls>,
        user_agent: &'static str,
        timeout: Duration,
    ) -> Result<Client, String> {
        // reqwest is built without a provider of its own (`rustls-no-provider`): for what it sets
        // up itself (plain http:// targets, TLS to an https:// proxy) it takes the process's
        // default, which is ring. Installing it again is a no-op (`Err` when already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls.config);
        } else if target.is_https() {
            return Err("an https:// target needs a TLS configuration".to_owned());
        }
        let client = builder
            .build()
            .map_err(|e| format!("the HTTP client: {}", chain(&e)))?;
        Ok(Client {
            client,
            target,
            timeout,
            max_body: MAX_RESPONSE_BYTES,
        })
    }

    /// POSTs `body` as JSON with a `Stripe-Signature` header to the target's URL and reads the
    /// whole response.
    ///
    /// # Errors
    /// No complete answer in time; connection, TLS, proxy or protocol failures; an answer too
    /// large.
    pub(crate) async fn post(&self, signature: &str, body: Bytes) -> Result<Response, SendError> {
        let request = self
            .client
            .post(self.url(&self.target.path_and_query))
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header("stripe-signature", signature)
            .body(body);
        self.send(request).await
    }

    /// GETs `path_and_query` (on the target's host) with these extra header fields and reads the
    /// whole response.
    ///
    /// # Errors
    /// As [`Client::post`].
    pub(crate) async fn get(
        &self,
        path_and_query: &str,
        headers: &[(http::header::HeaderName, String)],
    ) -> Result<Response, SendError> {
        let mut request = self.client.get(self.url(path_and_query));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.send(request).await
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.target.origin())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, SendError> {
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                SendError::Timeout(self.timeout)
            } else {
                SendError::Failed(chain(&e.without_url()))
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| stripe_webhook_backoff::parse_retry_after(v, SystemTime::now()));
        let max = self.max_body;
        let too_large = || SendError::Failed(format!("the response is larger than {max} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers: std::mem::take(response.headers_mut()),
            retry_after,
            body: body.freeze(),
        })
    }
}

/// An error and its causes, `outer: inner: …` (the cause, e.g. a refused certificate, is in
/// reqwest's sources). Callers drop the URL first: a target's URL may carry a token, and the
/// messages name the request already.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_keeps_the_first_characters_and_blanks_control_characters() {
        assert_eq!(one_line("a\nb\tc\u{7f}d", 200), "a b c d");
        assert_eq!(one_line("déjà vu", 4), "déjà");
    }

    #[test]
    fn parses_http_and_https_targets_only() {
        let t = Target::parse("http://127.0.0.1:3001/webhook/stripe?x=1").expect("parse");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 3001);
        assert_eq!(t.path_and_query, "/webhook/stripe?x=1");
        assert_eq!(t.origin(), "http://127.0.0.1:3001");
        assert!(!t.is_https());
        let t = Target::parse("http://localhost").expect("parse");
        assert_eq!((t.port, t.path_and_query.as_str()), (80, "/"));
        let t = Target::parse("http://[::1]:8080/w").expect("parse");
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        let t = Target::parse("https://hooks.example.com/w").expect("https");
        assert!(t.is_https());
        assert_eq!(
            (t.port, t.origin().as_str()),
            (443, "https://hooks.example.com")
        );
        assert_eq!(t.origin(), "https://hooks.example.com");
        assert_eq!(
            Target::parse("http://[::1]:8080/w").expect("v6").origin(),
            "http://[::1]:8080"
        );
        let err = Target::parse("ftp://example.com/").expect_err("ftp refused");
        assert!(err.contains("only http:// and https://"), "{err}");
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn tls_from_a_ca_file_refuses_files_without_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = Tls::new(Some(&empty)).err().expect("refused");
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = Tls::new(Some(&dir.path().join("missing.pem")))
            .err()
            .expect("refused");
        assert!(err.starts_with("--ca-file "), "{err}");
    }

    /// Serves each connection one `HTTP/1.1` answer: `head` (status line and fields, without the
    /// blank line) and `body`.
    async fn serve_once(head: &'static str, body: Vec<u8>) -> Target {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = tcp.read(&mut request).await;
                let _ = tcp.write_all(format!("{head}\r\n\r\n").as_bytes()).await;
                let _ = tcp.write_all(&body).await;
            }
        });
        Target::parse(&format!("http://{addr}/w")).expect("target")
    }

    #[test]
    fn limits_redirects_and_errors_without_the_url() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = |target: Target, max_body: usize| {
                let mut client =
                    Client::new(target, None, "test", Duration::from_secs(10)).expect("client");
                client.max_body = max_body;
                client
            };
            // Chunked, no length announced: counted while read.
            let chunked = serve_once(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close",
                b"10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n".to_vec(),
            )
            .await;
            let ok = client(chunked.clone(), 32)
                .get("/", &[])
                .await
                .expect("32 bytes");
            assert_eq!(ok.body.len(), 32);
            let err = client(chunked, 31)
                .get("/", &[])
                .await
                .expect_err("too large");
            assert!(err.to_string().contains("larger than 31 bytes"), "{err}");
            // A length announced over the limit: refused before reading.
            let announced = serve_once(
                "HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\nconnection: close",
                Vec::new(),
            )
            .await;
            let err = client(announced, 1 << 20)
                .get("/", &[])
                .await
                .expect_err("too large");
            assert!(err.to_string().contains("larger than"), "{err}");
            // A redirect is not followed: it is the answer.
            let redirect = serve_once(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\ncontent-length: 0",
                Vec::new(),
            )
            .await;
            let r = client(redirect, 1 << 20)
                .post("t=1,v1=00", Bytes::from_static(b"{}"))
                .await
                .expect("an answer");
            assert_eq!(r.status, 302);
            assert_eq!(r.header("location"), Some("http://127.0.0.1:9/elsewhere"));
            // A failure names its cause, never the URL (it may carry a token).
            let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = closed.local_addr().expect("addr").port();
            drop(closed);
            let target =
                Target::parse(&format!("http://127.0.0.1:{port}/w?token=s3cret")).expect("target");
            let err = client(target, 1 << 20)
                .post("t=1,v1=00", Bytes::new())
                .await
                .expect_err("nothing listens");
            let err = err.to_string();
            assert!(err.contains("onnect"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        });
    }
}
