//! Forwarding settings in two stages, like the service's: [`ForwardArgs`] (flags and environment
//! variables, as given) → [`ForwardArgs::validate`] → [`ForwardSettings`] (checked and typed).

use std::time::Duration;

use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_verify::Secret;

use crate::glob::TypeFilter;

/// Every forwarding setting, as given. Flatten it into a binary's clap parser.
#[derive(Clone, Args)]
#[command(next_help_heading = "Forwarding (FORWARD_URL)")]
pub struct ForwardArgs {
    /// Where to forward every archived event: one or more `http://` or `https://` URLs,
    /// comma-separated. Each gets its own cursor, dead-letter list and retries.
    #[arg(long = "forward-url", env = "FORWARD_URL")]
    pub url: Option<String>,

    /// The destinations' signing secrets (`whsec_…`), comma-separated, one per FORWARD_URL in the
    /// same order: each delivery is signed with its destination's secret, as Stripe would.
    #[arg(
        long = "forward-secret",
        env = "FORWARD_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Only events whose type matches one of these globs, comma-separated (`*` matches any run of
    /// characters), e.g. `invoice.*,charge.succeeded`. Unset: every event.
    #[arg(long = "forward-types", env = "FORWARD_TYPES")]
    pub types: Option<String>,

    /// How long an event is retried, counted from when it was archived, before it goes to the
    /// destination's dead-letter list: a number and a unit (`s`, `m`, `h`, `d`), or `forever`.
    #[arg(
        long = "forward-max-age",
        env = "FORWARD_MAX_AGE",
        default_value = "7d"
    )]
    pub max_age: String,

    /// Deliveries in flight at once, per destination.
    #[arg(
        long = "forward-concurrency",
        env = "FORWARD_CONCURRENCY",
        default_value_t = 8
    )]
    pub concurrency: usize,

    /// `none`: events go out as they come, up to FORWARD_CONCURRENCY at once. `object`: events of
    /// the same `data.object.id` go one at a time, in archive order.
    #[arg(long = "forward-order", env = "FORWARD_ORDER", value_enum, default_value_t = Order::None)]
    pub order: Order,

    /// The longest one delivery attempt may take (connect, send, whole answer), e.g. `10s`.
    #[arg(
        long = "forward-timeout",
        env = "FORWARD_TIMEOUT",
        default_value = "10s"
    )]
    pub timeout: String,

    /// Where a destination without a cursor yet starts: `now`, or an RFC 3339 time (a backfill
    /// from the archive: every archived event received since then).
    #[arg(long = "forward-start", env = "FORWARD_START", default_value = "now")]
    pub start: String,

    /// The longest wait between two attempts of one event (the backoff doubles up to it, with
    /// full jitter; a longer Retry-After is still honoured).
    #[arg(
        long = "forward-retry-max",
        env = "FORWARD_RETRY_MAX",
        default_value = "5m"
    )]
    pub retry_max: String,

    /// Run the forwarder inside the server (default: yes when FORWARD_URL is set). `false`: only
    /// `stripe-webhook forward` forwards (a separate process reading the same archive).
    #[arg(long = "forward-in-server", env = "FORWARD_IN_SERVER", action = clap::ArgAction::Set)]
    pub in_server: Option<bool>,
}

impl std::fmt::Debug for ForwardArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardArgs")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("types", &self.types)
            .field("max_age", &self.max_age)
            .field("concurrency", &self.concurrency)
            .field("order", &self.order)
            .field("timeout", &self.timeout)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// Per-object order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Order {
    /// No order: up to FORWARD_CONCURRENCY deliveries at once, in any order.
    None,
    /// Events with the same `data.object.id` one at a time, in archive order.
    Object,
}

/// Where a destination without a cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the moment the forwarder first runs for it.
    Now,
    /// At this time (backfill): every archived record received since.
    At(ReceivedAt),
}

/// One destination: a URL, its secret and its stable id.
#[derive(Clone)]
pub struct Destination {
    /// The URL events are POSTed to.
    pub url: String,
    /// The secret deliveries are signed with.
    pub secret: Secret,
    /// The stable id ([`destination_id`]): names its state directory, metrics and logs.
    pub id: String,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The validated settings.
#[derive(Clone, Debug)]
pub struct ForwardSettings {
    /// The destinations, in FORWARD_URL order.
    pub destinations: Vec<Destination>,
    /// Which event types are forwarded.
    pub types: TypeFilter,
    /// How long an event is retried before it is dead-lettered; `None`: forever.
    pub max_age: Option<Duration>,
    /// Deliveries in flight per destination.
    pub concurrency: usize,
    /// Per-object order or none.
    pub order: Order,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Where a destination without a cursor starts.
    pub start: Start,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
}

/// A forwarding setting a person has to fix. Messages name the variable, and positions in lists
/// rather than values (a URL may carry a token, a secret is a secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ForwardConfigError(pub String);

impl ForwardArgs {
    /// Whether forwarding is configured at all (FORWARD_URL set and not empty).
    pub fn is_configured(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// Whether the server runs the forwarder: configured, and FORWARD_IN_SERVER not `false`.
    pub fn runs_in_server(&self) -> bool {
        self.is_configured() && self.in_server != Some(false)
    }

    /// The destination ids of FORWARD_URL alone (no secret needed): for the CLI's read-only
    /// commands.
    ///
    /// # Errors
    /// A URL that is not `http://` or `https://`.
    pub fn destination_ids(&self) -> Result<Vec<(String, String)>, ForwardConfigError> {
        urls(self.url.as_deref().unwrap_or_default())?
            .into_iter()
            .map(|url| Ok((destination_id(&url)?, url)))
            .collect()
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// The first problem found, naming the variable (and a position in a list, never a value).
    pub fn validate(&self) -> Result<ForwardSettings, ForwardConfigError> {
        let err = |m: String| ForwardConfigError(m);
        let urls = urls(self.url.as_deref().unwrap_or_default())?;
        if urls.is_empty() {
            return Err(err("FORWARD_URL is not set: nothing to forward to".into()));
        }
        let secrets: Vec<&str> = self
            .secret
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if secrets.len() != urls.len() {
            let positions = |from: usize, to: usize| {
                (from + 1..=to)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let which = if secrets.len() < urls.len() {
                format!(
                    "FORWARD_URL element(s) {} have no secret",
                    positions(secrets.len(), urls.len())
                )
            } else {
                format!(
                    "FORWARD_SECRET element(s) {} have no URL",
                    positions(urls.len(), secrets.len())
                )
            };
            return Err(err(format!(
                "FORWARD_SECRET has {} secret(s) but FORWARD_URL has {} URL(s) ({which}): give \
                 one secret per URL, in the same order (URL 1 is signed with secret 1, …)",
                secrets.len(),
                urls.len()
            )));
        }
        let mut destinations = Vec::with_capacity(urls.len());
        for (i, (url, secret)) in urls.into_iter().zip(secrets).enumerate() {
            let secret = Secret::new(secret).map_err(|e| {
                err(format!(
                    "FORWARD_SECRET element {} (for FORWARD_URL element {}): {e}",
                    i + 1,
                    i + 1
                ))
            })?;
            if !secret.has_whsec_prefix() {
                tracing::warn!(
                    element = i + 1,
                    "FORWARD_SECRET element {} does not start with whsec_; Stripe SDKs accept any \
                     secret, but Stripe's own secrets do",
                    i + 1
                );
            }
            let id = destination_id(&url)?;
            if destinations.iter().any(|d: &Destination| d.id == id) {
                return Err(err(format!(
                    "FORWARD_URL element {} repeats an earlier URL",
                    i + 1
                )));
            }
            destinations.push(Destination { url, secret, id });
        }
        let types = TypeFilter::parse(self.types.as_deref().unwrap_or_default())
            .map_err(|e| err(format!("FORWARD_TYPES: {e}")))?;
        let max_age = match self.max_age.trim() {
            "forever" => None,
            text => Some(
                parse_duration(text)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        err(format!(
                            "FORWARD_MAX_AGE must be a positive duration (`7d`, `72h`, `30m`) or \
                         `forever`, got {text:?}"
                        ))
                    })?,
            ),
        };
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(err(format!(
                "FORWARD_CONCURRENCY must be 1 to 1024, got {}",
                self.concurrency
            )));
        }
        let duration = |name: &str, text: &str| {
            parse_duration(text.trim())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    err(format!(
                        "{name} must be a positive duration (`10s`, `500ms`, `5m`), got {text:?}"
                    ))
                })
        };
        let timeout = duration("FORWARD_TIMEOUT", &self.timeout)?;
        let retry_max = duration("FORWARD_RETRY_MAX", &self.retry_max)?;
        let start = match self.start.trim() {
            "now" => Start::Now,
            text => Start::At(parse_rfc3339(text).ok_or_else(|| {
                err(format!(
                    "FORWARD_START must be `now` or an RFC 3339 time (2026-11-01T00:00:00Z), got \
                     {text:?}"
                ))
            })?),
        };
        Ok(ForwardSettings {
            destinations,
            types,
            max_age,
            concurrency: self.concurrency,
            order: self.order,
            timeout,
            start,
            retry_max,
        })
    }
}

/// The URLs of a comma-separated list, checked (`http://` or `https://` with a host).
fn urls(list: &str) -> Result<Vec<String>, ForwardConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .enumerate()
        .map(|(i, url)| {
            let uri: http::Uri = url.parse().map_err(|_| {
                ForwardConfigError(format!("FORWARD_URL element {} is not a URL", i + 1))
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ForwardConfigError(format!(
                    "FORWARD_URL element {} must be an http:// or https:// URL with a host",
                    i + 1
                )));
            }
            Ok(url.to_owned())
        })
        .collect()
}

/// The stable id of a destination: its host (letters, digits, `.` and `-`; anything else `_`),
/// `-`, and the first 8 hex digits of the SHA-256 of the whole URL. The same URL always gets the
/// same id (its state directory survives restarts); two URLs on one host get different ones; the
/// id shows no path, query or credentials of the URL.
///
/// # Errors
/// A URL without a host.
pub fn destination_id(url: &str) -> Result<String, ForwardConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ForwardConfigError("FORWARD_URL: not a URL".into()))?;
    let host = uri
        .host()
        .ok_or_else(|| ForwardConfigError("FORWARD_URL: a URL has no host".into()))?;
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let digest = Sha256::digest(url.as_bytes());
    Ok(format!("{host}-{}", &hex::encode(digest)[..8]))
}

/// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d` (a bare number is seconds).
///
/// Written here rather than taken from a crate (humantime): five units, one number, and no new
/// dependency; the accepted forms are exactly the documented ones.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => None,
    }
}

/// Parses an RFC 3339 time (any offset) into the archive's millisecond time.
pub fn parse_rfc3339(text: &str) -> Option<ReceivedAt> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let millis = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some(ReceivedAt::from_unix_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ForwardArgs,
    }

    fn args(list: &[&str]) -> ForwardArgs {
        <Cli as clap::Parser>::try_parse_from(std::iter::once("t").chain(list.iter().copied()))
            .expect("parses")
            .args
    }

    #[test]
    fn secrets_pair_with_urls_by_position_and_mismatches_name_counts_not_values() {
        let ok = args(&[
            "--forward-url",
            "https://a.example/hook,http://b.example:8080/x",
            "--forward-secret",
            "whsec_a,whsec_b",
        ])
        .validate()
        .expect("valid");
        assert_eq!(ok.destinations.len(), 2);
        assert!(ok.destinations[0].id.starts_with("a.example-"));
        assert!(ok.destinations[1].id.starts_with("b.example-"));
        assert_eq!(ok.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(ok.concurrency, 8);
        assert_eq!(ok.timeout, Duration::from_secs(10));
        assert_eq!(ok.start, Start::Now);
        let err = args(&[
            "--forward-url",
            "https://a.example/hook?token=sekrit,https://b.example/",
            "--forward-secret",
            "whsec_only_one",
        ])
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1 secret(s)") && err.contains("2 URL(s)"),
            "{err}"
        );
        assert!(
            !err.contains("sekrit") && !err.contains("whsec_only_one"),
            "{err}"
        );
        let err = args(&["--forward-url", "ftp://x", "--forward-secret", "whsec_a"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("element 1"), "{err}");
    }

    #[test]
    fn durations_ages_and_starts_parse_or_are_refused_by_name() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("3d"), Some(Duration::from_secs(259_200)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("7w"), None);
        assert_eq!(parse_duration("d"), None);
        let base = ["--forward-url", "http://h/", "--forward-secret", "whsec_a"];
        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            args(&all).validate()
        };
        assert_eq!(
            with(&["--forward-max-age", "forever"]).unwrap().max_age,
            None
        );
        let e = with(&["--forward-max-age", "0s"]).unwrap_err().to_string();
        assert!(e.starts_with("FORWARD_MAX_AGE"), "{e}");
        let e = with(&["--forward-timeout", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("FORWARD_TIMEOUT"), "{e}");
        let e = with(&["--forward-concurrency", "0"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("FORWARD_CONCURRENCY"), "{e}");
        let at = with(&["--forward-start", "2026-11-01T01:00:00+01:00"])
            .unwrap()
            .start;
        assert_eq!(
            at,
            Start::At(ReceivedAt::parse_rfc3339_millis("2026-11-01T00:00:00.000Z").unwrap())
        );
        let e = with(&["--forward-start", "yesterday"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("FORWARD_START"), "{e}");
    }

    #[test]
    fn destination_ids_are_stable_distinct_and_show_no_path_or_credentials() {
        let a = destination_id("https://user:pw@Hooks.Example.com/stripe?token=t").unwrap();
        assert_eq!(
            a,
            destination_id("https://user:pw@Hooks.Example.com/stripe?token=t").unwrap()
        );
        assert!(a.starts_with("hooks.example.com-"), "{a}");
        assert!(!a.contains("pw") && !a.contains("token"), "{a}");
        assert_ne!(
            a,
            destination_id("https://hooks.example.com/other").unwrap()
        );
        assert_eq!(a.len(), "hooks.example.com-".len() + 8);
    }

    #[test]
    fn in_server_defaults_to_on_when_configured() {
        assert!(!args(&[]).runs_in_server());
        assert!(args(&["--forward-url", "http://h/"]).runs_in_server());
        assert!(
            !args(&["--forward-url", "http://h/", "--forward-in-server", "false"]).runs_in_server()
        );
    }
}
