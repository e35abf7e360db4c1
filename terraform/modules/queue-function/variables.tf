################################################################################
# Names (the root module checks its name_prefix so that every name derived from it fits AWS's
# limits: 64 characters for functions, roles and rules, 80 for queues)
################################################################################

variable "function_name" {
  description = "Name of the function, of its execution role and (as /aws/lambda/<name>) of its log group."
  type        = string
}

variable "queue_name" {
  description = "Name of the queue the rule delivers to and the function drains."
  type        = string
}

variable "dlq_name" {
  description = "Name of the dead-letter queue: the queue's redrive target and the rule target's DLQ."
  type        = string
}

variable "queue_label" {
  description = "One lowercase word saying what the queue is to the pipeline (\"intake\", \"buffer\"): the id of the rule's target, and Consume<Label>Queue, the Sid of the role's statement that lets the function drain it."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+$", var.queue_label))
    error_message = "The queue_label must be one lowercase word."
  }
}

variable "tags" {
  description = "Extra tags for the resources that take them (the provider's default_tags still apply)."
  type        = map(string)
  default     = {}
}

################################################################################
# Delivery: which events reach the queue, and how hard EventBridge tries
################################################################################

variable "event_bus_name" {
  description = "Name of the EventBridge bus the rule listens on."
  type        = string
}

variable "rule_name" {
  description = "Name of the EventBridge rule that routes events to the queue."
  type        = string
}

variable "rule_description" {
  description = "Description of the rule: which events it routes, and why."
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

variable "replayed_events" {
  description = "Which of those events the rule routes: the replayed ones (true; a replay from the archive names the rules it goes to) or the live ones (false)."
  type        = bool
}

variable "event_target_max_retry_attempts" {
  description = "EventBridge retry attempts for the queue target before the event goes to the DLQ."
  type        = number
}

variable "event_target_max_event_age_seconds" {
  description = "Maximum event age (seconds) EventBridge keeps retrying the queue target."
  type        = number
}

################################################################################
# Queues: retention, redrive, and who may send
################################################################################

variable "max_receive_count" {
  description = "Receives after which a message of the queue moves to the DLQ."
  type        = number
}

variable "message_retention_seconds" {
  description = "Message retention (seconds) of the queue (the DLQ keeps messages 14 days, the SQS maximum)."
  type        = number
}

variable "queue_sender_arns" {
  description = "IAM role ARNs that may send to the queue besides the rule; its policy denies sqs:SendMessage to everyone else. Empty: only the rule."
  type        = list(string)
  default     = []
}

variable "dlq_sender_arns" {
  description = "IAM role ARNs that may send to the DLQ besides the rule's target; its policy denies sqs:SendMessage to everyone else. Empty: only the target (SQS's own redrive needs no permission)."
  type        = list(string)
  default     = []
}

################################################################################
# Function
################################################################################

variable "function_description" {
  description = "Description of the function."
  type        = string
}

variable "handler" {
  description = "The function's handler in the package, e.g. \"lambdas.handler.handle\"."
  type        = string
}

variable "function" {
  description = "The package and the settings every function of the pipeline shares: runtime, instruction set (a package whose file name carries one, lambda-aws-<architecture>-<hash>.zip, must carry this one), memory (MB), timeout (seconds; the queue's visibility timeout is six times this), DATASYNC_LOG_LEVEL, which of Lambda's own log lines the log group receives (WARN drops START, END and REPORT), the log group's retention (days), and the event source mapping's batch size and batching window (seconds)."
  type = object({
    package_path            = string
    runtime                 = string
    architecture            = string
    memory_mb               = number
    timeout_seconds         = number
    log_level               = optional(string, "INFO")
    system_log_level        = string
    log_retention_days      = number
    batch_size              = number
    batching_window_seconds = number
  })

  validation {
    condition     = endswith(var.function.package_path, ".zip")
    error_message = "The function's package_path must point to a .zip file."
  }

  validation {
    condition     = contains(["x86_64", "arm64"], var.function.architecture)
    error_message = "The function's architecture must be \"x86_64\" or \"arm64\"."
  }

  validation {
    condition     = var.function.timeout_seconds >= 1 && var.function.timeout_seconds <= 900
    error_message = "The function's timeout_seconds must be between 1 and 900 (six times it is the queue's visibility timeout)."
  }

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.function.log_level)
    error_message = "The function's log_level must be a Python logging level name."
  }

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN"], var.function.system_log_level)
    error_message = "The function's system_log_level must be DEBUG, INFO or WARN."
  }
}

variable "maximum_concurrency" {
  description = "scaling_config.maximum_concurrency of the event source mapping (2-1000); null leaves it unset."
  type        = number
  default     = null
}

variable "environment" {
  description = "Environment variables of the function (DATASYNC_LOG_LEVEL is added from function.log_level)."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Secret environment variables of the function, e.g. the analytics hash key (kept out of plans and outputs)."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "policy_statements" {
  description = "Further Allow statements of the execution role's policy, by Sid: what else the function may do (the queues it sends to). The role may already write its own logs and drain the queue, nothing more."
  type = map(object({
    actions   = list(string)
    resources = list(string)
  }))
  default = {}
}
