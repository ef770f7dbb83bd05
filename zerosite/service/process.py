"""A server as a child process on loopback, for tests and load runs: started, found ready, stopped by a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

import httpx

__all__ = ["ServerProcess", "ServerProcessError"]

_LISTENING = re.compile(r"Uvicorn running on (http://\S+)")


class ServerProcessError(RuntimeError):
    """The server did not come up (its log is in the message), or did not stop."""


class ServerProcess:
    """``zerosite serve ARGS --port 0`` (or ``command``, any uvicorn command line) in a child process.

    ``with ServerProcess(["--out", out]) as server:`` waits until ``/readyz`` answers 200 and stops the server
    with SIGTERM at the end (SIGKILL if it has not ended ``stop_timeout_s`` later). ``server.url`` is its base
    URL; ``server.log`` what it printed so far.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.command = list(command) if command else [sys.executable, "-m", "zerosite", "serve", "--port", "0", *args]
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self._lines: list[str] = []
        self._found = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def log(self) -> str:
        return "".join(self._lines)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Self:
        """:meth:`launch`, then :meth:`wait_ready`."""
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> Self:
        """Start the child process and read its log, without waiting for it to be ready (start several at once,
        then :meth:`wait_ready` on each)."""
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, name="server-log", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)
            found = _LISTENING.search(line)
            if found and not self.url:
                self.url = found[1]
                self._found.set()
        self._found.set()

    def wait_ready(self) -> None:
        """Until ``/readyz`` says ready; :class:`ServerProcessError` with the log if it does not in time."""
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        self._found.wait(self.ready_timeout_s)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.url:
                try:
                    if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise ServerProcessError(f"the server did not become ready: {' '.join(self.command)}\n{self.log}")

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and wait for the exit; its return code (128 + the signal after a clean stop)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerProcessError(f"the server did not stop within {self.stop_timeout_s:g} s\n{self.log}") from None
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.stop()
        finally:
            self.kill()
