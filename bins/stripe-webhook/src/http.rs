//! A minimal HTTP/1.1 client (hyper) for posting signed webhook bodies: plain `http://` only, one
//! kept-alive connection per [`Connection`], reconnecting when the server closes it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;

/// Where webhooks are posted: a parsed `http://host:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    host: String,
    port: u16,
    path_and_query: String,
}

impl Target {
    /// Parses an `http://` URL; `https://` and other schemes are refused (point the tool at the
    /// server or a local proxy directly).
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "--url {url:?}: only plain http:// is supported (point it at the server directly)"
            ));
        }
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
            host,
            port: uri.port_u16().unwrap_or(80),
            path_and_query,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A response: status and (lossy) body text.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The body, as text.
    pub(crate) body: String,
}

/// One connection to a [`Target`], opened on first use and reopened after an error or a close.
pub(crate) struct Connection {
    target: Target,
    user_agent: &'static str,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection (not yet opened) to `target`.
    pub(crate) fn new(target: Target, user_agent: &'static str) -> Connection {
        Connection {
            target,
            user_agent,
            sender: None,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some(sender) = &self.sender
            && (sender.is_closed() || !sender.is_ready())
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            let (host, port) = (self.target.host.as_str(), self.target.port);
            let stream = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(|e| {
                    format!("cannot connect to {host}:{port}: {e} (is the server running?)")
                })?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    /// Drops the connection (after a timeout); the next request opens a new one.
    pub(crate) fn reset(&mut self) {
        self.sender = None;
    }

    /// POSTs `body` as JSON with a `Stripe-Signature` header and reads the whole response.
    ///
    /// # Errors
    /// Connection or protocol failures (the connection is dropped and reopened next time).
    pub(crate) async fn post(&mut self, signature: &str, body: Bytes) -> Result<Response, String> {
        let request = http::Request::post(self.target.path_and_query.as_str())
            .header(http::header::HOST, self.target.authority())
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header(http::header::USER_AGENT, self.user_agent)
            .header("Stripe-Signature", signature)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let result = async {
            let sender = self.sender().await?;
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes();
            Ok(Response {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_http_targets_only() {
        let t = Target::parse("http://127.0.0.1:3001/webhook/stripe?x=1").expect("parse");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 3001);
        assert_eq!(t.path_and_query, "/webhook/stripe?x=1");
        assert_eq!(t.authority(), "127.0.0.1:3001");
        let t = Target::parse("http://localhost").expect("parse");
        assert_eq!((t.port, t.path_and_query.as_str()), (80, "/"));
        let t = Target::parse("http://[::1]:8080/w").expect("parse");
        assert_eq!(t.authority(), "[::1]:8080");
        let err = Target::parse("https://example.com/").expect_err("https refused");
        assert!(err.contains("only plain http://"), "{err}");
        assert!(Target::parse("not a url").is_err());
    }
}
