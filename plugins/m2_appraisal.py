"""M2 land appraisal (토지 감정평가): three approaches reconciled into one land value."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from zerosite import ReportModule, hookimpl
from zerosite.project import SQM_PER_PYEONG, Project, Transaction

__all__ = [
    "MODULE",
    "Appraisal",
    "AppraisalParams",
    "ApproachRow",
    "CaseAdjustment",
    "ComparisonApproach",
    "IncomeApproach",
    "OfficialPriceApproach",
    "appraise",
]


@dataclass(frozen=True)
class AppraisalParams:
    """Every constant of the appraisal model, units in the field names."""

    valuation_date: dt.date = dt.date(2026, 1, 1)
    # Sales comparison (거래사례비교법)
    monthly_price_change: float = 0.003
    days_per_month: float = 30.0
    location_decay_per_100m: float = 0.02
    location_factor_floor: float = 0.85
    lot_size_elasticity: float = 0.05
    lot_size_factor_min: float = 0.90
    lot_size_factor_max: float = 1.10
    same_zone_factor: float = 1.00
    other_zone_factor: float = 0.95
    min_weight_distance_m: float = 50.0
    # Income approach (수익환원법, land residual)
    far_pct_by_zone: tuple[tuple[str, float], ...] = (
        ("제1종일반주거지역", 150.0),
        ("제2종일반주거지역", 200.0),
        ("제3종일반주거지역", 250.0),
        ("준주거지역", 400.0),
        ("준공업지역", 400.0),
    )
    annual_rent_per_sqm_krw: int = 450_000
    vacancy_rate: float = 0.05
    operating_cost_share: float = 0.20
    cap_rate: float = 0.045
    construction_cost_per_sqm_krw: int = 3_000_000
    # Official land price approach (공시지가기준법)
    official_price_correction: float = 1.40
    # Reconciliation (시산가액 조정)
    comparison_weight: float = 0.5
    income_weight: float = 0.3
    official_weight: float = 0.2
    min_cases_for_comparison: int = 3
    high_confidence_min_cases: int = 5
    high_confidence_max_cv: float = 0.10
    confidence_high: float = 0.95
    confidence_medium: float = 0.85
    confidence_low: float = 0.70
    fallback_range_cv: float = 0.15
    approach_divergence_warning: float = 0.30

    def far_pct(self, zone: str) -> float:
        for name, far in self.far_pct_by_zone:
            if name == zone:
                return far
        raise KeyError(f"no FAR for zone {zone!r} in AppraisalParams.far_pct_by_zone")


@dataclass(frozen=True)
class CaseAdjustment:
    """One comparable sale and the factors that carry its unit price to the subject parcel."""

    number: int
    label: str
    date: dt.date
    area_sqm: float
    price_krw: int
    distance_m: float
    zone_type: str
    unit_price_krw: float
    months_elapsed: float
    time_factor: float
    location_factor: float
    lot_size_factor: float
    zone_factor: float
    individual_factor: float
    weight: float
    adjusted_unit_price_krw: float


@dataclass(frozen=True)
class ComparisonApproach:
    """Sales comparison: weighted mean of the adjusted unit prices and their dispersion."""

    case_count: int
    unit_price_krw: float | None
    cv: float | None
    min_adjusted_krw: float | None
    max_adjusted_krw: float | None
    used: bool


@dataclass(frozen=True)
class IncomeApproach:
    """Land residual: capitalised rental income less the cost of building."""

    far_pct: float
    floor_area_sqm: float
    gross_income_krw: float
    effective_income_krw: float
    noi_krw: float
    property_value_krw: float
    construction_cost_krw: float
    land_value_krw: float
    unit_price_krw: float


@dataclass(frozen=True)
class OfficialPriceApproach:
    """Official land price (개별공시지가) times a market correction factor."""

    official_price_per_sqm_krw: int
    correction_factor: float
    unit_price_krw: float
    land_value_krw: float


@dataclass(frozen=True)
class ApproachRow:
    """One line of the reconciliation table."""

    key: str
    label: str
    unit_price_krw: float | None
    land_value_krw: float | None
    weight: float
    weighted_unit_price_krw: float
    remarks: str


@dataclass(frozen=True)
class Appraisal:
    """The M2 result: reconciled land value with every figure behind it."""

    valuation_date: dt.date
    land_area_sqm: float
    total_value_krw: int
    per_sqm_krw: int
    per_pyeong_krw: int
    confidence: float
    confidence_level: str
    confidence_label: str
    range_cv: float
    range_low_krw: int
    range_high_krw: int
    cases: tuple[CaseAdjustment, ...]
    comparison: ComparisonApproach
    income: IncomeApproach
    official: OfficialPriceApproach
    approaches: tuple[ApproachRow, ...]
    fallback_used: bool
    official_ratio: float
    opinion: tuple[str, ...]
    params: AppraisalParams = field(repr=False)


def months_between(start: dt.date, end: dt.date, days_per_month: float = 30.0) -> float:
    """Calendar months from ``start`` to ``end``, the leftover days counted as fractions of a month."""
    return (end.year - start.year) * 12 + (end.month - start.month) + (end.day - start.day) / days_per_month


def adjust_case(number: int, sale: Transaction, project: Project, params: AppraisalParams) -> CaseAdjustment:
    """Time, location, lot-size and zone factors for one comparable (weight still unnormalised)."""
    months = months_between(sale.date, params.valuation_date, params.days_per_month)
    time_factor = (1.0 + params.monthly_price_change) ** months
    location_factor = max(1.0 - params.location_decay_per_100m * sale.distance_m / 100.0, params.location_factor_floor)
    lot_size_factor = min(
        max((sale.area_sqm / project.land_area_sqm) ** params.lot_size_elasticity, params.lot_size_factor_min),
        params.lot_size_factor_max,
    )
    zone_factor = params.same_zone_factor if sale.zone_type == project.zone_type else params.other_zone_factor
    individual_factor = lot_size_factor * zone_factor
    unit_price = sale.price_krw / sale.area_sqm
    return CaseAdjustment(
        number=number,
        label=f"사례 {number} ({sale.date.isoformat()})",
        date=sale.date,
        area_sqm=sale.area_sqm,
        price_krw=sale.price_krw,
        distance_m=sale.distance_m,
        zone_type=str(sale.zone_type),
        unit_price_krw=unit_price,
        months_elapsed=months,
        time_factor=time_factor,
        location_factor=location_factor,
        lot_size_factor=lot_size_factor,
        zone_factor=zone_factor,
        individual_factor=individual_factor,
        weight=1.0 / max(sale.distance_m, params.min_weight_distance_m),
        adjusted_unit_price_krw=unit_price * time_factor * location_factor * individual_factor,
    )


def sales_comparison(
    project: Project, params: AppraisalParams
) -> tuple[tuple[CaseAdjustment, ...], ComparisonApproach]:
    """Adjust every comparable, weight it by 1 / max(distance, floor) and summarise the adjusted prices."""
    raw = [adjust_case(i, sale, project, params) for i, sale in enumerate(project.transactions, start=1)]
    if not raw:
        return (), ComparisonApproach(0, None, None, None, None, used=False)
    total_weight = sum(case.weight for case in raw)
    cases = tuple(replace(case, weight=case.weight / total_weight) for case in raw)
    prices = [case.adjusted_unit_price_krw for case in cases]
    mean = sum(prices) / len(prices)
    std = math.sqrt(sum((p - mean) ** 2 for p in prices) / len(prices))
    weighted = sum(case.weight * case.adjusted_unit_price_krw for case in cases)
    return cases, ComparisonApproach(
        case_count=len(cases),
        unit_price_krw=weighted,
        cv=std / mean if mean > 0 else 0.0,
        min_adjusted_krw=min(prices),
        max_adjusted_krw=max(prices),
        used=len(cases) >= params.min_cases_for_comparison,
    )


def income_approach(project: Project, params: AppraisalParams) -> IncomeApproach:
    far = params.far_pct(str(project.zone_type))
    floor_area = project.land_area_sqm * far / 100.0
    gross = floor_area * params.annual_rent_per_sqm_krw
    effective = gross * (1.0 - params.vacancy_rate)
    noi = effective * (1.0 - params.operating_cost_share)
    property_value = noi / params.cap_rate
    construction = floor_area * params.construction_cost_per_sqm_krw
    land_value = max(property_value - construction, 0.0)
    return IncomeApproach(
        far_pct=far,
        floor_area_sqm=floor_area,
        gross_income_krw=gross,
        effective_income_krw=effective,
        noi_krw=noi,
        property_value_krw=property_value,
        construction_cost_krw=construction,
        land_value_krw=land_value,
        unit_price_krw=land_value / project.land_area_sqm,
    )


def official_price_approach(project: Project, params: AppraisalParams) -> OfficialPriceApproach:
    unit = project.official_price_per_sqm * params.official_price_correction
    return OfficialPriceApproach(
        official_price_per_sqm_krw=project.official_price_per_sqm,
        correction_factor=params.official_price_correction,
        unit_price_krw=unit,
        land_value_krw=unit * project.land_area_sqm,
    )


def _won(value: float) -> str:
    return f"{value:,.0f}원"


def _eok(value: float) -> str:
    return f"{value / 1e8:,.1f}억원"


def _opinion(
    project: Project,
    params: AppraisalParams,
    comparison: ComparisonApproach,
    income: IncomeApproach,
    official: OfficialPriceApproach,
    unit_price: float,
    total: int,
    per_pyeong: int,
    level_label: str,
    confidence: float,
    range_cv: float,
    low: int,
    high: int,
    fallback: bool,
) -> tuple[str, ...]:
    where = f"{project.sido} {project.sigungu} {project.dong}"
    paragraphs = [
        f"대상 토지({where}, 대지면적 {project.land_area_sqm:,.1f}㎡, {project.zone_type})의 "
        f"기준시점 {params.valuation_date.isoformat()} 현재 토지가액은 {_eok(total)}({_won(total)})으로, "
        f"㎡당 {_won(unit_price)}, 평당 {_won(per_pyeong)}으로 산정하였습니다."
    ]
    if comparison.case_count == 0:
        paragraphs.append(
            "인근 거래사례가 확인되지 않아 거래사례비교법을 적용하지 못하였으며, "
            "수익환원법과 공시지가기준법의 시산가액만으로 토지가액을 결정하였습니다."
        )
    else:
        spread = (comparison.max_adjusted_krw or 0.0) / (comparison.min_adjusted_krw or 1.0) - 1.0
        dispersion = "고른 편" if (comparison.cv or 0.0) < params.high_confidence_max_cv else "다소 큰 편"
        paragraphs.append(
            f"거래사례 {comparison.case_count}건을 시점·위치·개별요인으로 보정한 단가는 "
            f"{_won(comparison.min_adjusted_krw or 0.0)}에서 {_won(comparison.max_adjusted_krw or 0.0)} 사이"
            f"(최고·최저 차이 {spread * 100:.1f}%)이며, 거리 역수 가중 평균은 ㎡당 "
            f"{_won(comparison.unit_price_krw or 0.0)}, 변동계수는 {(comparison.cv or 0.0) * 100:.1f}%로 "
            f"사례 간 편차가 {dispersion}입니다."
        )
        if fallback:
            paragraphs.append(
                f"다만 사례가 {params.min_cases_for_comparison}건 미만이어서 비교방식의 신뢰도가 낮으므로, "
                f"거래사례비교법 가중치 {params.comparison_weight * 100:.0f}%를 공시지가기준법으로 옮겨 "
                "시산가액을 조정하였습니다."
            )
    paragraphs.append(
        f"수익환원법(토지잔여법)은 용적률 {income.far_pct:.0f}%를 적용한 연면적 {income.floor_area_sqm:,.1f}㎡의 "
        f"순영업소득 {_eok(income.noi_krw)}을 환원율 {params.cap_rate * 100:.2f}%로 환원한 뒤 건축비 "
        f"{_eok(income.construction_cost_krw)}을 공제하여 ㎡당 {_won(income.unit_price_krw)}을, "
        f"공시지가기준법은 개별공시지가 ㎡당 {_won(official.official_price_per_sqm_krw)}에 보정률 "
        f"{official.correction_factor:.2f}배를 적용하여 ㎡당 {_won(official.unit_price_krw)}을 산출하였습니다."
    )
    used_prices = (
        comparison.unit_price_krw if comparison.used else None,
        income.unit_price_krw,
        official.unit_price_krw,
    )
    unit_prices = [p for p in used_prices if p]
    if unit_prices and min(unit_prices) > 0:
        divergence = max(unit_prices) / min(unit_prices) - 1.0
        limit = f"{params.approach_divergence_warning * 100:.0f}%"
        if divergence > params.approach_divergence_warning:
            paragraphs.append(
                f"적용한 방식 간 시산가액 차이가 {divergence * 100:.1f}%로 기준({limit})을 넘으므로, "
                "본심사 단계에서 임대료 수준과 거래사례의 대표성을 추가로 확인할 필요가 있습니다."
            )
        else:
            paragraphs.append(
                f"적용한 방식 간 시산가액 차이는 {divergence * 100:.1f}%로 기준({limit}) 이내이며, "
                "적용한 방식의 결과가 서로를 뒷받침합니다."
            )
    ratio = unit_price / project.official_price_per_sqm
    paragraphs.append(
        f"결정 단가는 개별공시지가의 {ratio:.2f}배 수준이며, 평가 신뢰도는 {level_label}({confidence:.2f})입니다. "
        f"변동계수 {range_cv * 100:.1f}%를 적용한 적정 가액 범위는 {_eok(low)} ~ {_eok(high)}입니다."
    )
    return tuple(paragraphs)


def appraise(
    project: Project, deps: Mapping[str, Any] | None = None, params: AppraisalParams = AppraisalParams()
) -> Appraisal:
    """Appraise the parcel by sales comparison, income and official-price approaches and reconcile them."""
    cases, comparison = sales_comparison(project, params)
    income = income_approach(project, params)
    official = official_price_approach(project, params)
    fallback = not comparison.used
    w_cmp = 0.0 if fallback else params.comparison_weight
    w_off = params.official_weight + (params.comparison_weight if fallback else 0.0)
    w_inc = params.income_weight
    unit_price = (
        w_cmp * (comparison.unit_price_krw or 0.0) + w_inc * income.unit_price_krw + w_off * official.unit_price_krw
    )
    total = round(unit_price * project.land_area_sqm)
    per_sqm = round(unit_price)
    per_pyeong = round(unit_price * SQM_PER_PYEONG)

    n = comparison.case_count
    cv = comparison.cv or 0.0
    if n >= params.high_confidence_min_cases and cv < params.high_confidence_max_cv:
        level, label, confidence = "high", "높음", params.confidence_high
    elif n >= params.min_cases_for_comparison:
        level, label, confidence = "medium", "보통", params.confidence_medium
    else:
        level, label, confidence = "low", "낮음", params.confidence_low
    range_cv = cv if comparison.used else params.fallback_range_cv
    low = round(total * (1.0 - range_cv))
    high = round(total * (1.0 + range_cv))

    approaches = (
        ApproachRow(
            key="comparison",
            label="거래사례비교법",
            unit_price_krw=comparison.unit_price_krw,
            land_value_krw=(
                None if comparison.unit_price_krw is None else comparison.unit_price_krw * project.land_area_sqm
            ),
            weight=w_cmp,
            weighted_unit_price_krw=w_cmp * (comparison.unit_price_krw or 0.0),
            remarks=(
                f"사례 {n}건, 변동계수 {cv * 100:.1f}%"
                if comparison.used
                else f"사례 {n}건(기준 {params.min_cases_for_comparison}건 미만) · 가중치 제외"
            ),
        ),
        ApproachRow(
            key="income",
            label="수익환원법",
            unit_price_krw=income.unit_price_krw,
            land_value_krw=income.land_value_krw,
            weight=w_inc,
            weighted_unit_price_krw=w_inc * income.unit_price_krw,
            remarks=f"용적률 {income.far_pct:.0f}%, 환원율 {params.cap_rate * 100:.2f}%",
        ),
        ApproachRow(
            key="official",
            label="공시지가기준법",
            unit_price_krw=official.unit_price_krw,
            land_value_krw=official.land_value_krw,
            weight=w_off,
            weighted_unit_price_krw=w_off * official.unit_price_krw,
            remarks=f"보정률 {official.correction_factor:.2f}" + (" · 비교방식 가중치 이전" if fallback else ""),
        ),
    )
    opinion = _opinion(
        project,
        params,
        comparison,
        income,
        official,
        unit_price,
        total,
        per_pyeong,
        label,
        confidence,
        range_cv,
        low,
        high,
        fallback,
    )
    return Appraisal(
        valuation_date=params.valuation_date,
        land_area_sqm=project.land_area_sqm,
        total_value_krw=total,
        per_sqm_krw=per_sqm,
        per_pyeong_krw=per_pyeong,
        confidence=confidence,
        confidence_level=level,
        confidence_label=label,
        range_cv=range_cv,
        range_low_krw=low,
        range_high_krw=high,
        cases=cases,
        comparison=comparison,
        income=income,
        official=official,
        approaches=approaches,
        fallback_used=fallback,
        official_ratio=unit_price / project.official_price_per_sqm,
        opinion=opinion,
        params=params,
    )


MODULE = ReportModule(
    name="M2",
    title="토지 감정평가",
    compute=appraise,
    template="m2_appraisal.html.j2",
    version="1",
    description="거래사례비교법·수익환원법·공시지가기준법을 가중 조정한 토지가액, ㎡당·평당 단가와 신뢰도",
)


@hookimpl
def zerosite_register_modules(register: Callable[[ReportModule], None]) -> None:
    register(MODULE)
