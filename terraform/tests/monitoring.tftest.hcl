# Tests of modules/monitoring on its own (alarms, the topic they notify, the dashboard), run fully
# offline with a mocked AWS provider. The root module's tests check that it is wired to the real
# queues and functions of every destination.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name_prefix    = "datasync"
  event_bus_name = "datasync-bus"
  event_bus_arn  = "arn:aws:events:us-east-1:123456789012:event-bus/datasync-bus"
  destinations = {
    crm = {
      rule_name         = "datasync-crm"
      buffer_queue_name = "datasync-crm-buffer"
      queue_name        = "datasync-crm"
      dlq_name          = "datasync-crm-dlq"
      function_name     = "datasync-crm-transform"
    }
    marketing = {
      rule_name         = "datasync-marketing"
      buffer_queue_name = "datasync-marketing-buffer"
      queue_name        = "datasync-marketing"
      dlq_name          = "datasync-marketing-dlq"
      function_name     = "datasync-marketing-transform"
    }
  }
  intake = {
    rule_name     = "datasync-intake"
    queue_name    = "datasync-intake"
    dlq_name      = "datasync-intake-dlq"
    function_name = "datasync-intake"
  }
  lambda_timeout_seconds = 30
}

################################################################################
# Alarms
################################################################################

run "every_destination_has_every_alarm" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition = {
      for key, alarm in aws_cloudwatch_metric_alarm.this : key => {
        name       = alarm.alarm_name
        metric     = "${alarm.namespace} ${alarm.metric_name} ${alarm.statistic}"
        dimensions = alarm.dimensions
        threshold  = alarm.threshold
      }
      } == merge(concat([
        for d in ["crm", "marketing"] : {
          "${d}/dlq-not-empty" = {
            name       = "datasync-${d}-dlq-not-empty"
            metric     = "AWS/SQS ApproximateNumberOfMessagesVisible Maximum"
            dimensions = tomap({ QueueName = "datasync-${d}-dlq" })
            threshold  = 0
          }
          "${d}/oldest-message" = {
            name       = "datasync-${d}-oldest-message"
            metric     = "AWS/SQS ApproximateAgeOfOldestMessage Maximum"
            dimensions = tomap({ QueueName = "datasync-${d}" })
            threshold  = 900
          }
          "${d}/buffer-oldest-message" = {
            name       = "datasync-${d}-buffer-oldest-message"
            metric     = "AWS/SQS ApproximateAgeOfOldestMessage Maximum"
            dimensions = tomap({ QueueName = "datasync-${d}-buffer" })
            threshold  = 600
          }
          "${d}/transform-errors" = {
            name       = "datasync-${d}-transform-errors"
            metric     = "AWS/Lambda Errors Sum"
            dimensions = tomap({ FunctionName = "datasync-${d}-transform" })
            threshold  = 0
          }
          "${d}/transform-throttles" = {
            name       = "datasync-${d}-transform-throttles"
            metric     = "AWS/Lambda Throttles Sum"
            dimensions = tomap({ FunctionName = "datasync-${d}-transform" })
            threshold  = 0
          }
          "${d}/rule-delivery-failed" = {
            name       = "datasync-${d}-rule-delivery-failed"
            metric     = "AWS/Events FailedInvocations Sum"
            dimensions = tomap({ EventBusName = "datasync-bus", RuleName = "datasync-${d}" })
            threshold  = 0
          }
          "${d}/rule-dead-lettered" = {
            name       = "datasync-${d}-rule-dead-lettered"
            metric     = "AWS/Events InvocationsSentToDlq Sum"
            dimensions = tomap({ EventBusName = "datasync-bus", RuleName = "datasync-${d}" })
            threshold  = 0
          }
          "${d}/rule-events-lost" = {
            name       = "datasync-${d}-rule-events-lost"
            metric     = "AWS/Events InvocationsFailedToBeSentToDlq Sum"
            dimensions = tomap({ EventBusName = "datasync-bus", RuleName = "datasync-${d}" })
            threshold  = 0
          }
        }
        ], [{
          "intake/dlq-not-empty" = {
            name       = "datasync-intake-dlq-not-empty"
            metric     = "AWS/SQS ApproximateNumberOfMessagesVisible Maximum"
            dimensions = tomap({ QueueName = "datasync-intake-dlq" })
            threshold  = 0
          }
          "intake/oldest-message" = {
            name       = "datasync-intake-oldest-message"
            metric     = "AWS/SQS ApproximateAgeOfOldestMessage Maximum"
            dimensions = tomap({ QueueName = "datasync-intake" })
            threshold  = 600
          }
          "intake/function-errors" = {
            name       = "datasync-intake-function-errors"
            metric     = "AWS/Lambda Errors Sum"
            dimensions = tomap({ FunctionName = "datasync-intake" })
            threshold  = 0
          }
          "intake/function-throttles" = {
            name       = "datasync-intake-function-throttles"
            metric     = "AWS/Lambda Throttles Sum"
            dimensions = tomap({ FunctionName = "datasync-intake" })
            threshold  = 0
          }
          "intake/rule-delivery-failed" = {
            name       = "datasync-intake-rule-delivery-failed"
            metric     = "AWS/Events FailedInvocations Sum"
            dimensions = tomap({ EventBusName = "datasync-bus", RuleName = "datasync-intake" })
            threshold  = 0
          }
          "intake/rule-events-lost" = {
            name       = "datasync-intake-rule-events-lost"
            metric     = "AWS/Events InvocationsFailedToBeSentToDlq Sum"
            dimensions = tomap({ EventBusName = "datasync-bus", RuleName = "datasync-intake" })
            threshold  = 0
          }
    }])...)
    error_message = "Every destination needs its eight alarms and the intake its six, each on its own queue, function or rule (rules on a custom bus: EventBusName and RuleName), with its statistic and threshold."
  }

  assert {
    condition = alltrue([
      for alarm in aws_cloudwatch_metric_alarm.this :
      alarm.comparison_operator == "GreaterThanThreshold" && alarm.period == 60 && alarm.evaluation_periods == 5 &&
      alarm.datapoints_to_alarm == 1 && alarm.treat_missing_data == "notBreaching"
    ])
    error_message = "Every alarm fires on one breaching minute, recovers after five clean ones, and treats missing data (nothing happened) as fine."
  }

  assert {
    condition = alltrue([
      for key, alarm in aws_cloudwatch_metric_alarm.this :
      alarm.tags["Destination"] == split("/", key)[0] && strcontains(alarm.alarm_description, "datasync ")
    ])
    error_message = "Every alarm is tagged with its destination and its description names the first datasync command to run."
  }

  assert {
    condition = output.alarm_names == merge({
      for d in ["crm", "marketing"] : d => {
        for kind in ["dlq-not-empty", "oldest-message", "buffer-oldest-message", "transform-errors", "transform-throttles", "rule-delivery-failed", "rule-dead-lettered", "rule-events-lost"] :
        kind => "datasync-${d}-${kind}"
      }
      }, {
      intake = {
        for kind in ["dlq-not-empty", "oldest-message", "function-errors", "function-throttles", "rule-delivery-failed", "rule-events-lost"] :
        kind => "datasync-intake-${kind}"
      }
    })
    error_message = "alarm_names must list every alarm name by destination and alarm."
  }
}

run "thresholds_and_periods_are_variables" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    alarm_period_seconds                = 300
    alarm_evaluation_periods            = 3
    oldest_message_alarm_seconds        = 1800
    buffer_oldest_message_alarm_seconds = 120
    transform_errors_alarm_threshold    = 2
    transform_throttles_alarm_threshold = 10
  }

  assert {
    condition = (
      alltrue([for alarm in aws_cloudwatch_metric_alarm.this : alarm.period == 300 && alarm.evaluation_periods == 3]) &&
      aws_cloudwatch_metric_alarm.this["crm/oldest-message"].threshold == 1800 &&
      aws_cloudwatch_metric_alarm.this["crm/buffer-oldest-message"].threshold == 120 &&
      aws_cloudwatch_metric_alarm.this["crm/transform-errors"].threshold == 2 &&
      aws_cloudwatch_metric_alarm.this["crm/transform-throttles"].threshold == 10
    )
    error_message = "The period, evaluation periods and thresholds must come from their variables."
  }
}

run "alarms_notify_the_topic_on_alarm_and_on_ok" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition = length(aws_cloudwatch_metric_alarm.this) == 22 && alltrue([
      for alarm in aws_cloudwatch_metric_alarm.this :
      alarm.alarm_actions == toset([aws_sns_topic.alarms[0].arn]) && alarm.ok_actions == toset([aws_sns_topic.alarms[0].arn])
    ])
    error_message = "Every alarm must notify the alarm topic when it fires and when it recovers."
  }

  assert {
    condition     = aws_sns_topic.alarms[0].name == "datasync-alarms" && output.alarm_topic_arn == aws_sns_topic.alarms[0].arn
    error_message = "The topic is <prefix>-alarms, and alarm_topic_arn names it."
  }
}

run "your_own_topics_are_notified_as_well" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  variables {
    alarm_actions = ["arn:aws:sns:us-east-1:123456789012:pager"]
  }

  assert {
    condition = alltrue([
      for alarm in aws_cloudwatch_metric_alarm.this :
      alarm.alarm_actions == toset([aws_sns_topic.alarms[0].arn, "arn:aws:sns:us-east-1:123456789012:pager"]) &&
      alarm.ok_actions == alarm.alarm_actions
    ])
    error_message = "alarm_actions add to the topic created here; they do not replace it."
  }
}

run "only_your_own_topics" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  variables {
    create_alarm_topic = false
    alarm_actions      = ["arn:aws:sns:us-east-1:123456789012:pager"]
  }

  assert {
    condition = (
      length(aws_sns_topic.alarms) == 0 && length(aws_kms_key.alarms) == 0 && length(aws_sns_topic_policy.alarms) == 0 &&
      output.alarm_topic_arn == null && output.alarm_topic_kms_key_arn == null &&
      alltrue([for alarm in aws_cloudwatch_metric_alarm.this : alarm.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:pager"])])
    )
    error_message = "create_alarm_topic = false must create no topic or key and notify only alarm_actions."
  }
}

run "alarms_that_notify_no_one_are_a_warning" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    create_alarm_topic = false
  }

  expect_failures = [check.alarms_notify_someone]
}

run "no_alarms_no_topic" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  variables {
    create_alarms         = false
    alarm_email_addresses = []
  }

  assert {
    condition = (
      length(aws_cloudwatch_metric_alarm.this) == 0 && length(aws_sns_topic.alarms) == 0 && length(aws_kms_key.alarms) == 0 &&
      length(aws_sns_topic_subscription.email) == 0 && output.alarm_names == {} && output.alarm_topic_arn == null
    )
    error_message = "create_alarms = false must create no alarm, topic, key or subscription."
  }

  assert {
    condition     = length(aws_cloudwatch_dashboard.this) == 1 && !contains([for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets : w.type], "alarm")
    error_message = "Without alarms the dashboard still exists, without its alarm widget."
  }
}

################################################################################
# The topic: encryption, who may publish, subscriptions
################################################################################

run "topic_is_encrypted_with_a_key_cloudwatch_may_use" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition = (
      aws_sns_topic.alarms[0].kms_master_key_id == aws_kms_key.alarms[0].arn && aws_kms_key.alarms[0].enable_key_rotation &&
      aws_kms_alias.alarms[0].name == "alias/datasync-alarms" && aws_kms_alias.alarms[0].target_key_id == aws_kms_key.alarms[0].key_id &&
      output.alarm_topic_kms_key_arn == aws_kms_key.alarms[0].arn
    )
    error_message = "The topic must be encrypted with its own rotated customer-managed key (alias/<prefix>-alarms)."
  }

  assert {
    condition = jsondecode(aws_kms_key.alarms[0].policy) == {
      Version = "2012-10-17"
      Statement = [
        {
          Sid       = "AccountManagesTheKey"
          Effect    = "Allow"
          Principal = { AWS = "arn:aws:iam::123456789012:root" }
          Action    = "kms:*"
          Resource  = "*"
        },
        {
          Sid       = "CloudWatchAlarmsOfThisAccountEncrypt"
          Effect    = "Allow"
          Principal = { Service = "cloudwatch.amazonaws.com" }
          Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
          Resource  = "*"
          Condition = { StringEquals = { "aws:SourceAccount" = "123456789012" } }
        },
      ]
    }
    error_message = "The key policy must leave the key to the account's IAM policies and let only this account's CloudWatch alarms encrypt with it."
  }
}

run "only_this_accounts_alarms_may_publish" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition     = aws_sns_topic_policy.alarms[0].arn == aws_sns_topic.alarms[0].arn
    error_message = "The policy must be attached to the alarm topic."
  }

  assert {
    condition = jsondecode(aws_sns_topic_policy.alarms[0].policy) == {
      Version = "2012-10-17"
      Statement = [
        {
          Sid       = "CloudWatchAlarmsOfThisAccountPublish"
          Effect    = "Allow"
          Principal = { Service = "cloudwatch.amazonaws.com" }
          Action    = "sns:Publish"
          Resource  = "arn:aws:sns:us-east-1:123456789012:datasync-alarms"
          Condition = {
            StringEquals = { "aws:SourceAccount" = "123456789012" }
            ArnLike      = { "aws:SourceArn" = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*" }
          }
        },
        {
          Sid       = "NoIamPrincipalPublishes"
          Effect    = "Deny"
          Principal = "*"
          Action    = "sns:Publish"
          Resource  = "arn:aws:sns:us-east-1:123456789012:datasync-alarms"
          Condition = { BoolIfExists = { "aws:PrincipalIsAWSService" = "false" } }
        },
      ]
    }
    error_message = "Only CloudWatch alarms of this account (and region) may publish; every IAM principal is denied."
  }
}

run "a_key_of_your_own" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  variables {
    alarm_topic_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition = (
      length(aws_kms_key.alarms) == 0 && length(aws_kms_alias.alarms) == 0 &&
      aws_sns_topic.alarms[0].kms_master_key_id == "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    error_message = "alarm_topic_kms_key_arn must encrypt the topic instead of a key created here."
  }
}

run "email_addresses_are_subscribed" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  variables {
    alarm_email_addresses = ["oncall@example.com", "data-team@example.org"]
  }

  assert {
    condition = (
      toset([for s in aws_sns_topic_subscription.email : s.endpoint]) == toset(["oncall@example.com", "data-team@example.org"]) &&
      alltrue([for s in aws_sns_topic_subscription.email : s.protocol == "email" && s.topic_arn == aws_sns_topic.alarms[0].arn])
    )
    error_message = "Every address in alarm_email_addresses must get an email subscription to the alarm topic."
  }
}

run "email_addresses_without_a_topic_are_a_warning" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    create_alarm_topic    = false
    alarm_actions         = ["arn:aws:sns:us-east-1:123456789012:pager"]
    alarm_email_addresses = ["oncall@example.com"]
  }

  expect_failures = [check.email_addresses_have_a_topic]
}

################################################################################
# Dashboard
################################################################################

run "dashboard_has_a_row_per_destination" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition     = aws_cloudwatch_dashboard.this[0].dashboard_name == "datasync" && output.dashboard_name == "datasync"
    error_message = "The dashboard is named after the prefix."
  }

  assert {
    condition     = output.dashboard_url == "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards/dashboard/datasync"
    error_message = "dashboard_url must open the dashboard in the console of its region."
  }

  # Every destination has one row of graphs naming its rule (on the bus), its queues and function.
  assert {
    condition = alltrue([
      for d, names in {
        crm       = ["datasync-crm", "datasync-crm-buffer", "datasync-crm-dlq", "datasync-crm-transform"]
        marketing = ["datasync-marketing", "datasync-marketing-buffer", "datasync-marketing-dlq", "datasync-marketing-transform"]
        } : length(setsubtract(names, flatten([
          for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets :
          [for m in w.properties.metrics : [for part in m : part if can(tostring(part))]]
          if startswith(try(w.properties.title, ""), "${d}: ")
      ]))) == 0
    ])
    error_message = "Each destination's row must graph its rule, buffer queue, queue, DLQ and function."
  }

  assert {
    condition = alltrue([
      for d in ["crm", "marketing"] : length(distinct([
        for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets : w.y
        if startswith(try(w.properties.title, ""), "${d}: ")
      ])) == 1
    ]) && length(distinct([for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets : w.y if w.type == "metric"])) == 4
    error_message = "The bus has a row of its own, the intake one and each destination one row (of six graphs)."
  }

  # The intake's row comes right after the bus's and names its rule, queue, DLQ and function.
  assert {
    condition = length(setsubtract(
      ["datasync-intake", "datasync-intake-dlq"],
      flatten([
        for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets :
        [for m in w.properties.metrics : [for part in m : part if can(tostring(part))]]
        if startswith(try(w.properties.title, ""), "intake: ")
      ])
      )) == 0 && toset([
      for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets : w.y
      if startswith(try(w.properties.title, ""), "intake: ")
    ]) == toset([8])
    error_message = "The intake's row (y 8, under the bus) must graph its rule, queue, DLQ and function."
  }

  assert {
    condition = alltrue([
      for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets :
      w.x >= 0 && w.x + w.width <= 24 && w.height > 0
    ])
    error_message = "Every widget must fit the 24-column grid."
  }

  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets :
      [for m in w.properties.metrics : "${m[0]} ${m[1]}"] if w.type == "metric"
      ])) == toset([
      "AWS/Events MatchedEvents", "AWS/Events PutEventsApproximateCallCount", "AWS/Events PutEventsFailedEntriesCount",
      "AWS/Events PutEventsApproximateThrottledCount", "AWS/Events Invocations", "AWS/Events FailedInvocations",
      "AWS/Events InvocationsSentToDlq", "AWS/Events InvocationsFailedToBeSentToDlq",
      "AWS/SQS ApproximateNumberOfMessagesVisible", "AWS/SQS ApproximateNumberOfMessagesNotVisible",
      "AWS/SQS ApproximateAgeOfOldestMessage",
      "AWS/Lambda Invocations", "AWS/Lambda Errors", "AWS/Lambda Throttles", "AWS/Lambda Duration",
    ])
    error_message = "The dashboard must graph the bus (matched events, PutEvents), rule deliveries, queue depth and age, DLQ depth, and the transform's invocations, errors, throttles and duration."
  }

  assert {
    condition = [
      for w in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets : w.properties.alarms if w.type == "alarm"
    ] == [[for alarm in aws_cloudwatch_metric_alarm.this : alarm.arn]]
    error_message = "The dashboard must have one alarm widget showing every alarm."
  }
}

run "dashboard_can_be_switched_off" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    create_dashboard = false
  }

  assert {
    condition     = length(aws_cloudwatch_dashboard.this) == 0 && output.dashboard_name == null && output.dashboard_url == null
    error_message = "create_dashboard = false must create no dashboard."
  }
}

################################################################################
# Limits
################################################################################

run "rejects_an_alarm_window_longer_than_a_day" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    alarm_period_seconds     = 3600
    alarm_evaluation_periods = 25
  }

  expect_failures = [aws_cloudwatch_metric_alarm.this]
}
