"""M4 building scale (건축 규모): zoning limits, floor area, floors, units, parking and a checklist."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zerosite import ReportModule, hookimpl
from zerosite.fields import described
from zerosite.project import Project, Zone

__all__ = [
    "MODULE",
    "BuildingScale",
    "BuildingScaleParams",
    "ChecklistItem",
    "FloorPlan",
    "ZoneLimit",
    "ZoningRow",
    "applied_ratios",
    "compute_building_scale",
]


@dataclass(frozen=True)
class ZoneLimit:
    """Zoning limits of one use district: Seoul ordinance values and the national maximum."""

    zone: Zone = field(metadata=described("", "Use district"))
    bcr_pct: float = field(metadata=described("%", "Building coverage ratio allowed by the Seoul ordinance"))
    bcr_national_max_pct: float = field(metadata=described("%", "National maximum building coverage ratio"))
    far_pct: float = field(metadata=described("%", "Floor area ratio allowed by the Seoul ordinance"))
    far_national_max_pct: float = field(metadata=described("%", "National maximum floor area ratio"))


_ZONE_LIMITS = (
    ZoneLimit(Zone.RESIDENTIAL_1, 60.0, 60.0, 150.0, 200.0),
    ZoneLimit(Zone.RESIDENTIAL_2, 60.0, 60.0, 200.0, 250.0),
    ZoneLimit(Zone.RESIDENTIAL_3, 50.0, 50.0, 250.0, 300.0),
    ZoneLimit(Zone.SEMI_RESIDENTIAL, 60.0, 70.0, 400.0, 500.0),
    ZoneLimit(Zone.SEMI_INDUSTRIAL, 60.0, 70.0, 400.0, 400.0),
)


@dataclass(frozen=True)
class BuildingScaleParams:
    """Every constant of M4.

    The LH incentive is a share of the *base* FAR (ordinance FAR * ``far_utilisation``); its band is
    chosen by the ordinance FAR: ≤ 200 % → 30 %, ≤ 250 % → 25 %, otherwise 20 %.
    """

    zone_limits: tuple[ZoneLimit, ...] = field(
        default=_ZONE_LIMITS, metadata=described("", "Zoning limits of each use district")
    )
    bcr_utilisation: float = field(
        default=0.90, metadata=described("share", "Share of the allowed building coverage ratio that is built")
    )
    far_utilisation: float = field(
        default=0.85, metadata=described("share", "Share of the ordinance floor area ratio taken as the base")
    )
    incentive_bands: tuple[tuple[float, float], ...] = field(
        default=((200.0, 0.30), (250.0, 0.25)),
        metadata=described("(%, share)", "LH incentive share by ordinance floor area ratio upper bound"),
    )
    incentive_share_above: float = field(
        default=0.20, metadata=described("share", "LH incentive share above the last band")
    )
    net_area_share: float = field(
        default=0.60, metadata=described("share", "Share of gross floor area that is exclusive dwelling area")
    )
    common_area_share: float = field(
        default=0.30, metadata=described("share", "Share of gross floor area that is common area")
    )
    plant_area_share: float = field(
        default=0.10, metadata=described("share", "Share of gross floor area that is plant rooms")
    )
    parking_per_unit: float = field(default=0.6, metadata=described("spaces/unit", "Legal parking spaces per dwelling"))
    parking_per_unit_near_subway: float = field(
        default=0.5, metadata=described("spaces/unit", "Legal parking spaces per dwelling near a subway station")
    )
    near_subway_m: float = field(
        default=500.0, metadata=described("m", "Subway distance within which the near-subway ratio applies")
    )
    parking_area_per_space_sqm: float = field(
        default=30.0, metadata=described("㎡/space", "Basement area one parking space takes")
    )
    basement_coverage: float = field(
        default=0.80, metadata=described("share", "Basement floor plate as a share of the land")
    )
    max_basement_levels: int = field(default=3, metadata=described("levels", "Most basement levels"))
    ground_floor_height_m: float = field(default=4.2, metadata=described("m", "Storey height of the ground floor"))
    typical_floor_height_m: float = field(default=3.0, metadata=described("m", "Storey height of the upper floors"))
    basement_floor_height_m: float = field(default=3.6, metadata=described("m", "Storey height of a basement level"))
    min_units: int = field(default=100, metadata=described("units", "Fewest dwellings LH buys"))
    max_units: int = field(default=200, metadata=described("units", "Most dwellings LH buys"))
    small_unit_max_sqm: float = field(
        default=60.0, metadata=described("㎡", "Largest exclusive area that counts as a small dwelling")
    )
    min_small_unit_share: float = field(
        default=0.60, metadata=described("share", "Smallest share of small dwellings LH accepts")
    )
    max_floors: int = field(default=15, metadata=described("floors", "Most floors above ground LH accepts"))

    def limit_for(self, zone: Zone) -> ZoneLimit:
        for limit in self.zone_limits:
            if limit.zone == zone:
                return limit
        raise KeyError(f"no zoning limits for {zone}")

    def incentive_share(self, far_limit_pct: float) -> float:
        for upper_pct, share in self.incentive_bands:
            if far_limit_pct <= upper_pct:
                return share
        return self.incentive_share_above


@dataclass(frozen=True)
class ChecklistItem:
    """One line of the LH checklist: what is required, what the plan gives, pass or fail."""

    label: str = field(metadata=described("", "Korean name of the LH criterion"))
    criterion: str = field(metadata=described("", "What the criterion requires, in Korean"))
    actual: str = field(metadata=described("", "What the plan gives, in Korean"))
    passed: bool = field(metadata=described("", "Whether the plan meets the criterion"))


@dataclass(frozen=True)
class FloorPlan:
    """One floor of the massing table (basements have negative numbers, e.g. -1 for B1)."""

    floor: int = field(metadata=described("", "Floor number: 1 is the ground floor, -1 is B1"))
    name: str = field(metadata=described("", "Floor name, e.g. 1F or B1"))
    use: str = field(metadata=described("", "Korean use of the floor"))
    area_sqm: float = field(metadata=described("㎡", "Gross area of the floor"))
    net_area_sqm: float = field(metadata=described("㎡", "Exclusive dwelling area on the floor"))
    units: int = field(metadata=described("units", "Dwellings on the floor"))
    height_m: float = field(metadata=described("m", "Storey height"))


@dataclass(frozen=True)
class ZoningRow:
    """One zone of the zoning comparison table: limits and the ratios this model applies (%)."""

    zone: Zone = field(metadata=described("", "Use district"))
    bcr_pct: float = field(metadata=described("%", "Ordinance building coverage ratio"))
    bcr_national_max_pct: float = field(metadata=described("%", "National maximum building coverage ratio"))
    far_pct: float = field(metadata=described("%", "Ordinance floor area ratio"))
    far_national_max_pct: float = field(metadata=described("%", "National maximum floor area ratio"))
    applied_bcr_pct: float = field(metadata=described("%", "Building coverage ratio this model applies"))
    incentive_share: float = field(metadata=described("share", "LH incentive as a share of the base floor area ratio"))
    applied_far_pct: float = field(metadata=described("%", "Floor area ratio this model applies"))
    far_capped: bool = field(metadata=described("", "Whether the national maximum capped the floor area ratio"))


@dataclass(frozen=True)
class BuildingScale:
    """M4 result: the building the zoning allows and what it holds."""

    zone: Zone = field(metadata=described("", "Use district of the site"))
    land_area_sqm: float = field(metadata=described("㎡", "Land area of the site"))
    bcr_limit_pct: float = field(metadata=described("%", "Ordinance building coverage ratio"))
    bcr_national_max_pct: float = field(metadata=described("%", "National maximum building coverage ratio"))
    far_limit_pct: float = field(metadata=described("%", "Ordinance floor area ratio"))
    far_national_max_pct: float = field(metadata=described("%", "National maximum floor area ratio"))
    applied_bcr_pct: float = field(metadata=described("%", "Building coverage ratio applied"))
    base_far_pct: float = field(metadata=described("%", "Base floor area ratio: ordinance ratio times utilisation"))
    incentive_share: float = field(metadata=described("share", "LH incentive as a share of the base floor area ratio"))
    incentive_far_pct: float = field(metadata=described("%", "Floor area ratio added by the LH incentive"))
    uncapped_far_pct: float = field(metadata=described("%", "Base plus incentive, before the national cap"))
    applied_far_pct: float = field(metadata=described("%", "Floor area ratio applied, after the national cap"))
    far_capped: bool = field(metadata=described("", "Whether the national maximum capped the floor area ratio"))
    gross_floor_area_sqm: float = field(metadata=described("㎡", "Gross floor area above ground"))
    footprint_sqm: float = field(metadata=described("㎡", "Building footprint"))
    floors: int = field(metadata=described("floors", "Floors above ground"))
    net_area_sqm: float = field(metadata=described("㎡", "Exclusive dwelling area"))
    common_area_sqm: float = field(metadata=described("㎡", "Common area"))
    plant_area_sqm: float = field(metadata=described("㎡", "Plant room area"))
    unit_type: str = field(metadata=described("", "Key of the M3 supply type the dwellings follow"))
    unit_type_label: str = field(metadata=described("", "Korean name of that supply type"))
    unit_area_sqm: float = field(metadata=described("㎡", "Exclusive area of one dwelling"))
    units: int = field(metadata=described("units", "Dwellings"))
    small_unit_share: float = field(metadata=described("share", "Share of dwellings that are small"))
    near_subway: bool = field(metadata=described("", "Whether the site is within the near-subway distance"))
    parking_ratio: float = field(metadata=described("spaces/unit", "Legal parking spaces per dwelling applied"))
    parking_required: int = field(metadata=described("spaces", "Legal minimum parking spaces"))
    parking_provided: int = field(metadata=described("spaces", "Parking spaces the basement provides"))
    basement_levels: int = field(metadata=described("levels", "Basement levels"))
    basement_area_sqm: float = field(metadata=described("㎡", "Floor plate of one basement level"))
    building_height_m: float = field(metadata=described("m", "Estimated building height"))
    massing: tuple[FloorPlan, ...] = field(metadata=described("", "Floor-by-floor table, basements included"))
    checklist: tuple[ChecklistItem, ...] = field(
        metadata=described("", "LH purchase criteria and whether the plan meets them")
    )
    zoning: tuple[ZoningRow, ...] = field(metadata=described("", "Zoning comparison of every use district"))
    params: BuildingScaleParams = field(repr=False, metadata=described("", "The constants the massing used"))

    @property
    def checklist_passed(self) -> int:
        """Checklist lines the plan meets."""
        return sum(item.passed for item in self.checklist)

    @property
    def parking_met(self) -> bool:
        """Whether the parking provided meets the legal minimum."""
        return self.parking_provided >= self.parking_required


def applied_ratios(zone: Zone, params: BuildingScaleParams = BuildingScaleParams()) -> dict[str, float]:
    """The applied BCR and FAR of a zone with the steps that lead to them (all in %)."""
    limit = params.limit_for(zone)
    base_far = limit.far_pct * params.far_utilisation
    share = params.incentive_share(limit.far_pct)
    uncapped = base_far * (1 + share)
    return {
        "applied_bcr_pct": limit.bcr_pct * params.bcr_utilisation,
        "base_far_pct": base_far,
        "incentive_share": share,
        "incentive_far_pct": base_far * share,
        "uncapped_far_pct": uncapped,
        "applied_far_pct": min(uncapped, limit.far_national_max_pct),
    }


def _zoning_table(params: BuildingScaleParams) -> tuple[ZoningRow, ...]:
    rows = []
    for limit in params.zone_limits:
        r = applied_ratios(limit.zone, params)
        rows.append(
            ZoningRow(
                limit.zone,
                limit.bcr_pct,
                limit.bcr_national_max_pct,
                limit.far_pct,
                limit.far_national_max_pct,
                r["applied_bcr_pct"],
                r["incentive_share"],
                r["applied_far_pct"],
                r["uncapped_far_pct"] > r["applied_far_pct"],
            )
        )
    return tuple(rows)


def _ceil(value: float) -> int:
    """``math.ceil`` that ignores float noise such as 3.0000000000000004."""
    return math.ceil(round(value, 9))


def _massing(
    floors: int,
    footprint: float,
    gfa: float,
    unit_area: float,
    units: int,
    basement_levels: int,
    basement_area: float,
    params: BuildingScaleParams,
) -> tuple[FloorPlan, ...]:
    rows: list[FloorPlan] = []
    for level in range(basement_levels, 0, -1):
        height = params.basement_floor_height_m
        rows.append(FloorPlan(-level, f"B{level}", "주차장·기계실", basement_area, 0.0, 0, height))
    remaining = gfa
    cumulative_net = 0.0
    allotted = 0
    for floor in range(1, floors + 1):
        area = footprint if floor < floors else remaining
        remaining -= area
        net = area * params.net_area_share
        cumulative_net += net
        # units by cumulative net area, so the floors add up to exactly `units`
        upto = units if floor == floors else min(units, int(round(cumulative_net, 6) // unit_area))
        height = params.ground_floor_height_m if floor == 1 else params.typical_floor_height_m
        use = "주거(저층부·커뮤니티)" if floor == 1 else "주거"
        rows.append(FloorPlan(floor, f"{floor}F", use, area, net, upto - allotted, height))
        allotted = upto
    return tuple(rows)


def compute_building_scale(
    project: Project, deps: Mapping[str, Any], params: BuildingScaleParams = BuildingScaleParams()
) -> BuildingScale:
    """Size the building on the parcel for the supply type that M3 selected."""
    supply = deps["M3"]
    limit = params.limit_for(project.zone_type)
    ratios = applied_ratios(project.zone_type, params)
    land = project.land_area_sqm
    gfa = land * ratios["applied_far_pct"] / 100
    footprint = land * ratios["applied_bcr_pct"] / 100
    floors = _ceil(gfa / footprint)
    net = gfa * params.net_area_share
    unit_area = float(supply.unit_area_sqm)
    units = int(round(net, 6) // unit_area)

    near_subway = project.subway_distance_m <= params.near_subway_m
    ratio = params.parking_per_unit_near_subway if near_subway else params.parking_per_unit
    required = _ceil(units * ratio)
    basement_area = land * params.basement_coverage
    per_level = int(basement_area // params.parking_area_per_space_sqm)
    levels = min(params.max_basement_levels, _ceil(required / per_level)) if per_level and required else 0
    provided = min(required, levels * per_level)
    small_share = 1.0 if unit_area <= params.small_unit_max_sqm else 0.0
    height = params.ground_floor_height_m + (floors - 1) * params.typical_floor_height_m

    checklist = (
        ChecklistItem(
            "세대수 규모",
            f"{params.min_units}~{params.max_units}세대",
            f"{units:,}세대",
            params.min_units <= units <= params.max_units,
        ),
        ChecklistItem(
            "소형주택 비율",
            f"전용 {params.small_unit_max_sqm:g}㎡ 이하 {params.min_small_unit_share:.0%} 이상",
            f"{small_share:.0%} (전용 {unit_area:g}㎡)",
            small_share >= params.min_small_unit_share,
        ),
        ChecklistItem(
            "주차대수 확보",
            f"법정 {required:,}대 이상 (세대당 {ratio:g}대)",
            f"{provided:,}대 (지하 {levels}개층)",
            provided >= required,
        ),
        ChecklistItem(
            "층수 제한",
            f"{params.max_floors}층 이하",
            f"지상 {floors}층",
            floors <= params.max_floors,
        ),
    )
    return BuildingScale(
        zone=project.zone_type,
        land_area_sqm=land,
        bcr_limit_pct=limit.bcr_pct,
        bcr_national_max_pct=limit.bcr_national_max_pct,
        far_limit_pct=limit.far_pct,
        far_national_max_pct=limit.far_national_max_pct,
        applied_bcr_pct=ratios["applied_bcr_pct"],
        base_far_pct=ratios["base_far_pct"],
        incentive_share=ratios["incentive_share"],
        incentive_far_pct=ratios["incentive_far_pct"],
        uncapped_far_pct=ratios["uncapped_far_pct"],
        applied_far_pct=ratios["applied_far_pct"],
        far_capped=ratios["uncapped_far_pct"] > ratios["applied_far_pct"],
        gross_floor_area_sqm=gfa,
        footprint_sqm=footprint,
        floors=floors,
        net_area_sqm=net,
        common_area_sqm=gfa * params.common_area_share,
        plant_area_sqm=gfa * params.plant_area_share,
        unit_type=str(supply.selected),
        unit_type_label=str(supply.selected_label),
        unit_area_sqm=unit_area,
        units=units,
        small_unit_share=small_share,
        near_subway=near_subway,
        parking_ratio=ratio,
        parking_required=required,
        parking_provided=provided,
        basement_levels=levels,
        basement_area_sqm=basement_area,
        building_height_m=height,
        massing=_massing(floors, footprint, gfa, unit_area, units, levels, basement_area, params),
        checklist=checklist,
        zoning=_zoning_table(params),
        params=params,
    )


MODULE = ReportModule(
    name="M4",
    title="건축 규모",
    compute=compute_building_scale,
    template="m4_building_scale.html.j2",
    requires=("M3",),
    version="1",
    description="용도지역 한도와 LH 인센티브 용적률로 연면적·층수·세대수·주차대수를 산정하고 LH 기준을 점검합니다.",
)


@hookimpl
def zerosite_register_modules(register: Callable[[ReportModule], None]) -> None:
    register(MODULE)
