"""The dashboards, alert rules and alarms query what the code exports.

The REAL server (debug, conftest's `server_binary`) runs twice with METRICS_ADDR on a free port:
on the file sink, and on the Firehose sink against the pinned moto_server behind a small fault proxy
(a throttled PutRecordBatch, a call whose records all fail, an S3 AccessDenied on oversize/). It
gets real traffic: signed webhooks accepted, refused for every reason the transport and the service
make (bad signatures by several reasons, not an event, too large, a body timeout, busy, 404, 405, a
write the disk refuses, an oversize body S3 refuses) and an oversize event (> 1,024,000 bytes) that
takes the S3 path. Its `/metrics` is parsed (prometheus_client's parser and the `# TYPE` lines), and
a real Prometheus (Debian's package) scrapes it every second with the alert rules loaded.

Then: every metric the Grafana dashboard, the Prometheus rules and the CloudWatch dashboard and
alarms use is in crates/stripe-webhook-metrics' list, is exported with that type and those labels,
and every label value they match on was seen; every PromQL expression parses (promql-parser) and
reads counters with rate()/increase(), gauges as gauges, and histograms through their buckets; every
dashboard query returns series on that Prometheus and every rule evaluates there; promtool checks the
rules and runs their scenarios (prometheus-rules.test.yaml); the CloudFormation and Terraform
dashboards and alarms are the same. (That every alarm notifies someone and links its runbook is
test_alarms.py.)
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Server, Terraform, free_port, log_tail
from layout_spec import FIXTURE_EVENTS_DIR, INFRA, ROOT
from metrics_spec import (
    HISTOGRAM_PARTS,
    NODE_EXPORTER_METRICS,
    TARGET_LABELS,
    Metric,
    Query,
    check_promql,
    literal_values,
    load_buckets,
    load_doc_table,
    load_emf,
    load_metrics,
)

GRAFANA_DASHBOARD = INFRA / "observability" / "grafana-dashboard.json"
PROMETHEUS_RULES = INFRA / "observability" / "prometheus-rules.yaml"
PROMETHEUS_RULES_TESTS = INFRA / "observability" / "prometheus-rules.test.yaml"

# The Lambda's Embedded Metric Format namespace and function dimension (bins/stripe-webhook-lambda/src/emf.rs).
EMF = load_emf()
EMF_NAMESPACE = EMF.namespace
# What the dashboard and alarms name the function they are for: the Lambda stack's export and
# `!Ref Function` (CloudFormation), var.function_name and the function resource's name (Terraform).
FUNCTION_NAME = "<FunctionName>"
# The AWS metrics the CloudWatch dashboard and alarms read, with their dimensions (AWS docs:
# "Monitoring Amazon Data Firehose with CloudWatch metrics", "Monitoring functions" / "Function URL
# metrics" for Lambda, "CloudWatch metrics for your Application Load Balancer", "Available CloudWatch
# metrics for Amazon SQS").
AWS_METRICS = {
    "AWS/Firehose": {
        "IncomingRecords", "IncomingBytes", "ThrottledRecords", "DeliveryToS3.Success", "DeliveryToS3.Records",
        "DeliveryToS3.DataFreshness",
    },
    "AWS/Lambda": {
        "Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions", "UrlRequestCount", "Url4xxCount",
        "Url5xxCount",
    },
    "AWS/ApplicationELB": {
        "RequestCount", "HTTPCode_Target_2XX_Count", "HTTPCode_Target_4XX_Count", "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count", "TargetResponseTime", "HealthyHostCount", "UnHealthyHostCount",
    },
    "AWS/SQS": {
        "NumberOfMessagesSent", "NumberOfMessagesDeleted", "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible", "ApproximateAgeOfOldestMessage",
    },
}
# The metric the ECS stack's metric filter makes of the scheduled reconcile's JSON summaries (one
# per service and environment, without dimensions).
AWS_METRICS["StripeWebhookReconcile"] = {"<ServiceName>-<Environment>-clean-runs"}
AWS_DIMENSIONS = {
    "StripeWebhookReconcile": {frozenset()},
    "AWS/Firehose": {frozenset({"DeliveryStreamName"})},
    "AWS/Lambda": {frozenset({"FunctionName"})},
    "AWS/ApplicationELB": {frozenset({"LoadBalancer"}), frozenset({"LoadBalancer", "TargetGroup"})},
    "AWS/SQS": {frozenset({"QueueName"})},
}
# CloudWatch statistics that fit each metric kind (EMF: counters are counts per flush, gauges the
# last value, histograms the values recorded).
STATS_BY_KIND = {
    "counter": {"Sum"},
    "gauge": {"Average", "Maximum", "Minimum"},
    "histogram": {"Average", "Maximum", "Minimum", "SampleCount"},
}
PERCENTILE = re.compile(r"p\d{1,2}(\.\d+)?")

# Metrics a dashboard shows that this traffic cannot make appear, with why. Kept exact: a metric
# that does appear must leave this list.
# Every counter is exported at 0 from the start (its label sets where they are known), so a
# counter this traffic never increments still appears; what is left is what these runs do not
# configure: forwarding (no FORWARD_URL) and the SQS destination (no FORWARD_SQS_QUEUE_URL).
_NOT_FORWARDING = "no forwarding destination is configured in these runs (FORWARD_URL)"
_NO_SQS = "no SQS destination is configured in these runs (FORWARD_SQS_QUEUE_URL)"
NOT_PROVOKED: dict[str, str] = {
    "stripe_webhook_forward_deliveries_total": _NOT_FORWARDING,
    "stripe_webhook_forward_attempts_total": _NOT_FORWARDING,
    "stripe_webhook_forward_delivery_seconds": _NOT_FORWARDING,
    "stripe_webhook_forward_lag_records": _NOT_FORWARDING,
    "stripe_webhook_forward_lag_seconds": _NOT_FORWARDING,
    "stripe_webhook_forward_dead_letters": _NOT_FORWARDING,
    "stripe_webhook_forward_failed": _NOT_FORWARDING,
    "stripe_webhook_sqs_calls_total": _NO_SQS,
    "stripe_webhook_sqs_call_seconds": _NO_SQS,
    "stripe_webhook_sqs_messages_total": _NO_SQS,
    "stripe_webhook_sqs_messages_failed_total": _NO_SQS,
}
# Label values of metrics that are exported, which only those configurations give.
NOT_PROVOKED_VALUES: dict[tuple[str, str], str] = {
    ("sink", "firehose+sqs"): _NO_SQS,
}

# Counters whose label takes an open set of values: their series appear with their first increment
# (crates/stripe-webhook-metrics: `known_values` is None for them), never at 0 from the start.
OPEN_LABEL_SETS = {
    "stripe_webhook_firehose_retries_total": "code: an AWS error code",
    "stripe_webhook_firehose_records_failed_total": "code: an AWS error code",
    "stripe_webhook_sqs_messages_failed_total": "code: an AWS error code",
    "stripe_webhook_forward_deliveries_total": "destination: the names of the configured destinations",
    "stripe_webhook_forward_attempts_total": "destination: the names of the configured destinations",
}

SECRET = "whsec_infra_observability_test_0123456789"
STREAM = "observability-test-stream"
BUCKET = "observability-test-archive"
MAX_BODY_BYTES = 1_500_000
FIREHOSE_RECORD_LIMIT = 1_024_000
# The file-sink run may write files up to this size: a bigger envelope fails its write (EFBIG),
# the way a full disk does.
FILE_SIZE_LIMIT = 1_000_000


# ---------------------------------------------------------------------------------------------
# The definitions under test
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def metrics() -> dict[str, Metric]:
    return load_metrics()


@pytest.fixture(scope="session")
def grafana() -> dict[str, Any]:
    return json.loads(GRAFANA_DASHBOARD.read_text())


@pytest.fixture(scope="session")
def rules() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_RULES.read_text())


# Grafana's variables, replaced by what they stand for before parsing: `$job` is a multi-value
# regex (All = `.+`), `$__rate_interval` a range.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": ".+"}


def grafana_panels(grafana: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in grafana["panels"] if p["type"] != "row"]


def grafana_targets(grafana: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, expression with the variables replaced, legend) of every panel query."""
    out = []
    for panel in grafana_panels(grafana):
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{panel['title']}: unknown Grafana variable in {target['expr']}"
            out.append((panel["title"], expr, target.get("legendFormat", "")))
    return out


def rule_list(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


@pytest.fixture(scope="session")
def queries(grafana: dict[str, Any], rules: dict[str, Any], metrics: dict[str, Metric]) -> list[Query]:
    """Every PromQL expression of the dashboard and the rules, parsed and checked."""
    exprs = [expr for _, expr, _ in grafana_targets(grafana)] + [r["expr"] for r in rule_list(rules)]
    return [check_promql(expr, metrics) for expr in exprs]


# --- CloudFormation intrinsics, evaluated the way CloudFormation would (names as placeholders) ---

# What the dashboard's names stand for, in both tools: CloudFormation imports and pseudo
# parameters, Terraform references.
CFN_NAMES = {"AWS::Region": "<Region>", "Environment": "<Environment>", "DashboardName": "<DashboardName>"}
TF_NAMES = {
    "${data.aws_region.current.region}": "<Region>",
    "${var.environment}": "<Environment>",
    "${local.dashboard_stream}": "<DeliveryStreamName>",
    "${var.function_name}": FUNCTION_NAME,
    "${local.dashboard_load_balancer}": "<LoadBalancerFullName>",
    "${local.dashboard_target_group}": "<TargetGroupFullName>",
    "${local.dashboard_queue}": "<QueueName>",
    "${local.dashboard_dead_letter_queue}": "<DeadLetterQueueName>",
}


def cfn_evaluate(node: Any, conditions: dict[str, bool], names: dict[str, str] | None = None) -> Any:
    names = names or {}
    if isinstance(node, list):
        return [cfn_evaluate(n, conditions, names) for n in node]
    if not isinstance(node, dict):
        return node
    if len(node) != 1 or not next(iter(node)).startswith(("Fn::", "Ref")):
        return {k: cfn_evaluate(v, conditions, names) for k, v in node.items()}
    ((fn, arg),) = node.items()
    if fn == "Fn::Join":
        sep, parts = arg
        return sep.join(cfn_evaluate(p, conditions, names) for p in parts)
    if fn == "Fn::If":
        condition, yes, no = arg
        return cfn_evaluate(yes if conditions[condition] else no, conditions, names)
    if fn == "Fn::ImportValue":
        exported = cfn_evaluate(arg, conditions, names)
        return "<" + exported.rsplit("-", 1)[1] + ">"
    if fn == "Fn::Sub":
        template, variables = (arg, {}) if isinstance(arg, str) else arg
        scope = dict(CFN_NAMES) | {f"{k}StackName": f"<{k}StackName>" for k in ("Core", "Lambda", "Ecs", "Sqs")}
        scope |= {k: cfn_evaluate(v, conditions, names) for k, v in variables.items()}

        def substitute(m: re.Match[str]) -> str:
            assert m.group(1) in scope, f"Fn::Sub: ${{{m.group(1)}}} is not defined"
            return scope[m.group(1)]

        return re.sub(r"\$\{([A-Za-z0-9:]+)\}", substitute, template)
    if fn == "Ref":
        return names.get(arg, f"<{arg}>")
    raise AssertionError(f"unexpected intrinsic {fn}")


def cfn_dashboard_widgets(
    cfn_dashboard: dict[str, Any], *, lambda_: bool, ecs: bool, sqs: bool = False
) -> list[dict[str, Any]]:
    body = cfn_dashboard["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    conditions = {"HasLambda": lambda_, "HasEcs": ecs, "HasSqs": sqs, "HasLambdaSqs": lambda_ and sqs}
    assert set(conditions) == set(cfn_dashboard["Conditions"])
    text = cfn_evaluate(body, conditions)
    try:
        return json.loads(text)["widgets"]
    except json.JSONDecodeError as e:
        raise AssertionError(f"the CloudFormation DashboardBody is not JSON ({e}):\n{text}") from e


def _hcl_unescape(value: Any) -> Any:
    """python-hcl2 keeps string escapes as written; the dashboard's strings use \\" and \\n only."""
    if isinstance(value, str):
        return re.sub(r'\\(["\\n])', lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
    if isinstance(value, list):
        return [_hcl_unescape(v) for v in value]
    if isinstance(value, dict):
        return {k: _hcl_unescape(v) for k, v in value.items()}
    return value


def tf_dashboard_widgets(
    terraform: Terraform, *, lambda_: bool, ecs: bool, sqs: bool = False
) -> list[dict[str, Any]]:
    body = terraform.resource("aws_cloudwatch_dashboard", "webhooks")["dashboard_body"]
    assert body == (
        "${jsonencode({widgets = concat(local.dashboard_firehose_widgets, "
        "[for w in local.dashboard_sqs_widgets : w if var.sqs_enabled], "
        "[for w in local.dashboard_lambda_widgets : w if var.lambda_enabled], "
        "[for w in local.dashboard_lambda_sqs_widgets : w if var.lambda_enabled && var.sqs_enabled], "
        "[for w in local.dashboard_ecs_widgets : w if var.ecs_enabled])})}"
    ), body
    widgets = list(terraform.locals["dashboard_firehose_widgets"])
    widgets += terraform.locals["dashboard_sqs_widgets"] if sqs else []
    widgets += terraform.locals["dashboard_lambda_widgets"] if lambda_ else []
    widgets += terraform.locals["dashboard_lambda_sqs_widgets"] if lambda_ and sqs else []
    widgets += terraform.locals["dashboard_ecs_widgets"] if ecs else []
    text = json.dumps(_hcl_unescape(widgets))
    for ref, placeholder in TF_NAMES.items():
        text = text.replace(json.dumps(ref), json.dumps(placeholder)).replace(ref, placeholder)
    assert "${" not in text, f"an unmapped Terraform reference in the dashboard: {re.findall(r'[$][{][^}]*[}]', text)}"
    return json.loads(text)


@dataclass(frozen=True)
class CloudWatchMetric:
    """One metric a widget or an alarm reads."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]  # sorted (name, value)
    stat: str
    where: str


_SEARCH = re.compile(
    r"""^SEARCH\('\{([^,}]+),([^}]+)\} ((?:\w+="[^"]*" )*)MetricName="([^"]+)"', '(\w+)', (\d+)\)$"""
)


def widget_metrics(widgets: list[dict[str, Any]]) -> list[CloudWatchMetric]:
    """The metrics of every metric widget (SEARCH expressions with their full dimension set: the value
    a `Dimension="value"` term selects, `*` for the others)."""
    found = []
    for w in widgets:
        if w["type"] != "metric":
            continue
        props = w["properties"]
        for row in props["metrics"]:
            options = row[-1] if isinstance(row[-1], dict) else {}
            if "expression" in options:
                assert len(row) == 1, row
                m = _SEARCH.match(options["expression"])
                assert m, (
                    f"{props['title']}: only SEARCH('{{Namespace,dims}} [dim=\"value\" ...]MetricName=\"...\"', stat,"
                    " period) is used"
                )
                namespace, dims, terms, name, stat, period = m.groups()
                assert int(period) == props["period"], props["title"]
                schema = [d.strip() for d in dims.split(",")]
                selected = dict(re.findall(r'(\w+)="([^"]*)" ', terms))
                assert set(selected) <= set(schema), f"{props['title']}: a term on a dimension outside the schema"
                dimensions = tuple(sorted((d, selected.get(d, "*")) for d in schema))
                found.append(CloudWatchMetric(namespace, name, dimensions, stat, props["title"]))
                continue
            fields = row[:-1] if options else row
            namespace, name, *pairs = fields
            assert len(pairs) % 2 == 0, f"{props['title']}: dimensions come as name, value pairs: {row}"
            dimensions = tuple(sorted(zip(pairs[::2], pairs[1::2])))
            found.append(CloudWatchMetric(namespace, name, dimensions, options.get("stat", "Average"), props["title"]))
    return found


# --- Alarms, CloudFormation and Terraform, in one shape ---


def _cfn_dimensions(dims: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    names = {
        "Function": FUNCTION_NAME,
        "LoadBalancer.LoadBalancerFullName": "<LoadBalancerFullName>",
        "TargetGroup.TargetGroupFullName": "<TargetGroupFullName>",
        "DeliveryStream": "<DeliveryStreamName>",
    }
    out = []
    for d in dims:
        value = d["Value"]
        if isinstance(value, dict):
            ((fn, arg),) = value.items()
            value = names[arg if fn == "Ref" else ".".join(arg)]
        out.append((d["Name"], value))
    return tuple(sorted(out))


# The runbooks' address in alarm descriptions: a required parameter, a required variable.
RUNBOOKS_URL = {"${RunbooksUrl}": "<RunbooksUrl>", "${var.runbooks_url}": "<RunbooksUrl>"}
# Names in metric names (the scheduled reconcile's), CloudFormation and Terraform.
NAMES_IN_METRICS = {
    "${ServiceName}": "<ServiceName>", "${Environment}": "<Environment>",
    "${var.service_name}": "<ServiceName>", "${var.environment}": "<Environment>",
}


def _runbooks_url(description: str) -> str:
    for ref, placeholder in RUNBOOKS_URL.items():
        description = description.replace(ref, placeholder)
    return description


def _metric_name(name: Any) -> str:
    if isinstance(name, dict):
        (name,) = name.values()  # Fn::Sub
    for ref, placeholder in NAMES_IN_METRICS.items():
        name = name.replace(ref, placeholder)
    return name


def cfn_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Alarms by name suffix (after `<name>-<environment>-`)."""
    out = {}

    def value(v: Any) -> Any:
        return template["Parameters"][v["Ref"]]["Default"] if isinstance(v, dict) else v

    for declared in template["Resources"].values():
        if declared["Type"] != "AWS::CloudWatch::Alarm":
            continue
        p = declared["Properties"]
        suffix = p["AlarmName"]["Fn::Sub"].split("-${Environment}-", 1)[1]
        threshold = value(p["Threshold"])
        if "Metrics" in p:
            metrics = {}
            for q in p["Metrics"]:
                if "Expression" in q:
                    metrics[q["Id"]] = (q["Expression"], q["ReturnData"], q.get("Label"))
                else:
                    s = q["MetricStat"]
                    m = s["Metric"]
                    metric = (m["Namespace"], m["MetricName"], _cfn_dimensions(m["Dimensions"]), s["Period"], s["Stat"])
                    metrics[q["Id"]] = (metric, q["ReturnData"], q.get("Label"))
        else:
            dims = _cfn_dimensions(p.get("Dimensions", []))
            metric = (p["Namespace"], _metric_name(p["MetricName"]), dims, p["Period"], p["Statistic"])
            metrics = {"": (metric, True, None)}
        out[suffix] = {
            "description": _runbooks_url(p["AlarmDescription"]["Fn::Sub"]),
            "metrics": metrics,
            "threshold": threshold,
            "operator": p["ComparisonOperator"],
            "evaluation_periods": value(p["EvaluationPeriods"]),
            "datapoints": value(p.get("DatapointsToAlarm", p["EvaluationPeriods"])),
            "missing": p["TreatMissingData"],
            "actions": (p["AlarmActions"], p["OKActions"]),
        }
    return out


_TF_DIMENSION_VALUES = {
    "${local.lambda_function_name}": FUNCTION_NAME,
    "${aws_lb.webhook[0].arn_suffix}": "<LoadBalancerFullName>",
    "${aws_lb_target_group.webhook[0].arn_suffix}": "<TargetGroupFullName>",
}


def _tf_dimensions(dimensions: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, _TF_DIMENSION_VALUES.get(v, v)) for k, v in dimensions.items()))


def _tf_alarm(terraform: Terraform, body: dict[str, Any]) -> dict[str, Any]:
    """One alarm resource (metric queries or a single metric) in cfn_alarms' shape."""
    metrics = {}
    for q in body.get("metric_query", []):
        if "expression" in q:
            metrics[q["id"]] = (_hcl_unescape(q["expression"]), q["return_data"], q.get("label"))
        else:
            (m,) = q["metric"]
            metric = (m["namespace"], m["metric_name"], _tf_dimensions(m["dimensions"]), m["period"], m["stat"])
            metrics[q["id"]] = (metric, q["return_data"], q.get("label"))
    if not metrics:
        dims = _tf_dimensions(body.get("dimensions", {}))
        metric = (body["namespace"], _metric_name(body["metric_name"]), dims, body["period"], body["statistic"])
        metrics[""] = (metric, True, None)
    return {
        "description": _runbooks_url(body["alarm_description"]),
        "metrics": metrics,
        "threshold": terraform.resolve(body["threshold"]),
        "operator": body["comparison_operator"],
        "evaluation_periods": terraform.resolve(body["evaluation_periods"]),
        "datapoints": terraform.resolve(body.get("datapoints_to_alarm", body["evaluation_periods"])),
        "missing": body["treat_missing_data"],
        "actions": (body["alarm_actions"], body["ok_actions"]),
    }


# The Terraform alarms of each optional CloudFormation stack.
TF_ALARMS_BY_STACK = {
    "lambda": ("lambda_5xx_rate", "lambda_signature_failures", "lambda_no_accepted_webhooks"),
    "ecs": ("ecs_5xx_rate", "ecs_4xx_rate", "ecs_unhealthy_targets", "ecs_no_accepted_webhooks", "reconcile_not_clean"),
}


def tf_alarms(terraform: Terraform, stack: str) -> dict[str, dict[str, Any]]:
    """The alarms.tf alarms of the Lambda or ECS part, by name suffix, in cfn_alarms' shape."""
    resources = terraform.resources["aws_cloudwatch_metric_alarm"]
    out = {}
    if stack == "lambda":
        simple = resources["lambda"]
        assert simple["for_each"] == "${{for name, alarm in local.lambda_alarms : name => alarm if var.lambda_enabled}}"
        assert simple["dimensions"] == "${each.value.dimensions}"
        for suffix, alarm in terraform.locals["lambda_alarms"].items():
            dims = tuple(sorted((k, _TF_DIMENSION_VALUES.get(v, v)) for k, v in alarm["dimensions"].items()))
            metric = (alarm["namespace"], alarm["metric"], dims, simple["period"], simple["statistic"])
            out[suffix] = {
                "description": _runbooks_url(alarm["description"]),
                "metrics": {"": (metric, True, None)},
                "threshold": simple["threshold"],
                "operator": simple["comparison_operator"],
                "evaluation_periods": simple["evaluation_periods"],
                "datapoints": simple["evaluation_periods"],
                "missing": simple["treat_missing_data"],
                "actions": (simple["alarm_actions"], simple["ok_actions"]),
            }
    for name in TF_ALARMS_BY_STACK[stack]:
        body = resources[name]
        suffix = body["alarm_name"].split("-${var.environment}-", 1)[1]
        out[suffix] = _tf_alarm(terraform, body)
    return out


def alarm_metrics(alarms: dict[str, dict[str, Any]]) -> list[CloudWatchMetric]:
    return [
        CloudWatchMetric(ns, name, dims, stat, f"alarm {suffix}")
        for suffix, alarm in alarms.items()
        for metric, _, _ in alarm["metrics"].values()
        if isinstance(metric, tuple)
        for ns, name, dims, _, stat in [metric]
    ]


# ---------------------------------------------------------------------------------------------
# The real server, its traffic and its /metrics
# ---------------------------------------------------------------------------------------------


def sign(body: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event_body(name: str = "charge.succeeded.json", *, padding: int = 0) -> bytes:
    """A bundled fixture event, with a new id, and `padding` bytes of metadata to make it big."""
    event = json.loads((FIXTURE_EVENTS_DIR / name).read_bytes())
    event["id"] = f"evt_obs_{time.monotonic_ns()}"
    if padding:
        event["data"]["object"].setdefault("metadata", {})["padding"] = "p" * padding
    return json.dumps(event).encode()


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def post_webhook(port: int, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return request(port, "POST", "/webhook/stripe", body, headers)


def _status_line(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    return int(data.split(b" ", 2)[1])


def _head(content_length: int) -> bytes:
    return (
        f"POST /webhook/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: {sign(b'{}')}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


def declared_only(port: int, content_length: int) -> int:
    """Sends a request head declaring a body it never sends; the answer's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_head(content_length))
        return _status_line(sock)


@dataclass
class Scrape:
    """One GET /metrics: the `# TYPE` of each family and the label sets of each series."""

    text: str
    types: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def scrape(metrics_port: int) -> Scrape:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r.headers
        text = r.read().decode()
    result = Scrape(text)
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in result.types, f"# TYPE {name} twice"
            result.types[name] = kind
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result.series.setdefault(sample.name, []).append(dict(sample.labels))
    return result


class FaultProxy:
    """A loopback HTTP proxy in front of moto that fails the calls a test asks for, the way AWS
    does: a PutRecordBatch throttled as a whole (ServiceUnavailableException, HTTP 400), one whose
    records all fail with ServiceUnavailableException, an S3 PutObject under oversize/ denied."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.firehose_faults: deque[str] = deque()
        self.deny_oversize = False
        self.injected: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                assert "chunked" not in self.headers.get("Transfer-Encoding", ""), "chunked bodies are not proxied"
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._fault_for(self.command, self.path, self.headers, body)
                if fault is not None:
                    status, content_type, answer = fault
                    headers = {"Content-Type": content_type}
                else:
                    status, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _fault_for(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, str, bytes] | None:
        target = headers.get("X-Amz-Target", "")
        if method == "POST" and target.endswith(".PutRecordBatch") and self.firehose_faults:
            fault = self.firehose_faults.popleft()
            self.injected[fault] += 1
            if fault == "throttle_call":
                error = {"__type": "ServiceUnavailableException", "message": "Slow down."}
                return 400, "application/x-amz-json-1.1", json.dumps(error).encode()
            assert fault == "fail_records", fault
            count = len(json.loads(body)["Records"])
            failed = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
            answer = {"FailedPutCount": count, "Encrypted": False, "RequestResponses": [failed] * count}
            return 200, "application/x-amz-json-1.1", json.dumps(answer).encode()
        if method == "PUT" and path.startswith(f"/{BUCKET}/oversize/") and self.deny_oversize:
            self.injected["deny_oversize"] += 1
            xml = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>obs</RequestId></Error>"
            return 403, "application/xml", xml.encode()
        return None

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            skip = {"connection", "keep-alive", "content-length", "transfer-encoding"}
            conn.request(method, path, body=body, headers={k: v for k, v in headers.items() if k.lower() not in skip})
            response = conn.getresponse()
            answer = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in skip}
            return response.status, kept, answer
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def prometheus_bins() -> dict[str, Path]:
    """Prometheus and promtool from Debian's `prometheus` package (installed when missing)."""
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "system-packages.sh"), "prometheus"], capture_output=True, text=True, timeout=900
    )
    if r.returncode != 0:
        pytest.fail(f"could not install Debian's prometheus package (promtool, prometheus):\n{r.stderr}")
    bins = {name: Path("/usr/bin") / name for name in ("prometheus", "promtool")}
    for name, path in bins.items():
        if not path.is_file():
            pytest.fail(f"{name} not found at {path} after installing the prometheus package")
    return bins


class Prometheus:
    """A real Prometheus scraping the server every second and evaluating the alert rules, so the
    dashboard's queries run on its engine over what the server exports."""

    def __init__(self, binary: Path, work: Path, metrics_port: int) -> None:
        self.port = free_port()
        self.config = work / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {
                "scrape_interval": "1s", "evaluation_interval": "1s",
                "external_labels": {"runbooks_url": "https://docs.example.com/stripe-webhooks/runbooks.md"},
            },
            "rule_files": [str(PROMETHEUS_RULES)],
            "scrape_configs": [{"job_name": "webhooks", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
        }))
        self.args = [
            str(binary), f"--config.file={self.config}", f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]
        self.log = work / "prometheus.log"

    def __enter__(self) -> Prometheus:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers("/-/ready"):
            assert self.proc.poll() is None, f"prometheus exited:\n{log_tail(self.log)}"
            assert time.monotonic() < deadline, f"prometheus not ready within 30 s:\n{log_tail(self.log)}"
            time.sleep(0.1)
        return self

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            answer = json.loads(e.read())
        assert answer["status"] == "success", f"{path} {params}: {answer}"
        return answer["data"]

    def wait_for_scrapes(self, count: int) -> None:
        """Waits until `count` more scrapes of the server have happened."""
        def scrapes() -> float:
            result = self.api("query", query='sum(count_over_time(up{job="webhooks"}[10m]))')["result"]
            return float(result[0]["value"][1]) if result else 0.0
        start, deadline = scrapes(), time.monotonic() + 30
        while scrapes() < start + count:
            assert time.monotonic() < deadline, f"prometheus did not scrape the server:\n{log_tail(self.log)}"
            time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# Grafana's range variable on a Prometheus that scrapes every second.
LIVE_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": ".+"}


def evaluate_dashboard(prometheus: Prometheus, grafana: dict[str, Any]) -> dict[tuple[str, str], int]:
    """Every Grafana query, run by Prometheus now: (panel title, refId) -> series returned."""
    prometheus.wait_for_scrapes(3)
    results = {}
    for panel in grafana_panels(grafana):
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in LIVE_GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            results[(panel["title"], target["refId"])] = len(prometheus.api("query", query=expr)["result"])
    return results


@dataclass
class Run:
    """What one server run sent, what its /metrics said at the end, and what the dashboard's
    queries and the alert rules gave on a Prometheus that scraped it."""

    sink: str
    scrape: Scrape
    first: Scrape  # the first /metrics, before any request
    statuses: Counter[tuple[str, int]]  # (what was sent, HTTP status)
    dashboard: dict[tuple[str, str], int]  # (Grafana panel, refId) -> series returned
    rules: list[dict[str, Any]]  # Prometheus' rule groups, with each rule's health


# What every run of the server here has, over conftest.Server's base.
SERVER_ENV = {
    "STRIPE_WEBHOOK_SECRET": SECRET,
    "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
    "BODY_READ_TIMEOUT_SECS": "1",
    "LOG_FORMAT": "json",
}


def common_traffic(port: int, statuses: Counter[tuple[str, int]]) -> None:
    """What both runs get: accepted webhooks, and every refusal the transport and the service
    make for a bad request."""

    def sent(what: str, status: int) -> None:
        statuses[(what, status)] += 1

    for name in ("charge.succeeded.json", "customer.created.json", "invoice.paid.json"):
        body = event_body(name)
        sent("accepted", post_webhook(port, body, sign(body)))
    body = event_body()
    # Signature failures by reason, then a burst (a secret rotated in Stripe, not here) that the log
    # rate limit (20 refusal lines per second) cuts short.
    sent("missing_header", post_webhook(port, body, None))
    sent("stale_timestamp", post_webhook(port, body, sign(body, at=int(time.time()) - 3600)))
    sent("malformed_header", post_webhook(port, body, "t=now,v1=00"))
    for _ in range(30):
        sent("no_matching_signature", post_webhook(port, body, sign(body, secret="whsec_rotated_elsewhere")))
    not_an_event = b'{"hello":"world"}'
    sent("not_an_event", post_webhook(port, not_an_event, sign(not_an_event)))
    sent("body_too_large", declared_only(port, MAX_BODY_BYTES + 100_000))
    sent("not_found", request(port, "GET", "/nope"))
    sent("method_not_allowed", request(port, "GET", "/webhook/stripe"))


def file_sink_traffic(port: int, statuses: Counter[tuple[str, int]]) -> None:
    # Busy: one upload holds most of the body budget (MAX_BUFFERED_BODY_BYTES), so the next big
    # one finds no room (503); the first never finishes its body (408 after BODY_READ_TIMEOUT_SECS).
    with socket.create_connection(("127.0.0.1", port), timeout=10) as held:
        held.sendall(_head(MAX_BODY_BYTES - 100_000) + b"{")
        time.sleep(0.3)
        statuses[("busy", declared_only(port, 600_000))] += 1
        statuses[("body_timeout", _status_line(held))] += 1
    # A write the disk refuses (RLIMIT_FSIZE: EFBIG, like a full disk): 503, then writes work again.
    big = event_body(padding=600_000)
    statuses[("write_refused", post_webhook(port, big, sign(big)))] += 1
    body = event_body()
    statuses[("accepted", post_webhook(port, body, sign(body)))] += 1
    # Segments rotate every second (ARCHIVE_SEGMENT_MAX_AGE_SECS=1): let the sealer seal some.
    time.sleep(2.5)


def firehose_sink_traffic(port: int, proxy: FaultProxy, statuses: Counter[tuple[str, int]]) -> None:
    # One webhook through a throttled call, then a call whose records all fail, then success.
    proxy.firehose_faults.extend(["throttle_call", "fail_records"])
    body = event_body()
    statuses[("accepted", post_webhook(port, body, sign(body)))] += 1
    assert not proxy.firehose_faults and proxy.injected["throttle_call"] == proxy.injected["fail_records"] == 1
    # An event over Firehose's record limit: its body goes to S3 under oversize/ ...
    big = event_body(padding=FIREHOSE_RECORD_LIMIT + 10_000)
    assert len(big) > FIREHOSE_RECORD_LIMIT
    statuses[("oversize", post_webhook(port, big, sign(big)))] += 1
    # ... and when S3 refuses it (AccessDenied: permanent), the webhook gets 500 storage_failed.
    proxy.deny_oversize = True
    big = event_body(padding=FIREHOSE_RECORD_LIMIT + 10_000)
    statuses[("oversize_denied", post_webhook(port, big, sign(big)))] += 1
    proxy.deny_oversize = False
    assert proxy.injected["deny_oversize"] == 1


def _limit_file_size() -> None:
    """In the server's process, before exec: writes past FILE_SIZE_LIMIT fail with EFBIG (an
    ignored SIGXFSZ stays ignored across exec) instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.fixture(scope="session")
def file_run(
    server_binary: Path, prometheus_bins: dict[str, Path], grafana: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Run:
    work = tmp_path_factory.mktemp("observability-file")
    env = {
        "SINK": "file",
        "ARCHIVE_DIR": str(work / "archive"),
        "ARCHIVE_SEGMENT_MAX_BYTES": "4096",
        "ARCHIVE_SEGMENT_MAX_AGE_SECS": "1",
        "MAX_BUFFERED_BODY_BYTES": str(MAX_BODY_BYTES),
    }
    statuses: Counter[tuple[str, int]] = Counter()
    with Server(server_binary, work, SERVER_ENV | env, preexec=_limit_file_size) as server, Prometheus(
        prometheus_bins["prometheus"], work, server.metrics_port
    ) as prometheus:
        first = scrape(server.metrics_port)
        common_traffic(server.port, statuses)
        file_sink_traffic(server.port, statuses)
        result = scrape(server.metrics_port)
        dashboard = evaluate_dashboard(prometheus, grafana)
        rules = prometheus.api("rules")["groups"]
    return Run("file", result, first, statuses, dashboard, rules)


@pytest.fixture(scope="session")
def firehose_run(
    server_binary: Path, moto_endpoint: str, prometheus_bins: dict[str, Path], grafana: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    import boto3

    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    clients = {
        "endpoint_url": moto_endpoint,
        "region_name": aws["AWS_REGION"],
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3, firehose = boto3.client("s3", **clients), boto3.client("firehose", **clients)
    s3.create_bucket(Bucket=BUCKET)
    firehose.create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{BUCKET}",
            "Prefix": "webhooks/",
            "CompressionFormat": "UNCOMPRESSED",
        },
    )
    proxy = FaultProxy(moto_endpoint)
    env = aws | {
        "SINK": "firehose",
        "AWS_ENDPOINT_URL": proxy.url,
        "FIREHOSE_DELIVERY_STREAM_NAME": STREAM,
        "OVERSIZE_S3_BUCKET": BUCKET,
    }
    statuses: Counter[tuple[str, int]] = Counter()
    work = tmp_path_factory.mktemp("observability-firehose")
    try:
        with Server(server_binary, work, SERVER_ENV | env) as server, Prometheus(
            prometheus_bins["prometheus"], work, server.metrics_port
        ) as prometheus:
            first = scrape(server.metrics_port)
            common_traffic(server.port, statuses)
            firehose_sink_traffic(server.port, proxy, statuses)
            result = scrape(server.metrics_port)
            dashboard = evaluate_dashboard(prometheus, grafana)
            rules = prometheus.api("rules")["groups"]
        oversize = s3.list_objects_v2(Bucket=BUCKET, Prefix="oversize/").get("Contents", [])
        assert len(oversize) == 1, f"the one oversize body S3 accepted, under oversize/: {oversize}"
        yield Run("firehose", result, first, statuses, dashboard, rules)
    finally:
        proxy.close()


@pytest.fixture(scope="session")
def runs(file_run: Run, firehose_run: Run) -> list[Run]:
    return [file_run, firehose_run]


def observed(runs: list[Run]) -> dict[str, dict[str, set[str]]]:
    """Base metric name -> label name -> the values seen in any run."""
    seen: dict[str, dict[str, set[str]]] = {}
    for run in runs:
        for series, label_sets in run.scrape.series.items():
            base = series
            for part in HISTOGRAM_PARTS:
                if series.endswith(part) and series.removesuffix(part) in run.scrape.types:
                    base = series.removesuffix(part)
            labels = seen.setdefault(base, {})
            for label_set in label_sets:
                for k, v in label_set.items():
                    labels.setdefault(k, set()).add(v)
    return seen


# ---------------------------------------------------------------------------------------------
# Tests: the metric list
# ---------------------------------------------------------------------------------------------


def test_the_docs_table_lists_the_codes_metrics(metrics: dict[str, Metric]) -> None:
    table = load_doc_table()
    assert table == {m.name: (m.kind, m.labels) for m in metrics.values()}


# ---------------------------------------------------------------------------------------------
# Tests: the real server's /metrics after real traffic
# ---------------------------------------------------------------------------------------------


def test_the_traffic_got_the_expected_answers(file_run: Run, firehose_run: Run) -> None:
    common = {
        ("accepted", 200): 3, ("missing_header", 400): 1, ("stale_timestamp", 400): 1, ("malformed_header", 400): 1,
        ("no_matching_signature", 400): 30, ("not_an_event", 400): 1, ("body_too_large", 413): 1,
        ("not_found", 404): 1, ("method_not_allowed", 405): 1,
    }
    assert file_run.statuses == Counter(common) + Counter(
        {("busy", 503): 1, ("body_timeout", 408): 1, ("write_refused", 503): 1, ("accepted", 200): 1}
    )
    assert firehose_run.statuses == Counter(common) + Counter(
        {("accepted", 200): 1, ("oversize", 200): 1, ("oversize_denied", 500): 1}
    )


@pytest.mark.parametrize("sink", ["file", "firehose"])
def test_every_exported_metric_is_in_the_list_with_its_type_and_labels(
    sink: str, file_run: Run, firehose_run: Run, metrics: dict[str, Metric]
) -> None:
    run = {"file": file_run, "firehose": firehose_run}[sink]
    exported = {name for name in run.scrape.types if name.startswith("stripe_webhook_")}
    assert exported, run.scrape.text[:2000]
    assert exported <= set(metrics), f"exported but not in crates/stripe-webhook-metrics: {exported - set(metrics)}"
    buckets = load_buckets()
    for name in exported:
        metric = metrics[name]
        assert run.scrape.types[name] == metric.kind, f"{name}: # TYPE {run.scrape.types[name]}, the list says {metric.kind}"
        series = [name] if metric.kind != "histogram" else [name + part for part in HISTOGRAM_PARTS]
        for s in series:
            assert s in run.scrape.series, f"{s} missing from /metrics"
            for labels in run.scrape.series[s]:
                expected = metric.labels | ({"le"} if s.endswith("_bucket") else set())
                assert set(labels) == expected, f"{s}{labels}: labels must be exactly {sorted(expected)}"
        if metric.kind == "histogram":
            les = {float(labels["le"]) for labels in run.scrape.series[name + "_bucket"]}
            assert les == set(buckets[metric.unit]) | {float("inf")}, f"{name}: buckets {sorted(les)}"


def test_the_traffic_shows_in_the_metrics(file_run: Run, firehose_run: Run) -> None:
    seen = observed([file_run, firehose_run])
    outcomes = seen["stripe_webhook_requests_total"]["outcome"]
    assert outcomes >= {
        "accepted", "bad_signature", "not_an_event", "body_too_large", "body_timeout", "busy",
        "storage_unavailable", "storage_failed", "not_found", "method_not_allowed",
    }, outcomes
    assert seen["stripe_webhook_verification_failures_total"]["reason"] >= {
        "missing_header", "stale_timestamp", "malformed_header", "no_matching_signature",
    }
    assert seen["stripe_webhook_firehose_oversize_total"]["result"] == {"ok", "error"}
    assert seen["stripe_webhook_firehose_throttles_total"]["scope"] == {"call", "record"}
    assert seen["stripe_webhook_sink_ready"]["sink"] == {"file", "firehose"}
    assert "stripe_webhook_file_write_errors_total" in seen and "stripe_webhook_file_sealed_bytes_total" in seen
    assert "stripe_webhook_log_lines_suppressed_total" in seen


def test_every_metric_the_dashboards_and_alerts_use_is_exported(
    queries: list[Query], cfn_lambda: dict[str, Any], cfn_dashboard: dict[str, Any], runs: list[Run],
    metrics: dict[str, Metric],
) -> None:
    """The "Done means" check: what is queried exists, with the labels and values queried."""
    seen = observed(runs)
    used: dict[str, set[tuple[str, str]]] = {}  # metric -> (label, value) matched on
    for query in queries:
        for s in query.selections:
            if s.metric.name in NODE_EXPORTER_METRICS:
                continue  # node_exporter's, not the server's
            pairs = used.setdefault(s.metric.name, set())
            for label, op, value in s.matchers:
                if label in TARGET_LABELS:
                    continue
                for v in literal_values(op, value) or []:
                    pairs.add((label, v))
    emf = [
        m
        for m in widget_metrics(cfn_dashboard_widgets(cfn_dashboard, lambda_=True, ecs=True))
        + alarm_metrics(cfn_alarms(cfn_lambda))
        if m.namespace == EMF_NAMESPACE
    ]
    assert emf, "the CloudWatch dashboard and alarms use the function's metrics"
    for m in emf:
        # The function dimension is the Lambda's own, not a label of the metric (nor of the server).
        assert (EMF.function_dimension, FUNCTION_NAME) in m.dimensions, m
        used.setdefault(m.name, set()).update((k, v) for k, v in m.dimensions if v != "*" and k != EMF.function_dimension)
    assert set(used) <= set(metrics), set(used) - set(metrics)
    unseen = {name for name in used if name not in seen}
    assert unseen == set(NOT_PROVOKED), f"queried but never exported by this traffic: {unseen - set(NOT_PROVOKED)}"
    for name, pairs in used.items():
        for label, value in pairs:
            assert label in metrics[name].labels, f"{name} has no label {label}"
            if name in seen and (label, value) not in NOT_PROVOKED_VALUES:
                assert value in seen[name].get(label, set()), f'{name}{{{label}="{value}"}} never appeared: {seen[name]}'


def test_a_fresh_servers_first_scrape_has_every_queried_counter_at_zero(
    queries: list[Query], runs: list[Run], metrics: dict[str, Metric]
) -> None:
    """Before any request, each counter a dashboard, rule or alarm reads is exported at 0, with each
    label value it is queried by, so `increase()` sees its first step and panels show 0, not "No
    data". A sink's own counters appear in that sink's run only; what these runs do not configure
    (NOT_PROVOKED) appears in none."""
    other_sink = {"file": "stripe_webhook_firehose_", "firehose": "stripe_webhook_file_"}
    for run in runs:
        checked = 0
        for query in queries:
            for s in query.selections:
                name = s.metric.name
                if name in NODE_EXPORTER_METRICS or name in OPEN_LABEL_SETS or name in NOT_PROVOKED:
                    continue
                if metrics[name].kind != "counter":
                    continue
                if name.startswith(other_sink[run.sink]):
                    continue
                series = run.first.series.get(name, [])
                assert series, f"{run.sink}: {name} ({query.expr}) is not in the first scrape"
                for label, op, value in s.matchers:
                    if op == "=" and label not in TARGET_LABELS:
                        assert any(labels.get(label) == value for labels in series), (
                            f'{run.sink}: {name}{{{label}="{value}"}} is not in the first scrape'
                        )
                checked += 1
        assert checked > 10, run.sink
        for line in run.first.text.splitlines():
            if line.startswith("stripe_webhook_") and "_total" in line.split(" ")[0]:
                assert line.rsplit(" ", 1)[1] == "0", f"{run.sink}: not 0 before any request: {line}"


def test_every_dashboard_query_returns_data_on_a_real_prometheus(
    runs: list[Run], grafana: dict[str, Any], metrics: dict[str, Metric]
) -> None:
    """Prometheus scraped each run every second: each panel query gives series in one run at least,
    unless all it reads is NOT_PROVOKED."""
    panels = grafana_panels(grafana)
    targets = [(p["title"], t["refId"]) for p in panels for t in p["targets"]]
    assert [(title, expr) for title, expr, _ in grafana_targets(grafana)] and len(targets) == len(grafana_targets(grafana))
    for (title, ref), (_, expr, _) in zip(targets, grafana_targets(grafana)):
        returned = {run.sink: run.dashboard[(title, ref)] for run in runs}
        reads = {s.metric.name for s in check_promql(expr, metrics).selections}
        if reads <= set(NOT_PROVOKED):
            assert not any(returned.values()), f"{title}: {expr} returned data; drop it from NOT_PROVOKED"
            continue
        assert any(returned.values()), f"{title} ({ref}): no series in any run for {expr}"


def test_the_rules_evaluate_on_a_real_prometheus(runs: list[Run], rules: dict[str, Any]) -> None:
    expected = {r["alert"] for r in rule_list(rules)}
    for run in runs:
        loaded = {r["name"]: r for group in run.rules for r in group["rules"]}
        assert set(loaded) == expected, run.sink
        for name, rule in loaded.items():
            assert rule["health"] == "ok", f"{run.sink}: {name} failed to evaluate: {rule.get('lastError')}"
        # The one alert without `for:` fires on the first oversize body S3 refused, though its series
        # appeared at 1 (increase() alone would miss it).
        expected_state = "firing" if run.sink == "firehose" else "inactive"
        assert loaded["StripeWebhookOversizeToS3Failures"]["state"] == expected_state, run.sink


def test_prometheus_rules_pass_promtool(prometheus_bins: dict[str, Path]) -> None:
    """`promtool check rules` (Prometheus' own parser and templates) and `promtool test rules`: the
    scenarios in prometheus-rules.test.yaml say when each alert fires and when it must not."""
    promtool = str(prometheus_bins["promtool"])
    for args in (["check", "rules", PROMETHEUS_RULES.name], ["test", "rules", PROMETHEUS_RULES_TESTS.name]):
        r = subprocess.run([promtool, *args], cwd=PROMETHEUS_RULES.parent, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}"
    tested = set(re.findall(r"alertname: (\w+)", PROMETHEUS_RULES_TESTS.read_text()))
    assert tested == set(re.findall(r"- alert: (\w+)", PROMETHEUS_RULES.read_text())), "every alert has a scenario"


# ---------------------------------------------------------------------------------------------
# Tests: the Grafana dashboard and the Prometheus rules
# ---------------------------------------------------------------------------------------------


def test_grafana_dashboard_is_importable(grafana: dict[str, Any]) -> None:
    (source,) = grafana["__inputs"]
    assert source == source | {"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    required = {(r["type"], r["id"]) for r in grafana["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
    assert grafana["uid"] and grafana["title"] and isinstance(grafana["schemaVersion"], int)
    assert grafana["id"] is None, "an exported dashboard carries no database id"
    ids = [p["id"] for p in grafana["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in grafana["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert ("panel", panel["type"]) in required, f"{panel['type']} panels must be in __requires"
        assert panel["datasource"] == datasource, panel["title"]
        assert len(panel["description"]) > 40, f"{panel['title']}: say what the panel shows"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == datasource for t in panel["targets"]), panel["title"]
    (job,) = grafana["templating"]["list"]
    assert job["name"] == "job" and job["datasource"] == datasource and job["includeAll"] and job["allValue"] == ".+"
    # Every datasource reference is the import's input: nothing points at a database of its own.
    uids = set(re.findall(r'"uid": "([^"]*)"', json.dumps(grafana["panels"]) + json.dumps(grafana["templating"])))
    assert uids == {"${DS_PROMETHEUS}"}, uids


def test_grafana_panels_cover_the_issue(grafana: dict[str, Any], queries: list[Query]) -> None:
    """Issue 15: requests by outcome, refusal rates, verification failures by reason, request and
    sink-put latency from the histograms, readiness, the file sink (fsync latency, queue depth,
    unsealed backlog, sealed bytes) and the Firehose sink (calls by outcome, records per call,
    retries and throttles, in-flight vs limit, queue depth). Issue 23: forwarding deliveries by
    outcome, lag in records and seconds, dead letters, SQS calls."""
    grafana_exprs = {expr for _, expr, _ in grafana_targets(grafana)}
    read = {s.series for q in queries if q.expr in grafana_exprs for s in q.selections}
    for series in (
        "stripe_webhook_requests_total", "stripe_webhook_verification_failures_total",
        "stripe_webhook_request_seconds_bucket", "stripe_webhook_sink_put_seconds_bucket", "stripe_webhook_sink_ready",
        "stripe_webhook_file_sync_seconds_bucket", "stripe_webhook_file_queue_records",
        "stripe_webhook_file_unsealed_segments", "stripe_webhook_file_unsealed_bytes",
        "stripe_webhook_file_unsealed_oldest_seconds", "stripe_webhook_file_sealed_bytes_total",
        "stripe_webhook_firehose_calls_total", "stripe_webhook_firehose_batch_records_bucket",
        "stripe_webhook_firehose_retries_total", "stripe_webhook_firehose_throttles_total",
        "stripe_webhook_firehose_in_flight", "stripe_webhook_firehose_in_flight_limit",
        "stripe_webhook_firehose_queue_records",
        "stripe_webhook_forward_deliveries_total", "stripe_webhook_forward_lag_records",
        "stripe_webhook_forward_lag_seconds", "stripe_webhook_forward_dead_letters", "stripe_webhook_sqs_calls_total",
    ):
        assert series in read, f"no Grafana panel reads {series}"
    quantiles = {m for e in grafana_exprs for m in re.findall(r"histogram_quantile\((0\.\d+), sum by \(le[^)]*\) \(rate\((\w+)_bucket", e)}
    for histogram in ("stripe_webhook_request_seconds", "stripe_webhook_sink_put_seconds"):
        assert {("0.5", histogram), ("0.99", histogram)} <= quantiles, f"p50 and p99 of {histogram}"


def test_grafana_legends_name_labels_the_query_keeps(grafana: dict[str, Any], metrics: dict[str, Metric]) -> None:
    for title, expr, legend in grafana_targets(grafana):
        query = check_promql(expr, metrics)
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            assert query.output_labels is not None and label in query.output_labels, f"{title}: {{{{{label}}}}} in {expr}"


def test_prometheus_rules_are_complete(rules: dict[str, Any], metrics: dict[str, Metric]) -> None:
    alerts = rule_list(rules)
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names)), names
    # Issue 15: 5xx rate, signature-failure spike, sink not ready, sealing lagging (oldest age /
    # backlog growing), Firehose throttling, oversize-to-S3 failures. Issue 21: no accepted webhook
    # for hours, the file sink's free disk (node_exporter). Issue 23: forwarding lag in seconds, dead
    # letters, a forwarder stopped by an error, SQS errors.
    reads = {name: {s.metric.name for s in check_promql(r["expr"], metrics).selections} for name, r in zip(names, alerts)}
    for metric in (
        "stripe_webhook_requests_total", "stripe_webhook_verification_failures_total", "stripe_webhook_sink_ready",
        "stripe_webhook_file_unsealed_oldest_seconds", "stripe_webhook_file_unsealed_segments",
        "stripe_webhook_firehose_throttles_total", "stripe_webhook_firehose_oversize_total",
        "node_filesystem_avail_bytes", "stripe_webhook_forward_lag_seconds", "stripe_webhook_forward_dead_letters",
        "stripe_webhook_forward_failed", "stripe_webhook_sqs_calls_total",
    ):
        assert any(metric in r for r in reads.values()), f"no alert reads {metric}"
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"StripeWebhook[A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert "for" not in rule or re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        query = check_promql(rule["expr"], metrics)
        for text in (annotations["summary"], annotations["description"]):
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert query.output_labels and label in query.output_labels, f"{rule['alert']}: $labels.{label}"
            assert text.count("{{") == text.count("}}"), rule["alert"]


def test_every_promql_expression_parses_and_reads_what_it_means(queries: list[Query]) -> None:
    """check_promql asserts; this names the count so an empty file cannot pass."""
    assert len(queries) >= 40, len(queries)
    assert all(q.selections for q in queries)


# ---------------------------------------------------------------------------------------------
# Tests: CloudWatch, CloudFormation and Terraform
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sqs", [False, True], ids=["", "sqs"])
@pytest.mark.parametrize(("lambda_", "ecs"), [(False, False), (True, False), (False, True), (True, True)])
def test_cloudwatch_dashboards_agree(
    cfn_dashboard: dict[str, Any], terraform: Terraform, lambda_: bool, ecs: bool, sqs: bool
) -> None:
    cfn = cfn_dashboard_widgets(cfn_dashboard, lambda_=lambda_, ecs=ecs, sqs=sqs)
    tf = tf_dashboard_widgets(terraform, lambda_=lambda_, ecs=ecs, sqs=sqs)
    assert cfn == tf
    namespaces = {m.namespace for m in widget_metrics(cfn)}
    assert namespaces == {"AWS/Firehose"} | ({"AWS/Lambda", EMF_NAMESPACE} if lambda_ else set()) | (
        {"AWS/ApplicationELB"} if ecs else set()
    ) | ({"AWS/SQS"} if sqs else set())
    # The function's own SQS metrics appear when it has the destination (both stacks named).
    sqs_emf = {m.name for m in widget_metrics(cfn) if m.name.startswith("stripe_webhook_sqs_")}
    assert bool(sqs_emf) == (lambda_ and sqs), sqs_emf
    assert terraform.locals["dashboard_stream"] == "${aws_kinesis_firehose_delivery_stream.archive.name}"
    # Empty, never null, when their part is off: Terraform refuses null in a string template, and the
    # text widgets name them (the widgets are left out, but their locals are evaluated all the same).
    for local, ref in (
        ("dashboard_load_balancer", "aws_lb.webhook[0].arn_suffix"),
        ("dashboard_target_group", "aws_lb_target_group.webhook[0].arn_suffix"),
        ("dashboard_queue", "aws_sqs_queue.events[0].name"),
        ("dashboard_dead_letter_queue", "aws_sqs_queue.dead_letter[0].name"),
    ):
        assert terraform.locals[local] == f'${{try({ref}, "")}}', local
    tf_name = terraform.resource("aws_cloudwatch_dashboard", "webhooks")["dashboard_name"]
    assert tf_name == "${var.dashboard_name}-${var.environment}"
    assert cfn_dashboard["Resources"]["Dashboard"]["Properties"]["DashboardName"] == {"Fn::Sub": "${DashboardName}-${Environment}"}


def test_cloudwatch_dashboard_shows_what_the_issue_asks(cfn_dashboard: dict[str, Any]) -> None:
    widgets = cfn_dashboard_widgets(cfn_dashboard, lambda_=True, ecs=True, sqs=True)
    shown = {(m.namespace, m.name, m.stat) for m in widget_metrics(widgets)}
    for namespace, name, stat in (
        ("AWS/Firehose", "IncomingRecords", "Sum"), ("AWS/Firehose", "IncomingBytes", "Sum"),
        ("AWS/Firehose", "ThrottledRecords", "Sum"), ("AWS/Firehose", "DeliveryToS3.Success", "Average"),
        ("AWS/Firehose", "DeliveryToS3.DataFreshness", "Maximum"),
        ("AWS/Lambda", "Invocations", "Sum"), ("AWS/Lambda", "Errors", "Sum"), ("AWS/Lambda", "Throttles", "Sum"),
        ("AWS/Lambda", "Duration", "p99"), ("AWS/Lambda", "ConcurrentExecutions", "Maximum"),
        (EMF_NAMESPACE, "stripe_webhook_requests_total", "Sum"),
        (EMF_NAMESPACE, "stripe_webhook_verification_failures_total", "Sum"),
        (EMF_NAMESPACE, "stripe_webhook_sink_put_seconds", "p99"),
        ("AWS/SQS", "NumberOfMessagesSent", "Sum"), ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum"),
        (EMF_NAMESPACE, "stripe_webhook_sqs_calls_total", "Sum"), (EMF_NAMESPACE, "stripe_webhook_sqs_call_seconds", "p99"),
        (EMF_NAMESPACE, "stripe_webhook_sqs_messages_total", "Sum"),
        (EMF_NAMESPACE, "stripe_webhook_sqs_messages_failed_total", "Sum"),
    ):
        assert (namespace, name, stat) in shown, (namespace, name, stat)
    for w in widgets:
        assert set(w) == {"type", "width", "height", "properties"}, w
        assert w["width"] == 24 or 24 % w["width"] == 0, w
        if w["type"] == "metric":
            p = w["properties"]
            assert p["region"] == "<Region>" and p["view"] == "timeSeries" and p["period"] == 300, p["title"]
    # Each row adds up to the 24 columns, so the rows of an absent stack leave no holes.
    row = 0
    for w in widgets:
        row += w["width"]
        assert row <= 24, "a row of widgets wider than the dashboard"
        row %= 24
    assert row == 0


def test_cloudwatch_metrics_exist_with_their_dimensions(
    cfn_dashboard: dict[str, Any], cfn_main: dict[str, Any], cfn_lambda: dict[str, Any], cfn_ecs: dict[str, Any],
    metrics: dict[str, Metric],
) -> None:
    used = widget_metrics(cfn_dashboard_widgets(cfn_dashboard, lambda_=True, ecs=True, sqs=True))
    for template in (cfn_lambda, cfn_ecs):
        used += alarm_metrics(cfn_alarms(template))
    for m in used:
        dims = frozenset(k for k, _ in m.dimensions)
        if m.namespace == EMF_NAMESPACE:
            metric = metrics.get(m.name)
            assert metric, f"{m.where}: {m.name} is not a metric of crates/stripe-webhook-metrics"
            # The function writes each label set with its name and all the labels as the dimensions,
            # and each dashboard widget and alarm reads its own function's series only.
            expected = EMF.dimensions(metric)
            assert dims == expected, f"{m.where}: {m.name} has dimensions {sorted(expected)}, not {sorted(dims)}"
            function = dict(m.dimensions)[EMF.function_dimension]
            assert function == FUNCTION_NAME, (
                f"{m.where}: {m.name} must select {EMF.function_dimension}={FUNCTION_NAME}, not {function}"
            )
            stats = STATS_BY_KIND[metric.kind]
            ok = m.stat in stats or (metric.kind == "histogram" and PERCENTILE.fullmatch(m.stat))
            assert ok, f"{m.where}: {m.stat} of the {metric.kind} {m.name}"
        else:
            assert m.name in AWS_METRICS[m.namespace], f"{m.where}: {m.namespace} {m.name}"
            assert dims in AWS_DIMENSIONS[m.namespace], f"{m.where}: {m.namespace} {m.name} by {sorted(dims)}"
    # The main stack's Firehose alarms read the same stream the dashboard does.
    for alarm in cfn_alarms(cfn_main).values():
        ((metric, _, _),) = alarm["metrics"].values()
        assert metric[0] == "AWS/Firehose" and metric[1] in AWS_METRICS["AWS/Firehose"]
        assert metric[2] == (("DeliveryStreamName", "<DeliveryStreamName>"),)


def lambda_sink_labels() -> set[str]:
    """The `sink` values the function can report, read from the code: the Firehose sink's name, and
    the name of Firehose with the SQS destination beside it (`BothSinks`)."""
    firehose = re.search(
        r"fn name\(&self\) -> &'static str \{\s*\"([^\"]+)\"",
        (ROOT / "crates" / "stripe-webhook-sink-firehose" / "src" / "lib.rs").read_text(),
    )
    both = re.findall(r'BothSinks::new\("([^"]+)"', (ROOT / "crates" / "stripe-webhook-service" / "src" / "sinks.rs").read_text())
    assert firehose and both, "the sinks' names were not found in the code"
    return {firehose.group(1), *both}


def test_every_selection_of_a_sink_covers_every_sink_the_service_reports(
    cfn_dashboard: dict[str, Any], cfn_lambda: dict[str, Any], queries: list[Query]
) -> None:
    """A widget or alarm that selects one `sink` value misses a service whose sink is another
    (`firehose+sqs` with the SQS destination): whatever selects a sink in CloudWatch selects each of
    them, with the same statistic and the other dimensions alike; PromQL groups by the label instead.
    (Terraform's dashboard and alarms are the same as CloudFormation's: tests above.)"""
    sinks = lambda_sink_labels()
    assert sinks == {"firehose", "firehose+sqs"}, sinks
    used = widget_metrics(cfn_dashboard_widgets(cfn_dashboard, lambda_=True, ecs=False, sqs=True))
    used += alarm_metrics(cfn_alarms(cfn_lambda))
    selections: dict[tuple[Any, ...], set[str]] = {}
    for m in used:
        dims = dict(m.dimensions)
        if "sink" in dims:
            others = tuple(sorted((k, v) for k, v in dims.items() if k != "sink"))
            selections.setdefault((m.where, m.name, m.stat, others), set()).add(dims["sink"])
    assert selections, "the dashboard shows the sink put latency by sink"
    for key, selected in selections.items():
        assert "*" in selected or selected >= sinks, f"{key}: selects sink {sorted(selected)}, not each of {sorted(sinks)}"
    for query in queries:
        assert not re.search(r'\bsink\s*(=|!=|=~|!~)\s*"', query.expr), f"a PromQL query selects a sink: {query.expr}"


# Alarms on silence: their metric is absent when nothing arrives, so missing data breaches.
SILENCE_ALARMS = {"no-accepted-webhooks", "reconcile-not-clean"}


def test_lambda_and_ecs_alarms_agree(cfn_lambda: dict[str, Any], cfn_ecs: dict[str, Any], terraform: Terraform) -> None:
    assert set(cfn_alarms(cfn_lambda)) == {
        "lambda-errors", "lambda-throttles", "5xx-rate", "signature-failures", "oversize-to-s3-failures",
        "no-accepted-webhooks",
    }
    assert set(cfn_alarms(cfn_ecs)) == {
        "5xx-rate", "4xx-rate", "unhealthy-targets", "no-accepted-webhooks", "reconcile-not-clean",
    }
    for stack, template in (("lambda", cfn_lambda), ("ecs", cfn_ecs)):
        cfn, tf = cfn_alarms(template), tf_alarms(terraform, stack)
        assert set(cfn) == set(tf), stack
        for suffix, alarm in cfn.items():
            mine = tf[suffix]
            assert alarm["actions"] == ([{"Ref": "AlarmTopicArn"}],) * 2, suffix
            assert mine["actions"] == ("${local.alarm_actions}",) * 2, suffix
            for key in ("description", "metrics", "threshold", "operator", "evaluation_periods", "datapoints", "missing"):
                assert alarm[key] == mine[key], (
                    f"{stack} {suffix}: {key} differs\n  CloudFormation: {alarm[key]}\n  Terraform: {mine[key]}"
                )
            # Counters are absent when zero: no data is no trouble, except for an alarm on silence.
            assert alarm["missing"] == ("breaching" if suffix in SILENCE_ALARMS else "notBreaching"), suffix
            returned = [i for i, (_, returns, _) in alarm["metrics"].items() if returns]
            assert len(returned) == 1, f"{suffix}: exactly one query is the alarm's value"
    assert terraform.locals["lambda_function_name"] == "${one(aws_lambda_function.webhook[*].function_name)}"
    names = terraform.resources["aws_cloudwatch_metric_alarm"]
    for stack, count in (("lambda", "${local.lambda_count}"), ("ecs", "${local.ecs_count}")):
        for name in TF_ALARMS_BY_STACK[stack]:
            expected = "${local.reconcile_count}" if name == "reconcile_not_clean" else count
            assert names[name]["count"] == expected, name


def test_dashboard_imports_are_exported(
    cfn_dashboard: dict[str, Any], cfn_main: dict[str, Any], cfn_lambda: dict[str, Any], cfn_ecs: dict[str, Any],
    cfn_sqs: dict[str, Any],
) -> None:
    exports = {
        stack: {o["Export"]["Name"]["Fn::Sub"] for o in t["Outputs"].values() if "Export" in o}
        for stack, t in (("Core", cfn_main), ("Lambda", cfn_lambda), ("Ecs", cfn_ecs), ("Sqs", cfn_sqs))
    }
    imports = re.findall(r'"Fn::ImportValue": \{"Fn::Sub": "\$\{(\w+)StackName\}(-\w+)"\}', json.dumps(cfn_dashboard))
    assert len(imports) == 7, imports
    for stack, suffix in imports:
        assert "${AWS::StackName}" + suffix in exports[stack], f"{stack} stack does not export {suffix}"
    assert cfn_lambda["Outputs"]["FunctionName"]["Value"] == {"Ref": "Function"}
    assert cfn_ecs["Outputs"]["LoadBalancerFullName"]["Value"] == {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]}
    assert cfn_ecs["Outputs"]["TargetGroupFullName"]["Value"] == {"Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"]}
    assert cfn_sqs["Outputs"]["QueueName"]["Value"] == {"Fn::GetAtt": ["Queue", "QueueName"]}
    assert cfn_sqs["Outputs"]["DeadLetterQueueName"]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
