"""M5 feasibility (사업성 분석): costs, LH purchase price, monthly cash flow, NPV, IRR and sensitivity."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zerosite import ReportModule, hookimpl
from zerosite.fields import described
from zerosite.project import Project

__all__ = [
    "MODULE",
    "CashFlowMonth",
    "Feasibility",
    "FeasibilityParams",
    "SensitivityCell",
    "annualise",
    "brentq",
    "compute_feasibility",
    "irr_per_period",
    "npv",
    "npv_and_slope",
    "s_curve_weights",
]


@dataclass(frozen=True)
class FeasibilityParams:
    """Every constant of M5 (rates are fractions; ``*_annual`` rates are effective per year)."""

    acquisition_tax_rate: float = field(default=0.046, metadata=described("share", "Acquisition tax on the land value"))
    construction_cost_per_sqm_krw: int = field(
        default=3_000_000, metadata=described("KRW/㎡", "Construction cost per square metre of gross floor area")
    )
    high_rise_construction_cost_per_sqm_krw: int = field(
        default=3_300_000,
        metadata=described("KRW/㎡", "Construction cost per square metre above high_rise_above_floors"),
    )
    high_rise_above_floors: int = field(
        default=15, metadata=described("floors", "Floors above which the high-rise cost applies")
    )
    design_supervision_rate: float = field(
        default=0.03, metadata=described("share", "Design and supervision cost as a share of construction")
    )
    indirect_rate: float = field(default=0.05, metadata=described("share", "Indirect cost as a share of construction"))
    contingency_rate: float = field(
        default=0.05, metadata=described("share", "Contingency as a share of construction, design and indirect cost")
    )
    loan_to_cost: float = field(default=0.70, metadata=described("share", "Share of cost financed by loan"))
    financing_rate_annual: float = field(
        default=0.055,
        metadata=described("share/year", "Simple interest on the average drawn balance, paid at completion"),
    )
    construction_months: int = field(default=24, metadata=described("months", "Construction period"))
    lh_standard_cost_per_sqm_krw: int = field(
        default=5_000_000, metadata=described("KRW/㎡", "LH standard building cost per square metre it pays")
    )
    down_payment_share: float = field(
        default=0.10, metadata=described("share", "Share of the purchase price LH pays at contract")
    )
    contract_month: int = field(default=0, metadata=described("month", "Month of the LH purchase contract"))
    balance_lag_months: int = field(
        default=1, metadata=described("months", "Months after completion when LH pays the balance")
    )
    discount_rate_annual: float = field(default=0.06, metadata=described("share/year", "Discount rate of the NPV"))
    hurdle_irr_annual: float = field(default=0.07, metadata=described("share/year", "Smallest IRR that passes"))
    min_margin: float = field(default=0.05, metadata=described("share", "Smallest profit margin that passes"))
    cost_changes: tuple[float, ...] = field(
        default=(-0.20, -0.10, 0.0, 0.10, 0.20),
        metadata=described("share", "Construction cost changes of the sensitivity grid rows"),
    )
    price_changes: tuple[float, ...] = field(
        default=(-0.10, -0.05, 0.0, 0.05, 0.10),
        metadata=described("share", "Purchase price changes of the sensitivity grid columns"),
    )


@dataclass(frozen=True)
class CashFlowMonth:
    """One month of the schedule (outflows negative, KRW rounded to the won)."""

    month: int = field(metadata=described("month", "Month from the start, 0 is land purchase"))
    land_krw: int = field(metadata=described("KRW", "Land value and acquisition tax, paid in month 0 (negative)"))
    development_krw: int = field(
        metadata=described("KRW", "Construction, design, indirect cost and contingency spent (negative)")
    )
    financing_krw: int = field(metadata=described("KRW", "All interest, paid at completion (negative)"))
    lh_receipt_krw: int = field(metadata=described("KRW", "Payment received from LH"))
    net_krw: int = field(metadata=described("KRW", "Net cash flow of the month"))
    cumulative_krw: int = field(metadata=described("KRW", "Cumulative net cash flow"))


@dataclass(frozen=True)
class SensitivityCell:
    """The project with construction cost * (1 + cost_change) and purchase price * (1 + price_change)."""

    cost_change: float = field(metadata=described("share", "Change of construction cost"))
    price_change: float = field(metadata=described("share", "Change of the LH purchase price"))
    npv_krw: int = field(metadata=described("KRW", "NPV under these changes"))
    irr_annual: float | None = field(
        metadata=described("share/year", "IRR under these changes; None when there is none")
    )
    margin: float = field(metadata=described("share", "Profit margin under these changes"))
    passed: bool = field(metadata=described("", "Whether IRR and margin both meet their thresholds"))


@dataclass(frozen=True)
class Feasibility:
    """M5 result: cost build-up, LH purchase price, cash flow and the verdict."""

    land_value_krw: int = field(metadata=described("KRW", "Land value from M2"))
    acquisition_tax_krw: int = field(metadata=described("KRW", "Acquisition tax"))
    land_cost_krw: int = field(metadata=described("KRW", "Land value plus acquisition tax"))
    gross_floor_area_sqm: float = field(metadata=described("㎡", "Gross floor area from M4"))
    floors: int = field(metadata=described("floors", "Floors above ground from M4"))
    construction_unit_cost_krw: int = field(metadata=described("KRW/㎡", "Construction cost per square metre applied"))
    construction_cost_krw: int = field(metadata=described("KRW", "Construction cost"))
    design_cost_krw: int = field(metadata=described("KRW", "Design and supervision cost"))
    indirect_cost_krw: int = field(metadata=described("KRW", "Indirect cost"))
    contingency_krw: int = field(metadata=described("KRW", "Contingency"))
    financing_cost_krw: int = field(metadata=described("KRW", "Interest on land and development loans"))
    total_cost_krw: int = field(metadata=described("KRW", "Total project cost"))
    lh_standard_unit_cost_krw: int = field(metadata=described("KRW/㎡", "LH standard building cost per square metre"))
    lh_building_price_krw: int = field(metadata=described("KRW", "LH price of the building"))
    purchase_price_krw: int = field(metadata=described("KRW", "LH purchase price: land value plus building price"))
    down_payment_krw: int = field(metadata=described("KRW", "Part of the price paid at contract"))
    balance_payment_krw: int = field(metadata=described("KRW", "Part of the price paid after completion"))
    profit_krw: int = field(metadata=described("KRW", "Purchase price less total cost"))
    margin: float = field(metadata=described("share", "Profit over purchase price"))
    discount_rate_annual: float = field(metadata=described("share/year", "Discount rate of the NPV"))
    npv_krw: int = field(metadata=described("KRW", "Net present value of the monthly cash flow"))
    irr_monthly: float | None = field(
        metadata=described("share/month", "Internal rate of return per month; None when there is none")
    )
    irr_annual: float | None = field(
        metadata=described("share/year", "Internal rate of return per year; None when there is none")
    )
    hurdle_irr_annual: float = field(metadata=described("share/year", "Smallest IRR that passes"))
    min_margin: float = field(metadata=described("share", "Smallest profit margin that passes"))
    verdict: str = field(metadata=described("", "PASS when IRR and margin meet their thresholds, else FAIL"))
    construction_months: int = field(metadata=described("months", "Construction period"))
    peak_funding_krw: int = field(metadata=described("KRW", "Largest cumulative cash outflow"))
    schedule: tuple[CashFlowMonth, ...] = field(metadata=described("", "Monthly cash flow"))
    cost_changes: tuple[float, ...] = field(
        metadata=described("share", "Construction cost changes of the sensitivity rows")
    )
    price_changes: tuple[float, ...] = field(
        metadata=described("share", "Purchase price changes of the sensitivity columns")
    )
    sensitivity: tuple[SensitivityCell, ...] = field(
        metadata=described("", "Sensitivity grid, row-major: one row per cost change, one column per price change")
    )
    params: FeasibilityParams = field(repr=False, metadata=described("", "The constants the analysis used"))

    @property
    def passed(self) -> bool:
        """Whether the verdict is PASS."""
        return self.verdict == "PASS"

    @property
    def cumulative_points(self) -> list[tuple[int, float]]:
        """(month, cumulative net cash flow in 억원) for the cash-flow chart."""
        return [(row.month, row.cumulative_krw / 1e8) for row in self.schedule]

    @property
    def sensitivity_rows(self) -> list[tuple[float, tuple[SensitivityCell, ...]]]:
        """(cost change, the cells of that row) in grid order."""
        width = len(self.price_changes)
        return [(change, self.sensitivity[i * width : (i + 1) * width]) for i, change in enumerate(self.cost_changes)]

    @property
    def passed_cells(self) -> int:
        """Sensitivity cells that pass."""
        return sum(cell.passed for cell in self.sensitivity)


# --- discounting and root finding -------------------------------------------------------------


def npv(flows: Sequence[float], rate: float) -> float:
    """Net present value of ``flows[t]`` at period ``t`` (t = 0, 1, ...) at ``rate`` per period (Horner)."""
    x = 1.0 / (1.0 + rate)
    acc = 0.0
    for cf in reversed(flows):
        acc = acc * x + cf
    return acc


def annualise(rate_per_month: float) -> float:
    """Monthly effective rate -> annual effective rate: (1 + r)^12 - 1."""
    return (1.0 + rate_per_month) ** 12 - 1.0


def _monthly(rate_annual: float) -> float:
    return float((1.0 + rate_annual) ** (1.0 / 12.0) - 1.0)


def brentq(
    f: Callable[[float], float], a: float, b: float, xtol: float = 1e-15, rtol: float = 1e-14, maxiter: int = 200
) -> float:
    """A root of ``f`` in [a, b] where f(a) and f(b) differ in sign (Brent's method, as in SciPy's brentq)."""
    xpre, xcur = a, b
    fpre, fcur = f(xpre), f(xcur)
    if fpre == 0.0:
        return xpre
    if fcur == 0.0:
        return xcur
    if (fpre > 0.0) == (fcur > 0.0):
        raise ValueError("f(a) and f(b) must have different signs")
    xblk = fblk = spre = scur = 0.0
    for _ in range(maxiter):
        if fpre != 0.0 and fcur != 0.0 and (fpre > 0.0) != (fcur > 0.0):
            xblk, fblk = xpre, fpre
            spre = scur = xcur - xpre
        if abs(fblk) < abs(fcur):
            xpre, xcur, xblk = xcur, xblk, xcur
            fpre, fcur, fblk = fcur, fblk, fcur
        delta = (xtol + rtol * abs(xcur)) / 2.0
        sbis = (xblk - xcur) / 2.0
        if fcur == 0.0 or abs(sbis) < delta:
            return xcur
        if abs(spre) > delta and abs(fcur) < abs(fpre):
            if xpre == xblk:  # secant
                stry = -fcur * (xcur - xpre) / (fcur - fpre)
            else:  # inverse quadratic interpolation
                dpre = (fpre - fcur) / (xpre - xcur)
                dblk = (fblk - fcur) / (xblk - xcur)
                stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            if 2.0 * abs(stry) < min(abs(spre), 3.0 * abs(sbis) - delta):
                spre, scur = scur, stry
            else:
                spre = scur = sbis
        else:
            spre = scur = sbis
        xpre, fpre = xcur, fcur
        xcur += scur if abs(scur) > delta else (delta if sbis > 0 else -delta)
        fcur = f(xcur)
    return xcur


_RATE_GRID = (
    -0.99,
    -0.5,
    -0.2,
    -0.1,
    -0.05,
    -0.02,
    -0.01,
    -0.005,
    0.0,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    3.0,
    10.0,
)


def npv_and_slope(flows: Sequence[float], rate: float) -> tuple[float, float]:
    """NPV at ``rate`` and its derivative d NPV / d rate, in one Horner pass."""
    x = 1.0 / (1.0 + rate)
    value = slope = 0.0
    for cf in reversed(flows):
        slope = slope * x + value
        value = value * x + cf
    return value, -slope * x * x  # d/dr of sum(cf * x^t) with dx/dr = -x^2


def _sign_changes(flows: Sequence[float]) -> int:
    changes, previous = 0, 0.0
    for cf in flows:
        if cf != 0.0:
            if previous * cf < 0.0:
                changes += 1
            previous = cf
    return changes


def _newton(flows: Sequence[float], rate: float, tol: float = 1e-10, maxiter: int = 50) -> float | None:
    """Newton's method from ``rate``; None when it leaves (-1, inf) or does not converge.

    It stops after a step below ``tol``: convergence is quadratic, so the error left is of order tol^2.
    """
    for _ in range(maxiter):
        value, slope = npv_and_slope(flows, rate)
        if value == 0.0:
            return rate
        if slope == 0.0 or not math.isfinite(slope) or not math.isfinite(value):
            return None
        step = value / slope
        rate -= step
        if rate <= -1.0:
            return None
        if abs(step) <= tol * (1.0 + abs(rate)):
            return rate
    return None


def _bracket_on_grid(f: Callable[[float], float]) -> tuple[float, float] | None:
    """The sign-changing grid interval nearest to a zero rate (several roots: the most plausible one)."""
    values = [f(r) for r in _RATE_GRID]
    brackets = [
        (lo, hi)
        for (lo, hi), (flo, fhi) in zip(itertools.pairwise(_RATE_GRID), itertools.pairwise(values), strict=True)
        if flo == 0.0 or (flo > 0.0) != (fhi > 0.0)
    ]
    if values[-1] == 0.0:
        brackets.append((_RATE_GRID[-1], _RATE_GRID[-1]))
    if not brackets:
        return None
    return min(brackets, key=lambda pair: min(abs(pair[0]), abs(pair[1])))


def irr_per_period(flows: Sequence[float], guess: float | None = None) -> float | None:
    """The internal rate of return per period of ``flows``, or None when there is none.

    Flows that never change sign have no IRR. With exactly one sign change the root in (-1, inf)
    is unique (Descartes' rule of signs in x = 1/(1+r)), so Newton's method from ``guess`` (default
    0) may be trusted when it converges. Otherwise, and whenever Newton fails, a fixed grid of
    rates in [-99 %, 1000 %] is scanned for a sign change and the root is found by Brent's method.
    """
    changes = _sign_changes(flows)
    if changes == 0:
        return None
    if changes == 1:
        rate = _newton(flows, 0.0 if guess is None else guess)
        if rate is not None:
            return rate

    def f(rate: float) -> float:
        return npv(flows, rate)

    bracket = _bracket_on_grid(f)
    if bracket is None:
        return None
    lo, hi = bracket
    if lo == hi:
        return lo
    return brentq(f, lo, hi)


def s_curve_weights(months: int) -> tuple[float, ...]:
    """Share of the construction spend in each month 1..months: a cosine S-curve summing to 1."""
    cumulative = [(1.0 - math.cos(math.pi * m / months)) / 2.0 for m in range(months + 1)]
    cumulative[-1] = 1.0
    return tuple(b - a for a, b in itertools.pairwise(cumulative))


# --- the model --------------------------------------------------------------------------------


def compute_feasibility(
    project: Project, deps: Mapping[str, Any], params: FeasibilityParams = FeasibilityParams()
) -> Feasibility:
    """Cost, price and cash flow of building the M4 scheme on land valued by M2, and LH buying it."""
    appraisal, scale = deps["M2"], deps["M4"]
    land_value = int(appraisal.total_value_krw)
    gfa = float(scale.gross_floor_area_sqm)
    floors = int(scale.floors)

    tax = round(land_value * params.acquisition_tax_rate)
    land_cost = land_value + tax
    unit_cost = (
        params.high_rise_construction_cost_per_sqm_krw
        if floors > params.high_rise_above_floors
        else params.construction_cost_per_sqm_krw
    )
    construction = round(gfa * unit_cost)
    design = round(construction * params.design_supervision_rate)
    indirect = round(construction * params.indirect_rate)
    contingency = round((construction + design + indirect) * params.contingency_rate)
    development = construction + design + indirect + contingency

    months = params.construction_months
    weights = s_curve_weights(months)
    # average drawn share of the development spend over the build (land is drawn in full from month 0)
    drawn, average_drawn = 0.0, 0.0
    for w in weights:
        drawn += w
        average_drawn += drawn / months
    interest = params.loan_to_cost * params.financing_rate_annual * months / 12.0
    financing_land = land_cost * interest
    financing_dev = development * average_drawn * interest
    financing = round(financing_land + financing_dev)
    total_cost = land_cost + development + financing

    building_price = round(gfa * params.lh_standard_cost_per_sqm_krw)
    price = land_value + building_price
    down = round(price * params.down_payment_share)
    balance = price - down
    profit = price - total_cost
    margin = profit / price if price else 0.0

    # Flows split into three parts so that any sensitivity cell is fixed + (1+c)·variable + (1+p)·revenue.
    last = max(months + params.balance_lag_months, params.contract_month)
    fixed = [0.0] * (last + 1)
    variable = [0.0] * (last + 1)
    revenue = [0.0] * (last + 1)
    fixed[0] -= land_cost
    fixed[months] -= financing_land
    for m, w in enumerate(weights, start=1):
        variable[m] -= development * w
    variable[months] -= financing_dev
    revenue[params.contract_month] += down
    revenue[months + params.balance_lag_months] += balance
    flows = [a + b + c for a, b, c in zip(fixed, variable, revenue, strict=True)]

    rate_m = _monthly(params.discount_rate_annual)
    npv_fixed, npv_variable, npv_revenue = npv(fixed, rate_m), npv(variable, rate_m), npv(revenue, rate_m)
    base_npv = npv_fixed + npv_variable + npv_revenue
    irr_m = irr_per_period(flows)
    irr_a = annualise(irr_m) if irr_m is not None else None

    def passes(irr_annual: float | None, cell_margin: float) -> bool:
        return irr_annual is not None and irr_annual >= params.hurdle_irr_annual and cell_margin >= params.min_margin

    # A first-order guess of each cell's IRR from the base root r0, where the cell's NPV is about
    # f'(r0) (r - r0) + dc V(r0) + dp R(r0): Newton then needs two or three steps per cell.
    base_slope = at_root_variable = at_root_revenue = 0.0
    if irr_m is not None:
        _, base_slope = npv_and_slope(flows, irr_m)
        at_root_variable, at_root_revenue = npv(variable, irr_m), npv(revenue, irr_m)
    cells = []
    fixed_total = land_cost + financing_land
    variable_total = development + financing_dev
    # LH pays in two months: only those of a cell's flows change with its price (a + p * 0.0 would be a: no
    # flow is -0.0), so a cell copies its row's flows and prices those two
    payments = [(m, receipt) for m, receipt in enumerate(revenue) if receipt != 0.0]
    for dc in params.cost_changes:
        cost_scale = 1.0 + dc
        partial = [a + cost_scale * b for a, b in zip(fixed, variable, strict=True)]
        for dp in params.price_changes:
            price_scale = 1.0 + dp
            if dc == 0.0 and dp == 0.0:
                cell_irr_m, cell_npv = irr_m, base_npv
            else:
                cell_flows = partial.copy()
                for m, receipt in payments:
                    cell_flows[m] = partial[m] + price_scale * receipt
                guess = None
                if irr_m is not None and base_slope != 0.0:
                    guess = irr_m - (dc * at_root_variable + dp * at_root_revenue) / base_slope
                cell_irr_m = irr_per_period(cell_flows, guess=guess)
                cell_npv = npv_fixed + cost_scale * npv_variable + price_scale * npv_revenue
            cell_price = price * price_scale
            cell_margin = (cell_price - fixed_total - cost_scale * variable_total) / cell_price if cell_price else 0.0
            cell_irr = annualise(cell_irr_m) if cell_irr_m is not None else None
            cells.append(SensitivityCell(dc, dp, round(cell_npv), cell_irr, cell_margin, passes(cell_irr, cell_margin)))

    # whole-won development spend per month; the last month takes the rounding remainder
    spend = [round(development * w) for w in weights]
    spend[-1] = development - sum(spend[:-1])
    schedule = []
    cumulative = 0
    for m in range(last + 1):
        land_m = -land_cost if m == 0 else 0
        dev_m = -spend[m - 1] if 1 <= m <= months else 0
        fin_m = -financing if m == months else 0
        receipt = round(revenue[m])
        net = land_m + dev_m + fin_m + receipt
        cumulative += net
        schedule.append(CashFlowMonth(m, land_m, dev_m, fin_m, receipt, net, cumulative))

    return Feasibility(
        land_value_krw=land_value,
        acquisition_tax_krw=tax,
        land_cost_krw=land_cost,
        gross_floor_area_sqm=gfa,
        floors=floors,
        construction_unit_cost_krw=unit_cost,
        construction_cost_krw=construction,
        design_cost_krw=design,
        indirect_cost_krw=indirect,
        contingency_krw=contingency,
        financing_cost_krw=financing,
        total_cost_krw=total_cost,
        lh_standard_unit_cost_krw=params.lh_standard_cost_per_sqm_krw,
        lh_building_price_krw=building_price,
        purchase_price_krw=price,
        down_payment_krw=down,
        balance_payment_krw=balance,
        profit_krw=profit,
        margin=margin,
        discount_rate_annual=params.discount_rate_annual,
        npv_krw=round(base_npv),
        irr_monthly=irr_m,
        irr_annual=irr_a,
        hurdle_irr_annual=params.hurdle_irr_annual,
        min_margin=params.min_margin,
        verdict="PASS" if passes(irr_a, margin) else "FAIL",
        construction_months=months,
        peak_funding_krw=-min(0, min(row.cumulative_krw for row in schedule)),
        schedule=tuple(schedule),
        cost_changes=tuple(params.cost_changes),
        price_changes=tuple(params.price_changes),
        sensitivity=tuple(cells),
        params=params,
    )


MODULE = ReportModule(
    name="M5",
    title="사업성 분석",
    compute=compute_feasibility,
    template="m5_feasibility.html.j2",
    requires=("M2", "M4"),
    version="1",
    description="사업비와 LH 매입가, 월별 현금흐름으로 NPV·IRR·사업이익률과 민감도를 산정합니다.",
)


@hookimpl
def zerosite_register_modules(register: Callable[[ReportModule], None]) -> None:
    register(MODULE)
