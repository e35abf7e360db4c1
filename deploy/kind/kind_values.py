"""Writes the kind values that depend on the running emulator (var/local/kind-values.yaml).

`make kind-up` runs it with the project's Python after `datasync up --infra-only` has
applied Terraform to the emulator and written var/local/datasync.env. The chart's
charts/datasync/ci/kind-values.yaml holds everything static; this file adds the bus name, the
region, the status page's sessions table and every queue URL (the intake's, each destination's
queue, DLQ and buffer queue), the URLs rewritten so that they point at the emulator as the pods
see it (the `aws-emulator` Service in datasync-dev) instead of the host's localhost.

    .venv/bin/python deploy/kind/kind_values.py var/local/datasync.env var/local/kind-values.yaml

The env file is read by the local layout's reader (datasync/local_layout.py), the destinations
are the contract's, and the mapping to chart values is deploy/chart_values.py's, shared with
deploy/values_from_outputs.py (staging, prod).
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # deploy/ is no package

from chart_values import Deployment, chart_values, write_values  # noqa: E402

from datasync.contract import DESTINATIONS  # noqa: E402
from datasync.local_layout import QUEUE_KINDS, queue_setting_name, read_env_file  # noqa: E402

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

    def url(setting: str) -> str | None:
        return in_cluster_url(env[setting], endpoint) if env.get(setting) else None

    queues = {
        d: {kind: found for kind in QUEUE_KINDS if (found := url(queue_setting_name(d, kind)))}
        for d in DESTINATIONS
    }
    return chart_values(
        Deployment(
            event_bus_name=env.get("DATASYNC_EVENT_BUS_NAME") or "datasync-bus",
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            queues=queues,
            sessions_table=env.get("DATASYNC_DASHBOARD_SESSIONS_TABLE"),
            intake_queue_url=url("DATASYNC_INTAKE_QUEUE_URL"),
            intake_dlq_url=url("DATASYNC_INTAKE_DLQ_URL"),
            endpoint=endpoint,
        )
    )


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
    write_values(target, values, [f"Written by deploy/kind/kind_values.py from {source}."])
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
