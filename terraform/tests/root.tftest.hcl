# Root module tests: run fully offline with a mocked AWS provider.
#
#   cd terraform && terraform init -backend=false && terraform test
#
# Every destination gets its own ARNs and URLs (override_resource below), so a queue wired to the
# wrong destination's function, policy or output shows up as a failed assertion.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  lambda_package_path = "tests/fixtures/lambda-stub.zip"
  analytics_hash_key  = "0123456789abcdef-test-key"
  # Explicit, so the tests also pass with local/endpoint_override.tf copied in (it turns alarms and
  # the bus policy off).
  create_alarms           = true
  create_event_bus_policy = true
}

override_resource {
  target = module.intake.aws_sqs_queue.dlq
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-intake-dlq"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-intake-dlq"
  }
}

override_resource {
  target = module.intake.aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-intake"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-intake"
  }
}

override_resource {
  target = module.intake.aws_cloudwatch_event_rule.this
  values = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-intake"
  }
}

override_resource {
  target = module.intake.aws_cloudwatch_log_group.this
  values = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-intake"
  }
}

override_resource {
  target = module.destination["analytics"].module.transform.aws_sqs_queue.dlq
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-analytics-dlq"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-analytics-dlq"
  }
}

override_resource {
  target = module.destination["analytics"].module.transform.aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-analytics-buffer"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-analytics-buffer"
  }
}

override_resource {
  target = module.destination["analytics"].aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-analytics"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-analytics"
  }
}

override_resource {
  target = module.destination["analytics"].module.transform.aws_cloudwatch_event_rule.this
  values = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-analytics"
  }
}

override_resource {
  target = module.destination["analytics"].module.transform.aws_cloudwatch_log_group.this
  values = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-analytics-transform"
  }
}

override_resource {
  target = module.destination["crm"].module.transform.aws_sqs_queue.dlq
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm-dlq"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm-dlq"
  }
}

override_resource {
  target = module.destination["crm"].module.transform.aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm-buffer"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm-buffer"
  }
}

override_resource {
  target = module.destination["crm"].aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-crm"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-crm"
  }
}

override_resource {
  target = module.destination["crm"].module.transform.aws_cloudwatch_event_rule.this
  values = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm"
  }
}

override_resource {
  target = module.destination["crm"].module.transform.aws_cloudwatch_log_group.this
  values = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-crm-transform"
  }
}

override_resource {
  target = module.destination["marketing"].module.transform.aws_sqs_queue.dlq
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-marketing-dlq"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-marketing-dlq"
  }
}

override_resource {
  target = module.destination["marketing"].module.transform.aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-marketing-buffer"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-marketing-buffer"
  }
}

override_resource {
  target = module.destination["marketing"].aws_sqs_queue.this
  values = {
    arn = "arn:aws:sqs:us-east-1:123456789012:datasync-marketing"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-marketing"
  }
}

override_resource {
  target = module.destination["marketing"].module.transform.aws_cloudwatch_event_rule.this
  values = {
    arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-marketing"
  }
}

override_resource {
  target = module.destination["marketing"].module.transform.aws_cloudwatch_log_group.this
  values = {
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-marketing-transform"
  }
}

override_resource {
  target = module.intake.aws_iam_role.this
  values = {
    arn = "arn:aws:iam::123456789012:role/datasync-intake"
  }
}

override_resource {
  target = module.destination["analytics"].module.transform.aws_iam_role.this
  values = {
    arn = "arn:aws:iam::123456789012:role/datasync-analytics-transform"
  }
}

override_resource {
  target = module.destination["crm"].module.transform.aws_iam_role.this
  values = {
    arn = "arn:aws:iam::123456789012:role/datasync-crm-transform"
  }
}

override_resource {
  target = module.destination["marketing"].module.transform.aws_iam_role.this
  values = {
    arn = "arn:aws:iam::123456789012:role/datasync-marketing-transform"
  }
}

################################################################################
# Shape: one pipeline per destination
################################################################################

run "one_pipeline_per_destination" {
  command = apply

  assert {
    condition = alltrue([
      for m in [output.queue_urls, output.dlq_urls, output.buffer_queue_urls, output.lambda_function_names, output.rule_arns, output.consumer_policy_arns] :
      toset(keys(m)) == toset(["crm", "marketing", "analytics"])
    ])
    error_message = "Every per-destination output must have exactly one entry per destination."
  }

  assert {
    condition = alltrue([
      for m in [output.queue_urls, output.dlq_urls, output.buffer_queue_urls, output.lambda_function_names, output.rule_arns, output.queue_arns, output.dlq_arns, output.buffer_queue_arns] :
      length(distinct(values(m))) == 3
    ])
    error_message = "Each destination must have its own queue, DLQ, buffer queue, function and rule."
  }

  assert {
    condition = output.lambda_function_names == {
      crm       = "datasync-crm-transform"
      marketing = "datasync-marketing-transform"
      analytics = "datasync-analytics-transform"
    }
    error_message = "Function names must be <prefix>-<destination>-transform."
  }

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] :
      output.queue_urls[d] == "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-${d}" &&
      output.dlq_urls[d] == "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-${d}-dlq" &&
      output.buffer_queue_urls[d] == "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-${d}-buffer"
    ])
    error_message = "The queue URL outputs must map each destination to its own queues."
  }

  assert {
    condition     = output.region == "us-east-1" && output.event_bus_name == "datasync-bus" && output.archive_name == "datasync-archive" && output.max_receive_count == 5
    error_message = "Scalar outputs do not match the defaults."
  }

  assert {
    condition     = aws_cloudwatch_event_archive.this.event_source_arn == aws_cloudwatch_event_bus.this.arn && jsondecode(aws_cloudwatch_event_archive.this.event_pattern) == { source = ["datasync.api"] } && aws_cloudwatch_event_archive.this.retention_days == 30
    error_message = "The archive must keep every datasync.api event on the bus for 30 days."
  }

  assert {
    condition     = keys(output.alarm_names) == ["analytics", "crm", "intake", "marketing"] && alltrue([for d, names in output.alarm_names : length(names) == (d == "intake" ? 6 : 8)])
    error_message = "Every destination must have its eight alarms by default, and the intake its six."
  }

  assert {
    condition = (
      output.intake_queue_url == "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-intake" &&
      output.intake_dlq_url == "https://sqs.us-east-1.amazonaws.com/123456789012/datasync-intake-dlq" &&
      output.intake_function_name == "datasync-intake"
    )
    error_message = "The intake's queue, DLQ and function must be <prefix>-intake, <prefix>-intake-dlq and <prefix>-intake."
  }

  assert {
    condition = (
      output.alarm_topic_arn == "arn:aws:sns:us-east-1:123456789012:datasync-alarms" &&
      output.alarm_topic_kms_key_arn == "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000" &&
      output.dashboard_name == "datasync" &&
      output.dashboard_url == "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards/dashboard/datasync"
    )
    error_message = "The monitoring outputs (topic, its key, dashboard name and URL) must be set by default."
  }
}

run "only_the_selected_destinations" {
  command = apply

  variables {
    destinations = ["crm"]
  }

  assert {
    condition     = keys(output.queue_urls) == ["crm"] && keys(output.lambda_function_names) == ["crm"] && keys(output.consumer_policy_arns) == ["crm"]
    error_message = "Only the crm pipeline may exist when destinations = [\"crm\"]."
  }
}

################################################################################
# Least privilege and secrets
################################################################################

run "each_function_policy_references_only_its_own_resources" {
  command = apply

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] :
      toset(flatten([for s in jsondecode(module.destination[d].function_policy_json).Statement : s.Resource])) == toset([
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-${d}-transform:*",
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-buffer",
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}",
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-dlq",
      ])
    ])
    error_message = "A transform function's role may only reference its own log group, buffer queue, destination queue and DLQ."
  }

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] :
      toset(flatten([for s in jsondecode(module.destination[d].function_policy_json).Statement : s.Action])) == toset([
        "logs:CreateLogStream", "logs:PutLogEvents",
        "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage",
        "sqs:SendMessage",
      ])
    ])
    error_message = "A transform function's role grants more (or other) actions than it needs."
  }

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] :
      alltrue([for s in jsondecode(module.destination[d].function_policy_json).Statement : s.Effect == "Allow" && !can(s.NotResource) && !can(s.NotAction)])
    ])
    error_message = "Function policies must be plain Allow statements."
  }

  assert {
    condition = {
      for s in jsondecode(module.intake.function_policy_json).Statement : s.Sid => {
        actions   = toset(flatten([s.Action]))
        resources = toset(flatten([s.Resource]))
        plain     = s.Effect == "Allow" && !can(s.NotResource) && !can(s.NotAction)
      }
      } == {
      WriteOwnLogs = {
        actions   = toset(["logs:CreateLogStream", "logs:PutLogEvents"])
        resources = toset(["arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/datasync-intake:*"])
        plain     = true
      }
      ConsumeIntakeQueue = {
        actions   = toset(["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"])
        resources = toset(["arn:aws:sqs:us-east-1:123456789012:datasync-intake"])
        plain     = true
      }
      SendToDestinationAndBufferQueues = {
        actions = toset(["sqs:SendMessage"])
        resources = toset(flatten([for d in ["crm", "marketing", "analytics"] : [
          "arn:aws:sqs:us-east-1:123456789012:datasync-${d}",
          "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-buffer",
        ]]))
        plain = true
      }
    }
    error_message = "The intake's role may only write its own logs, consume the intake queue and send to the destination and buffer queues (not to a DLQ, not receive from them)."
  }

  assert {
    condition     = toset(module.intake.function_environment_variable_names) == toset(["DATASYNC_ANALYTICS_HASH_KEY", "DATASYNC_INTAKE_ROUTES", "DATASYNC_LOG_LEVEL"])
    error_message = "The intake shapes analytics records, so it holds the hash key, beside its routes and log level."
  }
}

run "every_queue_denies_senders_it_does_not_name" {
  command = apply

  variables {
    consumer_principal_arns = {
      crm       = ["arn:aws:iam::123456789012:role/datasync-consumer-crm"]
      marketing = ["arn:aws:iam::123456789012:role/datasync-consumer-marketing"]
      analytics = ["arn:aws:iam::123456789012:role/eks/datasync-consumer-analytics"]
    }
    operator_principal_arns = ["arn:aws:iam::123456789012:role/datasync-operator"]
  }

  assert {
    condition = toset(keys(merge(module.intake.queue_policies, [for d in module.destination : d.queue_policies]...))) == toset(concat(
      [output.intake_queue_arn, output.intake_dlq_arn], values(output.buffer_queue_arns), values(output.queue_arns), values(output.dlq_arns),
    ))
    error_message = "Every queue (the intake queue and DLQ, each buffer queue, destination queue and DLQ) must have a policy."
  }

  # Each policy: a Deny of sqs:SendMessage to Principal "*" on the queue itself, then at most the
  # EventBridge Allow for the rule the Deny excepts. (Exact documents: tests/queue_policy.tftest.hcl.)
  assert {
    condition = alltrue([
      for arn, policy in merge(module.intake.queue_policies, [for d in module.destination : d.queue_policies]...) :
      jsondecode(policy).Statement[0].Effect == "Deny" && jsondecode(policy).Statement[0].Principal == "*" &&
      jsondecode(policy).Statement[0].Action == "sqs:SendMessage" &&
      alltrue([for s in jsondecode(policy).Statement : s.Resource == arn]) &&
      alltrue([for s in slice(jsondecode(policy).Statement, 1, length(jsondecode(policy).Statement)) :
        s.Effect == "Allow" && s.Principal == { Service = "events.amazonaws.com" } && s.Action == "sqs:SendMessage" &&
      s.Condition == { ArnEquals = { "aws:SourceArn" = jsondecode(policy).Statement[0].Condition.ArnNotEquals["aws:SourceArn"] } }])
    ])
    error_message = "Every queue policy must deny SendMessage to everyone on that queue, and allow EventBridge only for the rule its Deny excepts."
  }

  assert {
    condition = alltrue([
      for arn, policy in merge(module.intake.queue_policies, [for d in module.destination : d.queue_policies]...) :
      !strcontains(jsonencode([for s in jsondecode(policy).Statement : [s.Action, s.Resource, try(s.Condition, {}), s.Effect == "Allow" ? jsonencode(s.Principal) : ""]]), "*")
    ])
    error_message = "No queue policy may use a wildcard in an action, resource, condition or Allow principal."
  }

  # Who may send where: what each queue legitimately receives, from whom.
  assert {
    condition = jsonencode({
      for arn, policy in merge(module.intake.queue_policies, [for d in module.destination : d.queue_policies]...) : arn => {
        senders = sort(flatten([for s in jsondecode(policy).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], []) if s.Effect == "Deny"]))
        rule    = one(flatten([for s in jsondecode(policy).Statement : try(s.Condition.ArnNotEquals["aws:SourceArn"], []) if s.Effect == "Deny"]))
      }
      }) == jsonencode(merge(
      {
        # The live-events rule; operators moving the intake DLQ's messages back.
        "arn:aws:sqs:us-east-1:123456789012:datasync-intake" = {
          senders = ["arn:aws:iam::123456789012:role/datasync-operator"]
          rule    = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-intake"
        }
        # The live-events rule's dead letters only (SQS's redrive needs no SendMessage).
        "arn:aws:sqs:us-east-1:123456789012:datasync-intake-dlq" = {
          senders = []
          rule    = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-intake"
        }
      },
      [for d, consumer in {
        crm       = "arn:aws:iam::123456789012:role/datasync-consumer-crm"
        marketing = "arn:aws:iam::123456789012:role/datasync-consumer-marketing"
        analytics = "arn:aws:iam::123456789012:role/eks/datasync-consumer-analytics"
        } : {
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-buffer" = {
          senders = sort(["arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/datasync-operator"])
          rule    = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-${d}"
        }
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}" = {
          senders = sort(["arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/datasync-${d}-transform", consumer, "arn:aws:iam::123456789012:role/datasync-operator"])
          rule    = null
        }
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-dlq" = {
          senders = sort(["arn:aws:iam::123456789012:role/datasync-${d}-transform", consumer])
          rule    = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-${d}"
        }
      }]...
    ))
    error_message = "Each queue may receive only from its legitimate senders: intake queue (its rule, operators), intake DLQ (its rule), buffer (its rule, the intake, operators), destination queue (the intake, its transform, its consumers, operators), DLQ (its rule, its transform, its consumers)."
  }
}

run "without_consumer_or_operator_roles_only_the_functions_and_rules_may_send" {
  command = apply

  assert {
    condition = alltrue(flatten([
      [for policy in values(module.intake.queue_policies) : length(flatten([for s in jsondecode(policy).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], [])])) == 0],
      [for d in ["crm", "marketing", "analytics"] : [
        for policy in values(module.destination[d].queue_policies) : alltrue([
          for arn in flatten([for s in jsondecode(policy).Statement : try(s.Condition.ArnNotEquals["aws:PrincipalArn"], [])]) :
          contains(["arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/datasync-${d}-transform"], arn)
        ])
      ]],
    ]))
    error_message = "With consumer_principal_arns and operator_principal_arns empty, only the intake and transform roles (and the rules) may send: the queues fail closed."
  }
}

run "only_the_api_may_publish_to_the_bus" {
  command = apply

  variables {
    api_principal_arns = ["arn:aws:iam::123456789012:role/datasync-api", "arn:aws:iam::123456789012:role/eks/datasync-api-blue"]
  }

  assert {
    condition = jsondecode(aws_cloudwatch_event_bus_policy.this[0].policy) == {
      Version = "2012-10-17"
      Statement = [{
        Sid       = "OnlyTheApiPublishes"
        Effect    = "Deny"
        Principal = "*"
        Action    = "events:PutEvents"
        Resource  = "arn:aws:events:us-east-1:123456789012:event-bus/datasync-bus"
        Condition = {
          BoolIfExists = { "aws:PrincipalIsAWSService" = "false" }
          ArnNotEquals = { "aws:PrincipalArn" = ["arn:aws:iam::123456789012:role/datasync-api", "arn:aws:iam::123456789012:role/eks/datasync-api-blue"] }
        }
      }]
    }
    error_message = "The bus policy must deny PutEvents to every IAM principal except the API roles (and grant nothing)."
  }

  assert {
    condition     = aws_cloudwatch_event_bus_policy.this[0].event_bus_name == aws_cloudwatch_event_bus.this.name
    error_message = "The policy must be attached to the datasync bus."
  }
}

run "without_api_roles_nobody_may_publish" {
  command = apply

  assert {
    condition = jsondecode(aws_cloudwatch_event_bus_policy.this[0].policy).Statement == [{
      Sid       = "OnlyTheApiPublishes"
      Effect    = "Deny"
      Principal = "*"
      Action    = "events:PutEvents"
      Resource  = "arn:aws:events:us-east-1:123456789012:event-bus/datasync-bus"
      Condition = { BoolIfExists = { "aws:PrincipalIsAWSService" = "false" } }
    }]
    error_message = "With api_principal_arns empty the bus must deny PutEvents to every IAM principal (fail closed)."
  }
}

run "bus_policy_can_be_left_to_an_emulator" {
  command = apply

  variables {
    create_event_bus_policy = false
  }

  assert {
    condition     = length(aws_cloudwatch_event_bus_policy.this) == 0
    error_message = "create_event_bus_policy = false must create no bus policy."
  }
}

run "bus_uses_an_aws_owned_key_by_default" {
  command = apply

  assert {
    condition     = aws_cloudwatch_event_bus.this.kms_key_identifier == null
    error_message = "Without event_bus_kms_key_arn the bus must use EventBridge's AWS-owned key."
  }
}

run "bus_can_use_a_customer_managed_key" {
  command = apply

  variables {
    event_bus_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition     = aws_cloudwatch_event_bus.this.kms_key_identifier == "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    error_message = "event_bus_kms_key_arn must become the bus's kms_key_identifier."
  }
}

run "architecture_reaches_every_function" {
  command = apply

  variables {
    lambda_architecture = "arm64"
    lambda_package_path = "tests/fixtures/lambda-aws-arm64-stub.zip"
  }

  assert {
    condition     = alltrue([for d in ["crm", "marketing", "analytics"] : module.destination[d].function_architecture == "arm64"])
    error_message = "lambda_architecture must reach every transform function."
  }
}

run "functions_default_to_x86_64" {
  command = apply

  assert {
    condition     = alltrue([for d in ["crm", "marketing", "analytics"] : module.destination[d].function_architecture == "x86_64"])
    error_message = "The transform functions must default to x86_64 (the default package architecture)."
  }
}

run "only_the_analytics_function_sees_the_hash_key" {
  command = apply

  assert {
    condition     = contains(module.destination["analytics"].function_environment_variable_names, "DATASYNC_ANALYTICS_HASH_KEY")
    error_message = "The analytics function must receive DATASYNC_ANALYTICS_HASH_KEY."
  }

  assert {
    condition = alltrue([
      for d in ["crm", "marketing"] : !contains(module.destination[d].function_environment_variable_names, "DATASYNC_ANALYTICS_HASH_KEY")
    ])
    error_message = "Only the analytics function may receive DATASYNC_ANALYTICS_HASH_KEY."
  }

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] : length(setsubtract([
        "DATASYNC_DESTINATION", "DATASYNC_DESTINATION_QUEUE_URL", "DATASYNC_DEAD_LETTER_QUEUE_URL", "DATASYNC_MAX_RECEIVE_COUNT", "DATASYNC_LOG_LEVEL",
      ], module.destination[d].function_environment_variable_names)) == 0
    ])
    error_message = "Every function needs the common DATASYNC_* environment variables."
  }
}

run "consumer_and_api_policies" {
  command = apply

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] :
      toset(flatten([for s in jsondecode(aws_iam_policy.consumer[d].policy).Statement : s.Resource])) == toset([
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}",
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-dlq",
      ])
    ])
    error_message = "A consumer policy may only reference its own destination queue and DLQ."
  }

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] : {
        for s in jsondecode(aws_iam_policy.consumer[d].policy).Statement : s.Sid => {
          actions   = toset(flatten([s.Action]))
          resources = toset(flatten([s.Resource]))
        }
        } == {
        ConsumeDestinationQueue = {
          actions   = toset(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"])
          resources = toset(["arn:aws:sqs:us-east-1:123456789012:datasync-${d}"])
        }
        ResendFailedRecords = {
          actions   = toset(["sqs:SendMessage"])
          resources = toset(["arn:aws:sqs:us-east-1:123456789012:datasync-${d}"])
        }
        DeadLetterAndStatus = {
          actions   = toset(["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"])
          resources = toset(["arn:aws:sqs:us-east-1:123456789012:datasync-${d}-dlq"])
        }
      }
    ])
    error_message = "Consumers need exactly receive, delete, change visibility and get attributes on their queue, SendMessage to it (re-sending failed records), and dead-letter to and read their DLQ."
  }

  assert {
    condition = (
      toset(flatten([for s in jsondecode(aws_iam_policy.api.policy).Statement : s.Resource])) == toset([aws_cloudwatch_event_bus.this.arn]) &&
      toset(flatten([for s in jsondecode(aws_iam_policy.api.policy).Statement : s.Action])) == toset(["events:PutEvents", "events:DescribeEventBus"])
    )
    error_message = "The API policy may only put events to and describe the datasync bus."
  }
}

run "dashboard_policy_only_reads_the_pipelines_queues" {
  command = apply

  assert {
    condition     = toset(flatten([for s in jsondecode(aws_iam_policy.dashboard.policy).Statement : s.Action])) == toset(["sqs:GetQueueAttributes", "sqs:ReceiveMessage", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"])
    error_message = "The dashboard policy may only read queue attributes, receive (peek) messages and keep its sessions."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_policy.dashboard.policy).Statement :
      s.Resource == aws_dynamodb_table.dashboard_sessions.arn if can(regex("^dynamodb:", s.Action[0]))
    ]) && output.dashboard_sessions_table == aws_dynamodb_table.dashboard_sessions.name
    error_message = "The dashboard may use its sessions table only (the table the API is told about), and no other."
  }

  assert {
    condition     = aws_dynamodb_table.dashboard_sessions.ttl[0].attribute_name == "expires_at" && aws_dynamodb_table.dashboard_sessions.ttl[0].enabled && aws_dynamodb_table.dashboard_sessions.server_side_encryption[0].enabled
    error_message = "Sessions expire by TTL on expires_at (apps/api/sessions.py writes it), and the table is encrypted."
  }

  assert {
    condition = toset([for s in jsondecode(aws_iam_policy.dashboard.policy).Statement : s.Resource if s.Action == "sqs:GetQueueAttributes"][0]) == toset(flatten([
      "arn:aws:sqs:us-east-1:123456789012:datasync-intake",
      "arn:aws:sqs:us-east-1:123456789012:datasync-intake-dlq",
      [for d in ["crm", "marketing", "analytics"] : [
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-buffer",
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}",
        "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-dlq",
      ]]
    ]))
    error_message = "The dashboard reads the attributes of the intake queue and DLQ and every buffer queue, destination queue and DLQ, and of no other queue."
  }

  assert {
    condition = toset([for s in jsondecode(aws_iam_policy.dashboard.policy).Statement : s.Resource if s.Action == "sqs:ReceiveMessage"][0]) == toset(concat(
      ["arn:aws:sqs:us-east-1:123456789012:datasync-intake-dlq"],
      [for d in ["crm", "marketing", "analytics"] : "arn:aws:sqs:us-east-1:123456789012:datasync-${d}-dlq"]
    ))
    error_message = "The dashboard may receive from the DLQs only, never from a queue a consumer or Lambda reads."
  }

  assert {
    condition     = output.dashboard_policy_arn == aws_iam_policy.dashboard.arn && aws_iam_policy.dashboard.name == "datasync-dashboard"
    error_message = "dashboard_policy_arn is a policy of its own (datasync-dashboard), separate from the API's."
  }
}

################################################################################
# Monitoring: wired to each destination's own resources
################################################################################

run "alarms_watch_each_destinations_own_resources" {
  command = apply

  variables {
    alarm_actions = ["arn:aws:sns:us-east-1:123456789012:pager"]
  }

  assert {
    condition = alltrue(flatten([
      for d in ["crm", "marketing", "analytics"] : [
        module.monitoring.alarms["${d}/dlq-not-empty"].dimensions == tomap({ QueueName = "datasync-${d}-dlq" }),
        module.monitoring.alarms["${d}/oldest-message"].dimensions == tomap({ QueueName = "datasync-${d}" }),
        module.monitoring.alarms["${d}/buffer-oldest-message"].dimensions == tomap({ QueueName = "datasync-${d}-buffer" }),
        module.monitoring.alarms["${d}/transform-errors"].dimensions == tomap({ FunctionName = output.lambda_function_names[d] }),
        module.monitoring.alarms["${d}/transform-throttles"].dimensions == tomap({ FunctionName = output.lambda_function_names[d] }),
        [for kind in ["rule-delivery-failed", "rule-dead-lettered", "rule-events-lost"] :
        module.monitoring.alarms["${d}/${kind}"].dimensions == tomap({ EventBusName = output.event_bus_name, RuleName = "datasync-${d}" })],
      ]
    ]))
    error_message = "Each destination's alarms must watch its own DLQ, queues, function and rule on the datasync bus."
  }

  assert {
    condition = (
      module.monitoring.alarms["intake/dlq-not-empty"].dimensions == tomap({ QueueName = "datasync-intake-dlq" }) &&
      module.monitoring.alarms["intake/oldest-message"].dimensions == tomap({ QueueName = "datasync-intake" }) &&
      module.monitoring.alarms["intake/function-errors"].dimensions == tomap({ FunctionName = output.intake_function_name }) &&
      module.monitoring.alarms["intake/function-throttles"].dimensions == tomap({ FunctionName = output.intake_function_name }) &&
      module.monitoring.alarms["intake/rule-delivery-failed"].dimensions == tomap({ EventBusName = output.event_bus_name, RuleName = "datasync-intake" }) &&
      module.monitoring.alarms["intake/rule-events-lost"].dimensions == tomap({ EventBusName = output.event_bus_name, RuleName = "datasync-intake" })
    )
    error_message = "The intake's alarms must watch its own DLQ, queue, function and live-events rule."
  }

  assert {
    condition = length(module.monitoring.alarms) == 30 && alltrue([
      for alarm in module.monitoring.alarms :
      alarm.actions == toset([output.alarm_topic_arn, "arn:aws:sns:us-east-1:123456789012:pager"])
    ])
    error_message = "Every alarm must notify the alarm topic and the topics in alarm_actions."
  }
}

run "dashboard_names_every_destinations_queues_and_function" {
  command = apply

  assert {
    condition = alltrue([
      for d in ["crm", "marketing", "analytics"] : length(setsubtract(
        ["datasync-${d}", "datasync-${d}-buffer", "datasync-${d}-dlq", output.lambda_function_names[d], output.event_bus_name],
        flatten([
          for w in jsondecode(module.monitoring.dashboard_body).widgets :
          [for m in w.properties.metrics : [for part in m : part if can(tostring(part))]]
          if startswith(try(w.properties.title, ""), "${d}: ")
        ])
      )) == 0
    ])
    error_message = "The dashboard must have a row for every destination graphing its rule (on the bus), queues, DLQ and function."
  }
}

run "alarms_can_be_switched_off" {
  command = apply

  variables {
    create_alarms = false
  }

  assert {
    condition     = output.alarm_names == {} && length(module.monitoring.alarms) == 0 && output.alarm_topic_arn == null
    error_message = "create_alarms = false must create no alarms and no topic."
  }
}

################################################################################
# Variable validation
################################################################################

run "rejects_bad_name_prefix" {
  command = plan
  variables {
    name_prefix = "Data_Sync"
  }
  expect_failures = [var.name_prefix]
}

run "rejects_long_name_prefix" {
  command = plan
  variables {
    name_prefix = "a-very-long-prefix-that-breaks-limits"
  }
  expect_failures = [var.name_prefix]
}

run "rejects_unknown_destination" {
  command = plan
  variables {
    destinations = ["crm", "billing"]
  }
  expect_failures = [var.destinations]
}

run "rejects_empty_destinations" {
  command = plan
  variables {
    destinations = []
  }
  expect_failures = [var.destinations]
}

run "rejects_package_that_is_not_a_zip" {
  command = plan
  variables {
    lambda_package_path = "tests/fixtures/lambda-stub.tar.gz"
  }
  expect_failures = [var.lambda_package_path]
}

run "rejects_short_hash_key" {
  command = plan
  variables {
    analytics_hash_key = "too-short"
  }
  expect_failures = [var.analytics_hash_key]
}

run "rejects_max_receive_count_out_of_range" {
  command = plan
  variables {
    max_receive_count = 0
  }
  expect_failures = [var.max_receive_count]
}

run "rejects_too_many_target_retries" {
  command = plan
  variables {
    event_target_max_retry_attempts = 186
  }
  expect_failures = [var.event_target_max_retry_attempts]
}

run "rejects_too_short_event_age" {
  command = plan
  variables {
    event_target_max_event_age_seconds = 59
  }
  expect_failures = [var.event_target_max_event_age_seconds]
}

run "rejects_negative_archive_retention" {
  command = plan
  variables {
    archive_retention_days = -1
  }
  expect_failures = [var.archive_retention_days]
}

run "rejects_unsupported_log_retention" {
  command = plan
  variables {
    log_retention_days = 13
  }
  expect_failures = [var.log_retention_days]
}

run "rejects_unknown_lambda_system_log_level" {
  command = plan
  variables {
    lambda_system_log_level = "ERROR"
  }
  expect_failures = [var.lambda_system_log_level]
}

run "keeps_lambdas_start_and_report_lines_when_asked" {
  command = plan
  variables {
    lambda_system_log_level = "INFO"
  }

  assert {
    condition     = alltrue([for d in module.destination : d.function_system_log_level == "INFO"])
    error_message = "lambda_system_log_level must reach every transform function."
  }
}

run "rejects_alarm_action_that_is_not_an_sns_topic" {
  command = plan
  variables {
    alarm_actions = ["arn:aws:lambda:us-east-1:123456789012:function:pager"]
  }
  expect_failures = [var.alarm_actions]
}

run "rejects_the_aws_managed_sns_key_for_the_alarm_topic" {
  command = plan
  variables {
    alarm_topic_kms_key_arn = "alias/aws/sns"
  }
  expect_failures = [var.alarm_topic_kms_key_arn]
}

run "rejects_an_alarm_email_that_is_not_an_address" {
  command = plan
  variables {
    alarm_email_addresses = ["oncall@example.com", "oncall"]
  }
  expect_failures = [var.alarm_email_addresses]
}

run "rejects_an_alarm_period_finer_than_the_metrics" {
  command = plan
  variables {
    alarm_period_seconds = 30
  }
  expect_failures = [var.alarm_period_seconds]
}

run "rejects_an_alarm_period_that_is_not_whole_minutes" {
  command = plan
  variables {
    alarm_period_seconds = 90
  }
  expect_failures = [var.alarm_period_seconds]
}

run "rejects_zero_alarm_evaluation_periods" {
  command = plan
  variables {
    alarm_evaluation_periods = 0
  }
  expect_failures = [var.alarm_evaluation_periods]
}

run "rejects_a_buffer_age_alarm_below_a_minute" {
  command = plan
  variables {
    buffer_oldest_message_alarm_seconds = 59
  }
  expect_failures = [var.buffer_oldest_message_alarm_seconds]
}

run "rejects_negative_transform_alarm_thresholds" {
  command = plan
  variables {
    transform_errors_alarm_threshold    = -1
    transform_throttles_alarm_threshold = -1
  }
  expect_failures = [var.transform_errors_alarm_threshold, var.transform_throttles_alarm_threshold]
}

run "rejects_maximum_concurrency_below_two" {
  command = plan
  variables {
    lambda_maximum_concurrency = 1
  }
  expect_failures = [var.lambda_maximum_concurrency]
}

run "rejects_unknown_architecture" {
  command = plan
  variables {
    lambda_architecture = "amd64"
  }
  expect_failures = [var.lambda_architecture]
}

run "rejects_api_principal_with_a_wildcard" {
  command = plan
  variables {
    api_principal_arns = ["arn:aws:iam::123456789012:role/*"]
  }
  expect_failures = [var.api_principal_arns]
}

run "rejects_api_principal_that_is_not_a_role" {
  command = plan
  variables {
    api_principal_arns = ["arn:aws:iam::123456789012:user/alice"]
  }
  expect_failures = [var.api_principal_arns]
}

run "rejects_kms_alias_for_the_bus" {
  command = plan
  variables {
    event_bus_kms_key_arn = "alias/datasync"
  }
  expect_failures = [var.event_bus_kms_key_arn]
}

run "rejects_visibility_timeout_above_twelve_hours" {
  command = plan
  variables {
    queue_visibility_timeout_seconds = 43201
  }
  expect_failures = [var.queue_visibility_timeout_seconds]
}

run "rejects_consumer_principal_with_a_wildcard" {
  command = plan
  variables {
    consumer_principal_arns = { crm = ["arn:aws:iam::123456789012:role/datasync-consumer-*"] }
  }
  expect_failures = [var.consumer_principal_arns]
}

run "rejects_consumer_principals_of_an_unknown_destination" {
  command = plan
  variables {
    consumer_principal_arns = { billing = ["arn:aws:iam::123456789012:role/datasync-consumer-billing"] }
  }
  expect_failures = [aws_iam_policy.consumer]
}

run "rejects_consumer_principals_of_a_destination_not_deployed" {
  command = plan
  variables {
    destinations            = ["crm"]
    consumer_principal_arns = { marketing = ["arn:aws:iam::123456789012:role/datasync-consumer-marketing"] }
  }
  expect_failures = [aws_iam_policy.consumer]
}

run "rejects_operator_principal_that_is_not_a_role" {
  command = plan
  variables {
    operator_principal_arns = ["arn:aws:iam::123456789012:user/alice"]
  }
  expect_failures = [var.operator_principal_arns]
}
