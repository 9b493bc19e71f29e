# Optional (ecs_enabled and reconcile_api_key_secret_arn set): `stripe-webhook reconcile` on a
# schedule, the same resources as in infra/cloudformation/stripe-webhooks-ecs.yaml. The same image,
# entrypoint /stripe-webhook, lists the events Stripe created four to three days ago (a window Stripe
# has stopped retrying) and compares them with the S3 archive. The archive is written by Firehose, so
# the task only reports: each missing event is a MISSING line and the task exits 1 (fill the gap by
# hand: docs/reconcile.md). A restricted key lists snapshot events only (the v2 API refuses
# restricted keys), hence --kind snapshot. The alarm fires when no run ended clean (nothing missing,
# everything readable) for 26 hours: a gap, a failed run, or a schedule that no longer runs.

locals {
  reconcile_count = var.ecs_enabled && var.reconcile_api_key_secret_arn != "" ? 1 : 0
  reconcile_container_definition = {
    name                   = "reconcile"
    image                  = var.image_uri
    essential              = true
    user                   = "65532:65532"
    readonlyRootFilesystem = true
    privileged             = false
    linuxParameters        = { capabilities = { drop = ["ALL"] } }
    entryPoint             = ["/stripe-webhook"]
    command                = ["reconcile", "s3://${aws_s3_bucket.archive.id}/webhooks/", "--since", "now-4d", "--until", "now-3d", "--kind", "snapshot", "--json"]
    environment            = [{ name = "AWS_REGION", value = data.aws_region.current.region }]
    secrets                = [{ name = "STRIPE_API_KEY", valueFrom = var.reconcile_api_key_secret_arn }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = one(aws_cloudwatch_log_group.reconcile[*].name)
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = "reconcile"
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "reconcile" {
  # checkov:skip=CKV_AWS_158:Holds reconcile's reports (event ids, types, counts; the key only by its redacted id); default CloudWatch Logs encryption applies.
  # checkov:skip=CKV_AWS_338:Retention is the operator's choice (ecs_log_retention_days, 90 by default), as for the service's log group.
  count             = local.reconcile_count
  name              = "/ecs/${var.service_name}-reconcile"
  retention_in_days = var.ecs_log_retention_days
}

resource "aws_iam_role" "reconcile_execution" {
  count              = local.reconcile_count
  name_prefix        = "stripe-webhooks-reconcile-exec-"
  description        = "Lets ECS pull the image, write the reconcile log group and read the Stripe API key."
  assume_role_policy = data.aws_iam_policy_document.ecs_execution_assume.json
}

resource "aws_iam_role_policy_attachment" "reconcile_execution_managed" {
  count      = local.reconcile_count
  role       = aws_iam_role.reconcile_execution[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "reconcile_execution_secret" {
  count = local.reconcile_count
  name  = "read-stripe-api-key"
  role  = aws_iam_role.reconcile_execution[0].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "secretsmanager:GetSecretValue", Resource = var.reconcile_api_key_secret_arn }]
  })
}

# What reconcile runs as: list and read webhooks/ of the archive, nothing else (it never reads the
# oversize/ bodies: a pointer record counts as archived).
resource "aws_iam_role" "reconcile_task" {
  count              = local.reconcile_count
  name_prefix        = "stripe-webhooks-reconcile-task-"
  description        = "Runs the scheduled stripe-webhook reconcile; may read webhooks/ of the archive only."
  assume_role_policy = data.aws_iam_policy_document.ecs_task_assume.json
}

resource "aws_iam_role_policy" "reconcile_task_read_archive" {
  count = local.reconcile_count
  name  = "read-archive-records"
  role  = aws_iam_role.reconcile_task[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = aws_s3_bucket.archive.arn
        Condition = { StringLike = { "s3:prefix" = ["webhooks/*"] } }
      },
      { Effect = "Allow", Action = "s3:GetObject", Resource = "${aws_s3_bucket.archive.arn}/webhooks/*" },
    ]
  })
}

resource "aws_ecs_task_definition" "reconcile" {
  count                    = local.reconcile_count
  family                   = "${var.service_name}-reconcile"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.reconcile_execution[0].arn
  task_role_arn            = aws_iam_role.reconcile_task[0].arn

  runtime_platform {
    cpu_architecture        = var.cpu_architecture
    operating_system_family = "LINUX"
  }

  container_definitions = jsonencode([local.reconcile_container_definition])
}

data "aws_iam_policy_document" "reconcile_scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "reconcile_scheduler" {
  count              = local.reconcile_count
  name_prefix        = "stripe-webhooks-reconcile-sched-"
  description        = "Lets EventBridge Scheduler run the reconcile task."
  assume_role_policy = data.aws_iam_policy_document.reconcile_scheduler_assume.json
}

resource "aws_iam_role_policy" "reconcile_scheduler" {
  count = local.reconcile_count
  name  = "run-reconcile-task"
  role  = aws_iam_role.reconcile_scheduler[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Action    = "ecs:RunTask"
        Resource  = aws_ecs_task_definition.reconcile[0].arn
        Condition = { ArnEquals = { "ecs:cluster" = aws_ecs_cluster.webhook[0].arn } }
      },
      {
        Effect   = "Allow"
        Action   = "iam:PassRole"
        Resource = [aws_iam_role.reconcile_execution[0].arn, aws_iam_role.reconcile_task[0].arn]
      },
    ]
  })
}

resource "aws_scheduler_schedule" "reconcile" {
  # checkov:skip=CKV_AWS_297:The schedule holds no secret (the key is a Secrets Manager reference in the task definition); EventBridge Scheduler encrypts it with an AWS-owned key.
  count                        = local.reconcile_count
  name                         = "${var.service_name}-${var.environment}-reconcile"
  description                  = "stripe-webhook reconcile of the archive against Stripe's event list (docs/reconcile.md)."
  schedule_expression          = var.reconcile_schedule
  schedule_expression_timezone = "UTC"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.webhook[0].arn
    role_arn = aws_iam_role.reconcile_scheduler[0].arn

    retry_policy {
      maximum_retry_attempts = 3
    }

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.reconcile[0].arn
      launch_type         = "FARGATE"
      task_count          = 1

      network_configuration {
        subnets          = var.task_subnet_ids
        security_groups  = [aws_security_group.ecs_tasks[0].id]
        assign_public_ip = var.assign_public_ip
      }
    }
  }
}

# One data point per run that ended clean: its JSON summary says nothing missing, nothing
# unreadable, not interrupted.
resource "aws_cloudwatch_log_metric_filter" "reconcile_clean_runs" {
  count          = local.reconcile_count
  name           = "${var.service_name}-${var.environment}-reconcile-clean-runs"
  log_group_name = aws_cloudwatch_log_group.reconcile[0].name
  pattern        = "{ ($.report = \"summary\") && ($.missing = 0) && ($.unreadable = 0) && ($.complete IS TRUE) }"

  metric_transformation {
    namespace = "StripeWebhookReconcile"
    name      = "${var.service_name}-${var.environment}-clean-runs"
    value     = "1"
  }
}

resource "aws_cloudwatch_metric_alarm" "reconcile_not_clean" {
  count               = local.reconcile_count
  alarm_name          = "${var.service_name}-${var.environment}-reconcile-not-clean"
  alarm_description   = "No scheduled reconcile ended clean for 26 hours: events Stripe has are missing from the archive (its log lists them), the archive has unreadable objects, or the run failed or did not run. Runbook: ${var.runbooks_url}#scheduled-reconcile-not-clean"
  namespace           = "StripeWebhookReconcile"
  metric_name         = "${var.service_name}-${var.environment}-clean-runs"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 26
  datapoints_to_alarm = 26
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
