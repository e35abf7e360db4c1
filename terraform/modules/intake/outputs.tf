output "queue_name" {
  description = "Name of the intake queue (target of the live-events rule, source of the intake function)."
  value       = aws_sqs_queue.this.name
}

output "queue_url" {
  description = "URL of the intake queue."
  value       = aws_sqs_queue.this.url
}

output "queue_arn" {
  description = "ARN of the intake queue."
  value       = aws_sqs_queue.this.arn
}

output "dlq_name" {
  description = "Name of the intake DLQ."
  value       = aws_sqs_queue.dlq.name
}

output "dlq_url" {
  description = "URL of the intake DLQ."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the intake DLQ."
  value       = aws_sqs_queue.dlq.arn
}

output "function_name" {
  description = "Name of the intake function."
  value       = aws_lambda_function.intake.function_name
}

output "function_arn" {
  description = "ARN of the intake function."
  value       = aws_lambda_function.intake.arn
}

output "function_environment_variable_names" {
  description = "Names (not values) of the intake function's environment variables."
  value       = nonsensitive(sort(keys(local.function_environment)))
}

output "function_policy_json" {
  description = "The intake role's inline policy."
  value       = aws_iam_role_policy.intake.policy
}

output "rule_name" {
  description = "Name of the live-events rule."
  value       = aws_cloudwatch_event_rule.this.name
}

output "rule_arn" {
  description = "ARN of the live-events rule."
  value       = aws_cloudwatch_event_rule.this.arn
}

output "role_arn" {
  description = "ARN of the intake function's execution role (it sends to every destination queue and buffer queue)."
  value       = aws_iam_role.intake.arn
}

output "queue_policies" {
  description = "Policy (JSON) of the intake queue and the intake DLQ, by queue ARN."
  value       = { for queue in [aws_sqs_queue.this, aws_sqs_queue.dlq] : queue.arn => queue.policy }
}
