"""Tests of M2 land appraisal: hand-computed adjustments and reconciliation, the fallback, confidence, the report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import pickle
import re
import statistics

import pytest
from helpers import project_dict

from zerosite.modules.m2_appraisal import MODULE, AppraisalParams, appraise, months_between
from zerosite.project import SQM_PER_PYEONG, parse_project
from zerosite.rendering import render_report
from zerosite.sample import sample_projects

SEOUL_2 = "제2종일반주거지역"
SEOUL_3 = "제3종일반주거지역"


def sale(date: str, area_sqm: float, unit_price_krw: int, distance_m: float, zone: str = SEOUL_2) -> dict:
    return {
        "date": date,
        "area_sqm": area_sqm,
        "price_krw": int(area_sqm * unit_price_krw),
        "distance_m": distance_m,
        "zone_type": zone,
    }


# Three comparables chosen so every factor can be written out by hand (valuation date 2026-01-01).
THREE_SALES = [
    sale("2025-01-01", 1000.0, 10_000_000, 100.0),  # 12 months, same size, 100 m, same zone
    sale("2025-07-01", 2000.0, 9_000_000, 50.0),  # 6 months, twice the size, 50 m, same zone
    sale("2026-01-01", 500.0, 11_000_000, 200.0, SEOUL_3),  # 0 months, half the size, 200 m, other zone
]


# The defaults of ``helpers.project_dict`` but for these: the hand-computed values below depend on them.
BASE = {
    "id": "m2-test",
    "official_price_per_sqm": 5_000_000,
    "transactions": THREE_SALES,
    "demographics": {"youth": 0.3, "newlywed": 0.15, "multichild": 0.07, "senior": 0.17},
}


def make_project(**overrides) -> dict:
    return project_dict(**{**BASE, **overrides})


def run(**overrides):
    project = parse_project(make_project(**overrides))
    return project, appraise(project, {})


# Income approach for 1,000 ㎡ of 제2종 (FAR 200 %) with the default parameters:
#   floor area 2,000 ㎡; NOI = 2,000 * 450,000 * 0.95 * 0.80 = 684,000,000
#   property value = 684,000,000 / 0.045 = 15,200,000,000; construction = 2,000 * 3,000,000 = 6,000,000,000
#   land value = 9,200,000,000 -> 9,200,000 KRW/㎡
INCOME_UNIT = 9_200_000.0
# Official-price approach: 5,000,000 * 1.40 = 7,000,000 KRW/㎡
OFFICIAL_UNIT = 7_000_000.0


def test_months_between_counts_calendar_months_and_day_fractions():
    assert months_between(dt.date(2025, 1, 1), dt.date(2026, 1, 1)) == 12
    assert months_between(dt.date(2025, 7, 16), dt.date(2026, 1, 1)) == pytest.approx(5 + 15 / 30)


def test_adjustment_table_matches_hand_computation():
    _, result = run()
    c1, c2, c3 = result.cases

    # Case 1: 10,000,000 * 1.003^12 (time) * (1 - 0.02 * 100/100) (location) * 1.0 (size) * 1.00 (zone)
    assert c1.months_elapsed == 12
    assert c1.time_factor == pytest.approx(1.003**12)
    assert c1.location_factor == pytest.approx(0.98)
    assert c1.individual_factor == pytest.approx(1.0)
    adj1 = 10_000_000 * 1.003**12 * 0.98
    assert c1.adjusted_unit_price_krw == pytest.approx(adj1)

    # Case 2: 9,000,000 * 1.003^6 * 0.99 * (2000/1000)^0.05 * 1.00
    assert c2.lot_size_factor == pytest.approx(2**0.05)  # 1.0353, inside the 0.90-1.10 band
    adj2 = 9_000_000 * 1.003**6 * 0.99 * 2**0.05
    assert c2.adjusted_unit_price_krw == pytest.approx(adj2)

    # Case 3: 11,000,000 * 1.003^0 * 0.96 * (500/1000)^0.05 * 0.95 (other zone)
    assert c3.zone_factor == 0.95
    assert c3.individual_factor == pytest.approx(0.5**0.05 * 0.95)
    adj3 = 11_000_000 * 1.0 * 0.96 * 0.5**0.05 * 0.95
    assert c3.adjusted_unit_price_krw == pytest.approx(adj3)

    # Weights 1/100 : 1/50 : 1/200 = 0.010 : 0.020 : 0.005, i.e. 2/7, 4/7, 1/7
    assert [c.weight for c in result.cases] == pytest.approx([2 / 7, 4 / 7, 1 / 7])
    expected_comparison = (2 * adj1 + 4 * adj2 + 1 * adj3) / 7
    assert result.comparison.unit_price_krw == pytest.approx(expected_comparison)

    mean = (adj1 + adj2 + adj3) / 3
    cv = math.sqrt(((adj1 - mean) ** 2 + (adj2 - mean) ** 2 + (adj3 - mean) ** 2) / 3) / mean
    assert result.comparison.cv == pytest.approx(cv)
    assert cv == pytest.approx(statistics.pstdev([adj1, adj2, adj3]) / statistics.mean([adj1, adj2, adj3]))


def test_reconciled_value_matches_hand_computation():
    _, result = run()
    adj1 = 10_000_000 * 1.003**12 * 0.98
    adj2 = 9_000_000 * 1.003**6 * 0.99 * 2**0.05
    adj3 = 11_000_000 * 0.96 * 0.5**0.05 * 0.95
    comparison = (2 * adj1 + 4 * adj2 + adj3) / 7

    assert result.income.far_pct == 200.0
    assert result.income.floor_area_sqm == pytest.approx(2000.0)
    assert result.income.noi_krw == pytest.approx(684_000_000)
    assert result.income.property_value_krw == pytest.approx(15_200_000_000)
    assert result.income.construction_cost_krw == pytest.approx(6_000_000_000)
    assert result.income.unit_price_krw == pytest.approx(INCOME_UNIT)
    assert result.official.unit_price_krw == pytest.approx(OFFICIAL_UNIT)

    unit = 0.5 * comparison + 0.3 * INCOME_UNIT + 0.2 * OFFICIAL_UNIT
    assert result.per_sqm_krw == round(unit)
    assert result.total_value_krw == round(unit * 1000.0)
    assert result.per_pyeong_krw == round(unit * SQM_PER_PYEONG)
    assert [a.weight for a in result.approaches] == [0.5, 0.3, 0.2]
    assert not result.fallback_used

    # Three cases: medium confidence; the range is value * (1 ± CV).
    assert result.confidence_level == "medium"
    assert result.confidence == 0.85
    cv = result.comparison.cv
    assert result.range_cv == cv
    assert result.range_low_krw == round(result.total_value_krw * (1 - cv))
    assert result.range_high_krw == round(result.total_value_krw * (1 + cv))
    assert result.range_low_krw < result.total_value_krw < result.range_high_krw


def test_fewer_than_three_cases_moves_comparison_weight_to_official_price():
    _, result = run(transactions=THREE_SALES[:2])
    assert result.fallback_used
    assert result.comparison.case_count == 2
    assert not result.comparison.used
    assert [a.weight for a in result.approaches] == [0.0, 0.3, 0.7]
    # 0.3 * 9,200,000 + 0.7 * 7,000,000 = 2,760,000 + 4,900,000 = 7,660,000 KRW/㎡
    assert result.per_sqm_krw == 7_660_000
    assert result.total_value_krw == 7_660_000_000
    assert result.confidence_level == "low"
    assert result.confidence == 0.70
    # With the comparison unused, the range falls back to ±15 %.
    assert result.range_cv == 0.15
    assert result.range_low_krw == 6_511_000_000
    assert result.range_high_krw == 8_809_000_000
    assert any("공시지가기준법으로" in paragraph for paragraph in result.opinion)


def test_no_comparables_at_all():
    _, result = run(transactions=[])
    assert result.cases == ()
    assert result.comparison.unit_price_krw is None
    assert result.comparison.cv is None
    assert result.total_value_krw == 7_660_000_000
    assert result.confidence_level == "low"


def test_five_tight_cases_give_high_confidence():
    tight = [sale("2026-01-01", 1000.0, 10_000_000 + 100_000 * i, 100.0) for i in range(5)]
    _, result = run(transactions=tight)
    assert result.comparison.cv < 0.10
    assert result.confidence_level == "high"
    assert result.confidence == 0.95


def test_five_scattered_cases_are_only_medium():
    scattered = [sale("2026-01-01", 1000.0, price, 100.0) for price in (6e6, 8e6, 10e6, 12e6, 14e6)]
    _, result = run(transactions=scattered)
    # Adjusted prices are the raw ones * 0.98: CV = pstdev(6,8,10,12,14) / 10 = 2.828 / 10 = 28.3 %
    assert result.comparison.cv == pytest.approx(math.sqrt(8) / 10)
    assert result.confidence_level == "medium"
    assert result.confidence == 0.85


def test_weight_distance_is_floored_at_50_m_and_location_factor_is_floored():
    near = [
        sale("2026-01-01", 1000.0, 10_000_000, 10.0),
        sale("2026-01-01", 1000.0, 10_000_000, 50.0),
        sale("2026-01-01", 1000.0, 10_000_000, 2000.0),
    ]
    _, result = run(transactions=near)
    w10, w50, w2000 = (c.weight for c in result.cases)
    assert w10 == pytest.approx(w50)
    assert w10 / w2000 == pytest.approx(2000 / 50)
    # 2,000 m would be 1 - 0.40 = 0.60, floored at 0.85
    assert result.cases[2].location_factor == 0.85


def test_income_approach_is_floored_at_zero():
    project = parse_project(make_project())
    params = AppraisalParams(construction_cost_per_sqm_krw=100_000_000)
    result = appraise(project, {}, params)
    assert result.income.land_value_krw == 0.0
    assert result.income.unit_price_krw == 0.0


def test_far_table_holds_the_seoul_values():
    params = AppraisalParams()
    assert [params.far_pct(z) for z in ("제1종일반주거지역", SEOUL_2, SEOUL_3, "준주거지역", "준공업지역")] == [
        150.0,
        200.0,
        250.0,
        400.0,
        400.0,
    ]


def test_result_is_frozen_picklable_data_with_the_contract_attributes():
    _, result = run()
    assert isinstance(result.total_value_krw, int)
    assert isinstance(result.per_sqm_krw, int)
    assert isinstance(result.per_pyeong_krw, int)
    assert isinstance(result.confidence, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.total_value_krw = 0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(result)) == result


def test_module_declaration():
    assert MODULE.name == "M2"
    assert MODULE.requires == ()
    assert MODULE.template == "m2_appraisal.html.j2"
    assert MODULE.compute is appraise


# --- The rendered report --------------------------------------------------------------------------


def render(project, result) -> str:
    return render_report(MODULE, project, result, {})


def test_report_shows_the_figures_and_the_layout():
    project, result = run()
    html = render(project, result)
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="ko">' in html
    assert '<meta charset="utf-8">' in html
    for heading in ("핵심 판단 요약", "거래사례비교법", "수익환원법", "공시지가기준법", "종합 판단", "법적 고지"):
        assert heading in html
    assert f"{result.total_value_krw:,}원" in html
    assert f"{result.per_pyeong_krw:,}원" in html
    for header in ("원단가", "시점", "위치", "개별", "가중치", "보정후단가"):
        assert header in html
    assert html.count('<g class="bar">') == len(result.cases) + 3  # the cases, then the three approaches
    assert "break-after:page" in html


def test_report_renders_without_comparables():
    project, result = run(transactions=[])
    html = render(project, result)
    assert "거래사례가 확인되지 않았습니다" in html


def test_typical_report_size_is_near_the_original():
    sizes = []
    for raw in sample_projects(10):
        project = parse_project(raw)
        sizes.append(len(render(project, appraise(project, {})).encode()))
    assert 18_000 < statistics.mean(sizes) < 34_000, sizes


def test_svg_numbers_have_fixed_decimals():
    project, result = run()
    html = render(project, result)
    widths = re.findall(r'<rect x="\d+" y="\d+" width="([^"]+)"', html)
    assert widths
    assert all(re.fullmatch(r"\d+\.\d", w) for w in widths), widths
