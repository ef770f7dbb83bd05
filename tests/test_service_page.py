"""The page at ``/`` in a real headless browser (Debian's chromium, driven by Playwright): load it, see the live
stats, search, follow a link to a report; text from the input stays text."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from zerosite.sample import sample_projects
from zerosite.service.process import ServerProcess

CHROMIUM = os.environ.get("ZEROSITE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = Path(os.environ.get("ZEROSITE_SCREENSHOTS", "/tmp"))
HOSTILE_ADDRESS = '<img src=x onerror="window.pwned=1">서울특별시 "마포구" </td><script>window.pwned=2</script>'

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)),
    reason=f"no chromium at {CHROMIUM} (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    out = tmp_path_factory.mktemp("page")
    with ServerProcess(["--out", str(out), "--strategy", "thread", "--workers", "1"]) as running:
        projects: list[dict[str, Any]] = sample_projects(4, seed=61)
        projects[3] = {**projects[3], "id": "hostile-1", "road_address": HOSTILE_ADDRESS}
        for project in projects:
            response = httpx.post(f"{running.url}/v1/reports", json=project, timeout=60)
            assert response.status_code == 200, response.text
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def test_page_shows_stats_search_and_links_to_reports(server: ServerProcess, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(server.url + "/")
    assert page.title() == "ZeroSite"
    assert int(page.inner_text("#reports")) >= 20
    recent = page.locator("#recent tbody tr")
    assert recent.count() == 20
    assert page.locator("#recent a").first.get_attribute("href").startswith("/v1/reports/")

    # The hostile address is shown as text, and none of its markup ran.
    assert page.evaluate("window.pwned") is None
    assert HOSTILE_ADDRESS.split("(")[0].strip() in page.inner_text("#recent")

    # Search by district, as a person would: type, press Enter, follow the first link.
    page.fill("input[name=q]", "마포구")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("#results")
    assert "마포구" in page.inner_text("#results")
    page.screenshot(path=str(SCREENSHOT_DIR / "zerosite-serve-page.png"), full_page=True)
    first = page.locator("#results a").first
    href = first.get_attribute("href")
    first.click()
    page.wait_for_load_state()
    assert page.url == server.url + href
    assert page.title().endswith(href.split("/")[3])  # the report's own title: "M6 LH 종합 판단 · p0002-gongdeok"
    assert len(page.content()) > 5000
    page.screenshot(path=str(SCREENSHOT_DIR / "zerosite-serve-report.png"))
    assert errors == []


def test_live_stats_refresh_without_reloading(server: ServerProcess, browser: Any) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    before = int(page.inner_text("#reports"))
    httpx.post(f"{server.url}/v1/reports", json={**sample_projects(1, seed=62)[0], "id": "live-1"}, timeout=60)
    for _ in range(100):  # the page asks /v1/stats every 2 s (polled from here: the page's CSP forbids eval)
        if int(page.inner_text("#reports")) >= before + 5:
            break
        page.wait_for_timeout(100)
    assert int(page.inner_text("#reports")) >= before + 5


def test_page_escapes_the_query_it_shows(server: ServerProcess, browser: Any) -> None:
    page = browser.new_page()
    page.goto(server.url + "/?q=" + quote('"><script>window.pwned=3</script>'))
    assert page.evaluate("window.pwned") is None
    assert page.input_value("input[name=q]") == '"><script>window.pwned=3</script>'


def test_a_phone_wide_page_scrolls_its_tables_not_itself(server: ServerProcess, browser: Any) -> None:
    """At 390 px the recent reports' table used to run off the page's right edge, its last column cut off."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(server.url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    table = page.locator("#recent").evaluate("t => [t.parentElement.scrollWidth, t.parentElement.clientWidth]")
    assert table[0] > table[1]  # the table is wider than its box, which scrolls
    page.screenshot(path=str(SCREENSHOT_DIR / "zerosite-serve-page-phone.png"))


@pytest.mark.parametrize(("path", "shown"), [("/docs", ".opblock-summary-path"), ("/redoc", "[role=menuitem]")])
def test_the_api_docs_work_on_a_closed_network(server: ServerProcess, browser: Any, path: str, shown: str) -> None:
    """FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN: on a closed network the pages stayed blank.
    They come from this server now; every request elsewhere is refused here, and each page still lists the API
    (ReDoc asks for one image, its "powered by" logo, from its makers' CDN: refused, it is left out)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    elsewhere: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + path)
    page.wait_for_selector(shown, timeout=15_000)
    assert "/v1/reports" in page.inner_text("body")
    page.screenshot(path=str(SCREENSHOT_DIR / f"zerosite-serve{path.replace('/', '-')}.png"))
    assert errors == []
    assert elsewhere == ([] if path == "/docs" else ["https://cdn.redoc.ly/redoc/logo-mini.svg"])
