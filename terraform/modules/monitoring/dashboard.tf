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

  # The intake's and every destination's function, with the rule that feeds its queue.
  functions = merge(
    { intake = { rule = var.intake.rule_name, function = var.intake.function_name } },
    { for key, pipeline in var.destinations : key => { rule = pipeline.rule_name, function = pipeline.function_name } },
  )

  # Metric lines ([namespace, metric, dimension, value, ..., options]) the intake's row and every
  # destination's share, by function: the rule's deliveries, the function's invocations and its
  # duration (against its timeout).
  rule_lines = {
    for key, names in local.functions : key => [
      for metric, label in {
        Invocations                    = "delivered"
        FailedInvocations              = "failed"
        InvocationsSentToDlq           = "sent to the DLQ"
        InvocationsFailedToBeSentToDlq = "lost"
      } : ["AWS/Events", metric, "EventBusName", var.event_bus_name, "RuleName", names.rule, { label = label }]
    ]
  }
  function_lines = {
    for key, names in local.functions : key => [
      for metric, label in { Invocations = "invocations", Errors = "errors", Throttles = "throttles" } :
      ["AWS/Lambda", metric, "FunctionName", names.function, { label = label }]
    ]
  }
  duration_lines = {
    for key, names in local.functions : key => [
      for stat in ["Average", "p99", "Maximum"] : ["AWS/Lambda", "Duration", "FunctionName", names.function, { stat = stat, label = stat }]
    ]
  }
  timeout_annotation = { horizontal = [{ label = "timeout", value = var.lambda_timeout_seconds * 1000 }] }

  # Rows of graphs, top to bottom; a row's graphs share its 24 columns equally, left to right.
  rows = concat(
    [
      {
        y       = 2
        columns = 3 # the third is the alarm widget, below
        graphs = [
          {
            title   = "Events on ${var.event_bus_name} matched by a rule"
            stat    = "Sum"
            metrics = [["AWS/Events", "MatchedEvents", "EventBusName", var.event_bus_name, { label = "matched events" }]]
          },
          {
            # EventBridge publishes its PutEvents metrics without dimensions: every bus of the region.
            title = "PutEvents (every bus of the account and region)"
            stat  = "Sum"
            metrics = [
              ["AWS/Events", "PutEventsApproximateCallCount", { label = "requests" }],
              ["AWS/Events", "PutEventsFailedEntriesCount", { label = "entries refused" }],
              ["AWS/Events", "PutEventsApproximateThrottledCount", { label = "requests throttled" }],
            ]
          },
        ]
      },
      {
        y       = local.intake_row
        columns = 4
        graphs = [
          { title = "intake: rule → ${var.intake.queue_name}", stat = "Sum", metrics = local.rule_lines.intake },
          {
            title = "intake: ${var.intake.queue_name} and ${var.intake.dlq_name}"
            stat  = "Maximum"
            metrics = [
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.intake.queue_name, { label = "waiting" }],
              ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", var.intake.queue_name, { label = "in a batch" }],
              ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.intake.queue_name, { label = "oldest (s)" }],
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.intake.dlq_name, { label = "dead letters" }],
            ]
          },
          { title = "intake: ${var.intake.function_name}", stat = "Sum", metrics = local.function_lines.intake },
          { title = "intake: duration (ms)", metrics = local.duration_lines.intake, annotations = local.timeout_annotation },
        ]
      },
    ],
    [
      for destination, pipeline in var.destinations : {
        y       = local.row_of_graphs[destination]
        columns = 6
        graphs = [
          { title = "${destination}: rule → ${pipeline.buffer_queue_name}", stat = "Sum", metrics = local.rule_lines[destination] },
          {
            title = "${destination}: queue depth"
            stat  = "Maximum"
            metrics = [
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", pipeline.buffer_queue_name, { label = "buffer waiting" }],
              ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", pipeline.buffer_queue_name, { label = "buffer in a batch" }],
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", pipeline.queue_name, { label = "queue waiting" }],
              ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", pipeline.queue_name, { label = "queue in flight" }],
            ]
          },
          {
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
          },
          {
            title   = "${destination}: ${pipeline.dlq_name}"
            stat    = "Maximum"
            metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", pipeline.dlq_name, { label = "dead letters" }]]
          },
          { title = "${destination}: ${pipeline.function_name}", stat = "Sum", metrics = local.function_lines[destination] },
          { title = "${destination}: transform duration (ms)", metrics = local.duration_lines[destination], annotations = local.timeout_annotation },
        ]
      }
    ],
  )

  header = {
    type   = "text"
    x      = 0
    y      = 0
    width  = 24
    height = 2
    properties = {
      markdown = "## ${var.name_prefix}: API → ${var.event_bus_name} → intake rule → intake queue → intake → destination queue → consumers\nThe intake's row, then one row per destination (its buffer queue and function take what the intake hands over, and replays), left to right in the order events flow. What each alarm means and the first command to run: *Alarms and dashboard* in terraform/README.md."
    }
  }

  graph_widgets = [
    for row in local.rows : [
      for index, graph in row.graphs : {
        type       = "metric"
        x          = index * 24 / row.columns
        y          = row.y
        width      = 24 / row.columns
        height     = local.graph_height
        properties = merge(local.graph_defaults, graph)
      }
    ]
  ]

  # Beside the bus's graphs; none without alarms.
  alarm_widget = [
    for alarms in [local.alarm_arns] : {
      type       = "alarm"
      x          = 16
      y          = 2
      width      = 8
      height     = local.graph_height
      properties = { title = "Alarms", alarms = alarms }
    } if length(alarms) > 0
  ]

  # The alarm widget closes the bus's row.
  dashboard_body = jsonencode({
    widgets = flatten([[local.header], local.graph_widgets[0], local.alarm_widget, slice(local.graph_widgets, 1, length(local.graph_widgets))])
  })

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
