# The Stripe webhook archive: the same resources as infra/cloudformation/stripe-webhooks.yaml.
# Layout: docs/archive-layout.md.

locals {
  # The archive layout. Firehose expands !{timestamp:...} from the arrival time (UTC) of the
  # oldest record in each object (docs/archive-layout.md, section 4).
  archive_prefix = "webhooks/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
  error_prefix   = "errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
  object_lock    = var.object_lock_mode != "NONE"
}

resource "aws_s3_bucket" "archive" {
  # checkov:skip=CKV_AWS_18:Server access logs need a second bucket; use CloudTrail S3 data events for an audit trail of this bucket instead.
  # checkov:skip=CKV_AWS_145:SSE-S3 (AES-256) is deliberate: a customer-managed KMS key would add kms:GenerateDataKey to every producer and kms:Decrypt to every Athena reader; see infra/README.md to switch.
  # checkov:skip=CKV2_AWS_62:No consumer needs S3 event notifications; Firehose and the producer are the only writers.
  # checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice left to the operator (needs a second bucket in another region).
  bucket = var.bucket_name
  # Object Lock is enabled when the bucket is created, and can never be turned off.
  object_lock_enabled = local.object_lock

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_object_lock_configuration" "archive" {
  count  = local.object_lock ? 1 : 0
  bucket = aws_s3_bucket.archive.id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_retention_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.archive]
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Records and oversize bodies alike (infra/cloudformation/stripe-webhooks.yaml says why): a replaced
# or deleted version is kept expiration_days after it was replaced.
resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    id     = "archive-retention"
    status = "Enabled"
    filter {}

    transition {
      days          = var.archive_transition_days
      storage_class = var.archive_storage_class
    }
    expiration {
      days = var.expiration_days
    }
    noncurrent_version_transition {
      noncurrent_days = var.archive_transition_days
      storage_class   = var.archive_storage_class
    }
    noncurrent_version_expiration {
      noncurrent_days = var.expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]
}

data "aws_iam_policy_document" "archive_tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "archive" {
  bucket     = aws_s3_bucket.archive.id
  policy     = data.aws_iam_policy_document.archive_tls_only.json
  depends_on = [aws_s3_bucket_public_access_block.archive]
}

resource "aws_cloudwatch_log_group" "firehose" {
  # checkov:skip=CKV_AWS_158:Holds only Firehose delivery error messages (no payloads); the default CloudWatch Logs encryption applies.
  name              = "/aws/kinesisfirehose/${var.delivery_stream_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_stream" "firehose" {
  name           = "DestinationDelivery"
  log_group_name = aws_cloudwatch_log_group.firehose.name
}

data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name_prefix        = "stripe-webhooks-firehose-"
  description        = "Assumed by the Firehose stream to write the archive bucket and its error log."
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
}

data "aws_iam_policy_document" "firehose_deliver" {
  statement {
    sid       = "Bucket"
    actions   = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.archive.arn]
  }
  statement {
    sid     = "DeliveredAndErrorObjects"
    actions = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    resources = [
      "${aws_s3_bucket.archive.arn}/webhooks/*",
      "${aws_s3_bucket.archive.arn}/errors/*",
    ]
  }
  statement {
    sid       = "ErrorLog"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:log-stream:${aws_cloudwatch_log_stream.firehose.name}"]
  }
}

resource "aws_iam_role_policy" "firehose_deliver" {
  name   = "deliver-to-archive"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose_deliver.json
}

resource "aws_kinesis_firehose_delivery_stream" "archive" {
  # checkov:skip=CKV_AWS_241:Encrypted at rest with an AWS-owned key (free, no key policy); a customer-managed key adds cost and key administration without changing who can read the archive.
  name        = var.delivery_stream_name
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = "AWS_OWNED_CMK"
  }

  extended_s3_configuration {
    bucket_arn = aws_s3_bucket.archive.arn
    role_arn   = aws_iam_role.firehose.arn
    # The producer writes one envelope line ending in "\n" per record: no AppendDelimiterToRecord,
    # no processors, no dynamic partitioning.
    prefix              = local.archive_prefix
    error_output_prefix = local.error_prefix
    compression_format  = "GZIP"
    buffering_size      = var.buffer_size_mib
    buffering_interval  = var.buffer_interval_seconds
    s3_backup_mode      = "Disabled"

    dynamic_partitioning_configuration {
      enabled = false
    }
    processing_configuration {
      enabled = false
    }
    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose.name
    }
  }

  depends_on = [aws_iam_role_policy.firehose_deliver]
}

# What the webhook server (or the Lambda function) needs, and nothing else.
data "aws_iam_policy_document" "producer" {
  statement {
    sid       = "PutRecordsToThisStream"
    actions   = ["firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"]
    resources = [aws_kinesis_firehose_delivery_stream.archive.arn]
  }
  statement {
    sid       = "WriteOversizeBodies"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/oversize/*"]
  }
}

resource "aws_iam_policy" "producer" {
  name_prefix = "stripe-webhooks-producer-"
  description = "Lets the Stripe webhook server write records to this stream and oversized bodies to oversize/."
  policy      = data.aws_iam_policy_document.producer.json
}
