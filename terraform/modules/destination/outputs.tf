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
  value       = module.transform.dlq_name
}

output "dlq_url" {
  description = "URL of the destination's dead-letter queue."
  value       = module.transform.dlq_url
}

output "dlq_arn" {
  description = "ARN of the destination's dead-letter queue."
  value       = module.transform.dlq_arn
}

output "buffer_queue_name" {
  description = "Name of the buffer queue (rule target, transform source)."
  value       = module.transform.queue_name
}

output "buffer_queue_url" {
  description = "URL of the buffer queue (rule target, transform source)."
  value       = module.transform.queue_url
}

output "buffer_queue_arn" {
  description = "ARN of the buffer queue (rule target, transform source)."
  value       = module.transform.queue_arn
}

output "rule_name" {
  description = "Name of the EventBridge rule routing replayed events to the buffer queue."
  value       = module.transform.rule_name
}

output "rule_arn" {
  description = "ARN of the EventBridge rule routing replayed events to the buffer queue."
  value       = module.transform.rule_arn
}

output "rule_event_pattern" {
  description = "The replay rule's event pattern (JSON)."
  value       = module.transform.rule_event_pattern
}

output "function_name" {
  description = "Name of the transform Lambda function."
  value       = module.transform.function_name
}

output "function_arn" {
  description = "ARN of the transform Lambda function."
  value       = module.transform.function_arn
}

output "function_architecture" {
  description = "Instruction set the transform function runs on (x86_64 or arm64)."
  value       = module.transform.function_architecture
}

output "function_system_log_level" {
  description = "Which of Lambda's own log lines (START, END, REPORT) the function's log group receives."
  value       = module.transform.function_system_log_level
}

output "function_environment" {
  description = "The transform function's environment variables (sensitive: the secret ones are among them)."
  value       = module.transform.function_environment
  sensitive   = true
}

output "function_environment_variable_names" {
  description = "Names of the environment variables set on the transform function (values omitted: some are secret)."
  value       = module.transform.function_environment_variable_names
}

output "function_policy_json" {
  description = "Inline IAM policy (JSON) of the transform function's execution role."
  value       = module.transform.function_policy_json
}

output "function_role_arn" {
  description = "ARN of the transform function's execution role."
  value       = module.transform.role_arn
}

output "consumer_policy_json" {
  description = "IAM policy document (JSON) for the consumer workload of this destination."
  value       = local.consumer_policy_json
}

output "queue_policies" {
  description = "Policy (JSON) of each of this destination's queues (buffer, destination queue, DLQ), by queue ARN."
  value       = merge(module.transform.queue_policies, { (aws_sqs_queue.this.arn) = aws_sqs_queue.this.policy })
}
