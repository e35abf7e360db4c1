# Tests of modules/destination on its own (every destination instance is built from it), run fully
# offline with a mocked AWS provider.

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
  target = aws_sqs_queue.buffer
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
  target = aws_cloudwatch_event_rule.this
  values = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm"
  }
}

override_resource {
  target = aws_cloudwatch_log_group.transform
  values = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-crm-transform"
  }
}

override_resource {
  target = aws_iam_role.transform
  values = {
    arn = "arn:aws:iam::123456789012:role/datasync-crm-transform"
  }
}

override_resource {
  target = aws_lambda_function.transform
  values = {
    arn = "arn:aws:lambda:us-east-1:123456789012:function:datasync-crm-transform"
  }
}

variables {
  name                = "datasync-crm"
  destination         = "crm"
  event_bus_name      = "datasync-bus"
  event_source        = "datasync.api"
  event_detail_types  = ["UserCreated", "UserUpdated", "UserDeleted"]
  lambda_package_path = "tests/fixtures/lambda-stub.zip"
  intake_role_arn     = "arn:aws:iam::123456789012:role/datasync-intake"
}

run "queues" {
  command = apply

  module {
    source = "./modules/destination"
  }

  assert {
    condition     = aws_sqs_queue.dlq.sqs_managed_sse_enabled && aws_sqs_queue.buffer.sqs_managed_sse_enabled && aws_sqs_queue.this.sqs_managed_sse_enabled
    error_message = "Every queue must use SSE-SQS."
  }

  assert {
    condition     = aws_sqs_queue.dlq.name == "datasync-crm-dlq" && aws_sqs_queue.buffer.name == "datasync-crm-buffer" && aws_sqs_queue.this.name == "datasync-crm"
    error_message = "Queue names must be <name>, <name>-buffer and <name>-dlq."
  }

  assert {
    condition     = aws_sqs_queue.dlq.message_retention_seconds == 1209600 && aws_sqs_queue.buffer.message_retention_seconds == 345600 && aws_sqs_queue.this.message_retention_seconds == 345600
    error_message = "The DLQ keeps messages 14 days, the other queues message_retention_seconds."
  }

  assert {
    condition = alltrue([
      for q in [aws_sqs_queue.buffer, aws_sqs_queue.this] :
      jsondecode(q.redrive_policy) == { deadLetterTargetArn = aws_sqs_queue.dlq.arn, maxReceiveCount = 5 }
    ])
    error_message = "The buffer and destination queues must redrive to the DLQ after max_receive_count receives."
  }

  assert {
    condition     = aws_sqs_queue.buffer.visibility_timeout_seconds == 6 * 30
    error_message = "The buffer queue's visibility timeout must be six times the function timeout."
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
      for name, q in { buffer = aws_sqs_queue.buffer, queue = aws_sqs_queue.this, dlq = aws_sqs_queue.dlq } : name => {
        resources             = distinct([for s in jsondecode(q.policy).Statement : s.Resource])
        senders               = sort(flatten([for s in jsondecode(q.policy).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) if s.Effect == "Deny"]))
        rules                 = sort(flatten([for s in jsondecode(q.policy).Statement : try(s.Condition.ArnNotEquals["aws:SourceArn"], []) if s.Effect == "Deny"]))
        allowed               = [for s in jsondecode(q.policy).Statement : s.Condition.ArnEquals["aws:SourceArn"] if s.Effect == "Allow"]
      }
      }) == jsonencode({
      buffer = {
        resources = [aws_sqs_queue.buffer.arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-intake"]
        rules     = [aws_cloudwatch_event_rule.this.arn]
        allowed   = [aws_cloudwatch_event_rule.this.arn]
      }
      queue = {
        resources = [aws_sqs_queue.this.arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-crm-transform", "arn:aws:iam::123456789012:role/datasync-intake"]
        rules     = []
        allowed   = []
      }
      dlq = {
        resources = [aws_sqs_queue.dlq.arn]
        senders   = ["arn:aws:iam::123456789012:role/datasync-crm-transform"]
        rules     = [aws_cloudwatch_event_rule.this.arn]
        allowed   = [aws_cloudwatch_event_rule.this.arn]
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
      for name, q in { buffer = aws_sqs_queue.buffer, queue = aws_sqs_queue.this, dlq = aws_sqs_queue.dlq } :
      name => sort(flatten([for s in jsondecode(q.policy).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) if s.Effect == "Deny"]))
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
        resources = toset([aws_sqs_queue.dlq.arn])
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
    condition = aws_cloudwatch_event_rule.this.event_bus_name == "datasync-bus" && jsondecode(aws_cloudwatch_event_rule.this.event_pattern) == {
      source        = ["datasync.api"]
      "detail-type" = ["UserCreated", "UserUpdated", "UserDeleted"]
      "replay-name" = [{ exists = true }]
    }
    error_message = "The rule must match replayed datasync.api User* events on the datasync bus (live ones go through the intake)."
  }

  assert {
    condition     = aws_cloudwatch_event_target.buffer.arn == aws_sqs_queue.buffer.arn && aws_cloudwatch_event_target.buffer.event_bus_name == "datasync-bus"
    error_message = "The rule's target must be the buffer queue."
  }

  assert {
    condition     = aws_cloudwatch_event_target.buffer.dead_letter_config[0].arn == aws_sqs_queue.dlq.arn
    error_message = "The target must send undeliverable events to the DLQ."
  }

  assert {
    condition = (
      aws_cloudwatch_event_target.buffer.retry_policy[0].maximum_retry_attempts == 10 &&
      aws_cloudwatch_event_target.buffer.retry_policy[0].maximum_event_age_in_seconds == 3600
    )
    error_message = "The target must carry the configured retry policy."
  }
}

run "transform_function" {
  command = apply

  module {
    source = "./modules/destination"
  }

  assert {
    condition = (
      aws_lambda_function.transform.function_name == "datasync-crm-transform" &&
      aws_lambda_function.transform.handler == "lambdas.handler.handle" &&
      aws_lambda_function.transform.runtime == "python3.12" &&
      aws_lambda_function.transform.architectures == tolist(["x86_64"]) &&
      aws_lambda_function.transform.memory_size == 256 &&
      aws_lambda_function.transform.timeout == 30 &&
      aws_lambda_function.transform.filename == "tests/fixtures/lambda-stub.zip" &&
      aws_lambda_function.transform.source_code_hash == filebase64sha256("tests/fixtures/lambda-stub.zip")
    )
    error_message = "The function's code and runtime settings are wrong."
  }

  assert {
    condition = nonsensitive(aws_lambda_function.transform.environment[0].variables) == tomap({
      DATASYNC_DESTINATION           = "crm"
      DATASYNC_DESTINATION_QUEUE_URL = aws_sqs_queue.this.url
      DATASYNC_DEAD_LETTER_QUEUE_URL = aws_sqs_queue.dlq.url
      DATASYNC_MAX_RECEIVE_COUNT     = "5"
      DATASYNC_LOG_LEVEL             = "INFO"
    })
    error_message = "The function's environment is wrong (and must not hold any secret unless given one)."
  }

  assert {
    condition     = aws_cloudwatch_log_group.transform.name == "/aws/lambda/datasync-crm-transform" && aws_cloudwatch_log_group.transform.retention_in_days == 14
    error_message = "The function's log group must be /aws/lambda/<function> with the configured retention."
  }

  assert {
    condition = (
      aws_lambda_function.transform.logging_config[0].log_format == "JSON" &&
      aws_lambda_function.transform.logging_config[0].log_group == "/aws/lambda/datasync-crm-transform" &&
      aws_lambda_function.transform.logging_config[0].system_log_level == "WARN" &&
      aws_lambda_function.transform.logging_config[0].application_log_level == "TRACE"
    )
    error_message = "By default the function must log JSON to its own group without Lambda's START/END/REPORT lines, and leave filtering its own lines to DATASYNC_LOG_LEVEL."
  }

  assert {
    condition     = jsondecode(aws_iam_role.transform.assume_role_policy).Statement[0].Principal == { Service = "lambda.amazonaws.com" }
    error_message = "Only Lambda may assume the execution role."
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.transform.policy).Statement : {
        actions   = toset(flatten([s.Action]))
        resources = toset(flatten([s.Resource]))
      }
      ] == [
      {
        actions   = toset(["logs:CreateLogStream", "logs:PutLogEvents"])
        resources = toset(["${aws_cloudwatch_log_group.transform.arn}:*"])
      },
      {
        actions   = toset(["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"])
        resources = toset([aws_sqs_queue.buffer.arn])
      },
      {
        actions   = toset(["sqs:SendMessage"])
        resources = toset([aws_sqs_queue.this.arn, aws_sqs_queue.dlq.arn])
      },
    ]
    error_message = "The execution role must grant exactly: own logs, consume the buffer queue, send to the destination queue and DLQ."
  }

  assert {
    condition = (
      aws_lambda_event_source_mapping.buffer.event_source_arn == aws_sqs_queue.buffer.arn &&
      aws_lambda_event_source_mapping.buffer.function_name == aws_lambda_function.transform.arn &&
      aws_lambda_event_source_mapping.buffer.batch_size == 100 &&
      aws_lambda_event_source_mapping.buffer.maximum_batching_window_in_seconds == 1 &&
      toset(aws_lambda_event_source_mapping.buffer.function_response_types) == toset(["ReportBatchItemFailures"]) &&
      length(aws_lambda_event_source_mapping.buffer.scaling_config) == 0
    )
    error_message = "The buffer queue must feed the function in batches, reporting per-item failures."
  }

  assert {
    condition = (
      aws_lambda_function_event_invoke_config.transform.function_name == aws_lambda_function.transform.function_name &&
      aws_lambda_function_event_invoke_config.transform.maximum_retry_attempts == 2 &&
      aws_lambda_function_event_invoke_config.transform.maximum_event_age_in_seconds == 3600 &&
      aws_lambda_function_event_invoke_config.transform.destination_config[0].on_failure[0].destination == aws_sqs_queue.dlq.arn
    )
    error_message = "Failed asynchronous invocations must end in the DLQ."
  }
}

run "arm64_package_deploys_as_arm64" {
  command = apply

  module {
    source = "./modules/destination"
  }

  variables {
    lambda_architecture = "arm64"
    lambda_package_path = "tests/fixtures/lambda-aws-arm64-stub.zip"
  }

  assert {
    condition     = aws_lambda_function.transform.architectures == tolist(["arm64"]) && output.function_architecture == "arm64"
    error_message = "lambda_architecture = \"arm64\" must make the function run on arm64."
  }
}

run "x86_64_package_deploys_as_x86_64" {
  command = plan

  module {
    source = "./modules/destination"
  }

  variables {
    lambda_architecture = "x86_64"
    lambda_package_path = "tests/fixtures/lambda-aws-x86_64-stub.zip"
  }

  assert {
    condition     = aws_lambda_function.transform.architectures == tolist(["x86_64"])
    error_message = "An x86_64 package must deploy as x86_64."
  }
}

run "arm64_package_is_refused_on_x86_64" {
  command = plan

  module {
    source = "./modules/destination"
  }

  variables {
    lambda_architecture = "x86_64"
    lambda_package_path = "tests/fixtures/lambda-aws-arm64-stub.zip"
  }

  expect_failures = [aws_lambda_function.transform]
}

run "x86_64_package_is_refused_on_arm64" {
  command = plan

  module {
    source = "./modules/destination"
  }

  variables {
    lambda_architecture = "arm64"
    lambda_package_path = "tests/fixtures/lambda-aws-x86_64-stub.zip"
  }

  expect_failures = [aws_lambda_function.transform]
}

run "rejects_unknown_architecture" {
  command = plan

  module {
    source = "./modules/destination"
  }

  variables {
    lambda_architecture = "aarch64"
  }

  expect_failures = [var.lambda_architecture]
}

run "secret_environment_is_added" {
  command = apply

  module {
    source = "./modules/destination"
  }

  variables {
    name                      = "datasync-analytics"
    destination               = "analytics"
    lambda_secret_environment = { DATASYNC_ANALYTICS_HASH_KEY = "0123456789abcdef-test-key" }
  }

  assert {
    condition     = nonsensitive(aws_lambda_function.transform.environment[0].variables["DATASYNC_ANALYTICS_HASH_KEY"]) == "0123456789abcdef-test-key"
    error_message = "Secret environment variables must reach the function."
  }

  assert {
    condition     = nonsensitive(aws_lambda_function.transform.environment[0].variables["DATASYNC_DESTINATION"]) == "analytics"
    error_message = "DATASYNC_DESTINATION must be the destination key."
  }
}

run "maximum_concurrency_is_optional" {
  command = apply

  module {
    source = "./modules/destination"
  }

  variables {
    lambda_maximum_concurrency = 5
  }

  assert {
    condition     = aws_lambda_event_source_mapping.buffer.scaling_config[0].maximum_concurrency == 5
    error_message = "lambda_maximum_concurrency must set the mapping's scaling_config."
  }
}

run "large_batches_need_a_batching_window" {
  command = plan

  module {
    source = "./modules/destination"
  }

  variables {
    buffer_batch_size              = 100
    buffer_batching_window_seconds = 0
  }

  expect_failures = [aws_lambda_event_source_mapping.buffer]
}
