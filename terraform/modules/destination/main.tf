locals {
  function_name = "${var.name}-transform"

  # AWS guidance for SQS event source mappings: visibility timeout at least six times the function timeout.
  buffer_visibility_timeout_seconds = 6 * var.lambda_timeout_seconds
  # The SQS maximum, so operators have two weeks to inspect and redrive.
  dlq_message_retention_seconds = 1209600

  dlq_name          = "${var.name}-dlq"
  buffer_queue_name = "${var.name}-buffer"

  # `datasync package-lambda --target aws` names its zips lambda-aws-<architecture>-<hash>.zip;
  # compiled wheels (pydantic-core) only import on that architecture. null when the name does
  # not say (emulator packages, which run on the emulator's own interpreter, and custom builds).
  package_architecture = try(regex("-(x86_64|arm64)-", basename(var.lambda_package_path))[0], null)

  # The queue policies are set inline on the queues (one CreateQueue call each) rather than with
  # aws_sqs_queue_policy: the AWS provider waits for every SQS attribute change to propagate
  # (about 25 s per resource), so a separate policy resource would add a whole extra wait to
  # every apply and destroy. An inline policy cannot reference the queue's own arn attribute, so
  # the ARN is built from the rule's partition, region and account (the queue lives beside it).
  queue_arn_prefix = "arn:${data.aws_arn.rule.partition}:sqs:${data.aws_arn.rule.region}:${data.aws_arn.rule.account}"

  # Who sends to each queue, and nobody else may (modules/queue-policy). Not in these lists: SQS's
  # own redrive into the DLQ (internal, no SendMessage), and the transform's asynchronous
  # on-failure destination (Lambda sends with the function's execution role, listed).
  queue_senders = {
    # The destination's replay rule (replayed events); the intake, handing over what it could
    # not finish; operators redriving bus events from the DLQ.
    buffer = {
      name       = local.buffer_queue_name
      principals = concat([var.intake_role_arn], var.operator_principal_arns)
      rule_arn   = aws_cloudwatch_event_rule.this.arn
    }
    # The intake's and the transform's record packs; the consumers' re-sends of failed records;
    # operators redriving records from the DLQ. No rule targets it.
    queue = {
      name       = var.name
      principals = concat([var.intake_role_arn, aws_iam_role.transform.arn], var.consumer_principal_arns, var.operator_principal_arns)
      rule_arn   = null
    }
    # The rule's target DLQ (events EventBridge could not deliver to the buffer), the transform's
    # and the consumers' dead letters.
    dlq = {
      name       = local.dlq_name
      principals = concat([aws_iam_role.transform.arn], var.consumer_principal_arns)
      rule_arn   = aws_cloudwatch_event_rule.this.arn
    }
  }

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  function_environment = merge(
    {
      DATASYNC_DESTINATION           = var.destination
      DATASYNC_DESTINATION_QUEUE_URL = aws_sqs_queue.this.url
      DATASYNC_DEAD_LETTER_QUEUE_URL = aws_sqs_queue.dlq.url
      DATASYNC_MAX_RECEIVE_COUNT     = tostring(var.max_receive_count)
      DATASYNC_LOG_LEVEL             = var.lambda_log_level
    },
    var.lambda_secret_environment,
  )
}

################################################################################
# Routing: replays on the bus -> buffer queue (and the intake hands over what it cannot finish)
################################################################################

resource "aws_cloudwatch_event_rule" "this" {
  name           = var.name
  description    = "Routes replayed ${var.event_source} ${join("/", var.event_detail_types)} events to the ${var.destination} buffer queue (live events go through the intake)."
  event_bus_name = var.event_bus_name

  # Live events reach this destination through the intake (modules/intake), which hands this
  # buffer queue only what it could not finish. A replay names the rules it goes to, so
  # `datasync replay --destination` still reaches one destination alone.
  event_pattern = jsonencode({
    source        = [var.event_source]
    "detail-type" = var.event_detail_types
    "replay-name" = [{ exists = true }]
  })

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "buffer" {
  rule           = aws_cloudwatch_event_rule.this.name
  event_bus_name = var.event_bus_name
  target_id      = "buffer"
  arn            = aws_sqs_queue.buffer.arn

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

module "queue_policy" {
  source   = "../queue-policy"
  for_each = local.queue_senders

  queue_arn      = "${local.queue_arn_prefix}:${each.value.name}"
  sender_arns    = distinct(each.value.principals)
  event_rule_arn = each.value.rule_arn
}

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = local.dlq_message_retention_seconds
  sqs_managed_sse_enabled   = true

  policy = module.queue_policy["dlq"].json

  tags = var.tags
}

resource "aws_sqs_queue" "buffer" {
  name                       = local.buffer_queue_name
  visibility_timeout_seconds = local.buffer_visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  sqs_managed_sse_enabled    = true
  redrive_policy             = local.redrive_policy
  policy                     = module.queue_policy["buffer"].json

  tags = var.tags
}

resource "aws_sqs_queue" "this" {
  name                       = var.name
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy             = local.redrive_policy
  policy                     = module.queue_policy["queue"].json

  tags = var.tags
}

################################################################################
# Transform Lambda: buffer queue -> function -> destination queue
################################################################################

resource "aws_cloudwatch_log_group" "transform" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest; these logs hold event ids and outcomes, never emails, names or bodies (tested), so a customer-managed key would guard nothing secret.
  #checkov:skip=CKV_AWS_338:Operational logs, not an audit trail: retention is log_retention_days (default 14); set 365 or more where an audit policy asks for it.
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days

  tags = var.tags
}

resource "aws_iam_role" "transform" {
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

resource "aws_iam_role_policy" "transform" {
  name = "least-privilege"
  role = aws_iam_role.transform.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "WriteOwnLogs"
        Effect = "Allow"
        Action = ["logs:CreateLogStream", "logs:PutLogEvents"]
        # Log streams of this function's own log group.
        Resource = "${aws_cloudwatch_log_group.transform.arn}:*"
      },
      {
        Sid      = "ConsumeBufferQueue"
        Effect   = "Allow"
        Action   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
        Resource = aws_sqs_queue.buffer.arn
      },
      {
        Sid      = "SendToDestinationAndDeadLetterQueues"
        Effect   = "Allow"
        Action   = "sqs:SendMessage"
        Resource = [aws_sqs_queue.this.arn, aws_sqs_queue.dlq.arn]
      },
    ]
  })
}

resource "aws_lambda_function" "transform" {
  #checkov:skip=CKV_AWS_50:Tracing is the correlation id carried from the API through the bus, the queues and every JSON log line; X-Ray would need xray:PutTraceSegments on Resource "*", the one wildcard this role would hold.
  #checkov:skip=CKV_AWS_115:Concurrency is capped on the event source mapping (lambda_maximum_concurrency), as AWS advises for SQS sources; a reserved limit below it throttles batches back to the buffer queue, where each throttle counts toward maxReceiveCount and the DLQ.
  #checkov:skip=CKV_AWS_116:dead_letter_config applies to asynchronous invocations only: SQS-driven failures are redriven by the buffer queue (with the reason the processor records), and asynchronous ones reach the same DLQ through the event invoke config's on-failure destination below.
  #checkov:skip=CKV_AWS_117:The function calls only AWS APIs (SQS, CloudWatch Logs), no private resources; a VPC would add NAT or VPC endpoints and no control the IAM policy does not already give.
  #checkov:skip=CKV_AWS_173:Environment variables are encrypted at rest with Lambda's AWS-managed key. A customer-managed key would only narrow who can read the one secret (the analytics hash key: the analytics function and the intake only) through lambda:GetFunctionConfiguration; moving it to Secrets Manager is the better fix, left as a follow-up.
  #checkov:skip=CKV_AWS_272:No AWS Signer profile in this project yet: the zip is built reproducibly by `datasync package-lambda` and pinned by source_code_hash in the same apply.
  function_name    = local.function_name
  description      = "Transforms ${var.event_source} events for the ${var.destination} destination."
  role             = aws_iam_role.transform.arn
  filename         = var.lambda_package_path
  source_code_hash = filebase64sha256(var.lambda_package_path)
  handler          = "lambdas.handler.handle"
  runtime          = var.lambda_runtime
  architectures    = [var.lambda_architecture]
  memory_size      = var.lambda_memory_mb
  timeout          = var.lambda_timeout_seconds

  environment {
    variables = local.function_environment
  }

  # JSON, because only then does Lambda filter its own START/END/REPORT lines by level. The
  # handler's lines are JSON already and DATASYNC_LOG_LEVEL filters them; TRACE keeps Lambda
  # from filtering them a second time (it would read Python's "WARNING" as an unknown level).
  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.transform.name
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
    aws_cloudwatch_log_group.transform,
    aws_iam_role_policy.transform,
  ]
}

resource "aws_lambda_event_source_mapping" "buffer" {
  event_source_arn                   = aws_sqs_queue.buffer.arn
  function_name                      = aws_lambda_function.transform.arn
  batch_size                         = var.buffer_batch_size
  maximum_batching_window_in_seconds = var.buffer_batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  dynamic "scaling_config" {
    for_each = var.lambda_maximum_concurrency == null ? [] : [var.lambda_maximum_concurrency]

    content {
      maximum_concurrency = scaling_config.value
    }
  }

  lifecycle {
    precondition {
      condition     = var.buffer_batch_size <= 10 || var.buffer_batching_window_seconds >= 1
      error_message = "SQS event source mappings with a batch size above 10 need a batching window of at least 1 second."
    }
  }

  # AWS checks the execution role can read the queue when the mapping is created.
  depends_on = [aws_iam_role_policy.transform]
}

# Asynchronous invocations (e.g. an operator re-invoking the function by hand): bounded retries, then the DLQ.
resource "aws_lambda_function_event_invoke_config" "transform" {
  function_name                = aws_lambda_function.transform.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.dlq.arn
    }
  }
}

################################################################################
# Consumer workload policy (the root module turns it into a managed policy)
################################################################################

locals {
  consumer_policy_json = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ConsumeDestinationQueue"
        Effect   = "Allow"
        Action   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
        Resource = aws_sqs_queue.this.arn
      },
      {
        # When some records of a pack fail, the consumer re-sends those alone as a new, delayed
        # message and deletes the pack; without this the whole pack is retried.
        Sid      = "ResendFailedRecords"
        Effect   = "Allow"
        Action   = "sqs:SendMessage"
        Resource = aws_sqs_queue.this.arn
      },
      {
        Sid      = "DeadLetterAndStatus"
        Effect   = "Allow"
        Action   = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]
        Resource = aws_sqs_queue.dlq.arn
      },
    ]
  })
}
