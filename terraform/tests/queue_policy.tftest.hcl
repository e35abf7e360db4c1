# Tests of modules/queue-policy on its own (every queue's policy is built from it). It creates no
# resources and needs no provider: these runs only evaluate the document.

variables {
  queue_arn      = "arn:aws:sqs:us-east-1:123456789012:datasync-crm"
  sender_arns    = ["arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/eks/datasync-consumer-crm"]
  event_rule_arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm"
}

run "denies_everyone_but_the_senders_and_the_rule_and_lets_the_rule_deliver" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  assert {
    condition = jsondecode(output.json) == {
      Version = "2012-10-17"
      Statement = [
        {
          Sid       = "OnlyThePipelineSends"
          Effect    = "Deny"
          Principal = "*"
          Action    = "sqs:SendMessage"
          Resource  = "arn:aws:sqs:us-east-1:123456789012:datasync-crm"
          Condition = {
            ArnNotEquals = {
              "aws:PrincipalArn" = ["arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/eks/datasync-consumer-crm"]
              "aws:SourceArn"    = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm"
            }
          }
        },
        {
          Sid       = "EventBridgeRule"
          Effect    = "Allow"
          Principal = { Service = "events.amazonaws.com" }
          Action    = "sqs:SendMessage"
          Resource  = "arn:aws:sqs:us-east-1:123456789012:datasync-crm"
          Condition = { ArnEquals = { "aws:SourceArn" = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm" } }
        },
      ]
    }
    error_message = "The policy must deny SendMessage to every principal that is neither a sender nor EventBridge for the rule (both conditions in one block: AND), and allow EventBridge for that rule only."
  }
}

run "without_a_rule_eventbridge_is_denied_too" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  variables {
    event_rule_arn = null
  }

  assert {
    condition = jsondecode(output.json).Statement == [{
      Sid       = "OnlyThePipelineSends"
      Effect    = "Deny"
      Principal = "*"
      Action    = "sqs:SendMessage"
      Resource  = "arn:aws:sqs:us-east-1:123456789012:datasync-crm"
      Condition = { ArnNotEquals = { "aws:PrincipalArn" = ["arn:aws:iam::123456789012:role/datasync-intake", "arn:aws:iam::123456789012:role/eks/datasync-consumer-crm"] } }
    }]
    error_message = "Without a rule there is no Allow and no aws:SourceArn exception: only the senders may send."
  }
}

run "without_senders_only_the_rule_may_deliver" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  variables {
    sender_arns = []
  }

  assert {
    condition = [for s in jsondecode(output.json).Statement : s.Condition] == [
      { ArnNotEquals = { "aws:SourceArn" = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm" } },
      { ArnEquals = { "aws:SourceArn" = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/datasync-crm" } },
    ]
    error_message = "With no senders every IAM principal is denied (fail closed); EventBridge for the rule still delivers."
  }
}

run "without_senders_or_rule_everyone_is_denied" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  variables {
    sender_arns    = []
    event_rule_arn = null
  }

  assert {
    condition = jsondecode(output.json).Statement == [{
      Sid       = "OnlyThePipelineSends"
      Effect    = "Deny"
      Principal = "*"
      Action    = "sqs:SendMessage"
      Resource  = "arn:aws:sqs:us-east-1:123456789012:datasync-crm"
    }]
    error_message = "With nothing to except, the Deny must have no condition at all (an empty ArnNotEquals block is invalid), so it denies everyone."
  }
}

run "rejects_a_sender_with_a_wildcard" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  variables {
    sender_arns = ["arn:aws:iam::123456789012:role/datasync-*"]
  }

  expect_failures = [var.sender_arns]
}

run "rejects_a_sender_that_is_not_a_role" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  variables {
    sender_arns = ["arn:aws:iam::123456789012:user/alice"]
  }

  expect_failures = [var.sender_arns]
}

run "rejects_a_queue_arn_with_a_wildcard" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  variables {
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:datasync-*"
  }

  expect_failures = [var.queue_arn]
}

run "rejects_a_rule_arn_with_a_wildcard" {
  command = plan

  module {
    source = "./modules/queue-policy"
  }

  variables {
    event_rule_arn = "arn:aws:events:us-east-1:123456789012:rule/datasync-bus/*"
  }

  expect_failures = [var.event_rule_arn]
}
