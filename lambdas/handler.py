"""Lambda entry point: ``lambdas.handler.handle`` (one function per destination).

The handler stays small: it builds the processor once per execution environment (on the
first invocation, not at import), then routes the event by its shape.
"""

from __future__ import annotations

from typing import Any

from datasync.core.aws import client
from datasync.core.logging import configure_logging, log_context
from datasync.core.transforms import transform_for
from lambdas.config import LambdaConfig
from lambdas.processor import TransformProcessor

_processor: TransformProcessor | None = None


def build_processor(config: LambdaConfig, sqs: Any = None) -> TransformProcessor:
    sqs = sqs or client("sqs", region=config.aws_region)
    return TransformProcessor(
        destination=config.destination,
        transform=transform_for(config.destination, analytics_hash_key=config.analytics_hash_key),  # type: ignore[arg-type]
        sqs=sqs,
        destination_queue_url=config.destination_queue_url,
        dead_letter_queue_url=config.dead_letter_queue_url,
        max_receive_count=config.max_receive_count,
        buffer_queue_url=config.buffer_queue_url,
    )


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
