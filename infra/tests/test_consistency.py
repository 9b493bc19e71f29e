"""CloudFormation, Terraform and the Athena DDL agree with the layout spec and with each other."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from athena_ddl import parse_table_ddl
from conftest import Terraform
from layout_spec import (
    ALARM_METRICS,
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
    GLACIER_TRANSITION_DAYS,
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
    record_rs = (ROOT / "crates" / "stripe-webhook-envelope" / "src" / "record.rs").read_text()
    m = re.search(r'pub const ARCHIVE_PREFIX: &str = "([^"]+)";', record_rs)
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
    (transition,) = rule["Transitions"]
    assert transition["StorageClass"] == "GLACIER"
    assert param_default(cfn_main, transition["TransitionInDays"]) == GLACIER_TRANSITION_DAYS
    assert param_default(cfn_main, rule["ExpirationInDays"]) == EXPIRATION_DAYS
    assert rule["Status"] == "Enabled"

    (tf_rule,) = terraform.resource("aws_s3_bucket_lifecycle_configuration", "archive")["rule"]
    assert tf_rule["status"] == "Enabled"
    assert tf_rule["transition"][0]["storage_class"] == "GLACIER"
    assert terraform.resolve(tf_rule["transition"][0]["days"]) == GLACIER_TRANSITION_DAYS
    assert terraform.resolve(tf_rule["expiration"][0]["days"]) == EXPIRATION_DAYS


# ---------------------------------------------------------------------------------------------
# Parameters <-> variables, alarms, outputs, Lambda
# ---------------------------------------------------------------------------------------------

# CloudFormation parameter -> Terraform variable, for names that are not plain snake_case.
RENAMED = {("lambda", "LogRetentionDays"): "lambda_log_retention_days", ("lambda", "CoreStackName"): None}
TERRAFORM_ONLY = {"lambda_enabled"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("mi_b", "mib")


def test_parameters_and_variables_agree(cfn_main: Template, cfn_lambda: Template, terraform: Terraform) -> None:
    expected: dict[str, Any] = {}
    for stack, template in (("main", cfn_main), ("lambda", cfn_lambda)):
        for name, param in template["Parameters"].items():
            var = RENAMED.get((stack, name), snake(name))
            if var is None:
                continue  # the Lambda stack imports the main stack's exports; Terraform refers directly
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
            assert tf_default in ("", None), var
        elif isinstance(tf_default, bool):
            assert str(tf_default).lower() == default, var
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
        assert props["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
    # The topic exists with an e-mail or on request; the subscription only with an e-mail.
    assert cfn_main["Resources"]["AlarmTopic"]["Condition"] == "HasAlarmTopic"
    assert cfn_main["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"
    assert terraform.resource("aws_sns_topic", "alarms")["count"] == "${local.alarm_topic ? 1 : 0}"


def test_outputs_name_everything_a_user_needs(cfn_main: Template, cfn_lambda: Template, terraform: Terraform) -> None:
    needed = {"BucketName", "DeliveryStreamName", "DeliveryStreamArn", "ProducerPolicyArn", "Region", "ServerEnvironment"}
    assert needed <= set(cfn_main["Outputs"])
    assert {snake(n) for n in needed} <= set(terraform.outputs)
    env = cfn_main["Outputs"]["ServerEnvironment"]["Value"]["Fn::Sub"]
    for var in ("SINK=firehose", "AWS_REGION=", "FIREHOSE_DELIVERY_STREAM_NAME=", "OVERSIZE_S3_BUCKET="):
        assert var in env and var in terraform.outputs["server_environment"]["value"], var
    # Every value the Lambda stack imports is exported by the main stack.
    exports = {o["Export"]["Name"]["Fn::Sub"] for o in cfn_main["Outputs"].values() if "Export" in o}
    imports = {v["Fn::ImportValue"]["Fn::Sub"] for v in _values_with_key(cfn_lambda, "Fn::ImportValue")}
    assert imports and {i.replace("${CoreStackName}", "${AWS::StackName}") for i in imports} <= exports


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
    _, fn = only_resource(cfn_lambda, "AWS::Lambda::Function")
    props = fn["Properties"]
    tf_fn = terraform.resource("aws_lambda_function", "webhook")
    assert props["Runtime"] == tf_fn["runtime"] == "provided.al2023"
    assert props["Handler"] == tf_fn["handler"] == "bootstrap"
    assert set(cfn_lambda["Parameters"]["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    assert props["Architectures"] == [{"Ref": "Architecture"}]
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert tf_fn["reserved_concurrent_executions"] == "${var.reserved_concurrency}"
    assert set(props["Environment"]["Variables"]) == set(tf_fn["environment"][0]["variables"]) == FUNCTION_ENV_VARS
    assert cfn_lambda["Parameters"]["StripeWebhookSecret"]["NoEcho"] is True
    assert props["Code"]["S3Bucket"] == {"Ref": "CodeS3Bucket"} and props["Code"]["S3Key"] == {"Ref": "CodeS3Key"}

    _, url = only_resource(cfn_lambda, "AWS::Lambda::Url")
    assert url["Properties"]["AuthType"] == "NONE"
    assert terraform.resource("aws_lambda_function_url", "webhook")["authorization_type"] == "NONE"
    perms = resources_of(cfn_lambda, "AWS::Lambda::Permission")
    assert {p["Properties"]["Action"] for p in perms.values()} == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert all(p["Properties"]["Principal"] == "*" for p in perms.values())

    # The role gets the main stack's producer policy and may write only its own log group.
    _, role = only_resource(cfn_lambda, "AWS::IAM::Role")
    assert role["Properties"]["ManagedPolicyArns"] == [{"Fn::ImportValue": {"Fn::Sub": "${CoreStackName}-ProducerPolicyArn"}}]
    assert terraform.resource("aws_iam_role_policy_attachment", "lambda_producer")["policy_arn"] == (
        "${aws_iam_policy.producer.arn}"
    )
    _, log_group = only_resource(cfn_lambda, "AWS::Logs::LogGroup")
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_function_env_vars_are_what_the_server_reads() -> None:
    """Each variable the templates set is one the binaries parse (clap `env = "..."`) or RUST_LOG."""
    config_rs = (ROOT / "crates" / "stripe-webhook-core" / "src" / "config.rs").read_text()
    parsed = set(re.findall(r'env = "([A-Z0-9_]+)"', config_rs))
    assert FUNCTION_ENV_VARS - {"RUST_LOG"} <= parsed, FUNCTION_ENV_VARS - parsed


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
