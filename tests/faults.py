"""Faults to inject into a running pipeline: paused processes, a switchable network path, a
store file that is locked or cannot be written.

Used by the delivery-guarantee tests and `make soak`. Everything here acts from outside, the way
an operator's bad day does: signals to real processes, a TCP proxy between a client and the
emulator that can forward, refuse connections (nothing listening) or swallow them (a hung peer),
and the file system under a SQLite store.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def paused(pid: int, seconds: float) -> Iterator[None]:
    """SIGSTOP ``pid`` for ``seconds`` (it is always continued, even if the body fails)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


class SwitchableProxy:
    """A TCP forwarder to ``upstream`` whose mode can change while clients use it.

    forward  pass bytes both ways
    refuse   close the listening socket: new connections are refused; open ones are reset
    hang     accept and hold connections without forwarding a byte (a paused peer)
    """

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.mode = "forward"
        self._listener: socket.socket | None = None
        self._port = 0
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(128)
        listener.settimeout(0.2)
        self._port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def set_mode(self, mode: str) -> None:
        if mode not in ("forward", "refuse", "hang"):
            raise ValueError(mode)
        previous, self.mode = self.mode, mode
        if mode == "refuse" and self._listener is not None:
            self._listener.close()
            self._listener = None
            self._reset_all()
        elif mode != "refuse" and previous == "refuse":
            self._listen()
        if mode == "hang":
            self._reset_all()  # open connections would otherwise keep forwarding

    def _reset_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                conn.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed: mode refuse, or stopped
            with self._lock:
                self._conns.add(client)
            if self.mode == "hang":
                continue  # held open, never answered
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns.add(upstream)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set() and self.mode == "forward":
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        self._reset_all()


class FaultUnavailable(RuntimeError):
    """This machine cannot inject the fault (the message says why)."""


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """``path`` cannot be opened for writing, by anyone, until the block ends.

    Root ignores permission bits, so as root the file is made immutable (``chattr +i``, which
    needs CAP_LINUX_IMMUTABLE and a file system that has the flag; FaultUnavailable otherwise);
    anyone else gets a read-only file. Connections already open keep writing (their descriptors
    were opened before): the fault reaches a process when it opens the file again.
    """
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if made.returncode != 0:
            raise FaultUnavailable(f"chattr +i {path} failed: {made.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    mode = path.stat().st_mode
    path.chmod(0o444)
    try:
        yield
    finally:
        path.chmod(mode)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """SQLite's write lock on ``path`` held (BEGIN EXCLUSIVE) until the block ends: writers wait
    for it, then fail with "database is locked"; WAL readers still read."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()
