"""A throwaway PostgreSQL server (initdb + pg_ctl on 127.0.0.1) that tests can also restart,
crash and keep down, the way a database's bad day goes (a restart, a crash, a failover).

PostgreSQL refuses to run as root: as root, every pg_ctl call runs as ``nobody`` (setpriv).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.pipeline import free_port

USER = "datasync"  # the superuser initdb creates; trust authentication on 127.0.0.1


def pg_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if not found:
        raise FileNotFoundError(
            f"{name} not found: install the PostgreSQL server (e.g. apt-get install postgresql)"
        )
    return str(found)


@dataclass
class PostgresServer:
    data: Path
    port: int
    run_as: list[str]

    @classmethod
    def create(cls, data: Path) -> PostgresServer:
        """initdb a new cluster in ``data`` (not started)."""
        data.mkdir(parents=True, exist_ok=True)
        server = cls(data, free_port(), _unprivileged_prefix(data))
        subprocess.run(
            [*server.run_as, pg_binary("initdb"), "-D", str(data), "-U", USER, "--auth=trust",
             "-E", "UTF8"],
            check=True, capture_output=True,
        )  # fmt: skip
        return server

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._pg_ctl("start", "-l", str(self.data / "server.log"), "-o", self._options())

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are told (57P01) and the server shuts down cleanly; ``immediate``:
        every process quits at once, as in a crash (recovery runs at the next start)."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("restart", "-m", mode, "-l", str(self.data / "server.log"),
                     "-o", self._options())  # fmt: skip

    def _options(self) -> str:
        return f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, pg_binary("pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip


def _unprivileged_prefix(data: Path) -> list[str]:
    """The command prefix that runs pg_ctl as a throwaway user when we are root."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam("nobody")
    os.chmod(data, 0o700)
    os.chown(data, user.pw_uid, user.pw_gid)
    for parent in data.parents:  # let the user reach its data directory
        if parent == Path("/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]


@contextlib.contextmanager
def running_postgres(data: Path) -> Iterator[PostgresServer]:
    """A new server in ``data``, started; crashed at the end (there is nothing to keep).

    Raises FileNotFoundError when the PostgreSQL server binaries are not installed."""
    server = PostgresServer.create(data)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop("immediate")
