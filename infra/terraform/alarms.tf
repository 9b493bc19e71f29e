resource "aws_sns_topic" "alarms" {
  # checkov:skip=CKV_AWS_26:CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key, and the notifications carry no payload data.
  count        = local.alarm_topic ? 1 : 0
  name_prefix  = "stripe-webhooks-alarms-"
  display_name = "Stripe webhook archive alarms (${var.environment})"
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email != "" ? 1 : 0
  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  alarm_actions = aws_sns_topic.alarms[*].arn
  alarms = {
    data-freshness = {
      description = "Records wait in Firehose longer than expected (S3 delivery failing or slow; Firehose retries for 24 h)."
      metric      = "DeliveryToS3.DataFreshness"
      statistic   = "Maximum"
      threshold   = var.data_freshness_threshold_seconds
      operator    = "GreaterThanThreshold"
    }
    delivery-success = {
      description = "A delivery to S3 failed (see the errors/ prefix and the Firehose log group)."
      metric      = "DeliveryToS3.Success"
      statistic   = "Minimum"
      threshold   = 1
      operator    = "LessThanThreshold"
    }
    throttled-records = {
      description = "Firehose throttled records (stream quota reached; the server retries and Stripe redelivers, but raise the quota)."
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
