"""Shared fixtures: a fresh plugin manager per test, plugin settings, throwaway plugins, fake installed plugins,
a real redis-server."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pluggy
import pytest

import zerosite.plugins
import zerosite.rendering
from zerosite.plugins import LOCAL_PLUGIN_PACKAGE, PluginSettings

BUILTIN_MODULE_PLUGINS: frozenset[str] = frozenset(
    name for name in zerosite.plugins.BUILTIN_PLUGINS if name.startswith("zerosite.modules.")
)
"""Block these to test a plugin on its own, without the built-in M2 to M6."""

FAKE_PACKAGE_PREFIX = "zs_test_"
"""Top-level modules that tests put on ``sys.path`` start with this; they are forgotten after each test."""


# --- A fresh plugin manager per test ------------------------------------------------------------


def clear_plugin_caches() -> None:
    """Forget every cached plugin manager, module table and Jinja2 environment."""
    zerosite.rendering.forget_loaded_code()


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Build plugin managers from scratch in this test; restore the process's settings afterwards.

    Also clears the ``ZEROSITE_*`` variables of the shell running the tests, and forgets the
    modules that local plugin files and fake distributions imported.
    """
    for variable in (
        "ZEROSITE_PLUGINS_DIR",
        "ZEROSITE_DISABLE_PLUGINS",
        "ZEROSITE_TEMPLATES_DIR",
        "ZEROSITE_TRACE_PLUGINS",
    ):
        monkeypatch.delenv(variable, raising=False)
    saved_settings = zerosite.plugins._settings
    clear_plugin_caches()
    try:
        yield
    finally:
        clear_plugin_caches()
        zerosite.plugins._settings = saved_settings
        for name in [n for n in sys.modules if n.startswith((LOCAL_PLUGIN_PACKAGE, FAKE_PACKAGE_PREFIX))]:
            del sys.modules[name]


@contextlib.contextmanager
def _registered(pm: pluggy.PluginManager, **plugins: object) -> Iterator[pluggy.PluginManager]:
    try:
        for name, plugin in plugins.items():
            pm.register(plugin, name=name)
        yield pm
    finally:
        for name in plugins:
            if pm.get_plugin(name) is not None:
                pm.unregister(name=name)


@pytest.fixture
def registered(fresh_plugins: None) -> Callable[..., contextlib.AbstractContextManager[pluggy.PluginManager]]:
    """``with registered(pm, name=plugin, ...):`` throwaway plugins, unregistered whatever happens.

    Register them before the first ``get_modules``/``get_environment`` of those settings, which cache.
    """
    return _registered


# --- Plugin settings and a local plugins folder ------------------------------------------------


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    """An empty local plugins folder."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


@pytest.fixture
def write_file() -> Callable[[Path, str], Path]:
    """``write_file(path, text)``: write dedented UTF-8 text, making folders as needed."""

    def write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def plugin_settings(fresh_plugins: None, plugins_dir: Path) -> Callable[..., PluginSettings]:
    """``plugin_settings(builtin_modules=True, **fields)``: resolved settings, plugins folder ``plugins_dir``.

    ``builtin_modules=False`` blocks the built-in M2 to M6, to test a plugin on its own.
    """

    def make(*, builtin_modules: bool = True, **fields: Any) -> PluginSettings:
        fields.setdefault("plugins_dir", plugins_dir)
        fields["disabled"] = frozenset(fields.get("disabled", ())) | (
            frozenset() if builtin_modules else BUILTIN_MODULE_PLUGINS
        )
        return PluginSettings(**fields).resolved()

    return make


# --- Fake installed distributions (entry points of group "zerosite") ---------------------------


@pytest.fixture
def install_distribution(fresh_plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``install_distribution(name, entry_points, modules)``: a fake installed distribution.

    ``entry_points`` maps entry point names to ``module[:attr]`` (group ``zerosite``);
    ``modules`` maps file names relative to the site folder to their source. The folder,
    with ``<name>-1.0.dist-info/{METADATA,entry_points.txt}``, is prepended to ``sys.path``
    so ``importlib.metadata.entry_points(group="zerosite")`` finds it.
    """

    def install(name: str, entry_points: Mapping[str, str], modules: Mapping[str, str] | None = None) -> Path:
        site = tmp_path / f"site-{name}"
        info = site / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[zerosite]\n{lines}", encoding="utf-8")
        for relative, source in (modules or {}).items():
            path = site / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        monkeypatch.syspath_prepend(site)  # also invalidates the import and metadata caches
        return site

    return install


# --- A real redis-server on a free loopback port -----------------------------------------------


class RedisServer:
    """A throwaway ``redis-server`` (no persistence) on a free loopback port; ``stop()`` and ``start()`` again
    on the same port to take it away from a client and bring it back."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):  # another process may take the free port between choosing it and binding it
            self.port = self.port or _free_port()
            command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
            command += ["no", "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")]
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._ready():
                return
            self.stop()
            self.port = 0
        raise RuntimeError(f"redis-server would not start; see {self.folder / 'redis.log'}")

    def _ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for this test (skipped where Debian's ``redis-server`` or redis-py is missing)."""
    if not Path(REDIS_SERVER).is_file():
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[redis]')")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
