variable "name" {
  description = "Base name of this destination's resources, e.g. \"datasync-crm\". Queues are <name>, <name>-buffer and <name>-dlq; the rule is <name>; the function and its role are <name>-transform. The root module's name_prefix check keeps them within AWS's limits."
  type        = string
}

variable "destination" {
  description = "Destination key passed to the transform as DATASYNC_DESTINATION (e.g. \"crm\")."
  type        = string
}

variable "tags" {
  description = "Extra tags for this destination's resources (the provider's default_tags still apply)."
  type        = map(string)
  default     = {}
}

################################################################################
# Routing (replays) and delivery
################################################################################

variable "event_bus_name" {
  description = "Name of the EventBridge bus the destination's replay rule listens on."
  type        = string
}

variable "event_source" {
  description = "Event source the replay rule matches."
  type        = string
}

variable "event_detail_types" {
  description = "Event detail-types the replay rule matches."
  type        = list(string)
}

variable "event_target_max_retry_attempts" {
  description = "EventBridge retry attempts for the buffer-queue target before the event goes to the DLQ."
  type        = number
}

variable "event_target_max_event_age_seconds" {
  description = "Maximum event age (seconds) EventBridge keeps retrying the buffer-queue target."
  type        = number
}

################################################################################
# Queues
################################################################################

variable "max_receive_count" {
  description = "Receives after which a buffer or destination queue message moves to the DLQ (also DATASYNC_MAX_RECEIVE_COUNT of the transform)."
  type        = number
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout (seconds) of the destination queue the consumers read."
  type        = number
}

variable "message_retention_seconds" {
  description = "Message retention (seconds) of the buffer and destination queues (the DLQ keeps messages 14 days)."
  type        = number
}

variable "intake_role_arn" {
  description = "Execution role ARN of the intake function: it sends record packs to the destination queue and hands what it cannot finish to the buffer queue."
  type        = string
}

variable "consumer_principal_arns" {
  description = "IAM role ARNs of this destination's consumers: they re-send failed records to the destination queue and dead-letter to the DLQ. Empty: no consumer may send to either."
  type        = list(string)
  default     = []
}

variable "operator_principal_arns" {
  description = "IAM role ARNs of the operators who run `datasync dlq redrive`: it sends dead letters back to the buffer queue (bus events) or the destination queue (records). Empty: nobody may redrive."
  type        = list(string)
  default     = []
}

################################################################################
# Transform function
################################################################################

variable "function" {
  description = "The transform's package and settings, as modules/queue-function takes them (and checks them)."
  type = object({
    package_path            = string
    runtime                 = string
    architecture            = string
    memory_mb               = number
    timeout_seconds         = number
    log_level               = optional(string)
    system_log_level        = string
    log_retention_days      = number
    batch_size              = number
    batching_window_seconds = number
  })
}

variable "maximum_concurrency" {
  description = "scaling_config.maximum_concurrency of the transform's event source mapping; null leaves it unset."
  type        = number
  default     = null
}

variable "secret_environment" {
  description = "Extra, secret environment variables for this destination's function only (e.g. the analytics hash key)."
  type        = map(string)
  default     = {}
  sensitive   = true
}
