"""Tests of M3 supply type: hand-computed scores, ranking, the tie flag, reasons and the report."""

from __future__ import annotations

import dataclasses
import pickle
import statistics

import pytest
from helpers import project_dict

from zerosite.modules.m3_supply_type import MODULE, SupplyTypeParams, decide_supply_type
from zerosite.project import parse_project
from zerosite.rendering import render_report
from zerosite.sample import sample_projects

BASELINE = {"youth": 0.25, "newlywed": 0.14, "multichild": 0.07, "senior": 0.17}


# The defaults of ``helpers.project_dict`` but for these: the hand-computed scores below depend on them.
BASE = {
    "id": "m3-test",
    "zone_type": "제3종일반주거지역",
    "official_price_per_sqm": 6_000_000,
    "subway_distance_m": 300.0,
    "demographics": BASELINE,
}


def make_project(**overrides) -> dict:
    return project_dict(**{**BASE, **overrides})


def decide(**overrides):
    project = parse_project(make_project(**overrides))
    return project, decide_supply_type(project, {})


def scores(result) -> dict[str, float]:
    return {t.key: t.score for t in result.ranking}


def test_youth_heavy_site_near_subway_selects_youth():
    _, result = decide(
        demographics={"youth": 0.45, "newlywed": 0.10, "multichild": 0.04, "senior": 0.12},
        subway_distance_m=250.0,
        land_area_sqm=800.0,
        zone_type="준주거지역",
    )
    s = scores(result)
    # 청년: demand = 50 + 75 * (0.45/0.25 - 1) = 110 -> capped at 100
    #       site = 100 (250 m ≤ 500 m) * 0.4 + 100 (800 ≥ 500 ㎡) * 0.3 + 100 (준주거) * 0.3 = 100
    #       score = 85 * 0.5 + 100 * 0.3 + 100 * 0.2 = 42.5 + 30 + 20 = 92.5
    assert s["youth"] == pytest.approx(92.5)
    # 신혼·신생아 I: demand = 50 + 75 * (0.10/0.14 - 1) = 28.571…
    #       site = 100 * 0.4 + 100 (800 ≥ 700 ㎡) * 0.3 + 90 * 0.3 = 97
    #       score = 90 * 0.5 + 28.571 * 0.3 + 97 * 0.2 = 45 + 8.571 + 19.4 = 72.971…
    assert s["newlywed_1"] == pytest.approx(45 + (50 + 75 * (0.10 / 0.14 - 1)) * 0.3 + 19.4)
    assert result.selected == "youth"
    assert result.selected_label == "청년"
    assert result.unit_area_sqm == 30.0
    assert result.score == pytest.approx(92.5)
    assert not result.tie
    assert result.runner_up == "newlywed_1"
    assert result.margin == pytest.approx(92.5 - s["newlywed_1"])
    assert any("역세권" in reason for reason in result.reasons)


def test_large_family_site_selects_multichild():
    _, result = decide(
        demographics={"youth": 0.18, "newlywed": 0.12, "multichild": 0.14, "senior": 0.15},
        subway_distance_m=1500.0,
        land_area_sqm=3000.0,
        zone_type="제1종일반주거지역",
    )
    s = scores(result)
    # 다자녀: demand = 50 + 75 * (0.14/0.07 - 1) = 125 -> 100
    #         subway = 100 - 3 * (1500 - 500)/100 = 70; land = 100 (3000 ≥ 1500); zone 1종 = 90
    #         site = 70 * 0.4 + 100 * 0.3 + 90 * 0.3 = 28 + 30 + 27 = 85
    #         score = 80 * 0.5 + 100 * 0.3 + 85 * 0.2 = 40 + 30 + 17 = 87
    assert s["multichild"] == pytest.approx(87.0)
    # 고령자: subway = max(100 - 8 * 10, 20) = 20 (the floor); site = 8 + 30 + 27 = 65
    #         demand = 50 + 75 * (0.15/0.17 - 1) = 41.176…; score = 37.5 + 12.353 + 13 = 62.853…
    senior = next(t for t in result.ranking if t.key == "senior")
    assert senior.subway_score == 20.0
    assert senior.score == pytest.approx(37.5 + (50 + 75 * (0.15 / 0.17 - 1)) * 0.3 + 13.0)
    assert result.selected == "multichild"
    assert result.selected_label == "다자녀"
    assert result.unit_area_sqm == 85.0
    assert not result.tie


def test_close_scores_are_flagged_as_a_tie():
    # Every group at the city baseline: demand is 50 for every type.
    _, result = decide(subway_distance_m=300.0, land_area_sqm=1000.0, zone_type="제3종일반주거지역")
    s = scores(result)
    # 신혼·신생아 I: 90 * 0.5 + 50 * 0.3 + (100 * 0.4 + 100 * 0.3 + 100 * 0.3) * 0.2 = 45 + 15 + 20 = 80
    # 청년:         85 * 0.5 + 50 * 0.3 + (100 * 0.4 + 100 * 0.3 +  90 * 0.3) * 0.2 = 42.5 + 15 + 19.4 = 76.9
    assert s["newlywed_1"] == pytest.approx(80.0)
    assert s["youth"] == pytest.approx(76.9)
    assert result.selected == "newlywed_1"
    assert result.runner_up == "youth"
    assert result.margin == pytest.approx(3.1)
    assert result.tie
    assert any("동점" in paragraph for paragraph in result.opinion)


def test_tie_threshold_is_a_parameter():
    project = parse_project(make_project())
    assert not decide_supply_type(project, {}, SupplyTypeParams(tie_margin_points=3.0)).tie


def test_ranking_is_complete_ordered_and_numbered():
    _, result = decide(demographics={"youth": 0.3, "newlywed": 0.2, "multichild": 0.05, "senior": 0.2})
    assert [t.rank for t in result.ranking] == [1, 2, 3, 4, 5]
    assert sorted(t.key for t in result.ranking) == sorted(
        ["youth", "newlywed_1", "newlywed_2", "multichild", "senior"]
    )
    ordered = [t.score for t in result.ranking]
    assert ordered == sorted(ordered, reverse=True)
    assert result.selected == result.ranking[0].key
    for t in result.ranking:
        assert t.score == pytest.approx(t.policy_fit * 0.5 + t.demand * 0.3 + t.site * 0.2)
        assert 0 <= t.score <= 100
        assert len(t.reasons) == 3


def test_equal_scores_keep_the_parameter_order():
    project = parse_project(make_project())
    same = SupplyTypeParams()
    twins = dataclasses.replace(same, types=(same.types[0], dataclasses.replace(same.types[0], key="youth_b")))
    result = decide_supply_type(project, {}, twins)
    assert [t.key for t in result.ranking] == ["youth", "youth_b"]
    assert result.tie
    assert result.margin == 0.0


def test_small_site_lowers_land_score_for_large_units():
    _, result = decide(land_area_sqm=600.0)
    multichild = next(t for t in result.ranking if t.key == "multichild")
    assert multichild.land_score == pytest.approx(100 * 600 / 1500)
    assert "미달" in multichild.reasons[2]


def test_result_is_frozen_picklable_data_with_the_contract_attributes():
    _, result = decide()
    assert isinstance(result.selected, str)
    assert isinstance(result.selected_label, str)
    assert isinstance(result.unit_area_sqm, float)
    assert isinstance(result.score, float)
    assert isinstance(result.tie, bool)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.selected = "senior"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(result)) == result


def test_module_declaration():
    assert MODULE.name == "M3"
    assert MODULE.requires == ()
    assert MODULE.template == "m3_supply_type.html.j2"
    assert MODULE.compute is decide_supply_type


# --- The rendered report --------------------------------------------------------------------------


def render(project, result) -> str:
    return render_report(MODULE, project, result, {})


def test_report_shows_ranking_reasons_and_layout():
    project, result = decide()
    html = render(project, result)
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="ko">' in html
    for heading in ("핵심 판단 요약", "평가 체계", "수요 분석", "입지 적합성", "종합 순위", "종합 판단", "법적 고지"):
        assert heading in html
    for t in result.ranking:
        assert t.label in html
    assert html.count('<g class="score">') == 5
    assert "동점 검토" in html  # the baseline project is a tie
    assert result.reasons[1] in html


def test_typical_report_size_is_near_the_original():
    sizes = []
    for raw in sample_projects(10):
        project = parse_project(raw)
        sizes.append(len(render(project, decide_supply_type(project, {})).encode()))
    assert 14_000 < statistics.mean(sizes) < 28_000, sizes
