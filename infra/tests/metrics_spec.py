"""The metric list of crates/stripe-webhook-metrics (`ALL`), read from its Rust source, what the
Lambda's Embedded Metric Format writer adds to it in CloudWatch (bins/stripe-webhook-lambda/src/emf.rs:
the namespace and the `function` dimension, which is not a Prometheus label), and the PromQL the
dashboards and alert rules use, reduced to what can be checked against it.

The Rust `metrics!` block is the one place every metric is named; docs/metrics.md's table is generated
from it. Parsing the source (rather than trusting the table) keeps these checks on the code itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layout_spec import ROOT

METRICS_RS = ROOT / "crates" / "stripe-webhook-metrics" / "src" / "lib.rs"
METRICS_DOC = ROOT / "docs" / "metrics.md"
EMF_RS = ROOT / "bins" / "stripe-webhook-lambda" / "src" / "emf.rs"

# One entry of the `metrics!` block: `KONST = "name", Kind, Unit, ["label", ...],`.
_ENTRY = re.compile(
    r'^\s*[A-Z0-9_]+ = "(stripe_webhook_[a-z0-9_]+)", (Counter|Gauge|Histogram), (\w+), \[([^\]]*)\],', re.M
)
_BUCKETS = re.compile(r"pub const (LATENCY|RECORDS|SIZE|DELIVERY)_BUCKETS: &\[f64\] = &\[([^\]]*)\];", re.S)

# Labels every Prometheus scrape adds (target labels), and the histogram bucket label.
TARGET_LABELS = frozenset({"job", "instance"})
BUCKET_LABEL = "le"
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter, gauge, histogram (the Prometheus `# TYPE` word)
    unit: str  # Count, Seconds, Bytes (metrics::Unit variant)
    labels: frozenset[str]


# Metrics of Prometheus' node_exporter that the rules read (the free space of the filesystem that holds
# the file sink's ARCHIVE_DIR): not the server's, so never in its /metrics. Names and labels as
# node_exporter's filesystem collector exports them.
NODE_EXPORTER_METRICS = {
    name: Metric(name, "gauge", "Bytes", frozenset({"device", "fstype", "mountpoint"}))
    for name in ("node_filesystem_avail_bytes", "node_filesystem_size_bytes")
}


def load_metrics(path: Path = METRICS_RS) -> dict[str, Metric]:
    """Every metric of `ALL`, by name."""
    source = path.read_text()
    block = source[source.index("metrics! {") :]
    found: dict[str, Metric] = {}
    for name, kind, unit, labels in _ENTRY.findall(block):
        assert name not in found, f"{name} is defined twice"
        found[name] = Metric(name, kind.lower(), unit, frozenset(re.findall(r'"([a-z_]+)"', labels)))
    assert len(found) >= 20, f"expected the metric list in {path}, found {len(found)} entries"
    return found


@dataclass(frozen=True)
class Emf:
    """What the Lambda's Embedded Metric Format writer publishes under: its CloudWatch namespace, and
    the dimension naming the function that every document has before the metric's labels."""

    namespace: str
    function_dimension: str

    def dimensions(self, metric: Metric) -> frozenset[str]:
        """The dimension names of each of the metric's CloudWatch series."""
        assert self.function_dimension not in metric.labels, f"{metric.name}: a label named like the function dimension"
        return metric.labels | {self.function_dimension}


def load_emf(path: Path = EMF_RS) -> Emf:
    """The namespace and function dimension, from the constants of emf.rs."""
    source = path.read_text()

    def constant(name: str) -> str:
        m = re.search(rf'^pub const {name}: &str = "([^"]+)";', source, re.M)
        assert m, f"{path}: no `pub const {name}: &str`"
        return m.group(1)

    return Emf(constant("NAMESPACE"), constant("FUNCTION_DIMENSION"))


def load_buckets(path: Path = METRICS_RS) -> dict[str, list[float]]:
    """The histogram buckets by unit (Seconds, Count, Bytes), as `buckets()` picks them."""
    by_const = {
        const: [float(x.replace("_", "")) for x in values.replace("\n", " ").split(",") if x.strip()]
        for const, values in _BUCKETS.findall(path.read_text())
    }
    # DELIVERY: stripe_webhook_forward_delivery_seconds's own (buckets() picks it by name; no
    # test run configures forwarding, so no scrape shows it).
    assert set(by_const) == {"LATENCY", "RECORDS", "SIZE", "DELIVERY"}, by_const
    return {"Seconds": by_const["LATENCY"], "Count": by_const["RECORDS"], "Bytes": by_const["SIZE"]}


def load_doc_table(path: Path = METRICS_DOC) -> dict[str, tuple[str, frozenset[str]]]:
    """docs/metrics.md's generated table: name -> (type, labels)."""
    text = path.read_text()
    table = text[text.index("<!-- metrics:begin -->") : text.index("<!-- metrics:end -->")]
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in table.splitlines():
        m = re.match(r"\| `(stripe_webhook_[a-z0-9_]+)` \| (\w+) \| \w+ \| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), frozenset(re.findall(r"`([a-z_]+)`", m.group(3))))
    return rows


# ---------------------------------------------------------------------------------------------
# PromQL: what an expression selects, which labels it uses, and which functions it applies to what
# ---------------------------------------------------------------------------------------------

# Functions over a range of a counter (or of a histogram's _bucket/_sum/_count series) ...
COUNTER_RANGE_FUNCTIONS = frozenset({"rate", "increase", "irate"})
# ... and over a range of a gauge.
GAUGE_RANGE_FUNCTIONS = frozenset({"deriv", "delta", "min_over_time", "max_over_time", "avg_over_time"})
KNOWN_FUNCTIONS = COUNTER_RANGE_FUNCTIONS | GAUGE_RANGE_FUNCTIONS | {"histogram_quantile"}
SET_OPERATORS = frozenset({"and", "or", "unless"})


@dataclass
class Selection:
    """One series selector in an expression: the exported name, the metric it belongs to, the part
    of a histogram it reads, and its label matchers."""

    series: str
    metric: Metric
    part: str  # "", or one of HISTOGRAM_PARTS
    matchers: list[tuple[str, str, str]]  # (label, op, value), op in = != =~ !~


@dataclass
class Query:
    """An expression, checked: its selections and every label it names."""

    expr: str
    selections: list[Selection] = field(default_factory=list)
    labels_used: set[str] = field(default_factory=set)
    output_labels: frozenset[str] | None = None  # None: a scalar


_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def resolve_series(name: str, metrics: dict[str, Metric]) -> tuple[Metric, str]:
    """The metric an exported series name belongs to, and the histogram part it is (or "")."""
    if name in NODE_EXPORTER_METRICS:
        return NODE_EXPORTER_METRICS[name], ""
    if name in metrics:
        metric = metrics[name]
        assert metric.kind != "histogram", f"{name} is a histogram: select {name}_bucket, _sum or _count"
        return metric, ""
    for part in HISTOGRAM_PARTS:
        base = name.removesuffix(part)
        if base != name and base in metrics and metrics[base].kind == "histogram":
            return metrics[base], part
    raise AssertionError(
        f"{name} is not a metric of crates/stripe-webhook-metrics (nor a histogram's series, nor in NODE_EXPORTER_METRICS)"
    )


def check_promql(expr: str, metrics: dict[str, Metric]) -> Query:
    """Parses `expr` with the pinned promql-parser and checks it against the metric list: every
    selector names a metric (or a histogram's series), every label it names exists on what it
    reads, rate()/increase() read counters, *_over_time()/deriv() read gauges, and
    histogram_quantile() reads _bucket series aggregated by `le`."""
    import promql_parser as pq

    try:
        ast = pq.parse(expr)
    except ValueError as e:
        raise AssertionError(f"PromQL does not parse: {e}\n  {expr}") from e
    query = Query(expr)
    query.output_labels = _check(ast, metrics, query)
    return query


def _series_labels(selection: Selection) -> frozenset[str]:
    extra = {BUCKET_LABEL} if selection.part == "_bucket" else set()
    return selection.metric.labels | TARGET_LABELS | extra


def _check(node: Any, metrics: dict[str, Metric], query: Query) -> frozenset[str] | None:
    """Checks `node` and returns the labels of the vector it yields (None for a scalar)."""
    import promql_parser as pq

    if isinstance(node, pq.NumberLiteral):
        return None
    if isinstance(node, pq.ParenExpr):
        return _check(node.expr, metrics, query)
    if isinstance(node, pq.UnaryExpr):
        return _check(node.expr, metrics, query)
    if isinstance(node, pq.MatrixSelector):
        return _check(node.vector_selector, metrics, query)
    if isinstance(node, pq.VectorSelector):
        assert node.name, f"a selector without a metric name: {query.expr}"
        metric, part = resolve_series(node.name, metrics)
        matchers = [(m.name, _OPS[str(m.op)], m.value) for m in node.matchers.matchers]
        assert not node.matchers.or_matchers, f"`or` matchers are not used here: {query.expr}"
        selection = Selection(node.name, metric, part, matchers)
        for label, _, _ in matchers:
            assert label in _series_labels(selection), f"{node.name} has no label {label!r}: {query.expr}"
        query.selections.append(selection)
        query.labels_used |= {m[0] for m in matchers}
        return _series_labels(selection)
    if isinstance(node, pq.Call):
        name = node.func.name
        assert name in KNOWN_FUNCTIONS, f"function {name} is not one this check knows: {query.expr}"
        if name == "histogram_quantile":
            phi, inner = node.args
            assert isinstance(phi, pq.NumberLiteral) and 0 < phi.val < 1, query.expr
            labels = _check(inner, metrics, query)
            assert labels is not None and BUCKET_LABEL in labels, f"histogram_quantile needs `le` kept: {query.expr}"
            reads = _selections_under(inner, metrics)
            assert reads and all(s.part == "_bucket" for s in reads), f"histogram_quantile over non-bucket series: {query.expr}"
            return labels - {BUCKET_LABEL}
        (arg,) = node.args
        assert isinstance(arg, pq.MatrixSelector), f"{name} takes a range selector: {query.expr}"
        labels = _check(arg, metrics, query)
        selection = query.selections[-1]
        if name in COUNTER_RANGE_FUNCTIONS:
            assert selection.metric.kind == "counter" or selection.part, f"{name}() over the gauge {selection.series}"
        else:
            assert selection.metric.kind == "gauge", f"{name}() over the {selection.metric.kind} {selection.series}"
        return labels
    if isinstance(node, pq.AggregateExpr):
        inner = _check(node.expr, metrics, query)
        assert inner is not None, f"aggregating a scalar: {query.expr}"
        modifier = node.modifier
        if modifier is None:
            return frozenset()
        named = set(modifier.labels)
        for label in named:
            assert label in inner, f"`{node.op} by/without ({label})` names a label the input lacks: {query.expr}"
        query.labels_used |= named
        return frozenset(named) if str(modifier.type).endswith("By") else inner - named
    if isinstance(node, pq.BinaryExpr):
        lhs = _check(node.lhs, metrics, query)
        rhs = _check(node.rhs, metrics, query)
        modifier = node.modifier
        if modifier is not None and modifier.matching is not None:
            named = set(modifier.matching.labels)
            for label in named:
                assert lhs is not None and rhs is not None, query.expr
                assert label in lhs | rhs, f"on/ignoring ({label}) names a label neither side has: {query.expr}"
            query.labels_used |= named
        op = str(node.op)
        if op in SET_OPERATORS:
            assert lhs is not None and rhs is not None, f"{op} between scalars: {query.expr}"
            return lhs | rhs if op == "or" else lhs
        if lhs is None:
            return rhs
        if rhs is None:
            return lhs
        # Vector to vector: one-to-one on the same labels, or the "many" side of a group_left.
        if modifier is None or modifier.matching is None:
            assert lhs == rhs, f"{op} between vectors with different labels {sorted(lhs)} / {sorted(rhs)}: {query.expr}"
        return lhs
    raise AssertionError(f"unexpected PromQL node {type(node).__name__}: {query.expr}")


def _selections_under(node: Any, metrics: dict[str, Metric]) -> list[Selection]:
    import promql_parser as pq

    found: list[Selection] = []

    def visit(n: Any) -> None:
        if isinstance(n, pq.VectorSelector):
            metric, part = resolve_series(n.name, metrics)
            found.append(Selection(n.name, metric, part, []))

    pq.walk(node, visit)
    return found


def literal_values(op: str, value: str) -> list[str] | None:
    """The label values a matcher names: the value of `=` / `!=`, the alternatives of a regex made
    only of literal words joined by `|`; None for any other regex."""
    if op in ("=", "!="):
        return [value]
    if re.fullmatch(r"[a-z0-9_]+(\|[a-z0-9_]+)*", value):
        return value.split("|")
    return None
