"""Running the server under uvicorn for ``zerosite serve``: the port checked before anything starts, and the signal
that stopped it told, so that the command exits as ``generate`` does (130 for Ctrl-C, 143 for SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["PortUnavailable", "ServerFailed", "check_port", "serve_until_stopped"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class PortUnavailable(Exception):
    """The server could not listen where it was asked to."""


class ServerFailed(Exception):
    """The server stopped before it served (its start-up failed; the log says why)."""


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` as uvicorn will, and let it go: a port in use (or not ours to take) is said here, before the
    workers start and warm, not after ("workers ready", then a bind error and exit 3).

    :raises PortUnavailable: naming the address and the cause.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own bind
            probe.bind(address)
    except OSError as error:  # socket.gaierror included: a host that names no address
        reason = error.strerror or str(error)
        raise PortUnavailable(f"cannot listen on {host}:{port}: {reason}") from None


def serve_until_stopped(config: Any) -> int | None:
    """Run the server ``config`` (a ``uvicorn.Config``) until it stops; the signal that stopped it, if one did.

    uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again with the handler it found (one
    server process), or ends its supervisor quietly (``config.workers`` > 1): either way the command would exit 0
    for a Ctrl-C. Here the signal is noted instead and handed back.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    stopped_by: list[int] = []

    class Supervisor(Multiprocess):
        def handle_int(self) -> None:
            stopped_by.append(signal.SIGINT)
            super().handle_int()

        def handle_term(self) -> None:
            stopped_by.append(signal.SIGTERM)
            super().handle_term()

    with _noting_signals(stopped_by.append):
        if config.workers > 1:
            Supervisor(config, sockets=[config.bind_socket()]).run()
        else:
            server = uvicorn.Server(config)
            with contextlib.suppress(KeyboardInterrupt):  # a signal before uvicorn took over: noted, and stopped
                server.run()
            if not server.started and not stopped_by:
                raise ServerFailed("the server stopped before it served; the log above says why")
    return stopped_by[-1] if stopped_by else None


@contextlib.contextmanager
def _noting_signals(note: Callable[[int], None]) -> Iterator[None]:
    """SIGINT and SIGTERM noted while the block runs: uvicorn takes them over while it serves and, once it has shut
    down, raises them again into these handlers. One arriving before it takes over stops the block
    (KeyboardInterrupt)."""

    def noted(signum: int, frame: object) -> None:
        note(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, noted) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
