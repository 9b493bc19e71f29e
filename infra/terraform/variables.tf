# The same settings as the CloudFormation parameters (infra/cloudformation/*.yaml), in snake_case.

variable "bucket_name" {
  description = "Globally unique name of the archive bucket (created here)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "3 to 63 lowercase letters, digits, dots and hyphens."
  }
}

variable "environment" {
  description = "Environment name, used in tags and alarm names."
  type        = string
  default     = "production"
}

variable "delivery_stream_name" {
  description = "Firehose stream name; the server reads it from FIREHOSE_DELIVERY_STREAM_NAME."
  type        = string
  default     = "stripe-webhooks"
}

variable "buffer_size_mib" {
  description = "Firehose delivers an object once this many MiB are buffered (before compression)."
  type        = number
  default     = 5
  validation {
    condition     = var.buffer_size_mib >= 1 && var.buffer_size_mib <= 128
    error_message = "1 to 128 MiB."
  }
}

variable "buffer_interval_seconds" {
  description = "... or once the oldest buffered record is this old."
  type        = number
  default     = 300
  validation {
    condition     = var.buffer_interval_seconds >= 0 && var.buffer_interval_seconds <= 900
    error_message = "0 to 900 seconds."
  }
}

variable "expiration_days" {
  description = "Days the archive keeps records and oversize bodies (2555 = 7 years); a replaced or deleted version is kept as long again after it was replaced. Must exceed archive_transition_days."
  type        = number
  default     = 2555
}

variable "archive_storage_class" {
  description = "Storage class objects move to after archive_transition_days: GLACIER_IR (read like any object), GLACIER or DEEP_ARCHIVE (restore before reading: docs/archive-layout.md)."
  type        = string
  default     = "GLACIER_IR"
  validation {
    condition     = contains(["GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"], var.archive_storage_class)
    error_message = "GLACIER_IR, GLACIER or DEEP_ARCHIVE."
  }
}

variable "archive_transition_days" {
  description = "Days after which archive objects (and replaced versions) move to archive_storage_class."
  type        = number
  default     = 90
}

variable "object_lock_mode" {
  description = "S3 Object Lock for every new object: NONE, GOVERNANCE (bypassable with s3:BypassGovernanceRetention) or COMPLIANCE (nobody, root included). Choose it before the bucket is created: it cannot be turned off, and changing it from NONE replaces the bucket (prevent_destroy refuses)."
  type        = string
  default     = "NONE"
  validation {
    condition     = contains(["NONE", "GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "NONE, GOVERNANCE or COMPLIANCE."
  }
}

variable "object_lock_retention_days" {
  description = "Default Object Lock retention of each new object under object_lock_mode; at most expiration_days."
  type        = number
  default     = 2555
}

variable "log_retention_days" {
  description = "Retention of the Firehose error log group."
  type        = number
  default     = 365
}

variable "alarm_email" {
  description = "Subscribed to the alarm SNS topic (confirm the e-mail SNS sends). Required: an alarm nobody receives is no alarm. Subscribe more endpoints to the alarm_topic_arn output."
  type        = string
  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "An e-mail address."
  }
}

variable "runbooks_url" {
  description = "Where your team reads docs/runbooks.md of this repository, e.g. https://github.com/your-org/stripe-webhooks/blob/main/docs/runbooks.md; each alarm description ends with this address and its runbook's anchor."
  type        = string
  validation {
    condition     = can(regex("^https://\\S+$", var.runbooks_url))
    error_message = "An https:// address."
  }
}

variable "data_freshness_threshold_seconds" {
  description = "Alarm when the oldest record in Firehose is older than this."
  type        = number
  default     = 900
}

variable "server_error_rate_percent" {
  description = "Alarm (Lambda, ECS) when more than this percentage of the webhooks got a 5xx in 5 minutes (and at least 5 did)."
  type        = number
  default     = 5
  validation {
    condition     = var.server_error_rate_percent >= 1 && var.server_error_rate_percent <= 100
    error_message = "1 to 100 percent."
  }
}

variable "signature_failure_threshold" {
  description = "Alarm (Lambda) when at least this many webhooks fail signature verification in 5 minutes and they outnumber the accepted ones."
  type        = number
  default     = 10
}

variable "signature_failure_rate_percent" {
  description = "Alarm (ECS) when more than this percentage of the load balancer's requests got a 4xx from the tasks in 5 minutes (and at least 10 did): a wrong signing secret makes every webhook 400."
  type        = number
  default     = 50
  validation {
    condition     = var.signature_failure_rate_percent >= 1 && var.signature_failure_rate_percent <= 100
    error_message = "1 to 100 percent."
  }
}

variable "no_accepted_webhook_hours" {
  description = "Alarm (Lambda, ECS) when no webhook was accepted for this many hours (Stripe disabled the endpoint, DNS broke, every webhook refused)."
  type        = number
  default     = 6
  validation {
    condition     = var.no_accepted_webhook_hours >= 1 && var.no_accepted_webhook_hours <= 24
    error_message = "1 to 24 hours."
  }
}

variable "dashboard_name" {
  description = "The CloudWatch dashboard is named <dashboard_name>-<environment>."
  type        = string
  default     = "stripe-webhooks"
  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,200}$", var.dashboard_name))
    error_message = "1 to 200 letters, digits, hyphens and underscores."
  }
}

# --- Optional Lambda function (infra/cloudformation/stripe-webhooks-lambda.yaml) ---

variable "lambda_enabled" {
  description = "Create the Lambda function and its Function URL."
  type        = bool
  default     = false
}

variable "function_name" {
  description = "Lambda function name."
  type        = string
  default     = "stripe-webhooks"
}

variable "code_s3_bucket" {
  description = "Bucket holding bootstrap.zip (from `cargo lambda build --release --output-format zip`)."
  type        = string
  default     = ""
}

variable "code_s3_key" {
  description = "Key of bootstrap.zip."
  type        = string
  default     = "stripe-webhook-lambda/bootstrap.zip"
}

variable "code_s3_object_version" {
  description = "Optional object version of bootstrap.zip."
  type        = string
  default     = null
}

variable "architecture" {
  description = "arm64 or x86_64; must match the build."
  type        = string
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "arm64 or x86_64."
  }
}

variable "stripe_webhook_secret" {
  description = "The endpoint's signing secret(s), whsec_..., comma-separated. Kept in state: protect the state."
  type        = string
  default     = ""
  sensitive   = true
}

variable "reserved_concurrency" {
  description = "Caps concurrent invocations (cost and Firehose request rate under redelivery bursts)."
  type        = number
  default     = 20
}

variable "memory_size" {
  description = "Lambda memory in MB."
  type        = number
  default     = 256
}

variable "timeout_seconds" {
  description = "Lambda timeout: above the sink's 5 s deadline, well under Stripe's."
  type        = number
  default     = 10
}

variable "lambda_log_retention_days" {
  description = "Retention of the function's log group."
  type        = number
  default     = 90
}

# --- Optional ECS Fargate service (infra/cloudformation/stripe-webhooks-ecs.yaml) ---

variable "ecs_enabled" {
  description = "Create the ECS Fargate service behind an HTTPS load balancer."
  type        = bool
  default     = false
}

variable "service_name" {
  description = "Names the cluster, service, load balancer, target group and log group."
  type        = string
  default     = "stripe-webhooks"
  validation {
    condition     = can(regex("^[a-z0-9-]{1,28}$", var.service_name))
    error_message = "1 to 28 lowercase letters, digits and hyphens."
  }
}

variable "image_uri" {
  description = "The server image (the root Dockerfile's runtime stage); push each build under a new tag or pin a digest."
  type        = string
  default     = ""
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64; must match the image."
  type        = string
  default     = "X86_64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "X86_64 or ARM64."
  }
}

variable "stripe_webhook_secret_format" {
  description = "What stripe_webhook_secret_arn holds: \"secrets\" (comma-separated, injected as STRIPE_WEBHOOK_SECRET) or \"keyring\" (one entry per line with label, start and retirement, injected as STRIPE_WEBHOOK_KEYRING; docs/verification.md#keyring)."
  type        = string
  default     = "secrets"
  validation {
    condition     = contains(["secrets", "keyring"], var.stripe_webhook_secret_format)
    error_message = "secrets or keyring."
  }
}

variable "stripe_webhook_secret_arn" {
  description = "ARN of the Secrets Manager secret or SSM SecureString parameter holding the signing secret(s) or the keyring (see stripe_webhook_secret_format)."
  type        = string
  default     = ""
  validation {
    condition     = var.stripe_webhook_secret_arn == "" || can(regex("^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+|ssm:[a-z0-9-]+:[0-9]{12}:parameter/.+)$", var.stripe_webhook_secret_arn))
    error_message = "A Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "vpc_id" {
  description = "The VPC of the load balancer and the tasks."
  type        = string
  default     = ""
}

variable "load_balancer_subnet_ids" {
  description = "Public subnets for the internet-facing load balancer, in two Availability Zones or more."
  type        = list(string)
  default     = []
  validation {
    condition     = length(var.load_balancer_subnet_ids) == 0 || length(var.load_balancer_subnet_ids) >= 2
    error_message = "Two subnets or more, in different Availability Zones."
  }
}

variable "task_subnet_ids" {
  description = "Subnets for the tasks, in two Availability Zones or more (private with NAT or VPC endpoints, or public with assign_public_ip)."
  type        = list(string)
  default     = []
  validation {
    condition     = length(var.task_subnet_ids) == 0 || length(var.task_subnet_ids) >= 2
    error_message = "Two subnets or more, in different Availability Zones."
  }
}

variable "assign_public_ip" {
  description = "Give each task a public IP (only for tasks in public subnets without a NAT gateway)."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate (same region) for the HTTPS listener; its domain is the endpoint's host."
  type        = string
  default     = ""
}

variable "domain_name" {
  description = "The certificate's host name, pointed at the load balancer; used in the ecs_webhook_url output."
  type        = string
  default     = ""
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "task_cpu" {
  description = "Fargate CPU units per task (1024 = one vCPU)."
  type        = number
  default     = 256
}

variable "task_memory" {
  description = "Fargate memory per task in MiB (valid with task_cpu); 512 holds the default body budget and connections."
  type        = number
  default     = 512
}

variable "desired_count" {
  description = "Tasks to run, and the autoscaling minimum (two or more)."
  type        = number
  default     = 2
  validation {
    condition     = var.desired_count >= 2
    error_message = "Two tasks or more."
  }
}

variable "max_count" {
  description = "Autoscaling maximum."
  type        = number
  default     = 10
}

variable "target_cpu_utilization" {
  description = "Autoscaling keeps the service's average CPU near this percentage."
  type        = number
  default     = 60
}

variable "target_requests_per_task" {
  description = "Autoscaling keeps the load balancer's requests per task per minute near this."
  type        = number
  default     = 3000
}

variable "ecs_log_retention_days" {
  description = "Retention of the service's log group."
  type        = number
  default     = 90
}

# --- Optional scheduled reconcile on ECS (ecs_enabled; infra/cloudformation/stripe-webhooks-ecs.yaml) ---

variable "reconcile_api_key_secret_arn" {
  description = "Set to run `stripe-webhook reconcile` against the archive on a schedule (docs/reconcile.md): the Secrets Manager secret (plain text) holding a Stripe restricted key with Events read. Empty: no scheduled reconcile."
  type        = string
  default     = ""
  validation {
    condition     = var.reconcile_api_key_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.reconcile_api_key_secret_arn))
    error_message = "Empty, or a Secrets Manager secret ARN."
  }
}

variable "reconcile_schedule" {
  description = "EventBridge Scheduler expression, in UTC, of the scheduled reconcile; each run checks the events created between four and three days ago."
  type        = string
  default     = "cron(30 3 * * ? *)"
  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.reconcile_schedule))
    error_message = "cron(...) or rate(...)."
  }
}

variable "source_allowlist" {
  description = "Where to refuse webhooks from addresses outside allowed_source_cidrs, besides the server's own ALLOWED_SOURCE_IPS check (set from allowed_source_cidrs unless none): security-group (free; other connections dropped) or waf (403 at the load balancer; WAF charges apply). none: any address, as before."
  type        = string
  default     = "none"
  validation {
    condition     = contains(["none", "security-group", "waf"], var.source_allowlist)
    error_message = "source_allowlist must be none, security-group or waf."
  }
}

variable "allowed_source_cidrs" {
  description = "Stripe's webhook source addresses (https://stripe.com/files/ips/ips_webhooks.txt as of 2026-05-15; docs/exposure.md). Update when Stripe announces a change."
  type        = list(string)
  default = [
    "3.18.12.63/32", "3.69.109.8/32", "3.120.168.93/32", "3.130.192.231/32", "13.235.14.237/32",
    "13.235.122.149/32", "18.211.135.69/32", "35.154.171.200/32", "35.157.207.129/32", "52.15.183.38/32",
    "54.88.130.119/32", "54.88.130.237/32", "54.187.174.169/32", "54.187.205.235/32", "54.187.216.72/32",
  ]
}

# --- The SQS destination (sqs_enabled): infra/cloudformation/stripe-webhooks-sqs.yaml ---

variable "sqs_enabled" {
  description = "Create the SQS destination: the queue every record is also sent to (FORWARD_SQS_QUEUE_URL), its dead-letter queue, the producer policy and the alarms; the ECS task and the Lambda function (ecs_enabled, lambda_enabled) send to it."
  type        = bool
  default     = false
}

variable "queue_name" {
  description = "The queue's name (.fifo is appended for a FIFO queue); the dead-letter queue is <queue_name>-dlq."
  type        = string
  default     = "stripe-webhooks-events"
  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,70}$", var.queue_name))
    error_message = "1 to 70 letters, digits, hyphens and underscores."
  }
}

variable "fifo_queue" {
  description = "A FIFO queue: one Stripe object's events in the order received (MessageGroupId = data.object.id), duplicates within five minutes dropped (MessageDeduplicationId = the event id)."
  type        = bool
  default     = false
}

variable "visibility_timeout_seconds" {
  description = "How long a received message stays hidden from other consumers; at least six times the consumer function's timeout."
  type        = number
  default     = 180
}

variable "max_receive_count" {
  description = "Receives after which a message moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "oldest_message_age_threshold_seconds" {
  description = "Alarm when the oldest message in the queue is older than this (consumers behind or down)."
  type        = number
  default     = 900
}
