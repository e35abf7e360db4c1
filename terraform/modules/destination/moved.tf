# The rule, the buffer queue, the DLQ and the transform function (with its log group, role and
# event source mapping) moved into modules/queue-function, which the intake uses too. These blocks
# carry every destination's resources over in place: without them Terraform would destroy and
# re-create them, and a queue destroyed loses the messages it holds.

moved {
  from = aws_cloudwatch_event_rule.this
  to   = module.transform.aws_cloudwatch_event_rule.this
}

moved {
  from = aws_cloudwatch_event_target.buffer
  to   = module.transform.aws_cloudwatch_event_target.this
}

moved {
  from = aws_sqs_queue.buffer
  to   = module.transform.aws_sqs_queue.this
}

moved {
  from = aws_sqs_queue.dlq
  to   = module.transform.aws_sqs_queue.dlq
}

moved {
  from = aws_cloudwatch_log_group.transform
  to   = module.transform.aws_cloudwatch_log_group.this
}

moved {
  from = aws_iam_role.transform
  to   = module.transform.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.transform
  to   = module.transform.aws_iam_role_policy.this
}

moved {
  from = aws_lambda_function.transform
  to   = module.transform.aws_lambda_function.this
}

moved {
  from = aws_lambda_event_source_mapping.buffer
  to   = module.transform.aws_lambda_event_source_mapping.this
}
