"""Fuzzing with Hypothesis: project records with any JSON value in any field, any Unicode and extreme numbers go
through validation and, when valid, a render; never a traceback, and the command line exits 0, 1 or 2 only."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from helpers import DEFAULT_PROJECT, project_dict, render_chain
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from zerosite.cli import main
from zerosite.project import DEMOGRAPHIC_GROUPS, LIMITS, Zone, parse_project, validate_batch

EXTREME_NUMBERS: list[int | float] = [
    0,
    -0.0,
    1e-300,
    -1e-300,
    5e-324,
    1e308,
    -1e308,
    sys.float_info.max,
    2**53 + 1,
    2**63,
    -(2**63),
    10**400,
    -(10**400),
    float("inf"),
    float("-inf"),
    float("nan"),
]

extreme_numbers = st.one_of(
    st.sampled_from(EXTREME_NUMBERS),
    st.integers(min_value=300, max_value=5000).map(lambda digits: 7 * 10**digits),  # too long to repr
)
numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), extreme_numbers)
any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and controls included
json_values = st.recursive(
    st.none() | st.booleans() | numbers | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)


def plausible(field: str) -> st.SearchStrategy[Any]:
    """Values that pass validation or nearly do, so that many records reach the render, at the edges of range."""
    areas = st.floats(min_value=LIMITS.land_area_min_sqm, max_value=LIMITS.land_area_max_sqm)
    distances = st.floats(min_value=0, max_value=LIMITS.distance_max_m)
    by_field: dict[str, st.SearchStrategy[Any]] = {
        "id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
        "transactions": st.just([]),
        "demographics": st.fixed_dictionaries({group: st.floats(0, 1) for group in DEMOGRAPHIC_GROUPS}),
        "land_area_sqm": areas,
        "official_price_per_sqm": st.integers(min_value=1, max_value=LIMITS.price_per_sqm_max_krw),
        "road_width_m": st.floats(min_value=0, max_value=LIMITS.road_width_max_m),
        "subway_distance_m": distances,
        "corner_lot": st.booleans(),
        "zone_type": st.sampled_from([zone.value for zone in Zone]),
        "area_sqm": areas,
        "price_krw": st.integers(min_value=1, max_value=LIMITS.transaction_price_max_krw),
        "distance_m": distances,
        "date": st.dates(LIMITS.earliest_date, LIMITS.latest_date).map(lambda day: day.isoformat()),
        "share": st.floats(min_value=0, max_value=1),
    }
    return by_field.get(field, st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20))


def field_value(field: str, hostile: bool) -> st.SearchStrategy[Any]:
    """Anything at all when ``hostile``, else a plausible value, at the edges of its range."""
    return st.one_of(plausible(field), json_values, extreme_numbers) if hostile else plausible(field)


@st.composite
def sales(draw: st.DrawFn, hostile: bool) -> Any:
    sale: dict[str, Any] = {
        "date": "2025-06-01",
        "area_sqm": 500.0,
        "price_krw": 3_000_000_000,
        "distance_m": 300.0,
        "zone_type": Zone.RESIDENTIAL_2.value,
    }
    for key in draw(st.sets(st.sampled_from(sorted(sale)), max_size=5)):
        sale[key] = draw(field_value(key, hostile))
    if hostile and draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    return sale


@st.composite
def records(draw: st.DrawFn) -> Any:
    """A project record: the valid default with some fields replaced, by plausible values at the edges of their
    range (half the records, which mostly render) or by anything at all, some fields dropped or added."""
    hostile = draw(st.booleans())
    raw = project_dict()
    raw["transactions"] = draw(st.lists(sales(hostile), max_size=4))
    demographics = {group: draw(plausible("share")) for group in DEMOGRAPHIC_GROUPS}
    for group in draw(st.sets(st.sampled_from(DEMOGRAPHIC_GROUPS), max_size=2)):
        demographics[group] = draw(field_value("share", hostile))
    raw["demographics"] = demographics
    for key in draw(st.sets(st.sampled_from(sorted(DEFAULT_PROJECT)), max_size=6)):
        raw[key] = draw(field_value(key, hostile))
    if not hostile:
        return raw
    for key in draw(st.sets(st.sampled_from(sorted(DEFAULT_PROJECT)), max_size=1)):
        del raw[key]
    if draw(st.integers(0, 9)) == 0:
        raw[draw(any_text)] = draw(json_values)
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)  # not even an object
    return raw


def is_clean_line(message: str) -> bool:
    """One line, storable as UTF-8, with nothing that could drive a terminal."""
    return all(unicodedata.category(char) not in {"Cc", "Cs", "Zl", "Zp"} for char in message)


FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(FUZZ, max_examples=150)
@given(records())
def test_validation_names_every_problem_or_the_project_renders(raw: Any) -> None:
    valid, errors = validate_batch([("projects[0]", raw)])
    assert bool(valid) != bool(errors)
    event("valid: rendered" if valid else "invalid")  # see --hypothesis-show-statistics
    for error in errors:
        assert error.startswith("projects[0]") and is_clean_line(error), error
    if valid:
        reports = render_chain(parse_project(raw))  # raises the first module failure
        assert sorted(reports) == ["M2", "M3", "M4", "M5", "M6"]


@contextlib.contextmanager
def unlimited_int_digits() -> Iterator[None]:
    """Let ``json.dumps`` write the 5,001-digit integers (the reader must then refuse them)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(limit)


@settings(FUZZ, max_examples=25)
@given(st.lists(records(), min_size=1, max_size=3), st.booleans(), st.booleans())
def test_the_command_line_exits_0_1_or_2_and_never_with_a_traceback(
    projects: list[Any], jsonl: bool, skip_invalid: bool
) -> None:
    with unlimited_int_digits():
        text = "\n".join(map(json.dumps, projects)) if jsonl else json.dumps(projects)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("p.jsonl" if jsonl else "p.json")
        path.write_text(text, encoding="utf-8")
        args = ["render", "--projects", str(path), "--out", str(Path(folder) / "out"), "-q"]
        result = CliRunner().invoke(main, [*args, "--skip-invalid"] if skip_invalid else args)
    event(f"exit {result.exit_code}")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    for line in result.output.splitlines():
        assert is_clean_line(line), line
