"""Lambda entry points: ``lambdas.handler.intake`` (the intake function, every live event for
every destination) and ``lambdas.handler.handle`` (one function per destination: what the
intake hands over, and replays).

The handlers stay small: each builds its processor once per execution environment (on the
first invocation, not at import), then hands it the event.
"""

from __future__ import annotations

from typing import Any

from datasync.core.aws import client
from datasync.core.logging import configure_logging, log_context
from datasync.core.transforms import transform_for
from lambdas.config import IntakeConfig, LambdaConfig
from lambdas.intake import IntakeProcessor, Route
from lambdas.processor import TransformProcessor

_processor: TransformProcessor | None = None
_intake: IntakeProcessor | None = None


def lambda_sqs_client(region: str) -> Any:
    """One attempt per call: ``send_batch`` retries (3 tries, jittered), and a record that still
    fails comes back from its queue. The SDK's own retries on top would multiply them: with the
    endpoint gone, an invocation then spent minutes retrying instead of seconds."""
    return client("sqs", region=region, attempts=1)


def build_processor(config: LambdaConfig, sqs: Any = None) -> TransformProcessor:
    sqs = sqs or lambda_sqs_client(config.aws_region)
    return TransformProcessor(
        destination=config.destination,
        transform=transform_for(config.destination, analytics_hash_key=config.analytics_hash_key),  # type: ignore[arg-type]
        sqs=sqs,
        destination_queue_url=config.destination_queue_url,
        dead_letter_queue_url=config.dead_letter_queue_url,
        max_receive_count=config.max_receive_count,
        buffer_queue_url=config.buffer_queue_url,
    )


def build_intake(config: IntakeConfig, sqs: Any = None) -> IntakeProcessor:
    routes = [
        Route(
            destination=destination,
            transform=transform_for(destination, analytics_hash_key=config.analytics_hash_key),  # type: ignore[arg-type]
            queue_url=route.queue_url,
            buffer_queue_url=route.buffer_queue_url,
        )
        for destination, route in sorted(config.routes.items())
    ]
    return IntakeProcessor(routes=routes, sqs=sqs or lambda_sqs_client(config.aws_region))


def _get_processor() -> TransformProcessor:
    global _processor
    if _processor is None:
        config = LambdaConfig.from_env()
        configure_logging(f"datasync-lambda-{config.destination}", config.log_level)
        _processor = build_processor(config)
    return _processor


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = _get_processor()
    with log_context(request_id=getattr(context, "aws_request_id", None)):
        if "Records" in event:
            return processor.handle_sqs_batch(event["Records"])
        return processor.handle_eventbridge_event(event)


def intake(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _intake
    if _intake is None:
        config = IntakeConfig.from_env()
        configure_logging("datasync-lambda-intake", config.log_level)
        _intake = build_intake(config)
    with log_context(request_id=getattr(context, "aws_request_id", None)):
        return _intake.handle_sqs_batch(event["Records"])
