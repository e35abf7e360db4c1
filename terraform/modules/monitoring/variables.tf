# Every value here comes from the root module, which checks what users set (its variables.tf, with the
# same rules): they are not checked a second time.

variable "name_prefix" {
  description = "Prefix of the names created here: the topic <prefix>-alarms, its key alias alias/<prefix>-alarms, the dashboard <prefix>, and the alarms <prefix>-<destination>-<alarm>."
  type        = string
}

variable "event_bus_name" {
  description = "Name of the EventBridge bus the destination rules listen on (a dimension of the rules' metrics)."
  type        = string
}

variable "event_bus_arn" {
  description = "ARN of that bus; the partition, region and account of the alarms, topic and dashboard are read from it."
  type        = string
}

variable "intake" {
  description = "Names of the intake's resources (module.intake's outputs): its live-events rule, queue, DLQ and function."
  type = object({
    rule_name     = string
    queue_name    = string
    dlq_name      = string
    function_name = string
  })
}

variable "destinations" {
  description = "Each destination's pipeline, by destination key (the outputs of modules/destination): its rule, buffer queue, destination queue, DLQ and transform function."
  type = map(object({
    rule_name         = string
    buffer_queue_name = string
    queue_name        = string
    dlq_name          = string
    function_name     = string
  }))
}

variable "lambda_timeout_seconds" {
  description = "Timeout of the transform functions, drawn as a line on the dashboard's duration graphs."
  type        = number
}

################################################################################
# Alarms
################################################################################

variable "create_alarms" {
  description = "Create the alarms (and, with create_alarm_topic, the topic they notify)."
  type        = bool
  default     = true
}

variable "alarm_period_seconds" {
  description = "Period (seconds) of every alarm: a multiple of 60, the resolution of the SQS, Lambda and EventBridge metrics."
  type        = number
  default     = 60
}

variable "alarm_evaluation_periods" {
  description = "Periods every alarm looks back over. One breaching period fires it (datapoints_to_alarm = 1); it returns to OK after this many clean periods in a row, so an intermittent failure stays one notification instead of flapping."
  type        = number
  default     = 5
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of a destination queue (what the consumers read) is older than this many seconds."
  type        = number
  default     = 900
}

variable "buffer_oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of a buffer queue (what the transform reads) is older than this many seconds."
  type        = number
  default     = 600
}

variable "transform_errors_alarm_threshold" {
  description = "Alarm when more transform invocations than this fail (Lambda Errors) in one period."
  type        = number
  default     = 0
}

variable "transform_throttles_alarm_threshold" {
  description = "Alarm when more transform invocations than this are throttled (Lambda Throttles) in one period."
  type        = number
  default     = 0
}

################################################################################
# Notifications
################################################################################

variable "create_alarm_topic" {
  description = "Create the SNS topic <prefix>-alarms that every alarm notifies (on ALARM and on OK). Only with create_alarms."
  type        = bool
  default     = true
}

variable "alarm_actions" {
  description = "Further SNS topic ARNs every alarm notifies (on ALARM and on OK), beside the topic created here."
  type        = list(string)
  default     = []
}

variable "alarm_topic_kms_key_arn" {
  description = "Customer-managed KMS key that encrypts the alarm topic. null creates one. Its key policy must let cloudwatch.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt."
  type        = string
  default     = null
}

variable "alarm_email_addresses" {
  description = "Email addresses subscribed to the alarm topic. AWS mails each a confirmation link; nothing is delivered until it is followed."
  type        = list(string)
  default     = []
}

################################################################################
# Dashboard
################################################################################

variable "create_dashboard" {
  description = "Create the CloudWatch dashboard <prefix>: the bus, then one row per destination."
  type        = bool
  default     = true
}
