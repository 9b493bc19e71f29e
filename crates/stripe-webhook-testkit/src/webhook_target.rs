//! A scripted webhook target on a loopback port, for tests of clients that deliver webhooks
//! (`stripe-webhook replay` and `trigger`).
//!
//! It answers each POST with the next scripted [`Reply`] (then `200 ok` once the script is used
//! up), closes the connection after every answer, and records every request it read (headers,
//! body, arrival time). [`WebhookTarget::start_with`] runs it over any stream the test wraps
//! around the accepted TCP connection, e.g. a TLS session, so the same target serves `http://`
//! and `https://` tests.
//!
//! ```
//! use stripe_webhook_testkit::webhook_target::{Reply, WebhookTarget};
//!
//! let target = WebhookTarget::start();
//! target.script([Reply::status(503).header("Retry-After", "1")]);
//! let first = stripe_webhook_testkit::http::post_webhook(target.addr, Some("t=1,v1=00"), b"{}")?;
//! assert_eq!((first.status, first.header("retry-after")), (503, Some("1")));
//! let second = stripe_webhook_testkit::http::post_webhook(target.addr, None, b"{}")?;
//! assert_eq!(second.status, 200);
//! let received = target.received();
//! assert_eq!(received.len(), 2);
//! assert_eq!(received[0].header("stripe-signature"), Some("t=1,v1=00"));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A byte stream the target reads requests from and writes answers to.
pub trait Stream: Read + Write + Send {}

impl<T: Read + Write + Send> Stream for T {}

/// Wraps an accepted connection (for example in a TLS session).
type Wrap = dyn Fn(TcpStream) -> io::Result<Box<dyn Stream>> + Send + Sync;

/// One scripted answer, of this target or of [`crate::fake_stripe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Extra header fields (`Content-Length` is always sent, and this target also sends
    /// `Connection: close`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// `200` with body `ok`.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// This status, with body `ok` for a 2xx and `refused` otherwise.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: if (200..300).contains(&status) {
                "ok"
            } else {
                "refused"
            }
            .to_owned(),
        }
    }

    /// With one more header field.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// One request the target read.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    /// The request line, e.g. `POST /webhook/stripe HTTP/1.1`.
    pub request_line: String,
    /// Header names (lowercased) and values.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// When the whole request had been read.
    pub at: Instant,
    /// The status it was answered with.
    pub answered: u16,
}

impl ReceivedRequest {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    received: Vec<ReceivedRequest>,
}

/// A webhook target on `127.0.0.1`, serving until the test process ends.
pub struct WebhookTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl WebhookTarget {
    /// A plain HTTP target.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start() -> WebhookTarget {
        WebhookTarget::start_with(|stream| Ok(Box::new(stream)))
    }

    /// A target that speaks through `wrap(accepted connection)` (for example TLS). A connection
    /// whose wrapping or request fails is dropped without an answer and not recorded.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start_with(
        wrap: impl Fn(TcpStream) -> io::Result<Box<dyn Stream>> + Send + Sync + 'static,
    ) -> WebhookTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let wrap: Arc<Wrap> = Arc::new(wrap);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (state, wrap) = (Arc::clone(&shared), Arc::clone(&wrap));
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    if let Ok(stream) = wrap(stream) {
                        let _ = serve(stream, &state);
                    }
                });
            }
        });
        WebhookTarget { addr, state }
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state().script.extend(replies);
    }

    /// Every request read so far, in the order they were read.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state().received.clone()
    }

    /// `http://127.0.0.1:<port>/webhook/stripe`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook/stripe", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads one request, answers it and closes.
fn serve(stream: Box<dyn Stream>, state: &Mutex<State>) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length = crate::http::find_header(&headers, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let reply = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let reply = state.script.pop_front().unwrap_or_else(Reply::ok);
        state.received.push(ReceivedRequest {
            request_line: request_line.trim_end().to_owned(),
            headers,
            body,
            at: Instant::now(),
            answered: reply.status,
        });
        reply
    };
    let mut answer = format!(
        "HTTP/1.1 {} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(&reply.body);
    let stream = reader.get_mut();
    stream.write_all(answer.as_bytes())?;
    stream.flush()
}
