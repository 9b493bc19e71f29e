//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`, for driving real server processes
//! in tests (one request per connection, `Connection: close`). Plain HTTP only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lowercased) and values.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The first of `headers` named `name` (names as stored: lowercase).
pub(crate) fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Sends one request and reads the whole response. `Content-Length` is added for a non-empty body
/// or a POST; `Host` and `Connection: close` always.
///
/// # Errors
/// Connection or protocol errors.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    read_response(&mut stream)
}

/// A POST with a `Stripe-Signature` header (or none) and a JSON content type.
///
/// # Errors
/// Connection or protocol errors.
pub fn post_webhook(
    addr: SocketAddr,
    signature: Option<&str>,
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(sig) = signature {
        headers.push(("Stripe-Signature", sig));
    }
    request(addr, "POST", "/webhook/stripe", &headers, body)
}

/// Reads one response (until the peer closes) and parses status, headers and body.
///
/// # Errors
/// A malformed status line or an I/O error.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<HttpResponse> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of response head"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Whether everything written to `stream` so far has been read by the program at its other end,
/// on this host: this side holds no unacknowledged bytes and the peer's socket none unread (the
/// kernel's queues, from `/proc/net/tcp`). For a test to wait until a server has taken in a
/// partial request before it acts on the server, instead of sleeping.
///
/// # Panics
/// If either end is not in `/proc/net/tcp` (an IPv6 connection, or one already closed).
pub fn read_by_peer(stream: &TcpStream) -> bool {
    let (local, peer) = (
        stream.local_addr().expect("local address"),
        stream.peer_addr().expect("peer address"),
    );
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let queues = |from: SocketAddr, to: SocketAddr| {
        tcp_queues(&table, from, to)
            .unwrap_or_else(|| panic!("no IPv4 socket {from} -> {to} in /proc/net/tcp"))
    };
    let (unacknowledged, _) = queues(local, peer);
    let (_, unread) = queues(peer, local);
    unacknowledged == 0 && unread == 0
}

/// The `(tx_queue, rx_queue)` of the socket `local` → `remote` in a `/proc/net/tcp` table: for a
/// connected socket, bytes sent and not yet acknowledged, and bytes received and not yet read.
fn tcp_queues(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    // `sl local rem st tx:rx …`, addresses as `%08X:%04X` of the IPv4 address in the kernel's
    // (network) byte order read as a native integer, and the port.
    let parse = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
        Some(SocketAddr::from((ip, u16::from_str_radix(port, 16).ok()?)))
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || parse(fields[1])? != local || parse(fields[2])? != remote {
            return None;
        }
        let (tx, rx) = fields[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_body() {
        let r = parse_response(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\nX-A: b\r\n\r\nokEXTRA",
        )
        .expect("parse");
        assert_eq!(r.status, 413);
        assert_eq!(r.header("x-a"), Some("b"));
        assert_eq!(r.body, b"ok");
    }

    #[test]
    fn the_peer_has_read_what_was_sent_only_once_it_read_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"twelve bytes").expect("write");
        let (server_end, client_end) = (
            client.peer_addr().expect("peer"),
            client.local_addr().expect("local"),
        );
        crate::wait::until("the bytes arrived unread", Duration::from_secs(10), || {
            let table = std::fs::read_to_string("/proc/net/tcp").expect("table");
            tcp_queues(&table, server_end, client_end) == Some((0, 12))
        });
        assert!(!read_by_peer(&client), "twelve bytes wait unread");
        let mut buf = [0_u8; 12];
        server.read_exact(&mut buf).expect("read");
        crate::wait::until("the peer read them", Duration::from_secs(10), || {
            read_by_peer(&client)
        });
    }
}
