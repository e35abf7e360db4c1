variable "queue_arn" {
  description = "ARN of the queue the policy is for (its Resource)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,80}$", var.queue_arn))
    error_message = "The queue_arn must be an SQS queue ARN without wildcards, e.g. \"arn:aws:sqs:us-east-1:123456789012:datasync-crm\"."
  }
}

variable "sender_arns" {
  description = "IAM role ARNs that may send to the queue (sqs:SendMessage; SendMessageBatch is authorized as SendMessage). Their own identity policies must allow it too. Empty: no IAM principal may send."
  type        = list(string)

  validation {
    condition     = alltrue([for arn in var.sender_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "Every sender_arns entry must be an IAM role ARN without wildcards, e.g. \"arn:aws:iam::123456789012:role/datasync-intake\"."
  }
}

variable "event_rule_arn" {
  description = "ARN of the EventBridge rule that targets the queue or uses it as its target's DLQ: EventBridge may deliver on its behalf (aws:SourceArn), and on no other rule's. null: EventBridge may not send."
  type        = string
  default     = null

  validation {
    condition     = var.event_rule_arn == null || can(regex("^arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:rule/[A-Za-z0-9._/-]+$", var.event_rule_arn))
    error_message = "The event_rule_arn must be null or an EventBridge rule ARN without wildcards."
  }
}
