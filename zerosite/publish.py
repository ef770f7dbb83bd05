"""``zerosite publish``: the indexed reports as a static site for a CDN, with client-side search."""

from __future__ import annotations

import fcntl
import functools
import gzip
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

import brotli
import jinja2

from zerosite.files import ReportFiles
from zerosite.rendering import REPORT_POLICY
from zerosite.store import ReportRow, StoreError, recent_reports

__all__ = ["MANIFEST", "PublishError", "PublishSettings", "PublishSummary", "publish_site"]

MANIFEST = ".zerosite-publish.json"
"""The file in a published folder that lists what publish wrote there (and may remove again)."""
LOCK = ".zerosite-publish.lock"
TEMPORARY = re.compile(r"\..+\.[0-9]+\.tmp")
"""The names of publish's temporary files, ``.NAME.PID.tmp`` beside the file ``NAME`` being written."""
ALL_ROWS = 1 << 62
SEARCH_INDEX_GLOBAL = "zerositeSearchIndex"
"""The global that the search index's script sets, for ``search.js``."""


class PublishError(Exception):
    """The site cannot be published: the index cannot be read, the folder is not one publish may write, or a file
    in it cannot be written or removed."""


@dataclass(frozen=True)
class PublishSettings:
    """How the site is written and how long a CDN and browsers may keep each kind of file."""

    asset_max_age_s: int = 31_536_000
    """Content-hashed assets (CSS, JS, the search index): a year, immutable."""
    html_max_age_s: int = 300
    """The index page and the reports: five minutes, then revalidated."""
    gzip_level: int = 9
    brotli_quality: int = 11
    """For the index page and the assets, compressed once per change."""
    report_brotli_quality: int = 7
    """For the reports, thousands of them: nearly the size of 11 at a twentieth of the time."""
    hash_chars: int = 12
    """Hex digits of SHA-256 in an asset's name."""


@dataclass
class PublishSummary:
    """What one publish did."""

    folder: Path
    reports: int = 0
    projects: int = 0
    written: int = 0
    """Files written (each report, asset and page, and their ``.gz`` and ``.br``)."""
    unchanged: int = 0
    """Files already there with the same bytes: left alone."""
    removed: int = 0
    """Files of an earlier publish that are gone from the index."""
    skipped: list[str] = field(default_factory=list)
    """Indexed reports not published, each with why (file missing, changed since indexed, unsafe path)."""
    kept: int = 0
    """Skipped reports whose copy from an earlier publish stays on the site, and in its search."""
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """The exit code for the command: 1 when a report was skipped (the site lacks it, or has an older copy), else
        0, so that a deploy script sees that the site is not yet the whole index."""
        return 1 if self.skipped else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "reports": self.reports,
            "projects": self.projects,
            "files_written": self.written,
            "files_unchanged": self.unchanged,
            "files_removed": self.removed,
            "skipped": self.skipped,
            "kept": self.kept,
            "wall_s": round(self.wall_s, 3),
        }


def publish_site(
    db_path: Path,
    folder: Path,
    out_dir: Path | None = None,
    titles: Mapping[str, str] | None = None,
    settings: PublishSettings = PublishSettings(),
) -> PublishSummary:
    """Write the written reports of the index at ``db_path`` as a static site in ``folder``.

    :param out_dir: the output folder the index's paths are relative to (default: the index's folder).
    :param titles: each module's title, in the order reports are listed (others follow by name).

    Every file is written atomically (a temporary file, then ``os.replace``) and only when its bytes
    change; the content-hashed assets first, then the reports, then ``index.html`` last, so a visitor
    never gets a page that names a file not there yet. Files of the previous publish that the index no
    longer has are removed afterwards; the previous publish's assets are kept one more round, for pages
    still cached. A report still indexed but skipped (see :attr:`PublishSummary.skipped`) keeps the copy an
    earlier publish made. ``folder`` must be new, empty or a folder publish wrote (it holds :data:`MANIFEST`).

    :raises PublishError: the index cannot be read, ``folder`` is not one publish may write, or a file in it cannot
        be written or removed (every ``OSError``, named with its file and cause).
    """
    started = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path(db_path).parent
    try:
        rows = [row for row in recent_reports(Path(db_path), ALL_ROWS) if row.status == "written" and row.path]
    except StoreError as error:
        raise PublishError(str(error)) from error
    site = _Site(Path(folder), settings)
    summary = PublishSummary(folder=site.root)
    try:
        with site.locked():
            _publish_locked(site, rows, out, titles or {}, summary)
    except OSError as error:  # writes, removals and the lock name their own file; this names what else failed
        raise PublishError(f"cannot publish to {site.root}: {_describe(error)}") from error
    summary.written, summary.unchanged = site.written, site.unchanged
    summary.wall_s = time.perf_counter() - started
    return summary


def _publish_locked(
    site: _Site, rows: list[ReportRow], out: Path, titles: Mapping[str, str], summary: PublishSummary
) -> None:
    """Publish ``rows`` into ``site``, whose lock this process holds, counting in ``summary``."""
    settings = site.settings
    site.remove_temporaries()
    site.claim()
    old = site.read_manifest()
    order = {name: i for i, name in enumerate(titles)}
    rows.sort(key=lambda r: (r.project_id, order.get(r.module, len(order)), r.module))
    projects = _publish_reports(site, rows, ReportFiles(out.resolve()), set(old.get("files", [])), summary)
    summary.projects = len(projects)
    assets = {
        "css": site.write_asset("site", ".css", _resource("site.css")),
        "js": site.write_asset("search", ".js", _resource("search.js")),
        "index": site.write_asset("index", ".js", _search_script(projects, titles)),
    }
    site.write_plain("_headers", _headers(settings).encode("utf-8"))
    page = _index_page(assets, summary.projects, summary.reports + summary.kept)
    site.write("index.html", page, settings.brotli_quality)  # last: everything it names is there
    summary.removed = site.finish(old)


def _publish_reports(
    site: _Site, rows: list[ReportRow], files: ReportFiles, published_before: set[str], summary: PublishSummary
) -> dict[str, tuple[str, list[str]]]:
    """Write each report of ``rows`` into ``site``; the projects on the site: ``{id: (address, modules)}``.

    A report that cannot be published now (its file changed since it was indexed, or missing) is still in the
    index: the copy an earlier publish made stays, and in the search, rather than be taken off the live site.
    """
    projects: dict[str, tuple[str, list[str]]] = {}
    for row in rows:
        relative = f"reports/{row.project_id}/{row.module}.html"
        try:
            site.write(relative, _report_html(files, row), site.settings.report_brotli_quality)
            summary.reports += 1
        except _Unpublishable as why:
            kept = site.keep(relative, published_before)
            summary.skipped.append(f"{why}; its copy published before stays" if kept else str(why))
            summary.kept += kept
            if not kept:
                continue
        projects.setdefault(row.project_id, (row.address, []))[1].append(row.module)
    return projects


def _search_script(projects: Mapping[str, tuple[str, list[str]]], titles: Mapping[str, str]) -> bytes:
    """The search index as a script the page loads with a ``<script>`` tag, not ``fetch``: that works from a web
    server and from disk (``file://``, where a browser blocks ``fetch``), under the CSP's ``script-src 'self'``.

    It sets :data:`SEARCH_INDEX_GLOBAL` with ``JSON.parse`` of a string literal: the data keeps JSON's meaning (an
    object literal would take a ``"__proto__"`` key as the prototype) and nothing in it is ever code.
    """
    literal = json.dumps(_search_index(projects, titles), ensure_ascii=False)
    literal = literal.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")  # line ends before ES2019
    return f"window.{SEARCH_INDEX_GLOBAL} = JSON.parse({literal});\n".encode()


def _search_index(projects: Mapping[str, tuple[str, list[str]]], titles: Mapping[str, str]) -> str:
    """The search index, as JSON: module titles, and each project's id, address and modules."""
    order = {name: i for i, name in enumerate(titles)}
    names = sorted({m for _, listed in projects.values() for m in listed}, key=lambda n: (order.get(n, len(order)), n))
    document = {
        "modules": {name: titles.get(name, "") for name in names},
        "projects": [{"id": key, "address": address, "reports": listed} for key, (address, listed) in projects.items()],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


class _Unpublishable(Exception):
    """An indexed report that cannot be published now, with why: the report's name, then the reason."""


def _report_html(files: ReportFiles, row: ReportRow) -> bytes:
    """A report's HTML as the index recorded it.

    :raises _Unpublishable: its id or name is unsafe, its file is outside the output folder, unreadable, not
        valid gzip, or changed since it was indexed.
    """
    name = f"{row.project_id}/{row.module}"
    try:
        files.path(row.project_id, row.module)  # refuses ids and names that are not plain slugs
    except StoreError as error:
        raise _Unpublishable(f"{name!r}: {error}") from error
    source = (files.out_dir / row.path).resolve()
    if not source.is_relative_to(files.out_dir):
        raise _Unpublishable(f"{name}: its path {row.path!r} is outside {files.out_dir}")
    try:
        data = source.read_bytes()
    except OSError as error:
        raise _Unpublishable(f"{name}: cannot read {source}: {_cause(error)}") from error
    if row.sha256 and hashlib.sha256(data).hexdigest() != row.sha256:
        raise _Unpublishable(
            f"{name}: {source} changed since it was indexed (a run in progress?); publish again after it"
        )
    if source.suffix == ".gz":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise _Unpublishable(f"{name}: {source} is not valid gzip: {error}") from error
    return data


def _cause(error: OSError) -> str:
    """Why an OSError happened, as a person reads it (``Permission denied``, not ``[Errno 13] ...``)."""
    return error.strerror or str(error)


def _describe(error: OSError) -> str:
    """An OSError's file, if it names one, and its cause."""
    return f"{error.filename}: {_cause(error)}" if error.filename else _cause(error)


def _resource(name: str) -> bytes:
    return (resources.files("zerosite") / "site" / name).read_bytes()


@functools.cache
def _page_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: _resource(name).decode("utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _index_page(assets: Mapping[str, str], projects: int, reports: int) -> bytes:
    template = _page_environment().get_template("index.html.j2")
    return template.render(assets=assets, projects=projects, reports=reports).encode("utf-8")


def _headers(settings: PublishSettings) -> str:
    """The ``_headers`` file (Netlify and Cloudflare Pages): one ``Cache-Control`` per path, no path matching two
    rules that both set it (a request matching several rules gets the headers of all)."""
    immutable = f"public, max-age={settings.asset_max_age_s}, immutable"
    short = f"public, max-age={settings.html_max_age_s}, must-revalidate"
    page_policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    rules = [
        ("/*", {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}),
        ("/", {"Cache-Control": short, "Content-Security-Policy": page_policy}),
        ("/index.html", {"Cache-Control": short, "Content-Security-Policy": page_policy}),
        ("/assets/*", {"Cache-Control": immutable}),
        ("/reports/*", {"Cache-Control": short, "Content-Security-Policy": REPORT_POLICY}),
    ]
    lines = ["# Written by zerosite publish: hashed assets are immutable, pages are revalidated."]
    for path, headers in rules:
        lines.append(path)
        lines.extend(f"  {name}: {value}" for name, value in headers.items())
    return "\n".join(lines) + "\n"


class _Site:
    """The folder being published: atomic writes of changed files only, and what was written, for the manifest."""

    def __init__(self, root: Path, settings: PublishSettings) -> None:
        self.root = root.absolute()
        self.settings = settings
        self.files: list[str] = []
        self.assets: list[str] = []
        self.written = 0
        self.unchanged = 0

    def locked(self) -> _Lock:
        if self.root.exists() and not self.root.is_dir():
            raise PublishError(f"{self.root} is not a folder")
        if self.root.is_dir() and not (self.root / MANIFEST).is_file():
            try:
                strangers = [entry.name for entry in os.scandir(self.root) if entry.name != LOCK]
            except OSError as error:
                raise PublishError(f"cannot read the folder {self.root}: {_cause(error)}") from error
            if strangers:
                raise PublishError(
                    f"{self.root} is not empty and was not written by zerosite publish (no {MANIFEST}); "
                    "choose a new or empty folder"
                )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PublishError(f"cannot make {self.root}: {_cause(error)}") from error
        return _Lock(self.root / LOCK)

    def remove_temporaries(self) -> None:
        """Remove the temporary files of a publish killed mid-write (SIGKILL, or SIGTERM between writing one and
        renaming it): under the lock none is in use, and left there they would be uploaded with the site."""
        for folder, _, names in os.walk(self.root):
            for path in (Path(folder, name) for name in names if TEMPORARY.fullmatch(name)):
                try:
                    path.unlink(missing_ok=True)
                except OSError as error:
                    raise PublishError(f"cannot remove {path}, left by a publish cut short: {_cause(error)}") from error

    def claim(self) -> None:
        """Mark a new folder as publish's before anything else is written, so that a first publish cut short
        (Ctrl-C, a full disk) can be run again into it."""
        if not (self.root / MANIFEST).is_file():
            self._replace(self.root / MANIFEST, json.dumps({"files": [], "assets": []}).encode("utf-8"))

    def read_manifest(self) -> dict[str, list[str]]:
        try:
            data = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: [p for p in v if isinstance(p, str)] for k, v in data.items() if isinstance(v, list)}

    def write(self, relative: str, data: bytes, brotli_quality: int) -> None:
        """A file and its ``.gz`` and ``.br`` beside it."""
        changed = self.write_plain(relative, data)
        level = self.settings.gzip_level
        for suffix, compress in (
            (".gz", lambda: gzip.compress(data, compresslevel=level, mtime=0)),
            (".br", lambda: brotli.compress(data, quality=brotli_quality)),
        ):
            target = self.root / f"{relative}{suffix}"
            if not changed and target.is_file():  # the plain file is unchanged: so is its compressed form
                self.files.append(f"{relative}{suffix}")
                self.unchanged += 1
            else:
                self.write_plain(f"{relative}{suffix}", compress())

    def write_asset(self, stem: str, suffix: str, data: bytes) -> str:
        """A content-hashed asset under ``assets/``; its site-relative URL."""
        digest = hashlib.sha256(data).hexdigest()[: self.settings.hash_chars]
        relative = f"assets/{stem}.{digest}{suffix}"
        self.write(relative, data, self.settings.brotli_quality)
        self.assets.extend(f"{relative}{s}" for s in ("", ".gz", ".br"))
        return relative

    def keep(self, relative: str, published_before: set[str]) -> bool:
        """Keep, as it is, the copy of ``relative`` (and its ``.gz`` and ``.br``) that an earlier publish wrote and
        listed in ``published_before``; whether there is one."""
        if relative not in published_before or not _plain(relative) or not (self.root / relative).is_file():
            return False
        self.files.extend(p for p in (relative, f"{relative}.gz", f"{relative}.br") if p in published_before)
        return True

    def write_plain(self, relative: str, data: bytes) -> bool:
        """Write one file of the site atomically unless it holds ``data`` already (counted); whether it was written."""
        self.files.append(relative)
        changed = self._update(self.root / relative, data)
        if changed:
            self.written += 1
        else:
            self.unchanged += 1
        return changed

    def _update(self, target: Path, data: bytes) -> bool:
        """Write ``target`` atomically unless it holds ``data`` already; whether it was written."""
        with suppress(OSError):
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                return False
        self._replace(target, data)
        return True

    @staticmethod
    def _replace(target: Path, data: bytes) -> None:
        """Write ``target`` atomically: a temporary file beside it, then ``os.replace``; none left behind."""
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # matches TEMPORARY
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(data)
            os.replace(temp, target)
        except OSError as error:
            raise PublishError(f"cannot write {target}: {_cause(error)}") from error
        finally:
            with suppress(OSError):
                temp.unlink(missing_ok=True)

    def finish(self, old: Mapping[str, list[str]]) -> int:
        """Write the manifest, then remove what the last publish wrote and this one did not; how many removed.

        The last publish's assets stay one more round (a page cached for minutes still finds them). What is to be
        removed is listed in the manifest (``stale``) until it is gone, so a publish cut short, or a file that
        cannot be removed, is removed by a later publish.

        :raises PublishError: a file could not be removed (the site is published otherwise).
        """
        keep = set(self.files)
        previous = [p for p in old.get("assets", []) if p not in keep]
        stale = sorted(_stale(old, keep.union(previous)))
        self._write_manifest(previous, stale)
        removed = 0
        failed: dict[str, str] = {}
        for relative in stale:
            try:
                removed += self._remove(relative)
            except OSError as error:
                failed[relative] = _cause(error)
        if stale:
            self._write_manifest(previous, list(failed))
        if failed:
            first, cause = next(iter(failed.items()))
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise PublishError(
                f"published to {self.root}, but cannot remove {self.root / first} of an earlier publish: {cause}{more};"
                f" the next publish tries again (listed in {MANIFEST} until removed)"
            )
        return removed

    def _write_manifest(self, previous_assets: list[str], stale: list[str]) -> None:
        manifest = {"files": self.files, "assets": self.assets, "previous_assets": previous_assets, "stale": stale}
        self._update(self.root / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))

    def _remove(self, relative: str) -> bool:
        """Remove a file of an earlier publish and the folders it leaves empty; whether it was there to remove."""
        path = self.root / relative
        if not path.parent.resolve().is_relative_to(self.root.resolve()):  # a folder swapped for a link elsewhere
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        for parent in path.parents:  # a project's folder left empty goes too
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            with suppress(OSError):
                parent.rmdir()
        return True


def _stale(old: Mapping[str, list[str]], keep: set[str]) -> Iterable[str]:
    """Files the old manifest lists and this publish does not keep: plain relative paths only (a manifest
    edited to name ``../x`` or ``/etc/x`` removes nothing outside the folder)."""
    for relative in {*old.get("files", []), *old.get("previous_assets", []), *old.get("stale", [])} - keep:
        if _plain(relative) and relative != MANIFEST:
            yield relative


def _plain(relative: str) -> bool:
    """Whether a path from a manifest is a plain path inside the site (not ``../x``, ``/etc/x`` or empty)."""
    path = PurePosixPath(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts


class _Lock:
    """An exclusive ``flock`` on the folder's lock file while publishing: one publish at a time per folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:  # a folder this user may not write, a read-only mount
            folder, cause = self.path.parent, _cause(error)
            raise PublishError(f"cannot write to {folder}: {cause} (its lock file {self.path.name})") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PublishError(f"another zerosite publish is writing to {self.path.parent}") from None
        except OSError as error:  # no locks on this file system
            os.close(fd)
            raise PublishError(f"cannot lock {self.path}: {_cause(error)}") from error
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
