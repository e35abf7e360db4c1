# A queue policy that names who may send. An Allow in an identity policy is enough to send to a
# queue of the same account, so anyone whose policy says sqs:SendMessage on * (an admin, a CI
# role, a broad developer role) could otherwise put crafted messages on any queue. The Deny
# below stops every principal that is neither one of sender_arns nor EventBridge delivering for
# event_rule_arn, whatever its own policies allow; it grants nothing. Principals are compared by
# aws:PrincipalArn, which for a role session is the role's ARN (whatever the session's name).
# aws:SourceArn is set only by an AWS service acting for one of its resources, never by an IAM
# caller, so a request without it (every IAM principal's) matches ArnNotEquals and is denied.
# Nothing here touches SQS's own redrive (maxReceiveCount), which moves messages internally.

locals {
  # Each exception is left out when there is nothing to except, so an empty sender_arns without a
  # rule denies everyone (fail closed) rather than making an invalid, empty condition.
  exceptions = merge(
    length(var.sender_arns) > 0 ? { "aws:PrincipalArn" = var.sender_arns } : {},
    var.event_rule_arn == null ? {} : { "aws:SourceArn" = var.event_rule_arn },
  )

  deny_other_senders = merge(
    {
      Sid       = "OnlyThePipelineSends"
      Effect    = "Deny"
      Principal = "*"
      Action    = "sqs:SendMessage"
      Resource  = var.queue_arn
    },
    length(local.exceptions) > 0 ? { Condition = { ArnNotEquals = local.exceptions } } : {},
  )

  # A service principal needs an Allow in the resource policy itself (it has no identity policy).
  allow_event_rule = {
    Sid       = "EventBridgeRule"
    Effect    = "Allow"
    Principal = { Service = "events.amazonaws.com" }
    Action    = "sqs:SendMessage"
    Resource  = var.queue_arn
    Condition = { ArnEquals = { "aws:SourceArn" = var.event_rule_arn } }
  }
}
