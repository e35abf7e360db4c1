"""The one-buffer prototype's Lambda handler (`make bench-topology`, bench/topology.py).

Not part of the tool: topology.py adds this file to a copy of the stack's Lambda package, so it
runs in the emulator's Lambda workers with that package's datasync/ and lambdas/ on its path.
Each destination's processor takes the whole batch in turn; a record any of them failed is
retried (the others' copies are then sent again, which the idempotent stores absorb).
"""

import json
import os
from collections.abc import Mapping

from datasync.core.aws import client
from datasync.core.logging import configure_logging
from lambdas.config import LambdaConfig
from lambdas.handler import build_processor

_processors = None


def handle(event: dict, context: object) -> dict:
    global _processors
    if _processors is None:
        _processors = _build_processors(os.environ)
    failed = set()
    for processor in _processors:
        outcome = processor.handle_sqs_batch(event["Records"])
        failed |= {item["itemIdentifier"] for item in outcome["batchItemFailures"]}
    return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(failed)]}


def _build_processors(env: Mapping[str, str]) -> list:
    """One processor per destination of TOPOLOGY_TARGETS (topology.py sets it on the function),
    each configured by lambdas/config.py as that destination's own function would be."""
    configure_logging("topology-one-buffer", "INFO")
    configs = [
        LambdaConfig.from_env(
            {
                **env,
                "DATASYNC_DESTINATION": destination,
                "DATASYNC_DESTINATION_QUEUE_URL": queue,
                "DATASYNC_DEAD_LETTER_QUEUE_URL": dlq,
            }
        )
        for destination, (queue, dlq) in json.loads(env["TOPOLOGY_TARGETS"]).items()
    ]
    sqs = client("sqs", region=configs[0].aws_region)
    return [build_processor(config, sqs) for config in configs]
