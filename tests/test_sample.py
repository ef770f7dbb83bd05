"""Tests of the sample project generator: deterministic, valid, varied, independent of n."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from collections import Counter

import pytest

from zerosite.project import Zone, parse_project, project_to_dict
from zerosite.sample import iter_sample_projects, sample_project, sample_projects

SEOUL_CASES = [
    ("역삼동", 1650.0),
    ("공덕동", 2145.0),
    ("잠실동", 2640.0),
    ("서초동", 1485.0),
    ("한강로동", 1980.0),
    ("성수동", 1320.0),
    ("여의도동", 2310.0),
    ("자양동", 1155.0),
    ("상계동", 2970.0),
    ("화곡동", 1815.0),
]


def test_deterministic_across_calls() -> None:
    assert json.dumps(sample_projects(50, seed=3)) == json.dumps(sample_projects(50, seed=3))


def test_seed_changes_the_data() -> None:
    assert sample_projects(20, seed=0) != sample_projects(20, seed=1)


def test_item_does_not_depend_on_n() -> None:
    short = sample_projects(15, seed=7)
    long = sample_projects(300, seed=7)
    assert long[:15] == short
    assert sample_project(299, seed=7) == long[299]


def test_iter_matches_list() -> None:
    assert list(iter_sample_projects(40, seed=2)) == sample_projects(40, seed=2)


def test_iter_is_lazy() -> None:
    tracemalloc.start()
    try:
        for _ in iter_sample_projects(2_000):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # a list of 2,000 projects would take several MB


def test_every_sample_is_valid_and_round_trips() -> None:
    for index, raw in enumerate(iter_sample_projects(1_000, seed=11)):
        project = parse_project(raw, f"sample[{index}]")
        assert parse_project(project_to_dict(project)) == project
        assert json.loads(json.dumps(raw, ensure_ascii=False)) == raw  # plain JSON types only


def test_first_ten_are_the_seoul_cases() -> None:
    projects = [parse_project(raw) for raw in sample_projects(10)]
    assert [(p.dong, p.land_area_sqm) for p in projects] == SEOUL_CASES
    assert all(p.sido == "서울특별시" for p in projects)
    assert projects[0].id == "p0001-yeoksam"


def test_ids_are_unique_slugs() -> None:
    ids = [raw["id"] for raw in iter_sample_projects(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids[9_999].startswith("p10000-")


def test_values_are_realistic() -> None:
    valuation = dt.date(2026, 1, 1)
    for raw in sample_projects(500):
        project = parse_project(raw)
        assert 300 <= project.land_area_sqm <= 5_000
        assert 3 <= len(project.transactions) <= 8
        for sale in project.transactions:
            assert valuation - dt.timedelta(days=731) <= sale.date < valuation
            # comparables scatter around the local base price; official price is 60-75 % of it
            ratio = sale.unit_price_krw / project.official_price_per_sqm
            assert 0.8 < ratio < 2.5
        shares = [project.demographics.share(g) for g in ("youth", "newlywed", "multichild", "senior")]
        assert all(0 <= s <= 1 for s in shares) and sum(shares) <= 1
        assert project.road_address.startswith(project.sido)
        assert project.dong in project.jibun_address


def test_samples_are_varied() -> None:
    projects = [parse_project(raw) for raw in sample_projects(1_000)]
    sidos = Counter(p.sido for p in projects)
    assert {"서울특별시", "경기도", "인천광역시", "부산광역시"} <= set(sidos)
    assert len(sidos) >= 6
    assert sidos["서울특별시"] > sidos["경기도"] > sidos["인천광역시"]
    assert set(Counter(p.zone_type for p in projects)) == set(Zone)
    assert 0.15 < sum(p.corner_lot for p in projects) / len(projects) < 0.45
    assert len({p.road_width_m for p in projects}) >= 8
    assert len({round(p.land_area_sqm) for p in projects}) > 800
    assert len({len(p.transactions) for p in projects}) == 6
    seoul = [p.official_price_per_sqm for p in projects if p.sigungu == "강남구"]
    elsewhere = [p.official_price_per_sqm for p in projects if p.sido == "대구광역시"]
    assert min(seoul) > max(elsewhere)


def test_negative_n_is_rejected() -> None:
    with pytest.raises(ValueError):
        sample_projects(-1)
