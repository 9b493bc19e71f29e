# Optional (sqs_enabled = true): the SQS destination, the same resources as
# infra/cloudformation/stripe-webhooks-sqs.yaml (docs/forwarding-sqs.md). The ECS task and the Lambda
# function of this configuration (ecs_enabled, lambda_enabled) send every record to the queue as well:
# FORWARD_SQS_QUEUE_URL in their environment, the producer policy attached to their role (what the
# CloudFormation stacks do with SqsStackName). A service deployed elsewhere: set the sqs_queue_url
# output as FORWARD_SQS_QUEUE_URL and attach sqs_producer_policy_arn to its role.

locals {
  sqs_count = var.sqs_enabled ? 1 : 0
  sqs_name  = var.fifo_queue ? "${var.queue_name}.fifo" : var.queue_name
  # What the service's environment gains with the SQS destination (ecs.tf, lambda.tf).
  sqs_environment = var.sqs_enabled ? { FORWARD_SQS_QUEUE_URL = aws_sqs_queue.events[0].url } : {}
}

# SSE-SQS (SQS-managed keys): encrypted at rest, nothing for producers or consumers to grant.
resource "aws_sqs_queue" "dead_letter" {
  count                     = local.sqs_count
  name                      = var.fifo_queue ? "${var.queue_name}-dlq.fifo" : "${var.queue_name}-dlq"
  fifo_queue                = var.fifo_queue
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
}

resource "aws_sqs_queue" "events" {
  count                      = local.sqs_count
  name                       = local.sqs_name
  fifo_queue                 = var.fifo_queue
  sqs_managed_sse_enabled    = true
  message_retention_seconds  = 1209600
  visibility_timeout_seconds = var.visibility_timeout_seconds
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter[0].arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only the queue may move messages into the dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  count     = local.sqs_count
  queue_url = aws_sqs_queue.dead_letter[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events[0].arn]
  })
}

data "aws_iam_policy_document" "sqs_tls_only" {
  count = local.sqs_count
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.events[0].arn, aws_sqs_queue.dead_letter[0].arn]
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

resource "aws_sqs_queue_policy" "events" {
  count     = local.sqs_count
  queue_url = aws_sqs_queue.events[0].id
  policy    = data.aws_iam_policy_document.sqs_tls_only[0].json
}

resource "aws_sqs_queue_policy" "dead_letter" {
  count     = local.sqs_count
  queue_url = aws_sqs_queue.dead_letter[0].id
  policy    = data.aws_iam_policy_document.sqs_tls_only[0].json
}

# What the webhook service needs to send to the queue, and nothing else: sqs:SendMessage
# (SendMessageBatch is authorized as it) and the start-up check's GetQueueAttributes.
resource "aws_iam_policy" "sqs_producer" {
  count       = local.sqs_count
  name_prefix = "stripe-webhooks-sqs-producer-"
  description = "Lets the Stripe webhook service send records to the SQS destination."
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "SendToThisQueue"
      Effect   = "Allow"
      Action   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
      Resource = aws_sqs_queue.events[0].arn
    }]
  })
}

resource "aws_cloudwatch_metric_alarm" "sqs_dead_letters" {
  count               = local.sqs_count
  alarm_name          = "${var.queue_name}-${var.environment}-sqs-dead-letters"
  alarm_description   = "Messages are in the SQS destination's dead-letter queue: a consumer failed them MaxReceiveCount times. Runbook: ${var.runbooks_url}#sqs-dead-letters"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "sqs_oldest_message_age" {
  count               = local.sqs_count
  alarm_name          = "${var.queue_name}-${var.environment}-sqs-oldest-message-age"
  alarm_description   = "The oldest message in the SQS destination waits longer than expected: consumers are down or behind. Runbook: ${var.runbooks_url}#sqs-oldest-message-age"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.events[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.oldest_message_age_threshold_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
