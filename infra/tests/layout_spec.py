"""The expected values every infra test checks against, in one place, quoting the specifications.

Sources: docs/envelope-format.md (the members, the oversize pointer), docs/archive-layout.md (the
layout, the Firehose prefixes, Athena), docs/firehose-sink.md (producer calls and permissions), and
issue 6 (buffering, retention, Athena).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CFN_MAIN = INFRA / "cloudformation" / "stripe-webhooks.yaml"
CFN_LAMBDA = INFRA / "cloudformation" / "stripe-webhooks-lambda.yaml"
TERRAFORM_DIR = INFRA / "terraform"
ATHENA_DIR = INFRA / "athena"
ATHENA_TABLE_DDL = ATHENA_DIR / "create-table.sql"
ATHENA_QUERIES_DIR = ATHENA_DIR / "queries"
FIXTURE_EVENTS_DIR = ROOT / "fixtures" / "events"

# archive-layout.md, section 1: `webhooks/year=YYYY/month=MM/day=DD/<file>`.
ARCHIVE_PREFIX = "webhooks"
# archive-layout.md, section 3: the prefix `webhooks/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/`
FIREHOSE_PREFIX = "webhooks/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
# and the error output prefix `errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/`
FIREHOSE_ERROR_PREFIX = (
    "errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
)
# GZIP, no dynamic partitioning, no AppendDelimiterToRecord (the producer writes the `\n`).
COMPRESSION = "GZIP"
# Issue 6: "5 MiB / 300 s buffering".
BUFFER_SIZE_MIB = 5
BUFFER_INTERVAL_SECONDS = 300
# Issue 6: "Glacier after 90 days and expiry after 7 years".
GLACIER_TRANSITION_DAYS = 90
EXPIRATION_DAYS = 7 * 365

# envelope-format.md, section 6: an oversize event's body goes to S3 directly under `oversize/`.
OVERSIZE_PREFIX = "oversize/"
# Issue 6: "a producer managed policy with only firehose:PutRecordBatch and
# firehose:DescribeDeliveryStream on this stream, plus s3:PutObject on the oversize/ prefix".
PRODUCER_FIREHOSE_ACTIONS = frozenset({"firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"})
PRODUCER_S3_ACTIONS = frozenset({"s3:PutObject"})

# archive-layout.md, section 5: the Athena table, partitioned by `year`, `month`, `day`, with
# partition projection.
PARTITION_KEYS = ("year", "month", "day")
ATHENA_TABLE = "stripe_webhooks.events"
ATHENA_SERDE = "org.openx.data.jsonserde.JsonSerDe"
ATHENA_LOCATION_TEMPLATE = "s3://${bucket}/webhooks/year=${year}/month=${month}/day=${day}/"
ATHENA_LOCATION = "s3://${bucket}/webhooks/"
ATHENA_BUCKET_PLACEHOLDER = "YOUR_BUCKET"

# envelope-format.md, section 2: the Node service's `timestamp`, `id`, `type`, `data`, and the added
# `v`, `object`, `created`, `livemode`, `api_version`, `account`, `raw`, `signature`, plus the
# oversize pointer.
ENVELOPE_V1_FIELDS = (
    "v",
    "timestamp",
    "id",
    "type",
    "object",
    "created",
    "livemode",
    "api_version",
    "account",
    "data",
    "raw",
    "signature",
    "oversize",
)

# What the server and the Lambda function read from their environment (crates/stripe-webhook-core).
FUNCTION_ENV_VARS = frozenset(
    {"STRIPE_WEBHOOK_SECRET", "SINK", "FIREHOSE_DELIVERY_STREAM_NAME", "OVERSIZE_S3_BUCKET", "RUST_LOG"}
)

# The three Firehose alarms: data freshness, delivery success, throttled records.
ALARM_METRICS = frozenset({"DeliveryToS3.DataFreshness", "DeliveryToS3.Success", "ThrottledRecords"})
