resource "aws_sns_topic" "alarms" {
  # checkov:skip=CKV_AWS_26:CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key, and the notifications carry no payload data.
  name_prefix  = "stripe-webhooks-alarms-"
  display_name = "Stripe webhook archive alarms (${var.environment})"
}

resource "aws_sns_topic_subscription" "alarm_email" {
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# Every alarm notifies the topic (alarm_email is required) and its description ends with its runbook
# under runbooks_url.
locals {
  alarm_actions = [aws_sns_topic.alarms.arn]
  alarms = {
    data-freshness = {
      description = "Records wait in Firehose longer than expected (S3 delivery failing or slow; Firehose retries for 24 h). Runbook: ${var.runbooks_url}#data-freshness"
      metric      = "DeliveryToS3.DataFreshness"
      statistic   = "Maximum"
      threshold   = var.data_freshness_threshold_seconds
      operator    = "GreaterThanThreshold"
    }
    delivery-success = {
      description = "A delivery to S3 failed (see the errors/ prefix and the Firehose log group). Runbook: ${var.runbooks_url}#delivery-success"
      metric      = "DeliveryToS3.Success"
      statistic   = "Minimum"
      threshold   = 1
      operator    = "LessThanThreshold"
    }
    throttled-records = {
      description = "Firehose throttled records (stream quota reached; the server retries and Stripe redelivers, but raise the quota). Runbook: ${var.runbooks_url}#firehose-throttling"
      metric      = "ThrottledRecords"
      statistic   = "Sum"
      threshold   = 0
      operator    = "GreaterThanThreshold"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "firehose" {
  for_each            = local.alarms
  alarm_name          = "${var.delivery_stream_name}-${var.environment}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/Firehose"
  metric_name         = each.value.metric
  dimensions          = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.archive.name }
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = each.value.operator
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- The Lambda function (lambda_enabled): the alarms of infra/cloudformation/stripe-webhooks-lambda.yaml ---
# On the function (AWS/Lambda) and on the metrics it writes as CloudWatch Embedded Metric Format
# (namespace StripeWebhookArchive, the server's names, each label a dimension after `function`, the
# function's name: each alarm selects this function's series, not another's in the same account and
# region). A counter is absent when it is zero, so missing data never breaches. Runbooks:
# docs/runbooks.md.

locals {
  # The function's name (null without lambda_enabled, when no alarm below exists).
  lambda_function_name = one(aws_lambda_function.webhook[*].function_name)
  lambda_alarms = {
    lambda-errors = {
      description = "The function failed invocations (crash, timeout, out of memory): those webhooks got no answer from the code; Stripe retries them. Runbook: ${var.runbooks_url}#lambda-errors"
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      dimensions  = { FunctionName = local.lambda_function_name }
    }
    lambda-throttles = {
      description = "Invocations were throttled at the reserved concurrency: those webhooks got 429; Stripe retries them. Runbook: ${var.runbooks_url}#lambda-throttles"
      namespace   = "AWS/Lambda"
      metric      = "Throttles"
      dimensions  = { FunctionName = local.lambda_function_name }
    }
    oversize-to-s3-failures = {
      description = "The body of an event over Firehose's record limit could not be written to oversize/ in the archive bucket: the webhook got a 5xx; Stripe retries it. Runbook: ${var.runbooks_url}#oversize-to-s3-failures"
      namespace   = "StripeWebhookArchive"
      metric      = "stripe_webhook_firehose_oversize_total"
      dimensions  = { function = local.lambda_function_name, result = "error" }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "lambda" {
  for_each            = { for name, alarm in local.lambda_alarms : name => alarm if var.lambda_enabled }
  alarm_name          = "${var.function_name}-${var.environment}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# 503 busy / storage_unavailable and 500 storage_failed, as a share of the webhooks to archive
# (accepted + those): refusals of bad requests (4xx) are left out, so a flood of junk neither hides
# nor raises it.
resource "aws_cloudwatch_metric_alarm" "lambda_5xx_rate" {
  count               = local.lambda_count
  alarm_name          = "${var.function_name}-${var.environment}-5xx-rate"
  alarm_description   = "Webhooks answered 5xx (busy, storage_unavailable, storage_failed) above the threshold percentage of the webhooks to archive, and at least 5 in 5 minutes; Stripe retries them. Runbook: ${var.runbooks_url}#5xx-rate"
  evaluation_periods  = 1
  threshold           = var.server_error_rate_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "busy"
    return_data = false
    metric {
      namespace   = "StripeWebhookArchive"
      metric_name = "stripe_webhook_requests_total"
      dimensions  = { function = local.lambda_function_name, outcome = "busy" }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "unavailable"
    return_data = false
    metric {
      namespace   = "StripeWebhookArchive"
      metric_name = "stripe_webhook_requests_total"
      dimensions  = { function = local.lambda_function_name, outcome = "storage_unavailable" }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "failed"
    return_data = false
    metric {
      namespace   = "StripeWebhookArchive"
      metric_name = "stripe_webhook_requests_total"
      dimensions  = { function = local.lambda_function_name, outcome = "storage_failed" }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "accepted"
    return_data = false
    metric {
      namespace   = "StripeWebhookArchive"
      metric_name = "stripe_webhook_requests_total"
      dimensions  = { function = local.lambda_function_name, outcome = "accepted" }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "errors"
    return_data = false
    expression  = "FILL(busy, 0) + FILL(unavailable, 0) + FILL(failed, 0)"
  }
  metric_query {
    id          = "rate"
    return_data = true
    label       = "5xx share of the webhooks to archive (%)"
    expression  = "IF(errors >= 5, 100 * errors / (errors + FILL(accepted, 0)), 0)"
  }
}

# Every verification failure is one bad_signature outcome; the per-reason counter
# (stripe_webhook_verification_failures_total) is on the dashboard.
resource "aws_cloudwatch_metric_alarm" "lambda_signature_failures" {
  count               = local.lambda_count
  alarm_name          = "${var.function_name}-${var.environment}-signature-failures"
  alarm_description   = "Signature verification failures reached the threshold in 5 minutes and outnumber the accepted webhooks: most likely the signing secret differs from the endpoint's in Stripe. Runbook: ${var.runbooks_url}#signature-failures"
  evaluation_periods  = 1
  threshold           = var.signature_failure_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "bad"
    return_data = false
    metric {
      namespace   = "StripeWebhookArchive"
      metric_name = "stripe_webhook_requests_total"
      dimensions  = { function = local.lambda_function_name, outcome = "bad_signature" }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "accepted"
    return_data = false
    metric {
      namespace   = "StripeWebhookArchive"
      metric_name = "stripe_webhook_requests_total"
      dimensions  = { function = local.lambda_function_name, outcome = "accepted" }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "failures"
    return_data = true
    label       = "signature failures outnumbering accepted webhooks"
    expression  = "IF(FILL(bad, 0) > FILL(accepted, 0), FILL(bad, 0), 0)"
  }
}

# --- The ECS service (ecs_enabled): the alarms of infra/cloudformation/stripe-webhooks-ecs.yaml ---
# 5xx from the tasks (503 busy / storage_unavailable, 500 storage_failed) plus the load balancer's own
# (502/503/504: no healthy task, a task that closed the connection), as a share of all requests. The
# server's refusal reasons and signature failures are Prometheus metrics on its private METRICS_ADDR
# (infra/observability/prometheus-rules.yaml), not CloudWatch metrics.
resource "aws_cloudwatch_metric_alarm" "ecs_5xx_rate" {
  count               = local.ecs_count
  alarm_name          = "${var.service_name}-${var.environment}-5xx-rate"
  alarm_description   = "The load balancer answered 5xx (from the tasks or its own) for more than the threshold percentage of requests, and at least 5 in 5 minutes; Stripe retries them. Runbook: ${var.runbooks_url}#ecs-5xx-rate"
  evaluation_periods  = 1
  threshold           = var.server_error_rate_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "target"
    return_data = false
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.webhook[0].arn_suffix }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "elb"
    return_data = false
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.webhook[0].arn_suffix }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "requests"
    return_data = false
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = aws_lb.webhook[0].arn_suffix }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "errors"
    return_data = false
    expression  = "FILL(target, 0) + FILL(elb, 0)"
  }
  metric_query {
    id          = "rate"
    return_data = true
    label       = "5xx share of the requests (%)"
    expression  = "IF(errors >= 5, 100 * errors / requests, 0)"
  }
}

# Silence: no accepted webhook for no_accepted_webhook_hours hours. The function writes the accepted
# outcome only when it accepts one, so an hour without any has no data: missing data breaches.
resource "aws_cloudwatch_metric_alarm" "lambda_no_accepted_webhooks" {
  count               = local.lambda_count
  alarm_name          = "${var.function_name}-${var.environment}-no-accepted-webhooks"
  alarm_description   = "The function accepted no webhook for the configured number of hours: Stripe may have disabled the endpoint, or every webhook is refused. Runbook: ${var.runbooks_url}#no-accepted-webhooks"
  namespace           = "StripeWebhookArchive"
  metric_name         = "stripe_webhook_requests_total"
  dimensions          = { function = local.lambda_function_name, outcome = "accepted" }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = var.no_accepted_webhook_hours
  datapoints_to_alarm = var.no_accepted_webhook_hours
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# 4xx from the tasks as a share of all requests. A signing secret that differs from the endpoint's
# (rotated in Stripe, not here) makes every webhook a 400; scanners' 404/405 are 4xx too, hence a
# share, and at least 10 in 5 minutes.
resource "aws_cloudwatch_metric_alarm" "ecs_4xx_rate" {
  count               = local.ecs_count
  alarm_name          = "${var.service_name}-${var.environment}-4xx-rate"
  alarm_description   = "The tasks answered 4xx for more than the threshold percentage of requests, and at least 10 in 5 minutes: most likely the signing secret differs from the endpoint's in Stripe (every webhook 400). Runbook: ${var.runbooks_url}#ecs-4xx-rate"
  evaluation_periods  = 1
  threshold           = var.signature_failure_rate_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "client"
    return_data = false
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_4XX_Count"
      dimensions  = { LoadBalancer = aws_lb.webhook[0].arn_suffix }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "requests"
    return_data = false
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = aws_lb.webhook[0].arn_suffix }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "rate"
    return_data = true
    label       = "4xx share of the requests (%)"
    expression  = "IF(FILL(client, 0) >= 10, 100 * FILL(client, 0) / requests, 0)"
  }
}

# A task the target group's readiness check (/health) has failed for 10 minutes: its sink cannot take
# writes, so the load balancer sends it nothing.
resource "aws_cloudwatch_metric_alarm" "ecs_unhealthy_targets" {
  count               = local.ecs_count
  alarm_name          = "${var.service_name}-${var.environment}-unhealthy-targets"
  alarm_description   = "At least one task has failed the load balancer's readiness check (/health) for 10 minutes. Runbook: ${var.runbooks_url}#ecs-unhealthy-targets"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.webhook[0].arn_suffix, TargetGroup = aws_lb_target_group.webhook[0].arn_suffix }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Silence: no 2xx from the tasks for no_accepted_webhook_hours hours. The load balancer's health checks
# are not requests and do not count; the metric is absent in an hour without any 2xx, so missing data
# breaches.
resource "aws_cloudwatch_metric_alarm" "ecs_no_accepted_webhooks" {
  count               = local.ecs_count
  alarm_name          = "${var.service_name}-${var.environment}-no-accepted-webhooks"
  alarm_description   = "The tasks answered no request with a 2xx for the configured number of hours: Stripe may have disabled the endpoint, DNS or the certificate may be broken, or every webhook is refused. Runbook: ${var.runbooks_url}#no-accepted-webhooks"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_2XX_Count"
  dimensions          = { LoadBalancer = aws_lb.webhook[0].arn_suffix }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = var.no_accepted_webhook_hours
  datapoints_to_alarm = var.no_accepted_webhook_hours
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
