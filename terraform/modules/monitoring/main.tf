locals {
  partition = data.aws_arn.bus.partition
  region    = data.aws_arn.bus.region
  account   = data.aws_arn.bus.account

  create_topic = var.create_alarms && var.create_alarm_topic
  create_key   = local.create_topic && var.alarm_topic_kms_key_arn == null
  topic_key    = var.alarm_topic_kms_key_arn == null ? one(aws_kms_key.alarms[*].arn) : var.alarm_topic_kms_key_arn

  # Every alarm notifies the topic created here and any topics the caller brings, on ALARM and on OK.
  alarm_actions = concat(aws_sns_topic.alarms[*].arn, var.alarm_actions)
}

# Parses the bus ARN locally (no API call), as modules/destination does with its rule's ARN.
data "aws_arn" "bus" {
  arn = var.event_bus_arn
}

################################################################################
# Alarms: what an operator must hear about, per destination
#
# Counts (Errors, Throttles, the rule's failures) alarm on any occurrence by default: each one is
# an event that did not move on. Queue ages alarm on a level. One breaching period fires an alarm
# (datapoints_to_alarm = 1); it turns OK after alarm_evaluation_periods clean periods. No data is
# no problem: Lambda and EventBridge publish these metrics only when something happens.
################################################################################

locals {
  # The namespace and statistic of each metric the alarms watch.
  alarm_metrics = {
    ApproximateNumberOfMessagesVisible = { namespace = "AWS/SQS", statistic = "Maximum" }
    ApproximateAgeOfOldestMessage      = { namespace = "AWS/SQS", statistic = "Maximum" }
    Errors                             = { namespace = "AWS/Lambda", statistic = "Sum" }
    Throttles                          = { namespace = "AWS/Lambda", statistic = "Sum" }
    FailedInvocations                  = { namespace = "AWS/Events", statistic = "Sum" }
    InvocationsSentToDlq               = { namespace = "AWS/Events", statistic = "Sum" }
    InvocationsFailedToBeSentToDlq     = { namespace = "AWS/Events", statistic = "Sum" }
  }

  # Rules on a custom bus publish their metrics with both EventBusName and RuleName: an alarm on
  # RuleName alone watches the default bus's rule of that name and never fires.
  rule_dimensions = merge(
    { intake = { EventBusName = var.event_bus_name, RuleName = var.intake.rule_name } },
    { for key, pipeline in var.destinations : key => { EventBusName = var.event_bus_name, RuleName = pipeline.rule_name } },
  )

  # Each alarm: the metric it watches and where (dimensions), the threshold it fires above, and the
  # description its notifications carry, with the first command to run.
  alarm_definitions = {
    for destination, pipeline in var.destinations : destination => {
      dlq-not-empty = {
        description = "Messages wait in ${pipeline.dlq_name}: ${destination} events or records that failed every attempt and reached no store. Run `datasync dlq list ${destination}` for the reasons, fix the cause, then `datasync dlq redrive ${destination}`."
        metric_name = "ApproximateNumberOfMessagesVisible"
        dimensions  = { QueueName = pipeline.dlq_name }
        threshold   = 0
      }
      oldest-message = {
        description = "The oldest message in ${pipeline.queue_name} is older than ${var.oldest_message_alarm_seconds} s: the ${destination} consumers are down, stuck or too few. Run `datasync status`."
        metric_name = "ApproximateAgeOfOldestMessage"
        dimensions  = { QueueName = pipeline.queue_name }
        threshold   = var.oldest_message_alarm_seconds
      }
      buffer-oldest-message = {
        description = "The oldest message in ${pipeline.buffer_queue_name} is older than ${var.buffer_oldest_message_alarm_seconds} s: ${pipeline.function_name} is not draining it (failing, throttled, or its event source mapping is disabled). Run `datasync status`, then read /aws/lambda/${pipeline.function_name}."
        metric_name = "ApproximateAgeOfOldestMessage"
        dimensions  = { QueueName = pipeline.buffer_queue_name }
        threshold   = var.buffer_oldest_message_alarm_seconds
      }
      transform-errors = {
        description = "${pipeline.function_name} invocations failed (crash, timeout, out of memory): their batches return to ${pipeline.buffer_queue_name} and reach ${pipeline.dlq_name} after max receives. Read /aws/lambda/${pipeline.function_name}; `datasync trace <event id>` follows one event."
        metric_name = "Errors"
        dimensions  = { FunctionName = pipeline.function_name }
        threshold   = var.transform_errors_alarm_threshold
      }
      transform-throttles = {
        description = "${pipeline.function_name} was throttled: Lambda concurrency is used up (the account's limit or lambda_maximum_concurrency). Each throttled batch counts toward max receives, then the DLQ. Run `datasync status`; raise the limit or the account quota."
        metric_name = "Throttles"
        dimensions  = { FunctionName = pipeline.function_name }
        threshold   = var.transform_throttles_alarm_threshold
      }
      rule-delivery-failed = {
        description = "EventBridge gave up delivering events of rule ${pipeline.rule_name} to ${pipeline.buffer_queue_name} (retries exhausted, or the queue refuses them). They go to ${pipeline.dlq_name}: run `datasync dlq list ${destination}`."
        metric_name = "FailedInvocations"
        dimensions  = local.rule_dimensions[destination]
        threshold   = 0
      }
      rule-dead-lettered = {
        description = "Events of rule ${pipeline.rule_name} went to ${pipeline.dlq_name} instead of ${pipeline.buffer_queue_name}. Run `datasync dlq list ${destination}` (EventBridge's ERROR_CODE says why), fix the buffer queue, then `datasync dlq redrive ${destination}`."
        metric_name = "InvocationsSentToDlq"
        dimensions  = local.rule_dimensions[destination]
        threshold   = 0
      }
      rule-events-lost = {
        description = "Events of rule ${pipeline.rule_name} are LOST: EventBridge could deliver them neither to ${pipeline.buffer_queue_name} nor to ${pipeline.dlq_name} (check the DLQ's policy). Replay the window from the archive: `datasync replay --from <time> --to <time> --destination ${destination}`."
        metric_name = "InvocationsFailedToBeSentToDlq"
        dimensions  = local.rule_dimensions[destination]
        threshold   = 0
      }
    }
  }

  # The intake's own: every live event passes its queue and function before any destination's.
  intake_alarm_definitions = {
    dlq-not-empty = {
      description = "Messages wait in ${var.intake.dlq_name}: live events EventBridge could not deliver to ${var.intake.queue_name}, or that ${var.intake.function_name} could neither shape nor hand over max receives times. They reached no destination. `datasync status` counts them; read /aws/lambda/${var.intake.function_name}, fix the cause, then move them back with `aws sqs start-message-move-task --source-arn <${var.intake.dlq_name} ARN> --destination-arn <${var.intake.queue_name} ARN>`."
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.intake.dlq_name }
      threshold   = 0
    }
    oldest-message = {
      description = "The oldest message in ${var.intake.queue_name} is older than ${var.buffer_oldest_message_alarm_seconds} s: ${var.intake.function_name} is not draining it (failing, throttled, or its event source mapping is disabled), and every destination waits. Run `datasync status`, then read /aws/lambda/${var.intake.function_name}."
      metric_name = "ApproximateAgeOfOldestMessage"
      dimensions  = { QueueName = var.intake.queue_name }
      threshold   = var.buffer_oldest_message_alarm_seconds
    }
    function-errors = {
      description = "${var.intake.function_name} invocations failed (crash, timeout, out of memory): their batches return to ${var.intake.queue_name} and reach ${var.intake.dlq_name} after max receives. Read /aws/lambda/${var.intake.function_name}; `datasync trace <event id>` follows one event."
      metric_name = "Errors"
      dimensions  = { FunctionName = var.intake.function_name }
      threshold   = var.transform_errors_alarm_threshold
    }
    function-throttles = {
      description = "${var.intake.function_name} was throttled: Lambda concurrency is used up (the account's limit or intake_maximum_concurrency). Each throttled batch counts toward max receives, then the intake DLQ. Run `datasync status`; raise the limit or the account quota."
      metric_name = "Throttles"
      dimensions  = { FunctionName = var.intake.function_name }
      threshold   = var.transform_throttles_alarm_threshold
    }
    rule-delivery-failed = {
      description = "EventBridge gave up delivering live events of rule ${var.intake.rule_name} to ${var.intake.queue_name}. They go to ${var.intake.dlq_name}; `datasync status` counts them."
      metric_name = "FailedInvocations"
      dimensions  = local.rule_dimensions.intake
      threshold   = 0
    }
    rule-events-lost = {
      description = "Live events of rule ${var.intake.rule_name} are LOST: EventBridge could deliver them neither to ${var.intake.queue_name} nor to ${var.intake.dlq_name}. Replay the window from the archive: `datasync replay --from <time> --to <time>`."
      metric_name = "InvocationsFailedToBeSentToDlq"
      dimensions  = local.rule_dimensions.intake
      threshold   = 0
    }
  }

  # "<destination>/<alarm>" => the alarm, for every destination and the intake.
  alarms = var.create_alarms ? merge([
    for destination, definitions in merge(local.alarm_definitions, { intake = local.intake_alarm_definitions }) : {
      for kind, alarm in definitions : "${destination}/${kind}" => merge(alarm, {
        name        = "${var.name_prefix}-${destination}-${kind}"
        destination = destination
        kind        = kind
      })
    }
  ]...) : {}
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = each.value.name
  alarm_description   = each.value.description
  namespace           = local.alarm_metrics[each.value.metric_name].namespace
  metric_name         = each.value.metric_name
  dimensions          = each.value.dimensions
  statistic           = local.alarm_metrics[each.value.metric_name].statistic
  period              = var.alarm_period_seconds
  evaluation_periods  = var.alarm_evaluation_periods
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = {
    Destination = each.value.destination
  }

  lifecycle {
    precondition {
      condition     = var.alarm_period_seconds * var.alarm_evaluation_periods <= 86400
      error_message = "alarm_period_seconds x alarm_evaluation_periods is ${var.alarm_period_seconds * var.alarm_evaluation_periods} s; CloudWatch evaluates at most one day (86400 s). Lower one of them."
    }
  }
}

# A warning, not an error: alarms nobody hears still show on the dashboard and in `datasync status`.
check "alarms_notify_someone" {
  assert {
    condition     = !var.create_alarms || length(local.alarm_actions) > 0
    error_message = "The alarms notify no one: create_alarm_topic is false and alarm_actions is empty. Set create_alarm_topic = true, or pass your topic's ARN in alarm_actions."
  }
}

################################################################################
# The topic the alarms notify: encrypted, and only this account's alarms may publish
################################################################################

# CloudWatch cannot publish to a topic encrypted with the AWS-managed key alias/aws/sns (that key's
# policy does not let CloudWatch use it, and nobody can change it), so the topic gets a
# customer-managed key unless the caller brings one.
resource "aws_kms_key" "alarms" {
  count = local.create_key ? 1 : 0

  description         = "Encrypts the ${var.name_prefix}-alarms SNS topic."
  enable_key_rotation = true

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The key's default statement: IAM policies of this account govern who manages the key.
        Sid       = "AccountManagesTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchAlarmsOfThisAccountEncrypt"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account } }
      },
    ]
  })
}

resource "aws_kms_alias" "alarms" {
  count = local.create_key ? 1 : 0

  name          = "alias/${var.name_prefix}-alarms"
  target_key_id = aws_kms_key.alarms[0].key_id
}

resource "aws_sns_topic" "alarms" {
  count = local.create_topic ? 1 : 0

  name              = "${var.name_prefix}-alarms"
  display_name      = "${var.name_prefix} alarms"
  kms_master_key_id = local.topic_key
}

resource "aws_sns_topic_policy" "alarms" {
  count = local.create_topic ? 1 : 0

  arn = aws_sns_topic.alarms[0].arn

  # Replaces SNS's default policy (anyone in the account may publish and subscribe). The Deny keeps
  # every IAM principal from publishing, whatever its own policies allow, so a notification always
  # comes from an alarm; test the wiring with `aws cloudwatch set-alarm-state` instead.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "CloudWatchAlarmsOfThisAccountPublish"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alarms[0].arn
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account }
          ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:cloudwatch:${local.region}:${local.account}:alarm:*" }
        }
      },
      {
        Sid       = "NoIamPrincipalPublishes"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alarms[0].arn
        Condition = { BoolIfExists = { "aws:PrincipalIsAWSService" = "false" } }
      },
    ]
  })
}

# Each address gets a confirmation mail from AWS and receives nothing until it is confirmed; an
# unconfirmed subscription expires after 3 days (the next apply subscribes it again).
resource "aws_sns_topic_subscription" "email" {
  for_each = local.create_topic ? toset(var.alarm_email_addresses) : toset([])

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = each.value
}

check "email_addresses_have_a_topic" {
  assert {
    condition     = local.create_topic || length(var.alarm_email_addresses) == 0
    error_message = "alarm_email_addresses are not subscribed to anything: no alarm topic is created (create_alarms or create_alarm_topic is false). Subscribe them to your own topic."
  }
}
