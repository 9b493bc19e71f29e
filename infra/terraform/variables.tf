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

variable "glacier_transition_days" {
  description = "Days after which archive objects move to S3 Glacier Flexible Retrieval."
  type        = number
  default     = 90
}

variable "expiration_days" {
  description = "Days after which archive objects are deleted (2555 = 7 years). Must exceed glacier_transition_days."
  type        = number
  default     = 2555
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Retention of the Firehose error log group."
  type        = number
  default     = 365
}

variable "alarm_email" {
  description = "If set, an SNS topic is created and this address subscribed to the alarms (confirm the e-mail)."
  type        = string
  default     = ""
}

variable "create_alarm_topic" {
  description = "Create the alarm SNS topic even without alarm_email."
  type        = bool
  default     = false
}

variable "data_freshness_threshold_seconds" {
  description = "Alarm when the oldest record in Firehose is older than this."
  type        = number
  default     = 900
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
