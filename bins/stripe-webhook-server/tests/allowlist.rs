//! `ALLOWED_SOURCE_IPS` and `TRUSTED_PROXIES` on the real server: a webhook from an address
//! outside the list gets 403 before its body is read; one from a bundled Stripe address, forwarded
//! by a trusted proxy, gets 200; a forwarded-for header from a hop that is not trusted is ignored.
//! Loopback only: the "proxy" is 127.0.0.1, the untrusted hop 127.0.0.2.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use stripe_webhook_testkit::archive::read_records;
use stripe_webhook_testkit::http::request;
use stripe_webhook_testkit::server::{ServerProcess, command};
use stripe_webhook_testkit::signing::sign_now;

const SECRET: &str = "whsec_allowlist_test";
/// One of the bundled Stripe webhook addresses.
const STRIPE: &str = "3.18.12.63";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server"))
}

/// The server on the file sink under `archive`, with `extra` settings.
fn start(archive: &Path, extra: &[(&str, &str)]) -> ServerProcess {
    let mut envs = vec![
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("SINK", "file"),
        ("ARCHIVE_DIR", archive.to_str().expect("utf-8")),
    ];
    envs.extend_from_slice(extra);
    ServerProcess::start(bin(), &envs)
}

/// Connects to `addr` from the local address `from`.
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::from((from, 0))).expect("bind");
        socket.connect(addr).await.expect("connect")
    });
    let stream = stream.into_std().expect("std");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Sends a signed webhook's head from `from` with `forwarded` as X-Forwarded-For (if any); sends
/// the body only if `send_body`. Returns the status, the whole answer, and how long it took.
fn post(
    server: &ServerProcess,
    from: [u8; 4],
    forwarded: Option<&str>,
    id: &str,
    send_body: bool,
) -> (u16, String, Duration) {
    let body = format!(
        r#"{{"id":"{id}","object":"event","type":"invoice.paid","created":1,"livemode":false,"data":{{"object":{{"id":"in_1"}}}}}}"#
    );
    let xff = forwarded.map_or(String::new(), |f| format!("X-Forwarded-For: {f}\r\n"));
    let head = format!(
        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{xff}Stripe-Signature: {}\r\n\
         Content-Length: {}\r\n\r\n",
        sign_now(SECRET, body.as_bytes()),
        body.len()
    );
    let started = Instant::now();
    let mut stream = connect_from(from, server.addr);
    stream.write_all(head.as_bytes()).expect("head");
    if send_body {
        stream.write_all(body.as_bytes()).expect("body");
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text, started.elapsed())
}

#[test]
fn only_allowed_sources_may_post_and_only_trusted_proxies_are_believed() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(
        archive.path(),
        &[
            ("ALLOWED_SOURCE_IPS", "stripe"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );

    // Another address, the body never sent: 403 at once, so it was decided before any body byte.
    let (status, text, took) = post(&server, [127, 0, 0, 2], None, "evt_direct", false);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("forbidden_source"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");

    // A bundled Stripe address, forwarded by the trusted proxy (127.0.0.1): 200.
    let (status, text, _) = post(&server, [127, 0, 0, 1], Some(STRIPE), "evt_via_proxy", true);
    assert_eq!(status, 200, "{text}");

    // The same header from a hop that is not trusted is ignored: the peer (127.0.0.2) decides.
    let (status, text, _) = post(
        &server,
        [127, 0, 0, 2],
        Some(STRIPE),
        "evt_untrusted_hop",
        true,
    );
    assert_eq!(status, 403, "{text}");

    // Through the trusted proxy, a Stripe address the client wrote itself on the left of the one
    // the proxy appended is not believed.
    let spoofed = format!("{STRIPE}, 203.0.113.9");
    let (status, text, _) = post(&server, [127, 0, 0, 1], Some(&spoofed), "evt_spoofed", true);
    assert_eq!(status, 403, "{text}");

    // Health checks come from load balancers, not Stripe: not subject to the list.
    let health = request(server.addr, "GET", "/health", &[], b"").expect("health");
    assert_eq!(health.status, 200);

    let metrics = request(server.metrics_addr(), "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with(r#"stripe_webhook_requests_total{outcome="forbidden_source"}"#))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(refused, Some(3), "{metrics}");

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("forbidden_source") && logs.contains("203.0.113.9"),
        "the refusals are logged with the address decided on:\n{logs}"
    );
    assert!(
        logs.contains("stripe_list_as_of"),
        "the start names the list's date:\n{logs}"
    );
    let ids: Vec<String> = read_records(archive.path())
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        ids,
        ["evt_via_proxy"],
        "only the allowed webhook is archived"
    );
}

/// The refresh recipe of docs/exposure.md: the list in a file, in the format of Stripe's
/// `ips_webhooks.txt` (one address a line), instead of the bundled `stripe`.
#[test]
fn the_list_can_come_from_a_file_in_stripes_format() {
    let archive = tempfile::tempdir().expect("tempdir");
    let list = archive.path().join("stripe-webhook-ips.txt");
    std::fs::write(&list, "3.18.12.63\n54.187.216.72\n").expect("write the list");
    let server = start(
        archive.path(),
        &[
            ("ALLOWED_SOURCE_IPS", list.to_str().expect("utf-8")),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let (status, text, _) = post(
        &server,
        [127, 0, 0, 1],
        Some("54.187.216.72"),
        "evt_listed",
        true,
    );
    assert_eq!(status, 200, "{text}");
    let (status, text, _) = post(
        &server,
        [127, 0, 0, 1],
        Some("3.69.109.8"),
        "evt_unlisted",
        true,
    );
    assert_eq!(status, 403, "{text}");
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

#[test]
fn an_unreadable_list_is_refused_at_start() {
    let out = command(bin())
        .envs([
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("SINK", "memory"),
            ("ALLOW_MEMORY_SINK", "true"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("METRICS_ADDR", "off"),
            ("ALLOWED_SOURCE_IPS", "stripe, 3.18.12"),
        ])
        .output()
        .expect("run the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ALLOWED_SOURCE_IPS") && stderr.contains("\"3.18.12\""),
        "{stderr}"
    );
}

/// Behind a trusted proxy the per-address cap counts the forwarded client's webhooks in progress,
/// not the proxy's connections: with `MAX_CONNECTIONS_PER_SOURCE=2`, two webhooks from one client
/// held mid-body, a third from it gets 503 `busy` before its body is read, another client's gets
/// 200, all over more connections from the proxy than the cap.
#[test]
fn behind_a_trusted_proxy_the_cap_counts_the_forwarded_client() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = start(
        archive.path(),
        &[
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("MAX_CONNECTIONS_PER_SOURCE", "2"),
        ],
    );
    // Two webhooks from 198.51.100.7 whose bodies never come: `100 Continue` says each is being
    // read (counted) now.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect_from([127, 0, 0, 1], server.addr);
            stream
                .write_all(
                    format!(
                        "POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\n\
                         Expect: 100-continue\r\nStripe-Signature: t={},v1={}\r\nContent-Length: 10\r\n\r\n",
                        stripe_webhook_testkit::signing::unix_now(),
                        "0".repeat(64)
                    )
                    .as_bytes(),
                )
                .expect("head");
            let mut interim = [0u8; 25];
            stream.read_exact(&mut interim).expect("100 Continue");
            assert!(interim.starts_with(b"HTTP/1.1 100 Continue"));
            stream
        })
        .collect();
    let (status, text, _) = post(
        &server,
        [127, 0, 0, 1],
        Some("198.51.100.7"),
        "evt_third",
        false,
    );
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("busy"), "{text}");
    let (status, text, _) = post(
        &server,
        [127, 0, 0, 1],
        Some("198.51.100.8"),
        "evt_other",
        true,
    );
    assert_eq!(status, 200, "{text}");
    drop(held);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    let ids: Vec<String> = read_records(archive.path())
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, ["evt_other"]);
}
