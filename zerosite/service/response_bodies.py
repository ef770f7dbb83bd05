"""``GET /v1/reports``'s response bodies kept in memory: each report file read once, hashed (its ETag) and
compressed on demand. Not the report cache (``zerosite.caches``, ``--cache``): that one saves making a report;
this one saves reading and compressing a file already made."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import brotli

from zerosite.files import ReportFiles
from zerosite.rendering import REPORT_POLICY
from zerosite.service.config import LIMITS
from zerosite.store import StoreError, WrittenReports

__all__ = ["BodyAnswer", "ReportFile", "ResponseBodyCache", "answer_from_memory", "choose_encoding", "etag_matches"]

GZIP_LEVEL = 6
BROTLI_QUALITY = 5
"""Brotli's quality 11 takes tens of milliseconds on a report; 5 compresses about as well as gzip -9, faster."""


@dataclass
class ReportFile:
    """One report's bytes, its SHA-256 (the ETag) and its compressed forms, made when first asked for."""

    key: tuple[str, str]
    """``(project_id, module)``."""
    path: Path
    identity: tuple[int, int, int]
    """``(inode, size, mtime_ns)`` of the file these bytes were read from."""
    data: bytes
    sha256: str
    encoded: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(body) for body in self.encoded.values())


def _compress(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        compressed: bytes = brotli.compress(data, quality=BROTLI_QUALITY)
        return compressed
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


class ResponseBodyCache:
    """The bodies ``GET /v1/reports`` answers with, per report file under one output folder: read and hashed once
    while the file is unchanged, each encoding compressed once; at most ``max_bytes`` kept, least recent dropped.

    A file replaced on disk (another process made the report again) is noticed by its inode, size and mtime. A file
    the index says failed when last made (:meth:`WrittenReports.failed`: it is from an earlier input) is not served.
    """

    def __init__(self, out_dir: Path, max_bytes: int, db_path: Path | None = None) -> None:
        self.files = ReportFiles(Path(out_dir).resolve())
        self.index = WrittenReports(self.files.out_dir, db_path)
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], ReportFile] = OrderedDict()
        """By ``(project_id, module)``: only names that :meth:`path` accepted are ever keys."""
        self._bytes = 0
        self._lock = threading.Lock()

    def path(self, project_id: str, module: str) -> Path | None:
        """Where the report would be, or ``None`` for an id or module name that could leave the folder."""
        try:
            return self.files.path(project_id, module)
        except StoreError:
            return None

    def get(self, project_id: str, module: str) -> ReportFile | None:
        """The report as on disk now, or ``None`` when there is none (or the id is not a safe one)."""
        path = self.path(project_id, module)
        if path is None:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        key = (project_id, module)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.identity == identity:
                self._entries.move_to_end(key)
                return entry
        if self.index.failed(project_id, module):
            return None
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                data = handle.read()
        except OSError:
            return None
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        entry = ReportFile(key, path, identity, data, hashlib.sha256(data).hexdigest())
        self._keep(key, entry)
        return entry

    def forget(self, project_id: str, module: str) -> None:
        """Drop the kept body of a report that failed when made again: its file, unchanged, is from another input."""
        with self._lock:
            self._drop((project_id, module))

    def close(self) -> None:
        self.index.close()

    def fresh(self, project_id: str, module: str) -> ReportFile | None:
        """The kept entry of this report if its file is unchanged since it was read, else ``None`` (then
        :meth:`get`): one dictionary lookup and one ``stat``, no reading or hashing, so the event loop may call it."""
        key = (project_id, module)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            stat = os.stat(entry.path)
        except OSError:
            return None
        if (stat.st_ino, stat.st_size, stat.st_mtime_ns) != entry.identity:
            return None
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        return entry

    def encoded(self, entry: ReportFile, encoding: str) -> bytes:
        """The report's body in ``encoding`` (``identity``, ``gzip`` or ``br``), compressed once and kept."""
        if encoding == "identity":
            return entry.data
        found = entry.encoded.get(encoding)
        if found is not None:
            return found
        body = _compress(entry.data, encoding)
        with self._lock:
            if encoding not in entry.encoded:
                entry.encoded[encoding] = body
                if self._entries.get(entry.key) is entry:
                    self._bytes += len(body)
                    self._evict()
        return entry.encoded[encoding]

    def _keep(self, key: tuple[str, str], entry: ReportFile) -> None:
        with self._lock:
            self._drop(key)
            if entry.size > self.max_bytes:
                return
            self._entries[key] = entry
            self._bytes += entry.size
            self._evict()

    def _drop(self, key: tuple[str, str]) -> None:
        """Forget ``key``'s kept body, if any (the lock held)."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.size


def choose_encoding(accept_encoding: str) -> str:
    """``br``, ``gzip`` or ``identity``: the one the client prefers by its ``q`` values (``q=0`` refuses one), br
    before gzip where they tie, either before ``identity`` unless the client names identity with a higher ``q``."""
    accepted: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        quality = 1.0
        params = params.strip().replace(" ", "")
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if name:
            accepted[name] = quality
    qualities = {encoding: accepted.get(encoding, accepted.get("*", 0.0)) for encoding in ("br", "gzip")}
    best = max(qualities, key=qualities.__getitem__)  # the first of a tie: br
    return best if qualities[best] > 0 and qualities[best] >= accepted.get("identity", 0.0) else "identity"


def etag_matches(if_none_match: str, sha256: str) -> bool:
    """Whether an ``If-None-Match`` header names this report's ETag (weak comparison, ``*`` included)."""
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == sha256:
            return True
    return False


@dataclass(frozen=True)
class BodyAnswer:
    """What ``GET /v1/reports/{project_id}/{module}`` answers: 200 with the body, or 304."""

    status: int
    headers: dict[str, str]
    body: bytes


def answer_from_memory(entry: ReportFile, accept_encoding: str, if_none_match: str) -> BodyAnswer | None:
    """The answer to a GET of ``entry`` when it takes no work: a 304, or a 200 whose body is in memory in the
    encoding the client takes. ``None`` when that body must be compressed first (:meth:`ResponseBodyCache.encoded`,
    off the event loop)."""
    encoding = choose_encoding(accept_encoding)
    etag = f'"{entry.sha256}"' if encoding == "identity" else f'W/"{entry.sha256}"'
    headers = {"ETag": etag, "Cache-Control": LIMITS.cache_control, "Vary": "Accept-Encoding"}
    if etag_matches(if_none_match, entry.sha256):
        return BodyAnswer(304, headers, b"")
    body = entry.data if encoding == "identity" else entry.encoded.get(encoding)
    if body is None:
        return None
    headers["Content-Type"] = "text/html; charset=utf-8"
    headers["Content-Security-Policy"] = REPORT_POLICY
    if encoding != "identity":
        headers["Content-Encoding"] = encoding
    return BodyAnswer(200, headers, body)
