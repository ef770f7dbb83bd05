"""Project input (M1): typed parcel facts, validated field by field, loaded lazily from JSON or JSON Lines."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEMOGRAPHIC_GROUPS",
    "SQM_PER_PYEONG",
    "Demographics",
    "InvalidInput",
    "Project",
    "Transaction",
    "Zone",
    "iter_raw_projects",
    "parse_batch",
    "parse_project",
    "project_to_dict",
    "validate_batch",
]

SQM_PER_PYEONG = 3.305785
DEMOGRAPHIC_GROUPS = ("youth", "newlywed", "multichild", "senior")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Zone(enum.StrEnum):
    """Use districts (용도지역) that the purchase-rental programme builds in."""

    RESIDENTIAL_1 = "제1종일반주거지역"
    RESIDENTIAL_2 = "제2종일반주거지역"
    RESIDENTIAL_3 = "제3종일반주거지역"
    SEMI_RESIDENTIAL = "준주거지역"
    SEMI_INDUSTRIAL = "준공업지역"


@dataclass(frozen=True, slots=True)
class Transaction:
    """A comparable land sale (거래사례)."""

    date: dt.date
    area_sqm: float
    price_krw: int
    distance_m: float
    zone_type: Zone

    @property
    def unit_price_krw(self) -> float:
        return self.price_krw / self.area_sqm


@dataclass(frozen=True, slots=True)
class Demographics:
    """Shares in [0, 1] of the households around the site, by target group."""

    youth: float
    newlywed: float
    multichild: float
    senior: float

    def share(self, group: str) -> float:
        return float(getattr(self, group))


@dataclass(frozen=True, slots=True)
class Project:
    """One candidate parcel: the input every report module starts from."""

    id: str
    road_address: str
    jibun_address: str
    sido: str
    sigungu: str
    dong: str
    land_area_sqm: float
    zone_type: Zone
    official_price_per_sqm: int
    road_width_m: float
    corner_lot: bool
    subway_distance_m: float
    transactions: tuple[Transaction, ...]
    demographics: Demographics


class InvalidInput(ValueError):
    """Input that cannot become projects; ``errors`` holds every problem with its location."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


class _Checker:
    """Collects every problem in one record instead of stopping at the first."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{self.where}.{path}: {message}")

    def number(self, raw: Mapping[str, Any], key: str, path: str, *, minimum: float, strict: bool) -> float:
        if key not in raw:
            self.fail(path, "missing")
            return math.nan
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"must be a number, got {_show(value)}")
            return math.nan
        if not math.isfinite(value):
            self.fail(path, f"must be finite, got {value}")
            return math.nan
        if (value <= minimum) if strict else (value < minimum):
            self.fail(path, f"must be {'>' if strict else '>='} {minimum:g}, got {value:g}")
        return float(value)

    def integer(self, raw: Mapping[str, Any], key: str, path: str) -> int:
        value = self.number(raw, key, path, minimum=0, strict=True)
        if math.isfinite(value) and value != int(value):
            self.fail(path, f"must be a whole number of won, got {value:g}")
        return int(value) if math.isfinite(value) else 0

    def text(self, raw: Mapping[str, Any], key: str, path: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str):
            self.fail(path, "missing" if key not in raw else f"must be a string, got {_show(value)}")
            return ""
        if not value.strip():
            self.fail(path, "must not be empty")
        return value

    def zone(self, raw: Mapping[str, Any], key: str, path: str) -> Zone:
        value: Any = raw.get(key)
        try:
            return Zone(value)
        except ValueError:
            known = ", ".join(z.value for z in Zone)
            self.fail(path, f"unknown zone {_show(value)}; expected one of {known}")
            return Zone.RESIDENTIAL_2

    def boolean(self, raw: Mapping[str, Any], key: str, path: str) -> bool:
        value = raw.get(key)
        if not isinstance(value, bool):
            self.fail(path, "missing" if key not in raw else f"must be true or false, got {_show(value)}")
            return False
        return value

    def date(self, raw: Mapping[str, Any], key: str, path: str) -> dt.date:
        value = raw.get(key)
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        self.fail(path, f"must be a date as YYYY-MM-DD, got {_show(value)}")
        return dt.date(2000, 1, 1)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_project(raw: Any, where: str = "project") -> Project:
    """Turn one JSON object into a :class:`Project`, or raise :class:`InvalidInput` naming every bad field."""
    if not isinstance(raw, Mapping):
        raise InvalidInput([f"{where}: must be an object, got {_show(raw)}"])
    c = _Checker(where)
    project_id = c.text(raw, "id", "id")
    if project_id and not _SLUG.match(project_id):
        c.fail("id", f"must be a slug of letters, digits, '.', '_' or '-', got {_show(project_id)}")
    transactions = []
    raw_transactions = raw.get("transactions", [])
    if not isinstance(raw_transactions, list):
        c.fail("transactions", f"must be a list, got {_show(raw_transactions)}")
        raw_transactions = []
    for i, t in enumerate(raw_transactions):
        path = f"transactions[{i}]"
        if not isinstance(t, Mapping):
            c.fail(path, f"must be an object, got {_show(t)}")
            continue
        transactions.append(
            Transaction(
                date=c.date(t, "date", f"{path}.date"),
                area_sqm=c.number(t, "area_sqm", f"{path}.area_sqm", minimum=0, strict=True),
                price_krw=c.integer(t, "price_krw", f"{path}.price_krw"),
                distance_m=c.number(t, "distance_m", f"{path}.distance_m", minimum=0, strict=False),
                zone_type=c.zone(t, "zone_type", f"{path}.zone_type"),
            )
        )
    raw_demo = raw.get("demographics")
    shares = {}
    if not isinstance(raw_demo, Mapping):
        c.fail("demographics", "missing" if raw_demo is None else f"must be an object, got {_show(raw_demo)}")
        raw_demo = {}
    for group in DEMOGRAPHIC_GROUPS:
        share = c.number(raw_demo, group, f"demographics.{group}", minimum=0, strict=False) if raw_demo else 0.0
        if math.isfinite(share) and share > 1:
            c.fail(f"demographics.{group}", f"must be a share in [0, 1], got {share:g}")
        shares[group] = share
    for key in sorted(set(raw_demo) - set(DEMOGRAPHIC_GROUPS)):
        c.fail(f"demographics.{key}", f"unknown group; expected {', '.join(DEMOGRAPHIC_GROUPS)}")
    project = Project(
        id=project_id,
        road_address=c.text(raw, "road_address", "road_address"),
        jibun_address=c.text(raw, "jibun_address", "jibun_address"),
        sido=c.text(raw, "sido", "sido"),
        sigungu=c.text(raw, "sigungu", "sigungu"),
        dong=c.text(raw, "dong", "dong"),
        land_area_sqm=c.number(raw, "land_area_sqm", "land_area_sqm", minimum=0, strict=True),
        zone_type=c.zone(raw, "zone_type", "zone_type"),
        official_price_per_sqm=c.integer(raw, "official_price_per_sqm", "official_price_per_sqm"),
        road_width_m=c.number(raw, "road_width_m", "road_width_m", minimum=0, strict=False),
        corner_lot=c.boolean(raw, "corner_lot", "corner_lot"),
        subway_distance_m=c.number(raw, "subway_distance_m", "subway_distance_m", minimum=0, strict=False),
        transactions=tuple(transactions),
        demographics=Demographics(**shares),
    )
    if c.errors:
        raise InvalidInput(c.errors)
    return project


def project_to_dict(project: Project) -> dict[str, Any]:
    """The JSON form of a project, as :func:`parse_project` reads it back."""
    data = asdict(project)
    data["zone_type"] = project.zone_type.value
    data["transactions"] = [
        {**asdict(t), "date": t.date.isoformat(), "zone_type": t.zone_type.value} for t in project.transactions
    ]
    return data


def iter_raw_projects(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(location, raw_object)`` from a JSON list or a JSON Lines file; JSON Lines is read lazily."""
    try:
        if path.suffix in {".jsonl", ".ndjson"}:
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        try:
                            yield f"{path.name}:{number}", json.loads(line)
                        except json.JSONDecodeError as error:
                            raise InvalidInput([f"{path.name}:{number}: not valid JSON: {error.msg}"]) from None
            return
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise InvalidInput([f"{path.name}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput([f"{path}: cannot read: {error}"]) from None
    if isinstance(data, Mapping) and "projects" in data:
        data = data["projects"]
    if not isinstance(data, list):
        raise InvalidInput([f"{path.name}: expected a JSON list of projects (or JSON Lines, one per line)"])
    for index, raw in enumerate(data):
        yield f"projects[{index}]", raw


def parse_batch(records: Iterable[tuple[str, Any]]) -> tuple[list[Project], list[str]]:
    """Parse a whole batch once: ``(valid projects in order, every error)``; a duplicate id is an error."""
    seen: dict[str, str] = {}
    valid: list[Project] = []
    errors: list[str] = []
    for where, raw in records:
        try:
            project = parse_project(raw, where)
        except InvalidInput as invalid:
            errors.extend(invalid.errors)
            continue
        if project.id in seen:
            errors.append(f"{where}.id: duplicate id {project.id!r} (first at {seen[project.id]})")
            continue
        seen[project.id] = where
        valid.append(project)
    return valid, errors


def validate_batch(records: Iterable[tuple[str, Any]]) -> tuple[list[str], list[str]]:
    """Check a whole batch: ``(valid ids in order, every error)``; duplicates are errors."""
    valid, errors = parse_batch(records)
    return [project.id for project in valid], errors
