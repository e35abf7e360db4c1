# Local emulator override (MiniStack, LocalStack or any other AWS-compatible endpoint).
#
# Terraform merges files named *_override.tf into the matching blocks of the module, so copying
# this file into the root module points the "aws" provider at the emulator (and switches off the
# CloudWatch alarms, see below). Nothing else in the configuration knows about emulators.
#
#   cp terraform/local/endpoint_override.tf terraform/endpoint_override.tf
#   # edit the endpoint URLs below to your emulator's URL (LocalStack and MiniStack listen
#   # on port 4566 by default)
#   cd terraform && terraform init && terraform apply \
#     -var lambda_package_path=/path/to/lambda.zip -var analytics_hash_key=<16+ characters>
#
# terraform/*_override.tf is git-ignored, so the copy never reaches a real deployment.
# The datasync tooling copies this file itself and replaces the URL literal below with the
# emulator's actual URL: keep the literal exactly as it is, and only in the endpoints block.

provider "aws" {
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true

  endpoints {
    cloudwatch = "http://127.0.0.1:4566"
    dynamodb   = "http://127.0.0.1:4566"
    events     = "http://127.0.0.1:4566"
    iam        = "http://127.0.0.1:4566"
    kms        = "http://127.0.0.1:4566"
    lambda     = "http://127.0.0.1:4566"
    logs       = "http://127.0.0.1:4566"
    sns        = "http://127.0.0.1:4566"
    sqs        = "http://127.0.0.1:4566"
    sts        = "http://127.0.0.1:4566"
  }
}

# No CloudWatch alarms on the emulator. MiniStack creates them correctly, but its DescribeAlarms
# (the Query protocol the AWS provider uses) returns only an alarm's name, metric, namespace,
# threshold, comparison operator and evaluation periods, so every later plan reads the other
# arguments back as changed and updates all alarms again. ignore_changes cannot hide that (the
# provider then rejects the alarm for having no statistic), and local alarms notify no one.
# Without alarms there is no alarm topic (nor its KMS key) either. The topic, its policy, key and
# email subscriptions and the dashboard need no such switch: MiniStack 1.5.33 reads them back as
# given (a plan after an apply with create_alarms=true changes only the alarms).
# Delete this block if your emulator reads alarms back completely.
variable "create_alarms" {
  default = false
}

# No event bus policy on the emulator. MiniStack 1.5.33's PutPermission ignores the policy
# document and stores an "Allow events:PutEvents to *" statement instead, so every later plan
# shows the policy as changed; it does not evaluate bus policies on PutEvents either (with or
# without AUTH=true). The policy is proven by terraform/tests instead. Delete this block if your
# emulator stores bus policies as given.
variable "create_event_bus_policy" {
  default = false
}
