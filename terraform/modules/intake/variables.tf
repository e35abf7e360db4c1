variable "name" {
  description = "Base name of the intake's resources, e.g. \"datasync\": the queues are <name>-intake and <name>-intake-dlq, the rule, function and role <name>-intake."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,55}[a-z0-9]$", var.name))
    error_message = "The name must be 2-57 lowercase letters, digits and hyphens (\"<name>-intake-dlq\" must fit the 80-character SQS limit and \"<name>-intake\" the 64-character Lambda and IAM limits)."
  }
}

variable "tags" {
  description = "Extra tags for the intake's resources (the provider's default_tags still apply)."
  type        = map(string)
  default     = {}
}

variable "routes" {
  description = "Every destination the intake shapes events for, by destination key: its destination queue (where the packs go) and its buffer queue (where a record the intake could not finish goes, for the destination's own function)."
  type = map(object({
    queue_url        = string
    queue_arn        = string
    buffer_queue_url = string
    buffer_queue_arn = string
  }))

  validation {
    condition     = length(var.routes) > 0
    error_message = "The intake needs at least one destination."
  }
}

variable "operator_principal_arns" {
  description = "IAM role ARNs of the operators who move the intake DLQ's messages back to the intake queue (`aws sqs start-message-move-task`, which sends with the caller's permissions). Empty: nobody may."
  type        = list(string)
  default     = []
}

################################################################################
# Routing
################################################################################

variable "event_bus_name" {
  description = "Name of the EventBridge bus the intake rule listens on."
  type        = string
}

variable "event_source" {
  description = "Event source the intake rule matches."
  type        = string
}

variable "event_detail_types" {
  description = "Event detail-types the intake rule matches."
  type        = list(string)

  validation {
    condition     = length(var.event_detail_types) > 0
    error_message = "At least one detail-type is required."
  }
}

variable "event_target_max_retry_attempts" {
  description = "EventBridge retry attempts for the intake-queue target before the event goes to the intake DLQ."
  type        = number
  default     = 10

  validation {
    condition     = var.event_target_max_retry_attempts >= 0 && var.event_target_max_retry_attempts <= 185
    error_message = "The event_target_max_retry_attempts must be between 0 and 185."
  }
}

variable "event_target_max_event_age_seconds" {
  description = "Maximum event age (seconds) EventBridge keeps retrying the intake-queue target."
  type        = number
  default     = 3600

  validation {
    condition     = var.event_target_max_event_age_seconds >= 60 && var.event_target_max_event_age_seconds <= 86400
    error_message = "The event_target_max_event_age_seconds must be between 60 and 86400."
  }
}

################################################################################
# Queue
################################################################################

variable "max_receive_count" {
  description = "Receives after which an intake message moves to the intake DLQ (only if it could be neither shaped nor handed over every time)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "The max_receive_count must be between 1 and 1000."
  }
}

variable "message_retention_seconds" {
  description = "Message retention (seconds) of the intake queue (its DLQ keeps messages 14 days)."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "The message_retention_seconds must be between 60 and 1209600."
  }
}

################################################################################
# Intake Lambda
################################################################################

variable "lambda_package_path" {
  description = "Path to the deployment package (zip); the same package as the destinations' functions."
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
  description = "Instruction set of the function (\"x86_64\" or \"arm64\"); it must match the package's."
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
  description = "Lambda timeout (seconds); the intake queue's visibility timeout is six times this."
  type        = number
  default     = 30

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 900
    error_message = "The lambda_timeout_seconds must be between 1 and 900."
  }
}

variable "maximum_concurrency" {
  description = "scaling_config.maximum_concurrency of the intake's event source mapping (2-1000); null leaves it unset."
  type        = number
  default     = null

  validation {
    condition     = var.maximum_concurrency == null || try(var.maximum_concurrency >= 2 && var.maximum_concurrency <= 1000, false)
    error_message = "The maximum_concurrency must be null or between 2 and 1000."
  }
}

variable "lambda_secret_environment" {
  description = "Extra, secret environment variables of the intake function (the analytics hash key: it shapes the analytics records too)."
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
  description = "Lambda's own (platform) log lines the function's log group receives: WARN drops START, END and REPORT; INFO or DEBUG keeps them."
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

variable "batch_size" {
  description = "Maximum messages per invocation from the intake queue."
  type        = number
  default     = 100
}

variable "batching_window_seconds" {
  description = "Maximum batching window (seconds) of the intake's event source mapping."
  type        = number
  default     = 1
}
