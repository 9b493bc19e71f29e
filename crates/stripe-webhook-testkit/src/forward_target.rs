//! A webhook target whose every answer is decided by the test, request by request: a status
//! (with headers), no answer until the client gives up (a timeout), or a connection closed without
//! an answer. For tests of the forwarder, which must survive all three.
//!
//! ```
//! use stripe_webhook_testkit::forward_target::{Answer, ForwardTarget};
//!
//! let target = ForwardTarget::start(|request| {
//!     if request.header("stripe-webhook-event-id") == Some("evt_bad") {
//!         Answer::status(500)
//!     } else {
//!         Answer::status(200)
//!     }
//! });
//! let ok = stripe_webhook_testkit::http::request(
//!     target.addr, "POST", "/", &[("Stripe-Webhook-Event-Id", "evt_good")], b"{}")?;
//! assert_eq!(ok.status, 200);
//! assert_eq!(target.delivered().len(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::webhook_target::ReceivedRequest;

/// What the target does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answers this status with these header fields (and `Connection: close`).
    Status(u16, Vec<(String, String)>),
    /// Never answers: holds the connection until the client closes it (or 60 s pass).
    Hang,
    /// Closes the connection without a byte of answer.
    Close,
}

impl Answer {
    /// A plain status.
    pub fn status(status: u16) -> Answer {
        Answer::Status(status, Vec::new())
    }
}

type Handler = dyn FnMut(&ReceivedRequest) -> Answer + Send;

struct State {
    handler: Box<Handler>,
    received: Vec<ReceivedRequest>,
}

/// The target, on `127.0.0.1`, serving until the test process ends.
pub struct ForwardTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ForwardTarget {
    /// Starts a target that answers each request as `handler` says. Every request read is
    /// recorded, with `answered` the status sent (0: none, for [`Answer::Hang`] and
    /// [`Answer::Close`]).
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(
        handler: impl FnMut(&ReceivedRequest) -> Answer + Send + 'static,
    ) -> ForwardTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            handler: Box::new(handler),
            received: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = serve(stream, &state);
                });
            }
        });
        ForwardTarget { addr, state }
    }

    /// Replaces the handler.
    pub fn set_handler(&self, handler: impl FnMut(&ReceivedRequest) -> Answer + Send + 'static) {
        self.state().handler = Box::new(handler);
    }

    /// `http://127.0.0.1:<port>/hooks/stripe`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/stripe", self.addr)
    }

    /// Every request read so far, in order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state().received.clone()
    }

    /// The requests answered with a 2xx, in order.
    pub fn delivered(&self) -> Vec<ReceivedRequest> {
        self.state()
            .received
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .cloned()
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
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
    let mut request = ReceivedRequest {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body,
        at: Instant::now(),
        answered: 0,
    };
    let answer = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = (state.handler)(&request);
        if let Answer::Status(status, _) = &answer {
            request.answered = *status;
        }
        state.received.push(request);
        answer
    };
    match answer {
        Answer::Close => Ok(()),
        Answer::Hang => {
            // Until the client gives up and closes (read returns 0 or fails).
            let mut sink = [0u8; 1024];
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                match reader.get_mut().read(&mut sink) {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(_) => {}
                }
            }
            Ok(())
        }
        Answer::Status(status, extra) => {
            let body = if (200..300).contains(&status) {
                "ok"
            } else {
                "refused"
            };
            let mut answer = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in extra {
                answer.push_str(&format!("{name}: {value}\r\n"));
            }
            answer.push_str("\r\n");
            answer.push_str(body);
            let stream = reader.get_mut();
            stream.write_all(answer.as_bytes())?;
            stream.flush()
        }
    }
}
