"""A real loopback HTTP server of projects, with latency and fault injection, for tests and benchmarks."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["ProjectServer"]


class ProjectServer:
    """Serve ``GET /projects/<id>`` on 127.0.0.1 from a thread; use it as a context manager.

    ``projects`` maps an id to the raw JSON object to send (a list of raw objects is keyed by
    their ``"id"``). A ``str`` or ``bytes`` value is sent verbatim, to test malformed bodies.
    Every request first sleeps ``latency_s``; the first ``fail_first_n`` requests get 503;
    ``always_fail`` (a status such as 500) answers every request with that status; an unknown
    id or path gets 404. ``requests`` counts every request received. Nothing is logged.

    Two hostile servers for the fetch limits: ``drip_s`` sends each 200 body one byte at a time, that
    many seconds apart; ``pad_to_bytes`` pads each 200 body with trailing spaces (still valid JSON) to
    that many bytes, sent with chunked transfer encoding (no Content-Length, as from a server that does
    not know the length) and never held in memory. ``bytes_sent`` counts body bytes written.

    Example::

        with ProjectServer({"p1": raw}, latency_s=0.01) as server:
            source.open(SourceSettings(url=server.url))
    """

    def __init__(
        self,
        projects: Mapping[str, Any] | Iterable[Mapping[str, Any]] = (),
        *,
        latency_s: float = 0.020,
        fail_first_n: int = 0,
        always_fail: int | None = None,
        drip_s: float = 0.0,
        pad_to_bytes: int = 0,
    ) -> None:
        if isinstance(projects, Mapping):
            self.projects: dict[str, Any] = dict(projects)
        else:
            self.projects = {str(raw["id"]): raw for raw in projects}
        self.latency_s = latency_s
        self.fail_first_n = fail_first_n
        self.always_fail = always_fail
        self.drip_s = drip_s
        self.pad_to_bytes = pad_to_bytes
        self._sent = 0
        self._count = 0
        self._count_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> int:
        """How many requests the server has received so far."""
        with self._count_lock:
            return self._count

    @property
    def bytes_sent(self) -> int:
        """How many body bytes the server has written so far (all requests)."""
        with self._count_lock:
            return self._sent

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``; the server must be started."""
        if self._httpd is None:
            raise RuntimeError("ProjectServer is not running: use it in a with block or call start()")
        host, port = self._httpd.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    def start(self) -> ProjectServer:
        """Bind an ephemeral port and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="zerosite-project-server", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port; idle keep-alive connections die with their daemon threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> ProjectServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _next_request(self) -> int:
        with self._count_lock:
            self._count += 1
            return self._count

    def _chunked(self, status: int) -> bool:
        return status == 200 and self.pad_to_bytes > 0 and self.drip_s <= 0

    def _send_body(self, status: int, body: bytes, out: io.BufferedIOBase) -> None:
        """Write a body: at once, one byte per ``drip_s``, or padded to ``pad_to_bytes`` (200 only)."""
        pieces: Iterable[bytes] = [body]
        if status == 200 and self.drip_s > 0:
            pieces = (body[i : i + 1] for i in range(len(body)))
        elif self._chunked(status):
            pieces = itertools.chain([body], _padding(self.pad_to_bytes - len(body)))
        for piece in pieces:
            out.write(b"%x\r\n%s\r\n" % (len(piece), piece) if self._chunked(status) else piece)
            out.flush()
            with self._count_lock:
                self._sent += len(piece)
            if self.drip_s > 0:
                time.sleep(self.drip_s)
        if self._chunked(status):
            out.write(b"0\r\n\r\n")

    def _answer(self, path: str) -> tuple[int, bytes]:
        """Status and body for one request (after the latency)."""
        number = self._next_request()
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        if self.always_fail is not None:
            return self.always_fail, _error_body(self.always_fail)
        if number <= self.fail_first_n:
            return 503, _error_body(503)
        parts = urlsplit(path).path.split("/")
        if len(parts) != 3 or parts[1] != "projects" or unquote(parts[2]) not in self.projects:
            return 404, _error_body(404)
        raw = self.projects[unquote(parts[2])]
        if isinstance(raw, bytes):
            return 200, raw
        if isinstance(raw, str):
            return 200, raw.encode("utf-8")
        return 200, json.dumps(raw, ensure_ascii=False).encode("utf-8")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops SYNs under concurrent clients

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts in tests, pools closing) are expected; stay silent.
        pass


def _padding(size: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    while size > 0:
        yield b" " * min(chunk, size)
        size -= chunk


def _error_body(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return json.dumps({"error": phrase, "status": status}).encode("utf-8")


def _make_handler(server: ProjectServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a reused client really reuses connections
        timeout = 30  # idle keep-alive connections are dropped after this
        disable_nagle_algorithm = True  # headers and body go out in two writes: avoid the delayed-ACK stall

        def do_GET(self) -> None:  # name fixed by http.server
            status, body = server._answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            if server._chunked(status):
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            server._send_body(status, body, self.wfile)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
