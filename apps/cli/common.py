"""What the operator commands share: settings, AWS clients, stores, tables and progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from pydantic import ValidationError

from datasync.settings import Settings, config_error


def settings() -> Settings:
    try:
        return Settings.load()
    except ValidationError as exc:
        raise config_error(exc) from None  # exit 5, naming each wrong variable


def aws(service: str, settings: Settings) -> Any:
    from datasync.core.aws import client

    return client(
        service, region=settings.aws_region, endpoint_url=settings.aws_endpoint_url, read_timeout=5
    )


def sqs(settings: Settings) -> Any:
    return aws("sqs", settings)


def open_destination_store(settings: Settings, destination: str) -> Any:
    from datasync.core.stores import open_store

    return open_store(
        destination,  # type: ignore[arg-type]
        database_url=settings.database_dsn(),
        store_dir=settings.store_dir,
        read_only=True,  # the CLI reads stores; only consumers create their tables
    )


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain text table for people: one header, columns as wide as their widest cell."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(r[i]) for r in cells]) for i, column in enumerate(columns)]
    for line in [list(columns), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def age(seconds: float | None) -> str | None:
    """12s, 4m05s, 3h02m, 2d04h: how long ago, short."""
    if seconds is None:
        return None
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


class Progress:
    """A tqdm bar on stderr when it is a terminal; otherwise a plain line at most once a second
    (and at the end), so a log of a scripted run shows progress without a line per item."""

    def __init__(self, description: str, total: int | None, stream: TextIO | None = None):
        self.description, self.total, self.done = description, total, 0
        self.stream = stream or sys.stderr
        self._bar: Any = None
        self._last_line = 0.0
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, file=self.stream, unit="msg")

    def update(self, count: int = 1, **postfix: Any) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
        elif time.monotonic() - self._last_line >= 1:
            self._line(postfix)

    def close(self, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._line(postfix)

    def _line(self, postfix: dict[str, Any]) -> None:
        self._last_line = time.monotonic()
        of = f"/{self.total}" if self.total is not None else ""
        extra = "".join(f" {k}={v}" for k, v in postfix.items())
        print(f"{self.description}: {self.done}{of}{extra}", file=self.stream, flush=True)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Progress]:
    bar = Progress(description, total)
    try:
        yield bar
    finally:
        bar.close()
