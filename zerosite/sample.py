"""Deterministic, realistic sample projects (raw JSON dicts) for tests, demos and benchmarks."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from zerosite.project import DEMOGRAPHIC_GROUPS, Zone

__all__ = ["SampleParams", "iter_sample_projects", "sample_project", "sample_projects"]


@dataclass(frozen=True)
class SampleParams:
    """Every constant of the sample generator, units in the field names."""

    valuation_date: dt.date = dt.date(2026, 1, 1)
    transaction_window_days: int = 730
    min_transactions: int = 3
    max_transactions: int = 8
    official_price_share_min: float = 0.60
    official_price_share_max: float = 0.75
    local_price_spread: float = 0.12
    transaction_price_sigma: float = 0.09
    monthly_price_change: float = 0.003
    corner_lot_share: float = 0.3
    land_area_min_sqm: float = 300.0
    land_area_mode_sqm: float = 1500.0
    land_area_max_sqm: float = 5000.0


@dataclass(frozen=True)
class _Dong:
    name: str
    slug: str


@dataclass(frozen=True)
class _District:
    """A 시군구 with its base land price (KRW/㎡), some 동 and some road names."""

    sido: str
    sigungu: str
    base_price_per_sqm_krw: int
    dongs: tuple[_Dong, ...]
    roads: tuple[str, ...]
    subway_distance_max_m: float


def _d(sido: str, sigungu: str, price: int, dongs: str, roads: str, subway_max_m: float = 1200.0) -> _District:
    pairs = tuple(_Dong(*item.split(":")) for item in dongs.split())
    return _District(sido, sigungu, price, pairs, tuple(roads.split()), subway_max_m)


_SEOUL = "서울특별시"
_GYEONGGI = "경기도"
_INCHEON = "인천광역시"
_BUSAN = "부산광역시"

# Seoul 구 (the ten cases need 성동, 광진 and 노원 too; their prices are estimates between the listed ones).
_SEOUL_DISTRICTS = {
    "강남구": _d(
        _SEOUL,
        "강남구",
        15_000_000,
        "역삼동:yeoksam 논현동:nonhyeon 삼성동:samseong 대치동:daechi",
        "테헤란로 논현로 봉은사로 선릉로 언주로",
    ),
    "서초구": _d(
        _SEOUL, "서초구", 14_000_000, "서초동:seocho 방배동:bangbae 양재동:yangjae", "서초대로 반포대로 방배로 강남대로"
    ),
    "용산구": _d(
        _SEOUL, "용산구", 13_000_000, "한강로동:hangangno 이촌동:ichon 후암동:huam", "한강대로 이촌로 후암로 녹사평대로"
    ),
    "송파구": _d(
        _SEOUL,
        "송파구",
        12_000_000,
        "잠실동:jamsil 가락동:garak 문정동:munjeong",
        "올림픽로 백제고분로 송파대로 가락로",
    ),
    "성동구": _d(
        _SEOUL,
        "성동구",
        12_000_000,
        "성수동:seongsu 행당동:haengdang 금호동:geumho",
        "성수이로 아차산로 왕십리로 뚝섬로",
    ),
    "마포구": _d(
        _SEOUL,
        "마포구",
        11_000_000,
        "공덕동:gongdeok 합정동:hapjeong 망원동:mangwon 연남동:yeonnam",
        "마포대로 만리재로 양화로 월드컵로",
    ),
    "강동구": _d(
        _SEOUL, "강동구", 11_000_000, "천호동:cheonho 길동:gil 암사동:amsa", "천호대로 올림픽로 양재대로 성내로"
    ),
    "영등포구": _d(
        _SEOUL,
        "영등포구",
        10_000_000,
        "여의도동:yeouido 당산동:dangsan 문래동:mullae",
        "여의대로 국제금융로 당산로 도림로",
    ),
    "광진구": _d(
        _SEOUL, "광진구", 10_000_000, "자양동:jayang 구의동:guui 화양동:hwayang", "능동로 자양로 아차산로 광나루로"
    ),
    "구로구": _d(
        _SEOUL, "구로구", 9_000_000, "구로동:guro 신도림동:sindorim 개봉동:gaebong", "구로중앙로 경인로 디지털로 새말로"
    ),
    "관악구": _d(_SEOUL, "관악구", 8_500_000, "봉천동:bongcheon 신림동:sillim", "관악로 봉천로 남부순환로 신림로"),
    "강서구": _d(
        _SEOUL, "강서구", 8_000_000, "화곡동:hwagok 등촌동:deungchon 마곡동:magok", "화곡로 강서로 공항대로 등촌로"
    ),
    "노원구": _d(
        _SEOUL, "노원구", 7_000_000, "상계동:sanggye 중계동:junggye 공릉동:gongneung", "동일로 한글비석로 노원로 상계로"
    ),
}

_GYEONGGI_DISTRICTS = (
    _d(
        _GYEONGGI,
        "성남시 분당구",
        8_000_000,
        "정자동:jeongja 서현동:seohyeon 야탑동:yatap",
        "정자일로 황새울로 성남대로",
        2000,
    ),
    _d(_GYEONGGI, "수원시 영통구", 7_500_000, "영통동:yeongtong 매탄동:maetan", "영통로 봉영로 매탄로", 2000),
    _d(_GYEONGGI, "용인시 수지구", 7_000_000, "풍덕천동:pungdeokcheon 죽전동:jukjeon", "수지로 포은대로 죽전로", 2000),
    _d(_GYEONGGI, "고양시 일산동구", 7_000_000, "장항동:janghang 백석동:baekseok", "중앙로 일산로 장백로", 2000),
    _d(_GYEONGGI, "화성시", 6_000_000, "반송동:bansong 능동:neung", "동탄대로 노작로 동탄순환대로", 2500),
    _d(_GYEONGGI, "남양주시", 6_000_000, "다산동:dasan 별내동:byeollae", "다산중앙로 별내중앙로 경춘로", 2500),
)

_INCHEON_DISTRICTS = (
    _d(_INCHEON, "연수구", 6_000_000, "송도동:songdo 연수동:yeonsu", "컨벤시아대로 송도과학로 원인재로", 2000),
    _d(_INCHEON, "부평구", 5_500_000, "부평동:bupyeong 산곡동:sangok", "부평대로 경원대로 길주로", 2000),
    _d(_INCHEON, "남동구", 5_200_000, "구월동:guwol 만수동:mansu", "인하로 남동대로 예술로", 2000),
    _d(_INCHEON, "서구", 5_000_000, "청라동:cheongna 가정동:gajeong", "청라대로 봉오대로 가정로", 2500),
)

_BUSAN_DISTRICTS = (
    _d(_BUSAN, "해운대구", 7_000_000, "우동:udong 중동:jungdong 좌동:jwadong", "해운대로 센텀중앙로 달맞이길", 2000),
    _d(_BUSAN, "부산진구", 4_000_000, "부전동:bujeon 전포동:jeonpo", "중앙대로 가야대로 서전로", 2000),
)

_OTHER_DISTRICTS = (
    _d("대전광역시", "유성구", 4_000_000, "봉명동:bongmyeong 궁동:gungdong", "대학로 유성대로 온천로", 3000),
    _d("대구광역시", "수성구", 4_000_000, "범어동:beomeo 만촌동:manchon", "달구벌대로 동대구로 범어로", 3000),
    _d("광주광역시", "서구", 4_000_000, "치평동:chipyeong 화정동:hwajeong", "상무중앙로 상무대로 화정로", 3000),
    _d("울산광역시", "남구", 4_000_000, "삼산동:samsan 달동:daldong", "삼산로 번영로 돋질로", 3000),
    _d("충청북도", "청주시 흥덕구", 4_000_000, "복대동:bokdae 가경동:gagyeong", "직지대로 풍산로 가경로", 3000),
    _d("강원특별자치도", "춘천시", 4_000_000, "석사동:seoksa 퇴계동:toegye", "석사로 영서로 퇴계로", 3000),
    _d("전북특별자치도", "전주시 완산구", 4_000_000, "효자동:hyoja 서신동:seosin", "효자로 홍산로 서신로", 3000),
)

# Where projects after the ten Seoul cases come from: (weight, districts).
_REGIONS: tuple[tuple[float, tuple[_District, ...]], ...] = (
    (0.45, tuple(_SEOUL_DISTRICTS.values())),
    (0.25, _GYEONGGI_DISTRICTS),
    (0.10, _INCHEON_DISTRICTS),
    (0.08, _BUSAN_DISTRICTS),
    (0.12, _OTHER_DISTRICTS),
)


@dataclass(frozen=True)
class _Case:
    sigungu: str
    dong: str
    land_area_sqm: float
    supply_type: str
    zone: Zone


# The ten realistic Seoul cases from the domain notes, always the first ten samples.
_SEOUL_CASES = (
    _Case("강남구", "역삼동", 1650.0, "youth", Zone.RESIDENTIAL_3),
    _Case("마포구", "공덕동", 2145.0, "newlywed", Zone.RESIDENTIAL_2),
    _Case("송파구", "잠실동", 2640.0, "mixed", Zone.RESIDENTIAL_3),
    _Case("서초구", "서초동", 1485.0, "youth", Zone.SEMI_RESIDENTIAL),
    _Case("용산구", "한강로동", 1980.0, "happy", Zone.SEMI_RESIDENTIAL),
    _Case("성동구", "성수동", 1320.0, "youth", Zone.SEMI_INDUSTRIAL),
    _Case("영등포구", "여의도동", 2310.0, "newlywed", Zone.RESIDENTIAL_3),
    _Case("광진구", "자양동", 1155.0, "youth", Zone.RESIDENTIAL_2),
    _Case("노원구", "상계동", 2970.0, "general", Zone.RESIDENTIAL_2),
    _Case("강서구", "화곡동", 1815.0, "happy", Zone.RESIDENTIAL_1),
)

_ZONE_WEIGHTS = (
    (Zone.RESIDENTIAL_1, 0.10),
    (Zone.RESIDENTIAL_2, 0.40),
    (Zone.RESIDENTIAL_3, 0.28),
    (Zone.SEMI_RESIDENTIAL, 0.14),
    (Zone.SEMI_INDUSTRIAL, 0.08),
)
_SUPPLY_TYPES = ("youth", "newlywed", "mixed", "happy", "general", "multichild", "senior")
_ROAD_WIDTHS_M = (4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0)
_ROAD_WIDTH_WEIGHTS = (3, 8, 10, 12, 12, 10, 8, 6, 4, 2, 1)

# Typical household shares around a site (low, high) per group, and how a site's leaning shifts them.
_DEMOGRAPHIC_RANGES = {
    "youth": (0.15, 0.35),
    "newlywed": (0.08, 0.20),
    "multichild": (0.03, 0.10),
    "senior": (0.10, 0.25),
}
_DEMOGRAPHIC_BOOST = {
    "youth": {"youth": 0.12},
    "newlywed": {"newlywed": 0.08},
    "mixed": {"youth": 0.04, "newlywed": 0.04},
    "happy": {"youth": 0.06, "newlywed": 0.05},
    "general": {"multichild": 0.04, "senior": 0.05},
    "multichild": {"multichild": 0.07},
    "senior": {"senior": 0.10},
}


def sample_project(index: int, seed: int = 0, params: SampleParams = SampleParams()) -> dict[str, Any]:
    """The raw JSON dict of sample project ``index`` (0-based); depends only on ``index`` and ``seed``."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = random.Random(f"{seed}:{index}")
    if index < len(_SEOUL_CASES):
        case = _SEOUL_CASES[index]
        district = _SEOUL_DISTRICTS[case.sigungu]
        dong = next(d for d in district.dongs if d.name == case.dong)
        land_area_sqm = case.land_area_sqm
        zone = case.zone
        leaning = case.supply_type
    else:
        districts = rng.choices([group for _, group in _REGIONS], weights=[w for w, _ in _REGIONS])[0]
        district = rng.choice(districts)
        dong = rng.choice(district.dongs)
        land_area_sqm = round(
            rng.triangular(params.land_area_min_sqm, params.land_area_max_sqm, params.land_area_mode_sqm), 1
        )
        zone = rng.choices([z for z, _ in _ZONE_WEIGHTS], weights=[w for _, w in _ZONE_WEIGHTS])[0]
        leaning = rng.choice(_SUPPLY_TYPES)

    spread = params.local_price_spread
    local_price = district.base_price_per_sqm_krw * rng.uniform(1 - spread, 1 + spread)
    official_share = rng.uniform(params.official_price_share_min, params.official_price_share_max)
    official_price = max(1000, round(local_price * official_share, -3))

    road = rng.choice(district.roads)
    if rng.random() < 0.4:
        road = f"{road}{rng.randint(1, 60)}길"
    road_address = f"{district.sido} {district.sigungu} {road} {rng.randint(1, 420)}"
    lot = str(rng.randint(1, 999))
    if rng.random() < 0.6:
        lot = f"{lot}-{rng.randint(1, 80)}"
    jibun_address = f"{district.sido} {district.sigungu} {dong.name} {lot}"

    return {
        "id": f"p{index + 1:04d}-{dong.slug}",
        "road_address": road_address,
        "jibun_address": jibun_address,
        "sido": district.sido,
        "sigungu": district.sigungu,
        "dong": dong.name,
        "land_area_sqm": land_area_sqm,
        "zone_type": zone.value,
        "official_price_per_sqm": int(official_price),
        "road_width_m": rng.choices(_ROAD_WIDTHS_M, weights=_ROAD_WIDTH_WEIGHTS)[0],
        "corner_lot": rng.random() < params.corner_lot_share,
        "subway_distance_m": float(round(rng.uniform(80, district.subway_distance_max_m), -1)),
        "transactions": _transactions(rng, params, local_price, land_area_sqm, zone),
        "demographics": _demographics(rng, leaning),
    }


def _transactions(
    rng: random.Random, params: SampleParams, local_price: float, land_area_sqm: float, zone: Zone
) -> list[dict[str, Any]]:
    count = rng.randint(params.min_transactions, params.max_transactions)
    other_zones = [z for z in Zone if z is not zone]
    sales: list[dict[str, Any]] = []
    for _ in range(count):
        days_before = rng.randint(1, params.transaction_window_days)
        sale_date = params.valuation_date - dt.timedelta(days=days_before)
        months_before = days_before / 30.4
        # Older sales were cheaper by the monthly land price change; then scatter around the local price.
        unit_price = local_price * (1 + params.monthly_price_change) ** -months_before
        unit_price *= rng.lognormvariate(0.0, params.transaction_price_sigma)
        area_sqm = round(max(120.0, land_area_sqm * rng.uniform(0.35, 1.8)), 1)
        sales.append(
            {
                "date": sale_date.isoformat(),
                "area_sqm": area_sqm,
                "price_krw": int(round(unit_price * area_sqm, -5)),
                "distance_m": float(round(rng.uniform(40, 1500))),
                "zone_type": (zone if rng.random() < 0.7 else rng.choice(other_zones)).value,
            }
        )
    sales.sort(key=lambda sale: sale["date"], reverse=True)
    return sales


def _demographics(rng: random.Random, leaning: str) -> dict[str, float]:
    boost = _DEMOGRAPHIC_BOOST.get(leaning, {})
    shares = {}
    for group in DEMOGRAPHIC_GROUPS:
        low, high = _DEMOGRAPHIC_RANGES[group]
        shares[group] = rng.uniform(low, high) + boost.get(group, 0.0)
    total = sum(shares.values())
    if total > 0.95:  # the groups are part of all households, never more than all of them
        shares = {group: share * 0.95 / total for group, share in shares.items()}
    return {group: round(share, 3) for group, share in shares.items()}


def iter_sample_projects(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n`` sample projects lazily (O(1) memory); the same sequence as :func:`sample_projects`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for index in range(n):
        yield sample_project(index, seed)


def sample_projects(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` varied, valid, deterministic sample projects as raw JSON dicts; the first ten are the Seoul cases."""
    return list(iter_sample_projects(n, seed))
