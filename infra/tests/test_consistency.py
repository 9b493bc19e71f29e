"""CloudFormation, Terraform and the Athena DDL agree with the layout spec and with each other."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from athena_ddl import parse_table_ddl
from conftest import Terraform, render_cfn
from layout_spec import (
    ALARM_METRICS,
    BODY_READ_TIMEOUT_SECS,
    CONTAINER_HEALTHCHECK,
    ECS_MIN_TASKS,
    FIREHOSE_DEADLINE_SECS,
    FIREHOSE_SHUTDOWN_DRAIN_SECS,
    HEALTH_PATH,
    HEALTHY_STATUS,
    IMAGE_USER,
    LOG_FILTER_ENV_VAR,
    SECRET_ENV_VAR,
    SERVER_PORT,
    SERVICE_ENV_VARS,
    SETTINGS_SOURCES,
    SHUTDOWN_TIMEOUT_SECS,
    STOP_TIMEOUT_SECS,
    UPCOMING_ENV_VARS,
    ARCHIVE_PREFIX,
    ATHENA_BUCKET_PLACEHOLDER,
    ATHENA_LOCATION,
    ATHENA_LOCATION_TEMPLATE,
    ATHENA_SERDE,
    ATHENA_TABLE,
    ATHENA_TABLE_DDL,
    BUFFER_INTERVAL_SECONDS,
    BUFFER_SIZE_MIB,
    COMPRESSION,
    ENVELOPE_V1_FIELDS,
    EXPIRATION_DAYS,
    FIREHOSE_ERROR_PREFIX,
    FIREHOSE_PREFIX,
    FUNCTION_ENV_VARS,
    ARCHIVE_STORAGE_CLASS,
    ARCHIVE_STORAGE_CLASSES,
    ARCHIVE_TRANSITION_DAYS,
    OBJECT_LOCK_MODES,
    OVERSIZE_PREFIX,
    PARTITION_KEYS,
    PRODUCER_FIREHOSE_ACTIONS,
    PRODUCER_S3_ACTIONS,
    ROOT,
)

Template = dict[str, Any]


def resources_of(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def only_resource(template: Template, kind: str) -> tuple[str, dict[str, Any]]:
    found = resources_of(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def param_default(template: Template, value: Any) -> Any:
    """The default of the parameter a `{"Ref": P}` points to, or the literal itself."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------------------
# Firehose: prefix, error prefix, compression, buffering, no partitioning, no delimiter processor
# ---------------------------------------------------------------------------------------------


def test_cfn_firehose_matches_the_layout(cfn_main: Template) -> None:
    _, stream = only_resource(cfn_main, "AWS::KinesisFirehose::DeliveryStream")
    props = stream["Properties"]
    assert props["DeliveryStreamType"] == "DirectPut"
    s3 = props["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == FIREHOSE_PREFIX
    assert s3["ErrorOutputPrefix"] == FIREHOSE_ERROR_PREFIX
    assert s3["CompressionFormat"] == COMPRESSION
    assert param_default(cfn_main, s3["BufferingHints"]["SizeInMBs"]) == BUFFER_SIZE_MIB
    assert param_default(cfn_main, s3["BufferingHints"]["IntervalInSeconds"]) == BUFFER_INTERVAL_SECONDS
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is False
    assert s3["ProcessingConfiguration"]["Enabled"] is False
    assert "Processors" not in s3["ProcessingConfiguration"]
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True
    assert "AppendDelimiterToRecord" not in json.dumps(cfn_main)  # parsed: comments do not count


def test_terraform_firehose_matches_the_layout(terraform: Terraform) -> None:
    stream = terraform.resource("aws_kinesis_firehose_delivery_stream", "archive")
    assert stream["destination"] == "extended_s3"
    assert "kinesis_source_configuration" not in stream, "Direct PUT: no Kinesis source"
    (s3,) = stream["extended_s3_configuration"]
    assert terraform.resolve(s3["prefix"]) == FIREHOSE_PREFIX
    assert terraform.resolve(s3["error_output_prefix"]) == FIREHOSE_ERROR_PREFIX
    assert s3["compression_format"] == COMPRESSION
    assert terraform.resolve(s3["buffering_size"]) == BUFFER_SIZE_MIB
    assert terraform.resolve(s3["buffering_interval"]) == BUFFER_INTERVAL_SECONDS
    assert s3["dynamic_partitioning_configuration"] == [{"enabled": False}]
    assert s3["processing_configuration"] == [{"enabled": False}]  # no processors at all
    assert s3["cloudwatch_logging_options"][0]["enabled"] is True


def test_archive_prefix_matches_the_rust_constant() -> None:
    """The file sink writes under `ARCHIVE_PREFIX`; Firehose must deliver under the same prefix."""
    layout_rs = (ROOT / "crates" / "stripe-webhook-envelope" / "src" / "layout.rs").read_text()
    m = re.search(r'pub const ARCHIVE_PREFIX: &str = "([^"]+)";', layout_rs)
    assert m, "ARCHIVE_PREFIX not found in stripe-webhook-envelope"
    assert m.group(1) == ARCHIVE_PREFIX
    assert FIREHOSE_PREFIX.startswith(f"{ARCHIVE_PREFIX}/year=")
    assert ATHENA_LOCATION_TEMPLATE.startswith(f"s3://${{bucket}}/{ARCHIVE_PREFIX}/year=")


# ---------------------------------------------------------------------------------------------
# Producer policy: exactly the two Firehose actions on this stream + s3:PutObject on oversize/
# ---------------------------------------------------------------------------------------------


def test_cfn_producer_policy_is_least_privilege(cfn_main: Template) -> None:
    stream_name, _ = only_resource(cfn_main, "AWS::KinesisFirehose::DeliveryStream")
    bucket_name, _ = only_resource(cfn_main, "AWS::S3::Bucket")
    _, policy = only_resource(cfn_main, "AWS::IAM::ManagedPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    grants: dict[str, list[Any]] = {}
    for st in statements:
        assert st["Effect"] == "Allow"
        assert "NotAction" not in st and "NotResource" not in st
        for action in as_list(st["Action"]):
            grants.setdefault(action, []).extend(as_list(st["Resource"]))
    assert set(grants) == PRODUCER_FIREHOSE_ACTIONS | PRODUCER_S3_ACTIONS
    for action in PRODUCER_FIREHOSE_ACTIONS:
        assert grants[action] == [{"Fn::GetAtt": [stream_name, "Arn"]}], action
    for action in PRODUCER_S3_ACTIONS:
        assert grants[action] == [{"Fn::Sub": f"${{{bucket_name}.Arn}}/{OVERSIZE_PREFIX}*"}], action


def test_terraform_producer_policy_is_least_privilege(terraform: Terraform) -> None:
    policy = terraform.resource("aws_iam_policy", "producer")
    assert policy["policy"] == "${data.aws_iam_policy_document.producer.json}"
    document = terraform.data["aws_iam_policy_document"]["producer"]
    grants: dict[str, list[str]] = {}
    for st in document["statement"]:
        assert st.get("effect", "Allow") == "Allow"
        assert "not_actions" not in st and "not_resources" not in st
        for action in st["actions"]:
            grants.setdefault(action, []).extend(st["resources"])
    assert set(grants) == PRODUCER_FIREHOSE_ACTIONS | PRODUCER_S3_ACTIONS
    for action in PRODUCER_FIREHOSE_ACTIONS:
        assert grants[action] == ["${aws_kinesis_firehose_delivery_stream.archive.arn}"], action
    for action in PRODUCER_S3_ACTIONS:
        assert grants[action] == [f"${{aws_s3_bucket.archive.arn}}/{OVERSIZE_PREFIX}*"], action


def test_firehose_role_writes_only_the_delivery_and_error_prefixes(cfn_main: Template, terraform: Terraform) -> None:
    delivery_top, error_top = FIREHOSE_PREFIX.split("/")[0], FIREHOSE_ERROR_PREFIX.split("/")[0]
    _, role = only_resource(cfn_main, "AWS::IAM::Role")
    cfn_put = [
        st["Resource"]
        for p in role["Properties"]["Policies"]
        for st in p["PolicyDocument"]["Statement"]
        if "s3:PutObject" in as_list(st["Action"])
    ]
    assert cfn_put == [
        [{"Fn::Sub": f"${{ArchiveBucket.Arn}}/{delivery_top}/*"}, {"Fn::Sub": f"${{ArchiveBucket.Arn}}/{error_top}/*"}]
    ]
    tf_put = [
        st["resources"]
        for st in terraform.data["aws_iam_policy_document"]["firehose_deliver"]["statement"]
        if "s3:PutObject" in st["actions"]
    ]
    assert tf_put == [[f"${{aws_s3_bucket.archive.arn}}/{delivery_top}/*", f"${{aws_s3_bucket.archive.arn}}/{error_top}/*"]]


# ---------------------------------------------------------------------------------------------
# Bucket: encryption, public access, TLS only, versioning, lifecycle
# ---------------------------------------------------------------------------------------------


def test_bucket_protections_agree(cfn_main: Template, terraform: Terraform) -> None:
    _, bucket = only_resource(cfn_main, "AWS::S3::Bucket")
    props = bucket["Properties"]
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    tf_sse = terraform.resource("aws_s3_bucket_server_side_encryption_configuration", "archive")["rule"][0]
    assert sse["SSEAlgorithm"] == tf_sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "AES256"
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    pab = terraform.resource("aws_s3_bucket_public_access_block", "archive")
    assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    tf_versioning = terraform.resource("aws_s3_bucket_versioning", "archive")
    assert tf_versioning["versioning_configuration"][0]["status"] == "Enabled"

    _, bucket_policy = only_resource(cfn_main, "AWS::S3::BucketPolicy")
    (deny,) = bucket_policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (tf_deny,) = terraform.data["aws_iam_policy_document"]["archive_tls_only"]["statement"]
    assert tf_deny["effect"] == "Deny" and tf_deny["actions"] == ["s3:*"]
    assert tf_deny["condition"][0] == {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}


def test_lifecycle_defaults_agree(cfn_main: Template, terraform: Terraform) -> None:
    _, bucket = only_resource(cfn_main, "AWS::S3::Bucket")
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    params = cfn_main["Parameters"]
    assert params["ArchiveStorageClass"]["Default"] == ARCHIVE_STORAGE_CLASS
    assert tuple(params["ArchiveStorageClass"]["AllowedValues"]) == ARCHIVE_STORAGE_CLASSES
    assert params["ArchiveTransitionDays"]["Default"] == ARCHIVE_TRANSITION_DAYS
    assert params["ExpirationDays"]["Default"] == EXPIRATION_DAYS
    # Current and replaced versions move to the same class at the same age; a replaced version is
    # kept as long as the records are (versioning is only tamper-evident while it lasts).
    for transitions in (rule["Transitions"], rule["NoncurrentVersionTransitions"]):
        assert transitions == [{"StorageClass": {"Ref": "ArchiveStorageClass"}, "TransitionInDays": {"Ref": "ArchiveTransitionDays"}}]
    assert rule["ExpirationInDays"] == {"Ref": "ExpirationDays"}
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "ExpirationDays"}}
    assert rule["Status"] == "Enabled"

    (tf_rule,) = terraform.resource("aws_s3_bucket_lifecycle_configuration", "archive")["rule"]
    assert tf_rule["status"] == "Enabled"
    assert tf_rule["transition"] == [{"days": "${var.archive_transition_days}", "storage_class": "${var.archive_storage_class}"}]
    assert tf_rule["noncurrent_version_transition"] == [
        {"noncurrent_days": "${var.archive_transition_days}", "storage_class": "${var.archive_storage_class}"}
    ]
    assert tf_rule["expiration"] == [{"days": "${var.expiration_days}"}]
    assert tf_rule["noncurrent_version_expiration"] == [{"noncurrent_days": "${var.expiration_days}"}]
    assert terraform.resolve("${var.archive_storage_class}") == ARCHIVE_STORAGE_CLASS
    assert terraform.resolve("${var.archive_transition_days}") == ARCHIVE_TRANSITION_DAYS
    assert terraform.resolve("${var.expiration_days}") == EXPIRATION_DAYS
    condition = terraform.variables["archive_storage_class"]["validation"][0]["condition"]
    assert all(f'"{c}"' in condition for c in ARCHIVE_STORAGE_CLASSES), condition


def test_object_lock_is_optional_and_agrees(cfn_main: Template, terraform: Terraform) -> None:
    """NONE by default; otherwise enabled at the bucket's creation with a default retention."""
    params = cfn_main["Parameters"]
    assert params["ObjectLockMode"]["Default"] == "NONE"
    assert tuple(params["ObjectLockMode"]["AllowedValues"]) == OBJECT_LOCK_MODES
    assert params["ObjectLockRetentionDays"]["Default"] == EXPIRATION_DAYS
    assert cfn_main["Conditions"]["HasObjectLock"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ObjectLockMode"}, "NONE"]}]}
    _, bucket = only_resource(cfn_main, "AWS::S3::Bucket")
    props = bucket["Properties"]
    assert props["ObjectLockEnabled"] == {"Fn::If": ["HasObjectLock", True, {"Ref": "AWS::NoValue"}]}
    lock, none = props["ObjectLockConfiguration"]["Fn::If"][1:]
    assert none == {"Ref": "AWS::NoValue"}
    assert lock == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": {"Ref": "ObjectLockMode"}, "Days": {"Ref": "ObjectLockRetentionDays"}}},
    }
    assert props["VersioningConfiguration"]["Status"] == "Enabled"  # Object Lock requires it

    assert terraform.locals["object_lock"] == '${var.object_lock_mode != "NONE"}'
    assert terraform.resource("aws_s3_bucket", "archive")["object_lock_enabled"] == "${local.object_lock}"
    config = terraform.resource("aws_s3_bucket_object_lock_configuration", "archive")
    assert config["count"] == "${local.object_lock ? 1 : 0}"
    assert config["rule"][0]["default_retention"] == [
        {"mode": "${var.object_lock_mode}", "days": "${var.object_lock_retention_days}"}
    ]
    assert terraform.variables["object_lock_mode"]["default"] == "NONE"


# ---------------------------------------------------------------------------------------------
# Parameters <-> variables, alarms, outputs, Lambda
# ---------------------------------------------------------------------------------------------

# CloudFormation parameter -> Terraform variable, for names that are not plain snake_case.
RENAMED = {
    ("lambda", "LogRetentionDays"): "lambda_log_retention_days",
    ("lambda", "CoreStackName"): None,
    ("ecs", "LogRetentionDays"): "ecs_log_retention_days",
    ("ecs", "CoreStackName"): None,
    # The optional stacks notify the core stack's topic by its ARN; Terraform refers to it directly.
    ("lambda", "AlarmTopicArn"): None,
    ("ecs", "AlarmTopicArn"): None,
    ("sqs", "AlarmTopicArn"): None,
    # The dashboard stack imports the other stacks' names; Terraform's switches are lambda_enabled
    # and ecs_enabled.
    ("dashboard", "CoreStackName"): None,
    ("dashboard", "LambdaStackName"): None,
    ("dashboard", "EcsStackName"): None,
    # The stacks that use the SQS destination import its stack's exports; Terraform's switch is
    # sqs_enabled, which wires the queue into the ECS task and the Lambda function of the same
    # configuration.
    ("lambda", "SqsStackName"): None,
    ("ecs", "SqsStackName"): None,
    ("dashboard", "SqsStackName"): None,
}
TERRAFORM_ONLY = {"lambda_enabled", "ecs_enabled", "sqs_enabled"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("mi_b", "mib")


def test_parameters_and_variables_agree(
    cfn_main: Template,
    cfn_lambda: Template,
    cfn_ecs: Template,
    cfn_dashboard: Template,
    cfn_sqs: Template,
    terraform: Terraform,
) -> None:
    expected: dict[str, Any] = {}
    stacks = (
        ("main", cfn_main),
        ("lambda", cfn_lambda),
        ("ecs", cfn_ecs),
        ("dashboard", cfn_dashboard),
        ("sqs", cfn_sqs),
    )
    for stack, template in stacks:
        for name, param in template["Parameters"].items():
            var = RENAMED.get((stack, name), snake(name))
            if var is None:
                continue  # the optional stacks import the main stack's exports; Terraform refers directly
            if var in expected:
                assert expected[var] == param.get("Default"), f"{name}: both stacks must agree"
            expected[var] = param.get("Default")
    assert set(terraform.variables) == set(expected) | TERRAFORM_ONLY, {
        "only in CloudFormation": set(expected) - set(terraform.variables),
        "only in Terraform": set(terraform.variables) - set(expected) - TERRAFORM_ONLY,
    }
    for var, default in expected.items():
        tf_default = terraform.variables[var].get("default")
        if default in ("", None):
            assert tf_default in ("", None, []), var  # required in CloudFormation; checked by a precondition
        elif isinstance(tf_default, bool):
            assert str(tf_default).lower() == default, var
        elif isinstance(tf_default, list):  # a CommaDelimitedList
            assert ",".join(tf_default) == default, var
        else:
            assert tf_default == default, f"{var}: CloudFormation default {default!r}, Terraform {tf_default!r}"


def test_alarms_agree(cfn_main: Template, terraform: Terraform) -> None:
    alarms = resources_of(cfn_main, "AWS::CloudWatch::Alarm")
    cfn = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms.values()}
    assert set(cfn) == ALARM_METRICS
    tf = {a["metric"]: a for a in terraform.locals["alarms"].values()}
    assert set(tf) == ALARM_METRICS
    for metric, props in cfn.items():
        assert props["Namespace"] == "AWS/Firehose"
        assert props["Statistic"] == tf[metric]["statistic"], metric
        assert props["ComparisonOperator"] == tf[metric]["operator"], metric
        assert param_default(cfn_main, props["Threshold"]) == terraform.resolve(tf[metric]["threshold"]), metric
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}]
    # The topic and its e-mail subscription always exist: the e-mail is required.
    assert "Condition" not in cfn_main["Resources"]["AlarmTopic"]
    assert "Condition" not in cfn_main["Resources"]["AlarmEmailSubscription"]
    assert "Default" not in cfn_main["Parameters"]["AlarmEmail"]
    assert "count" not in terraform.resource("aws_sns_topic", "alarms")
    assert "count" not in terraform.resource("aws_sns_topic_subscription", "alarm_email")
    assert terraform.locals["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"]


def test_outputs_name_everything_a_user_needs(
    cfn_main: Template, cfn_lambda: Template, cfn_ecs: Template, cfn_sqs: Template, terraform: Terraform
) -> None:
    needed = {"BucketName", "DeliveryStreamName", "DeliveryStreamArn", "ProducerPolicyArn", "Region", "ServerEnvironment"}
    assert needed <= set(cfn_main["Outputs"])
    assert {snake(n) for n in needed} <= set(terraform.outputs)
    env = cfn_main["Outputs"]["ServerEnvironment"]["Value"]["Fn::Sub"]
    for var in ("SINK=firehose", "AWS_REGION=", "FIREHOSE_DELIVERY_STREAM_NAME=", "OVERSIZE_S3_BUCKET="):
        assert var in env and var in terraform.outputs["server_environment"]["value"], var
    # Every value the Lambda and ECS stacks import is exported by the stack they name: the main stack
    # (CoreStackName) or the SQS destination's (SqsStackName).
    exports = {
        stack: {o["Export"]["Name"]["Fn::Sub"] for o in t["Outputs"].values() if "Export" in o}
        for stack, t in (("Core", cfn_main), ("Sqs", cfn_sqs))
    }
    for template in (cfn_lambda, cfn_ecs):
        imports = [v["Fn::ImportValue"]["Fn::Sub"] for v in _values_with_key(template, "Fn::ImportValue")]
        assert imports
        for imported in imports:
            m = re.fullmatch(r"\$\{(\w+)StackName\}(-\w+)", imported)
            assert m and m.group(1) in exports, imported
            assert "${AWS::StackName}" + m.group(2) in exports[m.group(1)], f"{imported} is not exported"


def _values_with_key(node: Any, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if key in node:
            found.append(node)
        for v in node.values():
            found.extend(_values_with_key(v, key))
    elif isinstance(node, list):
        for v in node:
            found.extend(_values_with_key(v, key))
    return found


def test_lambda_agrees(cfn_lambda: Template, terraform: Terraform) -> None:
    # As deployed without the SQS destination (SqsStackName empty, Terraform's sqs_enabled false).
    _, fn = only_resource(render_cfn(cfn_lambda), "AWS::Lambda::Function")
    props = fn["Properties"]
    tf_fn = terraform.resource("aws_lambda_function", "webhook")
    assert props["Runtime"] == tf_fn["runtime"] == "provided.al2023"
    assert props["Handler"] == tf_fn["handler"] == "bootstrap"
    assert set(cfn_lambda["Parameters"]["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    assert props["Architectures"] == [{"Ref": "Architecture"}]
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert tf_fn["reserved_concurrent_executions"] == "${var.reserved_concurrency}"
    assert tf_fn["environment"][0]["variables"] == "${merge(local.lambda_environment, local.sqs_environment)}"
    assert set(props["Environment"]["Variables"]) == set(terraform.locals["lambda_environment"]) == FUNCTION_ENV_VARS
    assert cfn_lambda["Parameters"]["StripeWebhookSecret"]["NoEcho"] is True
    assert props["Code"]["S3Bucket"] == {"Ref": "CodeS3Bucket"} and props["Code"]["S3Key"] == {"Ref": "CodeS3Key"}

    _, url = only_resource(cfn_lambda, "AWS::Lambda::Url")
    assert url["Properties"]["AuthType"] == "NONE"
    assert terraform.resource("aws_lambda_function_url", "webhook")["authorization_type"] == "NONE"
    perms = resources_of(cfn_lambda, "AWS::Lambda::Permission")
    assert {p["Properties"]["Action"] for p in perms.values()} == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert all(p["Properties"]["Principal"] == "*" for p in perms.values())

    # The role gets the main stack's producer policy and may write only its own log group.
    _, role = only_resource(render_cfn(cfn_lambda), "AWS::IAM::Role")
    assert role["Properties"]["ManagedPolicyArns"] == [{"Fn::ImportValue": {"Fn::Sub": "${CoreStackName}-ProducerPolicyArn"}}]
    assert terraform.resource("aws_iam_role_policy_attachment", "lambda_producer")["policy_arn"] == (
        "${aws_iam_policy.producer.arn}"
    )
    _, log_group = only_resource(cfn_lambda, "AWS::Logs::LogGroup")
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def declared_env_vars() -> set[str]:
    """Every variable the server's settings declare (clap `env = "..."` in SETTINGS_SOURCES)."""
    found: set[str] = set()
    for source in SETTINGS_SOURCES:
        found |= set(re.findall(r'env = "([A-Z0-9_]+)"', source.read_text()))
    return found


def test_the_settings_list_is_what_the_server_declares() -> None:
    """SERVICE_ENV_VARS (the one list every deployment file is checked against) is complete and exact."""
    declared = declared_env_vars()
    assert SERVICE_ENV_VARS <= declared, f"no longer declared: {SERVICE_ENV_VARS - declared}"
    assert declared <= SERVICE_ENV_VARS | UPCOMING_ENV_VARS, f"add to SERVICE_ENV_VARS: {declared - SERVICE_ENV_VARS}"


def test_function_env_vars_are_what_the_server_reads() -> None:
    """Each variable the Lambda templates set is one the service reads."""
    assert FUNCTION_ENV_VARS <= SERVICE_ENV_VARS | {LOG_FILTER_ENV_VAR}, FUNCTION_ENV_VARS - SERVICE_ENV_VARS


def test_shutdown_constants_match_the_code() -> None:
    """SHUTDOWN_TIMEOUT_SECS's default and the Firehose drain, read from the Rust sources."""
    server = SETTINGS_SOURCES[1].read_text()
    m = re.search(r'env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = (\d+)\)', server)
    assert m, "SHUTDOWN_TIMEOUT_SECS default not found"
    assert int(m.group(1)) == SHUTDOWN_TIMEOUT_SECS
    m = re.search(r'env = "BODY_READ_TIMEOUT_SECS", default_value_t = (\d+)\)', server)
    assert m and int(m.group(1)) == BODY_READ_TIMEOUT_SECS
    firehose = (ROOT / "crates" / "stripe-webhook-sink-firehose" / "src" / "config.rs").read_text()
    m = re.search(r"shutdown_timeout: Duration::from_secs\((\d+)\)", firehose)
    assert m, "the Firehose sink's shutdown wait not found"
    assert int(m.group(1)) == FIREHOSE_SHUTDOWN_DRAIN_SECS
    settings = SETTINGS_SOURCES[0].read_text()
    m = re.search(r'env = "FIREHOSE_DEADLINE_MS", default_value_t = (\d+)\)', settings)
    assert m and int(m.group(1)) == FIREHOSE_DEADLINE_SECS * 1000
    assert STOP_TIMEOUT_SECS > SHUTDOWN_TIMEOUT_SECS + FIREHOSE_SHUTDOWN_DRAIN_SECS
    assert STOP_TIMEOUT_SECS > BODY_READ_TIMEOUT_SECS + FIREHOSE_DEADLINE_SECS


# ---------------------------------------------------------------------------------------------
# ECS Fargate: the same settings, producer policy, health check and shutdown as everything else
# ---------------------------------------------------------------------------------------------


def _ecs_container(cfn_ecs: Template) -> dict[str, Any]:
    """The server's container (the other task definition, ReconcileTaskDefinition, is optional), with
    its environment as deployed by default: the source allowlist's two variables are there only when
    SourceAllowlist is not none, as in Terraform's `local.source_env`, and FORWARD_SQS_QUEUE_URL only
    when SqsStackName is set, as in Terraform's `local.sqs_env`."""
    (container,) = cfn_ecs["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    conditional = [e for e in container["Environment"] if "Fn::If" in e]
    assert [e["Fn::If"][0] for e in conditional] == ["RestrictSources", "RestrictSources", "HasSqsDestination"]
    assert [e["Fn::If"][1]["Name"] for e in conditional] == ["ALLOWED_SOURCE_IPS", "TRUSTED_PROXIES", "FORWARD_SQS_QUEUE_URL"]
    assert cfn_ecs["Parameters"]["SourceAllowlist"]["Default"] == "none"
    assert cfn_ecs["Parameters"]["SqsStackName"]["Default"] == ""
    return {**container, "Environment": [e for e in container["Environment"] if "Fn::If" not in e]}


def _tf_ecs_container(terraform: Terraform) -> dict[str, Any]:
    task = terraform.resource("aws_ecs_task_definition", "webhook")
    assert task["container_definitions"] == "${jsonencode([local.container_definition])}"
    container = terraform.locals["container_definition"]
    # The allowlist's variables join only when source_allowlist is not "none", and the queue's URL only
    # with sqs_enabled, as in CloudFormation.
    assert container["environment"] == "${concat(local.container_environment, local.source_env, local.sqs_env)}"
    assert terraform.variables["source_allowlist"]["default"] == "none"
    return {**container, "environment": terraform.locals["container_environment"]}


def test_ecs_container_environment(cfn_ecs: Template, terraform: Terraform) -> None:
    cfn, tf = _ecs_container(cfn_ecs), _tf_ecs_container(terraform)
    # The secret is injected as the list or as the keyring, as the format parameter says.
    keyring = "STRIPE_WEBHOOK_KEYRING"
    assert [s["Name"] for s in cfn["Secrets"]] == [
        {"Fn::If": ["SecretIsKeyring", keyring, SECRET_ENV_VAR]}
    ]
    assert [s["name"] for s in tf["secrets"]] == [
        f'${{var.stripe_webhook_secret_format == "keyring" ? "{keyring}" : "{SECRET_ENV_VAR}"}}'
    ]
    assert keyring in SERVICE_ENV_VARS
    for env in (
        {e["Name"]: e["Value"] for e in cfn["Environment"]},
        {e["name"]: e["value"] for e in tf["environment"]},
    ):
        assert set(env) <= SERVICE_ENV_VARS | {LOG_FILTER_ENV_VAR}, set(env) - SERVICE_ENV_VARS
        assert env["SINK"] == "firehose" and env["LOG_FORMAT"] == "json"
        assert {"AWS_REGION", "FIREHOSE_DELIVERY_STREAM_NAME", "OVERSIZE_S3_BUCKET"} <= set(env)
        # The signing secret comes from Secrets Manager or SSM, never from the plain environment.
        assert SECRET_ENV_VAR not in env and keyring not in env
    assert cfn["Secrets"][0]["ValueFrom"] == {"Ref": "StripeWebhookSecretArn"}
    assert tf["secrets"][0]["valueFrom"] == "${var.stripe_webhook_secret_arn}"
    env = {e["Name"]: e["Value"] for e in cfn["Environment"]}
    assert env["FIREHOSE_DELIVERY_STREAM_NAME"] == {"Fn::ImportValue": {"Fn::Sub": "${CoreStackName}-DeliveryStreamName"}}
    assert env["OVERSIZE_S3_BUCKET"] == {"Fn::ImportValue": {"Fn::Sub": "${CoreStackName}-BucketName"}}
    assert env["AWS_REGION"] == {"Ref": "AWS::Region"}
    assert env["PORT"] == str(SERVER_PORT)
    tf_env = {e["name"]: e["value"] for e in tf["environment"]}
    assert tf_env["PORT"] == "${tostring(local.container_port)}" and terraform.locals["container_port"] == SERVER_PORT
    assert tf_env["SHUTDOWN_TIMEOUT_SECS"] == "${tostring(local.shutdown_timeout_secs)}"
    assert tf_env["FIREHOSE_DELIVERY_STREAM_NAME"] == "${aws_kinesis_firehose_delivery_stream.archive.name}"
    assert tf_env["OVERSIZE_S3_BUCKET"] == "${aws_s3_bucket.archive.id}"


def test_ecs_container_is_locked_down(cfn_ecs: Template, terraform: Terraform) -> None:
    cfn, tf = _ecs_container(cfn_ecs), _tf_ecs_container(terraform)
    assert cfn["ReadonlyRootFilesystem"] is True and tf["readonlyRootFilesystem"] is True
    assert cfn["User"] == tf["user"] == IMAGE_USER
    assert cfn["Privileged"] is False and tf["privileged"] is False
    assert cfn["LinuxParameters"]["Capabilities"]["Drop"] == tf["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    assert cfn["Image"] == {"Ref": "ImageUri"} and tf["image"] == "${var.image_uri}"
    assert [p["ContainerPort"] for p in cfn["PortMappings"]] == [SERVER_PORT]
    assert [terraform.resolve(p["containerPort"]) for p in tf["portMappings"]] == [SERVER_PORT]
    assert cfn["HealthCheck"]["Command"] == tf["healthCheck"]["command"] == ["CMD", *CONTAINER_HEALTHCHECK]
    assert cfn["LogConfiguration"]["LogDriver"] == tf["logConfiguration"]["logDriver"] == "awslogs"


def test_ecs_shutdown_outlasts_the_server(cfn_ecs: Template, terraform: Terraform) -> None:
    """stopTimeout > SHUTDOWN_TIMEOUT_SECS + the Firehose drain, and the ALB drains for as long."""
    container = _ecs_container(cfn_ecs)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert int(env["SHUTDOWN_TIMEOUT_SECS"]) == SHUTDOWN_TIMEOUT_SECS
    assert container["StopTimeout"] == STOP_TIMEOUT_SECS
    assert container["StopTimeout"] > int(env["SHUTDOWN_TIMEOUT_SECS"]) + FIREHOSE_SHUTDOWN_DRAIN_SECS
    _, group = only_resource(cfn_ecs, "AWS::ElasticLoadBalancingV2::TargetGroup")
    attrs = {a["Key"]: a["Value"] for a in group["Properties"]["TargetGroupAttributes"]}
    assert int(attrs["deregistration_delay.timeout_seconds"]) == STOP_TIMEOUT_SECS

    tf = _tf_ecs_container(terraform)
    assert terraform.resolve(tf["stopTimeout"]) == STOP_TIMEOUT_SECS
    assert terraform.locals["shutdown_timeout_secs"] == SHUTDOWN_TIMEOUT_SECS
    tf_group = terraform.resource("aws_lb_target_group", "webhook")
    assert terraform.resolve(tf_group["deregistration_delay"]) == STOP_TIMEOUT_SECS


def test_ecs_load_balancer_closes_idle_connections_before_the_server(cfn_ecs: Template, terraform: Terraform) -> None:
    """The server closes a connection idle for HEADER_READ_TIMEOUT_SECS (hyper's header timer runs
    while a keep-alive connection waits for its next request): it must outlast the load balancer's
    idle timeout, or the load balancer sends webhooks on connections being closed (502)."""
    _, lb = only_resource(cfn_ecs, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attrs = {a["Key"]: a["Value"] for a in lb["Properties"]["LoadBalancerAttributes"]}
    env = {e["Name"]: e["Value"] for e in _ecs_container(cfn_ecs)["Environment"]}
    assert int(env["HEADER_READ_TIMEOUT_SECS"]) > int(attrs["idle_timeout.timeout_seconds"])
    tf_env = {e["name"]: e["value"] for e in _tf_ecs_container(terraform)["environment"]}
    assert tf_env["HEADER_READ_TIMEOUT_SECS"] == "${tostring(local.header_read_timeout_secs)}"
    assert terraform.resource("aws_lb", "webhook")["idle_timeout"] == "${local.load_balancer_idle_timeout_secs}"
    assert terraform.locals["header_read_timeout_secs"] > terraform.locals["load_balancer_idle_timeout_secs"]
    assert int(env["HEADER_READ_TIMEOUT_SECS"]) == terraform.locals["header_read_timeout_secs"]


def test_ecs_load_balancer_checks_readiness_over_https(cfn_ecs: Template, terraform: Terraform) -> None:
    _, group = only_resource(cfn_ecs, "AWS::ElasticLoadBalancingV2::TargetGroup")
    props = group["Properties"]
    assert props["HealthCheckPath"] == HEALTH_PATH and props["Matcher"] == {"HttpCode": HEALTHY_STATUS}
    assert props["Port"] == SERVER_PORT and props["TargetType"] == "ip"
    (hc,) = terraform.resource("aws_lb_target_group", "webhook")["health_check"]
    assert hc["path"] == HEALTH_PATH and hc["matcher"] == HEALTHY_STATUS

    listeners = {
        listener["Properties"]["Port"]: listener["Properties"]
        for listener in resources_of(cfn_ecs, "AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert set(listeners) == {443, 80}
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    (redirect,) = listeners[80]["DefaultActions"]
    assert redirect["Type"] == "redirect" and redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    tf_https = terraform.resource("aws_lb_listener", "https")
    assert tf_https["protocol"] == "HTTPS" and tf_https["certificate_arn"] == "${var.certificate_arn}"
    tf_redirect = terraform.resource("aws_lb_listener", "http_redirect")["default_action"][0]
    assert tf_redirect["type"] == "redirect" and tf_redirect["redirect"][0]["protocol"] == "HTTPS"


def test_ecs_task_port_is_open_only_to_the_load_balancer(cfn_ecs: Template, terraform: Terraform) -> None:
    ingress = {
        name: rule
        for name, rule in resources_of(cfn_ecs, "AWS::EC2::SecurityGroupIngress").items()
        if rule["Properties"]["GroupId"] == {"Ref": "TaskSecurityGroup"}
    }
    (rule,) = ingress.values()
    assert rule["Properties"]["GroupId"] == {"Ref": "TaskSecurityGroup"}
    assert rule["Properties"]["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"}
    assert rule["Properties"]["FromPort"] == rule["Properties"]["ToPort"] == SERVER_PORT
    assert "SecurityGroupIngress" not in cfn_ecs["Resources"]["TaskSecurityGroup"]["Properties"]
    egress = cfn_ecs["Resources"]["TaskSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(e["FromPort"], e["ToPort"]) for e in egress] == [(443, 443)]
    tf_ingress = {
        name: body
        for name, body in terraform.resources["aws_vpc_security_group_ingress_rule"].items()
        if body["security_group_id"] == "${aws_security_group.ecs_tasks[0].id}"
    }
    (tf_rule,) = tf_ingress.values()
    assert tf_rule["referenced_security_group_id"] == "${aws_security_group.ecs_load_balancer[0].id}"
    assert "cidr_ipv4" not in tf_rule


def test_ecs_task_role_is_the_producer_policy(cfn_ecs: Template, terraform: Terraform) -> None:
    # As deployed without the SQS destination (the test below covers it).
    role = render_cfn(cfn_ecs)["Resources"]["TaskRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [{"Fn::ImportValue": {"Fn::Sub": "${CoreStackName}-ProducerPolicyArn"}}]
    assert "Policies" not in role
    task = cfn_ecs["Resources"]["TaskDefinition"]
    assert task["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert task["Properties"]["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    attachments = {
        body["policy_arn"]
        for body in terraform.resources["aws_iam_role_policy_attachment"].values()
        if body["role"] == "${aws_iam_role.ecs_task[0].name}"
    }
    assert attachments == {"${aws_iam_policy.producer.arn}", "${aws_iam_policy.sqs_producer[0].arn}"}
    inline = terraform.resources["aws_iam_role_policy"].values()
    assert not any(body["role"].startswith("${aws_iam_role.ecs_task") for body in inline), "no inline policy"
    # The execution role may read exactly the one secret.
    (policy,) = cfn_ecs["Resources"]["ExecutionRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Ref": "StripeWebhookSecretArn"}
    assert set(statement["Action"]) == {"secretsmanager:GetSecretValue", "ssm:GetParameters"}


def test_ecs_runs_two_tasks_or_more_and_scales(cfn_ecs: Template, terraform: Terraform) -> None:
    params = cfn_ecs["Parameters"]
    assert params["DesiredCount"]["MinValue"] >= ECS_MIN_TASKS and params["DesiredCount"]["Default"] >= ECS_MIN_TASKS
    assert params["TaskSubnetIds"]["Type"] == params["LoadBalancerSubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    _, service = only_resource(cfn_ecs, "AWS::ECS::Service")
    props = service["Properties"]
    assert props["LaunchType"] == "FARGATE" and props["DesiredCount"] == {"Ref": "DesiredCount"}
    assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == {"Ref": "TaskSubnetIds"}
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert props["LoadBalancers"][0]["ContainerPort"] == SERVER_PORT
    _, target = only_resource(cfn_ecs, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["Properties"]["MinCapacity"] == {"Ref": "DesiredCount"}
    metrics = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
        for p in resources_of(cfn_ecs, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}
    tf_metrics = {
        p["target_tracking_scaling_policy_configuration"][0]["predefined_metric_specification"][0]["predefined_metric_type"]
        for p in terraform.resources["aws_appautoscaling_policy"].values()
    }
    assert tf_metrics == metrics
    assert terraform.variables["desired_count"]["default"] >= ECS_MIN_TASKS
    for var in ("desired_count", "task_subnet_ids", "load_balancer_subnet_ids"):
        assert terraform.variables[var].get("validation"), f"{var} must be validated"
    tf_service = terraform.resource("aws_ecs_service", "webhook")
    assert tf_service["network_configuration"][0]["subnets"] == "${var.task_subnet_ids}"


def test_ecs_log_group_has_retention(cfn_ecs: Template, terraform: Terraform) -> None:
    groups = resources_of(cfn_ecs, "AWS::Logs::LogGroup")
    assert set(groups) == {"LogGroup", "ReconcileLogGroup"}
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for name in ("ecs", "reconcile"):
        assert terraform.resource("aws_cloudwatch_log_group", name)["retention_in_days"] == "${var.ecs_log_retention_days}"


# ---------------------------------------------------------------------------------------------
# Athena: location, partitioning, projection, SerDe, columns
# ---------------------------------------------------------------------------------------------


def test_athena_table_matches_the_layout() -> None:
    ddl = parse_table_ddl(ATHENA_TABLE_DDL.read_text())
    assert ddl.name == ATHENA_TABLE
    assert [c.name for c in ddl.columns] == list(ENVELOPE_V1_FIELDS)
    assert [(c.name, c.type) for c in ddl.partitions] == [(k, "string") for k in PARTITION_KEYS]
    assert ddl.serde == ATHENA_SERDE
    placeholder = f"s3://{ATHENA_BUCKET_PLACEHOLDER}/"
    assert ddl.location.replace(placeholder, "s3://${bucket}/") == ATHENA_LOCATION
    props = ddl.properties
    assert props["storage.location.template"].replace(placeholder, "s3://${bucket}/") == ATHENA_LOCATION_TEMPLATE
    assert props["projection.enabled"] == "true"
    for key, digits in zip(PARTITION_KEYS, ("4", "2", "2")):
        assert props[f"projection.{key}.type"] == "integer", key
        assert props[f"projection.{key}.digits"] == digits, key
    assert props["projection.month.range"] == "1,12" and props["projection.day.range"] == "1,31"


@pytest.mark.parametrize(
    ("field", "athena_type"),
    [
        ("v", "int"),
        ("created", "string"),  # integer for snapshot events, ISO string for thin events
        ("livemode", "boolean"),
        ("data", "string"),  # JSON text: json_extract_scalar(data, '$.object.amount')
        ("oversize", "struct<bucket:string,key:string,bytes:bigint,sha256:string>"),
    ],
)
def test_athena_column_types(field: str, athena_type: str) -> None:
    ddl = parse_table_ddl(ATHENA_TABLE_DDL.read_text())
    assert {c.name: c.type for c in ddl.columns}[field] == athena_type


def test_athena_partitions_follow_the_firehose_prefix() -> None:
    """The Firehose prefix, with Athena's placeholders, is the projection's location template."""
    ddl = parse_table_ddl(ATHENA_TABLE_DDL.read_text())
    template = ddl.properties["storage.location.template"].split("/", 3)[3]  # after s3://bucket/
    firehose_as_athena = FIREHOSE_PREFIX
    for key, pattern in zip(PARTITION_KEYS, ("yyyy", "MM", "dd")):
        firehose_as_athena = firehose_as_athena.replace(f"!{{timestamp:{pattern}}}", f"${{{key}}}")
    assert template == firehose_as_athena


def test_the_infra_allowlist_is_the_servers_bundled_stripe_list(cfn_ecs: Template, terraform: Terraform) -> None:
    """`ALLOWED_SOURCE_IPS=stripe` in the server, the ECS stack's AllowedSourceCidrs and Terraform's
    allowed_source_cidrs name the same addresses (refreshed together when Stripe announces a change)."""
    from layout_spec import ROOT

    source = (ROOT / "bins/stripe-webhook-server/src/sources.rs").read_text()
    bundled = re.search(r"STRIPE_WEBHOOK_IPS: &\[&str\] = &\[(.*?)\];", source, re.S)
    assert bundled, "STRIPE_WEBHOOK_IPS not found in sources.rs"
    server = [f"{ip}/32" for ip in re.findall(r'"([0-9.]+)"', bundled.group(1))]
    assert len(server) == 15, server
    assert cfn_ecs["Parameters"]["AllowedSourceCidrs"]["Default"].split(",") == server
    assert terraform.variables["allowed_source_cidrs"]["default"] == server


# ---------------------------------------------------------------------------------------------
# The SQS destination (docs/forwarding-sqs.md): the optional stack and sqs.tf agree
# ---------------------------------------------------------------------------------------------

# What the service calls: SendMessageBatch (authorized as sqs:SendMessage) and the start-up check.
SQS_PRODUCER_ACTIONS = {"sqs:SendMessage", "sqs:GetQueueAttributes"}
SQS_ALARMS = {
    "sqs-dead-letters": ("ApproximateNumberOfMessagesVisible", "dead_letter"),
    "sqs-oldest-message-age": ("ApproximateAgeOfOldestMessage", "events"),
}


def test_sqs_destination_agrees(cfn_sqs: Template, terraform: Terraform) -> None:
    queues = resources_of(cfn_sqs, "AWS::SQS::Queue")
    assert set(queues) == {"Queue", "DeadLetterQueue"}
    for name, q in queues.items():
        assert q["Properties"]["SqsManagedSseEnabled"] is True, name
        assert q["Properties"]["MessageRetentionPeriod"] == 1209600, name
    redrive = queues["Queue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    for name in ("events", "dead_letter"):
        tf_queue = terraform.resource("aws_sqs_queue", name)
        assert tf_queue["sqs_managed_sse_enabled"] is True and tf_queue["message_retention_seconds"] == 1209600
    assert "dead_letter[0].arn" in terraform.resource("aws_sqs_queue", "events")["redrive_policy"]

    # The producer may send to this queue and read its attributes, nothing else.
    _, policy = only_resource(cfn_sqs, "AWS::IAM::ManagedPolicy")
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and set(statement["Action"]) == SQS_PRODUCER_ACTIONS
    assert statement["Resource"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    tf_policy = terraform.resource("aws_iam_policy", "sqs_producer")["policy"]
    for action in SQS_PRODUCER_ACTIONS:
        assert action in tf_policy, action
    assert "aws_sqs_queue.events[0].arn" in tf_policy and "dead_letter" not in tf_policy

    alarms = resources_of(cfn_sqs, "AWS::CloudWatch::Alarm")
    by_suffix = {a["Properties"]["AlarmName"]["Fn::Sub"].split("-${Environment}-", 1)[1]: a["Properties"] for a in alarms.values()}
    assert set(by_suffix) == set(SQS_ALARMS)
    for suffix, (metric, tf_queue) in SQS_ALARMS.items():
        cfn = by_suffix[suffix]
        tf = terraform.resource("aws_cloudwatch_metric_alarm", suffix.replace("-", "_"))
        assert cfn["Namespace"] == tf["namespace"] == "AWS/SQS"
        assert cfn["MetricName"] == tf["metric_name"] == metric
        assert f"aws_sqs_queue.{tf_queue}[0].name" in tf["dimensions"]["QueueName"]
        assert cfn["Statistic"] == tf["statistic"] and cfn["ComparisonOperator"] == tf["comparison_operator"]
        assert param_default(cfn_sqs, cfn["Threshold"]) == terraform.resolve(tf["threshold"])
        assert cfn["AlarmActions"] == cfn["OKActions"] == [{"Ref": "AlarmTopicArn"}]
        assert tf["alarm_actions"] == tf["ok_actions"] == "${local.alarm_actions}"
    assert "FORWARD_SQS_QUEUE_URL=" in cfn_sqs["Outputs"]["ServerEnvironment"]["Value"]["Fn::Sub"]
    assert "FORWARD_SQS_QUEUE_URL" in SERVICE_ENV_VARS


# The ECS and Lambda stacks send to the queue when SqsStackName names the SQS stack (Terraform: the
# ECS task and the Lambda function of the configuration, with sqs_enabled): FORWARD_SQS_QUEUE_URL in
# the service's environment and the SQS stack's producer policy on its role; nothing of either without.
SQS_STACK_NAME = "stripe-webhooks-sqs"
SERVICE_ROLES = {"ecs": "TaskRole", "lambda": "FunctionRole"}
CORE_PRODUCER_POLICY = {"Fn::ImportValue": {"Fn::Sub": "${CoreStackName}-ProducerPolicyArn"}}


def _service_environment(stack: str, rendered: Template) -> dict[str, Any]:
    if stack == "ecs":
        (container,) = rendered["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        return {e["Name"]: e["Value"] for e in container["Environment"]}
    _, fn = only_resource(rendered, "AWS::Lambda::Function")
    return fn["Properties"]["Environment"]["Variables"]


@pytest.mark.parametrize("stack", sorted(SERVICE_ROLES))
def test_the_sqs_destination_is_wired_only_when_its_stack_is_named(
    stack: str, cfn_ecs: Template, cfn_lambda: Template
) -> None:
    template = {"ecs": cfn_ecs, "lambda": cfn_lambda}[stack]
    assert template["Parameters"]["SqsStackName"]["Default"] == ""

    off = render_cfn(template)
    assert "FORWARD_SQS_QUEUE_URL" not in _service_environment(stack, off)
    assert off["Resources"][SERVICE_ROLES[stack]]["Properties"]["ManagedPolicyArns"] == [CORE_PRODUCER_POLICY]
    assert "${SqsStackName}" not in json.dumps(off["Resources"]), "nothing is imported from an SQS stack"

    on = render_cfn(template, {"SqsStackName": SQS_STACK_NAME})
    env = _service_environment(stack, on)
    assert env["FORWARD_SQS_QUEUE_URL"] == {"Fn::ImportValue": {"Fn::Sub": "${SqsStackName}-QueueUrl"}}
    # Everything else in the environment is as without the destination.
    assert {k: v for k, v in env.items() if k != "FORWARD_SQS_QUEUE_URL"} == _service_environment(stack, off)
    assert env["SINK"] == "firehose", "the SQS destination runs beside the Firehose sink only"
    assert set(env) <= SERVICE_ENV_VARS | {LOG_FILTER_ENV_VAR}
    role = on["Resources"][SERVICE_ROLES[stack]]["Properties"]
    assert role["ManagedPolicyArns"] == [
        CORE_PRODUCER_POLICY,
        {"Fn::ImportValue": {"Fn::Sub": "${SqsStackName}-SqsProducerPolicyArn"}},
    ]
    # Those two imports are all the parameter changes, and no policy of the stack itself grants SQS.
    assert json.dumps(on["Resources"]).count("${SqsStackName}") == 2
    assert '"sqs:' not in json.dumps(on["Resources"])
    assert set(on["Resources"]) == set(off["Resources"])


def test_what_the_services_import_from_the_sqs_stack_is_least_privilege(cfn_sqs: Template, terraform: Terraform) -> None:
    """The queue's URL, and the producer policy: sqs:SendMessage (what SendMessageBatch is authorized
    as) and the start-up check's sqs:GetQueueAttributes, on that queue only, with no condition that
    could widen it. Both queues use SSE-SQS, so no KMS grant is needed (a customer-managed key would
    need kms:GenerateDataKey and kms:Decrypt on it)."""
    exported = {o["Export"]["Name"]["Fn::Sub"]: o["Value"] for o in cfn_sqs["Outputs"].values() if "Export" in o}
    assert exported["${AWS::StackName}-QueueUrl"] == {"Ref": "Queue"}
    assert exported["${AWS::StackName}-SqsProducerPolicyArn"] == {"Ref": "SqsProducerPolicy"}
    document = cfn_sqs["Resources"]["SqsProducerPolicy"]["Properties"]["PolicyDocument"]
    (statement,) = document["Statement"]
    assert set(statement) == {"Sid", "Effect", "Action", "Resource"}
    assert statement["Effect"] == "Allow" and set(statement["Action"]) == SQS_PRODUCER_ACTIONS
    assert statement["Resource"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    for name, queue in resources_of(cfn_sqs, "AWS::SQS::Queue").items():
        assert "KmsMasterKeyId" not in queue["Properties"], f"{name}: a CMK needs kms grants for the producer"
    for name in ("events", "dead_letter"):
        assert "kms_master_key_id" not in terraform.resource("aws_sqs_queue", name), name


def test_terraform_wires_the_sqs_destination_only_with_sqs_enabled(terraform: Terraform) -> None:
    assert terraform.variables["sqs_enabled"]["default"] is False
    # The one setting, present only with sqs_enabled, in the task's and the function's environment.
    assert terraform.locals["sqs_environment"] == (
        "${var.sqs_enabled ? {FORWARD_SQS_QUEUE_URL = aws_sqs_queue.events[0].url} : {}}"
    )
    assert terraform.locals["sqs_env"] == "${[for name, value in local.sqs_environment : {name = name, value = value}]}"
    assert terraform.locals["container_definition"]["environment"].endswith(", local.sqs_env)}")
    fn = terraform.resource("aws_lambda_function", "webhook")
    assert fn["environment"][0]["variables"] == "${merge(local.lambda_environment, local.sqs_environment)}"
    assert "FORWARD_SQS_QUEUE_URL" not in terraform.locals["lambda_environment"]
    # The producer policy on the role that runs each, only when both the service and the queue exist;
    # the service starts only after its role has it (the start-up check reads the queue).
    sqs_attachments = {
        name: body
        for name, body in terraform.resources["aws_iam_role_policy_attachment"].items()
        if "sqs_producer" in body["policy_arn"]
    }
    assert set(sqs_attachments) == {"ecs_task_sqs_producer", "lambda_sqs_producer"}
    for name, (switch, role) in {
        "ecs_task_sqs_producer": ("ecs_enabled", "ecs_task"),
        "lambda_sqs_producer": ("lambda_enabled", "lambda"),
    }.items():
        body = sqs_attachments[name]
        assert body["count"] == f"${{var.{switch} && var.sqs_enabled ? 1 : 0}}", name
        assert body["role"] == f"${{aws_iam_role.{role}[0].name}}", name
        assert body["policy_arn"] == "${aws_iam_policy.sqs_producer[0].arn}", name
    assert "${aws_iam_role_policy_attachment.lambda_sqs_producer}" in fn["depends_on"]
    service = terraform.resource("aws_ecs_service", "webhook")
    assert "${aws_iam_role_policy_attachment.ecs_task_sqs_producer}" in service["depends_on"]
    # No inline policy of either role grants anything on SQS.
    for body in terraform.resources["aws_iam_role_policy"].values():
        assert "sqs:" not in json.dumps(body), body["role"]


def test_the_sqs_destination_fits_the_timeouts_sized_for_firehose(cfn_lambda: Template, terraform: Terraform) -> None:
    """With the SQS destination a webhook waits for both puts at once, and shutdown drains both at
    once (BothSinks joins them): the ECS stop timeout, the deregistration delay and the Lambda
    timeout, sized for Firehose, hold when the ECS or Lambda stack turns the queue on."""
    both = (ROOT / "crates" / "stripe-webhook-service" / "src" / "both.rs").read_text()
    assert "tokio::join!(self.first.put(record.clone()), self.second.put(record))" in both
    assert "tokio::join!(self.first.shutdown(), self.second.shutdown())" in both
    config = (ROOT / "crates" / "stripe-webhook-sink-sqs" / "src" / "config.rs").read_text()
    drain = re.search(r"shutdown_timeout: Duration::from_secs\((\d+)\)", config)
    deadline = re.search(r'env = "FORWARD_SQS_DEADLINE_MS", default_value_t = (\d+)\)', SETTINGS_SOURCES[0].read_text())
    assert drain and deadline, "the SQS sink's shutdown wait or deadline not found"
    sqs_drain, sqs_deadline = int(drain.group(1)), int(deadline.group(1)) / 1000
    assert STOP_TIMEOUT_SECS > SHUTDOWN_TIMEOUT_SECS + max(FIREHOSE_SHUTDOWN_DRAIN_SECS, sqs_drain)
    assert STOP_TIMEOUT_SECS > BODY_READ_TIMEOUT_SECS + max(FIREHOSE_DEADLINE_SECS, sqs_deadline)
    timeout = cfn_lambda["Parameters"]["TimeoutSeconds"]["Default"]
    assert timeout == terraform.variables["timeout_seconds"]["default"]
    assert timeout > max(FIREHOSE_DEADLINE_SECS, sqs_deadline)
