"""M2 land appraisal (토지 감정평가): three approaches reconciled into one land value."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zerosite import ReportModule, hookimpl
from zerosite.fields import described
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

    valuation_date: dt.date = field(
        default=dt.date(2026, 1, 1),
        metadata=described("date", "Valuation date (기준시점) every comparable is carried to"),
    )
    # Sales comparison (거래사례비교법)
    monthly_price_change: float = field(
        default=0.003, metadata=described("share/month", "Land price change per month used for the time adjustment")
    )
    days_per_month: float = field(
        default=30.0, metadata=described("days", "Days counted as one month for leftover days")
    )
    location_decay_per_100m: float = field(
        default=0.02,
        metadata=described("share/100 m", "Location factor lost per 100 m between a comparable and the site"),
    )
    location_factor_floor: float = field(
        default=0.85, metadata=described("factor", "Lowest location factor a distant comparable can get")
    )
    lot_size_elasticity: float = field(
        default=0.05, metadata=described("", "Exponent of (comparable area / site area) in the lot-size factor")
    )
    lot_size_factor_min: float = field(default=0.90, metadata=described("factor", "Lower bound of the lot-size factor"))
    lot_size_factor_max: float = field(default=1.10, metadata=described("factor", "Upper bound of the lot-size factor"))
    same_zone_factor: float = field(
        default=1.00, metadata=described("factor", "Zone factor of a comparable in the site's use district")
    )
    other_zone_factor: float = field(
        default=0.95, metadata=described("factor", "Zone factor of a comparable in another use district")
    )
    min_weight_distance_m: float = field(
        default=50.0, metadata=described("m", "Distance floor of the 1 / distance comparable weight")
    )
    # Income approach (수익환원법, land residual)
    far_pct_by_zone: tuple[tuple[str, float], ...] = field(
        default=(
            ("제1종일반주거지역", 150.0),
            ("제2종일반주거지역", 200.0),
            ("제3종일반주거지역", 250.0),
            ("준주거지역", 400.0),
            ("준공업지역", 400.0),
        ),
        metadata=described("(zone, %)", "Floor area ratio assumed by the income approach, per use district"),
    )
    annual_rent_per_sqm_krw: int = field(
        default=450_000, metadata=described("KRW/㎡/year", "Gross rent per square metre of floor area per year")
    )
    vacancy_rate: float = field(default=0.05, metadata=described("share", "Share of gross rent lost to vacancy"))
    operating_cost_share: float = field(
        default=0.20, metadata=described("share", "Share of effective income spent on operating costs")
    )
    cap_rate: float = field(
        default=0.045,
        metadata=described("share/year", "Capitalisation rate that turns net operating income into value"),
    )
    construction_cost_per_sqm_krw: int = field(
        default=3_000_000, metadata=described("KRW/㎡", "Construction cost per square metre of floor area")
    )
    # Official land price approach (공시지가기준법)
    official_price_correction: float = field(
        default=1.40, metadata=described("factor", "Market correction applied to the official land price")
    )
    # Reconciliation (시산가액 조정)
    comparison_weight: float = field(
        default=0.5, metadata=described("share", "Reconciliation weight of the sales comparison approach")
    )
    income_weight: float = field(
        default=0.3, metadata=described("share", "Reconciliation weight of the income approach")
    )
    official_weight: float = field(
        default=0.2, metadata=described("share", "Reconciliation weight of the official land price approach")
    )
    min_cases_for_comparison: int = field(
        default=3, metadata=described("count", "Fewest comparables for the sales comparison approach to be used")
    )
    high_confidence_min_cases: int = field(
        default=5, metadata=described("count", "Fewest comparables for high confidence")
    )
    high_confidence_max_cv: float = field(
        default=0.10, metadata=described("share", "Largest coefficient of variation for high confidence")
    )
    confidence_high: float = field(
        default=0.95, metadata=described("0-1", "Confidence figure reported for high confidence")
    )
    confidence_medium: float = field(
        default=0.85, metadata=described("0-1", "Confidence figure reported for medium confidence")
    )
    confidence_low: float = field(
        default=0.70, metadata=described("0-1", "Confidence figure reported for low confidence")
    )
    fallback_range_cv: float = field(
        default=0.15, metadata=described("share", "Half-width of the value range when sales comparison is not used")
    )
    approach_divergence_warning: float = field(
        default=0.30, metadata=described("share", "Spread between approaches above which the opinion warns")
    )

    def far_pct(self, zone: str) -> float:
        for name, far in self.far_pct_by_zone:
            if name == zone:
                return far
        raise KeyError(f"no FAR for zone {zone!r} in AppraisalParams.far_pct_by_zone")


@dataclass(frozen=True)
class CaseAdjustment:
    """One comparable sale and the factors that carry its unit price to the subject parcel."""

    number: int = field(metadata=described("", "Position of the comparable, from 1"))
    label: str = field(metadata=described("", "Korean label, e.g. 사례 1 (2025-06-01)"))
    date: dt.date = field(metadata=described("date", "Date of the sale"))
    area_sqm: float = field(metadata=described("㎡", "Land area of the comparable"))
    price_krw: int = field(metadata=described("KRW", "Sale price"))
    distance_m: float = field(metadata=described("m", "Distance from the site"))
    zone_type: str = field(metadata=described("", "Use district of the comparable (Korean name)"))
    unit_price_krw: float = field(metadata=described("KRW/㎡", "Sale price per square metre, unadjusted"))
    months_elapsed: float = field(metadata=described("months", "Months from the sale to the valuation date"))
    time_factor: float = field(metadata=described("factor", "Time adjustment to the valuation date"))
    location_factor: float = field(metadata=described("factor", "Location adjustment for the distance to the site"))
    lot_size_factor: float = field(metadata=described("factor", "Lot-size adjustment"))
    zone_factor: float = field(metadata=described("factor", "Use-district adjustment"))
    individual_factor: float = field(metadata=described("factor", "Lot-size factor times zone factor"))
    weight: float = field(
        metadata=described("share", "Normalised weight of this comparable (1 / distance), all weights sum to 1")
    )
    adjusted_unit_price_krw: float = field(metadata=described("KRW/㎡", "Unit price after every adjustment"))


@dataclass(frozen=True)
class ComparisonApproach:
    """Sales comparison: weighted mean of the adjusted unit prices and their dispersion."""

    case_count: int = field(metadata=described("count", "Comparables found"))
    unit_price_krw: float | None = field(
        metadata=described("KRW/㎡", "Weighted mean of the adjusted unit prices; None without comparables")
    )
    cv: float | None = field(
        metadata=described("share", "Coefficient of variation of the adjusted unit prices; None without comparables")
    )
    min_adjusted_krw: float | None = field(
        metadata=described("KRW/㎡", "Lowest adjusted unit price; None without comparables")
    )
    max_adjusted_krw: float | None = field(
        metadata=described("KRW/㎡", "Highest adjusted unit price; None without comparables")
    )
    used: bool = field(metadata=described("", "Whether there are enough comparables for the approach to count"))


@dataclass(frozen=True)
class IncomeApproach:
    """Land residual: capitalised rental income less the cost of building."""

    far_pct: float = field(metadata=described("%", "Floor area ratio assumed for the site's use district"))
    floor_area_sqm: float = field(metadata=described("㎡", "Floor area: land area times the floor area ratio"))
    gross_income_krw: float = field(metadata=described("KRW/year", "Gross rent"))
    effective_income_krw: float = field(metadata=described("KRW/year", "Gross rent less vacancy"))
    noi_krw: float = field(
        metadata=described("KRW/year", "Net operating income: effective income less operating costs")
    )
    property_value_krw: float = field(metadata=described("KRW", "Net operating income capitalised at the cap rate"))
    construction_cost_krw: float = field(metadata=described("KRW", "Cost of building the floor area"))
    land_value_krw: float = field(metadata=described("KRW", "Property value less construction cost, at least 0"))
    unit_price_krw: float = field(metadata=described("KRW/㎡", "Land value per square metre of land"))


@dataclass(frozen=True)
class OfficialPriceApproach:
    """Official land price (개별공시지가) times a market correction factor."""

    official_price_per_sqm_krw: int = field(
        metadata=described("KRW/㎡", "Official land price (개별공시지가) of the site")
    )
    correction_factor: float = field(metadata=described("factor", "Market correction applied to it"))
    unit_price_krw: float = field(metadata=described("KRW/㎡", "Corrected unit price"))
    land_value_krw: float = field(metadata=described("KRW", "Corrected unit price times the land area"))


@dataclass(frozen=True)
class ApproachRow:
    """One line of the reconciliation table."""

    key: str = field(metadata=described("", "comparison, income or official"))
    label: str = field(metadata=described("", "Korean name of the approach"))
    unit_price_krw: float | None = field(
        metadata=described("KRW/㎡", "The approach's unit price; None when it has none")
    )
    land_value_krw: float | None = field(metadata=described("KRW", "The approach's land value; None when it has none"))
    weight: float = field(metadata=described("share", "Weight in the reconciliation after any fallback"))
    weighted_unit_price_krw: float = field(metadata=described("KRW/㎡", "Weight times unit price"))
    remarks: str = field(metadata=described("", "Korean note on how the approach was applied"))


@dataclass(frozen=True)
class Appraisal:
    """The M2 result: reconciled land value with every figure behind it."""

    valuation_date: dt.date = field(metadata=described("date", "Valuation date (기준시점)"))
    land_area_sqm: float = field(metadata=described("㎡", "Land area of the site"))
    total_value_krw: int = field(metadata=described("KRW", "Appraised land value, rounded to the won"))
    per_sqm_krw: int = field(metadata=described("KRW/㎡", "Appraised unit price per square metre"))
    per_pyeong_krw: int = field(metadata=described("KRW/평", "Appraised unit price per pyeong"))
    confidence: float = field(metadata=described("0-1", "Confidence figure of the appraisal"))
    confidence_level: str = field(metadata=described("", "high, medium or low"))
    confidence_label: str = field(metadata=described("", "Korean label of the confidence level (높음, 보통, 낮음)"))
    range_cv: float = field(metadata=described("share", "Half-width of the value range as a share of the value"))
    range_low_krw: int = field(metadata=described("KRW", "Low end of the value range"))
    range_high_krw: int = field(metadata=described("KRW", "High end of the value range"))
    cases: tuple[CaseAdjustment, ...] = field(metadata=described("", "The comparable sales and their adjustments"))
    comparison: ComparisonApproach = field(metadata=described("", "Sales comparison approach (거래사례비교법)"))
    income: IncomeApproach = field(metadata=described("", "Income approach, land residual (수익환원법)"))
    official: OfficialPriceApproach = field(metadata=described("", "Official land price approach (공시지가기준법)"))
    approaches: tuple[ApproachRow, ...] = field(
        metadata=described("", "Reconciliation table: comparison, income, official")
    )
    fallback_used: bool = field(
        metadata=described(
            "", "Whether sales comparison lacked comparables and its weight moved to the official approach"
        )
    )
    official_ratio: float = field(metadata=described("factor", "Appraised unit price over the official land price"))
    opinion: tuple[str, ...] = field(metadata=described("", "Appraisal opinion, one Korean paragraph per item"))
    params: AppraisalParams = field(repr=False, metadata=described("", "The constants the appraisal used"))


def months_between(start: dt.date, end: dt.date, days_per_month: float = 30.0) -> float:
    """Calendar months from ``start`` to ``end``, the leftover days counted as fractions of a month."""
    return (end.year - start.year) * 12 + (end.month - start.month) + (end.day - start.day) / days_per_month


def adjust_case(
    number: int, sale: Transaction, project: Project, params: AppraisalParams, weight: float
) -> CaseAdjustment:
    """Time, location, lot-size and zone factors for one comparable, which has ``weight`` among them."""
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
        weight=weight,
        adjusted_unit_price_krw=unit_price * time_factor * location_factor * individual_factor,
    )


def sales_comparison(
    project: Project, params: AppraisalParams
) -> tuple[tuple[CaseAdjustment, ...], ComparisonApproach]:
    """Adjust every comparable, weight it by 1 / max(distance, floor) and summarise the adjusted prices."""
    if not project.transactions:
        return (), ComparisonApproach(0, None, None, None, None, used=False)
    raw_weights = [1.0 / max(sale.distance_m, params.min_weight_distance_m) for sale in project.transactions]
    total_weight = sum(raw_weights)
    cases = tuple(
        adjust_case(i, sale, project, params, weight / total_weight)
        for i, (sale, weight) in enumerate(zip(project.transactions, raw_weights, strict=True), start=1)
    )
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
