//! `reconcile` against the testkit's fake Stripe API, over archives written by the REAL server
//! (file sink) with events deliberately withheld: the exact set of missing ids, the exit codes,
//! `--json`, the 30-day clamp, type globs, Connect accounts, keys Stripe rejects, a 429
//! mid-listing, the checkpoint resumed after an outage and after Ctrl-C, and `--archive-missing`
//! followed by a second reconcile that finds nothing missing, with `verify`, `stats` and
//! `replay` on the fetched records.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{cli, describe, fixtures, now, post_signed, stdout, with_created};
use stripe_webhook_envelope::ReceivedAt;
use stripe_webhook_testkit::archive::{read_segment, segment_files};
use stripe_webhook_testkit::fake_stripe::{Access, FakeStripe};
use stripe_webhook_testkit::wait;
use stripe_webhook_testkit::webhook_target::Reply;
use stripe_webhook_testkit::webhook_target::WebhookTarget;

const SECRET: &str = "whsec_reconcile_archive";
const TARGET: &str = "whsec_reconcile_target";
const KEY: &str = "sk_test_51Reconcile0123456789abcdefghWXYZ";
const RESTRICTED: &str = "rk_test_51Reconcile0123456789abcdefghRSTU";
const NO_EVENTS: &str = "rk_test_51Reconcile0123456789abcdefghNOPE";
const ACCT_A: &str = "acct_1ReconcileAAAAAAAA";
const ACCT_B: &str = "acct_1ReconcileBBBBBBBB";

/// One event of the scenario.
#[derive(Clone, Debug)]
struct Event {
    id: String,
    event_type: String,
    thin: bool,
    account: Option<&'static str>,
    body: String,
    /// Posted to the server (else withheld).
    delivered: bool,
    /// Created inside the window.
    in_window: bool,
}

/// A fake Stripe holding every event, an archive written by the real server holding the
/// delivered ones, and the window.
struct Scenario {
    stripe: FakeStripe,
    dir: tempfile::TempDir,
    events: Vec<Event>,
    since: i64,
    until: i64,
}

fn rfc3339(millis: i64) -> String {
    ReceivedAt::from_unix_millis(millis).rfc3339_millis()
}

impl Scenario {
    /// 130 snapshot events of the platform (two v1 pages), 25 thin events (two v2 pages), and
    /// Connect events of two accounts; some withheld, some created outside the window.
    fn build() -> Scenario {
        let fixtures = fixtures();
        let snapshot: Vec<&(String, String)> = fixtures
            .iter()
            .filter(|(t, b)| !t.starts_with("v1.") && !b.contains("\"account\": \"acct_"))
            .collect();
        let (_, thin_body) = fixtures
            .iter()
            .find(|(t, _)| t.starts_with("v1."))
            .expect("a thin fixture");
        let (_, connect_body) = fixtures
            .iter()
            .find(|(_, b)| b.contains("\"account\": \"acct_"))
            .expect("a Connect fixture");
        let now_ms = now() * 1000;
        let until = now_ms - 5 * 60 * 1000;
        let since = until - 3 * 3600 * 1000;
        let mut events = Vec::new();
        let mut add = |id: String,
                       ty: &str,
                       thin: bool,
                       account: Option<&'static str>,
                       body: String,
                       delivered: bool,
                       in_window: bool| {
            events.push(Event {
                id,
                event_type: ty.to_owned(),
                thin,
                account,
                body,
                delivered,
                in_window,
            });
        };
        for i in 0..130usize {
            let (ty, fixture) = snapshot[i % snapshot.len()];
            let id = format!("evt_1Rec{i:04}snapshot");
            // Spread over the window: the first at `since` exactly, the last a second before
            // `until` (archived after `until`: still archived).
            let created = match i {
                0 => since / 1000,
                129 => until / 1000 - 1,
                _ => since / 1000 + 60 * i as i64,
            };
            let body = with_created(
                &common::event_body(fixture, &id, false),
                &created.to_string(),
            );
            let delivered = !matches!(i, 0 | 17 | 64 | 101 | 128);
            add(id, ty, false, None, body, delivered, true);
        }
        // Withheld, but outside the window: never reported.
        for (i, created) in [
            (0, since / 1000 - 1),
            (1, until / 1000),
            (2, until / 1000 + 60),
        ] {
            let (ty, fixture) = snapshot[i];
            let id = format!("evt_1RecOutside{i}");
            let body = with_created(
                &common::event_body(fixture, &id, false),
                &created.to_string(),
            );
            add(id, ty, false, None, body, false, false);
        }
        for i in 0..25usize {
            let id = format!("evt_test_65RecThin{i:04}");
            let created = match i {
                24 => until - 1,
                _ => since + 1000 * 60 * i as i64 + 123,
            };
            let body = with_created(
                &common::event_body(thin_body, &id, false),
                &format!("\"{}\"", rfc3339(created)),
            );
            add(
                id,
                "v1.billing.meter.error_report_triggered",
                true,
                None,
                body,
                !matches!(i, 3 | 24),
                true,
            );
        }
        let thin_outside = "evt_test_65RecThinOutside".to_owned();
        let body = with_created(
            &common::event_body(thin_body, &thin_outside, false),
            &format!("\"{}\"", rfc3339(until)),
        );
        add(
            thin_outside,
            "v1.billing.meter.error_report_triggered",
            true,
            None,
            body,
            false,
            false,
        );
        for (account, n, withheld) in [(ACCT_A, 3, 1), (ACCT_B, 2, 0)] {
            for i in 0..n {
                let id = format!("evt_1RecConnect{}{i}", &account[account.len() - 1..]);
                let body = with_created(
                    &common::event_body(connect_body, &id, false),
                    &(since / 1000 + 600 + i as i64).to_string(),
                )
                .replacen(
                    "\"account\": \"acct_1PxQ2aRs5TuVwXyZ\"",
                    &format!("\"account\": \"{account}\""),
                    1,
                );
                add(
                    id,
                    "charge.succeeded",
                    false,
                    Some(account),
                    body,
                    i != withheld,
                    true,
                );
            }
        }

        let stripe = FakeStripe::start();
        stripe.key(KEY, Access::Secret);
        stripe.key(RESTRICTED, Access::EventsRead);
        stripe.key(NO_EVENTS, Access::NoEvents);
        stripe.connected_account(ACCT_A);
        stripe.connected_account(ACCT_B);
        for e in &events {
            stripe.event(&e.body, e.account);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let server = common::file_server(dir.path(), SECRET, &[]);
        for e in events.iter().filter(|e| e.delivered) {
            let r = post_signed(&server, SECRET, e.body.as_bytes());
            assert_eq!(r.status, 200, "{}: {}", e.id, r.text());
        }
        let (status, log) = server.terminate();
        assert!(status.success(), "server: {status}\n{log}");
        Scenario {
            stripe,
            dir,
            events,
            since,
            until,
        }
    }

    fn archive(&self) -> &Path {
        self.dir.path()
    }

    /// The ids reconcile must report for these accounts (`None`: the platform) and kinds.
    fn expected(&self, account: Option<&str>, thin: Option<bool>) -> BTreeSet<String> {
        self.events
            .iter()
            .filter(|e| !e.delivered && e.in_window && e.account == account)
            .filter(|e| thin.is_none_or(|t| e.thin == t))
            .map(|e| e.id.clone())
            .collect()
    }

    fn event(&self, id: &str) -> &Event {
        self.events.iter().find(|e| e.id == id).expect("event")
    }

    /// `reconcile <archive> --since … --until … <extra>` with the fake API and this key.
    fn reconcile(&self, key: &str, extra: &[&str]) -> Output {
        let (since, until) = (rfc3339(self.since), rfc3339(self.until));
        let mut args = vec![
            "reconcile",
            self.archive().to_str().expect("utf-8"),
            "--since",
            &since,
            "--until",
            &until,
            "--retries",
            "3",
        ];
        args.extend_from_slice(extra);
        cli()
            .args(&args)
            .env("STRIPE_API_BASE", self.stripe.url())
            .env("STRIPE_API_KEY", key)
            .output()
            .expect("run reconcile")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ids of the MISSING lines, checking each line's five columns.
fn missing_ids(o: &Output, scenario: &Scenario) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for line in stdout(o).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "{line}\n{}", describe(o));
        assert_eq!(cols[0], "MISSING", "{line}");
        let e = scenario.event(cols[1]);
        assert_eq!(cols[2], e.event_type, "{line}");
        let v: serde_json::Value = serde_json::from_str(&e.body).expect("json");
        if e.thin {
            assert_eq!(cols[3], v["created"].as_str().expect("created"), "{line}");
            assert_eq!(cols[4], "-", "thin events have no pending_webhooks: {line}");
        } else {
            let created = v["created"].as_i64().expect("created");
            assert_eq!(
                cols[3],
                rfc3339(created * 1000).replace(".000Z", "Z"),
                "{line}"
            );
            assert_eq!(cols[4], v["pending_webhooks"].to_string(), "{line}");
        }
        assert!(ids.insert(cols[1].to_owned()), "reported twice: {line}");
    }
    ids
}

/// The number after `label: ` in the stderr summary.
fn summary_count(o: &Output, label: &str) -> u64 {
    let text = stderr(o);
    let prefix = format!("{label}: ");
    text.split("  ")
        .flat_map(|part| part.lines())
        .find_map(|l| l.trim_start().strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{}", describe(o)))
}

/// Every byte of every segment under `dir`, decompressed.
fn archive_text(dir: &Path) -> String {
    segment_files(dir)
        .iter()
        .map(|p| String::from_utf8_lossy(&read_segment(p)).into_owned())
        .collect()
}

#[test]
fn reports_exactly_the_withheld_events_then_fills_the_gap() {
    let s = Scenario::build();
    // A 429 in the middle of the snapshot listing, and a 503 (without Stripe-Should-Retry) on
    // the first thin page: both retried after the backoff.
    s.stripe.fail("/v1/events", 2, Reply::rate_limited());
    s.stripe.fail(
        "/v2/core/events",
        1,
        Reply::error(503, "api_error", "Service unavailable"),
    );
    let o = s.reconcile(KEY, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let expected = s.expected(None, None);
    assert_eq!(
        expected.len(),
        7,
        "5 snapshot and 2 thin events withheld in the window"
    );
    assert_eq!(missing_ids(&o, &s), expected, "{}", describe(&o));
    assert_eq!(summary_count(&o, "missing"), 7);
    assert_eq!(summary_count(&o, "listed"), 130 + 25);
    assert_eq!(summary_count(&o, "archived"), 130 + 25 - 7);

    // What was asked of the API.
    let requests = s.stripe.requests();
    let v1: Vec<_> = requests.iter().filter(|r| r.path == "/v1/events").collect();
    assert_eq!(
        v1.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 429, 200],
        "two pages of 100, the second retried after the 429"
    );
    assert_eq!(v1[1].query, v1[2].query, "the same page asked again");
    assert_eq!(v1[0].param("limit"), Some("100"));
    assert_eq!(
        v1[0].param("created[gte]"),
        Some((s.since / 1000).to_string().as_str())
    );
    assert_eq!(
        v1[0].param("created[lte]"),
        Some((s.until / 1000 - 1).to_string().as_str())
    );
    assert_eq!(v1[0].param("starting_after"), None);
    assert!(
        v1[2]
            .param("starting_after")
            .is_some_and(|id| id.starts_with("evt_1Rec"))
    );
    let v2: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/v2/core/events")
        .collect();
    assert_eq!(
        v2.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 200, 200],
        "two v2 pages of 20, the first retried after the 503"
    );
    assert_eq!(v2[0].query, v2[1].query);
    assert_eq!(v2[0].param("created[gte]"), Some(rfc3339(s.since).as_str()));
    assert_eq!(
        v2[0].param("created[lte]"),
        Some(rfc3339(s.until - 1).as_str())
    );
    assert!(v2[2].param("page").is_some(), "next_page_url followed");
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(r.header("stripe-account"), None);
        assert_eq!(
            r.header("stripe-version").is_some(),
            r.path.starts_with("/v2/"),
            "Stripe-Version on v2 only: {r:?}"
        );
    }
    assert!(!stderr(&o).contains(KEY) && !stdout(&o).contains(KEY));

    // --json: one object per missing event, then the summary.
    let o = s.reconcile(KEY, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let objects: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let (summary, missing) = objects.split_last().expect("a summary");
    let ids: BTreeSet<String> = missing
        .iter()
        .map(|m| {
            assert_eq!(m["report"], "missing");
            assert_eq!(m["archived_now"], serde_json::Value::Null);
            let e = s.event(m["id"].as_str().expect("id"));
            assert_eq!(m["kind"], if e.thin { "thin" } else { "snapshot" });
            assert_eq!(m["pending_webhooks"].is_null(), e.thin);
            m["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(summary["report"], "summary");
    assert_eq!(
        (
            &summary["listed"],
            &summary["archived"],
            &summary["missing"]
        ),
        (&155.into(), &148.into(), &7.into())
    );
    assert_eq!(
        summary["by_type"]["v1.billing.meter.error_report_triggered"]["missing"],
        2
    );
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["key"], "sk_test_...WXYZ");

    // --archive-missing into the archive itself: fetched, written, and still reported.
    let o = s.reconcile(
        KEY,
        &["--archive-missing", s.archive().to_str().expect("utf-8")],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "the gap was there: {}",
        describe(&o)
    );
    assert_eq!(missing_ids(&o, &s), expected);
    assert!(
        stderr(&o).contains(&format!(
            "fetched and archived into {}: 7  fetch failed: 0",
            s.archive().display()
        )),
        "{}",
        describe(&o)
    );
    let retrieved: BTreeSet<String> = s
        .stripe
        .requests()
        .iter()
        .filter_map(|r| {
            r.path
                .strip_prefix("/v1/events/")
                .or_else(|| r.path.strip_prefix("/v2/core/events/"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(retrieved, expected, "each missing event fetched by id");

    // The second reconcile finds nothing missing.
    let o = s.reconcile(KEY, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(summary_count(&o, "missing"), 0);
    assert_eq!(summary_count(&o, "archived"), 155);

    // The fetched records: v2, the body Stripe's API returned, provenance, no signature, and
    // never the key.
    let text = archive_text(s.archive());
    assert!(!text.contains(KEY), "the key is in the archive");
    let fetched: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|r| r["v"] == 2)
        .collect();
    assert_eq!(fetched.len(), 7);
    for r in &fetched {
        let e = s.event(r["id"].as_str().expect("id"));
        assert_eq!(r["raw"].as_str(), Some(e.body.as_str()));
        assert!(r.get("signature").is_none());
        let f = &r["fetched"];
        assert_eq!(f["api"], s.stripe.url());
        assert_eq!(f["key"], "sk_test_...WXYZ");
        let path = if e.thin {
            "/v2/core/events/"
        } else {
            "/v1/events/"
        };
        assert_eq!(f["request"], format!("GET {path}{}", e.id));
        assert!(
            f["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("req_fake"))
        );
        assert_eq!(f["account"], serde_json::Value::Null);
        assert_eq!(f["stripe_version"].is_string(), e.thin);
    }

    // verify: present, not signed; every webhook record still verified.
    let secret_arg = format!("--secret={SECRET}");
    let archive = s.archive().to_str().expect("utf-8");
    let o = cli()
        .args(["verify", archive, &secret_arg])
        .output()
        .expect("verify");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let out = stdout(&o);
    let fetched_lines: BTreeSet<String> = out
        .lines()
        .filter(|l| l.starts_with("FETCHED\t"))
        .map(|l| l.split('\t').nth(2).expect("id").to_owned())
        .collect();
    assert_eq!(fetched_lines, expected);
    assert!(
        out.contains("fetched (present, not signed by Stripe; fetched from its API): 7"),
        "{out}"
    );
    let delivered = s.events.iter().filter(|e| e.delivered).count();
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("verified: {delivered} "))),
        "{out}"
    );
    assert!(out.contains("failed: 0"), "{out}");

    // stats counts them.
    let o = cli()
        .args(["stats", archive, "--json"])
        .output()
        .expect("stats");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(stats["fetched"], 7);
    assert_eq!(stats["records"], delivered + 7);

    // replay: skipped unless --include-fetched; then sent, re-signed with the target's secret.
    let target = WebhookTarget::start();
    let ids = expected.iter().cloned().collect::<Vec<_>>().join(",");
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            archive,
            "--id",
            &ids,
            "--source-secret",
            SECRET,
            "--secret",
            TARGET,
        ];
        let url = target.url();
        args.extend_from_slice(&["--url", &url]);
        args.extend_from_slice(extra);
        cli().args(&args).output().expect("replay")
    };
    let o = replay(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(stdout(&o).contains("sent (2xx): 0"), "{}", describe(&o));
    assert!(stderr(&o).contains("--include-fetched"), "{}", describe(&o));
    assert!(target.received().is_empty());
    let o = replay(&["--include-fetched"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(stdout(&o).contains("sent (2xx): 7"), "{}", describe(&o));
    let verifier = common::target_verifier(TARGET);
    let received = target.received();
    assert_eq!(received.len(), 7);
    for r in received {
        let body = String::from_utf8(r.body.clone()).expect("utf-8");
        let id = serde_json::from_str::<serde_json::Value>(&body).expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(body, s.event(&id).body, "the exact body fetched");
        verifier
            .verify(&r.body, r.header("stripe-signature"), now())
            .expect("re-signed with the target's secret");
    }
}

#[test]
fn connect_accounts_one_or_all() {
    let s = Scenario::build();
    let o = s.reconcile(KEY, &["--account", ACCT_A]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(missing_ids(&o, &s), s.expected(Some(ACCT_A), None));
    assert_eq!(summary_count(&o, "listed"), 3);
    for r in s.stripe.requests() {
        let (account, context) = (r.header("stripe-account"), r.header("stripe-context"));
        if r.path.starts_with("/v2/") {
            assert_eq!((account, context), (None, Some(ACCT_A)), "{r:?}");
        } else {
            assert_eq!((account, context), (Some(ACCT_A), None), "{r:?}");
        }
    }

    // An event that cannot be fetched (gone from Stripe): reported, counted, exit code 1.
    let withheld_a = s.expected(Some(ACCT_A), None);
    let id_a = withheld_a.iter().next().expect("one withheld");
    s.stripe.fail(
        &format!("/v1/events/{id_a}"),
        1,
        Reply::error(404, "resource_missing", &format!("No such event: '{id_a}'")),
    );
    let unfilled = tempfile::tempdir().expect("tempdir");
    let o = s.reconcile(
        KEY,
        &[
            "--account",
            ACCT_A,
            "--archive-missing",
            unfilled.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        stderr(&o).contains(&format!(
            "FETCH FAILED\t{id_a}\tStripe refused GET /v1/events/{id_a} (404): No such event"
        )),
        "{}",
        describe(&o)
    );
    assert!(stderr(&o).contains("fetch failed: 1"), "{}", describe(&o));
    assert!(archive_text(unfilled.path()).is_empty());

    // Every connected account, each in turn, and the gap filled for the right account.
    let fill = tempfile::tempdir().expect("tempdir");
    let o = s.reconcile(
        KEY,
        &[
            "--all-accounts",
            "--archive-missing",
            fill.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let expected: BTreeSet<String> = s
        .expected(Some(ACCT_A), None)
        .into_iter()
        .chain(s.expected(Some(ACCT_B), None))
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(missing_ids(&o, &s), expected);
    assert!(s.stripe.requests().iter().any(|r| r.path == "/v1/accounts"));
    let fetched: Vec<serde_json::Value> = archive_text(fill.path())
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(fetched.len(), 2);
    for r in &fetched {
        let e = s.event(r["id"].as_str().expect("id"));
        assert_eq!(r["fetched"]["account"].as_str(), e.account);
        assert_eq!(r["account"].as_str(), e.account, "the event's own account");
    }
    // The platform's own events are another reconcile (its own endpoint).
    assert!(
        missing_ids(&o, &s)
            .iter()
            .all(|id| s.event(id).account.is_some())
    );

    // An account the platform does not have: Stripe's refusal, a configuration error.
    let o = s.reconcile(KEY, &["--account", "acct_1NotConnected0000"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        stderr(&o).contains("does not have access to account 'acct_1NotConnected0000'"),
        "{}",
        describe(&o)
    );
    let o = s.reconcile(KEY, &["--account", "cus_123"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[test]
fn keys_stripe_rejects_are_configuration_errors() {
    let s = Scenario::build();
    let unknown = "sk_test_51Unknown0123456789abcdefgh1234";
    let o = s.reconcile(unknown, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = stderr(&o);
    assert!(
        err.contains("(401): Invalid API Key provided: sk_test_****1234"),
        "{err}"
    );
    assert!(!err.contains(unknown), "{err}");
    assert_eq!(stdout(&o), "", "nothing reported");

    // A restricted key with Events read: the v1 list works, the v2 API refuses it.
    let o = s.reconcile(RESTRICTED, &["--kind", "snapshot"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(missing_ids(&o, &s), s.expected(None, Some(false)));
    let o = s.reconcile(RESTRICTED, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("--kind snapshot"), "{}", describe(&o));
    let o = s.reconcile(RESTRICTED, &["--all-accounts", "--kind", "snapshot"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        stderr(&o).contains("(403)") && stderr(&o).contains("rak_connected_account_read"),
        "{}",
        describe(&o)
    );
    // A restricted key without Events read.
    let o = s.reconcile(NO_EVENTS, &["--kind", "snapshot"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("rak_event_read"), "{}", describe(&o));

    // No key, a publishable key, a key on the command line, a key file.
    let o = cli()
        .args(["reconcile", s.archive().to_str().expect("utf-8")])
        .env("STRIPE_API_BASE", s.stripe.url())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("STRIPE_API_KEY"), "{}", describe(&o));
    let o = s.reconcile("pk_test_51abcdefghijklmnopqrstuvwxyz", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("publishable"), "{}", describe(&o));
    let o = s.reconcile("", &["--api-key", KEY]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "no --api-key flag: {}",
        describe(&o)
    );
    let key_file = s.archive().join("stripe.key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write");
    let o = s.reconcile(
        unknown,
        &[
            "--kind",
            "thin",
            "--api-key-file",
            key_file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "the file wins over the environment: {}",
        describe(&o)
    );
    assert_eq!(missing_ids(&o, &s), s.expected(None, Some(true)));
}

#[test]
fn windows_types_and_kinds() {
    let s = Scenario::build();
    // A window older than Stripe's 30 days is clamped, with a warning.
    let forty_days_ago = rfc3339(now() * 1000 - 40 * 24 * 3600 * 1000);
    let o = cli()
        .args([
            "reconcile",
            s.archive().to_str().expect("utf-8"),
            "--since",
            &forty_days_ago,
            "--kind",
            "snapshot",
        ])
        .env("STRIPE_API_BASE", s.stripe.url())
        .env("STRIPE_API_KEY", KEY)
        .output()
        .expect("run");
    assert!(stderr(&o).contains("clamped"), "{}", describe(&o));
    let first = s
        .stripe
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/events")
        .expect("a v1 list");
    let gte: i64 = first
        .param("created[gte]")
        .expect("gte")
        .parse()
        .expect("seconds");
    assert!(
        (now() - 30 * 24 * 3600 - gte).abs() < 120,
        "clamped to 30 days: {gte}"
    );
    // Every withheld event up to now is missing, the one created at `until` and after included.
    let ids = missing_ids(&o, &s);
    assert!(
        ids.contains("evt_1RecOutside1") && ids.contains("evt_1RecOutside2"),
        "{ids:?}"
    );
    assert!(ids.contains("evt_1RecOutside0"), "{ids:?}");

    // A glob: matched locally, no type filter sent.
    let before = s.stripe.requests().len();
    let o = s.reconcile(KEY, &["--type", "invoice.*,customer.*"]);
    let globbed: BTreeSet<String> = s
        .expected(None, None)
        .into_iter()
        .filter(|id| {
            let t = &s.event(id).event_type;
            t.starts_with("invoice.") || t.starts_with("customer.")
        })
        .collect();
    assert_eq!(missing_ids(&o, &s), globbed, "{}", describe(&o));
    assert_eq!(
        o.status.code(),
        Some(if globbed.is_empty() { 0 } else { 1 })
    );
    let requests = s.stripe.requests();
    assert!(
        requests[before..]
            .iter()
            .filter(|r| r.path == "/v1/events")
            .all(|r| r.query.iter().all(|(k, _)| !k.starts_with("types")))
    );
    // Exact types: sent as types[] to v1; the thin type goes to v2 only.
    let before = requests.len();
    let o = s.reconcile(
        KEY,
        &[
            "--types",
            "charge.succeeded,v1.billing.meter.error_report_triggered",
        ],
    );
    let exact: BTreeSet<String> = s
        .expected(None, None)
        .into_iter()
        .filter(|id| {
            matches!(
                s.event(id).event_type.as_str(),
                "charge.succeeded" | "v1.billing.meter.error_report_triggered"
            )
        })
        .collect();
    assert_eq!(missing_ids(&o, &s), exact, "{}", describe(&o));
    let requests = s.stripe.requests();
    let v1 = requests[before..]
        .iter()
        .find(|r| r.path == "/v1/events")
        .expect("v1");
    assert_eq!(
        v1.query
            .iter()
            .filter(|(k, _)| k == "types[]")
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>(),
        ["charge.succeeded"]
    );
    // Only a thin type: the v1 list is not read at all.
    let before = requests.len();
    let o = s.reconcile(KEY, &["--type", "v1.billing.meter.error_report_triggered"]);
    assert_eq!(
        missing_ids(&o, &s),
        s.expected(None, Some(true)),
        "{}",
        describe(&o)
    );
    assert!(
        s.stripe.requests()[before..]
            .iter()
            .all(|r| r.path != "/v1/events")
    );
    // --kind thin: v2 only.
    let o = s.reconcile(KEY, &["--kind", "thin"]);
    assert_eq!(
        missing_ids(&o, &s),
        s.expected(None, Some(true)),
        "{}",
        describe(&o)
    );
    // An empty window.
    let o = s.reconcile(KEY, &["--until", &rfc3339(s.since)]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[test]
fn the_checkpoint_resumes_after_an_outage_and_after_ctrl_c() {
    let s = Scenario::build();
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoint = dir.path().join("reconcile.ck");
    let ck = checkpoint.to_str().expect("utf-8");
    // The second page of the snapshot list fails for good (a 500 Stripe says not to retry).
    s.stripe.fail(
        "/v1/events",
        2,
        Reply::error(500, "api_error", "An unknown error occurred")
            .header("Stripe-Should-Retry", "false"),
    );
    let o = s.reconcile(KEY, &["--checkpoint", ck]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let first_run = missing_ids(&o, &s);
    let lines = std::fs::read_to_string(&checkpoint).expect("checkpoint");
    assert_eq!(
        lines.lines().count(),
        2,
        "the header and the first page: {lines}"
    );
    assert!(!lines.contains(KEY));
    // The rerun continues after the first page.
    let before = s.stripe.requests().len();
    let o = s.reconcile(KEY, &["--checkpoint", ck]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(stderr(&o).contains("resuming"), "{}", describe(&o));
    let resumed = missing_ids(&o, &s);
    assert!(first_run.is_subset(&resumed));
    assert_eq!(resumed, s.expected(None, None), "{}", describe(&o));
    let requests = s.stripe.requests();
    let v1: Vec<_> = requests[before..]
        .iter()
        .filter(|r| r.path == "/v1/events")
        .collect();
    assert_eq!(v1.len(), 1, "only the second page: {v1:?}");
    assert!(v1[0].param("starting_after").is_some());
    assert_eq!(summary_count(&o, "listed"), 155);
    // Run again: everything is done, the result is the same.
    let o = s.reconcile(KEY, &["--checkpoint", ck]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(missing_ids(&o, &s), s.expected(None, None));
    // Other arguments with the same checkpoint are refused.
    let o = s.reconcile(KEY, &["--checkpoint", ck, "--type", "invoice.*"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));

    // Ctrl-C while waiting out a long Retry-After, then a resumed run that fills the gap.
    let checkpoint: PathBuf = dir.path().join("interrupted.ck");
    let ck = checkpoint.to_str().expect("utf-8");
    s.stripe.fail(
        "/v2/core/events",
        2,
        Reply::rate_limited().header("Retry-After", "120"),
    );
    let (since, until) = (rfc3339(s.since), rfc3339(s.until));
    let archive = s.archive().to_str().expect("utf-8");
    let mut child = cli()
        .args([
            "reconcile",
            archive,
            "--since",
            &since,
            "--until",
            &until,
            "--checkpoint",
            ck,
        ])
        .args(["--archive-missing", archive])
        .env("STRIPE_API_BASE", s.stripe.url())
        .env("STRIPE_API_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The 429 is answered: the run is in its 120 s wait, or about to read the answer and start
    // it; either way the interrupt ends it there (a cancelled wait returns at once).
    wait::until("a 429 was answered", Duration::from_secs(60), || {
        s.stripe
            .requests()
            .iter()
            .any(|r| r.path == "/v2/core/events" && r.status == 429)
    });
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let waited = Instant::now();
    let o = loop {
        if child.try_wait().expect("wait").is_some() {
            break child.wait_with_output().expect("output");
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "Ctrl-C did not stop the wait"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(o.status.code(), Some(130), "{}", describe(&o));
    assert!(stderr(&o).contains("INCOMPLETE"), "{}", describe(&o));
    // The snapshot list and the first thin page were done, their missing events fetched, before
    // the interrupt: all but the oldest thin one.
    let mut before_interrupt = s.expected(None, None);
    assert!(before_interrupt.remove("evt_test_65RecThin0003"));
    assert_eq!(missing_ids(&o, &s), before_interrupt);
    let o = s.reconcile(KEY, &["--checkpoint", ck, "--archive-missing", archive]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(
        missing_ids(&o, &s),
        s.expected(None, None),
        "{}",
        describe(&o)
    );
    let fetched_lines = std::fs::read_to_string(&checkpoint)
        .expect("checkpoint")
        .lines()
        .filter(|l| l.starts_with("{\"fetched\""))
        .count();
    assert_eq!(fetched_lines, 7, "each missing event fetched once");
    let mut retrieved: HashMap<String, usize> = HashMap::new();
    for r in s.stripe.requests() {
        if let Some(id) = r
            .path
            .strip_prefix("/v1/events/")
            .or_else(|| r.path.strip_prefix("/v2/core/events/"))
        {
            *retrieved.entry(id.to_owned()).or_default() += 1;
        }
    }
    assert!(retrieved.values().all(|&n| n == 1), "{retrieved:?}");
    let o = s.reconcile(KEY, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
}
