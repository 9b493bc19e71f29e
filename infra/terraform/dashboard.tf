# One CloudWatch dashboard: the same body as infra/cloudformation/stripe-webhooks-dashboard.yaml
# (infra/tests checks that both agree): the Firehose stream, the SQS destination's queues with
# sqs_enabled, the Lambda function and the metrics it writes with lambda_enabled (and its SQS metrics
# with both), the ECS service's load balancer with ecs_enabled. Panels: docs/metrics.md.

locals {
  dashboard_stream = aws_kinesis_firehose_delivery_stream.archive.name
  # Empty (never null: a string template refuses null) when their part is off; its widgets are left out.
  dashboard_load_balancer     = try(aws_lb.webhook[0].arn_suffix, "")
  dashboard_target_group      = try(aws_lb_target_group.webhook[0].arn_suffix, "")
  dashboard_queue             = try(aws_sqs_queue.events[0].name, "")
  dashboard_dead_letter_queue = try(aws_sqs_queue.dead_letter[0].name, "")

  # Widgets flow left to right, 24 columns wide. The function's metrics (namespace
  # StripeWebhookArchive) are CloudWatch Embedded Metric Format lines in its log: the server's
  # names, each label a dimension after `function`, the function's name, which every widget selects
  # so another function in the account and region does not show (docs/metrics.md).
  dashboard_firehose_widgets = [
    {
      type   = "text"
      width  = 24
      height = 2
      properties = {
        markdown = "## Stripe webhook archive (${var.environment})\nFirehose stream **${local.dashboard_stream}**: what reaches the archive. Alarms and their runbooks: docs/runbooks.md in the repository; the server's own metrics: infra/observability/grafana-dashboard.json."
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Firehose: incoming records and bytes"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/Firehose", "IncomingRecords", "DeliveryStreamName", local.dashboard_stream, { stat = "Sum", label = "records" }],
          ["AWS/Firehose", "IncomingBytes", "DeliveryStreamName", local.dashboard_stream, { stat = "Sum", label = "bytes", yAxis = "right" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Firehose: throttled records"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/Firehose", "ThrottledRecords", "DeliveryStreamName", local.dashboard_stream, { stat = "Sum", label = "throttled records" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Firehose: delivery to S3"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/Firehose", "DeliveryToS3.Success", "DeliveryStreamName", local.dashboard_stream, { stat = "Average", label = "success (1 = all deliveries)" }],
          ["AWS/Firehose", "DeliveryToS3.Records", "DeliveryStreamName", local.dashboard_stream, { stat = "Sum", label = "records delivered", yAxis = "right" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Firehose: data freshness (s)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          [
            "AWS/Firehose",
            "DeliveryToS3.DataFreshness",
            "DeliveryStreamName",
            local.dashboard_stream,
            { stat = "Maximum", label = "age of the oldest record in Firehose" },
          ],
        ]
      }
    },
  ]
  dashboard_sqs_widgets = [
    {
      type       = "text"
      width      = 24
      height     = 1
      properties = { markdown = "### SQS destination: queue ${local.dashboard_queue}, dead-letter queue ${local.dashboard_dead_letter_queue}" }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "SQS: messages sent and deleted"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/SQS", "NumberOfMessagesSent", "QueueName", local.dashboard_queue, { stat = "Sum", label = "sent (by the webhook service)" }],
          ["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", local.dashboard_queue, { stat = "Sum", label = "deleted (processed by consumers)" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "SQS: messages waiting"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dashboard_queue, { stat = "Maximum", label = "visible (waiting for a consumer)" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", local.dashboard_queue, { stat = "Maximum", label = "in flight (received, not deleted)" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "SQS: age of the oldest message (s)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.dashboard_queue, { stat = "Maximum", label = "age of the oldest message" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "SQS: dead-letter queue"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dashboard_dead_letter_queue, { stat = "Maximum", label = "messages in the dead-letter queue" }],
        ]
      }
    },
  ]
  dashboard_lambda_widgets = [
    {
      type       = "text"
      width      = 24
      height     = 1
      properties = { markdown = "### Lambda function ${var.function_name}" }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Lambda: invocations, errors, throttles"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/Lambda", "Invocations", "FunctionName", var.function_name, { stat = "Sum", label = "invocations" }],
          ["AWS/Lambda", "Errors", "FunctionName", var.function_name, { stat = "Sum", label = "errors" }],
          ["AWS/Lambda", "Throttles", "FunctionName", var.function_name, { stat = "Sum", label = "throttles" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Lambda: duration (ms)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/Lambda", "Duration", "FunctionName", var.function_name, { stat = "p50", label = "p50" }],
          ["AWS/Lambda", "Duration", "FunctionName", var.function_name, { stat = "p99", label = "p99" }],
          ["AWS/Lambda", "Duration", "FunctionName", var.function_name, { stat = "Maximum", label = "max" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Lambda: concurrent executions"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", var.function_name, { stat = "Maximum", label = "concurrent executions" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Function URL: answers"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/Lambda", "UrlRequestCount", "FunctionName", var.function_name, { stat = "Sum", label = "requests" }],
          ["AWS/Lambda", "Url4xxCount", "FunctionName", var.function_name, { stat = "Sum", label = "4xx" }],
          ["AWS/Lambda", "Url5xxCount", "FunctionName", var.function_name, { stat = "Sum", label = "5xx" }],
        ]
      }
    },
    {
      type       = "text"
      width      = 24
      height     = 1
      properties = { markdown = "### Webhook outcomes (the function's metrics, namespace StripeWebhookArchive)" }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Accepted and refused, by outcome"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = true
        period  = 300
        metrics = [
          [{ expression = "SEARCH('{StripeWebhookArchive,function,outcome} function=\"${var.function_name}\" MetricName=\"stripe_webhook_requests_total\"', 'Sum', 300)", id = "outcomes", label = "" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Verification failures by reason"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = true
        period  = 300
        metrics = [
          [
            {
              expression = "SEARCH('{StripeWebhookArchive,function,reason} function=\"${var.function_name}\" MetricName=\"stripe_webhook_verification_failures_total\"', 'Sum', 300)"
              id         = "reasons"
              label      = ""
            },
          ],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Latency p50 / p99 (s)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          # One series per sink the function can report: firehose, or firehose+sqs with the SQS destination.
          ["StripeWebhookArchive", "stripe_webhook_sink_put_seconds", "function", var.function_name, "result", "ok", "sink", "firehose", { stat = "p50", label = "sink put p50 (firehose)" }],
          ["StripeWebhookArchive", "stripe_webhook_sink_put_seconds", "function", var.function_name, "result", "ok", "sink", "firehose", { stat = "p99", label = "sink put p99 (firehose)" }],
          ["StripeWebhookArchive", "stripe_webhook_sink_put_seconds", "function", var.function_name, "result", "ok", "sink", "firehose+sqs", { stat = "p50", label = "sink put p50 (firehose+sqs)" }],
          ["StripeWebhookArchive", "stripe_webhook_sink_put_seconds", "function", var.function_name, "result", "ok", "sink", "firehose+sqs", { stat = "p99", label = "sink put p99 (firehose+sqs)" }],
          ["StripeWebhookArchive", "stripe_webhook_request_seconds", "function", var.function_name, "outcome", "accepted", { stat = "p99", label = "request p99 (accepted)" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 6
      height = 6
      properties = {
        title   = "Oversize bodies to S3"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["StripeWebhookArchive", "stripe_webhook_firehose_oversize_total", "function", var.function_name, "result", "ok", { stat = "Sum", label = "stored" }],
          ["StripeWebhookArchive", "stripe_webhook_firehose_oversize_total", "function", var.function_name, "result", "error", { stat = "Sum", label = "failed (webhook got a 5xx)" }],
        ]
      }
    },
  ]
  dashboard_lambda_sqs_widgets = [
    {
      type       = "text"
      width      = 24
      height     = 1
      properties = { markdown = "### SQS destination (the function's metrics, namespace StripeWebhookArchive)" }
    },
    {
      type   = "metric"
      width  = 8
      height = 6
      properties = {
        title   = "SendMessageBatch calls by outcome"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = true
        period  = 300
        metrics = [
          [{ expression = "SEARCH('{StripeWebhookArchive,function,outcome} function=\"${var.function_name}\" MetricName=\"stripe_webhook_sqs_calls_total\"', 'Sum', 300)", id = "calls", label = "" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 8
      height = 6
      properties = {
        title   = "SendMessageBatch latency (s)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["StripeWebhookArchive", "stripe_webhook_sqs_call_seconds", "function", var.function_name, { stat = "p50", label = "p50" }],
          ["StripeWebhookArchive", "stripe_webhook_sqs_call_seconds", "function", var.function_name, { stat = "p99", label = "p99" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 8
      height = 6
      properties = {
        title   = "SQS messages accepted and failed"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["StripeWebhookArchive", "stripe_webhook_sqs_messages_total", "function", var.function_name, { stat = "Sum", label = "accepted" }],
          [{ expression = "SEARCH('{StripeWebhookArchive,function,code} function=\"${var.function_name}\" MetricName=\"stripe_webhook_sqs_messages_failed_total\"', 'Sum', 300)", id = "failed", label = "" }],
        ]
      }
    },
  ]
  dashboard_ecs_widgets = [
    {
      type       = "text"
      width      = 24
      height     = 1
      properties = { markdown = "### ECS service behind the load balancer ${local.dashboard_load_balancer}" }
    },
    {
      type   = "metric"
      width  = 8
      height = 6
      properties = {
        title   = "Load balancer: requests and 5xx"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", local.dashboard_load_balancer, { stat = "Sum", label = "requests" }],
          ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", local.dashboard_load_balancer, { stat = "Sum", label = "5xx from the tasks" }],
          [
            "AWS/ApplicationELB",
            "HTTPCode_ELB_5XX_Count",
            "LoadBalancer",
            local.dashboard_load_balancer,
            { stat = "Sum", label = "5xx from the load balancer" },
          ],
        ]
      }
    },
    {
      type   = "metric"
      width  = 8
      height = 6
      properties = {
        title   = "Load balancer: target response time (s)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", local.dashboard_load_balancer, { stat = "p50", label = "p50" }],
          ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", local.dashboard_load_balancer, { stat = "p99", label = "p99" }],
        ]
      }
    },
    {
      type   = "metric"
      width  = 8
      height = 6
      properties = {
        title   = "Tasks: healthy and unhealthy"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 300
        metrics = [
          [
            "AWS/ApplicationELB",
            "HealthyHostCount",
            "LoadBalancer",
            local.dashboard_load_balancer,
            "TargetGroup",
            local.dashboard_target_group,
            { stat = "Minimum", label = "healthy" },
          ],
          [
            "AWS/ApplicationELB",
            "UnHealthyHostCount",
            "LoadBalancer",
            local.dashboard_load_balancer,
            "TargetGroup",
            local.dashboard_target_group,
            { stat = "Maximum", label = "unhealthy" },
          ],
        ]
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "webhooks" {
  dashboard_name = "${var.dashboard_name}-${var.environment}"
  dashboard_body = jsonencode({
    widgets = concat(
      local.dashboard_firehose_widgets,
      [for w in local.dashboard_sqs_widgets : w if var.sqs_enabled],
      [for w in local.dashboard_lambda_widgets : w if var.lambda_enabled],
      [for w in local.dashboard_lambda_sqs_widgets : w if var.lambda_enabled && var.sqs_enabled],
      [for w in local.dashboard_ecs_widgets : w if var.ecs_enabled],
    )
  })
}
