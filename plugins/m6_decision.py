"""M6 LH overall decision (LH 종합 판단): a 110-point score normalised to 100, a grade and GO / NO-GO."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zerosite import ReportModule, hookimpl
from zerosite.fields import described
from zerosite.project import Project, Zone

__all__ = ["MODULE", "CategoryScore", "Decision", "DecisionParams", "ScoreItem", "compute_decision", "grade_for"]


@dataclass(frozen=True)
class DecisionParams:
    """Every constant of M6. Bands are (threshold, points), best first; a value meets a band at or past it."""

    subway_bands_m: tuple[tuple[float, float], ...] = field(
        default=((300.0, 15.0), (500.0, 12.0), (800.0, 8.0), (1200.0, 4.0)),
        metadata=described("(m, points)", "Points for a subway distance at or below each threshold"),
    )
    subway_max_points: float = field(default=15.0, metadata=described("points", "Most points for subway access"))
    road_width_bands_m: tuple[tuple[float, float], ...] = field(
        default=((12.0, 12.0), (8.0, 9.0), (6.0, 6.0), (4.0, 3.0)),
        metadata=described("(m, points)", "Points for a road width at or above each threshold"),
    )
    road_width_max_points: float = field(default=12.0, metadata=described("points", "Most points for road width"))
    corner_lot_points: float = field(default=8.0, metadata=described("points", "Points for a corner lot"))
    inner_lot_points: float = field(default=3.0, metadata=described("points", "Points for an inner lot"))
    checklist_max_points: float = field(
        default=10.0, metadata=described("points", "Most points for the M4 checklist, pro rata to lines passed")
    )
    unit_count_max_points: float = field(
        default=10.0, metadata=described("points", "Points for a dwelling count in the preferred range")
    )
    preferred_units: tuple[int, int] = field(
        default=(100, 200), metadata=described("(units, units)", "Preferred range of dwellings")
    )
    near_units: tuple[int, int] = field(
        default=(70, 250), metadata=described("(units, units)", "Range of dwellings that earns near_units_points")
    )
    near_units_points: float = field(
        default=7.0, metadata=described("points", "Points for a dwelling count in the near range")
    )
    fair_units: tuple[int, int] = field(
        default=(40, 300), metadata=described("(units, units)", "Range of dwellings that earns fair_units_points")
    )
    fair_units_points: float = field(
        default=4.0, metadata=described("points", "Points for a dwelling count in the fair range")
    )
    other_units_points: float = field(default=1.0, metadata=described("points", "Points for any other dwelling count"))
    irr_bands: tuple[tuple[float, float], ...] = field(
        default=((0.12, 25.0), (0.10, 21.0), (0.07, 16.0), (0.05, 10.0), (0.0, 5.0)),
        metadata=described("(share/year, points)", "Points for an annual IRR at or above each threshold"),
    )
    irr_max_points: float = field(default=25.0, metadata=described("points", "Most points for IRR"))
    margin_bands: tuple[tuple[float, float], ...] = field(
        default=((0.10, 15.0), (0.07, 12.0), (0.05, 9.0), (0.0, 4.0)),
        metadata=described("(share, points)", "Points for a profit margin at or above each threshold"),
    )
    margin_max_points: float = field(default=15.0, metadata=described("points", "Most points for profit margin"))
    parking_max_points: float = field(
        default=5.0, metadata=described("points", "Most points for parking, pro rata to provided over required")
    )
    max_floors: int = field(default=15, metadata=described("floors", "Most floors for full floor points"))
    floors_points: float = field(default=5.0, metadata=described("points", "Points when floors are within max_floors"))
    floors_over_points: float = field(default=2.0, metadata=described("points", "Points when floors exceed max_floors"))
    zone_points: tuple[tuple[Zone, float], ...] = field(
        default=(
            (Zone.RESIDENTIAL_1, 3.0),
            (Zone.RESIDENTIAL_2, 5.0),
            (Zone.RESIDENTIAL_3, 5.0),
            (Zone.SEMI_RESIDENTIAL, 5.0),
            (Zone.SEMI_INDUSTRIAL, 3.0),
        ),
        metadata=described("(zone, points)", "Points for each use district"),
    )
    zone_max_points: float = field(default=5.0, metadata=described("points", "Most points for the use district"))
    normalised_max: float = field(default=100.0, metadata=described("points", "Top of the normalised score"))
    grade_bands: tuple[tuple[float, str], ...] = field(
        default=((90.0, "S"), (80.0, "A"), (70.0, "B"), (60.0, "C"), (50.0, "D")),
        metadata=described("(points, grade)", "Grade for a normalised score at or above each threshold"),
    )
    lowest_grade: str = field(default="F", metadata=described("", "Grade below the last band"))
    go_min_score: float = field(default=80.0, metadata=described("points", "Smallest normalised score for GO"))
    conditional_min_score: float = field(
        default=70.0, metadata=described("points", "Smallest normalised score for CONDITIONAL")
    )
    max_reasons: int = field(default=3, metadata=described("count", "Most reasons listed"))


@dataclass(frozen=True)
class ScoreItem:
    """One scored criterion."""

    category: str = field(metadata=described("", "Key of the category the criterion belongs to"))
    label: str = field(metadata=described("", "Korean name of the criterion"))
    score: float = field(metadata=described("points", "Points earned"))
    max_score: float = field(metadata=described("points", "Most points possible"))
    remark: str = field(metadata=described("", "Korean note on the figure behind the points"))

    @property
    def lost(self) -> float:
        """Points lost: max_score - score."""
        return self.max_score - self.score


@dataclass(frozen=True)
class CategoryScore:
    """A category's points (location, scale, feasibility, compliance)."""

    key: str = field(metadata=described("", "location, scale, feasibility or compliance"))
    label: str = field(metadata=described("", "Korean name of the category"))
    score: float = field(metadata=described("points", "Points earned in the category"))
    max_score: float = field(metadata=described("points", "Most points possible in the category"))
    remark: str = field(metadata=described("", "Korean note naming the criterion that lost the most points"))

    @property
    def weight(self) -> str:
        """The category's weight as Korean text, e.g. 25점."""
        return f"{self.max_score:g}점"


@dataclass(frozen=True)
class Decision:
    """M6 result: the score, grade, decision and the reasons behind them."""

    raw_score: float = field(metadata=described("points", "Points earned over every criterion"))
    max_raw_score: float = field(metadata=described("points", "Most points possible (110)"))
    score: float = field(metadata=described("points 0-100", "Raw score normalised to 100, one decimal"))
    grade: str = field(metadata=described("", "Grade S, A, B, C, D or F"))
    decision: str = field(metadata=described("", "GO, CONDITIONAL or NO-GO"))
    decision_label: str = field(metadata=described("", "Korean label of the decision"))
    items: tuple[ScoreItem, ...] = field(metadata=described("", "Every scored criterion"))
    categories: tuple[CategoryScore, ...] = field(metadata=described("", "Points per category"))
    reasons: tuple[str, ...] = field(
        metadata=described("", "The criteria that cost the most points, worst first (Korean)")
    )
    reason_labels: tuple[str, ...] = field(metadata=described("", "The names of those criteria"))
    supply_type_label: str = field(metadata=described("", "Korean name of the M3 supply type"))
    supply_type_tie: bool = field(metadata=described("", "Whether M3 found a tie between the top two types"))
    feasibility_verdict: str = field(metadata=described("", "M5 verdict, PASS or FAIL"))
    params: DecisionParams = field(repr=False, metadata=described("", "The constants the scoring used"))


_DECISION_LABELS = {"GO": "사업 추진", "CONDITIONAL": "조건부 추진", "NO-GO": "추진 보류"}
_CATEGORIES = (
    ("location", "입지"),
    ("scale", "규모"),
    ("feasibility", "사업성"),
    ("compliance", "법규·기준 적합"),
)


def _at_most(value: float, bands: tuple[tuple[float, float], ...]) -> float:
    """Points of the first band whose threshold ``value`` does not exceed (smaller is better)."""
    for threshold, points in bands:
        if value <= threshold:
            return points
    return 0.0


def _at_least(value: float, bands: tuple[tuple[float, float], ...]) -> float:
    """Points of the first band whose threshold ``value`` reaches (larger is better)."""
    for threshold, points in bands:
        if value >= threshold:
            return points
    return 0.0


def grade_for(score: float, params: DecisionParams = DecisionParams()) -> str:
    """S >= 90, A >= 80, B >= 70, C >= 60, D >= 50, else F (on the 100-point score)."""
    for threshold, grade in params.grade_bands:
        if score >= threshold:
            return grade
    return params.lowest_grade


def decision_for(score: float, params: DecisionParams = DecisionParams()) -> str:
    """GO >= 80, CONDITIONAL >= 70, else NO-GO (on the 100-point score)."""
    if score >= params.go_min_score:
        return "GO"
    if score >= params.conditional_min_score:
        return "CONDITIONAL"
    return "NO-GO"


def _unit_points(units: int, params: DecisionParams) -> float:
    lo, hi = params.preferred_units
    if lo <= units <= hi:
        return params.unit_count_max_points
    lo, hi = params.near_units
    if lo <= units <= hi:
        return params.near_units_points
    lo, hi = params.fair_units
    if lo <= units <= hi:
        return params.fair_units_points
    return params.other_units_points


def _score_items(project: Project, scale: Any, feasibility: Any, params: DecisionParams) -> list[ScoreItem]:
    subway = project.subway_distance_m
    road = project.road_width_m
    checklist = tuple(scale.checklist)
    passed = sum(1 for item in checklist if item.passed)
    failed = [item.label for item in checklist if not item.passed]
    irr = feasibility.irr_annual
    margin = float(feasibility.margin)
    required, provided = int(scale.parking_required), int(scale.parking_provided)
    parking_ratio = min(1.0, provided / required) if required else 1.0
    zone_points = dict(params.zone_points).get(project.zone_type, 0.0)
    floors = int(scale.floors)
    best_subway = params.subway_bands_m[0][0]
    best_road = params.road_width_bands_m[0][0]
    lo, hi = params.preferred_units
    return [
        ScoreItem(
            "location",
            "지하철 접근성",
            _at_most(subway, params.subway_bands_m),
            params.subway_max_points,
            f"역까지 {subway:,.0f}m (만점 {best_subway:,.0f}m 이내)",
        ),
        ScoreItem(
            "location",
            "접면 도로 폭",
            _at_least(road, params.road_width_bands_m),
            params.road_width_max_points,
            f"도로 폭 {road:g}m (만점 {best_road:g}m 이상)",
        ),
        ScoreItem(
            "location",
            "가로구역 여건",
            params.corner_lot_points if project.corner_lot else params.inner_lot_points,
            params.corner_lot_points,
            "각지(코너) 필지" if project.corner_lot else "각지가 아닌 일반 필지",
        ),
        ScoreItem(
            "scale",
            "LH 체크리스트 충족",
            params.checklist_max_points * passed / len(checklist) if checklist else 0.0,
            params.checklist_max_points,
            f"{len(checklist)}개 중 {passed}개 충족" + (f" (미충족: {', '.join(failed)})" if failed else ""),
        ),
        ScoreItem(
            "scale",
            "세대수",
            _unit_points(int(scale.units), params),
            params.unit_count_max_points,
            f"{int(scale.units):,}세대 (권장 {lo}~{hi}세대)",
        ),
        ScoreItem(
            "feasibility",
            "내부수익률(IRR)",
            _at_least(irr, params.irr_bands) if irr is not None else 0.0,
            params.irr_max_points,
            f"IRR {irr * 100:.1f}% (만점 {params.irr_bands[0][0] * 100:g}% 이상)"
            if irr is not None
            else "IRR 산출 불가 (현금흐름 부호 변화 없음)",
        ),
        ScoreItem(
            "feasibility",
            "사업이익률",
            _at_least(margin, params.margin_bands),
            params.margin_max_points,
            f"이익률 {margin * 100:.1f}% (만점 {params.margin_bands[0][0] * 100:g}% 이상)",
        ),
        ScoreItem(
            "compliance",
            "주차 기준",
            round(params.parking_max_points * parking_ratio, 2),
            params.parking_max_points,
            f"법정 {required:,}대 / 계획 {provided:,}대",
        ),
        ScoreItem(
            "compliance",
            "층수 기준",
            params.floors_points if floors <= params.max_floors else params.floors_over_points,
            params.floors_points,
            f"지상 {floors}층 (기준 {params.max_floors}층 이하)",
        ),
        ScoreItem(
            "compliance",
            "용도지역 적합성",
            zone_points,
            params.zone_max_points,
            f"{project.zone_type.value}",
        ),
    ]


def compute_decision(project: Project, deps: Mapping[str, Any], params: DecisionParams = DecisionParams()) -> Decision:
    """Score the site on location, scale, feasibility and compliance, then grade it and decide."""
    supply, scale, feasibility = deps["M3"], deps["M4"], deps["M5"]
    items = _score_items(project, scale, feasibility, params)
    categories = []
    for key, label in _CATEGORIES:
        members = [item for item in items if item.category == key]
        weakest = max(members, key=lambda item: item.lost)
        remark = "전 항목 만점" if weakest.lost <= 0 else f"최대 감점: {weakest.label}"
        categories.append(
            CategoryScore(
                key, label, sum(item.score for item in members), sum(item.max_score for item in members), remark
            )
        )
    raw = sum(item.score for item in items)
    max_raw = sum(item.max_score for item in items)
    score = round(raw / max_raw * params.normalised_max, 1) if max_raw else 0.0
    decision = decision_for(score, params)
    worst = sorted((item for item in items if item.lost > 0), key=lambda item: -item.lost)[: params.max_reasons]
    reasons = tuple(f"{item.label}: {item.remark} — {item.lost:.1f}점 감점" for item in worst)
    return Decision(
        raw_score=raw,
        max_raw_score=max_raw,
        score=score,
        grade=grade_for(score, params),
        decision=decision,
        decision_label=_DECISION_LABELS[decision],
        items=tuple(items),
        categories=tuple(categories),
        reasons=reasons,
        reason_labels=tuple(item.label for item in worst),
        supply_type_label=str(supply.selected_label),
        supply_type_tie=bool(supply.tie),
        feasibility_verdict=str(feasibility.verdict),
        params=params,
    )


MODULE = ReportModule(
    name="M6",
    title="LH 종합 판단",
    compute=compute_decision,
    template="m6_decision.html.j2",
    requires=("M3", "M4", "M5"),
    version="1",
    description="입지·규모·사업성·법규 적합성을 110점 만점으로 평가해 100점으로 환산하고 추진 여부를 판단합니다.",
)


@hookimpl
def zerosite_register_modules(register: Callable[[ReportModule], None]) -> None:
    register(MODULE)
