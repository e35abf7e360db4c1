# Tests of modules/queue-function on its own (the intake and every destination's transform are
# built from it), run fully offline with a mocked AWS provider. The variables are those of the crm
# destination's transform; tests/destination.tftest.hcl checks what the destination passes.

mock_provider "aws" {
  source = "./tests/mocks"
}

override_resource {
  target = aws_sqs_queue.dlq
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm-dlq"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm-dlq"
  }
}

override_resource {
  target = aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm-buffer"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm-buffer"
  }
}

override_resource {
  target = aws_cloudwatch_event_rule.this
  values = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm"
  }
}

override_resource {
  target = aws_cloudwatch_log_group.this
  values = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-crm-transform"
  }
}

override_resource {
  target = aws_iam_role.this
  values = {
    arn = "arn:aws:iam::123456789012:role/datasync-crm-transform"
  }
}

override_resource {
  target = aws_lambda_function.this
  values = {
    arn = "arn:aws:lambda:us-east-1:123456789012:function:datasync-crm-transform"
  }
}

variables {
  rule_name                          = "datasync-crm"
  rule_description                   = "Routes replayed events to the crm buffer queue."
  event_bus_name                     = "datasync-bus"
  event_source                       = "datasync.api"
  event_detail_types                 = ["UserCreated", "UserUpdated", "UserDeleted"]
  replayed_events                    = true
  event_target_max_retry_attempts    = 10
  event_target_max_event_age_seconds = 3600

  queue_name                = "datasync-crm-buffer"
  queue_label               = "buffer"
  dlq_name                  = "datasync-crm-dlq"
  max_receive_count         = 5
  message_retention_seconds = 345600
  queue_sender_arns         = ["arn:aws:iam::123456789012:role/datasync-intake"]
  dlq_sender_arns           = ["arn:aws:iam::123456789012:role/datasync-crm-transform"]

  function_name        = "datasync-crm-transform"
  function_description = "Transforms datasync.api events for the crm destination."
  handler              = "lambdas.handler.handle"
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
  environment = { DATASYNC_DESTINATION = "crm" }
  policy_statements = {
    SendToDestinationAndDeadLetterQueues = {
      actions   = ["sqs:SendMessage"]
      resources = ["arn:aws:sqs:us-east-1:123456789012:datasync-crm", "arn:aws:sqs:us-east-1:123456789012:datasync-crm-dlq"]
    }
  }
}

run "queues" {
  command = apply

  module {
    source = "./modules/queue-function"
  }

  assert {
    condition     = aws_sqs_queue.dlq.sqs_managed_sse_enabled && aws_sqs_queue.this.sqs_managed_sse_enabled
    error_message = "Every queue must use SSE-SQS."
  }

  assert {
    condition     = aws_sqs_queue.dlq.name == "datasync-crm-dlq" && aws_sqs_queue.this.name == "datasync-crm-buffer"
    error_message = "The queues must be named queue_name and dlq_name."
  }

  assert {
    condition     = aws_sqs_queue.dlq.message_retention_seconds == 1209600 && aws_sqs_queue.this.message_retention_seconds == 345600
    error_message = "The DLQ keeps messages 14 days, the queue message_retention_seconds."
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.this.redrive_policy) == { deadLetterTargetArn = aws_sqs_queue.dlq.arn, maxReceiveCount = 5 }
    error_message = "The queue must redrive to the DLQ after max_receive_count receives."
  }

  assert {
    condition     = aws_sqs_queue.this.visibility_timeout_seconds == 6 * 30
    error_message = "The queue's visibility timeout must be six times the function timeout."
  }

  # Who may send, by queue (modules/queue-policy builds the documents; tests/queue_policy.tftest.hcl
  # checks their exact form): the senders given, and the rule.
  assert {
    # jsonencode on both sides: an empty list from the policy and [] here differ in type only.
    condition = jsonencode({
      for name, q in { queue = aws_sqs_queue.this, dlq = aws_sqs_queue.dlq } : name => {
        resources            = distinct([for s in jsondecode(q.policy).Statement : s.Resource])
        senders              = sort(flatten([for s in jsondecode(q.policy).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) if s.Effect == "Deny"]))
        rules                = sort(flatten([for s in jsondecode(q.policy).Statement : try(s.Condition.ArnNotEquals["aws:SourceArn"], []) if s.Effect == "Deny"]))
        allowed              = [for s in jsondecode(q.policy).Statement : s.Condition.ArnEquals["aws:SourceArn"] if s.Effect == "Allow"]
      }
      }) == jsonencode({
      queue = {
        resources = [aws_sqs_queue.this.arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-intake"]
        rules     = [aws_cloudwatch_event_rule.this.arn]
        allowed   = [aws_cloudwatch_event_rule.this.arn]
      }
      dlq = {
        resources = [aws_sqs_queue.dlq.arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-crm-transform"]
        rules     = [aws_cloudwatch_event_rule.this.arn]
        allowed   = [aws_cloudwatch_event_rule.this.arn]
      }
    })
    error_message = "Queue: queue_sender_arns and the rule; DLQ: dlq_sender_arns and the rule. Nobody else."
  }

  assert {
    condition     = output.queue_policies == { (aws_sqs_queue.this.arn) = aws_sqs_queue.this.policy, (aws_sqs_queue.dlq.arn) = aws_sqs_queue.dlq.policy }
    error_message = "queue_policies must give both queues' policies by ARN."
  }
}

run "routing" {
  command = apply

  module {
    source = "./modules/queue-function"
  }

  assert {
    condition = aws_cloudwatch_event_rule.this.event_bus_name == "datasync-bus" && jsondecode(aws_cloudwatch_event_rule.this.event_pattern) == {
      source        = ["datasync.api"]
      "detail-type" = ["UserCreated", "UserUpdated", "UserDeleted"]
      "replay-name" = [{ exists = true }]
    }
    error_message = "With replayed_events the rule must match replayed datasync.api User* events only, on the bus given."
  }

  assert {
    condition     = output.rule_event_pattern == aws_cloudwatch_event_rule.this.event_pattern && output.rule_name == "datasync-crm"
    error_message = "rule_name and rule_event_pattern must be the rule's."
  }

  assert {
    condition = (
      aws_cloudwatch_event_target.this.arn == aws_sqs_queue.this.arn && aws_cloudwatch_event_target.this.event_bus_name == "datasync-bus" &&
      aws_cloudwatch_event_target.this.rule == aws_cloudwatch_event_rule.this.name && aws_cloudwatch_event_target.this.target_id == "buffer"
    )
    error_message = "The rule's target must be the queue (its id the queue_label)."
  }

  assert {
    condition     = aws_cloudwatch_event_target.this.dead_letter_config[0].arn == aws_sqs_queue.dlq.arn
    error_message = "The target must send undeliverable events to the DLQ."
  }

  assert {
    condition = (
      aws_cloudwatch_event_target.this.retry_policy[0].maximum_retry_attempts == 10 &&
      aws_cloudwatch_event_target.this.retry_policy[0].maximum_event_age_in_seconds == 3600
    )
    error_message = "The target must carry the configured retry policy."
  }
}

run "live_events_only" {
  command = plan

  module {
    source = "./modules/queue-function"
  }

  variables {
    replayed_events = false
  }

  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.this.event_pattern)["replay-name"] == [{ exists = false }]
    error_message = "Without replayed_events the rule must match live events only (no replay-name)."
  }
}

run "function" {
  command = apply

  module {
    source = "./modules/queue-function"
  }

  assert {
    condition = (
      aws_lambda_function.this.function_name == "datasync-crm-transform" &&
      aws_lambda_function.this.handler == "lambdas.handler.handle" &&
      aws_lambda_function.this.runtime == "python3.12" &&
      aws_lambda_function.this.architectures == tolist(["x86_64"]) &&
      aws_lambda_function.this.memory_size == 256 &&
      aws_lambda_function.this.timeout == 30 &&
      aws_lambda_function.this.filename == "tests/fixtures/lambda-stub.zip" &&
      aws_lambda_function.this.source_code_hash == filebase64sha256("tests/fixtures/lambda-stub.zip")
    )
    error_message = "The function's code and runtime settings are wrong."
  }

  assert {
    condition     = nonsensitive(aws_lambda_function.this.environment[0].variables) == tomap({ DATASYNC_DESTINATION = "crm", DATASYNC_LOG_LEVEL = "INFO" })
    error_message = "The function's environment must be the one given plus DATASYNC_LOG_LEVEL (and must not hold any secret unless given one)."
  }

  assert {
    condition     = aws_cloudwatch_log_group.this.name == "/aws/lambda/datasync-crm-transform" && aws_cloudwatch_log_group.this.retention_in_days == 14
    error_message = "The function's log group must be /aws/lambda/<function> with the configured retention."
  }

  assert {
    condition = (
      aws_lambda_function.this.logging_config[0].log_format == "JSON" &&
      aws_lambda_function.this.logging_config[0].log_group == "/aws/lambda/datasync-crm-transform" &&
      aws_lambda_function.this.logging_config[0].system_log_level == "WARN" &&
      aws_lambda_function.this.logging_config[0].application_log_level == "TRACE"
    )
    error_message = "By default the function must log JSON to its own group without Lambda's START/END/REPORT lines, and leave filtering its own lines to DATASYNC_LOG_LEVEL."
  }

  assert {
    condition     = aws_iam_role.this.name == "datasync-crm-transform" && jsondecode(aws_iam_role.this.assume_role_policy).Statement[0].Principal == { Service = "lambda.amazonaws.com" }
    error_message = "Only Lambda may assume the execution role (named after the function)."
  }

  # The exact document: its statements in order, by Sid, and actions and resources as written.
  assert {
    condition = jsondecode(aws_iam_role_policy.this.policy) == {
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "WriteOwnLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-crm-transform:*"
        },
        {
          Sid      = "ConsumeBufferQueue"
          Effect   = "Allow"
          Action   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
          Resource = "arn:aws:sqs:us-east-1:123456789012:datasync-crm-buffer"
        },
        {
          Sid      = "SendToDestinationAndDeadLetterQueues"
          Effect   = "Allow"
          Action   = ["sqs:SendMessage"]
          Resource = ["arn:aws:sqs:us-east-1:123456789012:datasync-crm", "arn:aws:sqs:us-east-1:123456789012:datasync-crm-dlq"]
        },
      ]
    }
    error_message = "The execution role must grant exactly: own logs, consume the queue (Sid Consume<Label>Queue), and the statements given."
  }

  assert {
    condition = (
      aws_lambda_event_source_mapping.this.event_source_arn == aws_sqs_queue.this.arn &&
      aws_lambda_event_source_mapping.this.function_name == aws_lambda_function.this.arn &&
      aws_lambda_event_source_mapping.this.batch_size == 100 &&
      aws_lambda_event_source_mapping.this.maximum_batching_window_in_seconds == 1 &&
      toset(aws_lambda_event_source_mapping.this.function_response_types) == toset(["ReportBatchItemFailures"]) &&
      length(aws_lambda_event_source_mapping.this.scaling_config) == 0
    )
    error_message = "The queue must feed the function in batches, reporting per-item failures."
  }
}

run "arm64_package_deploys_as_arm64" {
  command = apply

  module {
    source = "./modules/queue-function"
  }

  variables {
    function = merge(var.function, { architecture = "arm64", package_path = "tests/fixtures/lambda-aws-arm64-stub.zip" })
  }

  assert {
    condition     = aws_lambda_function.this.architectures == tolist(["arm64"]) && output.function_architecture == "arm64"
    error_message = "architecture = \"arm64\" must make the function run on arm64."
  }
}

run "x86_64_package_deploys_as_x86_64" {
  command = plan

  module {
    source = "./modules/queue-function"
  }

  variables {
    function = merge(var.function, { architecture = "x86_64", package_path = "tests/fixtures/lambda-aws-x86_64-stub.zip" })
  }

  assert {
    condition     = aws_lambda_function.this.architectures == tolist(["x86_64"])
    error_message = "An x86_64 package must deploy as x86_64."
  }
}

run "arm64_package_is_refused_on_x86_64" {
  command = plan

  module {
    source = "./modules/queue-function"
  }

  variables {
    function = merge(var.function, { architecture = "x86_64", package_path = "tests/fixtures/lambda-aws-arm64-stub.zip" })
  }

  expect_failures = [aws_lambda_function.this]
}

run "x86_64_package_is_refused_on_arm64" {
  command = plan

  module {
    source = "./modules/queue-function"
  }

  variables {
    function = merge(var.function, { architecture = "arm64", package_path = "tests/fixtures/lambda-aws-x86_64-stub.zip" })
  }

  expect_failures = [aws_lambda_function.this]
}

run "rejects_unknown_architecture" {
  command = plan

  module {
    source = "./modules/queue-function"
  }

  variables {
    function = merge(var.function, { architecture = "aarch64" })
  }

  expect_failures = [var.function]
}

run "secret_environment_is_added" {
  command = apply

  module {
    source = "./modules/queue-function"
  }

  variables {
    secret_environment = { DATASYNC_ANALYTICS_HASH_KEY = "0123456789abcdef-test-key" }
  }

  assert {
    condition     = nonsensitive(aws_lambda_function.this.environment[0].variables["DATASYNC_ANALYTICS_HASH_KEY"]) == "0123456789abcdef-test-key"
    error_message = "Secret environment variables must reach the function."
  }

  assert {
    condition     = output.function_environment_variable_names == tolist(["DATASYNC_ANALYTICS_HASH_KEY", "DATASYNC_DESTINATION", "DATASYNC_LOG_LEVEL"])
    error_message = "function_environment_variable_names must name every variable, the secret ones too."
  }
}

run "maximum_concurrency_is_optional" {
  command = apply

  module {
    source = "./modules/queue-function"
  }

  variables {
    maximum_concurrency = 5
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this.scaling_config[0].maximum_concurrency == 5
    error_message = "maximum_concurrency must set the mapping's scaling_config."
  }
}

run "large_batches_need_a_batching_window" {
  command = plan

  module {
    source = "./modules/queue-function"
  }

  variables {
    function = merge(var.function, { batch_size = 100, batching_window_seconds = 0 })
  }

  expect_failures = [aws_lambda_event_source_mapping.this]
}
