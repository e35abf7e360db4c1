variable "name" {
  description = "Base name of this destination's resources, e.g. \"datasync-crm\". Queues are <name>, <name>-buffer and <name>-dlq; the function and its role are <name>-transform."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,52}[a-z0-9]$", var.name))
    error_message = "The name must be 3-54 lowercase letters, digits and hyphens (\"<name>-transform\" must fit the 64-character Lambda and IAM limits)."
  }
}

variable "destination" {
  description = "Destination key passed to the transform as DATASYNC_DESTINATION (e.g. \"crm\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*$", var.destination))
    error_message = "The destination must be lowercase letters, digits and hyphens."
  }
}

variable "tags" {
  description = "Extra tags for this destination's resources (the provider's default_tags still apply)."
  type        = map(string)
  default     = {}
}

################################################################################
# Routing
################################################################################

variable "event_bus_name" {
  description = "Name of the EventBridge bus the rule listens on."
  type        = string
}

variable "event_source" {
  description = "Event source the rule matches."
  type        = string
}

variable "event_detail_types" {
  description = "Event detail-types the rule matches."
  type        = list(string)

  validation {
    condition     = length(var.event_detail_types) > 0
    error_message = "At least one detail-type is required."
  }
}

variable "event_target_max_retry_attempts" {
  description = "EventBridge retry attempts for the buffer-queue target before the event goes to the DLQ."
  type        = number
  default     = 10

  validation {
    condition     = var.event_target_max_retry_attempts >= 0 && var.event_target_max_retry_attempts <= 185
    error_message = "The event_target_max_retry_attempts must be between 0 and 185."
  }
}

variable "event_target_max_event_age_seconds" {
  description = "Maximum event age (seconds) EventBridge keeps retrying the buffer-queue target."
  type        = number
  default     = 3600

  validation {
    condition     = var.event_target_max_event_age_seconds >= 60 && var.event_target_max_event_age_seconds <= 86400
    error_message = "The event_target_max_event_age_seconds must be between 60 and 86400."
  }
}

################################################################################
# Queues
################################################################################

variable "max_receive_count" {
  description = "Receives after which a buffer or destination queue message moves to the DLQ."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "The max_receive_count must be between 1 and 1000."
  }
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout (seconds) of the destination queue."
  type        = number
  default     = 60

  validation {
    condition     = var.queue_visibility_timeout_seconds >= 0 && var.queue_visibility_timeout_seconds <= 43200
    error_message = "The queue_visibility_timeout_seconds must be between 0 and 43200."
  }
}

variable "message_retention_seconds" {
  description = "Message retention (seconds) of the buffer and destination queues (the DLQ keeps messages 14 days)."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "The message_retention_seconds must be between 60 and 1209600."
  }
}

################################################################################
# Who may send to the queues (each queue's policy denies sqs:SendMessage to everyone else)
################################################################################

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
# Transform Lambda
################################################################################

variable "lambda_package_path" {
  description = "Path to the deployment package (zip)."
  type        = string

  validation {
    condition     = endswith(var.lambda_package_path, ".zip")
    error_message = "The lambda_package_path must point to a .zip file."
  }
}

variable "lambda_runtime" {
  description = "Lambda runtime."
  type        = string
  default     = "python3.12"
}

variable "lambda_architecture" {
  description = "Instruction set of the function (\"x86_64\" or \"arm64\"); a package whose file name carries an architecture (lambda-aws-<architecture>-<hash>.zip) must carry this one."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "The lambda_architecture must be \"x86_64\" or \"arm64\"."
  }
}

variable "lambda_memory_mb" {
  description = "Lambda memory size (MB)."
  type        = number
  default     = 256
}

variable "lambda_timeout_seconds" {
  description = "Lambda timeout (seconds); the buffer queue's visibility timeout is six times this."
  type        = number
  default     = 30

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 900
    error_message = "The lambda_timeout_seconds must be between 1 and 900."
  }
}

variable "lambda_maximum_concurrency" {
  description = "scaling_config.maximum_concurrency of the SQS event source mapping; null leaves it unset."
  type        = number
  default     = null
}

variable "lambda_secret_environment" {
  description = "Extra, secret environment variables for this destination's function only (e.g. the analytics hash key)."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "lambda_log_level" {
  description = "DATASYNC_LOG_LEVEL of the function."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.lambda_log_level)
    error_message = "The lambda_log_level must be a Python logging level name."
  }
}

variable "lambda_system_log_level" {
  description = "Lambda's own (platform) log lines the function's log group receives: WARN drops the START, END and REPORT lines of every invocation, about 30 % of its log bytes (their figures stay in CloudWatch metrics); INFO or DEBUG keeps them."
  type        = string
  default     = "WARN"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN"], var.lambda_system_log_level)
    error_message = "The lambda_system_log_level must be DEBUG, INFO or WARN."
  }
}

variable "log_retention_days" {
  description = "Retention (days) of the function's log group."
  type        = number
  default     = 14
}

variable "buffer_batch_size" {
  description = "Maximum messages per invocation from the buffer queue."
  type        = number
  default     = 100
}

variable "buffer_batching_window_seconds" {
  description = "Maximum batching window (seconds) of the event source mapping."
  type        = number
  default     = 1
}
