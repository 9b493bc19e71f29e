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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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

/// A page of a v1 list (`GET /v1/events`, `GET /v1/accounts`), as the API documents it.
#[derive(Debug, Deserialize)]
struct V1List<T> {
    data: Vec<T>,
    has_more: bool,
}

/// A page of a v2 list (`GET /v2/core/events`): `next_page_url` is `null` on the last page.
#[derive(Debug, Deserialize)]
struct V2List<T> {
    data: Vec<T>,
    next_page_url: Option<String>,
}

/// A snapshot event as `GET /v1/events` lists it (what reconcile reads of it).
#[derive(Debug, Deserialize)]
struct SnapshotEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    /// Unix seconds.
    created: i64,
    pending_webhooks: Option<u64>,
}

/// A thin event as `GET /v2/core/events` lists it.
#[derive(Debug, Deserialize)]
struct ThinEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    /// RFC 3339.
    created: String,
}

/// A connected account as `GET /v1/accounts` lists it.
#[derive(Debug, Deserialize)]
struct Account {
    id: String,
}

/// An event retrieved by id: only its id is read (its body is archived as Stripe sent it).
#[derive(Debug, Deserialize)]
struct Retrieved {
    id: String,
}

/// Stripe's answer to a request it refuses.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

/// The part of an [`ErrorAnswer`] shown.
#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: String,
}

impl<T> V1List<T> {
    /// The cursor after this page (`starting_after`: the id of its last item, `last_id`) when
    /// `has_more` says there is more, `None` at the end.
    ///
    /// # Errors
    /// More but no item (`what` names the request).
    fn next(&self, last_id: Option<&str>, what: &str) -> Result<Option<String>, ApiError> {
        match (self.has_more, last_id) {
            (true, Some(id)) => Ok(Some(id.to_owned())),
            (true, None) => Err(not_a_list(what)),
            (false, _) => Ok(None),
        }
    }
}

impl SnapshotEvent {
    /// As a [`Listed`], or `None` if its `created` is out of range.
    fn listed(self) -> Option<Listed> {
        let created = OffsetDateTime::from_unix_timestamp(self.created)
            .ok()?
            .format(&Rfc3339)
            .ok()?;
        Some(Listed {
            created_millis: self.created.checked_mul(1000)?,
            created,
            id: self.id,
            event_type: self.event_type,
            pending_webhooks: self.pending_webhooks,
        })
    }
}

impl ThinEvent {
    /// As a [`Listed`], or `None` if its `created` is not an RFC 3339 instant in range.
    fn listed(self) -> Option<Listed> {
        let at = OffsetDateTime::parse(&self.created, &Rfc3339).ok()?;
        Some(Listed {
            created_millis: i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?,
            created: self.created,
            id: self.id,
            event_type: self.event_type,
            pending_webhooks: None,
        })
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

/// Which events: snapshot events (`/v1/events`) or thin events (`/v2/core/events`). In JSON (reports
/// and checkpoints) its [`Kind::name`].
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
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

    fn path(self) -> &'static str {
        match self {
            Kind::Snapshot => "/v1/events",
            Kind::Thin => "/v2/core/events",
        }
    }
}

/// An event as a list shows it; in JSON (reconcile's checkpoint) with Stripe's names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Listed {
    /// `evt_…`.
    pub(crate) id: String,
    /// Its type.
    #[serde(rename = "type")]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// Where Stripe's API is: `https://api.stripe.com`, or a proxy or test double, optionally with a
/// path prefix. Shown (in checkpoints, summaries and fetched records) as `scheme://host[:port]`
/// and the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiBase {
    target: Target,
    /// `scheme://host[:port]`.
    origin: String,
    /// The base's path without its trailing `/` (empty for Stripe itself).
    prefix: String,
}

impl ApiBase {
    /// Checks an API base.
    ///
    /// # Errors
    /// Not an `http://` or `https://` URL, or a URL with a query.
    pub(crate) fn parse(base: &str) -> Result<ApiBase, String> {
        let target = Target::parse(base).map_err(|e| format!("the API base: {e}"))?;
        if target.path_and_query().contains('?') {
            return Err(format!("the API base {base:?} has a query"));
        }
        Ok(ApiBase {
            origin: target.origin(),
            prefix: target.path_and_query().trim_end_matches('/').to_owned(),
            target,
        })
    }
}

impl fmt::Display for ApiBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin, self.prefix)
    }
}

/// A client of Stripe's API with one key (and a pool of kept-alive connections).
pub(crate) struct StripeApi {
    client: Client,
    base: ApiBase,
    key: ApiKey,
    v2_version: String,
    retries: u32,
    interrupt: CancellationToken,
    /// Requests sent so far, retries included.
    pub(crate) requests: u64,
}

impl StripeApi {
    /// A client of the API at `base`.
    ///
    /// # Errors
    /// An https CA file that cannot be used (or one given for an `http://` base).
    pub(crate) fn new(
        base: ApiBase,
        ca_file: Option<&Path>,
        key: ApiKey,
        v2_version: String,
        retries: u32,
        timeout: Duration,
        interrupt: CancellationToken,
    ) -> Result<StripeApi, String> {
        let tls = Tls::for_target(&base.target, ca_file, "API base")?;
        Ok(StripeApi {
            client: Client::new(
                base.target.clone(),
                tls,
                "stripe-webhook-reconcile",
                timeout,
            )?,
            base,
            key,
            v2_version,
            retries,
            interrupt,
            requests: 0,
        })
    }

    /// The API base, as fetched records name it.
    pub(crate) fn base(&self) -> String {
        self.base.to_string()
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
        events_page(kind, &answer.body)
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
        let page: V1List<Account> = list(&answer.body, what)?;
        let next = page.next(page.data.last().map(|a| a.id.as_str()), what)?;
        let items = page.data.into_iter().map(|a| a.id).collect();
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
        let event: Retrieved = serde_json::from_slice(&answer.body).map_err(|_| {
            ApiError::Protocol(format!(
                "Stripe's answer to {request} is not an event as the API documents it"
            ))
        })?;
        if event.id != id {
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
        let path = path
            .strip_prefix(&self.base.prefix)
            .unwrap_or(&path)
            .to_owned();
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
        let path = format!("{}{path_and_query}", self.base.prefix);
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
        let message = serde_json::from_slice::<ErrorAnswer>(&r.body)
            .map_or_else(|_| r.text(), |answer| answer.error.message);
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

/// A page of events of `kind`, from Stripe's answer `body`.
///
/// # Errors
/// An answer that is not such a page as the API documents it.
fn events_page(kind: Kind, body: &[u8]) -> Result<Page<Listed>, ApiError> {
    let what = format!("GET {}", kind.path());
    let all = |items: Vec<Option<Listed>>| -> Result<Vec<Listed>, ApiError> {
        items
            .into_iter()
            .map(|item| item.ok_or_else(|| not_a_list(&what)))
            .collect()
    };
    match kind {
        Kind::Snapshot => {
            let page: V1List<SnapshotEvent> = list(body, &what)?;
            let next = page.next(page.data.last().map(|e| e.id.as_str()), &what)?;
            let items = all(page.data.into_iter().map(SnapshotEvent::listed).collect())?;
            Ok(Page { items, next })
        }
        Kind::Thin => {
            let page: V2List<ThinEvent> = list(body, &what)?;
            let items = all(page.data.into_iter().map(ThinEvent::listed).collect())?;
            Ok(Page {
                items,
                next: page.next_page_url,
            })
        }
    }
}

/// A list page of Stripe's answer `body` to `what`.
fn list<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| not_a_list(what))
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
        let v1 = r#"{"object":"list","url":"/v1/events","has_more":true,"data":[{"id":"evt_1","object":"event","type":"charge.succeeded","created":1795731281,"pending_webhooks":2,"data":{"object":{}}}]}"#;
        let page = events_page(Kind::Snapshot, v1.as_bytes()).expect("v1 page");
        assert_eq!(
            page.items,
            [Listed {
                id: "evt_1".into(),
                event_type: "charge.succeeded".into(),
                created_millis: 1_795_731_281_000,
                created: "2026-11-26T22:14:41Z".into(),
                pending_webhooks: Some(2),
            }]
        );
        assert_eq!(page.next.as_deref(), Some("evt_1"), "starting_after");
        let v2_event = r#"{"id":"evt_2","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","created":"2026-11-26T22:14:41.5Z"}"#;
        let v2 = format!(r#"{{"data":[{v2_event}],"next_page_url":"/v2/core/events?page=p_1"}}"#);
        let page = events_page(Kind::Thin, v2.as_bytes()).expect("v2 page");
        let thin = &page.items[0];
        assert_eq!(
            (thin.created_millis, thin.pending_webhooks),
            (1_795_731_281_500, None)
        );
        assert_eq!(thin.created, "2026-11-26T22:14:41.5Z", "Stripe's own text");
        assert_eq!(page.next.as_deref(), Some("/v2/core/events?page=p_1"));
        let last = format!(r#"{{"data":[{v2_event}],"next_page_url":null}}"#);
        let page = events_page(Kind::Thin, last.as_bytes()).expect("last v2 page");
        assert_eq!(page.next, None);
        for (kind, bad, why) in [
            (
                Kind::Snapshot,
                format!(r#"{{"has_more":false,"data":[{v2_event}]}}"#),
                "a string created is not v1's",
            ),
            (
                Kind::Thin,
                r#"{"data":[{"id":"evt_3"}],"next_page_url":null}"#.to_owned(),
                "no type, no created",
            ),
            (
                Kind::Thin,
                r#"{"data":[{"id":"evt_4","type":"a","created":"yesterday"}]}"#.to_owned(),
                "created not RFC 3339",
            ),
            (
                Kind::Snapshot,
                r#"{"has_more":true,"data":[]}"#.to_owned(),
                "more, but no item to start after",
            ),
            (Kind::Snapshot, r#"{"data":[]}"#.to_owned(), "no has_more"),
            (
                Kind::Thin,
                r#"{"data":[],"next_page_url":7}"#.to_owned(),
                "a number for a URL",
            ),
            (Kind::Thin, "[]".to_owned(), "not an object"),
        ] {
            let err = events_page(kind, bad.as_bytes()).expect_err(why);
            assert!(err.to_string().contains("not a list"), "{why}: {err}");
        }
    }

    #[test]
    fn next_page_urls_stay_on_the_api_base() {
        let api = StripeApi::new(
            ApiBase::parse("http://127.0.0.1:9/prefix/").expect("base"),
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
