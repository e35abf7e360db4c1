locals {
  # AWS guidance for SQS event source mappings: visibility timeout at least six times the function timeout.
  queue_visibility_timeout_seconds = 6 * var.function.timeout_seconds
  # The SQS maximum, so operators have two weeks to inspect and redrive.
  dlq_message_retention_seconds = 1209600

  # `datasync package-lambda --target aws` names its zips lambda-aws-<architecture>-<hash>.zip;
  # compiled wheels (pydantic-core) only import on that architecture. null when the name does
  # not say (emulator packages, which run on the emulator's own interpreter, and custom builds).
  package_architecture = try(regex("-(x86_64|arm64)-", basename(var.function.package_path))[0], null)

  # The queue policies are set inline on the queues (one CreateQueue call each) rather than with
  # aws_sqs_queue_policy: the AWS provider waits for every SQS attribute change to propagate
  # (about 25 s per resource), so a separate policy resource would add a whole extra wait to
  # every apply and destroy. An inline policy cannot reference the queue's own arn attribute, so
  # the ARN is built from the rule's partition, region and account (the queue lives beside it).
  queue_arn_prefix = "arn:${data.aws_arn.rule.partition}:sqs:${data.aws_arn.rule.region}:${data.aws_arn.rule.account}"

  # Who sends to each queue besides the rule, and nobody else may (modules/queue-policy). Not
  # listed because they need no SendMessage: SQS's own redrive into the DLQ.
  queue_senders = {
    queue = { name = var.queue_name, principals = var.queue_sender_arns }
    dlq   = { name = var.dlq_name, principals = var.dlq_sender_arns }
  }

  function_environment = merge(
    var.environment,
    { DATASYNC_LOG_LEVEL = var.function.log_level },
    var.secret_environment,
  )
}

################################################################################
# Delivery: the rule -> the queue, with retries, and what still fails -> the DLQ
################################################################################

resource "aws_cloudwatch_event_rule" "this" {
  name           = var.rule_name
  description    = var.rule_description
  event_bus_name = var.event_bus_name
  # A replayed event carries replay-name; AWS documents this pattern for "live traffic only".
  event_pattern = jsonencode({
    source        = [var.event_source]
    "detail-type" = var.event_detail_types
    "replay-name" = [{ exists = var.replayed_events }]
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "this" {
  rule           = aws_cloudwatch_event_rule.this.name
  event_bus_name = var.event_bus_name
  target_id      = var.queue_label
  arn            = aws_sqs_queue.this.arn

  retry_policy {
    maximum_retry_attempts       = var.event_target_max_retry_attempts
    maximum_event_age_in_seconds = var.event_target_max_event_age_seconds
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

################################################################################
# Queues
################################################################################

# Parses the rule's ARN locally (no API call).
data "aws_arn" "rule" {
  arn = aws_cloudwatch_event_rule.this.arn
}

# The rule delivers to the queue, and its target sends what it cannot deliver to the DLQ: both
# let EventBridge send for this rule.
module "queue_policy" {
  source   = "../queue-policy"
  for_each = local.queue_senders

  queue_arn      = "${local.queue_arn_prefix}:${each.value.name}"
  sender_arns    = distinct(each.value.principals)
  event_rule_arn = aws_cloudwatch_event_rule.this.arn
}

resource "aws_sqs_queue" "dlq" {
  name                      = var.dlq_name
  message_retention_seconds = local.dlq_message_retention_seconds
  sqs_managed_sse_enabled   = true
  policy                    = module.queue_policy["dlq"].json

  tags = var.tags
}

resource "aws_sqs_queue" "this" {
  name                       = var.queue_name
  visibility_timeout_seconds = local.queue_visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  sqs_managed_sse_enabled    = true
  policy                     = module.queue_policy["queue"].json

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

################################################################################
# Function: queue -> event source mapping -> function
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest; these logs hold event ids and outcomes, never emails, names or bodies (tested), so a customer-managed key would guard nothing secret.
  #checkov:skip=CKV_AWS_338:Operational logs, not an audit trail: retention is log_retention_days (default 14); set 365 or more where an audit policy asks for it.
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.function.log_retention_days

  tags = var.tags
}

resource "aws_iam_role" "this" {
  name        = var.function_name
  description = "Execution role of ${var.function_name}."

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

resource "aws_iam_role_policy" "this" {
  name = "least-privilege"
  role = aws_iam_role.this.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid    = "WriteOwnLogs"
          Effect = "Allow"
          Action = ["logs:CreateLogStream", "logs:PutLogEvents"]
          # Log streams of this function's own log group.
          Resource = "${aws_cloudwatch_log_group.this.arn}:*"
        },
        {
          Sid      = "Consume${title(var.queue_label)}Queue"
          Effect   = "Allow"
          Action   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
          Resource = aws_sqs_queue.this.arn
        },
      ],
      [
        for sid, statement in var.policy_statements : {
          Sid      = sid
          Effect   = "Allow"
          Action   = statement.actions
          Resource = statement.resources
        }
      ],
    )
  })
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:Tracing is the correlation id carried from the API through the bus, the queues and every JSON log line; X-Ray would need xray:PutTraceSegments on Resource "*", the one wildcard this role would hold.
  #checkov:skip=CKV_AWS_115:Concurrency is capped on the event source mapping (maximum_concurrency), as AWS advises for SQS sources; a reserved limit below it throttles batches back to the queue, where each throttle counts toward maxReceiveCount and the DLQ.
  #checkov:skip=CKV_AWS_116:dead_letter_config applies to asynchronous invocations only: what fails while the function drains its queue is redriven by the queue to the DLQ, and a caller that also invokes it asynchronously sends those failures to the same DLQ with an event invoke config (modules/destination does).
  #checkov:skip=CKV_AWS_117:The function calls only AWS APIs (SQS, CloudWatch Logs), no private resources; a VPC would add NAT or VPC endpoints and no control the IAM policy does not already give.
  #checkov:skip=CKV_AWS_173:Environment variables are encrypted at rest with Lambda's AWS-managed key. A customer-managed key would only narrow who can read the one secret (the analytics hash key: the analytics function and the intake only) through lambda:GetFunctionConfiguration; moving it to Secrets Manager is the better fix, left as a follow-up.
  #checkov:skip=CKV_AWS_272:No AWS Signer profile in this project yet: the zip is built reproducibly by `datasync package-lambda` and pinned by source_code_hash in the same apply.
  function_name    = var.function_name
  description      = var.function_description
  role             = aws_iam_role.this.arn
  filename         = var.function.package_path
  source_code_hash = filebase64sha256(var.function.package_path)
  handler          = var.handler
  runtime          = var.function.runtime
  architectures    = [var.function.architecture]
  memory_size      = var.function.memory_mb
  timeout          = var.function.timeout_seconds

  environment {
    variables = local.function_environment
  }

  # JSON, because only then does Lambda filter its own START/END/REPORT lines by level. The
  # handler's lines are JSON already and DATASYNC_LOG_LEVEL filters them; TRACE keeps Lambda
  # from filtering them a second time (it would read Python's "WARNING" as an unknown level).
  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.this.name
    application_log_level = "TRACE"
    system_log_level      = var.function.system_log_level
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.package_architecture == null || local.package_architecture == var.function.architecture
      error_message = "The package ${basename(var.function.package_path)} was built for ${coalesce(local.package_architecture, "?")}, but lambda_architecture is ${var.function.architecture}: its compiled dependencies would not import. Build it with `datasync package-lambda --target aws --architecture ${var.function.architecture}`, or set lambda_architecture to match the package."
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.this,
    aws_iam_role_policy.this,
  ]
}

resource "aws_lambda_event_source_mapping" "this" {
  event_source_arn                   = aws_sqs_queue.this.arn
  function_name                      = aws_lambda_function.this.arn
  batch_size                         = var.function.batch_size
  maximum_batching_window_in_seconds = var.function.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  dynamic "scaling_config" {
    for_each = var.maximum_concurrency == null ? [] : [var.maximum_concurrency]

    content {
      maximum_concurrency = scaling_config.value
    }
  }

  lifecycle {
    precondition {
      condition     = var.function.batch_size <= 10 || var.function.batching_window_seconds >= 1
      error_message = "SQS event source mappings with a batch size above 10 need a batching window of at least 1 second."
    }
  }

  # AWS checks the execution role can read the queue when the mapping is created.
  depends_on = [aws_iam_role_policy.this]
}
