locals {
  function_name = "${var.name}-transform"
  dlq_name      = "${var.name}-dlq"

  # The destination queue is created beside its DLQ (see modules/queue-function about inline
  # queue policies and the ARNs they are built from).
  queue_arn = "arn:${data.aws_arn.dlq.partition}:sqs:${data.aws_arn.dlq.region}:${data.aws_arn.dlq.account}:${var.name}"

  redrive_policy = jsonencode({
    deadLetterTargetArn = module.transform.dlq_arn
    maxReceiveCount     = var.max_receive_count
  })
}

################################################################################
# Replays on the bus (and what the intake hands over) -> buffer queue -> transform function
################################################################################

# Terraform resolves each output of a module on its own, so the transform's own DLQ and role can
# be part of what it is given: it dead-letters what it gives up on itself (with the reason), and
# its asynchronous invocations fail there too.
module "transform" {
  source = "../queue-function"

  rule_name          = var.name
  rule_description   = "Routes replayed ${var.event_source} ${join("/", var.event_detail_types)} events to the ${var.destination} buffer queue (live events go through the intake)."
  event_bus_name     = var.event_bus_name
  event_source       = var.event_source
  event_detail_types = var.event_detail_types
  # Live events reach this destination through the intake, which hands this buffer queue only
  # what it could not finish. A replay names the rules it goes to, so `datasync replay
  # --destination` still reaches one destination alone.
  replayed_events                    = true
  event_target_max_retry_attempts    = var.event_target_max_retry_attempts
  event_target_max_event_age_seconds = var.event_target_max_event_age_seconds

  queue_name                = "${var.name}-buffer"
  queue_label               = "buffer"
  dlq_name                  = local.dlq_name
  max_receive_count         = var.max_receive_count
  message_retention_seconds = var.message_retention_seconds
  # Buffer: the intake, handing over what it could not finish; operators redriving bus events
  # from the DLQ. DLQ: the transform's and the consumers' dead letters. Not listed: the
  # transform's asynchronous on-failure destination (Lambda sends with the function's role).
  queue_sender_arns = concat([var.intake_role_arn], var.operator_principal_arns)
  dlq_sender_arns   = concat([module.transform.role_arn], var.consumer_principal_arns)

  function_name        = local.function_name
  function_description = "Transforms ${var.event_source} events for the ${var.destination} destination."
  handler              = "lambdas.handler.handle"
  function             = var.function
  maximum_concurrency  = var.maximum_concurrency
  environment = {
    DATASYNC_DESTINATION           = var.destination
    DATASYNC_DESTINATION_QUEUE_URL = aws_sqs_queue.this.url
    DATASYNC_DEAD_LETTER_QUEUE_URL = module.transform.dlq_url
    DATASYNC_MAX_RECEIVE_COUNT     = tostring(var.max_receive_count)
  }
  secret_environment = var.secret_environment
  policy_statements = {
    SendToDestinationAndDeadLetterQueues = {
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.this.arn, module.transform.dlq_arn]
    }
  }

  tags = var.tags
}

# Asynchronous invocations (e.g. an operator re-invoking the function by hand): bounded retries, then the DLQ.
resource "aws_lambda_function_event_invoke_config" "transform" {
  function_name                = module.transform.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600

  destination_config {
    on_failure {
      destination = module.transform.dlq_arn
    }
  }
}

################################################################################
# Destination queue: what the consumers read
################################################################################

# Parses the DLQ's ARN locally (no API call).
data "aws_arn" "dlq" {
  arn = module.transform.dlq_arn
}

# The intake's and the transform's record packs; the consumers' re-sends of failed records;
# operators redriving records from the DLQ. No rule targets it.
module "queue_policy" {
  source = "../queue-policy"

  queue_arn   = local.queue_arn
  sender_arns = distinct(concat([var.intake_role_arn, module.transform.role_arn], var.consumer_principal_arns, var.operator_principal_arns))
}

resource "aws_sqs_queue" "this" {
  name                       = var.name
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy             = local.redrive_policy
  policy                     = module.queue_policy.json

  tags = var.tags
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
        Resource = module.transform.dlq_arn
      },
    ]
  })
}
