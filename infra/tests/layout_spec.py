"""The expected values every infra test checks against, in one place, quoting the specifications.

Sources: docs/envelope-format.md (the members, the oversize pointer), docs/archive-layout.md (the
layout, the Firehose prefixes, Athena), docs/firehose-sink.md (producer calls and permissions, the
shutdown drain), docs/http.md (routes, health), infra/README.md (buffering, retention, Athena) and
docs/deploy.md (the deployment targets).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CFN_MAIN = INFRA / "cloudformation" / "stripe-webhooks.yaml"
CFN_LAMBDA = INFRA / "cloudformation" / "stripe-webhooks-lambda.yaml"
CFN_ECS = INFRA / "cloudformation" / "stripe-webhooks-ecs.yaml"
CFN_DASHBOARD = INFRA / "cloudformation" / "stripe-webhooks-dashboard.yaml"
CFN_SQS = INFRA / "cloudformation" / "stripe-webhooks-sqs.yaml"
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
# Issue 6: "Glacier after 90 days and expiry after 7 years"; issue 21: by default to Glacier Instant
# Retrieval, which readers GET without a restore, and the other archival classes on request.
ARCHIVE_TRANSITION_DAYS = 90
EXPIRATION_DAYS = 7 * 365
ARCHIVE_STORAGE_CLASS = "GLACIER_IR"
ARCHIVE_STORAGE_CLASSES = ("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
OBJECT_LOCK_MODES = ("NONE", "GOVERNANCE", "COMPLIANCE")

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

# Where the settings are declared (clap `env = "..."`): the service's (server and Lambda) and the
# server's own.
SETTINGS_SOURCES = (
    ROOT / "crates" / "stripe-webhook-service" / "src" / "settings.rs",
    ROOT / "bins" / "stripe-webhook-server" / "src" / "lib.rs",
    ROOT / "crates" / "stripe-webhook-forward" / "src" / "settings.rs",
)
# Every setting the server reads, as in the README's configuration table. One list: the templates,
# platform files, .env.example and compose.yaml are checked against it, and it against the sources.
SERVICE_ENV_VARS = frozenset(
    {
        # crates/stripe-webhook-service/src/settings.rs
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_WEBHOOK_KEYRING",
        "STRIPE_WEBHOOK_KEYRING_FILE",
        "SIGNATURE_TOLERANCE_SECS",
        "SIGNATURE_MAX_FUTURE_SECS",
        "MAX_BODY_BYTES",
        "ENVELOPE_INCLUDE_RAW",
        "SINK",
        "ALLOW_MEMORY_SINK",
        "ARCHIVE_DIR",
        "ARCHIVE_SEGMENT_MAX_BYTES",
        "ARCHIVE_SEGMENT_MAX_AGE_SECS",
        "ARCHIVE_GZIP_LEVEL",
        "MEMORY_SINK_CAPACITY",
        "AWS_REGION",
        "FIREHOSE_DELIVERY_STREAM_NAME",
        "FIREHOSE_DEADLINE_MS",
        "FIREHOSE_MAX_IN_FLIGHT",
        "FIREHOSE_QUEUE_RECORDS",
        "FIREHOSE_QUEUE_BYTES",
        "FIREHOSE_LINGER_MS",
        "OVERSIZE_S3_BUCKET",
        "OVERSIZE_S3_PREFIX",
        "FORWARD_SQS_QUEUE_URL",
        "FORWARD_SQS_DEADLINE_MS",
        "FORWARD_SQS_MAX_IN_FLIGHT",
        "FORWARD_SQS_QUEUE_RECORDS",
        "FORWARD_SQS_MAX_MESSAGE_BYTES",
        # crates/stripe-webhook-forward/src/settings.rs (forwarding, run by the server)
        "FORWARD_URL",
        "FORWARD_SECRET",
        "FORWARD_TYPES",
        "FORWARD_MAX_AGE",
        "FORWARD_CONCURRENCY",
        "FORWARD_ORDER",
        "FORWARD_TIMEOUT",
        "FORWARD_START",
        "FORWARD_RETRY_MAX",
        "FORWARD_IN_SERVER",
        # bins/stripe-webhook-server/src/lib.rs
        "HOST",
        "PORT",
        "METRICS_ADDR",
        "HEADER_READ_TIMEOUT_SECS",
        "BODY_READ_TIMEOUT_SECS",
        "MAX_CONNECTIONS",
        "MAX_BUFFERED_BODY_BYTES",
        "SHUTDOWN_TIMEOUT_SECS",
        "LOG_FORMAT",
    }
)
# Settings a parallel change adds (the file sink's write deadline): allowed in the sources and
# listed in .env.example before they land. Move them into SERVICE_ENV_VARS once merged.
UPCOMING_ENV_VARS = frozenset(
    {
        "ARCHIVE_WRITE_TIMEOUT_MS",
        "ARCHIVE_OPEN_TIMEOUT_SECS",
        "MAX_CONNECTIONS_PER_SOURCE",
        "ALLOWED_SOURCE_IPS",
        "TRUSTED_PROXIES",
    }
)
# Read outside clap: the log filter, and the AWS SDK's own variables (credentials chain, emulators).
LOG_FILTER_ENV_VAR = "RUST_LOG"
AWS_SDK_ENV_VARS = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"}
)
# The operator CLI (bins/stripe-webhook) reads these too, and the same .env file.
CLI_ENV_VARS = frozenset({"STRIPE_WEBHOOK_URL", "STRIPE_API_KEY", "STRIPE_API_BASE"})
SECRET_ENV_VAR = "STRIPE_WEBHOOK_SECRET"

# What the Lambda function's environment sets (a subset of the service's settings).
FUNCTION_ENV_VARS = frozenset(
    {"STRIPE_WEBHOOK_SECRET", "SINK", "FIREHOSE_DELIVERY_STREAM_NAME", "OVERSIZE_S3_BUCKET", "RUST_LOG"}
)

# docs/http.md: the routes on the public port, the default port, and readiness (200 when ready).
WEBHOOK_PATH = "/webhook/stripe"
HEALTH_PATH = "/health"
HEALTHY_STATUS = "200"
SERVER_PORT = 3001
METRICS_PORT = 9464

# The container image (the root Dockerfile's final stage): name, stage, the binary, its user, and
# the archive volume.
IMAGE_LOCAL = "stripe-webhook-server:local"
IMAGE_TARGET = "runtime"
DOCKERFILE = "Dockerfile"
IMAGE_BINARY = "/stripe-webhook-server"
IMAGE_USER = "65532:65532"
CONTAINER_ARCHIVE_DIR = "/archive"
# The container health check: the built-in probe, in its liveness form (docs/http.md, section 3):
# an orchestrator that restarts on a failed check must not restart a server that is only not
# ready (Firehose failing); readiness is the load balancer's check on HEALTH_PATH.
CONTAINER_HEALTHCHECK = (IMAGE_BINARY, "healthcheck", "--live")

# Shutdown: SHUTDOWN_TIMEOUT_SECS (default, bins/stripe-webhook-server/src/lib.rs) covers in-flight
# webhooks and the sink's close; the Firehose sink's drain (docs/firehose-sink.md, section 12,
# `shutdown_timeout` in crates/stripe-webhook-sink-firehose/src/config.rs) is counted on top to be
# safe. Every platform's kill deadline (ECS stopTimeout, systemd TimeoutStopSec, Render
# maxShutdownDelaySeconds, Railway drainingSeconds, compose stop_grace_period) is STOP_TIMEOUT_SECS.
SHUTDOWN_TIMEOUT_SECS = 25
FIREHOSE_SHUTDOWN_DRAIN_SECS = 6
STOP_TIMEOUT_SECS = 40
# The longest a webhook can be in flight: its body (BODY_READ_TIMEOUT_SECS) and the sink's deadline
# (FIREHOSE_DEADLINE_MS). The load balancer's deregistration delay must outlast it.
BODY_READ_TIMEOUT_SECS = 30
FIREHOSE_DEADLINE_SECS = 5

# ECS Fargate (docs/deploy.md): two tasks or more, in two subnets or more.
ECS_MIN_TASKS = 2
ECS_MIN_SUBNETS = 2

# Platform files at the root of the repository.
RENDER_YAML = ROOT / "render.yaml"
RAILWAY_TOML = ROOT / "railway.toml"
COMPOSE_YAML = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SYSTEMD_UNIT = ROOT / "deploy" / "systemd" / "stripe-webhook-server.service"
# The VM: the archive lives in systemd's state directory, the settings in one environment file.
SYSTEMD_STATE_DIRECTORY = "stripe-webhook"
SYSTEMD_ARCHIVE_DIR = "/var/lib/stripe-webhook"
SYSTEMD_ENVIRONMENT_FILE = "/etc/stripe-webhook/env"
# compose.yaml runs moto from its official image at the version the tests pin.
REQUIREMENTS_TEST = ROOT / "scripts" / "requirements-test.txt"
MOTO_IMAGE = "motoserver/moto"

# The three Firehose alarms: data freshness, delivery success, throttled records.
ALARM_METRICS = frozenset({"DeliveryToS3.DataFreshness", "DeliveryToS3.Success", "ThrottledRecords"})
