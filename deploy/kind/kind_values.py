"""Writes the kind values that depend on the running emulator (var/local/kind-values.yaml).

`make kind-up` runs it with the project's Python after `datasync up --infra-only` has
applied Terraform to the emulator and written var/local/datasync.env. The chart's
charts/datasync/ci/kind-values.yaml holds everything static; this file adds the bus name, the
region, the status page's sessions table and the queue URLs, the URLs rewritten so that they
point at the emulator as the pods see it (the `aws-emulator` Service in datasync-dev) instead of
the host's localhost.

    .venv/bin/python deploy/kind/kind_values.py var/local/datasync.env var/local/kind-values.yaml

The output is JSON, which Helm and skaffold read as YAML. It runs with the project's Python:
the env file is read by the local layout's reader (datasync/local_layout.py), the destinations
are the contract's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from datasync.contract import DESTINATIONS
from datasync.local_layout import queue_setting_name, read_env_file

IN_CLUSTER_ENDPOINT = "http://aws-emulator.datasync-dev.svc.cluster.local:4566"


def in_cluster_url(url: str, endpoint: str = IN_CLUSTER_ENDPOINT) -> str:
    """The same queue path, on the emulator's in-cluster address."""
    target = urlsplit(endpoint)
    parts = urlsplit(url)
    if not parts.scheme or not parts.path.strip("/"):
        raise ValueError(f"not a queue URL: {url!r}")
    return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))


def kind_values(env: dict[str, str], endpoint: str = IN_CLUSTER_ENDPOINT) -> dict[str, object]:
    missing = [queue_setting_name(d) for d in DESTINATIONS if not env.get(queue_setting_name(d))]
    if missing:
        raise KeyError(f"missing in the env file: {', '.join(missing)}")
    config: dict[str, str] = {"awsEndpointUrl": endpoint}
    if env.get("DATASYNC_EVENT_BUS_NAME"):
        config["eventBusName"] = env["DATASYNC_EVENT_BUS_NAME"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        config["awsRegion"] = region
    if env.get("DATASYNC_DASHBOARD_SESSIONS_TABLE"):
        config["dashboardSessionsTable"] = env["DATASYNC_DASHBOARD_SESSIONS_TABLE"]
    values: dict[str, object] = {
        "config": config,
        "consumers": [
            {
                "destination": d,
                "queueUrl": in_cluster_url(env[queue_setting_name(d)], endpoint),
            }
            for d in DESTINATIONS
        ],
    }
    return values


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} <datasync.env> <kind-values.yaml>", file=sys.stderr)
        return 2
    source, target = Path(argv[1]), Path(argv[2])
    if not source.is_file():
        print(
            f"{source} not found: start the emulator first with"
            " `DATASYNC_EMULATOR_HOST=0.0.0.0 .venv/bin/datasync up --infra-only`",
            file=sys.stderr,
        )
        return 1
    try:
        values = kind_values(read_env_file(source))
    except (KeyError, ValueError) as exc:
        print(f"{source}: {exc}", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(values, indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
