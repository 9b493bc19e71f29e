output "bucket_name" {
  description = "The archive bucket (Athena's LOCATION is s3://<bucket>/webhooks/)."
  value       = aws_s3_bucket.archive.id
}

output "bucket_arn" {
  value = aws_s3_bucket.archive.arn
}

output "delivery_stream_name" {
  description = "Set as FIREHOSE_DELIVERY_STREAM_NAME."
  value       = aws_kinesis_firehose_delivery_stream.archive.name
}

output "delivery_stream_arn" {
  value = aws_kinesis_firehose_delivery_stream.archive.arn
}

output "producer_policy_arn" {
  description = "Attach to the role the webhook server runs as."
  value       = aws_iam_policy.producer.arn
}

output "region" {
  description = "Set as AWS_REGION."
  value       = data.aws_region.current.region
}

output "firehose_log_group_name" {
  value = aws_cloudwatch_log_group.firehose.name
}

output "alarm_topic_arn" {
  description = "Every alarm notifies this topic; subscribe further endpoints (a chat integration, a pager) to it."
  value       = aws_sns_topic.alarms.arn
}

output "server_environment" {
  description = "The environment variables to give the webhook server (plus STRIPE_WEBHOOK_SECRET)."
  value       = "SINK=firehose AWS_REGION=${data.aws_region.current.region} FIREHOSE_DELIVERY_STREAM_NAME=${aws_kinesis_firehose_delivery_stream.archive.name} OVERSIZE_S3_BUCKET=${aws_s3_bucket.archive.id}"
}

output "webhook_url" {
  description = "Register this URL as the Stripe webhook endpoint (only with lambda_enabled)."
  value       = var.lambda_enabled ? "${aws_lambda_function_url.webhook[0].function_url}webhook/stripe" : null
}

output "ecs_load_balancer_dns_name" {
  description = "Point domain_name at this (CNAME, or a Route 53 alias with ecs_load_balancer_zone_id); only with ecs_enabled."
  value       = one(aws_lb.webhook[*].dns_name)
}

output "ecs_load_balancer_zone_id" {
  value = one(aws_lb.webhook[*].zone_id)
}

output "ecs_webhook_url" {
  description = "Register this URL as the Stripe webhook endpoint (only with ecs_enabled)."
  value       = var.ecs_enabled ? "https://${var.domain_name != "" ? var.domain_name : aws_lb.webhook[0].dns_name}/webhook/stripe" : null
}

output "sqs_queue_url" {
  description = "Set as FORWARD_SQS_QUEUE_URL (only with sqs_enabled)."
  value       = one(aws_sqs_queue.events[*].url)
}

output "sqs_queue_arn" {
  description = "The consumer's event source (only with sqs_enabled)."
  value       = one(aws_sqs_queue.events[*].arn)
}

output "sqs_dead_letter_queue_arn" {
  description = "The source of a redrive (aws sqs start-message-move-task --source-arn); only with sqs_enabled."
  value       = one(aws_sqs_queue.dead_letter[*].arn)
}

output "sqs_producer_policy_arn" {
  description = "Attach to the role the webhook service runs as, next to producer_policy_arn (only with sqs_enabled)."
  value       = one(aws_iam_policy.sqs_producer[*].arn)
}
