"""What every module's report promises, checked once per built-in module on the real M2 -> M6 chain.

``test_cli.py::test_markup_in_input_is_escaped_in_every_report`` checks the same escaping end to end
through the command line; here the exact escaped form of every text field is checked in each report.
"""

from __future__ import annotations

import pytest
from helpers import REPORT_MODULES, make_project, project_dict, render_chain

from zerosite.project import parse_project
from zerosite.sample import sample_projects

MARKUP = '<script>alert("x")</script>&<b>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&lt;b&gt;"
TEXT_FIELDS = {"road_address": "도로", "jibun_address": "지번", "sido": "시도", "sigungu": "시군구", "dong": "동"}


@pytest.mark.parametrize("name", REPORT_MODULES)
def test_markup_in_every_text_field_is_escaped(name: str) -> None:
    project = make_project(id="markup-test", **{field: f"{prefix} {MARKUP}" for field, prefix in TEXT_FIELDS.items()})
    html = render_chain(project, (name,))[name]
    assert "<script>" not in html
    assert "<b>" not in html
    for prefix in TEXT_FIELDS.values():
        assert f"{prefix} {ESCAPED}" in html
    assert "markup-test" in html


@pytest.mark.parametrize("name", REPORT_MODULES)
def test_report_is_deterministic(name: str) -> None:
    """Results computed twice from freshly parsed input render to the same bytes."""
    for raw in [project_dict(), *sample_projects(3)]:
        first = render_chain(parse_project(raw), (name,))[name]
        assert first == render_chain(parse_project(raw), (name,))[name]
