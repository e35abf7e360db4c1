################################################################################
# General
################################################################################

variable "aws_region" {
  description = "AWS region to deploy the pipeline into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.aws_region))
    error_message = "The aws_region must look like an AWS region name, e.g. \"us-east-1\"."
  }
}

variable "name_prefix" {
  description = "Prefix for every resource name (bus, queues, functions, policies). Lowercase letters, digits and hyphens; at most 20 characters so that derived names stay within AWS limits (64 characters for Lambda functions and IAM roles)."
  type        = string
  default     = "datasync"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", var.name_prefix)) && !strcontains(var.name_prefix, "--")
    error_message = "The name_prefix must be 2-20 characters of lowercase letters, digits and single hyphens, start with a letter and not end with a hyphen."
  }
}

variable "destinations" {
  description = "Destinations to create a rule, buffer queue, transform Lambda, destination queue and DLQ for."
  type        = set(string)
  default     = ["crm", "marketing", "analytics"]

  validation {
    condition     = length(var.destinations) > 0 && length(setsubtract(var.destinations, ["crm", "marketing", "analytics"])) == 0
    error_message = "The destinations must be a non-empty subset of [\"crm\", \"marketing\", \"analytics\"]."
  }
}

variable "tags" {
  description = "Tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}

################################################################################
# Lambda (transform)
################################################################################

variable "lambda_package_path" {
  description = "Path to the prebuilt deployment package (zip) holding the `lambdas` package; the handler is `lambdas.handler.handle`."
  type        = string

  validation {
    condition     = endswith(var.lambda_package_path, ".zip")
    error_message = "The lambda_package_path must point to a .zip file."
  }
}

variable "lambda_runtime" {
  description = "Lambda runtime of the transform functions."
  type        = string
  default     = "python3.12"

  validation {
    condition     = can(regex("^python3\\.[0-9]+$", var.lambda_runtime))
    error_message = "The lambda_runtime must be a Python runtime such as \"python3.12\"."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the transform functions: \"x86_64\" or \"arm64\". The package must be built for it (`datasync package-lambda --target aws --architecture <the same value>`, which names the zip lambda-aws-<architecture>-<hash>.zip); a package whose name carries the other architecture is refused at plan time."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "The lambda_architecture must be \"x86_64\" or \"arm64\"."
  }
}

variable "lambda_memory_mb" {
  description = "Memory size (MB) of the transform functions."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240 && floor(var.lambda_memory_mb) == var.lambda_memory_mb
    error_message = "The lambda_memory_mb must be a whole number between 128 and 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout (seconds) of the transform functions. The buffer queue's visibility timeout is six times this value, as AWS recommends for SQS event source mappings."
  type        = number
  default     = 30

  validation {
    # Lambda's own maximum; 6 x 900 s = 5400 s stays well below the 12 h SQS visibility maximum.
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 900 && floor(var.lambda_timeout_seconds) == var.lambda_timeout_seconds
    error_message = "The lambda_timeout_seconds must be a whole number between 1 and 900."
  }
}

variable "lambda_maximum_concurrency" {
  description = "Maximum number of concurrent transform invocations per destination driven by the SQS event source mapping (2-1000). null leaves it unset (bounded only by the account's concurrency)."
  type        = number
  default     = null

  validation {
    condition     = var.lambda_maximum_concurrency == null || try(var.lambda_maximum_concurrency >= 2 && var.lambda_maximum_concurrency <= 1000, false)
    error_message = "The lambda_maximum_concurrency must be null or between 2 and 1000."
  }
}

variable "intake_maximum_concurrency" {
  description = "Maximum number of concurrent intake invocations (2-1000): the intake shapes every live event for every destination, so it needs about as much as all the destinations' functions did together. null leaves it unset (bounded only by the account's concurrency)."
  type        = number
  default     = null

  validation {
    condition     = var.intake_maximum_concurrency == null || try(var.intake_maximum_concurrency >= 2 && var.intake_maximum_concurrency <= 1000, false)
    error_message = "The intake_maximum_concurrency must be null or between 2 and 1000."
  }
}

variable "analytics_hash_key" {
  description = "Secret key the analytics transform uses to pseudonymise identifiers. Only the analytics function receives it."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.analytics_hash_key) >= 16
    error_message = "The analytics_hash_key must be at least 16 characters long."
  }
}

variable "buffer_batch_size" {
  description = "Maximum number of buffer-queue messages passed to one transform invocation."
  type        = number
  default     = 100

  validation {
    condition     = var.buffer_batch_size >= 1 && var.buffer_batch_size <= 10000
    error_message = "The buffer_batch_size must be between 1 and 10000."
  }
}

variable "buffer_batching_window_seconds" {
  description = "Maximum time (seconds) the event source mapping gathers messages before invoking the function. AWS requires at least 1 when buffer_batch_size is greater than 10."
  type        = number
  default     = 1

  validation {
    condition     = var.buffer_batching_window_seconds >= 0 && var.buffer_batching_window_seconds <= 300
    error_message = "The buffer_batching_window_seconds must be between 0 and 300."
  }
}

################################################################################
# Event bus: who may publish, encryption
################################################################################

variable "api_principal_arns" {
  description = "IAM role ARNs of the API workload (its IRSA or EKS Pod Identity role, with api_policy_arn attached): the only IAM principals the event bus policy lets call PutEvents. Empty (the default) denies PutEvents to every IAM principal, so nothing can publish (the API answers 503) until it is set: the bus fails closed. AWS services acting on the bus (archive replay) are not affected."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.api_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "Every api_principal_arns entry must be an IAM role ARN without wildcards, e.g. \"arn:aws:iam::123456789012:role/datasync-api\"."
  }
}

variable "consumer_principal_arns" {
  description = "IAM role ARNs of each destination's consumer workload (its IRSA or EKS Pod Identity role, with consumer_policy_arns[<destination>] attached), by destination: the only IAM principals besides the pipeline's functions that may send to that destination's queue (re-sending failed records) and DLQ (dead letters). Every queue's policy denies sqs:SendMessage to principals it does not name, whatever their own policies allow. A destination left out (by default, all are) fails closed: its consumers can neither re-send failed records (a pack with one is retried whole) nor dead-letter them with their reason (SQS's own redrive then moves the whole message to the DLQ, without one)."
  type        = map(list(string))
  default     = {}

  # Its keys are checked against var.destinations by a precondition on aws_iam_policy.consumer
  # (a variable's validation cannot read another variable before Terraform 1.9).
  validation {
    condition     = alltrue([for arn in flatten(values(var.consumer_principal_arns)) : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "Every consumer_principal_arns entry must be an IAM role ARN without wildcards, e.g. {crm = [\"arn:aws:iam::123456789012:role/datasync-consumer-crm\"]}."
  }
}

variable "operator_principal_arns" {
  description = "IAM role ARNs of the operators who send dead letters back: `datasync dlq redrive` (to each buffer queue and destination queue) and `aws sqs start-message-move-task` from the intake DLQ (to the intake queue). Every queue's policy denies sqs:SendMessage to principals it does not name. Empty (the default): nobody can redrive until it is set. The roles' own policies must allow the rest (receive and delete on the DLQs)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.operator_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "Every operator_principal_arns entry must be an IAM role ARN without wildcards, e.g. \"arn:aws:iam::123456789012:role/datasync-operator\"."
  }
}

variable "create_event_bus_policy" {
  description = "Attach the event bus policy that limits PutEvents to api_principal_arns. Only an emulator that cannot store bus policies should turn it off (local/endpoint_override.tf does, for MiniStack)."
  type        = bool
  default     = true
}

variable "event_bus_kms_key_arn" {
  description = "ARN of a customer-managed KMS key that encrypts the events on the bus. null (the default) uses an AWS-owned key. The key policy must let events.amazonaws.com call kms:DescribeKey, kms:GenerateDataKey and kms:Decrypt (condition it on this bus's ARN). The archive keeps using an AWS-owned key: the AWS provider 5.x cannot set an archive's key."
  type        = string
  default     = null

  validation {
    condition     = var.event_bus_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.event_bus_kms_key_arn))
    error_message = "The event_bus_kms_key_arn must be null or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>), not an alias."
  }
}

################################################################################
# Queues and delivery
################################################################################

variable "max_receive_count" {
  description = "Number of receives after which a message moves from the buffer or destination queue to the destination's DLQ."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "The max_receive_count must be between 1 and 1000."
  }
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout (seconds) of the destination queues the consumers read."
  type        = number
  default     = 60

  validation {
    condition     = var.queue_visibility_timeout_seconds >= 0 && var.queue_visibility_timeout_seconds <= 43200
    error_message = "The queue_visibility_timeout_seconds must be between 0 and 43200 (12 hours)."
  }
}

variable "message_retention_seconds" {
  description = "Message retention (seconds) of the buffer and destination queues. DLQs always keep messages for the SQS maximum of 14 days."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "The message_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "archive_retention_days" {
  description = "Days the EventBridge archive keeps events for replay; 0 keeps them forever."
  type        = number
  default     = 30

  validation {
    condition     = var.archive_retention_days >= 0 && floor(var.archive_retention_days) == var.archive_retention_days
    error_message = "The archive_retention_days must be a whole number, 0 or greater."
  }
}

variable "event_target_max_retry_attempts" {
  description = "How many times EventBridge retries delivering an event to a buffer queue before sending it to the DLQ."
  type        = number
  default     = 10

  validation {
    condition     = var.event_target_max_retry_attempts >= 0 && var.event_target_max_retry_attempts <= 185
    error_message = "The event_target_max_retry_attempts must be between 0 and 185."
  }
}

variable "event_target_max_event_age_seconds" {
  description = "Maximum age (seconds) of an event EventBridge still tries to deliver to a buffer queue before sending it to the DLQ."
  type        = number
  default     = 3600

  validation {
    condition     = var.event_target_max_event_age_seconds >= 60 && var.event_target_max_event_age_seconds <= 86400
    error_message = "The event_target_max_event_age_seconds must be between 60 and 86400."
  }
}

################################################################################
# Observability
################################################################################

variable "create_alarms" {
  description = "Create the CloudWatch alarms of every destination (DLQ not empty, oldest message of the buffer and destination queues, transform errors and throttles, the rule's failed, dead-lettered and lost deliveries) and, with create_alarm_topic, the SNS topic they notify."
  type        = bool
  default     = true
}

variable "create_alarm_topic" {
  description = "Create the SNS topic <name_prefix>-alarms (KMS-encrypted; only this account's CloudWatch alarms may publish) that every alarm notifies on ALARM and on OK. Set false to use only your own topics (alarm_actions)."
  type        = bool
  default     = true
}

variable "alarm_actions" {
  description = "Your own SNS topic ARNs, notified by every alarm on ALARM and on OK in addition to the topic created here (create_alarm_topic). Their policies must let cloudwatch.amazonaws.com publish, and their keys (if encrypted) let it use kms:GenerateDataKey* and kms:Decrypt."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.alarm_actions : can(regex("^arn:aws[a-z-]*:sns:", arn))])
    error_message = "Every alarm_actions entry must be an SNS topic ARN."
  }
}

variable "alarm_topic_kms_key_arn" {
  description = "Customer-managed KMS key that encrypts the alarm topic. null (the default) creates a key (rotated yearly) for it. A key of your own must let cloudwatch.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt. The AWS-managed alias/aws/sns cannot be used: CloudWatch alarms cannot publish to a topic it encrypts."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.alarm_topic_kms_key_arn))
    error_message = "The alarm_topic_kms_key_arn must be null or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>). Not alias/aws/sns: CloudWatch alarms cannot publish to a topic encrypted with that AWS-managed key (its policy does not let CloudWatch use it)."
  }
}

variable "alarm_email_addresses" {
  description = "Email addresses to subscribe to the alarm topic. AWS mails each one a confirmation link and delivers nothing until it is followed; an unconfirmed subscription expires after 3 days (the next apply subscribes it again)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for address in var.alarm_email_addresses : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", address))])
    error_message = "Every alarm_email_addresses entry must be an email address, e.g. \"oncall@example.com\"."
  }
}

variable "alarm_period_seconds" {
  description = "Period (seconds) of every alarm. 60 (the default) is the resolution at which SQS, Lambda and EventBridge publish these metrics; a multiple of 60."
  type        = number
  default     = 60

  validation {
    condition     = var.alarm_period_seconds >= 60 && var.alarm_period_seconds % 60 == 0
    error_message = "The alarm_period_seconds must be a multiple of 60 (AWS publishes these metrics once a minute)."
  }
}

variable "alarm_evaluation_periods" {
  description = "Periods every alarm looks back over. One breaching period fires it; it returns to OK only after this many clean periods in a row (5: five quiet minutes), so an intermittent failure is one notification, not one per minute. At most one day in all (period x this <= 86400 s)."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_evaluation_periods >= 1 && floor(var.alarm_evaluation_periods) == var.alarm_evaluation_periods
    error_message = "The alarm_evaluation_periods must be a whole number, 1 or more."
  }
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of a destination queue (what the consumers read) is older than this many seconds: the consumers are down, stuck or too few. The default, 15 minutes, is longer than a poison record's path to the DLQ (max_receive_count x queue_visibility_timeout_seconds = 5 minutes) and than the consumers take to scale out."
  type        = number
  default     = 900

  validation {
    condition     = var.oldest_message_alarm_seconds >= 60
    error_message = "The oldest_message_alarm_seconds must be at least 60."
  }
}

variable "buffer_oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message of a buffer queue (what the transform reads) is older than this many seconds: the transform is failing, throttled or no longer polling. A healthy buffer drains within seconds; a batch that failed once comes back after the buffer's visibility timeout (6 x lambda_timeout_seconds = 180 s by default), so 600 s means several failed attempts in a row."
  type        = number
  default     = 600

  validation {
    condition     = var.buffer_oldest_message_alarm_seconds >= 60
    error_message = "The buffer_oldest_message_alarm_seconds must be at least 60."
  }
}

variable "transform_errors_alarm_threshold" {
  description = "Alarm when more transform invocations than this fail in one period (Lambda Errors: a crash, a timeout, out of memory). Records that fail one by one are not Errors (they are reported per item and reach the DLQ), so the default 0 alarms on the first failed invocation."
  type        = number
  default     = 0

  validation {
    condition     = var.transform_errors_alarm_threshold >= 0
    error_message = "The transform_errors_alarm_threshold must be 0 or more."
  }
}

variable "transform_throttles_alarm_threshold" {
  description = "Alarm when more transform invocations than this are throttled in one period (Lambda Throttles). Every throttled batch counts toward max_receive_count on its way to the DLQ, hence the default 0; raise it if the account's concurrency is shared and short throttles are expected."
  type        = number
  default     = 0

  validation {
    condition     = var.transform_throttles_alarm_threshold >= 0
    error_message = "The transform_throttles_alarm_threshold must be 0 or more."
  }
}

variable "create_dashboard" {
  description = "Create the CloudWatch dashboard <name_prefix>: the bus, then one row per destination (rule deliveries, queue depth and age, DLQ depth, transform invocations, errors, throttles and duration) and the alarms. Outputs dashboard_name and dashboard_url."
  type        = bool
  default     = true
}

variable "lambda_system_log_level" {
  description = "Lambda's own log lines in the transform functions' log groups: WARN (default) drops the START, END and REPORT line of every invocation, about 30 % of the functions' log bytes and so of their CloudWatch Logs ingestion cost (invocations, duration and errors stay in CloudWatch metrics); INFO keeps them, DEBUG adds more."
  type        = string
  default     = "WARN"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN"], var.lambda_system_log_level)
    error_message = "The lambda_system_log_level must be DEBUG, INFO or WARN."
  }
}

variable "log_retention_days" {
  description = "Retention (days) of the transform functions' CloudWatch log groups; 0 keeps logs forever."
  type        = number
  default     = 14

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be one of the values CloudWatch Logs accepts (0, 1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}
