//! `reconcile` through a proxy named by the environment, as in a corporate network: the fake
//! Stripe API behind TLS (a private CA, `--ca-file`) reached with `HTTPS_PROXY` through a local
//! CONNECT proxy, and over plain http with `HTTP_PROXY` (absolute-form requests); `NO_PROXY`
//! covering the host sends nothing to the proxy; a proxy that is down fails the run without a
//! request reaching the API (so the traffic cannot have bypassed the proxy).
//!
//! Everything listens on loopback, which the client does NOT exempt from proxying unless
//! `NO_PROXY` says so (curl's rules, as `reqwest` applies them): these tests depend on that.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex, PoisonError};

use common::{cli, describe, fixtures, now, stdout, with_created};
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_testkit::fake_stripe::{Access, FakeStripe};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk_test_51ReconcileProxy0123456789abcdefgh";
const ARCHIVED: &str = "evt_1ProxyArchived";
const WITHHELD: &str = "evt_1ProxyWithheld";

/// A fake Stripe with two events of the last hour, and an archive holding one of them.
struct Scenario {
    stripe: FakeStripe,
    dir: tempfile::TempDir,
}

impl Scenario {
    fn build() -> Scenario {
        let (_, fixture) = fixtures()
            .into_iter()
            .find(|(t, b)| t == "charge.succeeded" && !b.contains("\"account\": \"acct_"))
            .expect("a charge.succeeded fixture");
        let created = now() - 600;
        let body = |id: &str| {
            with_created(
                &common::event_body(&fixture, id, false),
                &created.to_string(),
            )
        };
        let stripe = FakeStripe::start();
        stripe.key(KEY, Access::Secret);
        stripe.event(&body(ARCHIVED), None);
        stripe.event(&body(WITHHELD), None);
        let dir = tempfile::tempdir().expect("tempdir");
        let at = (created + 1) * 1000;
        let record = common::record(&body(ARCHIVED), "whsec_proxy", at, true);
        common::write_segment(
            dir.path(),
            at,
            "1-1-proxy.ndjson",
            &[&common::text(&record)],
        );
        Scenario { stripe, dir }
    }

    /// `reconcile` of the last hour's snapshot events against `api_base`, with `env` set.
    fn reconcile(&self, api_base: &str, ca_file: Option<&Path>, env: &[(&str, &str)]) -> Output {
        let ms = |secs: i64| ReceivedAt::from_unix_millis(secs * 1000).rfc3339_millis();
        let (since, until) = (ms(now() - 3600), ms(now()));
        let mut cmd = cli();
        cmd.args([
            "reconcile",
            self.dir.path().to_str().expect("utf-8"),
            "--since",
            &since,
            "--until",
            &until,
            "--kind",
            "snapshot",
            "--retries",
            "0",
        ]);
        if let Some(ca) = ca_file {
            cmd.arg("--ca-file").arg(ca);
        }
        cmd.env("STRIPE_API_BASE", api_base)
            .env("STRIPE_API_KEY", KEY)
            .envs(env.iter().copied())
            .output()
            .expect("run reconcile")
    }
}

/// The ids of the MISSING lines.
fn missing(o: &Output) -> BTreeSet<String> {
    stdout(o)
        .lines()
        .filter_map(|l| l.strip_prefix("MISSING\t"))
        .filter_map(|rest| rest.split('\t').next())
        .map(str::to_owned)
        .collect()
}

/// A forward proxy on loopback: `CONNECT host:port` opens a tunnel, an absolute-form request
/// (`GET http://host:port/… HTTP/1.1`) is passed on as it is (the fake's server takes the
/// absolute form). It records the request line that opened each connection.
struct Proxy {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    fn start() -> Proxy {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let _ = relay(client, &log).await;
                });
            }
        });
        Proxy {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn relay(mut client: TcpStream, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)])
        .into_owned();
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!("{method} {target}"));
    let mut upstream = if method == "CONNECT" {
        let mut upstream = TcpStream::connect(target).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&head[end..]).await?;
        upstream
    } else {
        let authority = target
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        let mut upstream = TcpStream::connect(authority).await?;
        upstream.write_all(&head).await?;
        upstream
    };
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// A TLS front for the fake Stripe API on `localhost` (its private CA written to `ca_path`):
/// returns its port.
fn tls_front(runtime: &tokio::runtime::Runtime, backend: std::net::SocketAddr, ca: &Path) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(common::localhost_tls(ca));
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

#[test]
fn reconcile_goes_through_https_proxy_with_connect_unless_no_proxy_covers_the_host() {
    let s = Scenario::build();
    let keys = tempfile::tempdir().expect("tempdir");
    let ca = keys.path().join("ca.pem");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let port = tls_front(&runtime, s.stripe.addr, &ca);
    let base = format!("https://localhost:{port}");
    let proxy = Proxy::start();

    let o = s.reconcile(&base, Some(&ca), &[("HTTPS_PROXY", &proxy.url())]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(missing(&o), BTreeSet::from([WITHHELD.to_owned()]));
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "the proxy saw no request");
    assert!(
        seen.iter()
            .all(|l| *l == format!("CONNECT localhost:{port}")),
        "only tunnels to the API: {seen:?}"
    );
    let answered = s.stripe.requests().len();
    assert!(answered >= 1, "the API answered through the tunnel");

    // NO_PROXY covering the host: straight to the API, nothing to the proxy.
    let o = s.reconcile(
        &base,
        Some(&ca),
        &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "localhost")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(missing(&o), BTreeSet::from([WITHHELD.to_owned()]));
    assert_eq!(
        proxy.seen().len(),
        seen.len(),
        "NO_PROXY bypasses the proxy"
    );
    assert!(s.stripe.requests().len() > answered);

    // A proxy that is down: the run fails and no request reaches the API.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let before = s.stripe.requests().len();
    let o = s.reconcile(&base, Some(&ca), &[("HTTPS_PROXY", &down)]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(missing(&o).is_empty(), "{}", describe(&o));
    assert_eq!(
        s.stripe.requests().len(),
        before,
        "nothing bypassed the proxy"
    );
}

#[test]
fn reconcile_goes_through_http_proxy_for_an_http_api_base() {
    let s = Scenario::build();
    let proxy = Proxy::start();
    let o = s.reconcile(&s.stripe.url(), None, &[("HTTP_PROXY", &proxy.url())]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(missing(&o), BTreeSet::from([WITHHELD.to_owned()]));
    let seen = proxy.seen();
    let prefix = format!("GET {}/v1/events?", s.stripe.url());
    assert!(
        seen.first().is_some_and(|l| l.starts_with(&prefix)),
        "an absolute-form request to the API: {seen:?}"
    );

    // HTTPS_PROXY is for https:// only.
    let before = seen.len();
    let o = s.reconcile(&s.stripe.url(), None, &[("HTTPS_PROXY", &proxy.url())]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(proxy.seen().len(), before, "{:?}", proxy.seen());
}
