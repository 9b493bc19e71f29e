"""Every alarm reaches someone, and every alarm and alert links a runbook that exists.

CloudFormation: each `AWS::CloudWatch::Alarm` of every template in infra/cloudformation has actions
that exist with any parameters a deployment can pass: a list (no `Fn::If` that can leave it empty) of
SNS topics that are either created unconditionally by the same template, with an e-mail subscription
whose address is a required parameter, or a required parameter validated as an SNS topic ARN. The
guide's `aws cloudformation deploy` commands (infra/README.md, docs/deploy.md) pass every required
parameter of the template they deploy, so none of them can leave an alarm silent.

Terraform: each `aws_cloudwatch_metric_alarm` notifies topics created without `count`, each with a
subscription to a required, validated variable; terraform.tfvars.example sets every required variable.

Runbooks: each alarm description ends with `Runbook: <RunbooksUrl>#<anchor>` (an absolute address: a
required parameter or variable), each Prometheus rule's `runbook_url` is the same address taken from
Prometheus' external label `runbooks_url`, each anchor is a `##` section of docs/runbooks.md with one
line that names the alarm or alert, and every section is linked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Terraform, load_cfn
from layout_spec import INFRA, ROOT, TERRAFORM_DIR

CFN_TEMPLATES = sorted((INFRA / "cloudformation").glob("*.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PROMETHEUS_RULES = INFRA / "observability" / "prometheus-rules.yaml"
TFVARS_EXAMPLE = TERRAFORM_DIR / "terraform.tfvars.example"
# The documents whose `aws cloudformation deploy` commands an operator copies.
GUIDES = (INFRA / "README.md", ROOT / "docs" / "deploy.md", ROOT / "docs" / "forwarding-sqs.md")

RUNBOOKS_PARAMETER = "RunbooksUrl"
RUNBOOKS_VARIABLE = "runbooks_url"
# Prometheus fills this from `global.external_labels.runbooks_url` of its configuration.
PROMETHEUS_RUNBOOKS = "{{ $externalLabels.runbooks_url }}"
SNS_TOPIC_ARN = re.compile(r"^\^arn:aws\[a-z-\]\*:sns:.*\$$")


def cfn_alarm_resources() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(template file, logical id, alarm properties, template) of every alarm of every template."""
    found = []
    for path in CFN_TEMPLATES:
        template = load_cfn(path)
        for name, resource in template["Resources"].items():
            if resource["Type"] == "AWS::CloudWatch::Alarm":
                found.append((path.name, name, resource["Properties"], template))
    return found


def required_parameters(template: dict[str, Any]) -> set[str]:
    return {name for name, p in template.get("Parameters", {}).items() if "Default" not in p}


def test_the_templates_have_alarms() -> None:
    by_file = {f for f, _, _, _ in cfn_alarm_resources()}
    assert {"stripe-webhooks.yaml", "stripe-webhooks-ecs.yaml", "stripe-webhooks-lambda.yaml"} <= by_file, by_file


def _intrinsics(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _intrinsics(v)}
    if isinstance(node, list):
        return {k for v in node for k in _intrinsics(v)}
    return set()


@pytest.mark.parametrize(
    ("file", "alarm", "props", "template"), cfn_alarm_resources(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_cloudformation_alarm_notifies_someone(
    file: str, alarm: str, props: dict[str, Any], template: dict[str, Any]
) -> None:
    resources, parameters = template["Resources"], template.get("Parameters", {})
    for key in ("AlarmActions", "OKActions"):
        actions = props.get(key)
        assert isinstance(actions, list) and actions, f"{file} {alarm}: {key} must be a non-empty list, not {actions!r}"
        assert not _intrinsics(actions) & {"Fn::If", "Condition"}, f"{file} {alarm}: {key} must not depend on a condition"
        for action in actions:
            assert isinstance(action, dict) and set(action) == {"Ref"}, f"{file} {alarm}: {key} {action!r}"
            target = action["Ref"]
            if target in parameters:
                p = parameters[target]
                assert "Default" not in p, f"{file} {alarm}: {target} must be required (no default)"
                assert SNS_TOPIC_ARN.match(p.get("AllowedPattern", "")), f"{file}: {target} must be validated as an SNS ARN"
                continue
            topic = resources[target]
            assert topic["Type"] == "AWS::SNS::Topic", f"{file} {alarm}: {target} is not an SNS topic"
            assert "Condition" not in topic, f"{file}: {target} must always exist"
            subscriptions = [
                r["Properties"]
                for r in resources.values()
                if r["Type"] == "AWS::SNS::Subscription"
                and r["Properties"]["TopicArn"] == {"Ref": target}
                and "Condition" not in r
            ]
            assert subscriptions, f"{file}: nobody is subscribed to {target}"
            for sub in subscriptions:
                endpoint = sub["Endpoint"]
                assert isinstance(endpoint, dict) and endpoint["Ref"] in required_parameters(template), (
                    f"{file}: the subscription's endpoint must be a required parameter"
                )


def test_every_terraform_alarm_notifies_someone(terraform: Terraform) -> None:
    alarms = terraform.resources["aws_cloudwatch_metric_alarm"]
    assert len(alarms) >= 8, sorted(alarms)
    for name, body in alarms.items():
        for key in ("alarm_actions", "ok_actions"):
            value = body.get(key)
            assert value, f"aws_cloudwatch_metric_alarm.{name} has no {key}"
            if value == "${local.alarm_actions}":
                value = terraform.locals["alarm_actions"]
            assert isinstance(value, list) and value, f"{name}: {key} must be a non-empty list, not {value!r}"
            for ref in value:
                m = re.fullmatch(r"\$\{aws_sns_topic\.(\w+)\.arn\}", ref)
                assert m, f"{name}: {key} {ref!r} must be the ARN of a topic created here"
                topic = terraform.resource("aws_sns_topic", m.group(1))
                assert "count" not in topic and "for_each" not in topic, f"aws_sns_topic.{m.group(1)} must always exist"
                subscriptions = [
                    s
                    for s in terraform.resources["aws_sns_topic_subscription"].values()
                    if s["topic_arn"] == ref and "count" not in s and "for_each" not in s
                ]
                assert subscriptions, f"nobody is subscribed to aws_sns_topic.{m.group(1)}"
                for sub in subscriptions:
                    m = re.fullmatch(r"\$\{var\.(\w+)\}", sub["endpoint"])
                    assert m, sub["endpoint"]
                    variable = terraform.variables[m.group(1)]
                    assert "default" not in variable and variable.get("validation"), f"var.{m.group(1)}: required, validated"


def test_the_tfvars_example_sets_every_required_variable(terraform: Terraform) -> None:
    import hcl2

    text = TFVARS_EXAMPLE.read_text()
    values = {k: v for k, v in hcl2.loads(text).items() if not k.startswith("__")}
    required = {name for name, body in terraform.variables.items() if "default" not in body}
    assert required >= {"bucket_name", "alarm_email", RUNBOOKS_VARIABLE}, required
    assert required <= set(values), f"terraform.tfvars.example lacks {required - set(values)}"
    # The settings it shows commented out are variables too.
    named = set(values) | set(re.findall(r"^# (\w+) +=", text, re.M))
    assert named <= set(terraform.variables), f"not variables: {named - set(terraform.variables)}"
    assert str(values[RUNBOOKS_VARIABLE]).strip('"').startswith("https://")


def guide_deploy_commands(path: Path) -> list[tuple[str, set[str], set[str]]]:
    """(template file name, parameter names passed, parameter names its comments suggest) of each
    `aws cloudformation deploy` in the document's code blocks, its continued lines joined. The
    suggestions are the `Name=value` words of its own trailing comment and of the comment lines right
    after it (`# Optional: DesiredCount=2 ...`)."""
    found = []
    # Fences paired in order (a block of another language is skipped whole, its closing fence too).
    for language, block in re.findall(r"^\s*```(\w*)\n(.*?)^\s*```", path.read_text(), re.S | re.M):
        if language not in {"", "sh", "bash", "console"}:
            continue
        text = re.sub(r"\\\n", " ", block)
        lines = [line.strip() for line in text.splitlines()]
        for i, line in enumerate(lines):
            if "aws cloudformation deploy" not in line:
                continue
            words = shlex.split(line, comments=True)
            template = words[words.index("--template-file") + 1]
            start = words.index("--parameter-overrides") + 1 if "--parameter-overrides" in words else len(words)
            passed = set()
            for word in words[start:]:
                if word.startswith("--"):
                    break
                passed.add(word.split("=", 1)[0])
            comments = [line.split(" # ", 1)[1]] if " # " in line else []
            for after in lines[i + 1 :]:
                if not after.startswith("#"):
                    break
                comments.append(after)
            suggested = {name for comment in comments for name in re.findall(r"\b([A-Z][A-Za-z0-9]+)=", comment)}
            found.append((Path(template).name, passed, suggested))
    return found


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_guides_pass_every_required_parameter(guide: Path) -> None:
    """What the guide deploys is what the tests above check: each command names every parameter
    without a default (the alarm topic, the alarm e-mail, the runbooks' address among them)."""
    commands = guide_deploy_commands(guide)
    assert commands, f"{guide.name}: no `aws cloudformation deploy` found"
    templates = {p.name: load_cfn(p) for p in CFN_TEMPLATES}
    for name, passed, suggested in commands:
        missing = required_parameters(templates[name]) - passed
        assert not missing, f"{guide.name}: the deploy of {name} does not pass {sorted(missing)}"
        # CloudFormation refuses a parameter the template does not declare, passed or suggested.
        unknown = (passed | suggested) - set(templates[name]["Parameters"])
        assert not unknown, f"{guide.name}: {name} has no parameter {sorted(unknown)}"


# --- Runbooks ---


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, list[str]]:
    """docs/runbooks.md: anchor -> the non-empty lines under its `##` heading."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("## "):
            current = github_anchor(line[3:])
            assert current not in sections, f"two runbooks for {current}"
            sections[current] = []
        elif current and line.strip():
            sections[current].append(line)
    return sections


def linked_runbooks(terraform: Terraform) -> dict[str, list[str]]:
    """Anchor -> what links it: each alarm (`<template> <logical id>`, `Terraform <name>`, by its
    name suffix after `-<environment>-`) and each Prometheus alert (its name)."""
    linked: dict[str, list[str]] = {}
    for file, alarm, props, template in cfn_alarm_resources():
        description = props["AlarmDescription"]
        assert isinstance(description, dict) and set(description) == {"Fn::Sub"}, f"{file} {alarm}: !Sub the description"
        assert RUNBOOKS_PARAMETER in required_parameters(template), f"{file}: {RUNBOOKS_PARAMETER} must be required"
        m = re.search(r"Runbook: \$\{" + RUNBOOKS_PARAMETER + r"\}#([a-z0-9-]+)$", description["Fn::Sub"])
        assert m, f"{file} {alarm}: the description must end with its runbook ({description!r})"
        suffix = props["AlarmName"]["Fn::Sub"].split("-${Environment}-", 1)[1]
        linked.setdefault(m.group(1), []).append(f"-{suffix}`")
    descriptions = [(k, a["description"]) for k, a in terraform.locals["alarms"].items()]
    descriptions += [(k, a["description"]) for k, a in terraform.locals["lambda_alarms"].items()]
    descriptions += [
        (body["alarm_name"].split("-${var.environment}-", 1)[1], body["alarm_description"])
        for name, body in terraform.resources["aws_cloudwatch_metric_alarm"].items()
        if "alarm_description" in body and body["alarm_description"] != "${each.value.description}"
    ]
    for suffix, description in descriptions:
        m = re.search(r"Runbook: \$\{var\." + RUNBOOKS_VARIABLE + r"\}#([a-z0-9-]+)$", description)
        assert m, f"Terraform {suffix}: the description must end with its runbook ({description!r})"
        linked.setdefault(m.group(1), []).append(f"-{suffix}`")
    assert "default" not in terraform.variables[RUNBOOKS_VARIABLE]
    rules = yaml.safe_load(PROMETHEUS_RULES.read_text())
    for rule in (r for group in rules["groups"] for r in group["rules"]):
        url = rule["annotations"]["runbook_url"]
        m = re.fullmatch(re.escape(PROMETHEUS_RUNBOOKS) + r"#([a-z0-9-]+)", url)
        assert m, f"{rule['alert']}: runbook_url must be {PROMETHEUS_RUNBOOKS}#<anchor>, not {url!r}"
        linked.setdefault(m.group(1), []).append(f"`{rule['alert']}`")
    return linked


def test_every_alarm_and_alert_has_its_one_line_runbook(terraform: Terraform) -> None:
    sections = runbook_sections()
    linked = linked_runbooks(terraform)
    assert set(linked) == set(sections), {
        "linked without a runbook": set(linked) - set(sections),
        "runbooks no alarm or alert links": set(sections) - set(linked),
    }
    for anchor, lines in sections.items():
        assert len(lines) == 1, f"runbook {anchor}: one line, got {len(lines)}"
        (line,) = lines
        for part in ("**Means:**", "**Check first:**", "**Do:**"):
            assert part in line, f"runbook {anchor} lacks {part}"
        for name in linked[anchor]:
            assert name in line, f"runbook {anchor} must name {name.strip('`-')}"


def test_a_lost_event_is_found_with_reconcile() -> None:
    """Stripe does not resend an event it got a 2xx for: a runbook that tells the operator to resend
    from Stripe must also name the tool that finds which events are missing."""
    for anchor, (line,) in runbook_sections().items():
        if re.search(r"resend", line, re.I) and re.search(r"lost|dropped|never (arrive|reach)", line, re.I):
            assert "stripe-webhook reconcile" in line, f"runbook {anchor}: name `stripe-webhook reconcile`"
