# Optional (ecs_enabled = true): the same resources as infra/cloudformation/stripe-webhooks-ecs.yaml.
# The server image on ECS Fargate behind an HTTPS Application Load Balancer. Guide: docs/deploy.md.

locals {
  ecs_count      = var.ecs_enabled ? 1 : 0
  container_name = "server"
  container_port = 3001
  # SIGTERM, then SIGKILL after this: above SHUTDOWN_TIMEOUT_SECS plus the Firehose drain (6 s). The
  # load balancer's deregistration delay is the same, so requests in flight (at most
  # BODY_READ_TIMEOUT_SECS 30 + FIREHOSE_DEADLINE_MS 5 s) finish before ECS sends SIGTERM.
  shutdown_timeout_secs = 25
  stop_timeout_secs     = 40
  # The server also closes a keep-alive connection idle for HEADER_READ_TIMEOUT_SECS. Above the load
  # balancer's idle timeout, so the load balancer always closes first and never sends a webhook on a
  # connection the server is closing (a 502). Only the load balancer reaches the tasks.
  load_balancer_idle_timeout_secs = 60
  header_read_timeout_secs        = 65
}

resource "aws_cloudwatch_log_group" "ecs" {
  # checkov:skip=CKV_AWS_158:The server logs event ids, types and outcomes, never payloads or secrets; default CloudWatch Logs encryption applies.
  # checkov:skip=CKV_AWS_338:Retention is the operator's choice (ecs_log_retention_days, 90 by default); the archive, not the log, is the record of every event.
  count             = local.ecs_count
  name              = "/ecs/${var.service_name}"
  retention_in_days = var.ecs_log_retention_days
}

resource "aws_ecs_cluster" "webhook" {
  count = local.ecs_count
  name  = var.service_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

data "aws_iam_policy_document" "ecs_execution_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Used by ECS itself, before the server starts: pull the image, create the log stream, and read the
# signing secret to inject it. The server never runs with these permissions.
resource "aws_iam_role" "ecs_execution" {
  count              = local.ecs_count
  name_prefix        = "stripe-webhooks-ecs-exec-"
  description        = "Lets ECS pull the server image, write its log group and read the Stripe signing secret."
  assume_role_policy = data.aws_iam_policy_document.ecs_execution_assume.json
}

resource "aws_iam_role_policy_attachment" "ecs_execution_managed" {
  count      = local.ecs_count
  role       = aws_iam_role.ecs_execution[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "ecs_execution_secret" {
  count = local.ecs_count
  name  = "read-signing-secret"
  role  = aws_iam_role.ecs_execution[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      # One ARN, of one service or the other: the action of the other service never matches it.
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue", "ssm:GetParameters"]
      Resource = var.stripe_webhook_secret_arn
    }]
  })
}

# What the server runs as: the producer policy (and, with sqs_enabled, the SQS producer policy), and
# nothing else. The conditions keep other accounts' tasks from assuming it (confused deputy).
data "aws_iam_policy_document" "ecs_task_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:ecs:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "ecs_task" {
  count              = local.ecs_count
  name_prefix        = "stripe-webhooks-ecs-task-"
  description        = "Runs the Stripe webhook server; may write the archive stream and oversize/ (and send to the SQS destination) only."
  assume_role_policy = data.aws_iam_policy_document.ecs_task_assume.json
}

resource "aws_iam_role_policy_attachment" "ecs_task_producer" {
  count      = local.ecs_count
  role       = aws_iam_role.ecs_task[0].name
  policy_arn = aws_iam_policy.producer.arn
}

# With the SQS destination (sqs_enabled): send to its queue, nothing else (sqs.tf).
resource "aws_iam_role_policy_attachment" "ecs_task_sqs_producer" {
  count      = var.ecs_enabled && var.sqs_enabled ? 1 : 0
  role       = aws_iam_role.ecs_task[0].name
  policy_arn = aws_iam_policy.sqs_producer[0].arn
}

# The server's container (the CloudFormation template's ContainerDefinitions entry).
locals {
  container_definition = {
    name                   = local.container_name
    image                  = var.image_uri
    essential              = true
    user                   = "65532:65532"
    readonlyRootFilesystem = true
    privileged             = false
    linuxParameters        = { capabilities = { drop = ["ALL"] } }
    portMappings           = [{ containerPort = local.container_port, protocol = "tcp" }]
    environment            = concat(local.container_environment, local.source_env, local.sqs_env)
    secrets = [{
      name      = var.stripe_webhook_secret_format == "keyring" ? "STRIPE_WEBHOOK_KEYRING" : "STRIPE_WEBHOOK_SECRET"
      valueFrom = var.stripe_webhook_secret_arn
    }]
    # Liveness only (any answer from /health): a task whose sink is not ready is taken out of the load
    # balancer by the target group's readiness check; restarting it would not help.
    healthCheck = {
      command     = ["CMD", "/stripe-webhook-server", "healthcheck", "--live"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 15
    }
    stopTimeout = local.stop_timeout_secs
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = one(aws_cloudwatch_log_group.ecs[*].name)
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = "server"
        mode                  = "non-blocking"
        max-buffer-size       = "25m"
      }
    }
  }
}

resource "aws_ecs_task_definition" "webhook" {
  count                    = local.ecs_count
  family                   = var.service_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.ecs_execution[0].arn
  task_role_arn            = aws_iam_role.ecs_task[0].arn

  runtime_platform {
    cpu_architecture        = var.cpu_architecture
    operating_system_family = "LINUX"
  }

  container_definitions = jsonencode([local.container_definition])

  lifecycle {
    precondition {
      condition     = var.image_uri != "" && var.certificate_arn != "" && var.vpc_id != "" && var.stripe_webhook_secret_arn != ""
      error_message = "ecs_enabled needs image_uri, certificate_arn, vpc_id, load_balancer_subnet_ids, task_subnet_ids and stripe_webhook_secret_arn."
    }
  }
}

resource "aws_security_group" "ecs_load_balancer" {
  count       = local.ecs_count
  name_prefix = "${var.service_name}-alb-"
  description = "Stripe webhook load balancer - HTTPS (and the HTTP redirect) from anywhere"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "ecs_load_balancer_https" {
  count             = var.ecs_enabled && var.source_allowlist != "security-group" ? 1 : 0
  security_group_id = aws_security_group.ecs_load_balancer[0].id
  description       = "HTTPS from Stripe (and anyone)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "ecs_load_balancer_http" {
  # checkov:skip=CKV_AWS_260:Port 80 only answers a redirect to HTTPS (no target behind it); live-mode Stripe endpoints must be https:// anyway.
  count             = local.ecs_count
  security_group_id = aws_security_group.ecs_load_balancer[0].id
  description       = "HTTP, redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "ecs_load_balancer_to_tasks" {
  count                        = local.ecs_count
  security_group_id            = aws_security_group.ecs_load_balancer[0].id
  description                  = "To the server port of the tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
  referenced_security_group_id = aws_security_group.ecs_tasks[0].id
}

resource "aws_security_group" "ecs_tasks" {
  count       = local.ecs_count
  name_prefix = "${var.service_name}-tasks-"
  description = "Stripe webhook tasks - the server port from the load balancer only, HTTPS out to AWS APIs"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "ecs_tasks_from_load_balancer" {
  count                        = local.ecs_count
  security_group_id            = aws_security_group.ecs_tasks[0].id
  description                  = "The server port, from the load balancer only"
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
  referenced_security_group_id = aws_security_group.ecs_load_balancer[0].id
}

resource "aws_vpc_security_group_egress_rule" "ecs_tasks_https" {
  count             = local.ecs_count
  security_group_id = aws_security_group.ecs_tasks[0].id
  description       = "AWS APIs: Firehose, S3, Secrets Manager, ECR, CloudWatch Logs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "webhook" {
  # checkov:skip=CKV_AWS_91:Access logs need a log bucket with an ELB delivery policy; the server logs every webhook (id, type, outcome) and the ALB's CloudWatch metrics count the rest.
  # checkov:skip=CKV2_AWS_28:A WAF adds cost and cannot judge a webhook: every request is authenticated by its Stripe-Signature HMAC before anything is stored; attach a web ACL here if policy demands one.
  # checkov:skip=CKV2_AWS_76:The optional web ACL (source_allowlist = "waf") only admits Stripe's addresses; the service is not Java (no Log4j), and every body is authenticated by its HMAC first.
  count                      = local.ecs_count
  name                       = var.service_name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.load_balancer_subnet_ids
  security_groups            = [aws_security_group.ecs_load_balancer[0].id]
  drop_invalid_header_fields = true
  idle_timeout               = local.load_balancer_idle_timeout_secs
  enable_deletion_protection = true
}

resource "aws_lb_target_group" "webhook" {
  count                = local.ecs_count
  name                 = var.service_name
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = local.container_port
  vpc_id               = var.vpc_id
  deregistration_delay = local.stop_timeout_secs

  # Readiness: 200 while the sink can take writes, 503 not_ready / shutting_down (docs/http.md).
  health_check {
    protocol            = "HTTP"
    path                = "/health"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  count             = local.ecs_count
  load_balancer_arn = aws_lb.webhook[0].arn
  protocol          = "HTTPS"
  port              = 443
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.webhook[0].arn
  }
}

resource "aws_lb_listener" "http_redirect" {
  count             = local.ecs_count
  load_balancer_arn = aws_lb.webhook[0].arn
  protocol          = "HTTP"
  port              = 80

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_ecs_service" "webhook" {
  count                              = local.ecs_count
  name                               = var.service_name
  cluster                            = aws_ecs_cluster.webhook[0].id
  task_definition                    = aws_ecs_task_definition.webhook[0].arn
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  desired_count                      = var.desired_count
  availability_zone_rebalancing      = "ENABLED"
  health_check_grace_period_seconds  = 30
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.task_subnet_ids
    security_groups  = [aws_security_group.ecs_tasks[0].id]
    assign_public_ip = var.assign_public_ip
  }

  load_balancer {
    container_name   = local.container_name
    container_port   = local.container_port
    target_group_arn = aws_lb_target_group.webhook[0].arn
  }

  # Autoscaling owns the count once the service runs.
  lifecycle {
    ignore_changes = [desired_count]
  }

  # The tasks' role has its policies before the first task starts (the SQS start-up check reads the queue).
  depends_on = [aws_lb_listener.https, aws_iam_role_policy_attachment.ecs_task_producer, aws_iam_role_policy_attachment.ecs_task_sqs_producer]
}

# Uses the Application Auto Scaling service-linked role for ECS (created on first use).
resource "aws_appautoscaling_target" "ecs" {
  count              = local.ecs_count
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.webhook[0].name}/${aws_ecs_service.webhook[0].name}"
  min_capacity       = var.desired_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "ecs_cpu" {
  count              = local.ecs_count
  name               = "${var.service_name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.ecs[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.ecs[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.ecs[0].resource_id

  target_tracking_scaling_policy_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
    target_value       = var.target_cpu_utilization
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
  }
}

resource "aws_appautoscaling_policy" "ecs_requests" {
  count              = local.ecs_count
  name               = "${var.service_name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.ecs[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.ecs[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.ecs[0].resource_id

  target_tracking_scaling_policy_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.webhook[0].arn_suffix}/${aws_lb_target_group.webhook[0].arn_suffix}"
    }
    target_value       = var.target_requests_per_task
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
  }
}

# Optional: only Stripe's webhook addresses reach the service (docs/exposure.md). The server checks
# them itself (ALLOWED_SOURCE_IPS, the load balancer trusted for X-Forwarded-For) whenever
# source_allowlist is not "none"; the load balancer's security group or a WAF web ACL refuses the rest
# before it reaches a task.
locals {
  # The server's environment without the source allowlist's two variables.
  container_environment = [
    { name = "SINK", value = "firehose" },
    { name = "AWS_REGION", value = data.aws_region.current.region },
    { name = "FIREHOSE_DELIVERY_STREAM_NAME", value = aws_kinesis_firehose_delivery_stream.archive.name },
    { name = "OVERSIZE_S3_BUCKET", value = aws_s3_bucket.archive.id },
    { name = "PORT", value = tostring(local.container_port) },
    { name = "LOG_FORMAT", value = "json" },
    { name = "SHUTDOWN_TIMEOUT_SECS", value = tostring(local.shutdown_timeout_secs) },
    { name = "HEADER_READ_TIMEOUT_SECS", value = tostring(local.header_read_timeout_secs) },
    { name = "RUST_LOG", value = "info" },
  ]
  source_env = var.source_allowlist == "none" ? [] : [
    { name = "ALLOWED_SOURCE_IPS", value = join(",", var.allowed_source_cidrs) },
    { name = "TRUSTED_PROXIES", value = "private" },
  ]
  # FORWARD_SQS_QUEUE_URL with the SQS destination (sqs_enabled), nothing without.
  sqs_env = [for name, value in local.sqs_environment : { name = name, value = value }]
}

resource "aws_vpc_security_group_ingress_rule" "ecs_load_balancer_https_stripe" {
  for_each          = var.ecs_enabled && var.source_allowlist == "security-group" ? toset(var.allowed_source_cidrs) : toset([])
  security_group_id = aws_security_group.ecs_load_balancer[0].id
  description       = "HTTPS from a Stripe webhook address"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_wafv2_ip_set" "stripe_sources" {
  count              = var.ecs_enabled && var.source_allowlist == "waf" ? 1 : 0
  name               = "${var.service_name}-stripe-sources"
  scope              = "REGIONAL"
  ip_address_version = "IPV4"
  addresses          = var.allowed_source_cidrs
}

resource "aws_wafv2_web_acl" "sources" {
  # checkov:skip=CKV2_AWS_31:The ACL only allows Stripe's addresses; the server logs every webhook, and the ACL's CloudWatch metrics count what it blocked.
  count = var.ecs_enabled && var.source_allowlist == "waf" ? 1 : 0
  name  = "${var.service_name}-sources"
  scope = "REGIONAL"
  default_action {
    block {}
  }
  rule {
    name     = "stripe-sources"
    priority = 0
    action {
      allow {}
    }
    statement {
      ip_set_reference_statement {
        arn = aws_wafv2_ip_set.stripe_sources[0].arn
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.service_name}-stripe-sources"
      sampled_requests_enabled   = true
    }
  }
  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.service_name}-sources"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "sources" {
  count        = var.ecs_enabled && var.source_allowlist == "waf" ? 1 : 0
  resource_arn = aws_lb.webhook[0].arn
  web_acl_arn  = aws_wafv2_web_acl.sources[0].arn
}
