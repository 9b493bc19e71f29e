//! The hyper front door of the Stripe webhook archive: listeners, connections, read limits and
//! timeouts, signals. Everything the server answers comes from the service crate's
//! [`App`]; this crate only does the I/O around it.
//!
//! - [`ServerArgs`] (flags and environment) → [`ServerArgs::validate`] → [`ServerSettings`].
//! - [`Listeners::bind`]: the public and the metrics listener, bound (port 0: the kernel picks).
//! - [`serve`]: logs the bound addresses, accepts connections on the public listener
//!   (`POST /webhook/stripe`, `GET /health`) until SIGTERM/SIGINT, serves Prometheus metrics on the
//!   separate private one (`METRICS_ADDR`), then shuts down gracefully.
//!
//! ```no_run
//! # async fn run(app: stripe_webhook_service::App, args: stripe_webhook_server::ServerArgs) -> Result<(), Box<dyn std::error::Error>> {
//! let settings = args.validate(app.max_body_bytes())?;
//! let metrics = stripe_webhook_server::install_recorder()?;
//! let listeners = stripe_webhook_server::Listeners::bind(&settings)?;
//! stripe_webhook_server::serve(app, settings, listeners, Some(metrics)).await?;
//! # Ok(()) }
//! ```

mod admission;
mod connection;
mod nofile;
mod refuse;
mod sources;

pub use sources::{IpSet, STRIPE_WEBHOOK_IPS, STRIPE_WEBHOOK_IPS_AS_OF, Sources};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use stripe_webhook_service::App;
use stripe_webhook_service::settings::{ConfigError, positive};
use tokio::net::TcpListener;

pub use metrics_exporter_prometheus::PrometheusHandle;
use stripe_webhook_service::metrics_listener;
pub use stripe_webhook_service::metrics_listener::install_recorder;

mod healthcheck;

pub use healthcheck::healthcheck;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    Pretty,
    /// One JSON object per line (for log pipelines and container logs).
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT` if set, else `pretty` on a terminal and `json` otherwise (containers, systemd,
    /// CloudWatch), so log pipelines never receive colour codes.
    pub fn or_detect(format: Option<LogFormat>) -> LogFormat {
        format.unwrap_or_else(|| {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            }
        })
    }
}

/// Installs the process's log subscriber: `format` (see [`LogFormat::or_detect`]) on stderr,
/// filtered by `RUST_LOG` (default `info`); ANSI colour only when stderr is a terminal.
pub fn init_logging(format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(std::io::stderr);
    match LogFormat::or_detect(format) {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// The server's own settings (the service's are [`stripe_webhook_service::RawSettings`]).
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on; 0 for any free port (the kernel picks it; the start-up log line
    /// `listening` gives the address).
    #[arg(long, env = "PORT", default_value_t = 3001)]
    pub port: u16,

    /// Where Prometheus metrics are served (`GET /metrics`), `host:port` (port 0: any free port,
    /// logged at start), or `off`. Loopback by default: metrics are not for the public port (a
    /// Prometheus sidecar or agent scrapes them).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,

    /// Seconds a client may take to send a request head (and a keep-alive connection may sit idle)
    /// before the connection is closed. Short for direct exposure (Stripe sends its head at once,
    /// and at capacity a connection without a head is shed before this anyway); above the 5 s
    /// upstream keep-alive of the documented Caddy recipe. Behind a load balancer that reuses idle
    /// connections, set it above the balancer's idle timeout (ALB: 65 for its 60 s default).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a client may take to send the request body before it gets 408.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub body_read_timeout_secs: u64,

    /// The most connections served at once. When full, a new connection sheds the oldest one that
    /// has not sent a request head (idle or trickling); if every connection is in a request, new
    /// clients wait in the kernel's accept queue. Lowered at start (and said so) when the
    /// open-file limit cannot hold this many next to the server's own files.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// The most connections from one peer address at once; further ones are closed as soon as
    /// they are accepted. Peers in TRUSTED_PROXIES are exempt (every client behind a proxy shares
    /// its address); for them the cap applies to the forwarded client address instead, as
    /// webhooks in progress (a further one gets 503 busy before its body is read). 0: no cap.
    #[arg(long, env = "MAX_CONNECTIONS_PER_SOURCE", default_value_t = 64)]
    pub max_connections_per_source: usize,

    /// Who may post webhooks: `stripe` (Stripe's published webhook addresses, bundled), addresses
    /// and CIDR ranges, or a file path (`/…` or `./…`) holding them one a line; comma-separated,
    /// combinable. Others get 403 before their body is read. Unset: every address (the signature
    /// still decides). Behind a proxy, set TRUSTED_PROXIES too.
    #[arg(long, env = "ALLOWED_SOURCE_IPS")]
    pub allowed_source_ips: Option<String>,

    /// The proxies and load balancers in front of this server whose X-Forwarded-For to believe:
    /// addresses, CIDR ranges, `private` (10/8, 172.16/12, 192.168/16, 100.64/10, loopback,
    /// fc00::/7) or a file path. The client is the first address from the right of
    /// X-Forwarded-For that is not itself a trusted proxy; from any other peer the header is
    /// ignored. Trusted proxies are exempt from MAX_CONNECTIONS_PER_SOURCE.
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,

    /// The most request-body bytes buffered at once across all connections, beyond the first
    /// 64 KiB of each body (bodies are buffered before their signature can be checked). A body
    /// that finds no room gets 503 at once. Memory held for bodies is at most this plus
    /// MAX_CONNECTIONS × 64 KiB; the default suits a 512 MiB container. At least MAX_BODY_BYTES.
    #[arg(long, env = "MAX_BUFFERED_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_buffered_body_bytes: usize,

    /// On SIGTERM/SIGINT, seconds to finish in-flight webhooks and close the sink (the file sink
    /// seals its segments, Firehose sends what is queued) before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 25)]
    pub shutdown_timeout_secs: u64,

    /// Log format: `pretty` or `json`. Default: `pretty` on a terminal, `json` otherwise.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The validated server settings.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The public address (webhooks and `/health`).
    pub addr: SocketAddr,
    /// The private metrics address, if metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    /// Time allowed for a request head.
    pub header_read_timeout: Duration,
    /// Time allowed for a request body.
    pub body_read_timeout: Duration,
    /// Connections served at once (before the open-file limit is applied at start).
    pub max_connections: usize,
    /// Connections from one peer address at once (0: no cap).
    pub max_connections_per_source: usize,
    /// `ALLOWED_SOURCE_IPS` and `TRUSTED_PROXIES`.
    pub sources: Sources,
    /// Budget for buffered request bodies, beyond each body's first 64 KiB.
    pub max_buffered_body_bytes: usize,
    /// Time allowed for the whole shutdown.
    pub shutdown_timeout: Duration,
}

/// Parses `host` and `port` into one address (IPv6 hosts with or without brackets).
pub(crate) fn socket_addr(host: &str, port: u16) -> Option<SocketAddr> {
    format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .ok()
}

impl ServerArgs {
    /// Checks the settings; `max_body_bytes` is the service's `MAX_BODY_BYTES`, which the body
    /// buffering budget must be able to hold.
    ///
    /// # Errors
    /// An address that does not parse, a zero timeout or connection cap, or a budget smaller than
    /// one body, naming the variable.
    pub fn validate(&self, max_body_bytes: usize) -> Result<ServerSettings, ConfigError> {
        let addr = socket_addr(&self.host, self.port).ok_or_else(|| ConfigError::OutOfRange {
            name: "HOST",
            what: "an IP address (e.g. 0.0.0.0, 127.0.0.1, ::)",
            value: self.host.clone(),
        })?;
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" | "" => None,
            other => Some(other.parse().map_err(|_| ConfigError::OutOfRange {
                name: "METRICS_ADDR",
                what: "host:port (e.g. 127.0.0.1:9464) or off",
                value: other.to_owned(),
            })?),
        };
        let secs = "a positive number of seconds";
        positive(
            "HEADER_READ_TIMEOUT_SECS",
            self.header_read_timeout_secs,
            secs,
        )?;
        positive("BODY_READ_TIMEOUT_SECS", self.body_read_timeout_secs, secs)?;
        positive("SHUTDOWN_TIMEOUT_SECS", self.shutdown_timeout_secs, secs)?;
        positive("MAX_CONNECTIONS", self.max_connections as u64, "at least 1")?;
        let list = |name: &'static str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| {
                    IpSet::parse(v).map_err(|e| ConfigError::OutOfRange {
                        name,
                        what: "addresses, CIDR ranges, keywords or a file path",
                        value: e,
                    })
                })
                .transpose()
        };
        let sources = Sources {
            allowed: list("ALLOWED_SOURCE_IPS", &self.allowed_source_ips)?,
            trusted: list("TRUSTED_PROXIES", &self.trusted_proxies)?.unwrap_or_default(),
        };
        if self.max_buffered_body_bytes < max_body_bytes {
            return Err(ConfigError::OutOfRange {
                name: "MAX_BUFFERED_BODY_BYTES",
                what: "at least MAX_BODY_BYTES (room for one body of the largest accepted size)",
                value: self.max_buffered_body_bytes.to_string(),
            });
        }
        Ok(ServerSettings {
            addr,
            metrics_addr,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            sources,
            max_buffered_body_bytes: self.max_buffered_body_bytes,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
        })
    }
}

/// The server's bound sockets, handed to [`serve`]. Binding apart from serving lets a caller
/// (a test, an embedder) bind port 0 and know the port before anything connects.
#[derive(Debug)]
pub struct Listeners {
    /// The public listener: `POST /webhook/stripe`, `GET /health`.
    pub public: TcpListener,
    /// The private metrics listener (`GET /metrics`), when metrics are served.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the public address and, unless metrics are `off`, the metrics address, each with a
    /// deep accept queue (4096, so a burst of connections waits instead of losing its SYNs). A
    /// port of 0 takes any free port; [`serve`] logs the ports bound. Call it inside the Tokio
    /// runtime that will serve.
    ///
    /// # Errors
    /// [`ServeError::Bind`] for the first address that cannot be bound (in use, not local, a
    /// privileged port).
    pub fn bind(settings: &ServerSettings) -> Result<Listeners, ServeError> {
        let bind = |addr| listen(addr).map_err(|source| ServeError::Bind { addr, source });
        Ok(Listeners {
            public: bind(settings.addr)?,
            metrics: settings.metrics_addr.map(bind).transpose()?,
        })
    }
}

/// Why the server could not bind its listeners, or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sink could not finish its shutdown (acknowledged records are durable regardless).
    #[error("sink shutdown failed: {0}")]
    SinkShutdown(stripe_webhook_core::SinkError),
    /// The shutdown did not finish within `SHUTDOWN_TIMEOUT_SECS`.
    #[error(
        "shutdown did not finish within SHUTDOWN_TIMEOUT_SECS={0}: the sink is still closing (a \
         stalled disk or backend?). Every acknowledged record is durable; unsealed segments are \
         sealed at the next start"
    )]
    ShutdownTimeout(u64),
}

/// Serves `app` on `listeners` until SIGTERM or SIGINT, then shuts down: stop accepting, answer
/// `/health` 503, let in-flight webhooks finish, close the sink, all within the shutdown timeout.
/// Metrics are served when there is both a metrics listener and a `metrics` handle.
///
/// Its start-up log lines give each listener's bound address (field `address`): `metrics: GET
/// /metrics …`, then `listening: POST /webhook/stripe, GET /health` once it accepts.
///
/// # Errors
/// If the shutdown fails or times out.
pub async fn serve(
    app: App,
    settings: ServerSettings,
    listeners: Listeners,
    metrics: Option<PrometheusHandle>,
) -> Result<(), ServeError> {
    let Listeners {
        public: listener,
        metrics: metrics_listener,
    } = listeners;
    let metrics = match (metrics_listener, metrics) {
        (Some(listener), Some(handle)) => {
            tracing::info!(
                address = %bound_address(&listener),
                "metrics: GET /metrics (Prometheus text format)"
            );
            Some(tokio::spawn(metrics_listener::serve(listener, handle)))
        }
        _ => None,
    };
    tracing::info!(
        address = %bound_address(&listener),
        sink = app.ingest().sink_name(),
        max_body_bytes = app.max_body_bytes(),
        "listening: POST /webhook/stripe, GET /health"
    );

    let app = Arc::new(app);
    // Readiness as a metric too, for dashboards and alerts that do not poll /health.
    let readiness = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let ingest = app.ingest();
                metrics::gauge!(stripe_webhook_core::metrics::SINK_READY, "sink" => ingest.sink_name())
                    .set(if ingest.health().ready { 1.0 } else { 0.0 });
            }
        })
    };
    let open_files = nofile::raise();
    let max_connections = nofile::size_connections(open_files, settings.max_connections);
    let admission = admission::Admission::new(max_connections, settings.max_connections_per_source);
    if let Some(allowed) = &settings.sources.allowed {
        tracing::info!(
            addresses = allowed.len(),
            trusted_proxies = settings.sources.trusted.len(),
            stripe_list_as_of = STRIPE_WEBHOOK_IPS_AS_OF,
            "ALLOWED_SOURCE_IPS: webhooks from other addresses get 403 before their body is read"
        );
    }
    let sources = Arc::new(settings.sources.clone());
    let limits = connection::Limits {
        sources: Arc::clone(&sources),
        clients: admission::ClientRequests::new(settings.max_connections_per_source),
        header_read_timeout: settings.header_read_timeout,
        body_read_timeout: settings.body_read_timeout,
        budget: connection::BodyBudget::new(settings.max_buffered_body_bytes),
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    'accept: loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ticket = loop {
            match admission.admit(peer.ip(), sources.trusts(peer.ip())) {
                Ok(ticket) => break ticket,
                Err(admission::Refused::SourceFull) => {
                    // Closed before a byte is read.
                    if let Some(suppressed) =
                        stripe_webhook_core::admit_refusal_log("too_many_connections_from_source")
                    {
                        tracing::info!(
                            source = %peer.ip(),
                            max = settings.max_connections_per_source,
                            suppressed,
                            "connection refused: its address holds MAX_CONNECTIONS_PER_SOURCE connections"
                        );
                    }
                    continue 'accept;
                }
                // Every slot holds a request in progress: wait for one (bounded, so a missed
                // wake-up only delays).
                Err(admission::Refused::Full) => tokio::select! {
                    _ = tokio::time::timeout(Duration::from_millis(100), admission.freed()) => {}
                    () = &mut shutdown => break 'accept,
                },
            }
        };
        connection::serve(
            stream,
            peer,
            Arc::clone(&app),
            limits.clone(),
            &graceful,
            ticket,
        );
    }

    let started = Instant::now();
    drop(listener);
    app.begin_shutdown();
    tracing::info!("shutting down: no new connections; finishing in-flight webhooks");
    let timeout = settings.shutdown_timeout;
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_secs = timeout.as_secs(),
            "in-flight webhooks did not finish in time; their senders get no 200 and will retry"
        );
    }
    let remaining = timeout.saturating_sub(started.elapsed());
    let result = match tokio::time::timeout(remaining, app.shutdown()).await {
        Ok(Ok(())) => {
            tracing::info!("sink flushed and closed; bye");
            Ok(())
        }
        Ok(Err(e)) => Err(ServeError::SinkShutdown(e)),
        Err(_) => Err(ServeError::ShutdownTimeout(timeout.as_secs())),
    };
    readiness.abort();
    if let Some(task) = metrics {
        task.abort();
    }
    result
}

/// The kernel's queue of connections not yet accepted, per listener: deep, so a burst of
/// connections to the public port (a flood, or many webhooks at once) waits there instead of
/// having its SYNs dropped (a dropped SYN costs the client a 1 s retransmit). The kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener (`SO_REUSEADDR`, as `TcpListener::bind` sets) with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The address `listener` is bound to (the port the kernel picked for port 0), for the log.
fn bound_address(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| format!("unknown ({e})"), |addr| addr.to_string())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => if r.is_ok() { tracing::info!("SIGINT received") },
    }
}
