"""``zerosite publish``: the static site's files, its _headers, updates in place, hostile data, and a real browser."""

from __future__ import annotations

import errno
import fnmatch
import functools
import gzip
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import brotli
import pytest
from click.testing import CliRunner
from helpers import communicate

import zerosite.publish
from zerosite.cli import main
from zerosite.engine import BatchOptions, generate
from zerosite.project import parse_project
from zerosite.publish import MANIFEST, PublishError, publish_site
from zerosite.sample import sample_projects

HOSTILE_ADDRESS = '<img src=x onerror="window.__pwned=1"></script>역삼 \u202e"&amp;'
TITLES = {"M2": "토지 감정평가", "M3": "공급유형 판단", "M4": "건축 규모", "M5": "사업성 분석", "M6": "LH 종합 판단"}


def make_store(out: Path, n: int = 3, *, gzip_files: bool = False, hostile: bool = False) -> Path:
    projects = [parse_project(raw) for raw in sample_projects(n)]
    if hostile:  # past validation, which refuses the bidirectional control: as an index made before it could hold
        projects[0] = replace(projects[0], road_address=HOSTILE_ADDRESS)
    generate(projects, BatchOptions(out=out, gzip=gzip_files))
    return out / "index.sqlite"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three sample projects' reports, the first with a hostile address; shared, read-only."""
    return make_store(tmp_path_factory.mktemp("store") / "out", hostile=True)


def site_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_site_has_hashed_assets_reports_compressed_copies_and_headers(store: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    summary = publish_site(store, site, titles=TITLES)
    assert (summary.reports, summary.projects, summary.skipped, summary.removed) == (15, 3, [], 0)
    files = site_files(site)

    # Reports: byte for byte the store's, each with a .gz and a .br of the same bytes.
    out = store.parent
    for path in out.glob("*/*.html"):
        published = f"reports/{path.parent.name}/{path.name}"
        assert files[published] == path.read_bytes()
        assert gzip.decompress(files[f"{published}.gz"]) == files[published]
        assert brotli.decompress(files[f"{published}.br"]) == files[published]

    # Assets: named by their content's hash, compressed too, and the page names exactly those.
    assets = sorted(name for name in files if name.startswith("assets/") and name.count(".") == 2)
    assert [re.sub(r"\.[0-9a-f]{12}\.", ".H.", name) for name in assets] == [
        "assets/index.H.js",
        "assets/search.H.js",
        "assets/site.H.css",
    ]
    for name in assets:
        assert hashlib.sha256(files[name]).hexdigest()[:12] == name.split(".")[1]
        assert brotli.decompress(files[f"{name}.br"]) == gzip.decompress(files[f"{name}.gz"]) == files[name]
    page = files["index.html"].decode()
    assert {name for name in assets} == set(re.findall(r'(?:href|src)="(assets/[^"]+)"', page))
    assert brotli.decompress(files["index.html.br"]) == files["index.html"]

    # The search index: titles in module order, every project and its reports; data only here, as a JSON string.
    index = search_index(site)
    assert index["modules"] == TITLES
    assert [p["reports"] for p in index["projects"]] == [list(TITLES)] * 3
    assert index["projects"][0]["address"].startswith(HOSTILE_ADDRESS)
    assert "onerror" not in page and sample_projects(1)[0]["id"] not in page  # data only in the JSON


def search_index(site: Path) -> dict[str, Any]:
    """The search index the site's page loads (a script: ``JSON.parse`` of a string literal)."""
    page = (site / "index.html").read_text()
    name = re.search(r'<script id="search-index" src="([^"]+)"', page)
    assert name, page
    return parse_search_script((site / name[1]).read_text(encoding="utf-8"))


def parse_search_script(script: str) -> dict[str, Any]:
    """The data of the search index's script, which must be one JSON string literal and nothing else."""
    literal = re.fullmatch(r'window\.zerositeSearchIndex = JSON\.parse\(("(?:[^"\\\n]|\\.)*")\);\n', script)
    assert literal, script
    return dict(json.loads(json.loads(literal[1])))


def parse_headers(text: str) -> dict[str, dict[str, str]]:
    rules: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(" "):
            name, _, value = line.strip().partition(": ")
            assert name not in rules[current], f"{name} twice under {current}"
            rules[current][name] = value
        else:
            current = line
            assert current not in rules
            rules[current] = {}
    return rules


def test_headers_make_hashed_assets_immutable_and_pages_short_lived(store: Path, tmp_path: Path) -> None:
    publish_site(store, tmp_path / "site")
    rules = parse_headers((tmp_path / "site" / "_headers").read_text())
    assert rules["/assets/*"]["Cache-Control"] == "public, max-age=31536000, immutable"
    for path in ("/", "/index.html", "/reports/*"):
        assert rules[path]["Cache-Control"] == "public, max-age=300, must-revalidate"
    assert "Cache-Control" not in rules["/*"]  # a request matching two rules would get both values
    assert "script-src 'self'" in rules["/"]["Content-Security-Policy"]
    assert "script-src" not in rules["/reports/*"]["Content-Security-Policy"]  # default-src 'none': no script
    assert rules["/*"]["X-Content-Type-Options"] == "nosniff"


def test_gzip_reports_are_published_as_html(tmp_path: Path) -> None:
    db = make_store(tmp_path / "out", 1, gzip_files=True)
    publish_site(db, tmp_path / "site")
    for path in (tmp_path / "out").glob("*/*.html.gz"):
        published = tmp_path / "site" / "reports" / path.parent.name / path.name.removesuffix(".gz")
        assert published.read_bytes() == gzip.decompress(path.read_bytes())


def test_publishing_again_updates_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    db = make_store(out, 3)
    site = tmp_path / "site"
    publish_site(db, site)
    again = publish_site(db, site)
    assert (again.written, again.removed) == (0, 0)
    assert again.unchanged > 50

    # A project leaves the index, another comes: its files go, the new ones arrive, old assets stay one round.
    with sqlite3.connect(db) as conn:
        gone = conn.execute("SELECT project_id FROM reports ORDER BY project_id LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM reports WHERE project_id = ?", (gone,))
    old_assets = {p.name for p in (site / "assets").iterdir()}
    changed = publish_site(db, site)
    assert changed.removed == 15 and not (site / "reports" / gone).exists()
    assert old_assets <= {p.name for p in (site / "assets").iterdir()}
    publish_site(db, site)
    current = {p.name for p in (site / "assets").iterdir()}
    assert len(current) == 9 and not {n for n in old_assets if n.startswith("index.")} & current


def test_only_a_new_empty_or_published_folder_is_written(store: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PublishError, match="not empty and was not written by zerosite publish"):
        publish_site(store, foreign)
    assert site_files(foreign) == {"notes.txt": b"mine"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(PublishError, match="is not a folder"):
        publish_site(store, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert publish_site(store, empty).reports == 15


def test_a_first_publish_cut_short_can_be_run_again(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"

    def interrupted(*args: object) -> str:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(zerosite.publish._Site, "write_asset", interrupted)
        with pytest.raises(KeyboardInterrupt):
            publish_site(store, site)
    assert (site / MANIFEST).is_file() and not (site / "index.html").exists()
    assert publish_site(store, site).reports == 15
    assert not [p for p in site.rglob("*") if p.name.endswith(".tmp")]


def test_temporary_files_of_a_killed_publish_are_removed_by_the_next(store: Path, tmp_path: Path) -> None:
    """SIGTERM or SIGKILL between writing a temporary file and renaming it leaves ``.NAME.PID.tmp`` behind."""
    site = tmp_path / "site"
    publish_site(store, site)
    project = next((site / "reports").iterdir())
    leftovers = [project / ".M4.html.br.24432.tmp", site / ".index.html.7.tmp", site / "assets" / ".x.css.1.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    (project / "notes.tmp").write_text("not publish's")  # another name: left alone
    publish_site(store, site)
    assert not [p for p in leftovers if p.exists()] and (project / "notes.tmp").exists()


def test_a_manifest_never_removes_anything_outside_the_site(store: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish_site(store, site)
    (tmp_path / "precious.txt").write_text("keep")
    manifest = json.loads((site / MANIFEST).read_text())
    manifest["files"] += ["../precious.txt", str(tmp_path / "precious.txt"), "reports/../../precious.txt"]
    (site / MANIFEST).write_text(json.dumps(manifest))
    publish_site(store, site)
    assert (tmp_path / "precious.txt").read_text() == "keep"


def test_a_site_folder_that_cannot_be_written_is_one_error_line(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder this user may not write, or a read-only mount: the lock file cannot be made (root writes anywhere,
    so the refusal is made here)."""
    site = tmp_path / "site"
    site.mkdir()
    real_open = os.open

    def refused(path: str | os.PathLike[str], flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).name == ".zerosite-publish.lock":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(PublishError, match=f"cannot write to {re.escape(str(site))}: Permission denied"):
        publish_site(store, site)
    result = CliRunner().invoke(main, ["publish", "--db", str(store), "--to", str(site)])
    assert result.exit_code == 2 and not isinstance(result.exception, OSError), result.output
    assert result.output.startswith("error: cannot write to") and result.output.count("\n") == 1, result.output


def test_a_file_that_cannot_be_removed_is_named_and_removed_by_the_next_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = make_store(tmp_path / "out", 2)
    site = tmp_path / "site"
    publish_site(db, site)
    with sqlite3.connect(db) as conn:
        gone = conn.execute("SELECT project_id FROM reports ORDER BY project_id LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM reports WHERE project_id = ?", (gone,))
    stuck = site / "reports" / gone / "M5.html.gz"
    real_unlink = Path.unlink

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path == stuck:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real_unlink(path, missing_ok)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", unlink)
        with pytest.raises(PublishError, match=f"cannot remove {re.escape(str(stuck))} .*: Permission denied"):
            publish_site(db, site)
    assert [p.name for p in (site / "reports" / gone).iterdir()] == [stuck.name]  # the others went
    assert json.loads((site / MANIFEST).read_text())["stale"] == [f"reports/{gone}/M5.html.gz"]
    assert publish_site(db, site).removed >= 1 and not (site / "reports" / gone).exists()
    assert json.loads((site / MANIFEST).read_text())["stale"] == []


def test_reports_that_cannot_be_published_are_skipped_with_why(tmp_path: Path) -> None:
    out = tmp_path / "out"
    db = make_store(out, 3)
    (tmp_path / "secret.html").write_text("secret")
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT DISTINCT project_id FROM reports ORDER BY project_id")]
        conn.execute("UPDATE reports SET path = '../secret.html' WHERE project_id = ? AND module = 'M2'", (ids[0],))
        conn.execute("UPDATE reports SET project_id = '../evil' WHERE project_id = ? AND module = 'M3'", (ids[0],))
    (out / ids[1] / "M4.html").write_text("edited after indexing")
    (out / ids[2] / "M5.html").unlink()
    summary = publish_site(db, tmp_path / "site")
    assert summary.reports == 11
    reasons = "\n".join(summary.skipped)
    assert f"{ids[0]}/M2: its path '../secret.html' is outside" in reasons
    assert "'../evil/M3': unsafe project id" in reasons
    assert f"{ids[1]}/M4: " in reasons and "changed since it was indexed" in reasons
    assert f"{ids[2]}/M5: cannot read" in reasons
    assert b"secret" not in b"".join(site_files(tmp_path / "site").values())


def test_a_skipped_report_keeps_its_published_copy_and_the_exit_code_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    db = make_store(out, 2)
    site = tmp_path / "site"
    publish_site(db, site)
    before = site_files(site)
    ids = sorted(p.name for p in out.iterdir() if p.is_dir())
    (out / ids[0] / "M2.html").write_text("<!-- edited -->", encoding="utf-8")  # a run in progress rewrites it
    (out / ids[1] / "M5.html").unlink()  # or it is missing

    summary = publish_site(db, site)
    assert (summary.reports, summary.kept, summary.removed, summary.exit_code) == (8, 2, 0, 1)
    assert len(summary.skipped) == 2 and all(why.endswith("its copy published before stays") for why in summary.skipped)
    after = site_files(site)
    for kept in (f"reports/{ids[0]}/M2.html", f"reports/{ids[1]}/M5.html"):
        for name in (kept, f"{kept}.gz", f"{kept}.br"):
            assert after[name] == before[name]
    assert [p["reports"] for p in search_index(site)["projects"]] == [list(TITLES)] * 2
    assert summary.as_dict()["kept"] == 2

    # Kept while skipped, and listed: a report that leaves the index later still goes.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM reports WHERE project_id = ? AND module = 'M2'", (ids[0],))
    gone = publish_site(db, site)
    assert gone.kept == 1 and not (site / "reports" / ids[0] / "M2.html").exists()
    assert "M2" not in search_index(site)["projects"][0]["reports"]


def test_a_skipped_report_never_published_is_not_on_the_site(tmp_path: Path) -> None:
    out = tmp_path / "out"
    db = make_store(out, 1)
    project = next(p.name for p in out.iterdir() if p.is_dir())
    (out / project / "M3.html").unlink()
    summary = publish_site(db, tmp_path / "site")
    assert (summary.reports, summary.kept, summary.exit_code) == (4, 0, 1)
    assert not (tmp_path / "site" / "reports" / project / "M3.html").exists()
    assert search_index(tmp_path / "site")["projects"][0]["reports"] == ["M2", "M4", "M5", "M6"]
    assert publish_site(make_store(tmp_path / "again", 1), tmp_path / "site2").exit_code == 0


def test_the_command_line_exits_1_when_a_report_was_skipped(tmp_path: Path) -> None:
    db = make_store(tmp_path / "out", 1)
    (next(p for p in (tmp_path / "out").iterdir() if p.is_dir()) / "M3.html").unlink()
    for extra in ([], ["--json"]):  # a deploy script must not take the site for whole, whichever it reads
        result = CliRunner().invoke(main, ["publish", "--db", str(db), "--to", str(tmp_path / "site"), *extra])
        assert result.exit_code == 1, result.output
    assert "skipped: " in result.output or '"skipped"' in result.output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_publish_stopped_by_a_signal_says_so_and_the_next_one_finishes(tmp_path: Path, stop: signal.Signals) -> None:
    db = make_store(tmp_path / "out", 60)
    site = tmp_path / "site"
    command = [sys.executable, "-m", "zerosite", "publish", "--db", str(db), "--to", str(site)]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not list(site.glob("reports/*/*.html.br")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(child.pid, stop)
    _, stderr = communicate(child, timeout=30)
    if child.returncode == 0:
        pytest.skip("the publish ended before the signal came")  # a fast machine: nothing to check
    assert child.returncode == 128 + stop, stderr  # not click's "Aborted!" and 1
    assert "publish again to finish" in stderr and "Traceback" not in stderr
    assert not [p for p in site.rglob("*") if p.name.endswith(".tmp")]
    assert publish_site(db, site).reports == 300


def test_the_command_line(store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    site = tmp_path / "site"
    result = runner.invoke(main, ["publish", "--db", str(store), "--to", str(site)])
    assert result.exit_code == 0, result.output
    assert f"published 15 reports of 3 projects to {site}" in result.output
    as_json = runner.invoke(main, ["publish", "--db", str(store), "--to", str(site), "--json"])
    assert json.loads(as_json.stdout)["files_written"] == 0
    refused = runner.invoke(main, ["publish", "--db", str(store), "--to", str(store.parent)])
    assert (
        refused.exit_code == 2 and "error: " in refused.output and "not written by zerosite publish" in refused.output
    )
    (tmp_path / "broken.sqlite").write_bytes(b"not sqlite" * 100)
    broken = runner.invoke(main, ["publish", "--db", str(tmp_path / "broken.sqlite"), "--to", str(tmp_path / "s2")])
    assert broken.exit_code == 2 and "cannot read the report index" in broken.output


# --- A real browser: Debian's chromium, driven by Playwright ------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def served(store: Path, tmp_path: Path) -> Iterator[str]:
    """The published site on a loopback HTTP server that sends the headers of its ``_headers`` (a CDN's stand-in)."""
    site = tmp_path / "site"
    publish_site(store, site, titles=TITLES)
    rules = parse_headers((site / "_headers").read_text())
    handler = functools.partial(_HeadersHandler, rules, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


class _HeadersHandler(http.server.SimpleHTTPRequestHandler):
    """Files with the headers of each ``_headers`` rule whose path matches, as Netlify and Cloudflare Pages send."""

    def __init__(self, rules: dict[str, dict[str, str]], *args: Any, **kwargs: Any) -> None:
        self.rules = rules
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        for pattern, headers in self.rules.items():
            if fnmatch.fnmatchcase(self.path.partition("?")[0], pattern):
                for name, value in headers.items():
                    self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium under Playwright; the test is skipped where either is missing."""
    if not CHROMIUM.is_file():
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def expect(browser: Any) -> Any:
    """Playwright's ``expect``: it waits for what a locator shows without running script in the page (which the
    page's CSP forbids, as ``wait_for_function`` would)."""
    return pytest.importorskip("playwright.sync_api").expect


def new_page(browser: Any, problems: list[str]) -> Any:
    """A page that adds to ``problems`` each script error, console error (a CSP violation) and dialog (a hostile
    text run as code would open one)."""
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    return page


def test_in_a_browser_search_then_open_a_report(served: str, store: Path, browser: Any, expect: Any) -> None:
    shots = Path("/tmp")
    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(served)
    page.wait_for_selector("#results > li")
    assert page.locator("#results > li").count() == 3
    assert page.inner_text("#status") == "3개 사업"
    # The hostile address is shown as text: no element made from it, no script run.
    first = page.locator("#results > li h2").first
    assert first.text_content().startswith(HOSTILE_ADDRESS.replace("\u202e", "\\u202e"))
    assert page.locator("#results img").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(shots / "zerosite-publish-index.png"))

    project = sample_projects(3)[1]["id"]
    page.fill("#q", f"{project} 공급")  # a project id and a word of one module's title
    expect(page.locator("#results > li")).to_have_count(1)
    links = page.locator("#results a")
    assert links.count() == 1 and links.first.text_content() == "M3 공급유형 판단"
    assert page.evaluate("location.hash") == f"#q={project}%20%EA%B3%B5%EA%B8%89"
    page.screenshot(path=str(shots / "zerosite-publish-search.png"))

    links.first.click()
    page.wait_for_url(f"**/reports/{project}/M3.html")
    assert "M3" in page.title() and project in page.title()
    assert page.content().count("<section") >= 1
    page.screenshot(path=str(shots / "zerosite-publish-report.png"))

    page.go_back()  # the search survives the way back (it is in the URL)
    expect(page.locator("#results > li")).to_have_count(1)
    assert page.input_value("#q") == f"{project} 공급"

    page.fill("#q", "nothing-matches-this")
    expect(page.locator("#status")).to_have_text("찾은 사업이 없습니다.")
    assert problems == []


def test_in_a_browser_the_search_follows_the_url(served: str, browser: Any, expect: Any) -> None:
    """A ``#q=`` link followed on the page, or the address bar edited: the input and the results follow."""
    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(f"{served}#q=역삼")
    expect(page.locator("#results > li")).to_have_count(1)
    page.goto(f"{served}#q={quote('마포구')}")  # the same document: only the hash changes
    expect(page.locator("#q")).to_have_value("마포구")
    expect(page.locator("#results > li h2")).to_have_text([re.compile("마포구")])
    page.go_back()
    expect(page.locator("#q")).to_have_value("역삼")
    page.goto(f"{served}#")
    expect(page.locator("#results > li")).to_have_count(3)
    assert page.input_value("#q") == "" and problems == []


def test_in_a_browser_the_site_searches_opened_from_disk(
    store: Path, tmp_path: Path, browser: Any, expect: Any
) -> None:
    """file://: a browser refuses to fetch a file beside the page, but runs a script beside it."""
    site = tmp_path / "site"
    publish_site(store, site, titles=TITLES)
    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(f"{(site / 'index.html').as_uri()}#q=M3")
    expect(page.locator("#status")).not_to_have_text("검색 색인을 불러오는 중…")
    assert page.inner_text("#status") == "3개 사업"
    assert page.locator("#results a").all_text_contents() == ["M3 공급유형 판단"] * 3
    assert page.evaluate("window.__pwned") is None and problems == []
    page.screenshot(path="/tmp/zerosite-publish-file-url.png")

    # The index script missing (a partial upload): the page names it.
    index = next((site / "assets").glob("index.*.js"))
    index.unlink()
    page.reload()
    expect(page.locator("#status")).to_have_text(f"검색 색인을 불러오지 못했습니다: assets/{index.name}")


def test_the_search_index_script_is_one_string_literal_whatever_the_text() -> None:
    """Quotes, backslashes, ``</script>``, U+2028 and U+2029 (line ends in a script before ES2019) stay data."""
    address = 'a"b\\c</script><script>alert(1)</script>\u2028\u2029\n'
    script = zerosite.publish._search_script({"p1": (address, ["M2"])}, {"M2": "토지"}).decode("utf-8")
    assert "\u2028" not in script and "\u2029" not in script
    assert parse_search_script(script)["projects"] == [{"id": "p1", "address": address, "reports": ["M2"]}]


def test_the_site_folder_can_be_copied_anywhere(store: Path, tmp_path: Path) -> None:
    """Relative links only: the site works from any path prefix (a CDN bucket's folder)."""
    publish_site(store, tmp_path / "site")
    shutil.copytree(tmp_path / "site", tmp_path / "elsewhere" / "deep")
    page = (tmp_path / "elsewhere" / "deep" / "index.html").read_text()
    assert not re.search(r'(?:href|src)="/', page)
