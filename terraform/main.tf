provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.tags
  }
}

locals {
  # The event contract: what the API publishes and every destination rule matches.
  event_source       = "datasync.api"
  event_detail_types = ["UserCreated", "UserUpdated", "UserDeleted"]

  tags = merge(
    {
      Application = "datasync"
      Stack       = var.name_prefix
      ManagedBy   = "terraform"
    },
    var.tags,
  )

  # What every function of the pipeline shares (modules/queue-function's `function`).
  function = {
    package_path            = var.lambda_package_path
    runtime                 = var.lambda_runtime
    architecture            = var.lambda_architecture
    memory_mb               = var.lambda_memory_mb
    timeout_seconds         = var.lambda_timeout_seconds
    system_log_level        = var.lambda_system_log_level
    log_retention_days      = var.log_retention_days
    batch_size              = var.buffer_batch_size
    batching_window_seconds = var.buffer_batching_window_seconds
  }

  # Environment variables only one destination's transform (and the intake, which shapes every
  # destination's records) may see. The analytics hash key must never reach the crm or marketing
  # functions.
  destination_secret_environment = {
    analytics = {
      DATASYNC_ANALYTICS_HASH_KEY = var.analytics_hash_key
    }
  }
}

################################################################################
# Event bus and archive
################################################################################

resource "aws_cloudwatch_event_bus" "this" {
  name = "${var.name_prefix}-bus"
  # null: EventBridge encrypts events at rest with an AWS-owned key.
  kms_key_identifier = var.event_bus_kms_key_arn
}

# Only the API may publish. An identity policy alone would let any principal of the account with
# a broad policy (events:* on *) publish too, so this is an explicit Deny for every IAM principal
# that is not one of the API's roles. AWS service principals are exempt: they do not publish here
# on anyone's behalf, and archive replay must keep working.
resource "aws_cloudwatch_event_bus_policy" "this" {
  count = var.create_event_bus_policy ? 1 : 0

  event_bus_name = aws_cloudwatch_event_bus.this.name

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "OnlyTheApiPublishes"
        Effect    = "Deny"
        Principal = "*"
        Action    = "events:PutEvents"
        Resource  = aws_cloudwatch_event_bus.this.arn
        # With no API roles given there is nothing to except: every IAM principal is denied.
        Condition = merge(
          { BoolIfExists = { "aws:PrincipalIsAWSService" = "false" } },
          length(var.api_principal_arns) > 0 ? { ArnNotEquals = { "aws:PrincipalArn" = var.api_principal_arns } } : {},
        )
      },
    ]
  })
}

resource "aws_cloudwatch_event_archive" "this" {
  name             = "${var.name_prefix}-archive"
  description      = "Every ${local.event_source} event published to ${aws_cloudwatch_event_bus.this.name}, kept for replay."
  event_source_arn = aws_cloudwatch_event_bus.this.arn
  retention_days   = var.archive_retention_days

  event_pattern = jsonencode({
    source = [local.event_source]
  })
}

################################################################################
# Destinations: destination queue (+ DLQ) and the destination's own function, which takes what
# the intake hands over and replays: replay rule -> buffer queue -> transform Lambda
################################################################################

module "destination" {
  source   = "./modules/destination"
  for_each = var.destinations

  name        = "${var.name_prefix}-${each.key}"
  destination = each.key

  event_bus_name                     = aws_cloudwatch_event_bus.this.name
  event_source                       = local.event_source
  event_detail_types                 = local.event_detail_types
  event_target_max_retry_attempts    = var.event_target_max_retry_attempts
  event_target_max_event_age_seconds = var.event_target_max_event_age_seconds

  max_receive_count                = var.max_receive_count
  queue_visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  message_retention_seconds        = var.message_retention_seconds
  intake_role_arn                  = module.intake.role_arn
  consumer_principal_arns          = lookup(var.consumer_principal_arns, each.key, [])
  operator_principal_arns          = var.operator_principal_arns

  function            = local.function
  maximum_concurrency = var.lambda_maximum_concurrency
  secret_environment  = lookup(local.destination_secret_environment, each.key, {})

  tags = {
    Destination = each.key
  }
}

################################################################################
# Intake: live events -> one queue -> one function -> every destination queue
################################################################################

module "intake" {
  source = "./modules/queue-function"

  rule_name                          = "${var.name_prefix}-intake"
  rule_description                   = "Routes live ${local.event_source} ${join("/", local.event_detail_types)} events to the intake queue (replayed events go to the destinations' own rules)."
  event_bus_name                     = aws_cloudwatch_event_bus.this.name
  event_source                       = local.event_source
  event_detail_types                 = local.event_detail_types
  replayed_events                    = false
  event_target_max_retry_attempts    = var.event_target_max_retry_attempts
  event_target_max_event_age_seconds = var.event_target_max_event_age_seconds

  queue_name                = "${var.name_prefix}-intake"
  queue_label               = "intake"
  dlq_name                  = "${var.name_prefix}-intake-dlq"
  max_receive_count         = var.max_receive_count
  message_retention_seconds = var.message_retention_seconds
  # The queue: operators moving the DLQ's messages back. The DLQ: its rule's target alone. The
  # intake function sends to neither: what it cannot finish comes back by visibility timeout,
  # and SQS's own redrive (internal, no SendMessage) moves it to the DLQ.
  queue_sender_arns = var.operator_principal_arns

  function_name        = "${var.name_prefix}-intake"
  function_description = "Shapes live ${local.event_source} events for every destination: ${join(", ", keys(module.destination))}."
  handler              = "lambdas.handler.intake"
  function             = local.function
  maximum_concurrency  = var.intake_maximum_concurrency
  environment = {
    DATASYNC_INTAKE_ROUTES = jsonencode({
      for key, destination in module.destination : key => {
        queue_url        = destination.queue_url
        buffer_queue_url = destination.buffer_queue_url
      }
    })
  }
  # The intake shapes the analytics records too, so it holds the analytics hash key.
  secret_environment = merge([for key in keys(module.destination) : lookup(local.destination_secret_environment, key, {})]...)
  policy_statements = {
    # The packs go to the destination queues; what the fast path cannot finish goes to the
    # destination's buffer queue, for the destination's own function. Nothing else.
    SendToDestinationAndBufferQueues = {
      actions   = ["sqs:SendMessage"]
      resources = flatten([for destination in module.destination : [destination.queue_arn, destination.buffer_queue_arn]])
    }
  }
}

################################################################################
# Monitoring: alarms per destination, the SNS topic they notify, the dashboard
################################################################################

module "monitoring" {
  source = "./modules/monitoring"

  name_prefix    = var.name_prefix
  event_bus_name = aws_cloudwatch_event_bus.this.name
  event_bus_arn  = aws_cloudwatch_event_bus.this.arn

  # Each takes the names it needs from the modules' outputs.
  destinations           = module.destination
  intake                 = module.intake
  lambda_timeout_seconds = var.lambda_timeout_seconds

  create_alarms                       = var.create_alarms
  alarm_period_seconds                = var.alarm_period_seconds
  alarm_evaluation_periods            = var.alarm_evaluation_periods
  oldest_message_alarm_seconds        = var.oldest_message_alarm_seconds
  buffer_oldest_message_alarm_seconds = var.buffer_oldest_message_alarm_seconds
  transform_errors_alarm_threshold    = var.transform_errors_alarm_threshold
  transform_throttles_alarm_threshold = var.transform_throttles_alarm_threshold

  create_alarm_topic      = var.create_alarm_topic
  alarm_actions           = var.alarm_actions
  alarm_topic_kms_key_arn = var.alarm_topic_kms_key_arn
  alarm_email_addresses   = var.alarm_email_addresses

  create_dashboard = var.create_dashboard
}

################################################################################
# IAM policies for the Kubernetes workloads (attach them to your own IRSA / Pod Identity roles)
################################################################################

resource "aws_iam_policy" "api" {
  name        = "${var.name_prefix}-api"
  description = "Lets the datasync API publish events to ${aws_cloudwatch_event_bus.this.name}."

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "PublishEvents"
        Effect   = "Allow"
        Action   = "events:PutEvents"
        Resource = aws_cloudwatch_event_bus.this.arn
      },
      {
        Sid      = "DescribeBus"
        Effect   = "Allow"
        Action   = "events:DescribeEventBus"
        Resource = aws_cloudwatch_event_bus.this.arn
      },
    ]
  })
}

# The status page's browser sessions (apps/api/sessions.py): one item per login, keyed by the
# SHA-256 of its random cookie, deleted at logout and by TTL at expiry. Every API worker and pod
# reads this one table, so a logout ends the session everywhere at once.
resource "aws_dynamodb_table" "dashboard_sessions" {
  #checkov:skip=CKV_AWS_28:Sessions are disposable: a table restored from a backup would only bring back logged-out sessions; losing them logs browsers out, nothing else.
  #checkov:skip=CKV_AWS_119:Encrypted at rest with DynamoDB's AWS-managed key. Items are a token hash, a key fingerprint and an expiry: no personal data and nothing that opens a session, so a customer-managed key would guard nothing secret.
  name         = "${var.name_prefix}-dashboard-sessions"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "session"

  attribute {
    name = "session"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  server_side_encryption {
    enabled = true
  }
}

# Optional: attach it to the API's role as well to let the status page (/dashboard) show queue
# depths, peek at the dead letters' reasons and keep browser sessions. Without it the API only
# publishes, and the page says which permission it lacks. ReceiveMessage on the DLQs reads their
# bodies too (the page shows only the message attributes); it cannot delete, send or purge any
# message. The sessions table is the only thing it may write.
resource "aws_iam_policy" "dashboard" {
  name = "${var.name_prefix}-dashboard"
  # The description is kept as first deployed: changing it makes the provider replace the policy,
  # and a policy attached to the API's role cannot be deleted (DeleteConflict).
  description = "Lets the datasync API's status page read queue depths and peek at the DLQs."

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "QueueDepths"
        Effect   = "Allow"
        Action   = "sqs:GetQueueAttributes"
        Resource = concat([module.intake.queue_arn, module.intake.dlq_arn], flatten([for d in module.destination : [d.buffer_queue_arn, d.queue_arn, d.dlq_arn]]))
      },
      {
        Sid      = "PeekDeadLetters"
        Effect   = "Allow"
        Action   = "sqs:ReceiveMessage"
        Resource = concat([module.intake.dlq_arn], [for d in module.destination : d.dlq_arn])
      },
      {
        Sid      = "BrowserSessions"
        Effect   = "Allow"
        Action   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
        Resource = aws_dynamodb_table.dashboard_sessions.arn
      },
    ]
  })
}

resource "aws_iam_policy" "consumer" {
  for_each = var.destinations

  name        = "${var.name_prefix}-${each.key}-consumer"
  description = "Lets the datasync ${each.key} consumer read its destination queue, re-send failed records to it and use its DLQ."
  policy      = module.destination[each.key].consumer_policy_json

  lifecycle {
    precondition {
      condition     = length(setsubtract(keys(var.consumer_principal_arns), var.destinations)) == 0
      error_message = "consumer_principal_arns names ${join(", ", setsubtract(keys(var.consumer_principal_arns), var.destinations))}, which is not in destinations: remove it, or add it to destinations."
    }
  }
}
