//! Helpers shared by the CLI's integration tests.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use stripe_webhook_testkit::http::{HttpResponse, post_webhook};
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_testkit::workspace_root;
use stripe_webhook_verify::{Secret, Tolerance, Verifier, signature_header};

/// The CLI under test.
pub fn cli_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-webhook"))
}

/// A `Command` for the CLI with none of the caller's webhook, AWS or proxy settings leaking in.
pub fn cli() -> Command {
    let mut cmd = Command::new(cli_path());
    for (key, _) in std::env::vars() {
        let proxy = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]
            .iter()
            .any(|p| key.eq_ignore_ascii_case(p));
        if key.starts_with("STRIPE_") || key.starts_with("AWS_") || proxy {
            cmd.env_remove(key);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Runs the CLI with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    cli().args(args).output().expect("run the CLI")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `FAIL` lines of a `verify` run: (location, id, reason).
pub fn failures(o: &Output) -> Vec<(String, String, String)> {
    stdout(o)
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL\t"))
        .map(|l| {
            let parts: Vec<&str> = l.splitn(3, '\t').collect();
            (
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
            )
        })
        .collect()
}

/// A readable account of a run, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The number after `label: ` on a line of the summary.
pub fn count(o: &Output, label: &str) -> u64 {
    let text = stdout(o);
    let prefix = format!("{label}: ");
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{}", describe(o)))
}

/// The real server binary, brought up to date once per test process by `cargo test --workspace
/// --no-run`: the build `cargo test --workspace` (both tiers) has just made, so there it compiles
/// nothing. (`cargo build -p stripe-webhook-server` would resolve the server's features alone,
/// unlike the workspace's, and compile its whole dependency tree a second time; run alone, as in
/// `cargo test -p stripe-webhook`, this builds the workspace's tests once.)
///
/// Cargo runs without the variables it set for this test process (this package's name, version
/// and directories): build scripts such as ring's rerun when one of those changes
/// (`rerun-if-env-changed`), and everything above them would be compiled again, twice (here, and
/// back in the next plain cargo command).
pub fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        for (name, _) in std::env::vars_os() {
            let set_by_cargo_for_this_test = name.to_str().is_some_and(|name| {
                name == "OUT_DIR"
                    || name == "CARGO_CRATE_NAME"
                    || name == "CARGO_PRIMARY_PACKAGE"
                    || name == "CARGO_TARGET_TMPDIR"
                    || ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_"]
                        .iter()
                        .any(|prefix| name.starts_with(prefix))
            });
            if set_by_cargo_for_this_test {
                command.env_remove(name);
            }
        }
        let status = command
            .args(["test", "--workspace", "--no-run"])
            .current_dir(&root)
            .status()
            .expect("run cargo test --no-run");
        assert!(
            status.success(),
            "cargo test --workspace --no-run (for the server binary) failed"
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { root.join(p) })
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug/stripe-webhook-server");
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).expect("secs"))
        .expect("clock")
}

/// A secret from its text.
pub fn secret(s: &str) -> Secret {
    Secret::new(s).expect("secret")
}

/// Starts the real server on the file sink in `dir`, signing secret `secret`, with `extra`
/// settings.
pub fn file_server(dir: &Path, secret: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let dir = dir.to_str().expect("utf-8 path");
    let mut envs = vec![
        ("STRIPE_WEBHOOK_SECRET", secret),
        ("SINK", "file"),
        ("ARCHIVE_DIR", dir),
    ];
    envs.extend_from_slice(extra);
    ServerProcess::start(server_bin(), &envs)
}

/// Posts `body` to `server`, signed now with `secret`.
pub fn post_signed(server: &ServerProcess, secret: &str, body: &[u8]) -> HttpResponse {
    post_webhook(server.addr, Some(&sign(secret, body)), body).expect("post")
}

/// What a replay target checks deliveries with: the secret `s`, Stripe's 300 s tolerance.
pub fn target_verifier(s: &str) -> Verifier {
    Verifier::new(vec![secret(s)])
        .expect("verifier")
        .with_tolerance(Tolerance::seconds(300).expect("tolerance"))
}

/// A `Stripe-Signature` header for `body`, signed now.
pub fn sign(s: &str, body: &[u8]) -> String {
    signature_header(&[&secret(s)], now(), body)
}

/// The bundled fixture events: (type, pretty-printed body).
pub fn fixtures() -> Vec<(String, String)> {
    let dir = workspace_root().join("fixtures/events");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let body = std::fs::read_to_string(&p).expect("read fixture");
            let v: serde_json::Value = serde_json::from_str(&body).expect("fixture json");
            (v["type"].as_str().expect("type").to_owned(), body)
        })
        .collect();
    out.sort();
    out
}

/// A fixture body with its top-level id replaced by `id` and, if `live`, every
/// `"livemode": false` turned true (the rest of the text kept as Stripe wrote it).
pub fn event_body(fixture: &str, id: &str, live: bool) -> String {
    let v: serde_json::Value = serde_json::from_str(fixture).expect("fixture json");
    let old = v["id"].as_str().expect("id");
    let body = fixture.replacen(&format!("\"{old}\""), &format!("\"{id}\""), 1);
    if live {
        body.replace("\"livemode\": false", "\"livemode\": true")
    } else {
        body
    }
}

/// `body` with its top-level `created` replaced by `created` (a JSON token).
pub fn with_created(body: &str, created: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    let old = format!("\n  \"created\": {},", v["created"]);
    assert!(body.contains(&old), "top-level created in {body}");
    body.replacen(&old, &format!("\n  \"created\": {created},"), 1)
}

/// A webhook body in Stripe's pretty-printed layout, with an invoice of `amount_due`.
pub fn invoice_event(id: &str, event_type: &str, amount_due: u64) -> String {
    format!(
        "{{\n  \"id\": \"{id}\",\n  \"object\": \"event\",\n  \"api_version\": \"2025-10-29.clover\",\n  \
         \"created\": 1796032790,\n  \"data\": {{\n    \"object\": {{\n      \"id\": \"in_{id}\",\n      \
         \"amount_due\": {amount_due}\n    }}\n  }},\n  \"livemode\": false,\n  \"pending_webhooks\": 1,\n  \
         \"type\": \"{event_type}\"\n}}"
    )
}

/// The archive record the server writes for `body` signed with `secret` and received at
/// `at_millis` (with `raw` and `signature` unless `include_raw` is false).
pub fn record(
    body: &str,
    secret: &str,
    at_millis: i64,
    include_raw: bool,
) -> stripe_webhook_envelope::Record {
    let header = signature_header(&[&self::secret(secret)], at_millis / 1000, body.as_bytes());
    record_signed(body, &header, at_millis, include_raw)
}

/// The archive record for `body` with this `Stripe-Signature` header (which need not verify).
pub fn record_signed(
    body: &str,
    header: &str,
    at_millis: i64,
    include_raw: bool,
) -> stripe_webhook_envelope::Record {
    stripe_webhook_envelope::encode(
        bytes::Bytes::from(body.to_owned()),
        header,
        stripe_webhook_envelope::ReceivedAt::from_unix_millis(at_millis),
        &stripe_webhook_envelope::EnvelopeOptions::default().include_raw(include_raw),
    )
    .expect("encode")
}

/// A line's text without its `\n`.
pub fn text(record: &stripe_webhook_envelope::Record) -> String {
    String::from_utf8(record.line().to_vec())
        .expect("utf-8")
        .trim_end_matches('\n')
        .to_owned()
}

/// Writes `lines` (each without `\n`) as one plain segment `name` in the local archive `dir`, in
/// the partition of `at_millis`; returns its path.
pub fn write_segment(dir: &Path, at_millis: i64, name: &str, lines: &[&str]) -> PathBuf {
    let partition = stripe_webhook_envelope::ReceivedAt::from_unix_millis(at_millis).partition();
    let day = dir.join(format!("webhooks/{partition}"));
    std::fs::create_dir_all(&day).expect("mkdir");
    let path = day.join(name);
    let content: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, content).expect("write segment");
    path
}

/// Writes `secret` to a file `name` in `dir` (as an operator keeps it off the command line).
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write secret file");
    path
}

/// A private CA generated now, its certificate written as PEM to `ca_path`.
pub fn private_ca(ca_path: &Path) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "stripe-webhook test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");
    std::fs::write(ca_path, ca.pem()).expect("write CA PEM");
    ca
}

/// A private CA (see [`private_ca`]), written to `ca_path`, and a TLS server configuration with a
/// `localhost`/`127.0.0.1` certificate that CA signed, all generated now.
pub fn localhost_tls(ca_path: &Path) -> std::sync::Arc<rustls::ServerConfig> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};

    let ca = private_ca(ca_path);
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca).expect("sign the leaf");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server certificate");
    std::sync::Arc::new(config)
}

/// A webhook target on loopback that speaks TLS with the certificate of [`localhost_tls`] (its
/// CA written to `ca_path`).
pub fn tls_target(ca_path: &Path) -> stripe_webhook_testkit::webhook_target::WebhookTarget {
    use std::sync::Arc;

    let config = localhost_tls(ca_path);
    stripe_webhook_testkit::webhook_target::WebhookTarget::start_with(move |tcp| {
        let session =
            rustls::ServerConnection::new(Arc::clone(&config)).map_err(std::io::Error::other)?;
        Ok(Box::new(rustls::StreamOwned::new(session, tcp)))
    })
}

/// One gzip member per part, concatenated (as Firehose may deliver).
pub fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, part).expect("gzip");
        out.extend(e.finish().expect("gzip"));
    }
    out
}

/// A moto server, a runtime to drive an S3 client on, and that client.
#[cfg(feature = "s3")]
pub fn moto_s3() -> (
    stripe_webhook_testkit::moto::Moto,
    tokio::runtime::Runtime,
    aws_sdk_s3::Client,
) {
    let moto = stripe_webhook_testkit::moto::Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s3 = s3_client(&moto);
    (moto, rt, s3)
}

/// An S3 client for `moto`.
#[cfg(feature = "s3")]
pub fn s3_client(moto: &stripe_webhook_testkit::moto::Moto) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(
            stripe_webhook_testkit::moto::REGION,
        ))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(moto.endpoint_url())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Puts `bytes` at `bucket`/`key`.
#[cfg(feature = "s3")]
pub fn put(
    rt: &tokio::runtime::Runtime,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
) {
    put_in_class(rt, s3, bucket, key, bytes, None);
}

/// Puts `bytes` at `bucket`/`key` in a storage class (`None`: the bucket's default).
#[cfg(feature = "s3")]
pub fn put_in_class(
    rt: &tokio::runtime::Runtime,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    class: Option<aws_sdk_s3::types::StorageClass>,
) {
    rt.block_on(
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .set_storage_class(class)
            .body(bytes.into())
            .send(),
    )
    .unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
}

/// Runs the CLI with `args` against `moto` (its endpoint and credentials in the environment).
pub fn run_on(moto: &stripe_webhook_testkit::moto::Moto, args: &[&str]) -> Output {
    cli()
        .args(args)
        .envs(moto.client_env())
        .output()
        .expect("run the CLI")
}
