"""bench/run.py: each accounting window is priced from its own counts."""

from bench.run import usage_of

ACCOUNTING = {
    "events": 3000,
    "counted": [{"service": "events", "operation": "PutEvents", "caller": "api", "calls": 300}],
    "lambda": {
        "invocations": 1900,
        "mean_duration_ms": 22.6,
        "memory_mb": 256,
        "architecture": "x86_64",
        "log_bytes": 1_890_000,
        "platform_log_bytes": 632_000,
        "system_log_level": "WARN",
    },
    "bus_sqs_targets": 3,
    "archive_retention_days": 30,
    "idle_calls_per_second": {"sqs:ReceiveMessage": 0.6},
}
ON_THE_BUS = {
    "events": 7500,
    "counted": [
        {"service": "events", "operation": "PutEvents", "caller": "bus_publisher", "calls": 750}
    ],
    "lambda": {**ACCOUNTING["lambda"], "invocations": 2260, "mean_duration_ms": 31.0},
}


def test_a_window_brings_its_own_events_calls_and_lambda_figures():
    usage = usage_of(ON_THE_BUS, ACCOUNTING)
    assert (usage.events, usage.counted) == (7500, ON_THE_BUS["counted"])
    assert (usage.lambda_invocations, usage.lambda_mean_duration_ms) == (2260, 31.0)
    # What the deployment is, not what a window did, comes from the accounting pass.
    assert (usage.bus_targets_per_event, usage.archive_retention_days) == (3, 30)
    assert usage.idle_calls_per_second == {"sqs:ReceiveMessage": 0.6}
    assert usage.lambda_system_log_level == "WARN"


def test_the_api_window_can_take_the_unproxied_duration():
    assert usage_of(ACCOUNTING, ACCOUNTING, 19.6).lambda_mean_duration_ms == 19.6
    assert usage_of(ACCOUNTING, ACCOUNTING).lambda_mean_duration_ms == 22.6
