# The first four alarms of each destination lived in modules/destination until the alarms moved
# to modules/monitoring. These blocks carry them over in place: without them Terraform would
# create the "new" alarms (PutMetricAlarm overwrites an alarm of the same name) and delete the
# "old" ones in the same apply, racing, and could leave a destination without its alarms.
# Destinations that are not deployed have nothing to move; Terraform ignores those blocks.

moved {
  from = module.destination["crm"].aws_cloudwatch_metric_alarm.this["dlq-not-empty"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["crm/dlq-not-empty"]
}

moved {
  from = module.destination["crm"].aws_cloudwatch_metric_alarm.this["oldest-message"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["crm/oldest-message"]
}

moved {
  from = module.destination["crm"].aws_cloudwatch_metric_alarm.this["buffer-oldest-message"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["crm/buffer-oldest-message"]
}

moved {
  from = module.destination["crm"].aws_cloudwatch_metric_alarm.this["transform-errors"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["crm/transform-errors"]
}

moved {
  from = module.destination["marketing"].aws_cloudwatch_metric_alarm.this["dlq-not-empty"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["marketing/dlq-not-empty"]
}

moved {
  from = module.destination["marketing"].aws_cloudwatch_metric_alarm.this["oldest-message"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["marketing/oldest-message"]
}

moved {
  from = module.destination["marketing"].aws_cloudwatch_metric_alarm.this["buffer-oldest-message"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["marketing/buffer-oldest-message"]
}

moved {
  from = module.destination["marketing"].aws_cloudwatch_metric_alarm.this["transform-errors"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["marketing/transform-errors"]
}

moved {
  from = module.destination["analytics"].aws_cloudwatch_metric_alarm.this["dlq-not-empty"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["analytics/dlq-not-empty"]
}

moved {
  from = module.destination["analytics"].aws_cloudwatch_metric_alarm.this["oldest-message"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["analytics/oldest-message"]
}

moved {
  from = module.destination["analytics"].aws_cloudwatch_metric_alarm.this["buffer-oldest-message"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["analytics/buffer-oldest-message"]
}

moved {
  from = module.destination["analytics"].aws_cloudwatch_metric_alarm.this["transform-errors"]
  to   = module.monitoring.aws_cloudwatch_metric_alarm.this["analytics/transform-errors"]
}

# The intake was a module of its own (modules/intake) until it and every destination's transform
# came to share modules/queue-function; module.intake is now that module, where a few resources
# have other names. Its queues and rule kept theirs. (The destinations' moves are in
# modules/destination/moved.tf: there one set of blocks serves every destination.)

moved {
  from = module.intake.aws_cloudwatch_event_target.intake
  to   = module.intake.aws_cloudwatch_event_target.this
}

moved {
  from = module.intake.aws_cloudwatch_log_group.intake
  to   = module.intake.aws_cloudwatch_log_group.this
}

moved {
  from = module.intake.aws_iam_role.intake
  to   = module.intake.aws_iam_role.this
}

moved {
  from = module.intake.aws_iam_role_policy.intake
  to   = module.intake.aws_iam_role_policy.this
}

moved {
  from = module.intake.aws_lambda_function.intake
  to   = module.intake.aws_lambda_function.this
}

moved {
  from = module.intake.aws_lambda_event_source_mapping.intake
  to   = module.intake.aws_lambda_event_source_mapping.this
}
