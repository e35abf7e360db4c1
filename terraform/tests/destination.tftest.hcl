# Tests of modules/destination on its own (every destination instance is built from it), run fully
# offline with a mocked AWS provider. Its buffer queue, DLQ, rule and transform function come from
# modules/queue-function (tests/queue_function.tftest.hcl); here: what the destination gives them,
# its own destination queue, the asynchronous-invocation DLQ and the consumer policy.

mock_provider "aws" {
  source = "./tests/mocks"
}

override_resource {
  target = module.transform.aws_sqs_queue.dlq
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm-dlq"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm-dlq"
  }
}

override_resource {
  target = module.transform.aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm-buffer"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm-buffer"
  }
}

override_resource {
  target = aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm"
  }
}

override_resource {
  target = module.transform.aws_cloudwatch_event_rule.this
  values = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm"
  }
}

override_resource {
  target = module.transform.aws_cloudwatch_log_group.this
  values = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-crm-transform"
  }
}

override_resource {
  target = module.transform.aws_iam_role.this
  values = {
    arn = "arn:aws:iam::123456789012:role/datasync-crm-transform"
  }
}

override_resource {
  target = module.transform.aws_lambda_function.this
  values = {
    arn = "arn:aws:lambda:us-east-1:123456789012:function:datasync-crm-transform"
  }
}

variables {
  name                               = "datasync-crm"
  destination                        = "crm"
  event_bus_name                     = "datasync-bus"
  event_source                       = "datasync.api"
  event_detail_types                 = ["UserCreated", "UserUpdated", "UserDeleted"]
  event_target_max_retry_attempts    = 10
  event_target_max_event_age_seconds = 3600
  max_receive_count                  = 5
  queue_visibility_timeout_seconds   = 60
  message_retention_seconds          = 345600
  intake_role_arn                    = "arn:aws:iam::123456789012:role/datasync-intake"
  function = {
    package_path            = "tests/fixtures/lambda-stub.zip"
    runtime                 = "python3.12"
    architecture            = "x86_64"
    memory_mb               = 256
    timeout_seconds         = 30
    system_log_level        = "WARN"
    log_retention_days      = 14
    batch_size              = 100
    batching_window_seconds = 1
  }
}

run "queues" {
  command = apply

  module {
    source = "./modules/destination"
  }

  assert {
    condition     = aws_sqs_queue.this.sqs_managed_sse_enabled
    error_message = "Every queue must use SSE-SQS (the buffer queue and DLQ: tests/queue_function.tftest.hcl)."
  }

  assert {
    condition     = output.dlq_name == "datasync-crm-dlq" && output.buffer_queue_name == "datasync-crm-buffer" && aws_sqs_queue.this.name == "datasync-crm"
    error_message = "Queue names must be <name>, <name>-buffer and <name>-dlq."
  }

  assert {
    condition     = aws_sqs_queue.this.message_retention_seconds == 345600
    error_message = "The DLQ keeps messages 14 days, the other queues message_retention_seconds."
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.this.redrive_policy) == { deadLetterTargetArn = output.dlq_arn, maxReceiveCount = 5 }
    error_message = "The buffer and destination queues must redrive to the DLQ after max_receive_count receives."
  }

  assert {
    condition     = aws_sqs_queue.this.visibility_timeout_seconds == 60 && aws_sqs_queue.this.receive_wait_time_seconds == 20
    error_message = "The destination queue must use the visibility variable and 20 s long polling."
  }

  # Who may send, by queue (modules/queue-policy builds the documents; tests/queue_policy.tftest.hcl
  # checks their exact form). No consumer or operator roles given: only the functions and the rule.
  assert {
    # jsonencode on both sides: an empty list from the policy and [] here differ in type only.
    condition = jsonencode({
      for name, arn in { buffer = output.buffer_queue_arn, queue = output.queue_arn, dlq = output.dlq_arn } : name => {
        resources               = distinct([for s in jsondecode(output.queue_policies[arn]).Statement : s.Resource])
        senders                 = sort(flatten([for s in jsondecode(output.queue_policies[arn]).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) if s.Effect == "Deny"]))
        rules                   = sort(flatten([for s in jsondecode(output.queue_policies[arn]).Statement : try(s.Condition.ArnNotEquals["aws:SourceArn"], []) if s.Effect == "Deny"]))
        allowed                 = [for s in jsondecode(output.queue_policies[arn]).Statement : s.Condition.ArnEquals["aws:SourceArn"] if s.Effect == "Allow"]
      }
      }) == jsonencode({
      buffer = {
        resources = [output.buffer_queue_arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-intake"]
        rules     = [output.rule_arn]
        allowed   = [output.rule_arn]
      }
      queue = {
        resources = [aws_sqs_queue.this.arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-crm-transform", "arn:aws:iam::123456789012:role/datasync-intake"]
        rules     = []
        allowed   = []
      }
      dlq = {
        resources = [output.dlq_arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-crm-transform"]
        rules     = [output.rule_arn]
        allowed   = [output.rule_arn]
      }
    })
    error_message = "Buffer: the intake and this destination's rule; destination queue: the intake and the transform; DLQ: the transform and the rule. Nobody else."
  }
}

run "consumers_and_operators_may_send_where_they_must" {
  command = apply

  module {
    source = "./modules/destination"
  }

  variables {
    consumer_principal_arns = ["arn:aws:iam::123456789012:role/datasync-consumer-crm"]
    operator_principal_arns = ["arn:aws:iam::123456789012:role/datasync-operator", "arn:aws:iam::123456789012:role/datasync-consumer-crm"]
  }

  assert {
    condition = jsonencode({
      for name, arn in { buffer = output.buffer_queue_arn, queue = output.queue_arn, dlq = output.dlq_arn } :
      name => sort(flatten([for s in jsondecode(output.queue_policies[arn]).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) if s.Effect == "Deny"]))
      }) == jsonencode({
      # Operators redrive bus events to the buffer, records to the destination queue.
      buffer = ["arn:aws:iam::123456789012:role/datasync-consumer-crm", "arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/datasync-operator"]
      # Consumers re-send failed records to their own queue.
      queue = ["arn:aws:iam::123456789012:role/datasync-consumer-crm", "arn:aws:iam::123456789012:role/datasync-crm-transform", "arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/datasync-operator"]
      # Consumers dead-letter; operators only take messages out of the DLQ.
      dlq = ["arn:aws:iam::123456789012:role/datasync-consumer-crm", "arn:aws:iam::123456789012:role/datasync-crm-transform"]
    })
    error_message = "Consumers may send to the destination queue and DLQ, operators to the buffer and destination queue; a role that is both is listed once."
  }

  assert {
    condition = {
      for s in jsondecode(output.consumer_policy_json).Statement : s.Sid => {
        actions   = toset(flatten([s.Action]))
        resources = toset(flatten([s.Resource]))
        plain     = s.Effect == "Allow" && !can(s.NotResource) && !can(s.NotAction)
      }
      } == {
      ConsumeDestinationQueue = {
        actions   = toset(["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"])
        resources = toset([aws_sqs_queue.this.arn])
        plain     = true
      }
      ResendFailedRecords = {
        actions   = toset(["sqs:SendMessage"])
        resources = toset([aws_sqs_queue.this.arn])
        plain     = true
      }
      DeadLetterAndStatus = {
        actions   = toset(["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"])
        resources = toset([output.dlq_arn])
        plain     = true
      }
    }
    error_message = "The consumer policy must grant exactly: consume its queue, re-send to it, dead-letter to and read its DLQ."
  }
}

run "routing" {
  command = apply

  module {
    source = "./modules/destination"
  }

  assert {
    condition = output.rule_name == "datasync-crm" && jsondecode(output.rule_event_pattern) == {
      source        = ["datasync.api"]
      "detail-type" = ["UserCreated", "UserUpdated", "UserDeleted"]
      "replay-name" = [{ exists = true }]
    }
    error_message = "The rule must match replayed datasync.api User* events (live ones go through the intake)."
  }
}

run "transform_function" {
  command = apply

  module {
    source = "./modules/destination"
  }

  assert {
    condition     = output.function_name == "datasync-crm-transform" && output.function_architecture == "x86_64"
    error_message = "The function must be <name>-transform, on the function's architecture."
  }

  assert {
    condition = nonsensitive(output.function_environment) == tomap({
      DATASYNC_DESTINATION           = "crm"
      DATASYNC_DESTINATION_QUEUE_URL = aws_sqs_queue.this.url
      DATASYNC_DEAD_LETTER_QUEUE_URL = output.dlq_url
      DATASYNC_MAX_RECEIVE_COUNT     = "5"
      DATASYNC_LOG_LEVEL             = "INFO"
    })
    error_message = "The function's environment is wrong (and must not hold any secret unless given one)."
  }

  assert {
    condition = [
      for s in jsondecode(output.function_policy_json).Statement : {
        actions   = toset(flatten([s.Action]))
        resources = toset(flatten([s.Resource]))
      }
      ] == [
      {
        actions   = toset(["logs:CreateLogStream", "logs:PutLogEvents"])
        resources = toset(["arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-crm-transform:*"])
      },
      {
        actions   = toset(["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"])
        resources = toset([output.buffer_queue_arn])
      },
      {
        actions   = toset(["sqs:SendMessage"])
        resources = toset([aws_sqs_queue.this.arn, output.dlq_arn])
      },
    ]
    error_message = "The execution role must grant exactly: own logs, consume the buffer queue, send to the destination queue and DLQ."
  }

  assert {
    condition = (
      aws_lambda_function_event_invoke_config.transform.function_name == output.function_name &&
      aws_lambda_function_event_invoke_config.transform.maximum_retry_attempts == 2 &&
      aws_lambda_function_event_invoke_config.transform.maximum_event_age_in_seconds == 3600 &&
      aws_lambda_function_event_invoke_config.transform.destination_config[0].on_failure[0].destination == output.dlq_arn
    )
    error_message = "Failed asynchronous invocations must end in the DLQ."
  }
}

run "secret_environment_is_added" {
  command = apply

  module {
    source = "./modules/destination"
  }

  variables {
    name               = "datasync-analytics"
    destination        = "analytics"
    secret_environment = { DATASYNC_ANALYTICS_HASH_KEY = "0123456789abcdef-test-key" }
  }

  assert {
    condition     = nonsensitive(output.function_environment["DATASYNC_ANALYTICS_HASH_KEY"]) == "0123456789abcdef-test-key"
    error_message = "Secret environment variables must reach the function."
  }

  assert {
    condition     = nonsensitive(output.function_environment["DATASYNC_DESTINATION"]) == "analytics"
    error_message = "DATASYNC_DESTINATION must be the destination key."
  }
}
