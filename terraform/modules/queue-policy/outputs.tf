output "json" {
  description = "The queue policy document (JSON), for aws_sqs_queue's policy argument."
  value = jsonencode({
    Version   = "2012-10-17"
    Statement = concat([local.deny_other_senders], var.event_rule_arn == null ? [] : [local.allow_event_rule])
  })
}
