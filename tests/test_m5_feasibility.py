"""Tests of M5 feasibility: NPV and IRR on known flows, the cost build-up by hand, sensitivity, verdict."""

from __future__ import annotations

import dataclasses
import math
import pickle
from dataclasses import dataclass

import pytest
from helpers import make_project

from zerosite.modules.m5_feasibility import (
    MODULE,
    FeasibilityParams,
    annualise,
    brentq,
    compute_feasibility,
    irr_per_period,
    npv,
    npv_and_slope,
    s_curve_weights,
)
from zerosite.rendering import render_report


@dataclass(frozen=True)
class StubAppraisal:
    total_value_krw: int
    per_sqm_krw: int = 0
    per_pyeong_krw: int = 0
    confidence: float = 0.85


@dataclass(frozen=True)
class StubScale:
    gross_floor_area_sqm: float
    floors: int


PROJECT = make_project(id="m5-test")
DEPS = {"M2": StubAppraisal(10_000_000_000), "M4": StubScale(3_000.0, 5)}


# --- NPV and IRR on known flows -----------------------------------------------------------------


def test_irr_of_one_year_ten_percent() -> None:
    flows = [-100.0] + [0.0] * 11 + [110.0]
    monthly = irr_per_period(flows)
    assert monthly is not None
    assert monthly == pytest.approx(1.1 ** (1 / 12) - 1, abs=1e-13)
    assert annualise(monthly) == pytest.approx(0.10, abs=1e-12)


def test_irr_single_period() -> None:
    assert irr_per_period([-100.0, 110.0]) == pytest.approx(0.10, abs=1e-13)
    assert irr_per_period([-100.0, 100.0]) == pytest.approx(0.0, abs=1e-13)
    assert irr_per_period([-100.0, 50.0]) == pytest.approx(-0.5, abs=1e-13)


def test_irr_multi_period_makes_npv_zero() -> None:
    flows = [-1000.0, 300.0, 400.0, 500.0, 200.0]
    rate = irr_per_period(flows)
    assert rate is not None
    assert npv(flows, rate) == pytest.approx(0.0, abs=1e-9)
    # NPV falls through zero at the root: positive just below, negative just above
    assert npv(flows, rate - 1e-4) > 0 > npv(flows, rate + 1e-4)
    assert 0.15 < rate < 0.17  # sum of inflows 1400 on 1000 over ~2.5 years


def test_irr_guess_does_not_change_a_unique_root() -> None:
    flows = [-5000.0, -200.0, -800.0, -800.0, 0.0, 7100.0]
    plain = irr_per_period(flows)
    assert plain is not None
    # the same root by plain bracketing and Brent, independent of the Newton path
    assert plain == pytest.approx(brentq(lambda r: npv(flows, r), 0.0, 0.5), abs=1e-13)
    for guess in (-0.9, -0.5, 0.0, 0.01, 0.3, 5.0, 100.0):  # far guesses fall back to the grid scan
        assert irr_per_period(flows, guess=guess) == pytest.approx(plain, abs=1e-13)


def test_npv_and_slope_matches_a_finite_difference() -> None:
    flows = [-5000.0, -200.0, -800.0, -800.0, 0.0, 7100.0]
    for rate in (-0.3, 0.0, 0.02, 0.4):
        value, slope = npv_and_slope(flows, rate)
        assert value == pytest.approx(npv(flows, rate), rel=1e-14)
        h = 1e-6
        assert slope == pytest.approx((npv(flows, rate + h) - npv(flows, rate - h)) / (2 * h), rel=1e-6)


@pytest.mark.parametrize(
    "flows",
    [[100.0, 50.0, 10.0], [-100.0, -5.0, 0.0], [0.0, 0.0, 0.0], [], [-1.0]],
    ids=["all-positive", "all-negative", "all-zero", "empty", "single"],
)
def test_irr_none_without_sign_change(flows: list[float]) -> None:
    assert irr_per_period(flows) is None
    assert irr_per_period(flows, guess=0.01) is None


def test_irr_with_two_roots_returns_one_of_them() -> None:
    # -100 y^2 + 230 y - 132 = 0 with y = 1 + r: roots r = 10 % and r = 20 %
    flows = [-100.0, 230.0, -132.0]
    rate = irr_per_period(flows)
    assert rate is not None
    assert min(abs(rate - 0.1), abs(rate - 0.2)) < 1e-10


def test_irr_none_when_npv_never_crosses_zero() -> None:
    # sign changes in the flows but NPV = -(1 - x)^2 - 1 < 0 for every rate
    flows = [-2.0, 2.0, -1.0]
    assert irr_per_period(flows) is None


def test_npv_hand_values() -> None:
    assert npv([-100.0, 110.0], 0.10) == pytest.approx(0.0, abs=1e-12)
    assert npv([100.0], 0.5) == 100.0
    assert npv([0.0, 0.0, 121.0], 0.10) == pytest.approx(100.0)
    monthly_6pct = 1.06 ** (1 / 12) - 1
    assert npv([-100.0] + [0.0] * 11 + [106.0], monthly_6pct) == pytest.approx(0.0, abs=1e-10)


def test_brentq_finds_sqrt2_and_rejects_bad_brackets() -> None:
    assert brentq(lambda x: x * x - 2.0, 0.0, 2.0) == pytest.approx(math.sqrt(2.0), abs=1e-14)
    assert brentq(lambda x: x**3 - x - 2.0, 1.0, 2.0) == pytest.approx(1.5213797068045676, abs=1e-14)
    assert brentq(lambda x: x - 1.0, 1.0, 3.0) == 1.0
    with pytest.raises(ValueError):
        brentq(lambda x: x * x + 1.0, -1.0, 1.0)


def test_s_curve_weights_sum_to_one_and_peak_mid_build() -> None:
    weights = s_curve_weights(24)
    assert len(weights) == 24
    assert sum(weights) == pytest.approx(1.0, abs=1e-15)
    assert all(w > 0 for w in weights)
    assert max(weights) in (weights[11], weights[12])
    assert weights[0] < weights[5] < weights[11]
    assert all(a == pytest.approx(b, abs=1e-15) for a, b in zip(weights, reversed(weights), strict=True))


# --- the cost build-up by hand ------------------------------------------------------------------


def test_costs_and_price_by_hand() -> None:
    r = compute_feasibility(PROJECT, DEPS)
    assert r.acquisition_tax_krw == 460_000_000
    assert r.land_cost_krw == 10_460_000_000
    assert r.construction_unit_cost_krw == 3_000_000
    assert r.construction_cost_krw == 9_000_000_000
    assert r.design_cost_krw == 270_000_000
    assert r.indirect_cost_krw == 450_000_000
    assert r.contingency_krw == 486_000_000  # 5 % of 9,720,000,000
    # cosine S-curve: average drawn share over 24 months = (24 + 1) / (2 * 24)
    development = 9_000_000_000 + 270_000_000 + 450_000_000 + 486_000_000
    expected_financing = 0.70 * 0.055 * 2 * (10_460_000_000 + development * 25 / 48)
    assert r.financing_cost_krw == round(expected_financing) == 1_214_723_125
    assert r.total_cost_krw == 10_460_000_000 + development + 1_214_723_125
    assert r.lh_building_price_krw == 15_000_000_000
    assert r.purchase_price_krw == 25_000_000_000
    assert r.down_payment_krw == 2_500_000_000
    assert r.balance_payment_krw == 22_500_000_000
    assert r.profit_krw == 25_000_000_000 - r.total_cost_krw
    assert r.margin == pytest.approx(r.profit_krw / 25_000_000_000)


def test_high_rise_costs_more_per_sqm() -> None:
    params = FeasibilityParams()
    low = compute_feasibility(PROJECT, {**DEPS, "M4": StubScale(3_000.0, params.high_rise_above_floors)})
    high = compute_feasibility(PROJECT, {**DEPS, "M4": StubScale(3_000.0, params.high_rise_above_floors + 1)})
    assert low.construction_unit_cost_krw == params.construction_cost_per_sqm_krw
    assert high.construction_unit_cost_krw == params.high_rise_construction_cost_per_sqm_krw
    assert high.construction_cost_krw > low.construction_cost_krw


def test_schedule_timing_and_totals() -> None:
    r = compute_feasibility(PROJECT, DEPS)
    params = FeasibilityParams()
    assert [row.month for row in r.schedule] == list(range(params.construction_months + params.balance_lag_months + 1))
    first, completion, last = r.schedule[0], r.schedule[params.construction_months], r.schedule[-1]
    assert first.land_krw == -r.land_cost_krw
    assert first.lh_receipt_krw == r.down_payment_krw
    assert first.development_krw == 0
    assert completion.financing_krw == -r.financing_cost_krw
    assert last.lh_receipt_krw == r.balance_payment_krw
    assert sum(row.development_krw for row in r.schedule) == -(
        r.construction_cost_krw + r.design_cost_krw + r.indirect_cost_krw + r.contingency_krw
    )
    assert all(
        row.net_krw == row.land_krw + row.development_krw + row.financing_krw + row.lh_receipt_krw for row in r.schedule
    )
    assert last.cumulative_krw == r.profit_krw
    assert r.peak_funding_krw == -min(row.cumulative_krw for row in r.schedule)
    assert r.cumulative_points[-1] == (last.month, last.cumulative_krw / 1e8)


def test_npv_and_irr_agree_with_the_schedule() -> None:
    r = compute_feasibility(PROJECT, DEPS)
    flows = [float(row.net_krw) for row in r.schedule]
    monthly_discount = 1.06 ** (1 / 12) - 1
    assert r.npv_krw == pytest.approx(npv(flows, monthly_discount), abs=5.0)
    assert r.irr_monthly is not None and r.irr_annual is not None
    assert r.irr_annual == pytest.approx((1 + r.irr_monthly) ** 12 - 1)
    # the schedule is whole won; the IRR is on unrounded flows
    assert abs(npv(flows, r.irr_monthly)) < 1e-6 * r.purchase_price_krw
    assert (r.npv_krw > 0) == (r.irr_annual > r.discount_rate_annual)


# --- sensitivity and verdict --------------------------------------------------------------------


def test_sensitivity_grid_shape_and_centre() -> None:
    r = compute_feasibility(PROJECT, DEPS)
    assert len(r.sensitivity) == 25
    assert [cell.cost_change for cell in r.sensitivity[::5]] == [-0.2, -0.1, 0.0, 0.1, 0.2]
    assert [cell.price_change for cell in r.sensitivity[:5]] == [-0.1, -0.05, 0.0, 0.05, 0.1]
    centre = r.sensitivity[12]
    assert (centre.cost_change, centre.price_change) == (0.0, 0.0)
    assert centre.npv_krw == r.npv_krw
    assert centre.irr_annual == r.irr_annual
    assert centre.margin == pytest.approx(r.margin)
    assert centre.passed == (r.verdict == "PASS")
    rows = r.sensitivity_rows
    assert [change for change, _ in rows] == [-0.2, -0.1, 0.0, 0.1, 0.2]
    assert all(len(cells) == 5 for _, cells in rows)


def test_sensitivity_is_monotone() -> None:
    r = compute_feasibility(PROJECT, DEPS)
    for _, cells in r.sensitivity_rows:  # higher price: higher NPV and IRR
        assert [c.npv_krw for c in cells] == sorted(c.npv_krw for c in cells)
        assert [c.irr_annual for c in cells] == sorted(c.irr_annual for c in cells)
    for j in range(5):  # higher cost: lower NPV and IRR
        column = r.sensitivity[j::5]
        assert [c.npv_krw for c in column] == sorted((c.npv_krw for c in column), reverse=True)
        assert [c.irr_annual for c in column] == sorted((c.irr_annual for c in column), reverse=True)


@pytest.mark.parametrize("index", range(25))
def test_sensitivity_cell_matches_a_full_recomputation(index: int) -> None:
    """Each cell against flows rebuilt from the schedule: costs scaled by hand, receipts scaled."""
    r = compute_feasibility(PROJECT, DEPS)
    cell = r.sensitivity[index]
    dc, dp = cell.cost_change, cell.price_change
    # Recompute with the construction unit cost scaled: every cost but land (and land financing) follows.
    scaled = FeasibilityParams(construction_cost_per_sqm_krw=round(3_000_000 * (1 + dc)))
    cost_case = compute_feasibility(PROJECT, DEPS, scaled)
    flows = [
        row.land_krw + row.development_krw + row.financing_krw + (1 + dp) * row.lh_receipt_krw
        for row in cost_case.schedule
    ]
    monthly_discount = 1.06 ** (1 / 12) - 1
    assert cell.npv_krw == pytest.approx(npv(flows, monthly_discount), abs=10.0)
    expected_irr = irr_per_period(flows)
    assert expected_irr is not None and cell.irr_annual is not None
    assert cell.irr_annual == pytest.approx(annualise(expected_irr), abs=1e-9)
    profit = (1 + dp) * cost_case.purchase_price_krw - cost_case.total_cost_krw
    assert cell.margin == pytest.approx(profit / ((1 + dp) * cost_case.purchase_price_krw), abs=1e-9)


def test_verdict_thresholds() -> None:
    base = compute_feasibility(PROJECT, DEPS)
    assert base.irr_annual is not None
    assert base.verdict == ("PASS" if base.irr_annual >= 0.07 and base.margin >= 0.05 else "FAIL")
    # just above and just below the base IRR as hurdle
    at_hurdle = compute_feasibility(PROJECT, DEPS, FeasibilityParams(hurdle_irr_annual=base.irr_annual - 1e-9))
    above_hurdle = compute_feasibility(PROJECT, DEPS, FeasibilityParams(hurdle_irr_annual=base.irr_annual + 1e-9))
    assert at_hurdle.verdict == "PASS" and above_hurdle.verdict == "FAIL"
    strict_margin = compute_feasibility(
        PROJECT, DEPS, FeasibilityParams(hurdle_irr_annual=0.0, min_margin=base.margin + 1e-9)
    )
    assert strict_margin.verdict == "FAIL"
    cheap = compute_feasibility(PROJECT, DEPS, FeasibilityParams(lh_standard_cost_per_sqm_krw=3_000_000))
    assert cheap.profit_krw < 0 and cheap.verdict == "FAIL" and cheap.npv_krw < 0


def test_irr_none_when_everything_is_a_loss() -> None:
    nothing_paid = FeasibilityParams(lh_standard_cost_per_sqm_krw=0)
    r = compute_feasibility(PROJECT, {"M2": StubAppraisal(0), "M4": StubScale(3_000.0, 5)}, nothing_paid)
    assert r.irr_annual is None and r.irr_monthly is None
    assert r.verdict == "FAIL"
    assert all(cell.irr_annual is None and not cell.passed for cell in r.sensitivity)


def test_result_is_pure_deterministic_data() -> None:
    a = compute_feasibility(PROJECT, DEPS)
    b = compute_feasibility(PROJECT, DEPS)
    assert a == b
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.npv_krw = 0  # type: ignore[misc]
    assert MODULE.name == "M5" and MODULE.requires == ("M2", "M4")
    assert MODULE.compute is compute_feasibility


# --- the rendered report ------------------------------------------------------------------------


@dataclass(frozen=True)
class StubScaleForReport:
    gross_floor_area_sqm: float
    floors: int
    units: int


def render(result, deps) -> str:
    return render_report(MODULE, PROJECT, result, deps)


def test_report_renders_costs_cash_flow_and_sensitivity() -> None:
    deps = {"M2": StubAppraisal(10_000_000_000), "M4": StubScaleForReport(3_000.0, 5, 60)}
    result = compute_feasibility(PROJECT, deps)
    html = render(result, deps)
    assert '<html lang="ko">' in html
    for heading in ("핵심 판단 요약", "사업비와 LH 매입가", "월별 현금흐름", "수익성 지표", "민감도 분석", "법적 고지"):
        assert heading in html
    assert f"{result.total_cost_krw:,}원" in html and "25,000,000,000원" in html
    assert 'class="chart line-chart"' in html and "<polyline" in html
    assert html.count('<tr><td class="center">') == len(result.schedule)  # one row per month
    grid = html[html.index('<table class="sensitivity">') :]
    grid = grid[: grid.index("</table>")]
    assert grid.count('<td class="num">') == 25
    assert grid.count('class="selected"') == 1
    badge = "PASS" if result.passed else "FAIL"
    assert f"({badge})" in html
    assert 8_000 < len(html.encode()) < 40_000
    assert html == render(result, deps)


def test_report_without_irr() -> None:
    deps = {"M2": StubAppraisal(0), "M4": StubScaleForReport(3_000.0, 5, 60)}
    result = compute_feasibility(PROJECT, deps, FeasibilityParams(lh_standard_cost_per_sqm_krw=0))
    html = render(result, deps)
    assert "산출 불가" in html and "미흡 (FAIL)" in html
