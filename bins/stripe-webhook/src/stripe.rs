//! Stripe's API, read only, as `reconcile` needs it: listing events (snapshot events from
//! `GET /v1/events`, thin events from `GET /v2/core/events`), listing connected accounts
//! (`GET /v1/accounts`), and retrieving one event.
//!
//! Every request carries the key as `Authorization: Bearer …`; requests for a connected account
//! carry `Stripe-Account` (v1) or `Stripe-Context` (v2, which supersedes it there); v2 requests
//! carry `Stripe-Version`. Answers are retried as replay retries deliveries ([`crate::retry`]):
//! `Stripe-Should-Retry: false` is final, `true` is retried, and otherwise 429 and 5xx are, as
//! are connection errors and timeouts. A 4xx that is not retried is [`ApiError::Refused`] with
//! Stripe's own message (401 and 403: the key is wrong or lacks a permission).
//!
//! The key never appears in a message, a log line or a record: [`ApiKey`]'s `Debug` and
//! [`ApiKey::id`] show its kind and last four characters only, and Stripe's error messages are
//! scrubbed of it before they are shown.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderName};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use stripe_webhook_envelope::{Fetched, ReceivedAt};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, Response, SendError, Target, Tls, one_line};
use crate::retry::{Next, Retries};

/// The API base unless `STRIPE_API_BASE` says otherwise.
pub(crate) const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// The `Stripe-Version` sent to the v2 API by default: the first version whose
/// `GET /v2/core/events` takes the `created` and `types` filters (before it, `object_id` was
/// required).
pub(crate) const DEFAULT_V2_VERSION: &str = "2025-10-29.clover";

/// The page size of v1 lists (the most Stripe allows).
const V1_PAGE_SIZE: u32 = 100;

/// The most event types `types` filters take in one request (v1 and v2).
const MAX_TYPES_FILTER: usize = 20;

/// What to ask Stripe to filter by type, for type globs `globs` (the globs are matched locally
/// too, always): `Some(types)` for the exact types to send (`Some(empty)`: no filter), `None`
/// when no event of this kind can match (skip the list).
///
/// Only the v1 list is filtered, and only when every glob is an exact type and there are at
/// most [`MAX_TYPES_FILTER`]: a glob needs local matching anyway, and Stripe may refuse a type
/// it does not know. Thin-event types (`v1.…`, `v2.…`) are never sent to the v1 list; thin
/// events are few, so the v2 list is matched locally only.
pub(crate) fn types_filter(kind: Kind, globs: &[String]) -> Option<Vec<String>> {
    let exact = !globs.is_empty() && globs.iter().all(|g| !g.contains(['*', '?']));
    if kind != Kind::Snapshot || !exact || globs.len() > MAX_TYPES_FILTER {
        return Some(Vec::new());
    }
    let thin = |t: &&String| t.starts_with("v1.") || t.starts_with("v2.");
    let types: Vec<String> = globs.iter().filter(|t| !thin(t)).cloned().collect();
    (!types.is_empty()).then_some(types)
}

/// The cursor after a v1 list page (`starting_after`: the id of its last item, `last_id`) when
/// its `has_more` says there is more, `None` at the end.
///
/// # Errors
/// No boolean `has_more`, or more but no item (`what` names the request).
fn v1_next(page: &Value, last_id: Option<&str>, what: &str) -> Result<Option<String>, ApiError> {
    match page.get("has_more").and_then(Value::as_bool) {
        Some(true) => last_id
            .map(|id| Some(id.to_owned()))
            .ok_or_else(|| not_a_list(what)),
        Some(false) => Ok(None),
        None => Err(not_a_list(what)),
    }
}

/// `millis` (Unix milliseconds) as an RFC 3339 instant with milliseconds.
pub(crate) fn at(millis: i64) -> String {
    ReceivedAt::from_unix_millis(millis).rfc3339_millis()
}

/// A secret (`sk_…`) or restricted (`rk_…`) API key.
///
/// Its `Debug` shows [`ApiKey::id`], never the key.
pub(crate) struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.id())
    }
}

impl ApiKey {
    /// Checks a key's form: a secret or restricted key, visible ASCII without spaces. The
    /// message names `origin` (where the key came from), never the key.
    pub(crate) fn new(text: &str, origin: &str) -> Result<ApiKey, String> {
        if text.is_empty() {
            return Err(format!("{origin} is empty"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{origin} holds a space, a control character or a non-ASCII character: not an API key"
            ));
        }
        if text.starts_with("pk_") {
            return Err(format!(
                "{origin} is a publishable key (pk_…), which cannot read events: give a secret \
                 key (sk_…) or a restricted key (rk_…) with the Events read permission"
            ));
        }
        if !(text.starts_with("sk_") || text.starts_with("rk_")) {
            return Err(format!(
                "{origin} is not a Stripe secret key (sk_…) or restricted key (rk_…)"
            ));
        }
        Ok(ApiKey(text.to_owned()))
    }

    /// The key from `--api-key-file` (one line; a final newline is ignored) if given, or else
    /// from `STRIPE_API_KEY`.
    pub(crate) fn load(file: Option<&Path>) -> Result<ApiKey, String> {
        match file {
            Some(path) => {
                let origin = format!("--api-key-file {}", path.display());
                let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: {e}"))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                ApiKey::new(text, &origin)
            }
            None => match std::env::var("STRIPE_API_KEY") {
                Ok(text) => ApiKey::new(&text, "STRIPE_API_KEY"),
                Err(std::env::VarError::NotPresent) => Err(
                    "no API key: set STRIPE_API_KEY or give --api-key-file (a secret key, or a \
                     restricted key with the Events read permission)"
                        .to_owned(),
                ),
                Err(e) => Err(format!("STRIPE_API_KEY: {e}")),
            },
        }
    }

    /// Whether it is a restricted key (`rk_…`).
    pub(crate) fn is_restricted(&self) -> bool {
        self.0.starts_with("rk_")
    }

    /// The key's id: its kind (`sk_live_`, `rk_test_`, …) and its last four characters, e.g.
    /// `rk_live_...Wx9z`, as Stripe's Dashboard shows keys. A key too short to spare four
    /// characters shows its kind only.
    pub(crate) fn id(&self) -> String {
        let key = &self.0;
        let kind_end = ["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
            .iter()
            .find(|kind| key.starts_with(*kind))
            .map_or(3, |kind| kind.len());
        let kind = &key[..kind_end];
        if key.len() >= kind_end + 20 {
            format!("{kind}...{}", &key[key.len() - 4..])
        } else {
            format!("{kind}...")
        }
    }

    /// `text` with every occurrence of the key replaced by its id.
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, &self.id())
    }
}

/// Which events: snapshot events (`/v1/events`) or thin events (`/v2/core/events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Snapshot events, `GET /v1/events` (what webhook endpoints receive).
    Snapshot,
    /// Thin events, `GET /v2/core/events` (what event destinations with thin payloads receive).
    Thin,
}

impl Kind {
    /// Its name in reports and checkpoints.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Thin => "thin",
        }
    }

    /// From [`Kind::name`].
    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        match name {
            "snapshot" => Some(Kind::Snapshot),
            "thin" => Some(Kind::Thin),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Snapshot => "/v1/events",
            Kind::Thin => "/v2/core/events",
        }
    }
}

/// An event as a list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// `evt_…`.
    pub(crate) id: String,
    /// Its type.
    pub(crate) event_type: String,
    /// `created` in Unix milliseconds.
    pub(crate) created_millis: i64,
    /// `created` as RFC 3339 (Stripe's own text for thin events).
    pub(crate) created: String,
    /// `pending_webhooks` (snapshot events; thin events have none).
    pub(crate) pending_webhooks: Option<u64>,
}

/// One page of a list.
#[derive(Debug)]
pub(crate) struct Page<T> {
    /// Its items, in Stripe's order.
    pub(crate) items: Vec<T>,
    /// Where the next page starts (the last id for v1, `next_page_url` for v2), or `None` when
    /// this was the last page.
    pub(crate) next: Option<String>,
}

/// The half-open window `[since, until)` of event creation times, in Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// First instant, inclusive.
    pub(crate) since: i64,
    /// Last instant, exclusive.
    pub(crate) until: i64,
}

impl Window {
    /// Whether `millis` is in the window.
    pub(crate) fn contains(&self, millis: i64) -> bool {
        (self.since..self.until).contains(&millis)
    }
}

/// What an API call could not do.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// Stripe answered with a final refusal (a 4xx, or `Stripe-Should-Retry: false`): the key is
    /// rejected (401), lacks a permission (403), the request is wrong, or the thing does not
    /// exist (404).
    Refused {
        /// The status.
        status: u16,
        /// The request (`GET /v1/events`).
        request: String,
        /// Stripe's error message (scrubbed of the key), or the start of the body.
        message: String,
    },
    /// No usable answer after every retry (the last reason).
    Unavailable(String),
    /// Stripe's answer is not what the API documents.
    Protocol(String),
    /// Ctrl-C.
    Interrupted,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Refused {
                status,
                request,
                message,
            } => write!(f, "Stripe refused {request} ({status}): {message}"),
            ApiError::Unavailable(why) => f.write_str(why),
            ApiError::Protocol(why) => f.write_str(why),
            ApiError::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// A successful answer.
struct Answer {
    body: Bytes,
    request_id: Option<String>,
}

/// A client of Stripe's API with one key (and a pool of kept-alive connections).
pub(crate) struct StripeApi {
    client: Client,
    /// `scheme://host[:port]`, and the base's path prefix (empty for Stripe itself).
    origin: String,
    prefix: String,
    key: ApiKey,
    v2_version: String,
    retries: u32,
    interrupt: CancellationToken,
    /// Requests sent so far, retries included.
    pub(crate) requests: u64,
}

impl StripeApi {
    /// A client of the API at `base` (`https://api.stripe.com`, or a proxy or test double,
    /// optionally with a path prefix).
    ///
    /// # Errors
    /// A base that is not an `http://` or `https://` URL, or an https CA file that cannot be used.
    pub(crate) fn new(
        base: &str,
        ca_file: Option<&Path>,
        key: ApiKey,
        v2_version: String,
        retries: u32,
        timeout: Duration,
        interrupt: CancellationToken,
    ) -> Result<StripeApi, String> {
        let target = Target::parse(base).map_err(|e| format!("the API base: {e}"))?;
        if target.path_and_query().contains('?') {
            return Err(format!("the API base {base:?} has a query"));
        }
        let tls = Tls::for_target(&target, ca_file, "API base")?;
        let origin = target.origin();
        let prefix = target.path_and_query().trim_end_matches('/').to_owned();
        Ok(StripeApi {
            client: Client::new(target, tls, "stripe-webhook-reconcile", timeout)?,
            origin,
            prefix,
            key,
            v2_version,
            retries,
            interrupt,
            requests: 0,
        })
    }

    /// The API base, as fetched records name it.
    pub(crate) fn base(&self) -> String {
        format!("{}{}", self.origin, self.prefix)
    }

    /// The key's id.
    pub(crate) fn key_id(&self) -> String {
        self.key.id()
    }

    /// Whether the key is a restricted key.
    pub(crate) fn key_is_restricted(&self) -> bool {
        self.key.is_restricted()
    }

    /// One page of events of `kind` created in `window` for `account` (the key's own account
    /// when `None`), after `cursor` (a previous page's [`Page::next`]); narrowed by Stripe to
    /// `types` when given (exact names, at most [`MAX_TYPES_FILTER`]).
    pub(crate) async fn events_page(
        &mut self,
        kind: Kind,
        window: Window,
        types: &[String],
        account: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<Listed>, ApiError> {
        let path = match (kind, cursor) {
            (Kind::Thin, Some(next_page_url)) => self.v2_next_page(next_page_url)?,
            _ => events_query(kind, window, types, cursor),
        };
        let answer = self.get(&path, kind, account).await?;
        let what = format!("GET {}", kind.path());
        let page = json(&answer.body, &what)?;
        let items = page
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| not_a_list(&what))?
            .iter()
            .map(|event| listed(kind, event).ok_or_else(|| not_a_list(&what)))
            .collect::<Result<Vec<Listed>, ApiError>>()?;
        let next = match kind {
            Kind::Snapshot => v1_next(&page, items.last().map(|e| e.id.as_str()), &what)?,
            Kind::Thin => match page.get("next_page_url") {
                Some(Value::String(url)) => Some(url.clone()),
                Some(Value::Null) | None => None,
                Some(_) => return Err(not_a_list(&what)),
            },
        };
        Ok(Page { items, next })
    }

    /// One page of the platform's connected accounts (their ids), after `cursor`.
    pub(crate) async fn accounts_page(
        &mut self,
        cursor: Option<&str>,
    ) -> Result<Page<String>, ApiError> {
        let mut query = vec![("limit".to_owned(), V1_PAGE_SIZE.to_string())];
        if let Some(after) = cursor {
            query.push(("starting_after".to_owned(), after.to_owned()));
        }
        let path = format!("/v1/accounts?{}", encode_query(&query));
        let answer = self.get(&path, Kind::Snapshot, None).await?;
        let what = "GET /v1/accounts";
        let page = json(&answer.body, what)?;
        let items = page
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| not_a_list(what))?
            .iter()
            .map(|a| {
                a.get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| not_a_list(what))
            })
            .collect::<Result<Vec<String>, ApiError>>()?;
        let next = v1_next(&page, items.last().map(String::as_str), what)?;
        Ok(Page { items, next })
    }

    /// Retrieves one event (`GET /v1/events/{id}` or `GET /v2/core/events/{id}`): its exact
    /// body, and how it was fetched (with the time of the answer).
    pub(crate) async fn retrieve(
        &mut self,
        kind: Kind,
        id: &str,
        account: Option<&str>,
    ) -> Result<(Bytes, Fetched<'static>, ReceivedAt), ApiError> {
        let request_path = format!("{}/{}", kind.path(), percent_encode(id));
        let answer = self.get(&request_path, kind, account).await?;
        let fetched_at = ReceivedAt::now();
        let request = format!("GET {request_path}");
        let event = json(&answer.body, &request)?;
        if event.get("id").and_then(Value::as_str) != Some(id) {
            return Err(ApiError::Protocol(format!(
                "Stripe's answer to {request} is not the event {id}"
            )));
        }
        let fetched = Fetched {
            api: self.base().into(),
            request: request.into(),
            key: self.key.id().into(),
            account: account.map(|a| a.to_owned().into()),
            stripe_version: (kind == Kind::Thin).then(|| self.v2_version.clone().into()),
            request_id: answer.request_id.map(Into::into),
        };
        Ok((answer.body, fetched, fetched_at))
    }

    /// The path of a v2 `next_page_url`: only a page of `/v2/core/events` on this API base is
    /// followed (an absolute URL's host is ignored: the key goes to the API base only).
    fn v2_next_page(&self, next_page_url: &str) -> Result<String, ApiError> {
        let path = match next_page_url.strip_prefix('/') {
            Some(_) => next_page_url.to_owned(),
            None => Target::parse(next_page_url)
                .map(|t| t.path_and_query().to_owned())
                .map_err(|_| {
                    ApiError::Protocol(format!(
                        "Stripe's next_page_url {next_page_url:?} is not a URL"
                    ))
                })?,
        };
        let path = path.strip_prefix(&self.prefix).unwrap_or(&path).to_owned();
        let page = path.strip_prefix(Kind::Thin.path());
        if !page.is_some_and(|rest| rest.is_empty() || rest.starts_with('?')) {
            return Err(ApiError::Protocol(format!(
                "Stripe's next_page_url {next_page_url:?} is not a page of {}",
                Kind::Thin.path()
            )));
        }
        Ok(path)
    }

    /// GETs `path_and_query` (below the API base) with the key, retrying what may succeed later.
    async fn get(
        &mut self,
        path_and_query: &str,
        kind: Kind,
        account: Option<&str>,
    ) -> Result<Answer, ApiError> {
        let mut headers = vec![(AUTHORIZATION, format!("Bearer {}", self.key.0))];
        match (kind, account) {
            (Kind::Snapshot, Some(account)) => {
                headers.push((
                    HeaderName::from_static("stripe-account"),
                    account.to_owned(),
                ));
            }
            (Kind::Thin, Some(account)) => {
                headers.push((
                    HeaderName::from_static("stripe-context"),
                    account.to_owned(),
                ));
            }
            (_, None) => {}
        }
        if kind == Kind::Thin {
            headers.push((
                HeaderName::from_static("stripe-version"),
                self.v2_version.clone(),
            ));
        }
        let path = format!("{}{path_and_query}", self.prefix);
        let request = format!("GET {}", path_and_query.split('?').next().unwrap_or(""));
        let mut retries = Retries::new(self.retries);
        loop {
            if self.interrupt.is_cancelled() {
                return Err(ApiError::Interrupted);
            }
            self.requests += 1;
            let answer = tokio::select! {
                answer = self.client.get(&path, &headers) => answer,
                () = self.interrupt.cancelled() => return Err(ApiError::Interrupted),
            };
            let (why, retry_after) = match answer {
                Ok(r) if (200..300).contains(&r.status) => {
                    return Ok(Answer {
                        request_id: r.header("request-id").map(str::to_owned),
                        body: r.body,
                    });
                }
                Ok(r) => {
                    let should_retry = r.header("stripe-should-retry");
                    let retry = match should_retry {
                        Some("false") => false,
                        Some("true") => true,
                        _ => r.status == 429 || r.status >= 500,
                    };
                    if !retry {
                        return Err(ApiError::Refused {
                            status: r.status,
                            request,
                            message: self.error_message(&r),
                        });
                    }
                    (
                        format!(
                            "Stripe answered {request} with {}: {}",
                            r.status,
                            self.error_message(&r)
                        ),
                        r.retry_after,
                    )
                }
                Err(SendError::Timeout(timeout)) => {
                    (format!("{request}: no answer within {timeout:?}"), None)
                }
                Err(e @ SendError::Failed(_)) => (format!("{request}: {e}"), None),
            };
            match retries.next(retry_after) {
                Next::Wait(wait) => {
                    if !crate::retry::sleep(&self.interrupt, wait).await {
                        return Err(ApiError::Interrupted);
                    }
                }
                Next::GiveUp => {
                    return Err(ApiError::Unavailable(format!(
                        "{why} (after {} retries)",
                        self.retries
                    )));
                }
                Next::TooLong(wait) => {
                    return Err(ApiError::Unavailable(format!(
                        "{why} (Retry-After {} s is longer than reconcile waits)",
                        wait.as_secs()
                    )));
                }
            }
        }
    }

    /// Stripe's `error.message`, or the start of the body; on one line, without the key.
    fn error_message(&self, r: &Response) -> String {
        let message = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| {
                v.get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| r.text());
        self.key.scrub(&one_line(&message, 500))
    }
}

/// The path and query of the first page of a list of events.
fn events_query(kind: Kind, window: Window, types: &[String], cursor: Option<&str>) -> String {
    let mut query: Vec<(String, String)> = Vec::new();
    match kind {
        Kind::Snapshot => {
            query.push(("limit".to_owned(), V1_PAGE_SIZE.to_string()));
            // Whole seconds: [ceil(since), ceil(until) - 1] holds exactly the seconds in
            // [since, until).
            let ceil =
                |millis: i64| millis.div_euclid(1000) + i64::from(millis.rem_euclid(1000) > 0);
            query.push(("created[gte]".to_owned(), ceil(window.since).to_string()));
            query.push((
                "created[lte]".to_owned(),
                (ceil(window.until) - 1).to_string(),
            ));
            for t in types {
                query.push(("types[]".to_owned(), t.clone()));
            }
            if let Some(after) = cursor {
                query.push(("starting_after".to_owned(), after.to_owned()));
            }
        }
        Kind::Thin => {
            query.push(("created[gte]".to_owned(), at(window.since)));
            query.push(("created[lte]".to_owned(), at(window.until - 1)));
            // Arrays are repeated keys in v2 (`types=a&types=b`).
            for t in types {
                query.push(("types".to_owned(), t.clone()));
            }
        }
    }
    format!("{}?{}", kind.path(), encode_query(&query))
}

/// An event of a list page, or `None` if it lacks what every event has.
fn listed(kind: Kind, event: &Value) -> Option<Listed> {
    let id = event.get("id")?.as_str()?.to_owned();
    let event_type = event.get("type")?.as_str()?.to_owned();
    let (created_millis, created, pending_webhooks) = match kind {
        Kind::Snapshot => {
            let seconds = event.get("created")?.as_i64()?;
            let text = OffsetDateTime::from_unix_timestamp(seconds)
                .ok()?
                .format(&Rfc3339)
                .ok()?;
            let pending = event.get("pending_webhooks").and_then(Value::as_u64);
            (seconds.checked_mul(1000)?, text, pending)
        }
        Kind::Thin => {
            let text = event.get("created")?.as_str()?;
            let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
            let millis = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
            (millis, text.to_owned(), None)
        }
    };
    Some(Listed {
        id,
        event_type,
        created_millis,
        created,
        pending_webhooks,
    })
}

fn json(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            ApiError::Protocol(format!("Stripe's answer to {what} is not a JSON object"))
        })
}

fn not_a_list(what: &str) -> ApiError {
    ApiError::Protocol(format!(
        "Stripe's answer to {what} is not a list as the API documents it"
    ))
}

/// `key=value&…`, percent-encoded.
fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What [`percent_encode`] leaves as it is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Every byte of `text` but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_never_shown() {
        let key =
            ApiKey::new("rk_live_51AbCdEfGhIjKlMnOpQrStUvWx9z", "STRIPE_API_KEY").expect("key");
        assert_eq!(key.id(), "rk_live_...Wx9z");
        assert_eq!(format!("{key:?}"), "ApiKey(rk_live_...Wx9z)");
        assert!(key.is_restricted());
        assert_eq!(
            key.scrub("Invalid API Key provided: rk_live_51AbCdEfGhIjKlMnOpQrStUvWx9z"),
            "Invalid API Key provided: rk_live_...Wx9z"
        );
        assert_eq!(
            ApiKey::new("sk_test_short", "x").expect("key").id(),
            "sk_test_..."
        );
        for (bad, says) in [
            ("", "is empty"),
            ("sk_test_a b", "a space"),
            ("pk_live_abc", "publishable"),
            ("whsec_abc", "not a Stripe secret key"),
        ] {
            let err = ApiKey::new(bad, "--api-key-file k").expect_err(bad);
            assert!(
                err.contains(says) && err.starts_with("--api-key-file k"),
                "{err}"
            );
            assert!(bad.len() < 4 || !err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_key_file_holds_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "sk_test_0123456789abcdefghijWXYZ\n").expect("write");
        assert_eq!(
            ApiKey::load(Some(&path)).expect("key").id(),
            "sk_test_...WXYZ"
        );
        std::fs::write(&path, "sk_test_0123456789abcdefghijWXYZ\r\n").expect("write");
        let err = ApiKey::load(Some(&path)).expect_err("CR");
        assert!(!err.contains("0123456789"), "{err}");
    }

    #[test]
    fn event_queries_cover_exactly_the_window() {
        let window = Window {
            since: 1_795_731_281_123,
            until: 1_795_731_290_000,
        };
        assert_eq!(
            events_query(
                Kind::Snapshot,
                window,
                &["invoice.paid".to_owned()],
                Some("evt_9")
            ),
            "/v1/events?limit=100&created%5Bgte%5D=1795731282&created%5Blte%5D=1795731289&types%5B%5D=invoice.paid&starting_after=evt_9"
        );
        assert_eq!(
            events_query(
                Kind::Thin,
                window,
                &["a.b".to_owned(), "c".to_owned()],
                None
            ),
            "/v2/core/events?created%5Bgte%5D=2026-11-26T22%3A14%3A41.123Z&created%5Blte%5D=2026-11-26T22%3A14%3A49.999Z&types=a.b&types=c"
        );
        assert!(window.contains(window.since) && !window.contains(window.until));
    }

    #[test]
    fn only_exact_snapshot_types_are_sent() {
        let types = |list: &[&str]| list.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            types_filter(
                Kind::Snapshot,
                &types(&["invoice.paid", "v1.billing.meter.error_report_triggered"])
            ),
            Some(types(&["invoice.paid"]))
        );
        assert_eq!(
            types_filter(
                Kind::Snapshot,
                &types(&["v1.billing.meter.error_report_triggered"])
            ),
            None,
            "no snapshot event can match: the list is skipped"
        );
        let no_filter = Some(vec![]);
        assert_eq!(
            types_filter(Kind::Snapshot, &types(&["invoice.*"])),
            no_filter
        );
        assert_eq!(types_filter(Kind::Snapshot, &[]), no_filter);
        assert_eq!(
            types_filter(Kind::Thin, &types(&["invoice.paid"])),
            no_filter
        );
        let many: Vec<String> = (0..21).map(|i| format!("t{i}.x")).collect();
        assert_eq!(types_filter(Kind::Snapshot, &many), no_filter);
    }

    #[test]
    fn list_items_are_read_as_the_api_documents_them() {
        let v1: Value = serde_json::json!({"id":"evt_1","type":"charge.succeeded","created":1795731281,"pending_webhooks":2});
        assert_eq!(
            listed(Kind::Snapshot, &v1),
            Some(Listed {
                id: "evt_1".into(),
                event_type: "charge.succeeded".into(),
                created_millis: 1_795_731_281_000,
                created: "2026-11-26T22:14:41Z".into(),
                pending_webhooks: Some(2),
            })
        );
        let v2: Value = serde_json::json!({"id":"evt_2","type":"v1.billing.meter.error_report_triggered","created":"2026-11-26T22:14:41.5Z"});
        let thin = listed(Kind::Thin, &v2).expect("thin");
        assert_eq!(
            (thin.created_millis, thin.pending_webhooks),
            (1_795_731_281_500, None)
        );
        assert_eq!(
            listed(Kind::Snapshot, &v2),
            None,
            "a string created is not v1's"
        );
        assert_eq!(listed(Kind::Thin, &serde_json::json!({"id":"evt_3"})), None);
    }

    #[test]
    fn next_page_urls_stay_on_the_api_base() {
        let api = StripeApi::new(
            "http://127.0.0.1:9/prefix/",
            None,
            ApiKey::new("sk_test_0123456789abcdefghijWXYZ", "k").expect("key"),
            DEFAULT_V2_VERSION.to_owned(),
            0,
            Duration::from_secs(1),
            CancellationToken::new(),
        )
        .expect("api");
        assert_eq!(api.base(), "http://127.0.0.1:9/prefix");
        assert_eq!(
            api.v2_next_page("/v2/core/events?page=p_1").expect("path"),
            "/v2/core/events?page=p_1"
        );
        assert_eq!(
            api.v2_next_page("https://elsewhere.example/v2/core/events?page=p_2")
                .expect("host ignored"),
            "/v2/core/events?page=p_2"
        );
        for bad in ["/v1/accounts", "/v2/core/events_x", "not a url"] {
            assert!(api.v2_next_page(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(percent_encode("Az09-._~[]&="), "Az09-._~%5B%5D%26%3D");
    }
}
