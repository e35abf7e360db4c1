################################################################################
# Stable interface: the Python tooling reads these with `terraform output -json`.
# Do not rename them.
################################################################################

output "region" {
  description = "AWS region the pipeline is deployed in."
  value       = var.aws_region
}

output "event_bus_name" {
  description = "Name of the EventBridge bus the API publishes to."
  value       = aws_cloudwatch_event_bus.this.name
}

output "event_bus_arn" {
  description = "ARN of the EventBridge bus the API publishes to."
  value       = aws_cloudwatch_event_bus.this.arn
}

output "archive_name" {
  description = "Name of the EventBridge archive (used with StartReplay)."
  value       = aws_cloudwatch_event_archive.this.name
}

output "archive_arn" {
  description = "ARN of the EventBridge archive (the EventSourceArn of a replay)."
  value       = aws_cloudwatch_event_archive.this.arn
}

output "queue_urls" {
  description = "Destination queue URL (what the consumers read), by destination."
  value       = { for k, d in module.destination : k => d.queue_url }
}

output "dlq_urls" {
  description = "Dead-letter queue URL, by destination."
  value       = { for k, d in module.destination : k => d.dlq_url }
}

output "buffer_queue_urls" {
  description = "Buffer queue URL (EventBridge rule target, transform Lambda source), by destination."
  value       = { for k, d in module.destination : k => d.buffer_queue_url }
}

output "lambda_function_names" {
  description = "Transform Lambda function name, by destination."
  value       = { for k, d in module.destination : k => d.function_name }
}

output "intake_queue_url" {
  description = "URL of the intake queue: every live event, once, on its way to the intake function."
  value       = module.intake.queue_url
}

output "intake_dlq_url" {
  description = "URL of the intake DLQ (events that could not reach the intake queue, or be shaped or handed over)."
  value       = module.intake.dlq_url
}

output "intake_function_name" {
  description = "Name of the intake function (shapes live events for every destination)."
  value       = module.intake.function_name
}

output "max_receive_count" {
  description = "Receives after which a message moves to its destination's DLQ."
  value       = var.max_receive_count
}

output "api_policy_arn" {
  description = "ARN of the managed policy to attach to the API workload's role."
  value       = aws_iam_policy.api.arn
}

output "dashboard_policy_arn" {
  description = "ARN of the optional policy of the status page /dashboard (queue depths, DLQ peek, its sessions table) to attach to the API workload's role as well."
  value       = aws_iam_policy.dashboard.arn
}

output "dashboard_sessions_table" {
  description = "Name of the status page's sessions table: DATASYNC_DASHBOARD_SESSIONS_TABLE of the API (chart: config.dashboardSessionsTable)."
  value       = aws_dynamodb_table.dashboard_sessions.name
}

output "consumer_policy_arns" {
  description = "ARN of the managed policy to attach to each consumer workload's role, by destination."
  value       = { for k, p in aws_iam_policy.consumer : k => p.arn }
}

################################################################################
# Additional outputs
################################################################################

output "queue_arns" {
  description = "Destination queue ARN, by destination."
  value       = { for k, d in module.destination : k => d.queue_arn }
}

output "dlq_arns" {
  description = "Dead-letter queue ARN, by destination."
  value       = { for k, d in module.destination : k => d.dlq_arn }
}

output "buffer_queue_arns" {
  description = "Buffer queue ARN, by destination."
  value       = { for k, d in module.destination : k => d.buffer_queue_arn }
}

output "lambda_function_arns" {
  description = "Transform Lambda function ARN, by destination."
  value       = { for k, d in module.destination : k => d.function_arn }
}

output "intake_queue_arn" {
  description = "ARN of the intake queue."
  value       = module.intake.queue_arn
}

output "intake_dlq_arn" {
  description = "ARN of the intake DLQ."
  value       = module.intake.dlq_arn
}

output "intake_function_arn" {
  description = "ARN of the intake function."
  value       = module.intake.function_arn
}

output "intake_rule_arn" {
  description = "ARN of the live-events rule (its target is the intake queue)."
  value       = module.intake.rule_arn
}

output "rule_arns" {
  description = "EventBridge replay rule ARN (replayed events to the buffer queue), by destination."
  value       = { for k, d in module.destination : k => d.rule_arn }
}

################################################################################
# Monitoring
################################################################################

output "alarm_names" {
  description = "CloudWatch alarm names by destination, then by alarm (dlq-not-empty, oldest-message, buffer-oldest-message, transform-errors, transform-throttles, rule-delivery-failed, rule-dead-lettered, rule-events-lost), and under \"intake\" the intake's (dlq-not-empty, oldest-message, function-errors, function-throttles, rule-delivery-failed, rule-events-lost). Empty when create_alarms is false."
  value       = module.monitoring.alarm_names
}

output "alarm_topic_arn" {
  description = "ARN of the SNS topic the alarms notify (subscribe your pager or chat integration to it); null when create_alarms or create_alarm_topic is false."
  value       = module.monitoring.alarm_topic_arn
}

output "alarm_topic_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the alarm topic; null without a topic."
  value       = module.monitoring.alarm_topic_kms_key_arn
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard; null when create_dashboard is false."
  value       = module.monitoring.dashboard_name
}

output "dashboard_url" {
  description = "Console URL of the CloudWatch dashboard; null when create_dashboard is false."
  value       = module.monitoring.dashboard_url
}
