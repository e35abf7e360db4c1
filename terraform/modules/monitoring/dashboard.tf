################################################################################
# Dashboard: the bus on top, then the intake, then one row per destination, in the order events flow
################################################################################

locals {
  dashboard_name = var.name_prefix

  # CloudWatch grid: 24 columns. The header is 2 rows high, every graph 6.
  graph_height = 6
  # The bus, then the intake (every live event passes it first), then the destinations.
  intake_row = 2 + local.graph_height
  row_of_graphs = {
    for index, destination in sort(keys(var.destinations)) : destination => 2 + local.graph_height * (index + 2)
  }

  alarm_arns = [for alarm in aws_cloudwatch_metric_alarm.this : alarm.arn]

  graph_defaults = {
    view    = "timeSeries"
    stacked = false
    region  = local.region
    period  = 60
    yAxis   = { left = { min = 0 } }
  }

  bus_widgets = concat(
    [
      {
        type   = "text"
        x      = 0
        y      = 0
        width  = 24
        height = 2
        properties = {
          markdown = "## ${var.name_prefix}: API → ${var.event_bus_name} → intake rule → intake queue → intake → destination queue → consumers\nThe intake's row, then one row per destination (its buffer queue and function take what the intake hands over, and replays), left to right in the order events flow. What each alarm means and the first command to run: *Alarms and dashboard* in terraform/README.md."
        }
      },
      {
        type   = "metric"
        x      = 0
        y      = 2
        width  = 8
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          title   = "Events on ${var.event_bus_name} matched by a rule"
          stat    = "Sum"
          metrics = [["AWS/Events", "MatchedEvents", "EventBusName", var.event_bus_name, { label = "matched events" }]]
        })
      },
      {
        type   = "metric"
        x      = 8
        y      = 2
        width  = 8
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          # EventBridge publishes its PutEvents metrics without dimensions: every bus of the region.
          title = "PutEvents (every bus of the account and region)"
          stat  = "Sum"
          metrics = [
            ["AWS/Events", "PutEventsApproximateCallCount", { label = "requests" }],
            ["AWS/Events", "PutEventsFailedEntriesCount", { label = "entries refused" }],
            ["AWS/Events", "PutEventsApproximateThrottledCount", { label = "requests throttled" }],
          ]
        })
      },
    ],
    [
      for alarms in [local.alarm_arns] : {
        type   = "alarm"
        x      = 16
        y      = 2
        width  = 8
        height = local.graph_height
        properties = {
          title  = "Alarms"
          alarms = alarms
        }
      } if length(alarms) > 0
    ],
  )

  intake_widgets = [
    {
      type   = "metric"
      x      = 0
      y      = local.intake_row
      width  = 6
      height = local.graph_height
      properties = merge(local.graph_defaults, {
        title = "intake: rule → ${var.intake.queue_name}"
        stat  = "Sum"
        metrics = [
          for metric, label in {
            Invocations                    = "delivered"
            FailedInvocations              = "failed"
            InvocationsSentToDlq           = "sent to the DLQ"
            InvocationsFailedToBeSentToDlq = "lost"
          } : ["AWS/Events", metric, "EventBusName", var.event_bus_name, "RuleName", var.intake.rule_name, { label = label }]
        ]
      })
    },
    {
      type   = "metric"
      x      = 6
      y      = local.intake_row
      width  = 6
      height = local.graph_height
      properties = merge(local.graph_defaults, {
        title = "intake: ${var.intake.queue_name} and ${var.intake.dlq_name}"
        stat  = "Maximum"
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.intake.queue_name, { label = "waiting" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", var.intake.queue_name, { label = "in a batch" }],
          ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.intake.queue_name, { label = "oldest (s)" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.intake.dlq_name, { label = "dead letters" }],
        ]
      })
    },
    {
      type   = "metric"
      x      = 12
      y      = local.intake_row
      width  = 6
      height = local.graph_height
      properties = merge(local.graph_defaults, {
        title = "intake: ${var.intake.function_name}"
        stat  = "Sum"
        metrics = [
          for metric, label in { Invocations = "invocations", Errors = "errors", Throttles = "throttles" } :
          ["AWS/Lambda", metric, "FunctionName", var.intake.function_name, { label = label }]
        ]
      })
    },
    {
      type   = "metric"
      x      = 18
      y      = local.intake_row
      width  = 6
      height = local.graph_height
      properties = merge(local.graph_defaults, {
        title = "intake: duration (ms)"
        metrics = [
          for stat in ["Average", "p99", "Maximum"] :
          ["AWS/Lambda", "Duration", "FunctionName", var.intake.function_name, { stat = stat, label = stat }]
        ]
        annotations = {
          horizontal = [{ label = "timeout", value = var.lambda_timeout_seconds * 1000 }]
        }
      })
    },
  ]

  destination_widgets = flatten([
    for destination, pipeline in var.destinations : [
      {
        type   = "metric"
        x      = 0
        y      = local.row_of_graphs[destination]
        width  = 4
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          title = "${destination}: rule → ${pipeline.buffer_queue_name}"
          stat  = "Sum"
          metrics = [
            for metric, label in {
              Invocations                    = "delivered"
              FailedInvocations              = "failed"
              InvocationsSentToDlq           = "sent to the DLQ"
              InvocationsFailedToBeSentToDlq = "lost"
            } : ["AWS/Events", metric, "EventBusName", var.event_bus_name, "RuleName", pipeline.rule_name, { label = label }]
          ]
        })
      },
      {
        type   = "metric"
        x      = 4
        y      = local.row_of_graphs[destination]
        width  = 4
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          title = "${destination}: queue depth"
          stat  = "Maximum"
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", pipeline.buffer_queue_name, { label = "buffer waiting" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", pipeline.buffer_queue_name, { label = "buffer in a batch" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", pipeline.queue_name, { label = "queue waiting" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", pipeline.queue_name, { label = "queue in flight" }],
          ]
        })
      },
      {
        type   = "metric"
        x      = 8
        y      = local.row_of_graphs[destination]
        width  = 4
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          title = "${destination}: oldest message (s)"
          stat  = "Maximum"
          metrics = [
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", pipeline.buffer_queue_name, { label = "buffer" }],
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", pipeline.queue_name, { label = "queue" }],
          ]
          annotations = {
            horizontal = [
              { label = "buffer alarm", value = var.buffer_oldest_message_alarm_seconds },
              { label = "queue alarm", value = var.oldest_message_alarm_seconds },
            ]
          }
        })
      },
      {
        type   = "metric"
        x      = 12
        y      = local.row_of_graphs[destination]
        width  = 4
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          title   = "${destination}: ${pipeline.dlq_name}"
          stat    = "Maximum"
          metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", pipeline.dlq_name, { label = "dead letters" }]]
        })
      },
      {
        type   = "metric"
        x      = 16
        y      = local.row_of_graphs[destination]
        width  = 4
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          title = "${destination}: ${pipeline.function_name}"
          stat  = "Sum"
          metrics = [
            for metric, label in { Invocations = "invocations", Errors = "errors", Throttles = "throttles" } :
            ["AWS/Lambda", metric, "FunctionName", pipeline.function_name, { label = label }]
          ]
        })
      },
      {
        type   = "metric"
        x      = 20
        y      = local.row_of_graphs[destination]
        width  = 4
        height = local.graph_height
        properties = merge(local.graph_defaults, {
          title = "${destination}: transform duration (ms)"
          metrics = [
            for stat in ["Average", "p99", "Maximum"] :
            ["AWS/Lambda", "Duration", "FunctionName", pipeline.function_name, { stat = stat, label = stat }]
          ]
          annotations = {
            horizontal = [{ label = "timeout", value = var.lambda_timeout_seconds * 1000 }]
          }
        })
      },
    ]
  ])

  dashboard_body = jsonencode({ widgets = concat(local.bus_widgets, local.intake_widgets, local.destination_widgets) })

  console_hosts = {
    aws        = "console.aws.amazon.com"
    aws-cn     = "console.amazonaws.cn"
    aws-us-gov = "console.amazonaws-us-gov.com"
  }
}

resource "aws_cloudwatch_dashboard" "this" {
  count = var.create_dashboard ? 1 : 0

  dashboard_name = local.dashboard_name
  dashboard_body = local.dashboard_body
}
