output "alarms" {
  description = "Every alarm by \"<destination>/<alarm>\": its name, ARN, metric (namespace, name, dimensions, statistic) and threshold. Empty when create_alarms is false."
  value = {
    for key, alarm in aws_cloudwatch_metric_alarm.this : key => {
      name        = alarm.alarm_name
      arn         = alarm.arn
      namespace   = alarm.namespace
      metric_name = alarm.metric_name
      dimensions  = alarm.dimensions
      statistic   = alarm.statistic
      threshold   = alarm.threshold
      actions     = alarm.alarm_actions
    }
  }
}

output "alarm_names" {
  description = "Alarm names by destination (and \"intake\"), then by alarm (dlq-not-empty, oldest-message, ...). Empty when create_alarms is false."
  value = {
    for destination in concat(keys(var.destinations), ["intake"]) : destination => {
      for key, alarm in local.alarms : alarm.kind => aws_cloudwatch_metric_alarm.this[key].alarm_name if alarm.destination == destination
    } if var.create_alarms
  }
}

output "alarm_topic_arn" {
  description = "ARN of the SNS topic the alarms notify; null when none is created here."
  value       = one(aws_sns_topic.alarms[*].arn)
}

output "alarm_topic_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the alarm topic (created here or given); null without a topic."
  value       = local.create_topic ? local.topic_key : null
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard; null when create_dashboard is false."
  value       = one(aws_cloudwatch_dashboard.this[*].dashboard_name)
}

output "dashboard_url" {
  description = "Console URL of the CloudWatch dashboard; null when create_dashboard is false."
  value       = var.create_dashboard ? "https://${local.region}.${lookup(local.console_hosts, local.partition, local.console_hosts.aws)}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${local.dashboard_name}" : null
}

output "dashboard_body" {
  description = "The dashboard's JSON body (as sent, also when create_dashboard is false)."
  value       = local.dashboard_body
}
