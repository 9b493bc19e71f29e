//! `stripe-webhook-server healthcheck`: the container health probe, built in because `scratch` and
//! distroless images have no curl. It asks the running server's `GET /health` on the same
//! `HOST`/`PORT` settings and exits 0 when the answer is 200 (ready), non-zero otherwise.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use crate::{ServerArgs, socket_addr};

/// Probes the server's `/health` and returns the exit code: 0 when it answered 200 (with `live`:
/// any HTTP answer, i.e. the process serves), 1 otherwise. Prints one line saying what it found.
pub fn healthcheck(args: &ServerArgs, live: bool) -> ExitCode {
    if args.port == 0 {
        eprintln!(
            "healthcheck: PORT=0 names no port (the server took a free one, logged at its start); \
             set PORT to that port"
        );
        return ExitCode::FAILURE;
    }
    let Some(mut addr) = socket_addr(&args.host, args.port) else {
        eprintln!(
            "healthcheck: HOST={} PORT={} is not an address",
            args.host, args.port
        );
        return ExitCode::FAILURE;
    };
    // A server listening on every address is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    match probe(addr) {
        Ok((status, body)) => {
            println!("healthcheck: GET http://{addr}/health -> {status} {body}");
            if status == 200 || live {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("healthcheck: GET http://{addr}/health failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(addr: SocketAddr) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: stripe-webhook-server-healthcheck\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP/1.1 answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .trim()
        .to_owned();
    Ok((status, body))
}
