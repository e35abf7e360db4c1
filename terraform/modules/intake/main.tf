locals {
  function_name = "${var.name}-intake"

  # AWS guidance for SQS event source mappings: visibility timeout at least six times the function timeout.
  queue_visibility_timeout_seconds = 6 * var.lambda_timeout_seconds
  # The SQS maximum, so operators have two weeks to inspect and redrive.
  dlq_message_retention_seconds = 1209600

  queue_name = "${var.name}-intake"
  dlq_name   = "${var.name}-intake-dlq"

  # See the destination module: the package's name may say which architecture it was built for.
  package_architecture = try(regex("-(x86_64|arm64)-", basename(var.lambda_package_path))[0], null)

  # Queue policies inline, for the reason given in the destination module (one CreateQueue call).
  queue_arn_prefix = "arn:${data.aws_arn.rule.partition}:sqs:${data.aws_arn.rule.region}:${data.aws_arn.rule.account}"

  # Who sends to each queue, and nobody else may (modules/queue-policy). The intake function
  # itself sends to neither: what it cannot finish comes back by visibility timeout, and SQS's
  # own redrive (internal, no SendMessage) moves it to the DLQ.
  queue_senders = {
    # The live-events rule; operators moving the DLQ's messages back.
    queue = {
      name       = local.queue_name
      principals = var.operator_principal_arns
    }
    # The live-events rule's target DLQ, and nobody else.
    dlq = {
      name       = local.dlq_name
      principals = []
    }
  }

  function_environment = merge(
    {
      DATASYNC_INTAKE_ROUTES = jsonencode({
        for destination, route in var.routes : destination => {
          queue_url        = route.queue_url
          buffer_queue_url = route.buffer_queue_url
        }
      })
      DATASYNC_LOG_LEVEL = var.lambda_log_level
    },
    var.lambda_secret_environment,
  )
}

################################################################################
# Routing: live events only -> intake queue (replays go to the destinations' own rules)
################################################################################

resource "aws_cloudwatch_event_rule" "this" {
  name           = "${var.name}-intake"
  description    = "Routes live ${var.event_source} ${join("/", var.event_detail_types)} events to the intake queue (replayed events go to the destinations' own rules)."
  event_bus_name = var.event_bus_name

  # A replayed event carries replay-name; AWS documents this pattern for "live traffic only".
  event_pattern = jsonencode({
    source        = [var.event_source]
    "detail-type" = var.event_detail_types
    "replay-name" = [{ exists = false }]
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "intake" {
  rule           = aws_cloudwatch_event_rule.this.name
  event_bus_name = var.event_bus_name
  target_id      = "intake"
  arn            = aws_sqs_queue.this.arn

  retry_policy {
    maximum_retry_attempts       = var.event_target_max_retry_attempts
    maximum_event_age_in_seconds = var.event_target_max_event_age_seconds
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

# Parses the rule's ARN locally (no API call).
data "aws_arn" "rule" {
  arn = aws_cloudwatch_event_rule.this.arn
}

module "queue_policy" {
  source   = "../queue-policy"
  for_each = local.queue_senders

  queue_arn      = "${local.queue_arn_prefix}:${each.value.name}"
  sender_arns    = distinct(each.value.principals)
  event_rule_arn = aws_cloudwatch_event_rule.this.arn
}

################################################################################
# Queues
################################################################################

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = local.dlq_message_retention_seconds
  sqs_managed_sse_enabled   = true

  # Events EventBridge could not deliver to the intake queue, and (by the redrive policy)
  # intake messages that could be neither shaped nor handed over max_receive_count times.
  policy = module.queue_policy["dlq"].json

  tags = var.tags
}

resource "aws_sqs_queue" "this" {
  name                       = local.queue_name
  visibility_timeout_seconds = local.queue_visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  policy = module.queue_policy["queue"].json

  tags = var.tags
}

################################################################################
# Intake Lambda: intake queue -> function -> every destination queue (or its buffer queue)
################################################################################

resource "aws_cloudwatch_log_group" "intake" {
  #checkov:skip=CKV_AWS_158:As the destination functions' log groups: event ids and outcomes only, never personal data (tested).
  #checkov:skip=CKV_AWS_338:Operational logs, not an audit trail: retention is log_retention_days.
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days

  tags = var.tags
}

resource "aws_iam_role" "intake" {
  name        = local.function_name
  description = "Execution role of ${local.function_name}."

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Principal = { Service = "lambda.amazonaws.com" }
        Action    = "sts:AssumeRole"
      },
    ]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "intake" {
  name = "least-privilege"
  role = aws_iam_role.intake.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.intake.arn}:*"
      },
      {
        Sid      = "ConsumeIntakeQueue"
        Effect   = "Allow"
        Action   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
        Resource = aws_sqs_queue.this.arn
      },
      {
        # The packs go to the destination queues; what the fast path cannot finish goes to the
        # destination's buffer queue, for the destination's own function. Nothing else.
        Sid      = "SendToDestinationAndBufferQueues"
        Effect   = "Allow"
        Action   = "sqs:SendMessage"
        Resource = flatten([for route in var.routes : [route.queue_arn, route.buffer_queue_arn]])
      },
    ]
  })
}

resource "aws_lambda_function" "intake" {
  #checkov:skip=CKV_AWS_50:Tracing is the correlation id carried through every JSON log line (see the destination module).
  #checkov:skip=CKV_AWS_115:Concurrency is capped on the event source mapping (maximum_concurrency), as AWS advises for SQS sources.
  #checkov:skip=CKV_AWS_116:dead_letter_config applies to asynchronous invocations only; the intake is driven by SQS, whose redrive policy moves what fails to the intake DLQ.
  #checkov:skip=CKV_AWS_117:The function calls only AWS APIs (SQS, CloudWatch Logs), no private resources.
  #checkov:skip=CKV_AWS_173:Environment variables are encrypted at rest with Lambda's AWS-managed key (see the destination module about the analytics hash key).
  #checkov:skip=CKV_AWS_272:No AWS Signer profile in this project yet: the zip is pinned by source_code_hash.
  function_name    = local.function_name
  description      = "Shapes live ${var.event_source} events for every destination: ${join(", ", keys(var.routes))}."
  role             = aws_iam_role.intake.arn
  filename         = var.lambda_package_path
  source_code_hash = filebase64sha256(var.lambda_package_path)
  handler          = "lambdas.handler.intake"
  runtime          = var.lambda_runtime
  architectures    = [var.lambda_architecture]
  memory_size      = var.lambda_memory_mb
  timeout          = var.lambda_timeout_seconds

  environment {
    variables = local.function_environment
  }

  # JSON, for the reason given in the destination module (Lambda filters its own lines by level).
  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.intake.name
    application_log_level = "TRACE"
    system_log_level      = var.lambda_system_log_level
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.package_architecture == null || local.package_architecture == var.lambda_architecture
      error_message = "The package ${basename(var.lambda_package_path)} was built for ${coalesce(local.package_architecture, "?")}, but lambda_architecture is ${var.lambda_architecture}: its compiled dependencies would not import. Build it with `datasync package-lambda --target aws --architecture ${var.lambda_architecture}`, or set lambda_architecture to match the package."
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.intake,
    aws_iam_role_policy.intake,
  ]
}

resource "aws_lambda_event_source_mapping" "intake" {
  event_source_arn                   = aws_sqs_queue.this.arn
  function_name                      = aws_lambda_function.intake.arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  dynamic "scaling_config" {
    for_each = var.maximum_concurrency == null ? [] : [var.maximum_concurrency]

    content {
      maximum_concurrency = scaling_config.value
    }
  }

  lifecycle {
    precondition {
      condition     = var.batch_size <= 10 || var.batching_window_seconds >= 1
      error_message = "SQS event source mappings with a batch size above 10 need a batching window of at least 1 second."
    }
  }

  # AWS checks the execution role can read the queue when the mapping is created.
  depends_on = [aws_iam_role_policy.intake]
}
