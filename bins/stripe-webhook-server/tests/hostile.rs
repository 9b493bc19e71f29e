//! Hostile input against the real server binary: slow clients, lying lengths, garbage, thousands of
//! malformed signatures, replays, smuggling attempts, every other path and method. Each gets its
//! precise status, nothing is archived, the server stays up and its memory stays bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use stripe_webhook_testkit::archive::read_records;
use stripe_webhook_testkit::faults::proc_status_kib;
use stripe_webhook_testkit::http::{post_webhook, request};
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_testkit::signing::{self, unix_now as now};

const SECRET: &str = "whsec_hostile_test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"))
}

fn sign(t: i64, body: &[u8]) -> String {
    signing::sign(SECRET, t, body)
}

fn event(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid","created":1,"livemode":false,"data":{{"object":{{"id":"in_1"}}}}}}"#)
        .into_bytes()
}

fn start(archive: &Path, extra: &[(&str, &str)]) -> ServerProcess {
    let mut envs = vec![
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("SINK", "file"),
        ("ARCHIVE_DIR", archive.to_str().expect("utf-8")),
    ];
    envs.extend_from_slice(extra);
    ServerProcess::start(bin(), &envs)
}

/// Sends raw bytes and reads the answer (until close or `wait`).
fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

fn status_of(raw: &[u8]) -> u16 {
    std::str::from_utf8(raw.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn assert_alive(server: &ServerProcess) {
    let health = request(server.addr, "GET", "/health", &[], b"").expect("health");
    assert_eq!(health.status, 200, "server still serving");
}

#[test]
fn slow_clients_cannot_exhaust_connections() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(
        archive.path(),
        &[
            ("HEADER_READ_TIMEOUT_SECS", "1"),
            ("BODY_READ_TIMEOUT_SECS", "1"),
            ("MAX_CONNECTIONS", "32"),
            // The honest client below shares the slow clients' address (loopback): the
            // per-address cap would refuse it whenever more than 64 of theirs are still open,
            // which is that cap's job (tests/flood.rs, tests/allowlist.rs), not this test's.
            ("MAX_CONNECTIONS_PER_SOURCE", "0"),
        ],
    );
    // 100 slowloris connections dribbling headers, more than the connection cap.
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            s.write_all(b"POST /webhook/stripe HTTP/1.1\r\nHo")
                .expect("write");
            s
        })
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"s");
    }
    // A legitimate webhook still gets through once the slow ones time out.
    let started = Instant::now();
    let body = event("evt_after_slowloris");
    let r = post_webhook(server.addr, Some(&sign(now(), &body)), &body).expect("post");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // A body dribbled byte by byte past the body timeout: 408, nothing archived.
    let body = event("evt_dribbled");
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(now(), &body),
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    let mut answer = Vec::new();
    for b in &body {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        // A pause on purpose: the dribble itself, one byte per 100 ms.
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        s.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            if n > 0 {
                break;
            }
        }
        s.set_nonblocking(false).expect("blocking");
    }
    s.set_nonblocking(false).expect("blocking");
    let _ = s.read_to_end(&mut answer);
    assert_eq!(
        status_of(&answer),
        408,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(slow);
    assert_alive(&server);
    server.terminate();
    let records = read_records(archive.path());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], "evt_after_slowloris");
}

#[test]
fn lying_lengths_garbage_and_smuggling_are_refused() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(
        archive.path(),
        &[("BODY_READ_TIMEOUT_SECS", "2"), ("MAX_BODY_BYTES", "65536")],
    );
    let body = event("evt_hostile");
    let sig = sign(now(), &body);
    let wait = Duration::from_secs(10);

    // Content-Length larger than what is sent, connection left open: 408 after the body timeout.
    let head = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        body.len() + 100
    );
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(&body).expect("body");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(status_of(&out), 408, "{}", String::from_utf8_lossy(&out));

    // Content-Length larger than what is sent, then the client half-closes: 400, not archived.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(&body).expect("body");
    s.shutdown(std::net::Shutdown::Write).expect("half close");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.is_empty() || status_of(&out) == 400,
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Content-Length shorter than the body: the signature covers the whole body, so the truncated
    // body does not verify; the leftover bytes are not a request.
    let mut req = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        body.len() - 5
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let out = raw_exchange(server.addr, &req, wait);
    assert_eq!(status_of(&out), 400, "{}", String::from_utf8_lossy(&out));

    // Both Content-Length and Transfer-Encoding (request smuggling): the chunked framing wins, the
    // connection is closed after the answer (RFC 9112 6.3), so a request hidden behind the body
    // is never processed.
    let smuggled = event("evt_smuggled");
    let mut req = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    req.extend_from_slice(&body);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    req.extend_from_slice(
        format!(
            "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {}\r\nContent-Length: {}\r\n\r\n",
            sign(now(), &smuggled),
            smuggled.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(&smuggled);
    let out = raw_exchange(server.addr, &req, wait);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&out), 200, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "one answer only: {text}"
    );

    // Header injection attempts: a NUL or bare CR in a header value, obs-fold continuation lines.
    for injected in [
        &b"Stripe-Signature: t=1\0,v1=00\r\n"[..],
        b"Stripe-Signature: t=1\r,v1=00\r\n",
        b"Stripe-Signature: t=1,\r\n v1=00\r\n",
        b"Stripe-Signature\r\n",
    ] {
        let mut req = b"POST /webhook/stripe HTTP/1.1\r\nHost: x\r\n".to_vec();
        req.extend_from_slice(injected);
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(&body);
        let out = raw_exchange(server.addr, &req, wait);
        assert_eq!(
            status_of(&out),
            400,
            "{:?}: {}",
            String::from_utf8_lossy(injected),
            String::from_utf8_lossy(&out)
        );
    }

    // Garbage and binary bodies, signed or not.
    let mut rng_state = 0x2545_f491_4f6c_dd1d_u64;
    for len in [1usize, 7, 100, 4096, 60_000] {
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                rng_state as u8
            })
            .collect();
        let unsigned = post_webhook(server.addr, Some("t=1,v1=abc"), &garbage).expect("post");
        assert_eq!(unsigned.status, 400);
        let signed =
            post_webhook(server.addr, Some(&sign(now(), &garbage)), &garbage).expect("post");
        assert_eq!(signed.status, 400, "signed garbage is not an event");
        assert!(signed.text().contains("not a Stripe event"));
    }

    // Replay of a captured request after the tolerance.
    drop(server);
    let server = start(archive.path(), &[("SIGNATURE_TOLERANCE_SECS", "1")]);
    let captured = event("evt_captured");
    let t = now();
    let header = sign(t, &captured);
    let first = post_webhook(server.addr, Some(&header), &captured).expect("post");
    assert_eq!(first.status, 200, "{}", first.text());
    while now() - t <= 1 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let replayed = post_webhook(server.addr, Some(&header), &captured).expect("post");
    assert_eq!(replayed.status, 400);
    assert!(
        replayed.text().contains("stale_timestamp"),
        "{}",
        replayed.text()
    );

    assert_alive(&server);
    server.terminate();
    let ids: Vec<_> = read_records(archive.path())
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        ids,
        vec!["evt_hostile".to_owned(), "evt_captured".to_owned()],
        "only the genuine events are archived; nothing smuggled, truncated or replayed"
    );
}

#[test]
fn ten_thousand_malformed_signatures_get_400_with_bounded_memory() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let addr = server.addr;
    let body = event("evt_never");
    let t = now();
    let threads: Vec<_> = (0..8u64)
        .map(|seed| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (seed + 1).wrapping_mul(0x1000_0000_01b3);
                let mut next = move || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                let alphabet = b"t=v1,0123456789abcdefABCDEF =,;\"'\\x-_";
                // One keep-alive connection per thread; reconnect when the server closes it.
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                let mut statuses = [0u32; 600];
                for i in 0..1250 {
                    let len = (next() % 200) as usize;
                    let mut header: String = (0..len)
                        .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                        .collect();
                    if i % 3 == 0 {
                        header = format!("t={t},v1={}", &header[..header.len().min(64)]);
                    }
                    let req = format!(
                        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {header}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut sent = stream.write_all(req.as_bytes()).and_then(|()| stream.write_all(&body));
                    if sent.is_err() {
                        stream = TcpStream::connect(addr).expect("reconnect");
                        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                        sent = stream.write_all(req.as_bytes()).and_then(|()| stream.write_all(&body));
                    }
                    sent.expect("send");
                    let mut status = read_one_response(&mut stream);
                    if status == 0 {
                        // A header refused before its body is answered and the connection closed
                        // (the body is never read): the next request on it finds it gone.
                        stream = TcpStream::connect(addr).expect("reconnect");
                        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                        stream
                            .write_all(req.as_bytes())
                            .and_then(|()| stream.write_all(&body))
                            .expect("resend");
                        status = read_one_response(&mut stream);
                    }
                    statuses[status as usize] += 1;
                }
                statuses
            })
        })
        .collect();
    let mut total = [0u32; 600];
    for t in threads {
        for (i, n) in t.join().expect("thread").iter().enumerate() {
            total[i] += n;
        }
    }
    assert_eq!(total[400], 10_000, "every malformed header answered 400");
    let rss = proc_status_kib(server.pid(), "VmRSS");
    assert!(
        rss > 0 && rss < 200 * 1024,
        "RSS {rss} KiB after 10,000 bad requests"
    );
    assert_alive(&server);
    server.terminate();
    assert!(read_records(archive.path()).is_empty());
}

/// Reads one keep-alive response (head + Content-Length body) and returns its status.
fn read_one_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return 0,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = stream.read_exact(&mut body);
    status_of(&buf)
}

#[test]
fn every_other_path_and_method_is_404_or_405() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let body = event("evt_wrong_door");
    let sig = sign(now(), &body);
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = request(
            server.addr,
            method,
            "/webhook/stripe",
            &[("Stripe-Signature", &sig)],
            &body,
        )
        .expect("request");
        assert_eq!(r.status, 405, "{method}");
    }
    for path in [
        "/",
        "/webhook",
        "/webhook/stripe/",
        "/webhook/stripe/x",
        "/WEBHOOK/STRIPE",
        "/webhook/stripe%2f",
        "/../webhook/stripe",
        "/health/x",
        "/metrics.txt",
        "/favicon.ico",
    ] {
        let r = request(
            server.addr,
            "POST",
            path,
            &[("Stripe-Signature", &sig)],
            &body,
        )
        .expect("request");
        assert_eq!(r.status, 404, "{path}");
    }
    // A query string does not change the route.
    let r = request(
        server.addr,
        "POST",
        "/webhook/stripe?x=1",
        &[("Stripe-Signature", &sig)],
        &body,
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_alive(&server);
    server.terminate();
    assert_eq!(read_records(archive.path()).len(), 1);
}

fn open_file_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A thousand unauthenticated clients each declare a 2 MiB body, send all of it but the last byte,
/// and hold. Each carries a fresh, well-formed but forged `Stripe-Signature`, so only the body could
/// prove it false. The server buffers at most its body budget (then answers 503 `busy` before
/// reading), its peak RSS stays under 256 MiB, and an honest signed webhook still gets 200.
#[test]
fn a_thousand_held_large_bodies_keep_memory_bounded_and_honest_webhooks_pass() {
    assert!(
        open_file_limit() >= 4096,
        "this test opens 1,000 connections: raise the open-file limit to at least 4096 (ulimit -n)"
    );
    let archive = tempfile::tempdir().expect("tempdir");
    // Every one of the 1,000 connections reaches the body budget (the per-address cap, which
    // would close most of them at accept since they share loopback, has its own tests).
    let server = start(
        archive.path(),
        &[
            ("BODY_READ_TIMEOUT_SECS", "120"),
            ("MAX_CONNECTIONS_PER_SOURCE", "0"),
        ],
    );
    const BODY: usize = 2 * 1024 * 1024;
    let filler = vec![b' '; BODY - 1];
    let forged = format!("t={},v1={}", now(), "ab".repeat(32));
    let head = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {forged}\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let mut held = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        if stream.write_all(head.as_bytes()).is_ok() && stream.write_all(&filler).is_ok() {
            held.push(stream); // the whole body but its last byte was taken: hold it
        }
    }
    let peak_mib = proc_status_kib(server.pid(), "VmHWM") / 1024;
    eprintln!(
        "{} connections hold 2 MiB bodies; server peak RSS {peak_mib} MiB",
        held.len()
    );

    // An honest webhook, while the attackers hold their connections.
    let body = event("evt_honest");
    let honest = post_webhook(server.addr, Some(&sign(now(), &body)), &body).expect("post");
    assert_eq!(honest.status, 200, "{}", honest.text());

    // A stale header is refused before its body is read (no 30 s wait, no buffering).
    let started = Instant::now();
    let mut stale = TcpStream::connect(server.addr).expect("connect");
    stale
        .write_all(
            format!(
                "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t={},v1={}\r\n\
                 Content-Length: {BODY}\r\n\r\n",
                now() - 3600,
                "ab".repeat(32)
            )
            .as_bytes(),
        )
        .expect("write");
    assert_eq!(read_one_response(&mut stale), 400);
    assert!(started.elapsed() < Duration::from_secs(5));

    let metrics = request(server.metrics_addr(), "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    let busy: u64 = metrics
        .lines()
        .find(|l| l.starts_with(r#"stripe_webhook_requests_total{outcome="busy"}"#))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        busy >= 900,
        "only {busy} bodies refused as busy:\n{metrics}"
    );
    let peak_mib = proc_status_kib(server.pid(), "VmHWM") / 1024;
    assert!(
        peak_mib < 256,
        "server peak RSS {peak_mib} MiB with 1,000 held 2 MiB bodies"
    );
    drop(held);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    let records = read_records(archive.path());
    assert_eq!(records.len(), 1, "only the honest webhook is archived");
}

/// One response read off a connection: its status, and whether it says `Connection: close`.
#[derive(Debug)]
struct Answer {
    status: u16,
    close: bool,
}

/// Reads `n` responses (an interim `100 Continue` counts as one, with no body), then whether the
/// server closed the connection: for an answer that said `Connection: close`, it must reach end
/// of file; otherwise a `GET /health` on the same connection must still be answered 200 (the
/// framing was understood to the byte).
fn answers_then_state(stream: &mut TcpStream, n: usize) -> (Vec<Answer>, bool) {
    let mut answers = Vec::new();
    for _ in 0..n {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return (answers, true),
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).expect("response body");
        answers.push(Answer {
            status: status_of(&head),
            close: text.contains("\r\nconnection: close") || text.starts_with("http/1.0"),
        });
    }
    if answers.last().is_some_and(|a| a.close) {
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest).is_ok() && rest.is_empty();
        return (answers, closed);
    }
    // Still open: one more request on it must get its own answer.
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return (answers, true);
    }
    (answers, read_one_response(stream) != 200)
}

/// HTTP conformance under hostile input, on the real server: each request gets its precise status
/// (or the correct answer), the connection is closed exactly where the request was ambiguous or
/// refused before its body was read, and only single, verified bodies are archived.
#[test]
fn hostile_http_table() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(archive.path(), &[]);
    let signed = |id: &str| {
        let body = event(id);
        (sign(now(), &body), body)
    };
    let post = |id: &str, version: &str, target: &str, extra: &str| {
        let (sig, body) = signed(id);
        let mut req = format!(
            "POST {target} {version}\r\nHost: x\r\nStripe-Signature: {sig}\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req
    };
    let plain = |id: &str, extra: &str| post(id, "HTTP/1.1", "/webhook/stripe", extra);
    let chunked = |id: &str, extra: &str, te: &str| {
        let (sig, body) = signed(id);
        let mut req = format!(
            "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig}\r\n{extra}Transfer-Encoding: {te}\r\n\r\n{:x}\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        req
    };
    let with_header = |id: &str, line: &[u8]| {
        let (sig, body) = signed(id);
        let mut req =
            format!("POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig}\r\n")
                .into_bytes();
        req.extend_from_slice(line);
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(&body);
        req
    };
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(1 << 20));
    let (sig_a, body_a) = signed("evt_cl_te");
    let mut cl_te = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig_a}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body_a.len()
    )
    .into_bytes();
    cl_te.extend_from_slice(&body_a);
    cl_te.extend_from_slice(b"\r\n0\r\n\r\n");
    cl_te.extend_from_slice(&plain("evt_behind_cl_te", ""));
    let (sig_b, body_b) = signed("evt_two_lengths");
    let mut two_lengths = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig_b}\r\nContent-Length: {}\r\nContent-Length: {}\r\n\r\n",
        body_b.len(),
        body_b.len() - 5
    )
    .into_bytes();
    two_lengths.extend_from_slice(&body_b);
    let (sig_c, body_c) = signed("evt_same_lengths");
    let mut same_lengths = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: {sig_c}\r\nContent-Length: {0}\r\nContent-Length: {0}\r\n\r\n",
        body_c.len()
    )
    .into_bytes();
    same_lengths.extend_from_slice(&body_c);
    let mut pipelined = plain("evt_pipelined_1", "");
    pipelined.extend_from_slice(&plain("evt_pipelined_2", ""));
    // A header refused before its body is read (a timestamp hours old): the bytes after it (its
    // body, then a valid request) are never parsed as requests.
    let stale = |id: &str, extra: &str| {
        let body = event(id);
        let mut req = format!(
            "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t={},v1={}\r\n{extra}Content-Length: {}\r\n\r\n",
            now() - 3600,
            "0".repeat(64),
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req
    };
    let mut pipelined_refused = stale("evt_pipe_stale", "");
    pipelined_refused.extend_from_slice(&plain("evt_pipe_behind_refused", ""));
    let mut bad_chunk = b"POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
    bad_chunk.extend_from_slice(b"{}\r\n0\r\n\r\n");
    let no_host = String::from_utf8(plain("evt_no_host", ""))
        .expect("utf-8")
        .replacen("Host: x\r\n", "", 1)
        .into_bytes();

    // (case, request bytes, statuses in order, whether the connection must end after them)
    let table: Vec<(&str, Vec<u8>, &[u16], bool)> = vec![
        // RFC 9112 §6.3: chunked wins and the connection closes after the answer, so the request
        // hidden behind the body is never read.
        ("Content-Length with Transfer-Encoding", cl_te, &[200], true),
        ("two different Content-Lengths", two_lengths, &[400], true),
        ("two equal Content-Lengths", same_lengths, &[200], false),
        (
            "obsolete line folding",
            with_header("evt_fold", b"X-A: 1\r\n  folded\r\n"),
            &[400],
            true,
        ),
        (
            "NUL in a header value",
            with_header("evt_nul", b"X-A: a\0b\r\n"),
            &[400],
            true,
        ),
        (
            "bare CR in a header value",
            with_header("evt_cr", b"X-A: a\rb\r\n"),
            &[400],
            true,
        ),
        (
            "space in a header name",
            with_header("evt_space", b"X A: b\r\n"),
            &[400],
            true,
        ),
        (
            "space before the colon",
            with_header("evt_colon", b"X-A : b\r\n"),
            &[400],
            true,
        ),
        (
            "non-ASCII header name",
            with_header("evt_utf8", "X-\u{e9}: b\r\n".as_bytes()),
            &[400],
            true,
        ),
        (
            "200 headers",
            with_header("evt_count", many_headers.as_bytes()),
            &[431],
            true,
        ),
        (
            "a 1 MiB header",
            with_header("evt_size", huge_header.as_bytes()),
            &[431],
            true,
        ),
        (
            "HTTP/1.0",
            post("evt_http10", "HTTP/1.0", "/webhook/stripe", ""),
            &[200],
            true,
        ),
        (
            "absolute-form target",
            post("evt_absolute", "HTTP/1.1", "http://x/webhook/stripe", ""),
            &[200],
            false,
        ),
        (
            "Expect: 100-continue",
            plain("evt_expect", "Expect: 100-continue\r\n"),
            &[100, 200],
            false,
        ),
        (
            "Expect: 100-continue, refused header",
            stale("evt_expect_stale", "Expect: 100-continue\r\n"),
            &[400],
            true,
        ),
        (
            "Expect: something else",
            plain("evt_expect_other", "Expect: x-magic\r\n"),
            &[417],
            true,
        ),
        ("pipelined requests", pipelined, &[200, 200], false),
        (
            "pipelined behind a refused one",
            pipelined_refused,
            &[400],
            true,
        ),
        (
            "chunked",
            chunked("evt_chunked", "", "chunked"),
            &[200],
            false,
        ),
        (
            "chunked twice",
            chunked("evt_chunked_twice", "", "chunked, chunked"),
            &[400],
            true,
        ),
        (
            "gzip, chunked",
            chunked("evt_gzip_chunked", "", "gzip, chunked"),
            &[501],
            true,
        ),
        (
            "a coding other than chunked last",
            chunked("evt_xchunked", "", "xchunked"),
            &[400],
            true,
        ),
        ("a malformed chunk size", bad_chunk, &[400], true),
        ("HTTP/1.1 without Host", no_host, &[400], true),
        (
            "two Host headers",
            plain("evt_two_hosts", "Host: y\r\n"),
            &[400],
            true,
        ),
        (
            "two Stripe-Signature headers",
            plain("evt_two_sigs", "Stripe-Signature: t=1\r\n"),
            &[400],
            true,
        ),
        (
            "a 100 KiB target",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100 << 10)).into_bytes(),
            &[414],
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (case, bytes, statuses, closes) in &table {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        if let Err(e) = stream.write_all(bytes) {
            failures.push(format!("{case}: could not send: {e}"));
            continue;
        }
        let (answers, closed) = answers_then_state(&mut stream, statuses.len());
        let got: Vec<u16> = answers.iter().map(|a| a.status).collect();
        if got != *statuses || closed != *closes {
            failures.push(format!(
                "{case}: expected {statuses:?} and {}, got {answers:?} and {}",
                if *closes {
                    "the connection closed"
                } else {
                    "it kept open"
                },
                if closed { "closed" } else { "open" },
            ));
        }
    }
    assert_alive(&server);
    let (status, logs) = server.terminate();
    assert!(failures.is_empty(), "{}\nlog:\n{logs}", failures.join("\n"));
    assert!(status.success(), "{logs}");
    let mut ids: Vec<String> = read_records(archive.path())
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![
        "evt_cl_te",
        "evt_absolute",
        "evt_chunked",
        "evt_expect",
        "evt_http10",
        "evt_pipelined_1",
        "evt_pipelined_2",
        "evt_same_lengths",
    ];
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "archived: only the single, verified bodies of the requests answered 200"
    );
}
