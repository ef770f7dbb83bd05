"""Project input (M1): every validation error is named with its location; loading JSON and JSON Lines."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zerosite.pickled import PickledByFields
from zerosite.project import (
    DEMOGRAPHIC_GROUPS,
    STDIN,
    InvalidInput,
    Zone,
    iter_raw_projects,
    load_json,
    parse_batch,
    parse_project,
    project_to_dict,
    records_from_text,
    validate_batch,
)
from zerosite.sample import sample_projects


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(sample_projects(1)[0])


def errors_of(raw: Any, where: str = "projects[3]") -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_project(raw, where)
    return caught.value.errors


def test_valid_sample_round_trips(raw: dict[str, Any]) -> None:
    project = parse_project(raw)
    assert project.zone_type in set(Zone)
    assert parse_project(project_to_dict(project)) == project


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("land_area_sqm",), -5, "projects[3].land_area_sqm: must be > 0, got -5"),
        (("land_area_sqm",), 0, "projects[3].land_area_sqm: must be > 0, got 0"),
        (("land_area_sqm",), math.inf, "projects[3].land_area_sqm: must be finite, got inf"),
        (("land_area_sqm",), math.nan, "projects[3].land_area_sqm: must be finite, got nan"),
        (("land_area_sqm",), "1650", 'projects[3].land_area_sqm: must be a number, got "1650"'),
        (("land_area_sqm",), True, "projects[3].land_area_sqm: must be a number, got true"),
        (("official_price_per_sqm",), 1.5, "projects[3].official_price_per_sqm: must be a whole number of won"),
        (("road_width_m",), -1, "projects[3].road_width_m: must be >= 0, got -1"),
        (("subway_distance_m",), None, "projects[3].subway_distance_m: must be a number, got null"),
        (("corner_lot",), "yes", 'projects[3].corner_lot: must be true or false, got "yes"'),
        (("zone_type",), "상업지역", 'projects[3].zone_type: unknown zone "상업지역"'),
        (("road_address",), "  ", "projects[3].road_address: must not be empty"),
        (("id",), "../etc", "projects[3].id: must be a slug"),
        (("id",), "-x", 'projects[3].id: must start with a letter or digit, got "-x"'),
        (("id",), ".hidden", 'projects[3].id: must start with a letter or digit, got ".hidden"'),
        (("id",), "a" * 129, "projects[3].id: must be at most 128 characters, not 129"),
        (("id",), "é", "projects[3].id: must be a slug: ASCII letters, digits, '.', '_' or '-' only"),
        (("transactions", 0, "area_sqm"), 0, "projects[3].transactions[0].area_sqm: must be > 0, got 0"),
        (("transactions", 0, "price_krw"), -1, "projects[3].transactions[0].price_krw: must be > 0, got -1"),
        (("transactions", 0, "date"), "2025-13-01", "projects[3].transactions[0].date: must be a date"),
        (("transactions", 0, "zone_type"), "x", 'projects[3].transactions[0].zone_type: unknown zone "x"'),
        (("demographics", "youth"), 1.5, "projects[3].demographics.youth: must be a share in [0, 1], got 1.5"),
    ],
)
def test_each_bad_field_is_named(raw: dict[str, Any], path: tuple[Any, ...], value: Any, message: str) -> None:
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = errors_of(raw)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message)


def test_every_problem_is_reported_at_once(raw: dict[str, Any]) -> None:
    raw["land_area_sqm"] = -5
    raw["zone_type"] = "nowhere"
    del raw["dong"]
    raw["transactions"][1]["area_sqm"] = 0
    errors = errors_of(raw)
    assert {e.split(":")[0] for e in errors} == {
        "projects[3].land_area_sqm",
        "projects[3].zone_type",
        "projects[3].dong",
        "projects[3].transactions[1].area_sqm",
    }


def test_empty_demographics_name_each_missing_group(raw: dict[str, Any]) -> None:
    raw["demographics"] = {}  # used to pass, every share 0
    assert errors_of(raw) == [f"projects[3].demographics.{group}: missing" for group in DEMOGRAPHIC_GROUPS]


def test_not_an_object() -> None:
    assert errors_of([1, 2], "projects[0]") == ["projects[0]: must be an object, got [1, 2]"]


def test_duplicate_ids_are_errors(raw: dict[str, Any]) -> None:
    second = copy.deepcopy(raw)
    valid, errors = validate_batch([("projects[0]", raw), ("projects[1]", second)])
    assert valid == [raw["id"]]
    assert errors == [f"projects[1].id: duplicate id {raw['id']!r} (first at projects[0])"]


def test_json_and_jsonl_load_the_same(tmp_path: Path) -> None:
    projects = sample_projects(3)
    (tmp_path / "p.json").write_text(json.dumps(projects, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in projects), encoding="utf-8")
    from_json = [parse_project(r, w) for w, r in iter_raw_projects(tmp_path / "p.json")]
    from_jsonl = [parse_project(r, w) for w, r in iter_raw_projects(tmp_path / "p.jsonl")]
    assert from_json == from_jsonl
    assert [w for w, _ in iter_raw_projects(tmp_path / "p.jsonl")] == ["p.jsonl:1", "p.jsonl:2", "p.jsonl:3"]


def test_broken_json_lines_name_the_line_and_spoil_only_that_project(tmp_path: Path) -> None:
    good = sample_projects(2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{json.dumps(good[0])}\n{{not json}}\n{json.dumps(good[1])}\n", encoding="utf-8")
    valid, errors = parse_batch(iter_raw_projects(bad))
    assert [p.id for p in valid] == [good[0]["id"], good[1]["id"]]
    assert len(errors) == 1 and errors[0].startswith("bad.jsonl:2: not valid JSON")


def test_a_project_crosses_to_a_worker_as_the_values_of_its_fields(raw: dict[str, Any]) -> None:
    """Projects go to pool workers pickled: every field comes back, each object remade from its field values by
    one call (no per-object ``__setstate__``), and the whole stays smaller than the default pickle."""
    import pickle
    import pickletools

    project = parse_project(raw)
    data = pickle.dumps(project, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(data)
    assert back == project and repr(back) == repr(project)
    assert type(back.transactions[0]) is type(project.transactions[0])
    assert back.zone_type is project.zone_type
    for obj in (project, project.demographics, *project.transactions):
        constructor, values = obj.__reduce__()
        remade = constructor(*values)
        assert type(remade) is type(obj) and remade == obj and remade is not obj
    assert "BUILD" not in {op.name for op, _, _ in pickletools.genops(data)}  # BUILD: a __setstate__ call


def test_a_fresh_interpreter_unpickles_projects_and_results(raw: dict[str, Any], tmp_path: Path) -> None:
    """A worker started by spawn or forkserver, or on another machine, has pickled nothing yet: the functions that
    remake each class must be there from the class's creation, not from its first pickling."""
    import pickle
    import subprocess
    import sys

    from zerosite.types import ProjectResult, ReportResult, StageTimings, WrittenFile

    project = parse_project(raw)
    written = WrittenFile(str(tmp_path / "M2.html"), 10, "ab" * 32, 7)
    report = ReportResult("M2", None, None, StageTimings(1, 2, 3, 4), 5, written, "cd" * 32)
    result = ProjectResult.of(project, [report, ReportResult("M3", None, "boom", StageTimings(), 0)])
    dumped = tmp_path / "pickled"
    dumped.write_bytes(pickle.dumps((project, result), protocol=pickle.HIGHEST_PROTOCOL))
    script = "import pickle, sys; print(repr(pickle.loads(open(sys.argv[1], 'rb').read())))"
    done = subprocess.run([sys.executable, "-c", script, str(dumped)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == repr((project, result))


def test_a_key_given_twice_is_named_wherever_it_is(raw: dict[str, Any]) -> None:
    """Finding 10: the last value used to win silently (``"land_area_sqm": 1650, "land_area_sqm": 16500``)."""
    text = json.dumps([raw, sample_projects(2)[1]])
    text = text.replace('"land_area_sqm": ', '"land_area_sqm": 5, "land_area_sqm": ', 1)
    text = text.replace('"price_krw": ', '"price_krw": 1, "price_krw": 2, "price_krw": ', 1)
    text = text.replace('"youth": ', '"youth": 0.5, "youth": ', 1)
    valid, errors = parse_batch(records_from_text("p.json", text))
    assert errors == [
        "projects[0].land_area_sqm: given twice",
        "projects[0].transactions[0].price_krw: given 3 times",
        "projects[0].demographics.youth: given twice",
    ]
    assert [p.id for p in valid] == [sample_projects(2)[1]["id"]]  # only that project is invalid
    assert type(load_json("x", json.dumps(raw))) is dict  # an object without a repeated key stays a plain dict


def test_a_key_given_twice_in_json_lines_names_the_line(tmp_path: Path) -> None:
    lines = [json.dumps(p) for p in sample_projects(2)]
    lines[1] = lines[1].replace('"dong": ', '"dong": "x", "dong": ', 1)
    (tmp_path / "p.jsonl").write_text("\n".join(lines), encoding="utf-8")
    valid, errors = parse_batch(iter_raw_projects(tmp_path / "p.jsonl"))
    assert errors == ["p.jsonl:2.dong: given twice"] and len(valid) == 1


def test_projects_given_twice_in_a_document_is_refused() -> None:
    one, two = (json.dumps([p]) for p in sample_projects(2))
    with pytest.raises(InvalidInput) as caught:
        list(records_from_text("p.json", f'{{"projects": {one}, "projects": {two}}}'))
    assert caught.value.errors == ['p.json: "projects" given more than once; expected one list of projects']


BOM = "\ufeff"


@pytest.mark.parametrize("form", ["json", "jsonl", "document"])
def test_a_byte_order_mark_at_the_start_is_skipped_in_a_file_and_a_stream(tmp_path: Path, form: str) -> None:
    """Finding 11: a file with a BOM (Windows tools) was refused; through a pipe a JSON list with one was taken
    for JSON Lines, one error a line."""
    projects = sample_projects(2)
    text = {
        "json": json.dumps(projects, indent=2),
        "jsonl": "\n".join(json.dumps(p) for p in projects),
        "document": json.dumps({"projects": projects}, indent=2),
    }[form]
    path = tmp_path / f"p.{'jsonl' if form == 'jsonl' else 'json'}"
    path.write_bytes((BOM + text).encode("utf-8"))
    expected = [p["id"] for p in projects]
    for records in (iter_raw_projects(path), records_from_text("<stdin>", BOM + text)):
        valid, errors = parse_batch(records)
        assert errors == [] and [p.id for p in valid] == expected


def test_standard_input_with_a_byte_order_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    data = (BOM + json.dumps(sample_projects(2), indent=2)).encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    valid, errors = parse_batch(iter_raw_projects(STDIN))
    assert errors == [] and len(valid) == 2


def test_a_byte_order_mark_inside_json_lines_names_its_line(tmp_path: Path) -> None:
    lines = [json.dumps(p) for p in sample_projects(2)]
    (tmp_path / "p.jsonl").write_text(f"{lines[0]}\n{BOM}{lines[1]}\n", encoding="utf-8")
    valid, errors = parse_batch(iter_raw_projects(tmp_path / "p.jsonl"))
    assert len(valid) == 1
    assert errors == ["p.jsonl:2: not valid JSON: a byte-order mark (U+FEFF) is allowed only at the start"]


def test_closed_standard_input_is_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 7: with file descriptor 0 closed (``<&-``) ``sys.stdin`` is None: that was an AttributeError."""
    import sys

    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InvalidInput) as caught:
        list(iter_raw_projects(STDIN))
    assert caught.value.errors == ["<stdin>: cannot read: standard input is closed"]


@dataclass(frozen=True, slots=True)
class _Point(PickledByFields):
    x: int
    label: str = ""


@dataclass(frozen=True, slots=True)
class _Pixel(_Point):
    colour: str = "red"


class _Loose(_Point):  # no slots of its own: instances have a __dict__ the fields do not cover
    pass


def test_pickled_by_fields_covers_a_subclass_slots_and_refuses_one_without() -> None:
    import pickle

    pixel = _Pixel(3, "a", "blue")
    assert pickle.loads(pickle.dumps(pixel)) == pixel and type(pickle.loads(pickle.dumps(pixel))) is _Pixel
    assert pickle.loads(pickle.dumps(_Point(1))) == _Point(1)
    with pytest.raises(TypeError, match="_Loose is not a dataclass with slots"):
        pickle.dumps(_Loose(1))
