"""M3 supply type (공급유형 판단): scores the five LH rental types for the site and picks the best fit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from zerosite import ReportModule, hookimpl
from zerosite.fields import described
from zerosite.project import Project

__all__ = [
    "MODULE",
    "GroupShare",
    "SupplyTypeDecision",
    "SupplyTypeParams",
    "SupplyTypeSpec",
    "TypeScore",
    "decide_supply_type",
]


@dataclass(frozen=True)
class SupplyTypeSpec:
    """One LH housing type and the constants that score it."""

    key: str = field(metadata=described("", "Identifier of the LH supply type, e.g. youth"))
    label: str = field(metadata=described("", "Korean name of the supply type"))
    unit_area_sqm: float = field(metadata=described("㎡", "Exclusive area of one dwelling of this type"))
    demographic_group: str = field(metadata=described("", "Demographic group whose share measures demand"))
    policy_fit: float = field(metadata=described("points 0-100", "How well the type fits LH policy"))
    policy_note: str = field(metadata=described("", "Korean reason for the policy fit"))
    subway_decay_per_100m: float = field(
        metadata=described("points/100 m", "Subway score lost per 100 m beyond the near-subway distance")
    )
    min_land_area_sqm: float = field(metadata=described("㎡", "Land area recommended for the type; less scores lower"))
    zone_scores: tuple[tuple[str, float], ...] = field(
        metadata=described("(zone, points)", "Site score of each use district for the type")
    )

    def zone_score(self, zone: str) -> float:
        for name, score in self.zone_scores:
            if name == zone:
                return score
        raise KeyError(f"supply type {self.key}: no score for zone {zone!r}")


def _zones(r1: float, r2: float, r3: float, semi_res: float, semi_ind: float) -> tuple[tuple[str, float], ...]:
    return (
        ("제1종일반주거지역", r1),
        ("제2종일반주거지역", r2),
        ("제3종일반주거지역", r3),
        ("준주거지역", semi_res),
        ("준공업지역", semi_ind),
    )


DEFAULT_SUPPLY_TYPES = (
    SupplyTypeSpec(
        key="youth",
        label="청년",
        unit_area_sqm=30.0,
        demographic_group="youth",
        policy_fit=85.0,
        policy_note="청년 주거 안정 정책의 핵심 공급 유형으로, 역세권 소형 주택 수요가 꾸준함",
        subway_decay_per_100m=10.0,
        min_land_area_sqm=500.0,
        zone_scores=_zones(60, 80, 90, 100, 90),
    ),
    SupplyTypeSpec(
        key="newlywed_1",
        label="신혼·신생아 I",
        unit_area_sqm=45.0,
        demographic_group="newlywed",
        policy_fit=90.0,
        policy_note="저출생 대응을 위한 신혼·신생아 가구 우선 공급 확대 방침에 부합",
        subway_decay_per_100m=6.0,
        min_land_area_sqm=700.0,
        zone_scores=_zones(70, 90, 100, 90, 80),
    ),
    SupplyTypeSpec(
        key="newlywed_2",
        label="신혼·신생아 II",
        unit_area_sqm=60.0,
        demographic_group="newlywed",
        policy_fit=75.0,
        policy_note="자녀 양육 가구의 중형 임대 수요를 흡수하는 유형으로 정책 우선순위가 높음",
        subway_decay_per_100m=5.0,
        min_land_area_sqm=1200.0,
        zone_scores=_zones(75, 95, 100, 85, 75),
    ),
    SupplyTypeSpec(
        key="multichild",
        label="다자녀",
        unit_area_sqm=85.0,
        demographic_group="multichild",
        policy_fit=80.0,
        policy_note="다자녀 가구 지원 정책 대상이나 세대당 면적이 커서 공급 물량이 제한적",
        subway_decay_per_100m=3.0,
        min_land_area_sqm=1500.0,
        zone_scores=_zones(90, 100, 90, 70, 60),
    ),
    SupplyTypeSpec(
        key="senior",
        label="고령자",
        unit_area_sqm=40.0,
        demographic_group="senior",
        policy_fit=75.0,
        policy_note="고령화 대응 주거복지 유형으로 의료·생활 편의시설 접근성이 중요",
        subway_decay_per_100m=8.0,
        min_land_area_sqm=500.0,
        zone_scores=_zones(90, 100, 90, 80, 60),
    ),
)

GROUP_LABELS = (
    ("youth", "청년(20~39세 1인)"),
    ("newlywed", "신혼부부"),
    ("multichild", "다자녀"),
    ("senior", "고령자"),
)


@dataclass(frozen=True)
class SupplyTypeParams:
    """Every constant of the supply-type model, units in the field names."""

    types: tuple[SupplyTypeSpec, ...] = field(
        default=DEFAULT_SUPPLY_TYPES, metadata=described("", "The supply types scored")
    )
    policy_weight: float = field(default=0.5, metadata=described("share", "Weight of policy fit in a type's score"))
    demand_weight: float = field(default=0.3, metadata=described("share", "Weight of demand in a type's score"))
    site_weight: float = field(default=0.2, metadata=described("share", "Weight of the site in a type's score"))
    # City baseline household shares (the typical mid-range of each group).
    baseline_shares: tuple[tuple[str, float], ...] = field(
        default=(
            ("youth", 0.25),
            ("newlywed", 0.14),
            ("multichild", 0.07),
            ("senior", 0.17),
        ),
        metadata=described("(group, share)", "City baseline share of households of each demographic group"),
    )
    demand_score_at_baseline: float = field(
        default=50.0, metadata=described("points", "Demand score when the local share equals the baseline")
    )
    demand_points_per_baseline_ratio: float = field(
        default=75.0, metadata=described("points", "Demand points per unit of local share over baseline share")
    )
    subway_near_m: float = field(
        default=500.0, metadata=described("m", "Subway distance within which the subway score is full")
    )
    subway_score_floor: float = field(default=20.0, metadata=described("points", "Lowest subway score"))
    subway_site_weight: float = field(
        default=0.4, metadata=described("share", "Weight of the subway score in the site score")
    )
    land_site_weight: float = field(
        default=0.3, metadata=described("share", "Weight of the land-area score in the site score")
    )
    zone_site_weight: float = field(
        default=0.3, metadata=described("share", "Weight of the use-district score in the site score")
    )
    tie_margin_points: float = field(
        default=5.0, metadata=described("points", "Lead below which the top two types count as a tie")
    )

    def baseline_share(self, group: str) -> float:
        for name, share in self.baseline_shares:
            if name == group:
                return share
        raise KeyError(f"no baseline share for group {group!r}")


@dataclass(frozen=True)
class TypeScore:
    """One LH type's score with its parts and the reasons behind them."""

    key: str = field(metadata=described("", "Identifier of the supply type"))
    label: str = field(metadata=described("", "Korean name of the supply type"))
    unit_area_sqm: float = field(metadata=described("㎡", "Exclusive area of one dwelling of this type"))
    rank: int = field(metadata=described("", "Rank by score, from 1"))
    policy_fit: float = field(metadata=described("points 0-100", "Policy fit"))
    demand: float = field(metadata=described("points 0-100", "Demand score from the local household share"))
    site: float = field(metadata=described("points 0-100", "Site score: subway, land area and use district, weighted"))
    subway_score: float = field(metadata=described("points 0-100", "Subway access part of the site score"))
    land_score: float = field(metadata=described("points 0-100", "Land area part of the site score"))
    zone_score: float = field(metadata=described("points 0-100", "Use district part of the site score"))
    share: float = field(metadata=described("share", "Local household share of the type's demographic group"))
    baseline_share: float = field(metadata=described("share", "City baseline share of that group"))
    score: float = field(metadata=described("points 0-100", "Weighted total score"))
    reasons: tuple[str, ...] = field(metadata=described("", "Korean reasons behind the score"))
    max_score: float = field(default=100.0, metadata=described("points", "Highest possible score"))


@dataclass(frozen=True)
class GroupShare:
    """One demographic group around the site against the city baseline."""

    key: str = field(metadata=described("", "Identifier of the demographic group"))
    label: str = field(metadata=described("", "Korean name of the group"))
    share: float = field(metadata=described("share", "Local household share of the group"))
    baseline_share: float = field(metadata=described("share", "City baseline share of the group"))
    ratio: float = field(metadata=described("factor", "Local share over baseline share"))
    share_pct: float = field(metadata=described("%", "Local share in percent"))
    baseline_pct: float = field(metadata=described("%", "Baseline share in percent"))


@dataclass(frozen=True)
class SupplyTypeDecision:
    """The M3 result: the selected type, the full ranking and the reasons."""

    selected: str = field(metadata=described("", "Key of the best-scoring supply type"))
    selected_label: str = field(metadata=described("", "Korean name of the selected type"))
    unit_area_sqm: float = field(metadata=described("㎡", "Exclusive area of one dwelling of the selected type"))
    score: float = field(metadata=described("points 0-100", "Score of the selected type"))
    tie: bool = field(metadata=described("", "Whether the runner-up is within the tie margin"))
    runner_up: str = field(metadata=described("", "Key of the second-best type"))
    runner_up_label: str = field(metadata=described("", "Korean name of the second-best type"))
    margin: float = field(metadata=described("points", "Score lead of the selected type over the runner-up"))
    ranking: tuple[TypeScore, ...] = field(metadata=described("", "Every type's score, best first"))
    groups: tuple[GroupShare, ...] = field(
        metadata=described("", "Demographic groups around the site against the city baseline")
    )
    reasons: tuple[str, ...] = field(metadata=described("", "Korean reasons for the selection"))
    opinion: tuple[str, ...] = field(metadata=described("", "Korean opinion, one paragraph per item"))
    params: SupplyTypeParams = field(repr=False, metadata=described("", "The constants the scoring used"))


def _clamp(value: float, low: float = 0.0, high: float = 100.0) -> float:
    return min(max(value, low), high)


def score_type(spec: SupplyTypeSpec, project: Project, params: SupplyTypeParams) -> TypeScore:
    """Score one type 0-100 from policy fit, demand against the city baseline and site suitability."""
    share = project.demographics.share(spec.demographic_group)
    baseline = params.baseline_share(spec.demographic_group)
    ratio = share / baseline
    demand = _clamp(params.demand_score_at_baseline + params.demand_points_per_baseline_ratio * (ratio - 1.0))
    distance = project.subway_distance_m
    over_100m = max(distance - params.subway_near_m, 0.0) / 100.0
    subway = max(100.0 - spec.subway_decay_per_100m * over_100m, params.subway_score_floor)
    land = _clamp(100.0 * project.land_area_sqm / spec.min_land_area_sqm)
    zone = spec.zone_score(str(project.zone_type))
    site = subway * params.subway_site_weight + land * params.land_site_weight + zone * params.zone_site_weight
    score = spec.policy_fit * params.policy_weight + demand * params.demand_weight + site * params.site_weight

    reasons = [f"정책 부합도 {spec.policy_fit:.0f}점: {spec.policy_note}."]
    if ratio >= 1.2:
        level = "높아 수요가 두텁습니다"
    elif ratio >= 0.8:
        level = "평균 수준입니다"
    else:
        level = "낮아 수요 기반이 약합니다"
    reasons.append(
        f"수요 {demand:.1f}점: 대상 가구 비중 {share * 100:.1f}%가 도시 평균 {baseline * 100:.1f}%의 "
        f"{ratio:.2f}배로 {level}."
    )
    if distance <= params.subway_near_m:
        subway_text = f"지하철역 {distance:,.0f}m로 역세권({params.subway_near_m:,.0f}m 이내)에 해당"
    else:
        subway_text = (
            f"지하철역 {distance:,.0f}m로 역세권 기준을 {distance - params.subway_near_m:,.0f}m 벗어나 "
            f"100m당 {spec.subway_decay_per_100m:.0f}점 감점"
        )
    if project.land_area_sqm >= spec.min_land_area_sqm:
        land_text = f"대지면적 {project.land_area_sqm:,.1f}㎡로 권장 최소 {spec.min_land_area_sqm:,.0f}㎡ 충족"
    else:
        land_text = f"대지면적 {project.land_area_sqm:,.1f}㎡로 권장 최소 {spec.min_land_area_sqm:,.0f}㎡에 미달"
    reasons.append(
        f"입지 {site:.1f}점: {subway_text}({subway:.0f}점), {land_text}({land:.0f}점), "
        f"{project.zone_type} 적합도 {zone:.0f}점."
    )
    return TypeScore(
        key=spec.key,
        label=spec.label,
        unit_area_sqm=spec.unit_area_sqm,
        rank=0,
        policy_fit=spec.policy_fit,
        demand=demand,
        site=site,
        subway_score=subway,
        land_score=land,
        zone_score=zone,
        share=share,
        baseline_share=baseline,
        score=score,
        reasons=tuple(reasons),
    )


def decide_supply_type(
    project: Project, deps: Mapping[str, Any] | None = None, params: SupplyTypeParams = SupplyTypeParams()
) -> SupplyTypeDecision:
    """Score every LH type, rank them (ties keep the order of ``params.types``) and select the top one."""
    scored = [score_type(spec, project, params) for spec in params.types]
    order = sorted(range(len(scored)), key=lambda i: (-round(scored[i].score, 9), i))
    ranking = tuple(replace(scored[i], rank=rank) for rank, i in enumerate(order, start=1))
    top, second = ranking[0], ranking[1]
    margin = top.score - second.score
    tie = margin < params.tie_margin_points

    where = f"{project.sido} {project.sigungu} {project.dong}"
    reasons = [
        f"{top.label} 유형이 {top.score:.1f}점으로 1순위이며, 2순위 {second.label}({second.score:.1f}점)와 "
        f"{margin:.1f}점 차이입니다.",
        *top.reasons,
    ]
    strongest = max(
        (("정책 부합도", top.policy_fit), ("수요", top.demand), ("입지", top.site)), key=lambda item: item[1]
    )
    opinion = [
        f"대상지({where}, 대지면적 {project.land_area_sqm:,.1f}㎡, {project.zone_type})에 대하여 LH 신축매입임대 "
        f"5개 공급유형을 평가한 결과, {top.label} 유형(전용 {top.unit_area_sqm:.0f}㎡)이 "
        f"{top.score:.1f}점으로 가장 적합합니다. 가장 높은 평가 요소는 {strongest[0]}({strongest[1]:.1f}점)입니다."
    ]
    if tie:
        opinion.append(
            f"다만 2순위 {second.label} 유형과의 점수 차이가 {margin:.1f}점으로 "
            f"동점 기준({params.tie_margin_points:.0f}점) 미만이므로, 두 유형을 혼합 배치하거나 "
            "LH 지역본부와 공급유형을 사전 협의할 것을 권고합니다."
        )
    else:
        opinion.append(
            f"2순위 {second.label} 유형과의 점수 차이가 {margin:.1f}점으로 동점 기준({params.tie_margin_points:.0f}점) "
            f"이상이므로, {top.label} 유형 단일 공급을 기준으로 건축 규모(M4)를 검토합니다."
        )
    last = ranking[-1]
    opinion.append(
        f"최하위는 {last.label} 유형({last.score:.1f}점)으로, 수요 {last.demand:.1f}점과 입지 {last.site:.1f}점이 "
        "상대적으로 낮게 평가되었습니다."
    )
    return SupplyTypeDecision(
        selected=top.key,
        selected_label=top.label,
        unit_area_sqm=top.unit_area_sqm,
        score=top.score,
        tie=tie,
        runner_up=second.key,
        runner_up_label=second.label,
        margin=margin,
        ranking=ranking,
        groups=tuple(_group_share(key, label, project, params) for key, label in GROUP_LABELS),
        reasons=tuple(reasons),
        opinion=tuple(opinion),
        params=params,
    )


def _group_share(key: str, label: str, project: Project, params: SupplyTypeParams) -> GroupShare:
    share = project.demographics.share(key)
    baseline = params.baseline_share(key)
    return GroupShare(
        key=key,
        label=label,
        share=share,
        baseline_share=baseline,
        ratio=share / baseline,
        share_pct=share * 100.0,
        baseline_pct=baseline * 100.0,
    )


MODULE = ReportModule(
    name="M3",
    title="공급유형 판단",
    compute=decide_supply_type,
    template="m3_supply_type.html.j2",
    version="1",
    description="LH 신축매입임대 5개 공급유형의 정책 부합도·수요·입지 점수와 최적 유형",
)


@hookimpl
def zerosite_register_modules(register: Callable[[ReportModule], None]) -> None:
    register(MODULE)
