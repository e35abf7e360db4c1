output "queue_name" {
  description = "Name of the queue (the rule's target, the function's event source)."
  value       = aws_sqs_queue.this.name
}

output "queue_url" {
  description = "URL of the queue."
  value       = aws_sqs_queue.this.url
}

output "queue_arn" {
  description = "ARN of the queue."
  value       = aws_sqs_queue.this.arn
}

output "dlq_name" {
  description = "Name of the dead-letter queue."
  value       = aws_sqs_queue.dlq.name
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "queue_policies" {
  description = "Policy (JSON) of the queue and of the DLQ, by queue ARN."
  value       = { for queue in [aws_sqs_queue.this, aws_sqs_queue.dlq] : queue.arn => queue.policy }
}

output "rule_name" {
  description = "Name of the EventBridge rule routing events to the queue."
  value       = aws_cloudwatch_event_rule.this.name
}

output "rule_arn" {
  description = "ARN of the EventBridge rule routing events to the queue."
  value       = aws_cloudwatch_event_rule.this.arn
}

output "rule_event_pattern" {
  description = "The rule's event pattern (JSON), as it was created (e.g. for `aws events test-event-pattern`)."
  value       = aws_cloudwatch_event_rule.this.event_pattern
}

output "function_name" {
  description = "Name of the function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the function."
  value       = aws_lambda_function.this.arn
}

output "function_architecture" {
  description = "Instruction set the function runs on (x86_64 or arm64)."
  value       = one(aws_lambda_function.this.architectures)
}

output "function_system_log_level" {
  description = "Which of Lambda's own log lines (START, END, REPORT) the function's log group receives."
  value       = aws_lambda_function.this.logging_config[0].system_log_level
}

output "function_environment" {
  description = "The function's environment variables (sensitive: the secret ones are among them)."
  value       = aws_lambda_function.this.environment[0].variables
  sensitive   = true
}

output "function_environment_variable_names" {
  description = "Names (not values) of the function's environment variables."
  value       = nonsensitive(sort(keys(local.function_environment)))
}

output "function_policy_json" {
  description = "Inline IAM policy (JSON) of the function's execution role."
  value       = aws_iam_role_policy.this.policy
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}
