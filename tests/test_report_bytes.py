"""Every report of a fixed project set, byte for byte: each one's SHA-256 against ``tests/data/report_hashes.txt``.

The set is ``SAMPLE_COUNT`` sample projects (seed ``SAMPLE_SEED``) and a few variants of them that reach
branches the samples do not (no sales, markup in every text field, a lot too small for one unit, a capped
floor area ratio, a loss). A change meant to alter reports regenerates the list, and its diff shows which
reports changed:

    .venv/bin/python tests/test_report_bytes.py --write
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPORT_MODULES, render_chain

from zerosite.pipeline import compute_project, plan
from zerosite.plugins import get_modules
from zerosite.project import parse_project
from zerosite.sample import sample_project, sample_projects

HASHES_FILE = Path(__file__).parent / "data" / "report_hashes.txt"
SAMPLE_COUNT = 40
SAMPLE_SEED = 0
REMAKE_COMMAND = ".venv/bin/python tests/test_report_bytes.py --write"
MARKUP = "<script>alert(\"x\")</script> & <b>'it'</b>"

ReportKey = tuple[str, str]
"""(project id, module name)"""


def edge_projects() -> list[dict[str, Any]]:
    """Variants of sample projects that reach branches the sample set does not."""

    def variant(index: int, suffix: str, **overrides: Any) -> dict[str, Any]:
        raw = sample_project(index, SAMPLE_SEED)
        return {**raw, "id": f"edge-{suffix}", **overrides}

    texts = ("road_address", "jibun_address", "sido", "sigungu", "dong")
    return [
        variant(0, "no-sales", transactions=[]),
        variant(1, "markup", **{field: f"{field} {MARKUP}" for field in texts}),
        variant(0, "tiny-lot", land_area_sqm=1.0, subway_distance_m=-0.0),
        variant(0, "capped-far", land_area_sqm=5000.0, zone_type="준공업지역", subway_distance_m=0.0),
        variant(3, "loss", official_price_per_sqm=900_000_000, transactions=[]),
    ]


def project_set() -> list[dict[str, Any]]:
    """The raw projects whose reports are checked."""
    return [*sample_projects(SAMPLE_COUNT, SAMPLE_SEED), *edge_projects()]


def report_hashes() -> Iterator[tuple[ReportKey, str]]:
    """((project id, module), SHA-256 of the report's UTF-8 bytes) for every report of the set."""
    for raw in project_set():
        for module, html in render_chain(parse_project(raw), REPORT_MODULES).items():
            yield (raw["id"], module), hashlib.sha256(html.encode("utf-8")).hexdigest()


def read_hashes(path: Path = HASHES_FILE) -> dict[ReportKey, str]:
    """The stored list: one ``project-id module sha256`` line per report; ``#`` lines are comments."""
    stored: dict[ReportKey, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            project_id, module, digest = line.split()
            stored[project_id, module] = digest
    return stored


def write_hashes(path: Path = HASHES_FILE) -> int:
    """Write the list for the reports the current code makes; returns how many."""
    lines = [f"{project_id} {module} {digest}" for (project_id, module), digest in report_hashes()]
    header = (
        f"# SHA-256 of every report of tests/test_report_bytes.py's project set; remake with:\n#   {REMAKE_COMMAND}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


@pytest.fixture(scope="module")
def current() -> dict[ReportKey, str]:
    return dict(report_hashes())


def test_every_report_is_byte_identical_to_the_stored_list(current: dict[ReportKey, str]) -> None:
    stored = read_hashes()
    assert sorted(current) == sorted(stored), f"the project set changed: remake the list with {REMAKE_COMMAND}"
    changed = [
        f"{project_id} {module}"
        for (project_id, module), digest in current.items()
        if stored[project_id, module] != digest
    ]
    assert not changed, f"{len(changed)} report(s) differ from the stored list: {', '.join(changed[:10])}"


def test_the_set_covers_every_module_of_every_project(current: dict[ReportKey, str]) -> None:
    projects = {raw["id"] for raw in project_set()}
    assert len(projects) == SAMPLE_COUNT + len(edge_projects())
    assert set(current) == {(project_id, module) for project_id in projects for module in REPORT_MODULES}


def test_the_edge_projects_reach_their_branches() -> None:
    """Each variant does what it is there for; a change to the modules that defeats one shows here."""
    steps = plan(get_modules())
    results = {raw["id"]: compute_project(parse_project(raw), steps) for raw in edge_projects()}
    assert results["edge-no-sales"]["M2"].fallback_used
    assert results["edge-no-sales"]["M2"].confidence_level == "low"
    assert results["edge-tiny-lot"]["M4"].units == 0
    assert results["edge-capped-far"]["M4"].far_capped
    assert results["edge-loss"]["M5"].margin < 0
    assert results["edge-loss"]["M6"].decision == "NO-GO"


def test_markup_reaches_the_reports_escaped() -> None:
    html = render_chain(parse_project(edge_projects()[1]), ("M2",))["M2"]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;&#39;it&#39;&lt;/b&gt;" in html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Remake the stored list of report hashes from the current code.")
    parser.add_argument("--write", action="store_true", help=f"write {HASHES_FILE}")
    args = parser.parse_args(argv)
    if not args.write:
        parser.error("nothing to do: pass --write to remake the list")
    print(f"wrote {write_hashes()} report hashes to {HASHES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
