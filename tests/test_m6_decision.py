"""Tests of M6 decision: points per criterion by hand, normalisation, grade and decision thresholds, reasons."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass

import helpers
import pytest
from helpers import StubSupply

from zerosite.modules.m6_decision import MODULE, compute_decision, decision_for, grade_for
from zerosite.pipeline import compute_project, plan
from zerosite.plugins import get_modules
from zerosite.project import parse_project
from zerosite.rendering import render_report
from zerosite.sample import sample_projects


@dataclass(frozen=True)
class StubItem:
    label: str
    passed: bool


@dataclass(frozen=True)
class StubScale:
    units: int
    floors: int
    parking_required: int
    parking_provided: int
    checklist: tuple[StubItem, ...]


@dataclass(frozen=True)
class StubFeasibility:
    irr_annual: float | None
    margin: float
    verdict: str = "PASS"
    npv_krw: int = 0


def checklist(*passed: bool) -> tuple[StubItem, ...]:
    labels = ("세대수 규모", "소형주택 비율", "주차대수 확보", "층수 제한")
    return tuple(StubItem(label, ok) for label, ok in zip(labels, passed, strict=True))


# The defaults of ``helpers.project_dict`` but for these: a site that earns every location point
# (200 m to the subway, a 15 m road, a corner lot), which the hand-computed scores below start from.
BASE = {"id": "m6-test", "land_area_sqm": 1500.0, "road_width_m": 15.0, "corner_lot": True, "subway_distance_m": 200.0}


def make_project(**overrides):
    return helpers.make_project(**{**BASE, **overrides})


BEST_SCALE = StubScale(150, 8, 90, 90, checklist(True, True, True, True))
BEST_FEAS = StubFeasibility(0.15, 0.12)


@pytest.mark.parametrize(
    ("score", "grade"),
    [
        (100.0, "S"),
        (90.0, "S"),
        (89.9, "A"),
        (80.0, "A"),
        (79.9, "B"),
        (70.0, "B"),
        (69.9, "C"),
        (60.0, "C"),
        (59.9, "D"),
        (50.0, "D"),
        (49.9, "F"),
        (0.0, "F"),
    ],
)
def test_grade_thresholds(score: float, grade: str) -> None:
    assert grade_for(score) == grade


@pytest.mark.parametrize(
    ("score", "decision"),
    [(100.0, "GO"), (80.0, "GO"), (79.9, "CONDITIONAL"), (70.0, "CONDITIONAL"), (69.9, "NO-GO"), (0.0, "NO-GO")],
)
def test_decision_thresholds(score: float, decision: str) -> None:
    assert decision_for(score) == decision


def test_perfect_site_scores_100() -> None:
    r = compute_decision(make_project(), {"M3": StubSupply(), "M4": BEST_SCALE, "M5": BEST_FEAS})
    assert r.raw_score == 110.0 and r.max_raw_score == 110.0
    assert r.score == 100.0
    assert (r.grade, r.decision, r.decision_label) == ("S", "GO", "사업 추진")
    assert r.reasons == ()
    assert [(c.label, c.score, c.max_score) for c in r.categories] == [
        ("입지", 35.0, 35.0),
        ("규모", 20.0, 20.0),
        ("사업성", 40.0, 40.0),
        ("법규·기준 적합", 15.0, 15.0),
    ]


def test_mixed_site_by_hand() -> None:
    project = make_project(subway_distance_m=600.0, road_width_m=7.0, corner_lot=False, zone_type="제1종일반주거지역")
    scale = StubScale(80, 5, 25, 20, checklist(False, True, True, True))
    feas = StubFeasibility(0.08, 0.06, verdict="PASS")
    r = compute_decision(project, {"M3": StubSupply(tie=True), "M4": scale, "M5": feas})
    points = {item.label: item.score for item in r.items}
    assert points == {
        "지하철 접근성": 8.0,  # 600 m: <= 800 m band
        "접면 도로 폭": 6.0,  # 7 m: >= 6 m band
        "가로구역 여건": 3.0,  # not a corner lot
        "LH 체크리스트 충족": 7.5,  # 3 of 4
        "세대수": 7.0,  # 80 units: 70-250
        "내부수익률(IRR)": 16.0,  # 8 %: >= 7 %
        "사업이익률": 9.0,  # 6 %: >= 5 %
        "주차 기준": 4.0,  # 20 / 25 of 5 points
        "층수 기준": 5.0,
        "용도지역 적합성": 3.0,  # 제1종
    }
    assert r.raw_score == pytest.approx(68.5)
    assert r.score == 62.3  # 68.5 / 110 * 100 = 62.27
    assert (r.grade, r.decision) == ("C", "NO-GO")
    # most points lost: IRR 9, subway 7, then road and margin 6 each (criteria order breaks the tie)
    assert [reason.split(":")[0] for reason in r.reasons] == ["내부수익률(IRR)", "지하철 접근성", "접면 도로 폭"]
    assert "9.0점 감점" in r.reasons[0]
    assert r.supply_type_tie is True and r.supply_type_label == "청년"
    assert sum(c.score for c in r.categories) == pytest.approx(r.raw_score)


def test_irr_none_scores_zero_for_irr() -> None:
    r = compute_decision(
        make_project(), {"M3": StubSupply(), "M4": BEST_SCALE, "M5": StubFeasibility(None, -0.2, "FAIL")}
    )
    irr_item = next(item for item in r.items if item.label == "내부수익률(IRR)")
    assert irr_item.score == 0.0 and "산출 불가" in irr_item.remark
    assert r.raw_score == 110.0 - 40.0
    assert r.score == 63.6
    assert r.decision == "NO-GO" and r.feasibility_verdict == "FAIL"
    assert r.reasons[0].startswith("내부수익률(IRR)")


@pytest.mark.parametrize(
    ("units", "points"),
    [
        (100, 10.0),
        (200, 10.0),
        (99, 7.0),
        (70, 7.0),
        (250, 7.0),
        (69, 4.0),
        (40, 4.0),
        (300, 4.0),
        (39, 1.0),
        (301, 1.0),
    ],
)
def test_unit_count_bands(units: int, points: float) -> None:
    scale = dataclasses.replace(BEST_SCALE, units=units)
    r = compute_decision(make_project(), {"M3": StubSupply(), "M4": scale, "M5": BEST_FEAS})
    assert next(item.score for item in r.items if item.label == "세대수") == points


@pytest.mark.parametrize(
    ("subway_m", "road_m", "corner", "parking_provided", "raw", "score", "grade", "decision"),
    [
        (1500.0, 7.0, True, 24, 88.0, 80.0, "A", "GO"),  # -15 subway, -6 road, -1 parking
        (1500.0, 7.0, True, 21, 87.5, 79.5, "B", "CONDITIONAL"),  # parking 21 / 30: -1.5
        (1500.0, 3.0, False, 24, 77.0, 70.0, "B", "CONDITIONAL"),  # -15, -12, -5 corner, -1
        (1500.0, 3.0, False, 21, 76.5, 69.5, "C", "NO-GO"),
    ],
)
def test_decision_boundary_on_the_normalised_score(
    subway_m: float,
    road_m: float,
    corner: bool,
    parking_provided: int,
    raw: float,
    score: float,
    grade: str,
    decision: str,
) -> None:
    project = make_project(subway_distance_m=subway_m, road_width_m=road_m, corner_lot=corner)
    scale = dataclasses.replace(BEST_SCALE, parking_required=30, parking_provided=parking_provided)
    r = compute_decision(project, {"M3": StubSupply(), "M4": scale, "M5": BEST_FEAS})
    assert r.raw_score == pytest.approx(raw)
    assert (r.score, r.grade, r.decision) == (score, grade, decision)
    assert len(r.reasons) == 3 and r.reasons[0].startswith("지하철 접근성")


def test_result_is_pure_deterministic_data() -> None:
    deps = {"M3": StubSupply(), "M4": BEST_SCALE, "M5": BEST_FEAS}
    a = compute_decision(make_project(), deps)
    assert a == compute_decision(make_project(), deps)
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.score = 0.0  # type: ignore[misc]
    assert MODULE.name == "M6" and MODULE.requires == ("M3", "M4", "M5")


# --- the rendered report and the whole chain ----------------------------------------------------


def test_report_renders_score_bars_and_reasons() -> None:
    project = make_project(subway_distance_m=600.0, road_width_m=7.0, corner_lot=False)
    deps = {
        "M3": StubSupply(),
        "M4": StubScale(80, 5, 25, 20, checklist(False, True, True, True)),
        "M5": StubFeasibility(0.08, 0.06),
    }
    result = compute_decision(project, deps)
    html = render_report(MODULE, project, result, deps)
    assert '<html lang="ko">' in html
    assert 'class="chart score-bars"' in html
    assert f"{result.score:.1f}점" in html and f"{result.grade}등급" in html
    assert result.score == 64.1  # 70.5 / 110: location 17, scale 14.5, feasibility 25, compliance 14
    assert '<span class="badge no-go">NO-GO</span> 추진 보류' in html
    for reason in result.reasons:
        assert reason in html
    for category in result.categories:
        assert category.label in html
    assert html.count('<g class="score">') == len(result.categories) + len(result.items)
    assert len(html.encode()) > 2_000
    assert html == render_report(MODULE, project, result, deps)


def test_real_chain_renders_for_sample_projects() -> None:
    """M2 -> M3 -> M4 -> M5 -> M6 with the real modules: consistent results, no numbers assumed."""

    modules = get_modules()
    order = plan(modules, ["M6"])
    assert [m.name for m in order][-3:] == ["M4", "M5", "M6"]
    for raw in sample_projects(5, seed=0):
        project = parse_project(raw)
        results = compute_project(project, order)
        scale, feasibility, decision = results["M4"], results["M5"], results["M6"]
        assert scale.unit_area_sqm == results["M3"].unit_area_sqm
        assert feasibility.gross_floor_area_sqm == scale.gross_floor_area_sqm
        assert feasibility.land_value_krw == results["M2"].total_value_krw
        assert 0.0 <= decision.score <= 100.0
        assert decision.decision in ("GO", "CONDITIONAL", "NO-GO")
        for name in ("M4", "M5", "M6"):
            module = modules[name]
            html = render_report(module, project, results[name], {d: results[d] for d in module.requires})
            assert html.rstrip().endswith("</html>")
