"""The scheduling recipes of docs/reconcile.md (section 7) and the ECS stacks' scheduled reconcile.

What this proves: the systemd service and timer on the page are the files an operator installs
(extracted verbatim, only ExecStart's binary swapped for a stand-in, since `systemd-analyze verify`
checks that it exists) and systemd accepts them; the service runs as the shipped server unit's user
(the same DynamicUser name, hence the same uid) on its state directory, so what `--archive-missing`
writes there belongs to the server; the cron recipe runs as a named non-root user on its own
archive; every recipe with a restricted key says `--kind snapshot`; the ECS task (CloudFormation and
Terraform) runs the same image as `/stripe-webhook reconcile` on the S3 archive with the key from
Secrets Manager, and its alarm reads the metric its log filter makes of the JSON summary the page
documents. What it does not prove: that systemd shares the uid at run time, or that the CLI refuses
another user's directory; bins/stripe-webhook/tests/reconcile_owner.rs runs the server and
reconcile as two users for that.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import Terraform
from layout_spec import ROOT, SYSTEMD_ARCHIVE_DIR, SYSTEMD_STATE_DIRECTORY, SYSTEMD_UNIT

RECONCILE_DOC = ROOT / "docs" / "reconcile.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
CLI_PATH = "/usr/local/bin/stripe-webhook"
SERVICE = "stripe-webhook-reconcile.service"
TIMER = "stripe-webhook-reconcile.timer"
# The server unit sets no User=: its dynamic user is named after the unit.
SERVER_USER = SYSTEMD_UNIT.stem
# systemd-analyze security: 0 (locked down) to 10; the server unit is held to the same bound.
MAX_EXPOSURE = 2.0


def section(doc: str, heading: str) -> str:
    start = doc.index(heading)
    end = doc.find("\n## ", start + len(heading))
    return doc[start : end if end != -1 else len(doc)]


def scheduling() -> str:
    return section(RECONCILE_DOC.read_text(), "## 7. Scheduling it")


def unit_files() -> dict[str, str]:
    """File name -> text of each ```ini block whose first line is `# /etc/systemd/system/<name>`."""
    found = {}
    for block in re.findall(r"```ini\n(.*?)```", scheduling(), re.S):
        first, _, _ = block.partition("\n")
        m = re.fullmatch(r"# /etc/systemd/system/([\w.-]+)", first)
        assert m, f"a unit block must start with its installed path: {first!r}"
        found[m.group(1)] = block
    return found


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def options(words: list[str]) -> dict[str, str]:
    """`--flag value` pairs of a command line (flags without a value map to "")."""
    out: dict[str, str] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            following = words[i + 1] if i + 1 < len(words) else ""
            out[word] = "" if following.startswith("--") else following
    return out


def test_the_page_has_the_service_and_the_timer() -> None:
    assert set(unit_files()) == {SERVICE, TIMER}


def test_the_service_runs_as_the_server_on_its_archive() -> None:
    server = parse_unit(SYSTEMD_UNIT.read_text())["Service"]
    service = parse_unit(unit_files()[SERVICE])["Service"]
    assert server["DynamicUser"] == service["DynamicUser"] == "yes"
    assert "User" not in server, "the server unit's dynamic user is named after the unit"
    assert service["User"] == SERVER_USER
    assert service["StateDirectory"] == server["StateDirectory"] == SYSTEMD_STATE_DIRECTORY
    assert service["Type"] == "oneshot"
    words = shlex.split(service["ExecStart"])
    assert words[:3] == [CLI_PATH, "reconcile", SYSTEMD_ARCHIVE_DIR]
    flags = options(words)
    assert flags["--archive-missing"] == SYSTEMD_ARCHIVE_DIR
    assert flags["--kind"] == "snapshot"
    assert (flags["--since"], flags["--until"]) == ("now-4d", "now-3d")
    # The key: a root-only file, handed over as a credential, never in the command or the server.
    credential, _, source = service["LoadCredential"].partition(":")
    assert flags["--api-key-file"] == f"%d/{credential}" and source.startswith("/etc/")


def test_the_timer_starts_the_service_daily() -> None:
    timer = parse_unit(unit_files()[TIMER])
    assert "Unit" not in timer["Timer"], "a timer starts the service of its own name"
    assert timer["Timer"]["OnCalendar"].endswith("UTC") and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install Debian's `systemd` package (it works offline, without PID 1)")
    return path


def _installed(tmp_path: Path) -> list[Path]:
    """The two units in one directory, ExecStart's binary a stand-in that exists."""
    binary = tmp_path / "stripe-webhook"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    paths = []
    for name, text in unit_files().items():
        assert text.count(CLI_PATH) <= 1
        path = tmp_path / name
        path.write_text(text.replace(f"ExecStart={CLI_PATH} ", f"ExecStart={binary} "))
        paths.append(path)
    return paths


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    paths = _installed(tmp_path)
    r = subprocess.run([_systemd_analyze(), "verify", *map(str, paths)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), f"{r.stdout}{r.stderr}"


def test_systemd_analyze_security(tmp_path: Path) -> None:
    (service,) = [p for p in _installed(tmp_path) if p.name == SERVICE]
    r = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", f"--threshold={round(MAX_EXPOSURE * 10)}", "--no-pager", str(service)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert r.returncode == 0 and float(m.group(1)) <= MAX_EXPOSURE, r.stdout[-3000:]


def test_the_cron_recipe_runs_as_the_servers_user() -> None:
    (block,) = re.findall(r"```cron\n(.*?)```", scheduling(), re.S)
    (line,) = [line for line in block.splitlines() if line and not line.startswith("#")]
    minute, hour, dom, month, dow, user, command = line.split(None, 6)
    assert user not in {"root", "0"}, "reconcile with --archive-missing runs as the server's user"
    words = shlex.split(command.split(" > ")[0])
    assert words[:2] == [CLI_PATH, "reconcile"]
    flags = options(words)
    assert flags["--archive-missing"] == words[2], "it fills the archive it reads"
    assert flags["--kind"] == "snapshot"
    assert "%" not in command.replace("\\%", ""), "cron turns an unescaped % into a newline"


def test_every_scheduled_or_runbook_reconcile_says_kind_snapshot() -> None:
    """A restricted key cannot list thin events (v2 refuses restricted keys): without `--kind
    snapshot` every run would exit 2."""
    texts = {"reconcile.md section 7": scheduling(), "runbooks.md": RUNBOOKS.read_text()}
    for where, text in texts.items():
        # Each command line (not a mention of the command in prose): `reconcile` and its source.
        commands = re.findall(r"stripe-webhook\s+reconcile\s+(?:s3://|/|<|\./)[^`\n]*(?:\\\n[^`\n]*)*", text)
        commands += re.findall(r"^\s+reconcile s3://[^\n]*", text, re.M)
        assert commands, where
        for command in commands:
            if command.rstrip().endswith("…"):
                continue  # `runuser … -- stripe-webhook reconcile …`: the same command, shortened
            assert "--kind snapshot" in command, f"{where}: {command!r}"


# --- ECS: the scheduled task, CloudFormation and Terraform ---


def test_the_ecs_task_reports_on_the_s3_archive(cfn_ecs: dict[str, Any], terraform: Terraform) -> None:
    resources = cfn_ecs["Resources"]
    condition = "HasScheduledReconcile"
    assert cfn_ecs["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReconcileApiKeySecretArn"}, ""]}]}
    reconcile = {name for name, r in resources.items() if r.get("Condition") == condition}
    assert {"ReconcileTaskDefinition", "ScheduledReconcile", "ReconcileCleanRunsFilter", "ReconcileNotCleanAlarm"} <= reconcile
    (container,) = resources["ReconcileTaskDefinition"]["Properties"]["ContainerDefinitions"]
    (server,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["Image"] == server["Image"] == {"Ref": "ImageUri"}
    assert container["User"] == server["User"] and container["ReadonlyRootFilesystem"] is True
    assert container["EntryPoint"] == ["/stripe-webhook"]
    command = container["Command"]
    assert command[0] == "reconcile"
    assert command[1]["Fn::Sub"][0] == "s3://${Bucket}/webhooks/"
    flags = options(command[2:])
    assert flags == {"--since": "now-4d", "--until": "now-3d", "--kind": "snapshot", "--json": ""}
    assert container["Secrets"] == [{"Name": "STRIPE_API_KEY", "ValueFrom": {"Ref": "ReconcileApiKeySecretArn"}}]
    schedule = resources["ScheduledReconcile"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "ReconcileSchedule"} and schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["Target"]["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "ReconcileTaskDefinition"}

    tf = terraform.locals["reconcile_container_definition"]
    assert tf["image"] == "${var.image_uri}" and tf["entryPoint"] == ["/stripe-webhook"]
    assert tf["command"][0] == "reconcile" and tf["command"][1] == "s3://${aws_s3_bucket.archive.id}/webhooks/"
    assert options(tf["command"][2:]) == flags
    assert tf["secrets"] == [{"name": "STRIPE_API_KEY", "valueFrom": "${var.reconcile_api_key_secret_arn}"}]
    assert terraform.locals["reconcile_count"] == '${var.ecs_enabled && var.reconcile_api_key_secret_arn != "" ? 1 : 0}'
    schedule_tf = terraform.resource("aws_scheduler_schedule", "reconcile")
    assert schedule_tf["schedule_expression"] == "${var.reconcile_schedule}"
    assert schedule_tf["schedule_expression_timezone"] == "UTC"


def test_the_alarm_reads_what_the_filter_counts(cfn_ecs: dict[str, Any], terraform: Terraform) -> None:
    resources = cfn_ecs["Resources"]
    (transform,) = resources["ReconcileCleanRunsFilter"]["Properties"]["MetricTransformations"]
    alarm = resources["ReconcileNotCleanAlarm"]["Properties"]
    assert (transform["MetricNamespace"], transform["MetricName"]) == (alarm["Namespace"], alarm["MetricName"])
    assert alarm["TreatMissingData"] == "breaching", "a run that did not happen is not clean"
    pattern = resources["ReconcileCleanRunsFilter"]["Properties"]["FilterPattern"]
    filter_tf = terraform.resource("aws_cloudwatch_log_metric_filter", "reconcile_clean_runs")
    assert filter_tf["pattern"].replace('\\"', '"') == pattern
    (transform_tf,) = filter_tf["metric_transformation"]
    alarm_tf = terraform.resource("aws_cloudwatch_metric_alarm", "reconcile_not_clean")
    assert (transform_tf["namespace"], transform_tf["name"]) == (alarm_tf["namespace"], alarm_tf["metric_name"])
    # The filter's fields are the documented summary's.
    doc = RECONCILE_DOC.read_text()
    summary = re.search(r'\{[^\n]*"report":"summary"[^\n]*\}', doc)
    assert summary, "reconcile.md shows the JSON summary"
    for field in re.findall(r"\$\.(\w+)", pattern):
        assert f'"{field}":' in summary.group(0), f"the summary has no {field}"
