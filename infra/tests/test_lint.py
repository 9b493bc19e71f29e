"""Static checks: cfn-lint, checkov (every suppression justified and actually used), Terraform shape."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import CHECKOV_RUNS, Terraform
from layout_spec import CFN_DASHBOARD, CFN_ECS, CFN_LAMBDA, CFN_MAIN, CFN_SQS

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+):(.*)$")
MIN_REASON_CHARS = 40


@pytest.mark.parametrize("template", [CFN_MAIN, CFN_LAMBDA, CFN_ECS, CFN_DASHBOARD, CFN_SQS], ids=lambda p: p.name)
def test_cfn_lint_is_clean(tool_bins: dict[str, Path], template: Path) -> None:
    r = subprocess.run([str(tool_bins["cfn-lint"]), str(template)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"cfn-lint {template.name} (exit {r.returncode}):\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("run", sorted(CHECKOV_RUNS))
def test_checkov_is_clean(checkov_reports: dict[str, dict[str, Any]], run: str) -> None:
    report = checkov_reports[run]
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= 10, f"checkov saw too few resources: {summary}"
    assert summary["passed"] > 0, summary
    assert not failed and summary["failed"] == 0, "checkov failures:\n" + "\n".join(failed)


def _skip_comments(directory: Path) -> Counter[tuple[str, str, str]]:
    """(file name, check id, reason) of every `# checkov:skip=ID:reason` comment in a directory."""
    found: Counter[tuple[str, str, str]] = Counter()
    for path in sorted(directory.iterdir()):
        if path.suffix not in {".yaml", ".tf"}:
            continue
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                m = SKIP_COMMENT.search(line)
                assert m, f"{path.name}: malformed checkov skip comment: {line.strip()}"
                found[(path.name, m.group(1), m.group(2).strip())] += 1
    return found


@pytest.mark.parametrize("run", sorted(CHECKOV_RUNS))
def test_every_checkov_skip_is_justified_and_used(checkov_reports: dict[str, dict[str, Any]], run: str) -> None:
    comments = _skip_comments(CHECKOV_RUNS[run].directory)
    assert comments, "expected the documented suppressions (e.g. CKV_AWS_18 on the bucket)"
    for (name, check, reason), _ in comments.items():
        assert len(reason) >= MIN_REASON_CHARS, f"{name} {check}: the reason must say why ({reason!r})"
    skipped = Counter(
        (c["file_path"].lstrip("/"), c["check_id"], c["check_result"]["suppress_comment"].strip())
        for c in checkov_reports[run]["results"].get("skipped_checks", [])
    )
    # Every comment suppressed a check that would otherwise run, and nothing was skipped without one.
    assert skipped == comments, f"stale or unexplained suppressions:\n comments: {comments}\n checkov: {skipped}"


def test_skip_comments_sit_inside_their_terraform_resource(terraform: Terraform) -> None:
    """python-hcl2 keeps comments on the block they are in: each skip belongs to a resource body."""
    in_resources = {
        (kind, name, c["value"].removeprefix("checkov:skip=").split(":", 1)[0])
        for kind, named in terraform.resources.items()
        for name, body in named.items()
        for c in body.get("__comments__", [])
        if c["value"].startswith("checkov:skip=")
    }
    total = sum(n for (f, _, _), n in _skip_comments(CHECKOV_RUNS["terraform"].directory).items())
    assert len(in_resources) == total, in_resources


EXPECTED_TF_RESOURCES = {
    "aws_s3_bucket.archive",
    "aws_s3_bucket_ownership_controls.archive",
    "aws_s3_bucket_public_access_block.archive",
    "aws_s3_bucket_server_side_encryption_configuration.archive",
    "aws_s3_bucket_versioning.archive",
    "aws_s3_bucket_object_lock_configuration.archive",
    "aws_s3_bucket_lifecycle_configuration.archive",
    "aws_s3_bucket_policy.archive",
    "aws_cloudwatch_log_group.firehose",
    "aws_cloudwatch_log_stream.firehose",
    "aws_iam_role.firehose",
    "aws_iam_role_policy.firehose_deliver",
    "aws_kinesis_firehose_delivery_stream.archive",
    "aws_iam_policy.producer",
    "aws_sns_topic.alarms",
    "aws_sns_topic_subscription.alarm_email",
    "aws_cloudwatch_metric_alarm.firehose",
    "aws_cloudwatch_metric_alarm.lambda",
    "aws_cloudwatch_metric_alarm.lambda_5xx_rate",
    "aws_cloudwatch_metric_alarm.lambda_signature_failures",
    "aws_cloudwatch_metric_alarm.lambda_no_accepted_webhooks",
    "aws_cloudwatch_metric_alarm.ecs_5xx_rate",
    "aws_cloudwatch_metric_alarm.ecs_4xx_rate",
    "aws_cloudwatch_metric_alarm.ecs_unhealthy_targets",
    "aws_cloudwatch_metric_alarm.ecs_no_accepted_webhooks",
    "aws_cloudwatch_dashboard.webhooks",
    "aws_cloudwatch_log_group.lambda",
    "aws_iam_role.lambda",
    "aws_iam_role_policy_attachment.lambda_producer",
    "aws_iam_role_policy_attachment.lambda_sqs_producer",
    "aws_iam_role_policy.lambda_logs",
    "aws_lambda_function.webhook",
    "aws_lambda_function_url.webhook",
    "aws_lambda_permission.url_public_invoke",
    "aws_lambda_permission.url_invoke_function",
    "aws_cloudwatch_log_group.ecs",
    "aws_ecs_cluster.webhook",
    "aws_iam_role.ecs_execution",
    "aws_iam_role_policy_attachment.ecs_execution_managed",
    "aws_iam_role_policy.ecs_execution_secret",
    "aws_iam_role.ecs_task",
    "aws_iam_role_policy_attachment.ecs_task_producer",
    "aws_iam_role_policy_attachment.ecs_task_sqs_producer",
    "aws_ecs_task_definition.webhook",
    "aws_security_group.ecs_load_balancer",
    "aws_vpc_security_group_ingress_rule.ecs_load_balancer_https",
    "aws_vpc_security_group_ingress_rule.ecs_load_balancer_http",
    "aws_vpc_security_group_ingress_rule.ecs_load_balancer_https_stripe",
    "aws_wafv2_ip_set.stripe_sources",
    "aws_wafv2_web_acl.sources",
    "aws_wafv2_web_acl_association.sources",
    "aws_vpc_security_group_egress_rule.ecs_load_balancer_to_tasks",
    "aws_security_group.ecs_tasks",
    "aws_vpc_security_group_ingress_rule.ecs_tasks_from_load_balancer",
    "aws_vpc_security_group_egress_rule.ecs_tasks_https",
    "aws_lb.webhook",
    "aws_lb_target_group.webhook",
    "aws_lb_listener.https",
    "aws_lb_listener.http_redirect",
    "aws_ecs_service.webhook",
    "aws_appautoscaling_target.ecs",
    "aws_appautoscaling_policy.ecs_cpu",
    "aws_appautoscaling_policy.ecs_requests",
    "aws_cloudwatch_log_group.reconcile",
    "aws_iam_role.reconcile_execution",
    "aws_iam_role_policy_attachment.reconcile_execution_managed",
    "aws_iam_role_policy.reconcile_execution_secret",
    "aws_iam_role.reconcile_task",
    "aws_iam_role_policy.reconcile_task_read_archive",
    "aws_ecs_task_definition.reconcile",
    "aws_iam_role.reconcile_scheduler",
    "aws_iam_role_policy.reconcile_scheduler",
    "aws_scheduler_schedule.reconcile",
    "aws_cloudwatch_log_metric_filter.reconcile_clean_runs",
    "aws_cloudwatch_metric_alarm.reconcile_not_clean",
    "aws_sqs_queue.dead_letter",
    "aws_sqs_queue.events",
    "aws_sqs_queue_redrive_allow_policy.dead_letter",
    "aws_sqs_queue_policy.events",
    "aws_sqs_queue_policy.dead_letter",
    "aws_iam_policy.sqs_producer",
    "aws_cloudwatch_metric_alarm.sqs_dead_letters",
    "aws_cloudwatch_metric_alarm.sqs_oldest_message_age",
}

EXPECTED_TF_VARIABLES = {
    "bucket_name",
    "environment",
    "delivery_stream_name",
    "buffer_size_mib",
    "buffer_interval_seconds",
    "expiration_days",
    "archive_storage_class",
    "archive_transition_days",
    "object_lock_mode",
    "object_lock_retention_days",
    "log_retention_days",
    "alarm_email",
    "runbooks_url",
    "data_freshness_threshold_seconds",
    "server_error_rate_percent",
    "signature_failure_threshold",
    "signature_failure_rate_percent",
    "no_accepted_webhook_hours",
    "dashboard_name",
    "lambda_enabled",
    "function_name",
    "code_s3_bucket",
    "code_s3_key",
    "code_s3_object_version",
    "architecture",
    "stripe_webhook_secret",
    "reserved_concurrency",
    "memory_size",
    "timeout_seconds",
    "lambda_log_retention_days",
    "ecs_enabled",
    "service_name",
    "image_uri",
    "cpu_architecture",
    "stripe_webhook_secret_arn",
    "stripe_webhook_secret_format",
    "source_allowlist",
    "allowed_source_cidrs",
    "vpc_id",
    "load_balancer_subnet_ids",
    "task_subnet_ids",
    "assign_public_ip",
    "certificate_arn",
    "domain_name",
    "ssl_policy",
    "task_cpu",
    "task_memory",
    "desired_count",
    "max_count",
    "target_cpu_utilization",
    "target_requests_per_task",
    "ecs_log_retention_days",
    "reconcile_api_key_secret_arn",
    "reconcile_schedule",
    "sqs_enabled",
    "queue_name",
    "fifo_queue",
    "visibility_timeout_seconds",
    "max_receive_count",
    "oldest_message_age_threshold_seconds",
}


# What every apply must name (terraform.tfvars.example sets them): the bucket, who the alarms notify,
# and where their runbooks are read.
REQUIRED_TF_VARIABLES = {"bucket_name", "alarm_email", "runbooks_url"}


def test_terraform_declares_the_expected_resources_and_variables(terraform: Terraform) -> None:
    declared = {f"{kind}.{name}" for kind, named in terraform.resources.items() for name in named}
    assert declared == EXPECTED_TF_RESOURCES, {
        "missing": EXPECTED_TF_RESOURCES - declared,
        "unexpected": declared - EXPECTED_TF_RESOURCES,
    }
    assert set(terraform.variables) == EXPECTED_TF_VARIABLES, {
        "missing": EXPECTED_TF_VARIABLES - set(terraform.variables),
        "unexpected": set(terraform.variables) - EXPECTED_TF_VARIABLES,
    }
    for name, body in terraform.variables.items():
        assert body.get("description") or name in {"bucket_name"}, f"variable {name} needs a description"
        if name in REQUIRED_TF_VARIABLES:
            assert "default" not in body and body.get("validation"), f"{name} is required and validated"
        else:
            assert "default" in body, f"only {sorted(REQUIRED_TF_VARIABLES)} are required; {name} needs a default"
    assert terraform.variables["stripe_webhook_secret"].get("sensitive") is True
    providers = terraform.terraform[0]["required_providers"][0]
    assert providers["aws"]["source"] == "hashicorp/aws"
