"""The Athena DDL and example queries, run by DuckDB over an archive the REAL server wrote.

The server (debug, conftest's `server_binary`; `SINK=file`) receives every fixture in
fixtures/events/ signed with the pinned `stripe` SDK, some of them two or three times as Stripe
retries; SIGTERM seals its segments to `.ndjson.gz`. DuckDB then gets a view with the table's
qualified name (`stripe_webhooks.events`), whose columns come from create-table.sql, over
`read_json(<archive>/webhooks/**/*.ndjson.gz, hive_partitioning = true)` (the sealed segments, the
complete and stable view docs/archive-layout.md §2 gives readers), plus macros for the two
Presto functions DuckDB lacks. The query files run verbatim; expected values are computed here in
Python from the fixture files alone.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cost_model
from athena_ddl import duckdb_type, parse_table_ddl
from conftest import Server
from layout_spec import (
    ARCHIVE_PREFIX,
    ATHENA_QUERIES_DIR,
    ATHENA_TABLE,
    ATHENA_TABLE_DDL,
    FIXTURE_EVENTS_DIR,
    INFRA,
    PARTITION_KEYS,
)

SECRET = "whsec_infra_duckdb_test_0123456789abcdef"
FAILED_PAYMENT_TYPES = ("payment_intent.payment_failed", "charge.failed")
QUERIES = {
    "counts-by-type-per-day.sql",
    "event-history.sql",
    "failed-payments-last-week.sql",
    "revenue-by-currency.sql",
    "oversize-pointers.sql",
}

# Presto/Athena functions the queries use that DuckDB does not have, as thin macros. Athena's
# json_extract_scalar returns NULL for objects and arrays; the queries only extract scalars.
# from_unixtime gives UTC wall-clock time (Athena's session zone), as a plain TIMESTAMP (a
# TIMESTAMPTZ would need pytz in the Python client).
DUCKDB_PRESTO_SHIMS = (
    "CREATE MACRO json_extract_scalar(json, path) AS json_extract_string(json, path)",
    "CREATE MACRO from_unixtime(seconds) AS CAST(to_timestamp(seconds) AS TIMESTAMP)",
)


# ---------------------------------------------------------------------------------------------
# The archive, written by the real server
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    name: str
    body: bytes
    event: dict[str, Any]

    @property
    def id(self) -> str:
        return self.event["id"]

    @property
    def type(self) -> str:
        return self.event["type"]


@dataclass(frozen=True)
class Delivery:
    fixture: Fixture
    signed_at: int
    header: str


@dataclass(frozen=True)
class Archive:
    root: Path
    fixtures: list[Fixture]
    deliveries: list[Delivery]
    receipt_days: set[tuple[str, str, str]]


def load_fixtures() -> list[Fixture]:
    files = sorted(FIXTURE_EVENTS_DIR.glob("*.json"))
    if len(files) < 5:
        pytest.fail(f"expected the bundled Stripe event fixtures in {FIXTURE_EVENTS_DIR}, found {len(files)}")
    fixtures = [Fixture(p.name, p.read_bytes(), json.loads(p.read_bytes())) for p in files]
    ids = [f.id for f in fixtures]
    assert len(set(ids)) == len(ids), "fixture event ids must be distinct"
    return fixtures


def copies(index: int) -> int:
    """How many times fixture `index` is delivered: once, twice (one retry) or three times."""
    return 1 + index % 3


def _utc_day(t: dt.datetime) -> tuple[str, str, str]:
    return (f"{t.year:04d}", f"{t.month:02d}", f"{t.day:02d}")


def _post(base: str, body: bytes, header: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{base}/webhook/stripe",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def write_archive(binary: Path, work: Path, fixtures: list[Fixture], *, rounds: int, include_raw: bool) -> Archive:
    """Runs the real server with the file sink, delivers the fixtures, shuts it down gracefully."""
    import stripe

    archive_dir = work / "archive"
    env = {
        "HOME": os.environ.get("HOME", str(work)),
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "SINK": "file",
        "ARCHIVE_DIR": str(archive_dir),
        "ENVELOPE_INCLUDE_RAW": "true" if include_raw else "false",
    }
    with Server(binary, work, env) as server:
        days = {_utc_day(dt.datetime.now(dt.UTC))}
        deliveries: list[Delivery] = []
        now = int(time.time())
        # First deliveries, then Stripe's retries of some of them, each signed anew (older t= per
        # round so every delivery of one event has a distinct signature, all within tolerance).
        for round_ in range(rounds):
            for i, fx in enumerate(fixtures):
                if round_ >= copies(i):
                    continue
                signed_at = now - round_
                header = stripe.WebhookSignature.generate_signature_header(
                    fx.body.decode("utf-8"), SECRET, timestamp=signed_at
                )
                status, answer = _post(server.base, fx.body, header)
                assert status == 200, f"{fx.name} delivery {round_ + 1}: HTTP {status} {answer[:300]!r}"
                assert json.loads(answer) == {"received": True}, answer
                deliveries.append(Delivery(fx, signed_at, header))
        days.add(_utc_day(dt.datetime.now(dt.UTC)))
    return Archive(archive_dir, fixtures, deliveries, days)


@pytest.fixture(scope="session")
def archive(server_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """Every fixture delivered once, twice or three times, with raw and signature (the default)."""
    return write_archive(
        server_binary, tmp_path_factory.mktemp("archive"), load_fixtures(), rounds=3, include_raw=True
    )


@pytest.fixture(scope="session")
def archive_raw_off(server_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """Every fixture delivered once, with ENVELOPE_INCLUDE_RAW=false (for the record sizes)."""
    return write_archive(
        server_binary, tmp_path_factory.mktemp("archive-raw-off"), load_fixtures(), rounds=1, include_raw=False
    )


def archived_lines(archive: Archive) -> dict[str, bytes]:
    """The first archived line of each fixture event, by fixture file name."""
    names = {fx.id: fx.name for fx in archive.fixtures}
    lines: dict[str, bytes] = {}
    for path in sorted((archive.root / ARCHIVE_PREFIX).rglob("*.ndjson.gz")):
        for line in gzip.decompress(path.read_bytes()).splitlines(keepends=True):
            lines.setdefault(names[json.loads(line)["id"]], line)
    assert set(lines) == set(names.values())
    return lines


@pytest.fixture(scope="session")
def duck(archive: Archive) -> Any:
    """A DuckDB connection with `stripe_webhooks.events` over the archive, typed by the Athena DDL."""
    import duckdb

    ddl = parse_table_ddl(ATHENA_TABLE_DDL.read_text())
    schema, table = ATHENA_TABLE.split(".")
    columns = ", ".join(f"'{c.name}': '{duckdb_type(c.type)}'" for c in ddl.columns)
    hive_types = ", ".join(f"'{c.name}': '{duckdb_type(c.type)}'" for c in ddl.partitions)
    glob = f"{archive.root}/{ARCHIVE_PREFIX}/**/*.ndjson.gz"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # Athena's current_date is UTC
    con.execute(f"CREATE SCHEMA {schema}")
    con.execute(
        f"CREATE VIEW {schema}.{table} AS SELECT * FROM read_json('{glob}', format = 'newline_delimited', "
        f"hive_partitioning = true, columns = {{{columns}}}, hive_types = {{{hive_types}}})"
    )
    for shim in DUCKDB_PRESTO_SHIMS:
        con.execute(shim)
    yield con
    con.close()


def run_query(con: Any, name: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Runs infra/athena/queries/<name> exactly as written; rows as dicts."""
    sql = (ATHENA_QUERIES_DIR / name).read_text()
    assert ATHENA_TABLE in sql, f"{name} must read {ATHENA_TABLE}"
    cursor = con.execute(sql, params) if params is not None else con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# ---------------------------------------------------------------------------------------------
# Expected values, computed from the fixture files alone
# ---------------------------------------------------------------------------------------------


def first_delivery_per_id(archive: Archive) -> dict[str, Fixture]:
    return {d.fixture.id: d.fixture for d in archive.deliveries}


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_every_query_file_is_exercised() -> None:
    assert {p.name for p in ATHENA_QUERIES_DIR.glob("*.sql")} == QUERIES


def test_the_archive_follows_the_layout(archive: Archive) -> None:
    webhooks = archive.root / ARCHIVE_PREFIX
    files = sorted(p.relative_to(archive.root).as_posix() for p in webhooks.rglob("*") if p.is_file())
    assert files, f"the server wrote no archive files under {webhooks}"
    pattern = re.compile(rf"{ARCHIVE_PREFIX}/year=(\d{{4}})/month=(\d{{2}})/day=(\d{{2}})/[^/]+\.ndjson\.gz")
    for f in files:
        m = pattern.fullmatch(f)
        assert m, f"{f} is not a sealed segment under the layout"
        assert m.groups() in archive.receipt_days, f"{f}: not a receipt day of this run"


def test_every_delivery_is_one_row_typed_by_the_ddl(duck: Any, archive: Archive) -> None:
    rows = duck.execute(f"SELECT * FROM {ATHENA_TABLE}").fetchall()
    names = [d[0] for d in duck.description]
    rows = [dict(zip(names, r)) for r in rows]
    assert len(rows) == len(archive.deliveries)
    assert Counter(r["id"] for r in rows) == Counter(d.fixture.id for d in archive.deliveries)
    assert {r["signature"] for r in rows} == {d.header for d in archive.deliveries}
    by_id = {fx.id: fx for fx in archive.fixtures}
    for r in rows:
        fx = by_id[r["id"]]
        event = fx.event
        assert r["v"] == 1
        assert r["type"] == fx.type and r["object"] == event["object"]
        assert r["raw"] == fx.body.decode("utf-8"), f"{fx.name}: raw must be the exact verified body"
        # `created` is a string column: the integer's digits, or the thin event's ISO string.
        assert r["created"] == str(event["created"]), fx.name
        assert r["livemode"] is event["livemode"]
        assert r["api_version"] == event.get("api_version")
        assert r["account"] == (event.get("account") or event.get("context"))
        # `data` is JSON text (json_extract_scalar works on it), null for thin events.
        assert (json.loads(r["data"]) if r["data"] is not None else None) == event.get("data"), fx.name
        assert r["oversize"] is None
        assert (r["year"], r["month"], r["day"]) in archive.receipt_days
        received = dt.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        assert _utc_day(received) == (r["year"], r["month"], r["day"]), "partition = receipt date (UTC)"


def test_counts_by_type_per_day(duck: Any, archive: Archive) -> None:
    rows = run_query(duck, "counts-by-type-per-day.sql")
    events: Counter[str] = Counter()
    deliveries: Counter[str] = Counter()
    for r in rows:
        assert (r["year"], r["month"], r["day"]) in archive.receipt_days
        events[r["type"]] += r["events"]
        deliveries[r["type"]] += r["deliveries"]
    expected_events = Counter(fx.type for fx in archive.fixtures)
    expected_deliveries = Counter(fx.type for i, fx in enumerate(archive.fixtures) for _ in range(copies(i)))
    assert events == expected_events
    assert deliveries == expected_deliveries
    assert sum(deliveries.values()) > sum(events.values()), "the run must include retries"


@pytest.mark.parametrize("times", [1, 2, 3])
def test_event_history(duck: Any, archive: Archive, times: int) -> None:
    index = next(i for i in range(len(archive.fixtures)) if copies(i) == times)
    fx = archive.fixtures[index]
    rows = run_query(duck, "event-history.sql", [fx.id])
    sent = [d for d in archive.deliveries if d.fixture.id == fx.id]
    assert len(rows) == len(sent) == times
    assert [r["delivery"] for r in rows] == list(range(1, times + 1))
    assert {r["deliveries"] for r in rows} == {times}
    assert {r["id"] for r in rows} == {fx.id} and {r["type"] for r in rows} == {fx.type}
    assert sorted(r["signed_at_unix"] for r in rows) == sorted(d.signed_at for d in sent)
    assert all(r["same_body_as_first"] for r in rows)
    received = [r["received_at"] for r in rows]
    assert received == sorted(received)


def test_event_history_of_an_unknown_id_is_empty(duck: Any) -> None:
    assert run_query(duck, "event-history.sql", ["evt_does_not_exist"]) == []


def test_failed_payments_last_week(duck: Any, archive: Archive) -> None:
    rows = run_query(duck, "failed-payments-last-week.sql")
    expected = []
    for fx in first_delivery_per_id(archive).values():
        if fx.type not in FAILED_PAYMENT_TYPES:
            continue
        obj = fx.event["data"]["object"]
        expected.append(
            {
                "event_id": fx.id,
                "type": fx.type,
                "created_at": dt.datetime.fromtimestamp(fx.event["created"], dt.UTC).replace(tzinfo=None),
                "object_id": obj["id"],
                "customer": obj.get("customer"),
                "amount": obj["amount"],
                "currency": obj["currency"].upper(),
                "failure_code": obj.get("failure_code") or (obj.get("last_payment_error") or {}).get("code"),
                "failure_message": obj.get("failure_message") or (obj.get("last_payment_error") or {}).get("message"),
            }
        )
    assert expected, "the fixtures must include a failed payment"
    expected.sort(key=lambda e: (e["created_at"], e["event_id"]))
    expected.sort(key=lambda e: e["created_at"], reverse=True)  # ORDER BY created_at DESC, event_id
    assert rows == expected


def test_revenue_by_currency(duck: Any, archive: Archive) -> None:
    rows = run_query(duck, "revenue-by-currency.sql")
    totals: dict[tuple[bool, str], list[int]] = defaultdict(lambda: [0, 0])
    for fx in first_delivery_per_id(archive).values():
        if fx.type == "charge.succeeded":
            obj = fx.event["data"]["object"]
            key = (fx.event["livemode"], obj["currency"].upper())
            totals[key][0] += 1
            totals[key][1] += obj["amount"]
    expected = [
        {"livemode": livemode, "currency": currency, "charges": n, "amount": amount}
        for (livemode, currency), (n, amount) in sorted(totals.items())
    ]
    assert expected, "the fixtures must include charge.succeeded events"
    # Retries must not inflate revenue: a charge delivered several times still counts once.
    assert any(copies(i) > 1 for i, fx in enumerate(archive.fixtures) if fx.type == "charge.succeeded")
    assert rows == expected


def test_oversize_pointers(duck: Any) -> None:
    """The file sink has no record limit, so no pointers; the query still runs against the DDL's struct."""
    cursor = duck.execute((ATHENA_QUERIES_DIR / "oversize-pointers.sql").read_text())
    assert [d[0] for d in cursor.description] == [
        "id", "type", "received_at", "body_bucket", "body_key", "body_bytes", "body_sha256", "body_uri",
    ]
    assert cursor.fetchall() == []


def test_partition_columns_are_strings_like_athena(duck: Any) -> None:
    types = dict(duck.execute(f"SELECT column_name, column_type FROM (DESCRIBE {ATHENA_TABLE})").fetchall())
    assert all(types[k] == "VARCHAR" for k in PARTITION_KEYS), types


def test_raw_off_records_carry_no_body_or_signature(archive_raw_off: Archive) -> None:
    for name, line in archived_lines(archive_raw_off).items():
        record = json.loads(line)
        assert record.get("raw") is None and record.get("signature") is None, name


def test_cost_table_in_readme_is_current(archive: Archive, archive_raw_off: Archive) -> None:
    """infra/README.md's cost table is what cost_model computes from the real server's records."""
    raw_on = cost_model.Variant("raw on", archived_lines(archive))
    raw_off = cost_model.Variant("raw off", archived_lines(archive_raw_off))
    assert raw_off.mean_bytes < raw_on.mean_bytes
    block = cost_model.render(raw_on, raw_off)
    readme_path = INFRA / "README.md"
    readme = readme_path.read_text()
    begin, end = readme.find(cost_model.BEGIN), readme.find(cost_model.END)
    assert begin >= 0 and end > begin, f"{readme_path} must hold the generated cost table markers"
    current = readme[begin : end + len(cost_model.END)]
    if current != block and os.environ.get("UPDATE_README") == "1":
        readme_path.write_text(readme[:begin] + block + readme[end + len(cost_model.END) :])
        return
    assert current == block, "the README cost table is stale; rerun with UPDATE_README=1:\n" + block
