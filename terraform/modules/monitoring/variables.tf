variable "name_prefix" {
  description = "Prefix of the names created here: the topic <prefix>-alarms, its key alias alias/<prefix>-alarms, the dashboard <prefix>, and the alarms <prefix>-<destination>-<alarm>."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 2-20 lowercase letters, digits and hyphens."
  }
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
  description = "Names of the intake's resources (the intake module's outputs): its live-events rule, queue, DLQ and function."
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

  validation {
    condition     = var.alarm_period_seconds >= 60 && var.alarm_period_seconds % 60 == 0
    error_message = "The alarm_period_seconds must be a multiple of 60 (AWS publishes these metrics once a minute)."
  }
}

variable "alarm_evaluation_periods" {
  description = "Periods every alarm looks back over. One breaching period fires it (datapoints_to_alarm = 1); it returns to OK after this many clean periods in a row, so an intermittent failure stays one notification instead of flapping."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_evaluation_periods >= 1 && floor(var.alarm_evaluation_periods) == var.alarm_evaluation_periods
    error_message = "The alarm_evaluation_periods must be a whole number, 1 or more."
  }
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of a destination queue (what the consumers read) is older than this many seconds."
  type        = number
  default     = 900

  validation {
    condition     = var.oldest_message_alarm_seconds >= 60
    error_message = "The oldest_message_alarm_seconds must be at least 60."
  }
}

variable "buffer_oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of a buffer queue (what the transform reads) is older than this many seconds."
  type        = number
  default     = 600

  validation {
    condition     = var.buffer_oldest_message_alarm_seconds >= 60
    error_message = "The buffer_oldest_message_alarm_seconds must be at least 60."
  }
}

variable "transform_errors_alarm_threshold" {
  description = "Alarm when more transform invocations than this fail (Lambda Errors) in one period."
  type        = number
  default     = 0

  validation {
    condition     = var.transform_errors_alarm_threshold >= 0
    error_message = "The transform_errors_alarm_threshold must be 0 or more."
  }
}

variable "transform_throttles_alarm_threshold" {
  description = "Alarm when more transform invocations than this are throttled (Lambda Throttles) in one period."
  type        = number
  default     = 0

  validation {
    condition     = var.transform_throttles_alarm_threshold >= 0
    error_message = "The transform_throttles_alarm_threshold must be 0 or more."
  }
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

  validation {
    condition     = alltrue([for arn in var.alarm_actions : can(regex("^arn:aws[a-z-]*:sns:", arn))])
    error_message = "Every alarm_actions entry must be an SNS topic ARN."
  }
}

variable "alarm_topic_kms_key_arn" {
  description = "Customer-managed KMS key that encrypts the alarm topic. null creates one. Its key policy must let cloudwatch.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.alarm_topic_kms_key_arn))
    error_message = "The alarm_topic_kms_key_arn must be null or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>). Not alias/aws/sns: CloudWatch alarms cannot publish to a topic encrypted with that AWS-managed key (its policy does not let CloudWatch use it)."
  }
}

variable "alarm_email_addresses" {
  description = "Email addresses subscribed to the alarm topic. AWS mails each a confirmation link; nothing is delivered until it is followed."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for address in var.alarm_email_addresses : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", address))])
    error_message = "Every alarm_email_addresses entry must be an email address."
  }
}

################################################################################
# Dashboard
################################################################################

variable "create_dashboard" {
  description = "Create the CloudWatch dashboard <prefix>: the bus, then one row per destination."
  type        = bool
  default     = true
}
