"""Tests of M4 building scale: zoning limits and incentive bands, the national cap, floors, units, parking."""

from __future__ import annotations

import dataclasses
import pickle

import helpers
import pytest
from helpers import StubSupply

from zerosite.modules.m4_building_scale import (
    MODULE,
    BuildingScaleParams,
    ZoneLimit,
    applied_ratios,
    compute_building_scale,
)
from zerosite.project import Zone
from zerosite.rendering import render_report

YOUTH = StubSupply()
MULTICHILD = StubSupply("multichild", "다자녀", 85.0)


# The defaults of ``helpers.project_dict`` but for these: 800 m from the subway is past the 500 m band,
# so the hand computations below use 0.6 parking spaces per unit.
BASE = {"id": "m4-test", "subway_distance_m": 800.0}


def make_project(**overrides):
    return helpers.make_project(**{**BASE, **overrides})


# zone: (applied BCR, base FAR = limit x 0.85, incentive share, uncapped FAR, applied FAR)
ZONE_CASES = {
    Zone.RESIDENTIAL_1: (54.0, 127.5, 0.30, 165.75, 165.75),  # FAR 150 <= 200: +30 %
    Zone.RESIDENTIAL_2: (54.0, 170.0, 0.30, 221.0, 221.0),  # FAR 200 <= 200: +30 %
    Zone.RESIDENTIAL_3: (45.0, 212.5, 0.25, 265.625, 265.625),  # FAR 250 <= 250: +25 %
    Zone.SEMI_RESIDENTIAL: (54.0, 340.0, 0.20, 408.0, 408.0),  # FAR 400: +20 %, under the 500 cap
    Zone.SEMI_INDUSTRIAL: (54.0, 340.0, 0.20, 408.0, 400.0),  # 408 capped at the national 400
}


@pytest.mark.parametrize("zone", list(ZONE_CASES), ids=lambda z: z.name)
def test_applied_ratios_per_zone(zone: Zone) -> None:
    bcr, base, share, uncapped, applied = ZONE_CASES[zone]
    ratios = applied_ratios(zone)
    assert ratios["applied_bcr_pct"] == pytest.approx(bcr)
    assert ratios["base_far_pct"] == pytest.approx(base)
    assert ratios["incentive_share"] == share
    assert ratios["incentive_far_pct"] == pytest.approx(base * share)
    assert ratios["uncapped_far_pct"] == pytest.approx(uncapped)
    assert ratios["applied_far_pct"] == pytest.approx(applied)


def test_incentive_band_edges() -> None:
    params = BuildingScaleParams()
    assert params.incentive_share(150.0) == 0.30
    assert params.incentive_share(200.0) == 0.30
    assert params.incentive_share(200.1) == 0.25
    assert params.incentive_share(250.0) == 0.25
    assert params.incentive_share(250.1) == 0.20
    assert params.incentive_share(400.0) == 0.20


def test_national_cap_applies_in_every_zone() -> None:
    generous = BuildingScaleParams(incentive_bands=((1000.0, 1.0),))  # +100 %: always over the cap
    for limit in generous.zone_limits:
        ratios = applied_ratios(limit.zone, generous)
        assert ratios["applied_far_pct"] == limit.far_national_max_pct
    project = make_project(zone_type=Zone.SEMI_INDUSTRIAL.value)
    result = compute_building_scale(project, {"M3": YOUTH})
    assert result.far_capped and result.applied_far_pct == 400.0
    assert not compute_building_scale(make_project(), {"M3": YOUTH}).far_capped


def test_small_site_by_hand() -> None:
    # 1,000 ㎡, 제2종: GFA 2,210 ㎡, footprint 540 ㎡ -> 4.09 -> 5 floors; net 1,326 ㎡ / 30 ㎡ = 44 units
    r = compute_building_scale(make_project(), {"M3": YOUTH})
    assert r.gross_floor_area_sqm == pytest.approx(2210.0)
    assert r.footprint_sqm == pytest.approx(540.0)
    assert r.floors == 5
    assert r.net_area_sqm == pytest.approx(1326.0)
    assert r.common_area_sqm == pytest.approx(663.0)
    assert r.plant_area_sqm == pytest.approx(221.0)
    assert r.units == 44
    # 800 m from the subway: 0.6 per unit, 26.4 -> 27 spaces; basement 800 ㎡ / 30 ㎡ = 26 per level -> B2
    assert not r.near_subway and r.parking_ratio == 0.6
    assert r.parking_required == 27
    assert r.basement_levels == 2
    assert r.parking_provided == 27
    assert r.building_height_m == pytest.approx(4.2 + 4 * 3.0)
    assert [(item.label, item.passed) for item in r.checklist] == [
        ("세대수 규모", False),
        ("소형주택 비율", True),
        ("주차대수 확보", True),
        ("층수 제한", True),
    ]
    assert r.checklist_passed == 3


def test_near_subway_parking_ratio() -> None:
    at_500 = compute_building_scale(make_project(subway_distance_m=500.0), {"M3": YOUTH})
    past_500 = compute_building_scale(make_project(subway_distance_m=500.5), {"M3": YOUTH})
    assert at_500.near_subway and at_500.parking_ratio == 0.5
    assert at_500.parking_required == 22  # 44 x 0.5
    assert not past_500.near_subway and past_500.parking_required == 27


def test_large_semi_residential_site_passes_everything() -> None:
    # 2,000 ㎡ 준주거: GFA 8,160, footprint 1,080 -> 7.56 -> 8 floors; net 4,896 / 30 = 163 units
    r = compute_building_scale(make_project(land_area_sqm=2000.0, zone_type="준주거지역"), {"M3": YOUTH})
    assert r.gross_floor_area_sqm == pytest.approx(8160.0)
    assert r.floors == 8
    assert r.units == 163
    assert r.parking_required == 98  # 163 x 0.6 = 97.8
    assert r.parking_provided == 98 and r.basement_levels == 2  # 53 spaces per level
    assert all(item.passed for item in r.checklist)


def test_parking_shortfall_fails_the_checklist() -> None:
    one_level = BuildingScaleParams(max_basement_levels=1)
    r = compute_building_scale(make_project(land_area_sqm=2000.0, zone_type="준주거지역"), {"M3": YOUTH}, one_level)
    assert r.parking_required == 98 and r.parking_provided == 53
    assert not r.parking_met
    assert [item.passed for item in r.checklist] == [True, True, False, True]


def test_large_units_fail_the_small_unit_share() -> None:
    r = compute_building_scale(make_project(), {"M3": MULTICHILD})
    assert r.units == 15  # 1,326 / 85 = 15.6
    assert r.small_unit_share == 0.0
    assert r.checklist[1].passed is False
    assert r.unit_type == "multichild" and r.unit_type_label == "다자녀"


def test_floors_ignore_float_noise_and_the_cap() -> None:
    # FAR 180 % on BCR 60 %: exactly 3 floors, though 1.8 / 0.6 is not exactly 3.0 in floating point
    exact = BuildingScaleParams(
        zone_limits=(ZoneLimit(Zone.RESIDENTIAL_2, 60.0, 60.0, 180.0, 250.0),),
        bcr_utilisation=1.0,
        far_utilisation=1.0,
        incentive_bands=((1000.0, 0.0),),
    )
    r = compute_building_scale(make_project(land_area_sqm=333.3), {"M3": YOUTH}, exact)
    assert r.floors == 3
    tall = BuildingScaleParams(zone_limits=(ZoneLimit(Zone.RESIDENTIAL_2, 10.0, 10.0, 300.0, 300.0),))
    r = compute_building_scale(make_project(), {"M3": YOUTH}, tall)
    assert r.floors == 34  # FAR 300 x 0.85 x 1.2 = 306 -> capped at 300: 3,000 ㎡ / 90 ㎡ = 33.3
    assert r.checklist[3].passed is False


def test_massing_adds_up() -> None:
    r = compute_building_scale(make_project(land_area_sqm=2000.0, zone_type="준주거지역"), {"M3": YOUTH})
    above = [row for row in r.massing if row.floor > 0]
    below = [row for row in r.massing if row.floor < 0]
    assert [row.name for row in r.massing] == ["B2", "B1", *(f"{n}F" for n in range(1, 9))]
    assert len(above) == r.floors and len(below) == r.basement_levels
    assert sum(row.area_sqm for row in above) == pytest.approx(r.gross_floor_area_sqm)
    assert all(row.area_sqm == pytest.approx(r.footprint_sqm) for row in above[:-1])
    assert 0 < above[-1].area_sqm <= r.footprint_sqm
    assert sum(row.units for row in above) == r.units
    assert all(row.units >= 0 for row in r.massing)
    assert sum(row.height_m for row in above) == pytest.approx(r.building_height_m)


def test_missing_zone_limits_raise() -> None:
    params = BuildingScaleParams(zone_limits=())
    with pytest.raises(KeyError):
        compute_building_scale(make_project(), {"M3": YOUTH}, params)


def test_result_is_pure_deterministic_data() -> None:
    a = compute_building_scale(make_project(), {"M3": YOUTH})
    assert a == compute_building_scale(make_project(), {"M3": YOUTH})
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.units = 1  # type: ignore[misc]
    assert MODULE.name == "M4" and MODULE.requires == ("M3",)


# --- the rendered report ------------------------------------------------------------------------


def render(project, result) -> str:
    return render_report(MODULE, project, result, {"M3": YOUTH})


def test_report_renders_checklist_massing_and_zoning() -> None:
    project = make_project(land_area_sqm=2000.0, zone_type="준주거지역")
    result = compute_building_scale(project, {"M3": YOUTH})
    html = render(project, result)
    assert html.startswith("<!DOCTYPE html>") and '<html lang="ko">' in html
    for heading in ("핵심 판단 요약", "용도지역 밀도 기준", "매스 계획", "주차 계획", "종합 판단", "법적 고지"):
        assert heading in html
    for item in result.checklist:
        assert item.label in html and item.criterion in html
    assert html.count('<span class="badge pass">적합</span>') == 2 * len(result.checklist)  # summary + judgement
    for row in result.massing:
        assert f'<td class="center">{row.name}</td>' in html
    for zone in Zone:
        assert zone.value in html
    assert "408.0%" in html and "163세대" in html and "8,160.0㎡" in html
    assert "<svg" in html
    assert 15_000 < len(html.encode()) < 40_000
    assert html == render(project, result)


def test_report_shows_failures() -> None:
    params = BuildingScaleParams(max_basement_levels=1)
    project = make_project(land_area_sqm=2000.0, zone_type="준주거지역")
    html = render(project, compute_building_scale(project, {"M3": YOUTH}, params))
    assert "45대 부족" in html and '<span class="badge fail">부적합</span>' in html
