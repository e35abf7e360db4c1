output "queue_name" {
  description = "Name of the destination queue the consumers read."
  value       = aws_sqs_queue.this.name
}

output "queue_url" {
  description = "URL of the destination queue the consumers read."
  value       = aws_sqs_queue.this.url
}

output "queue_arn" {
  description = "ARN of the destination queue the consumers read."
  value       = aws_sqs_queue.this.arn
}

output "dlq_name" {
  description = "Name of the destination's dead-letter queue."
  value       = aws_sqs_queue.dlq.name
}

output "dlq_url" {
  description = "URL of the destination's dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the destination's dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "buffer_queue_name" {
  description = "Name of the buffer queue (rule target, transform source)."
  value       = aws_sqs_queue.buffer.name
}

output "buffer_queue_url" {
  description = "URL of the buffer queue (rule target, transform source)."
  value       = aws_sqs_queue.buffer.url
}

output "buffer_queue_arn" {
  description = "ARN of the buffer queue (rule target, transform source)."
  value       = aws_sqs_queue.buffer.arn
}

output "function_name" {
  description = "Name of the transform Lambda function."
  value       = aws_lambda_function.transform.function_name
}

output "function_arn" {
  description = "ARN of the transform Lambda function."
  value       = aws_lambda_function.transform.arn
}

output "function_architecture" {
  description = "Instruction set the transform function runs on (x86_64 or arm64)."
  value       = one(aws_lambda_function.transform.architectures)
}

output "function_system_log_level" {
  description = "Which of Lambda's own log lines (START, END, REPORT) the function's log group receives."
  value       = aws_lambda_function.transform.logging_config[0].system_log_level
}

output "function_environment_variable_names" {
  description = "Names of the environment variables set on the transform function (values omitted: some are secret)."
  value       = nonsensitive(sort(keys(local.function_environment)))
}

output "function_policy_json" {
  description = "Inline IAM policy (JSON) of the transform function's execution role."
  value       = aws_iam_role_policy.transform.policy
}

output "function_role_arn" {
  description = "ARN of the transform function's execution role."
  value       = aws_iam_role.transform.arn
}

output "rule_name" {
  description = "Name of the EventBridge rule routing events to the buffer queue."
  value       = aws_cloudwatch_event_rule.this.name
}

output "rule_arn" {
  description = "ARN of the EventBridge rule routing events to the buffer queue."
  value       = aws_cloudwatch_event_rule.this.arn
}

output "consumer_policy_json" {
  description = "IAM policy document (JSON) for the consumer workload of this destination."
  value       = local.consumer_policy_json
}

output "queue_policies" {
  description = "Policy (JSON) of each of this destination's queues (buffer, destination queue, DLQ), by queue ARN."
  value       = { for queue in [aws_sqs_queue.buffer, aws_sqs_queue.this, aws_sqs_queue.dlq] : queue.arn => queue.policy }
}
