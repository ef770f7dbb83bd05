"""M6 LH overall decision (LH 종합 판단): a 110-point score normalised to 100, a grade and GO / NO-GO."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zerosite import ReportModule, hookimpl
from zerosite.project import Project, Zone

__all__ = ["MODULE", "CategoryScore", "Decision", "DecisionParams", "ScoreItem", "compute_decision", "grade_for"]


@dataclass(frozen=True)
class DecisionParams:
    """Every constant of M6. Bands are (threshold, points), best first; a value meets a band at or past it."""

    subway_bands_m: tuple[tuple[float, float], ...] = ((300.0, 15.0), (500.0, 12.0), (800.0, 8.0), (1200.0, 4.0))
    subway_max_points: float = 15.0
    road_width_bands_m: tuple[tuple[float, float], ...] = ((12.0, 12.0), (8.0, 9.0), (6.0, 6.0), (4.0, 3.0))
    road_width_max_points: float = 12.0
    corner_lot_points: float = 8.0
    inner_lot_points: float = 3.0
    checklist_max_points: float = 10.0  # pro rata to the M4 checklist lines passed
    unit_count_max_points: float = 10.0
    preferred_units: tuple[int, int] = (100, 200)
    near_units: tuple[int, int] = (70, 250)
    near_units_points: float = 7.0
    fair_units: tuple[int, int] = (40, 300)
    fair_units_points: float = 4.0
    other_units_points: float = 1.0
    irr_bands: tuple[tuple[float, float], ...] = ((0.12, 25.0), (0.10, 21.0), (0.07, 16.0), (0.05, 10.0), (0.0, 5.0))
    irr_max_points: float = 25.0
    margin_bands: tuple[tuple[float, float], ...] = ((0.10, 15.0), (0.07, 12.0), (0.05, 9.0), (0.0, 4.0))
    margin_max_points: float = 15.0
    parking_max_points: float = 5.0  # pro rata to provided / required
    max_floors: int = 15
    floors_points: float = 5.0
    floors_over_points: float = 2.0
    zone_points: tuple[tuple[Zone, float], ...] = (
        (Zone.RESIDENTIAL_1, 3.0),
        (Zone.RESIDENTIAL_2, 5.0),
        (Zone.RESIDENTIAL_3, 5.0),
        (Zone.SEMI_RESIDENTIAL, 5.0),
        (Zone.SEMI_INDUSTRIAL, 3.0),
    )
    zone_max_points: float = 5.0
    normalised_max: float = 100.0
    grade_bands: tuple[tuple[float, str], ...] = ((90.0, "S"), (80.0, "A"), (70.0, "B"), (60.0, "C"), (50.0, "D"))
    lowest_grade: str = "F"
    go_min_score: float = 80.0
    conditional_min_score: float = 70.0
    max_reasons: int = 3


@dataclass(frozen=True)
class ScoreItem:
    """One scored criterion."""

    category: str
    label: str
    score: float
    max_score: float
    remark: str

    @property
    def lost(self) -> float:
        return self.max_score - self.score


@dataclass(frozen=True)
class CategoryScore:
    """A category's points (location, scale, feasibility, compliance)."""

    key: str
    label: str
    score: float
    max_score: float
    remark: str

    @property
    def weight(self) -> str:
        return f"{self.max_score:g}점"


@dataclass(frozen=True)
class Decision:
    """M6 result: the score, grade, decision and the reasons behind them."""

    raw_score: float
    max_raw_score: float
    score: float  # 0-100, one decimal
    grade: str
    decision: str  # "GO" / "CONDITIONAL" / "NO-GO"
    decision_label: str
    items: tuple[ScoreItem, ...]
    categories: tuple[CategoryScore, ...]
    reasons: tuple[str, ...]  # the criteria that cost the most points, worst first (Korean)
    reason_labels: tuple[str, ...]  # the names of those criteria
    supply_type_label: str
    supply_type_tie: bool
    feasibility_verdict: str
    params: DecisionParams = field(repr=False)


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
