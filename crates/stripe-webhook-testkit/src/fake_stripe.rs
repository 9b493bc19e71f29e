//! A fake of the parts of Stripe's API that `stripe-webhook reconcile` reads, on loopback, for
//! tests: events (snapshot and thin), connected accounts, keys and their permissions, and
//! scripted faults.
//!
//! What it serves, as Stripe documents it (its own assumptions are marked):
//!
//! - `GET /v1/events`: `limit` (1 to 100, default 10), `created[gt|gte|lt|lte]` (Unix seconds),
//!   `types[]` (or `types[N]`; exact names, at most 20), `starting_after` (an event id of the
//!   same list); newest first; `{"object":"list","url":"/v1/events","has_more":…,"data":[…]}`.
//! - `GET /v1/events/{id}`: the event's body exactly as it was registered.
//! - `GET /v1/accounts`: the connected accounts (`limit`, `starting_after`, `has_more`).
//! - `GET /v2/core/events`: `created[gt|gte|lt|lte]` (RFC 3339), `types` (repeated key),
//!   `limit` (1 to 100, default 20: the fake's assumption), `page` (a token from
//!   `next_page_url`, which carries the filters); newest first;
//!   `{"data":[…],"next_page_url":"/v2/core/events?page=…"|null,"previous_page_url":null}`.
//!   Requests without `Stripe-Version` are refused (400).
//! - `GET /v2/core/events/{id}`: the event's body.
//!
//! Every request needs `Authorization: Bearer <key>` with a registered key ([`Access`]): an
//! unknown key gets 401, a restricted key without the permission 403, with Stripe's error shape
//! (`{"error":{"message":…,"type":"invalid_request_error",…}}`; the key shown redacted). v1
//! requests name a connected account with `Stripe-Account`, v2 requests with `Stripe-Context`
//! (the fake's assumption: it does not take `Stripe-Account` on v2); an account that is not
//! connected gets 403. Events belong to one account (`None`: the platform's own). Every answer
//! has a `Request-Id`. [`FakeStripe::fail`] scripts a fault (a 429 with
//! `Stripe-Should-Retry: true`, a 500, …) for the n-th next request to a path, and every request
//! is recorded ([`FakeStripe::requests`]).
//!
//! ```
//! use stripe_webhook_testkit::fake_stripe::{Access, FakeStripe};
//! use stripe_webhook_testkit::http::request;
//! use stripe_webhook_testkit::webhook_target::Reply;
//!
//! let stripe = FakeStripe::start();
//! stripe.key("sk_test_fake0123456789abcdefWXYZ", Access::Secret);
//! stripe.event(r#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1795731281}"#, None);
//! stripe.fail("/v1/events", 1, Reply::rate_limited());
//!
//! let auth = [("Authorization", "Bearer sk_test_fake0123456789abcdefWXYZ")];
//! let first = request(stripe.addr, "GET", "/v1/events?limit=100", &auth, b"")?;
//! assert_eq!((first.status, first.header("stripe-should-retry")), (429, Some("true")));
//! let second = request(stripe.addr, "GET", "/v1/events?limit=100", &auth, b"")?;
//! let list: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
//! assert_eq!(list["data"][0]["id"], "evt_1");
//! assert_eq!(list["has_more"], false);
//!
//! let denied = request(stripe.addr, "GET", "/v1/events", &[("Authorization", "Bearer sk_test_nope")], b"")?;
//! assert_eq!(denied.status, 401);
//! assert_eq!(stripe.requests().len(), 3);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::http::find_header;
use crate::webhook_target::Reply;

/// What a registered key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A secret key: everything.
    Secret,
    /// A restricted key with the Events read permission only: the v1 event endpoints (403 on
    /// `/v1/accounts`; 401 on v2, which takes secret keys only: the fake's assumption).
    EventsRead,
    /// A restricted key without the Events read permission: 403 everywhere (401 on v2).
    NoEvents,
}

/// Stripe's answers, as scripted [`Reply`]s.
impl Reply {
    /// A 429 as Stripe's rate limiter answers, with `Stripe-Should-Retry: true`.
    pub fn rate_limited() -> Reply {
        Reply::error(
            429,
            "rate_limit",
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        )
        .header("Stripe-Should-Retry", "true")
    }

    /// A status with Stripe's error body.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: json!({"error": {"code": code, "message": message, "type": if status >= 500 { "api_error" } else { "invalid_request_error" }}})
                .to_string(),
        }
    }
}

/// A request the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names (lowercased) and values.
    pub headers: Vec<(String, String)>,
    /// The status it was answered with.
    pub status: u16,
}

impl RecordedRequest {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The first query value of `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
struct StoredEvent {
    id: String,
    thin: bool,
    account: Option<String>,
    created_millis: i64,
    event_type: String,
    body: String,
}

#[derive(Clone, Debug)]
struct Fault {
    path: String,
    /// Answers the request to `path` that finds this many earlier ones (1-based).
    number: usize,
    reply: Reply,
}

/// A v2 list's filters, as a page token carries them.
#[derive(Clone, Debug)]
struct V2Page {
    account: Option<String>,
    filter: Filter,
    limit: usize,
    offset: usize,
}

#[derive(Clone, Debug, Default)]
struct Filter {
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
    types: Vec<String>,
}

impl Filter {
    fn matches(&self, e: &StoredEvent) -> bool {
        let t = e.created_millis;
        self.gt.is_none_or(|b| t > b)
            && self.gte.is_none_or(|b| t >= b)
            && self.lt.is_none_or(|b| t < b)
            && self.lte.is_none_or(|b| t <= b)
            && (self.types.is_empty() || self.types.contains(&e.event_type))
    }
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Access>,
    accounts: Vec<String>,
    events: Vec<StoredEvent>,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    pages: HashMap<String, V2Page>,
    next_id: u64,
}

/// The fake API on `127.0.0.1`, serving until the test process ends.
pub struct FakeStripe {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeStripe {
    /// Starts it on a free loopback port (its own thread and runtime).
    ///
    /// # Panics
    /// If no loopback port can be bound or the runtime cannot start.
    pub fn start() -> FakeStripe {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("non-blocking");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let state = Arc::clone(&state);
                            async move {
                                Ok::<_, std::convert::Infallible>(answer(&state, &request))
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        FakeStripe { addr, state }
    }

    /// `http://127.0.0.1:<port>`: the API base to give the client (`STRIPE_API_BASE`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers an API key.
    pub fn key(&self, key: &str, access: Access) {
        self.state().keys.insert(key.to_owned(), access);
    }

    /// Registers a connected account of the platform.
    pub fn connected_account(&self, id: &str) {
        self.state().accounts.push(id.to_owned());
    }

    /// Registers an event of `account` (`None`: the platform's own) with this exact body: a
    /// thin event if its `object` is `v2.core.event`, else a snapshot event. Its id, type and
    /// `created` (Unix seconds, or RFC 3339 for a thin event) are read from the body.
    ///
    /// # Panics
    /// If the body is not JSON or lacks them.
    pub fn event(&self, body: &str, account: Option<&str>) {
        let v: Value = serde_json::from_str(body).expect("an event body is JSON");
        let thin = v["object"] == "v2.core.event";
        let created_millis = if thin {
            parse_rfc3339_millis(v["created"].as_str().expect("a thin event's created"))
                .expect("an RFC 3339 created")
        } else {
            v["created"].as_i64().expect("a snapshot event's created") * 1000
        };
        self.state().events.push(StoredEvent {
            id: v["id"].as_str().expect("id").to_owned(),
            thin,
            account: account.map(str::to_owned),
            created_millis,
            event_type: v["type"].as_str().expect("type").to_owned(),
            body: body.to_owned(),
        });
    }

    /// Answers the `nth` next request (1 for the very next) to exactly `path` (without the
    /// query) with `reply` instead, once it has passed authentication.
    pub fn fail(&self, path: &str, nth: usize, reply: Reply) {
        let mut state = self.state();
        let earlier = state.requests.iter().filter(|r| r.path == path).count();
        state.faults.push(Fault {
            path: path.to_owned(),
            number: earlier + nth,
            reply,
        });
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(state: &Mutex<State>, request: &Request<Incoming>) -> Answer {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let path = request.uri().path().to_owned();
    let query = parse_query(request.uri().query().unwrap_or(""));
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| find_header(&headers, name).map(str::to_owned);
    state.next_id += 1;
    let request_id = format!("req_fake{:06}", state.next_id);
    let reply = route(
        &mut state,
        request.method().as_str(),
        &path,
        &query,
        &header,
    );
    state.requests.push(RecordedRequest {
        method: request.method().to_string(),
        path,
        query,
        headers,
        status: reply.status,
    });
    let mut response = Response::builder()
        .status(reply.status)
        .header("Content-Type", "application/json")
        .header("Request-Id", request_id);
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn ok(body: String) -> Reply {
    Reply {
        body,
        ..Reply::ok()
    }
}

fn invalid(message: &str) -> Reply {
    Reply::error(400, "parameter_invalid", message)
}

/// A key as Stripe shows it in errors: its kind, `****` and its last four characters.
fn redacted(key: &str) -> String {
    let kind = key.splitn(3, '_').take(2).collect::<Vec<_>>().join("_");
    let tail = &key[key.len().saturating_sub(4)..];
    format!("{kind}_****{tail}")
}

fn route(
    state: &mut State,
    method: &str,
    path: &str,
    query: &[(String, String)],
    header: &dyn Fn(&str) -> Option<String>,
) -> Reply {
    let v2 = path.starts_with("/v2/");
    // Authentication and permissions.
    let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
    let Some(key) = bearer else {
        return Reply::error(
            401,
            "api_key_missing",
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        );
    };
    let Some(&access) = state.keys.get(&key) else {
        return Reply::error(
            401,
            "api_key_invalid",
            &format!("Invalid API Key provided: {}", redacted(&key)),
        );
    };
    let needs = if path.starts_with("/v1/accounts") {
        "rak_connected_account_read"
    } else {
        "rak_event_read"
    };
    match access {
        Access::Secret => {}
        _ if v2 => {
            return Reply::error(
                401,
                "restricted_key_unsupported",
                "The v2 API does not support restricted API keys; use a secret key.",
            );
        }
        Access::EventsRead if needs == "rak_event_read" => {}
        Access::EventsRead | Access::NoEvents => {
            return Reply::error(
                403,
                "insufficient_permissions",
                &format!(
                    "The provided key '{}' does not have the required permissions for this endpoint on account 'acct_fakeplatform'. Having the '{needs}' permission would allow this request to continue.",
                    redacted(&key)
                ),
            );
        }
    }
    if method != "GET" {
        return Reply::error(405, "method_not_allowed", "the fake serves GET only");
    }
    let account = header(if v2 {
        "stripe-context"
    } else {
        "stripe-account"
    });
    if let Some(account) = &account
        && !state.accounts.contains(account)
    {
        return Reply::error(
            403,
            "account_invalid",
            &format!(
                "The provided key '{}' does not have access to account '{account}' (or that account does not exist). Application access may have been revoked.",
                redacted(&key)
            ),
        );
    }
    if v2 && header("stripe-version").is_none() {
        return Reply::error(
            400,
            "missing_stripe_version",
            "The Stripe-Version header is required for API v2 requests.",
        );
    }
    // Scripted faults.
    let number = state.requests.iter().filter(|r| r.path == path).count() + 1;
    if let Some(fault) = state
        .faults
        .iter()
        .find(|f| f.path == path && f.number == number)
    {
        return fault.reply.clone();
    }
    match path {
        "/v1/events" => list_v1_events(state, query, account.as_deref()),
        "/v1/accounts" => list_accounts(state, query),
        "/v2/core/events" => list_v2_events(state, query, account),
        _ => {
            let (prefix, thin) = if let Some(id) = path.strip_prefix("/v1/events/") {
                (id, false)
            } else if let Some(id) = path.strip_prefix("/v2/core/events/") {
                (id, true)
            } else {
                return Reply::error(
                    404,
                    "resource_missing",
                    &format!("Unrecognized request URL (GET: {path})."),
                );
            };
            match state
                .events
                .iter()
                .find(|e| e.id == prefix && e.thin == thin && e.account == account)
            {
                Some(e) => ok(e.body.clone()),
                None => Reply::error(
                    404,
                    "resource_missing",
                    &format!("No such event: '{prefix}'"),
                ),
            }
        }
    }
}

fn limit(query: &[(String, String)], default: usize) -> Result<usize, Reply> {
    match query.iter().find(|(k, _)| k == "limit") {
        None => Ok(default),
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(invalid("Invalid integer: limit must be between 1 and 100")),
        },
    }
}

/// The `created[…]` bounds and types of a query (`types[]`/`types[N]` for v1, `types` for v2),
/// in milliseconds.
fn filter(query: &[(String, String)], v2: bool) -> Result<Filter, Reply> {
    let mut f = Filter::default();
    for (k, v) in query {
        let bound = match k.as_str() {
            "created[gt]" => &mut f.gt,
            "created[gte]" => &mut f.gte,
            "created[lt]" => &mut f.lt,
            "created[lte]" => &mut f.lte,
            "types" if v2 => {
                f.types.push(v.clone());
                continue;
            }
            k if !v2 && k.starts_with("types[") && k.ends_with(']') => {
                f.types.push(v.clone());
                continue;
            }
            _ => continue,
        };
        let millis = if v2 {
            parse_rfc3339_millis(v)
        } else {
            v.parse::<i64>().ok().map(|s| s * 1000)
        };
        *bound = Some(millis.ok_or_else(|| invalid(&format!("Invalid {k}: {v}")))?);
    }
    if f.types.len() > 20 {
        return Err(invalid("types: at most 20 event types"));
    }
    Ok(f)
}

/// Events of a list, newest first (then by id, descending).
fn matching(state: &State, thin: bool, account: Option<&str>, f: &Filter) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = state
        .events
        .iter()
        .filter(|e| e.thin == thin && e.account.as_deref() == account && f.matches(e))
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        b.created_millis
            .cmp(&a.created_millis)
            .then_with(|| b.id.cmp(&a.id))
    });
    out
}

fn bodies(events: &[StoredEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap_or(Value::Null))
        .collect()
}

fn list_v1_events(state: &State, query: &[(String, String)], account: Option<&str>) -> Reply {
    let (limit, f) = match (limit(query, 10), filter(query, false)) {
        (Ok(l), Ok(f)) => (l, f),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let events = matching(state, false, account, &f);
    let start = match query.iter().find(|(k, _)| k == "starting_after") {
        None => 0,
        Some((_, id)) => match events.iter().position(|e| &e.id == id) {
            Some(i) => i + 1,
            None => {
                return invalid(&format!(
                    "starting_after: no such event in this list: '{id}'"
                ));
            }
        },
    };
    let page = &events[start.min(events.len())..(start + limit).min(events.len())];
    ok(json!({
        "object": "list",
        "url": "/v1/events",
        "has_more": start + limit < events.len(),
        "data": bodies(page),
    })
    .to_string())
}

fn list_accounts(state: &State, query: &[(String, String)]) -> Reply {
    let limit = match limit(query, 10) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let start = match query.iter().find(|(k, _)| k == "starting_after") {
        None => 0,
        Some((_, id)) => match state.accounts.iter().position(|a| a == id) {
            Some(i) => i + 1,
            None => return invalid(&format!("starting_after: no such account: '{id}'")),
        },
    };
    let accounts = &state.accounts;
    let page = &accounts[start.min(accounts.len())..(start + limit).min(accounts.len())];
    ok(json!({
        "object": "list",
        "url": "/v1/accounts",
        "has_more": start + limit < accounts.len(),
        "data": page.iter().map(|id| json!({"id": id, "object": "account"})).collect::<Vec<_>>(),
    })
    .to_string())
}

fn list_v2_events(state: &mut State, query: &[(String, String)], account: Option<String>) -> Reply {
    let page = match query.iter().find(|(k, _)| k == "page") {
        Some((_, token)) => match state.pages.get(token) {
            Some(page) if page.account == account => page.clone(),
            _ => return invalid(&format!("page: invalid page token '{token}'")),
        },
        None => match (limit(query, 20), filter(query, true)) {
            (Ok(limit), Ok(filter)) => V2Page {
                account,
                filter,
                limit,
                offset: 0,
            },
            (Err(e), _) | (_, Err(e)) => return e,
        },
    };
    let events = matching(state, true, page.account.as_deref(), &page.filter);
    let end = (page.offset + page.limit).min(events.len());
    let next_page_url = if end < events.len() {
        state.next_id += 1;
        let token = format!("page_fake{:06}", state.next_id);
        state.pages.insert(
            token.clone(),
            V2Page {
                offset: end,
                ..page.clone()
            },
        );
        Value::String(format!("/v2/core/events?page={token}"))
    } else {
        Value::Null
    };
    ok(json!({
        "data": bodies(&events[page.offset.min(end)..end]),
        "next_page_url": next_page_url,
        "previous_page_url": null,
    })
    .to_string())
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match text
                    .get(i + 1..i + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unix milliseconds of an RFC 3339 time, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_queries() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_millis("2026-11-26T22:14:41.123Z"),
            Some(1_795_731_281_123)
        );
        assert_eq!(
            parse_rfc3339_millis("2026-11-26T23:14:41.1+01:00"),
            Some(1_795_731_281_100)
        );
        assert_eq!(parse_rfc3339_millis("2026-11-26"), None);
        assert_eq!(
            parse_query("created%5Bgte%5D=2026-11-26T22%3A14%3A41Z&types=a.b&x"),
            vec![
                ("created[gte]".to_owned(), "2026-11-26T22:14:41Z".to_owned()),
                ("types".to_owned(), "a.b".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(redacted("sk_test_0123456789WXYZ"), "sk_test_****WXYZ");
    }
}
