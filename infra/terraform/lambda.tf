# Optional (lambda_enabled = true): the same resources as infra/cloudformation/stripe-webhooks-lambda.yaml.

locals {
  lambda_count = var.lambda_enabled ? 1 : 0
  # The function's environment without the SQS destination's FORWARD_SQS_QUEUE_URL (sqs.tf).
  lambda_environment = {
    STRIPE_WEBHOOK_SECRET         = var.stripe_webhook_secret
    SINK                          = "firehose"
    FIREHOSE_DELIVERY_STREAM_NAME = aws_kinesis_firehose_delivery_stream.archive.name
    OVERSIZE_S3_BUCKET            = aws_s3_bucket.archive.id
    RUST_LOG                      = "info"
  }
}

resource "aws_cloudwatch_log_group" "lambda" {
  # checkov:skip=CKV_AWS_158:The function logs event ids, types and outcomes, never payloads or secrets; default CloudWatch Logs encryption applies.
  # checkov:skip=CKV_AWS_338:Retention is the operator's choice (lambda_log_retention_days, 90 by default); the archive, not the log, is the record of every event.
  count             = local.lambda_count
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.lambda_log_retention_days
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  count              = local.lambda_count
  name_prefix        = "stripe-webhooks-lambda-"
  description        = "Runs the Stripe webhook Lambda function; may write its log group and the archive stream (and send to the SQS destination) only."
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy_attachment" "lambda_producer" {
  count      = local.lambda_count
  role       = aws_iam_role.lambda[0].name
  policy_arn = aws_iam_policy.producer.arn
}

# With the SQS destination (sqs_enabled): send to its queue, nothing else (sqs.tf).
resource "aws_iam_role_policy_attachment" "lambda_sqs_producer" {
  count      = var.lambda_enabled && var.sqs_enabled ? 1 : 0
  role       = aws_iam_role.lambda[0].name
  policy_arn = aws_iam_policy.sqs_producer[0].arn
}

resource "aws_iam_role_policy" "lambda_logs" {
  count = local.lambda_count
  name  = "write-own-logs"
  role  = aws_iam_role.lambda[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "${aws_cloudwatch_log_group.lambda[0].arn}:*"
    }]
  })
}

resource "aws_lambda_function" "webhook" {
  # checkov:skip=CKV_AWS_116:Invoked synchronously by its Function URL; a failed webhook is answered 5xx and Stripe redelivers it, so a dead-letter queue would never receive anything.
  # checkov:skip=CKV_AWS_117:Needs only the public Firehose and S3 endpoints; a VPC would add NAT gateways or VPC endpoints and cold-start latency for no isolation gain.
  # checkov:skip=CKV_AWS_173:Lambda encrypts environment variables at rest with its AWS-managed key; a customer-managed key only matters if the secret stays in the environment (see README: Secrets Manager).
  # checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile; the artifact comes from the operator's own bucket and build.
  # checkov:skip=CKV_AWS_50:X-Ray tracing is not instrumented in the binary; its logs and Firehose metrics cover the one downstream call.
  count                          = local.lambda_count
  function_name                  = var.function_name
  description                    = "Verifies Stripe webhooks and archives them to Firehose before answering 200."
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  memory_size                    = var.memory_size
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  role                           = aws_iam_role.lambda[0].arn
  s3_bucket                      = var.code_s3_bucket
  s3_key                         = var.code_s3_key
  s3_object_version              = var.code_s3_object_version

  environment {
    variables = merge(local.lambda_environment, local.sqs_environment)
  }

  logging_config {
    log_group  = aws_cloudwatch_log_group.lambda[0].name
    log_format = "JSON"
  }

  lifecycle {
    precondition {
      condition     = var.code_s3_bucket != "" && startswith(var.stripe_webhook_secret, "whsec_")
      error_message = "lambda_enabled needs code_s3_bucket and stripe_webhook_secret (whsec_...)."
    }
  }

  depends_on = [aws_iam_role_policy.lambda_logs, aws_iam_role_policy_attachment.lambda_producer, aws_iam_role_policy_attachment.lambda_sqs_producer]
}

# AuthType NONE is required: Stripe sends plain HTTPS POSTs and cannot SigV4-sign requests. The
# function authenticates every request by its Stripe-Signature HMAC over the raw body.
resource "aws_lambda_function_url" "webhook" {
  # checkov:skip=CKV_AWS_258:Stripe cannot sign AWS requests; every request is authenticated in the function by its Stripe-Signature HMAC.
  count              = local.lambda_count
  function_name      = aws_lambda_function.webhook[0].function_name
  authorization_type = "NONE"
  invoke_mode        = "BUFFERED"
}

resource "aws_lambda_permission" "url_public_invoke" {
  # checkov:skip=CKV_AWS_301:Stripe calls the Function URL anonymously (it cannot sign AWS requests); the function authenticates every request by its Stripe-Signature HMAC.
  count                  = local.lambda_count
  statement_id           = "FunctionUrlPublicInvoke"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.webhook[0].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "url_invoke_function" {
  # checkov:skip=CKV_AWS_301:Stripe calls the Function URL anonymously (it cannot sign AWS requests); the function authenticates every request by its Stripe-Signature HMAC.
  count                    = local.lambda_count
  statement_id             = "FunctionUrlInvokeFunction"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.webhook[0].function_name
  principal                = "*"
  invoked_via_function_url = true
}
