"""The one-buffer prototype's Lambda handler (`make bench-topology`, bench/topology.py).

Not part of the tool: topology.py adds this file to a copy of the stack's Lambda package, so it
runs in the emulator's Lambda workers with that package's datasync/ and lambdas/ on its path.
Each destination's processor takes the whole batch in turn; a record any of them failed is
retried (the others' copies are then sent again, which the idempotent stores absorb).
"""

import json
import os

from datasync.core.aws import client
from datasync.core.logging import configure_logging
from lambdas.config import LambdaConfig
from lambdas.handler import build_processor

_processors = None


def handle(event: dict, context: object) -> dict:
    global _processors
    if _processors is None:
        configure_logging("topology-one-buffer", "INFO")
        sqs = client("sqs", region=os.environ.get("AWS_REGION", "us-east-1"))
        _processors = []
        for destination, (queue, dlq) in json.loads(os.environ["TOPOLOGY_TARGETS"]).items():
            env = {
                **os.environ,
                "DATASYNC_DESTINATION": destination,
                "DATASYNC_DESTINATION_QUEUE_URL": queue,
                "DATASYNC_DEAD_LETTER_QUEUE_URL": dlq,
            }
            _processors.append(build_processor(LambdaConfig.from_env(env), sqs))
    failed = set()
    for processor in _processors:
        outcome = processor.handle_sqs_batch(event["Records"])
        failed |= {item["itemIdentifier"] for item in outcome["batchItemFailures"]}
    return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(failed)]}
