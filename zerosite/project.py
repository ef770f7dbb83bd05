"""Project input (M1): typed parcel facts, validated field by field, loaded lazily from JSON or JSON Lines."""

from __future__ import annotations

import datetime as dt
import enum
import io
import json
import math
import re
import stat
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from zerosite.pickled import PickledByFields

__all__ = [
    "DEMOGRAPHIC_GROUPS",
    "LIMITS",
    "SQM_PER_PYEONG",
    "STDIN",
    "Demographics",
    "FieldLimits",
    "InvalidInput",
    "Project",
    "RepeatedKeys",
    "Transaction",
    "UnreadableRecord",
    "Zone",
    "iter_raw_projects",
    "json_object",
    "load_json",
    "parse_batch",
    "parse_project",
    "printable",
    "printable_json",
    "project_to_dict",
    "records_from_text",
    "validate_batch",
    "validate_project",
]

SQM_PER_PYEONG = 3.305785
DEMOGRAPHIC_GROUPS = ("youth", "newlywed", "multichild", "senior")
_ID_MAX_CHARS = 128
# Used with fullmatch: "$" would let "id\n" through.
_SLUG = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{_ID_MAX_CHARS - 1}}}")
_SLUG_CHARACTERS = re.compile(r"[A-Za-z0-9._-]+")
STDIN = Path("-")
"""The ``--projects`` path that means standard input."""


@dataclass(frozen=True)
class FieldLimits:
    """The sane range of each number in a project. A value outside is a typo or an attack: it is rejected by
    validation, so that no report divides by an area of 1e-300 or overflows on a price of 1e300."""

    land_area_min_sqm: float = 1.0
    land_area_max_sqm: float = 10_000_000.0  # 10 km²; the programme's parcels are 100 to 10,000 ㎡
    price_per_sqm_max_krw: int = 1_000_000_000  # the dearest land in Korea is about 200,000,000 KRW/㎡
    road_width_max_m: float = 1_000.0
    distance_max_m: float = 1_000_000.0  # 1,000 km: anywhere in Korea
    transaction_area_min_sqm: float = 1.0
    transaction_area_max_sqm: float = 10_000_000.0
    transaction_price_max_krw: int = 10**14  # 100조원
    earliest_date: dt.date = dt.date(1900, 1, 1)
    latest_date: dt.date = dt.date(2100, 12, 31)
    transactions_max: int = 10_000
    text_max_chars: int = 1_000  # an address runs to 100 or so; one of 35 million went into every report, 1.1 GB


LIMITS = FieldLimits()


class Zone(enum.StrEnum):
    """Use districts (용도지역) that the purchase-rental programme builds in."""

    RESIDENTIAL_1 = "제1종일반주거지역"
    RESIDENTIAL_2 = "제2종일반주거지역"
    RESIDENTIAL_3 = "제3종일반주거지역"
    SEMI_RESIDENTIAL = "준주거지역"
    SEMI_INDUSTRIAL = "준공업지역"


@dataclass(frozen=True, slots=True)
class Transaction(PickledByFields):
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
class Demographics(PickledByFields):
    """Shares in [0, 1] of the households around the site, by target group."""

    youth: float
    newlywed: float
    multichild: float
    senior: float

    def share(self, group: str) -> float:
        return float(getattr(self, group))


@dataclass(frozen=True, slots=True)
class Project(PickledByFields):
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


@dataclass(frozen=True)
class UnreadableRecord:
    """A JSON Lines line that is not JSON, in place of its project: :func:`parse_project` rejects it with
    ``errors``, so that a bad line is one invalid project (which ``--skip-invalid`` skips), not a bad file."""

    errors: list[str]


class _Checker:
    """Collects every problem in one record instead of stopping at the first; each is named ``where.path`` (the
    bare ``path`` when ``where`` is empty)."""

    def __init__(self, where: str) -> None:
        self.prefix = f"{where}." if where else ""
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{self.prefix}{path}: {message}")

    def repeated(self, raw: Mapping[str, Any], path: str) -> None:
        """Name each key that the JSON object ``raw`` gave more than once (``path`` + key): ambiguous input."""
        if type(raw) is not RepeatedKeys:  # nearly always (this runs for every object of every project)
            return
        for key, times in raw.repeated.items():
            self.fail(f"{path}{printable(key)}", "given twice" if times == 2 else f"given {times} times")

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        *,
        minimum: float,
        strict: bool,
        low: float | None = None,
        high: float | None = None,
    ) -> float:
        """A finite number above ``minimum`` (``> minimum`` when ``strict``), then within ``[low, high]``;
        ``nan`` when it is not (so that no later check runs on it). ``-0.0`` becomes ``0.0``."""
        if key not in raw:
            self.fail(path, "missing")
            return math.nan
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"must be a number, got {_show(value)}")
            return math.nan
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"must be finite, got {value}")
            return math.nan
        if (value <= minimum) if strict else (value < minimum):
            self.fail(path, f"must be {'>' if strict else '>='} {minimum:g}, got {_number(value)}")
            return math.nan
        if low is not None and value < low:
            self.fail(path, f"must be >= {_limit(low)}, got {_number(value)}")
            return math.nan
        if high is not None and value > high:
            self.fail(path, f"must be <= {_limit(high)}, got {_number(value)}")
            return math.nan
        if value > sys.float_info.max:  # an int such as 10**400, which has no float
            self.fail(path, f"must be finite, got {_number(value)}")
            return math.nan
        return float(value) + 0.0  # + 0.0 turns -0.0 into 0.0, which would show as "-0"

    def integer(self, raw: Mapping[str, Any], key: str, path: str, *, high: int) -> int:
        value = self.number(raw, key, path, minimum=0, strict=True, high=high)
        if math.isfinite(value) and value != int(value):
            self.fail(path, f"must be a whole number of won, got {value:g}")
        return int(value) if math.isfinite(value) else 0

    def text(self, raw: Mapping[str, Any], key: str, path: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str):
            self.fail(path, "missing" if key not in raw else f"must be a string, got {_show(value)}")
            return ""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate ("\udc80"): no file or index can hold it
            self.fail(path, f"not valid text (lone surrogate at position {error.start})")
            return ""
        reordering = _BIDI_CONTROL.search(value)
        if reordering is not None:  # a browser would show "로사은봉 4321" as "봉은사로 1234": another address
            where, code = reordering.start(), f"U+{ord(reordering.group()):04X}"
            self.fail(
                path,
                f"holds a bidirectional control character ({code}) at position {where}, which reorders the text shown",
            )
            return ""
        if len(value) > LIMITS.text_max_chars:
            self.fail(path, f"must be at most {LIMITS.text_max_chars:,} characters, got {len(value):,}")
            return ""
        control = _CONTROL.search(value)
        if control is not None:  # a NUL, a line break, an escape: nothing an address holds, raw in every report
            what = "line or paragraph separator" if control.group() in "\u2028\u2029" else "control character"
            self.fail(path, f"holds a {what} (U+{ord(control.group()):04X}) at position {control.start()}")
            return ""
        if not value.strip():
            self.fail(path, "must not be empty")
        return value

    def zone(self, raw: Mapping[str, Any], key: str, path: str) -> Zone:
        if key not in raw:
            self.fail(path, "missing")
            return Zone.RESIDENTIAL_2
        value: Any = raw.get(key)
        try:
            return Zone(value)
        except (ValueError, TypeError):
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
                day = dt.date.fromisoformat(value)
            except ValueError:
                pass
            else:
                if LIMITS.earliest_date <= day <= LIMITS.latest_date:
                    return day
                self.fail(path, f"must be between {LIMITS.earliest_date} and {LIMITS.latest_date}, got {day}")
                return dt.date(2000, 1, 1)
        self.fail(path, f"must be a date as YYYY-MM-DD, got {_show(value)}")
        return dt.date(2000, 1, 1)


def _limit(value: float) -> str:
    """A bound for a message: 10000000.0 -> '10,000,000', 0.5 -> '0.5'."""
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


def _number(value: int | float) -> str:
    """A number for a message; an int too large for a float is described by its length."""
    try:
        return f"{value:g}"
    except OverflowError:
        return f"an integer of {int(math.log10(abs(value))) + 1} digits"


def _show(value: Any) -> str:
    """A value for a message: JSON, at most 60 characters, with no character that could drive a terminal."""
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = _number(value) if abs(value) >= 10**16 else str(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):  # an int of 5,000 digits, a cycle, a non-JSON object
            text = f"a {type(value).__name__}"
    text = printable(text)
    return text if len(text) <= 60 else text[:57] + "..."


_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_BIDI_CONTROL = re.compile(f"[{''.join(sorted(_BIDI_CONTROLS))}]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters (C0, DEL, C1: Unicode's category Cc) and the line and paragraph separators: refused in text."""


def printable(text: str) -> str:
    """``text`` with every control character, lone surrogate, line separator and bidirectional control
    written as a Python escape (``\\x1b``, ``\\udc80``), so that text from input printed on a terminal
    shows as what it is and cannot move the cursor, recolour the screen or reorder a line."""
    if text.isprintable():
        return text
    return "".join(char.encode("unicode_escape").decode("ascii") if _acts(char) else char for char in text)


def printable_json(document: str) -> str:
    """``document``, JSON text, with the characters :func:`printable` escapes written as JSON escapes (``\\u009b``)
    instead: the same JSON, which ``ensure_ascii=False`` leaves readable in Korean, but nothing in it (a C1 control
    such as ``U+009B``, a bidirectional control) acts on a terminal. JSON itself escapes the other controls in its
    strings; outside them it holds only whitespace, whose newlines stay."""
    if document.isprintable():
        return document
    return "".join(f"\\u{ord(char):04x}" if char != "\n" and _acts(char) else char for char in document)


def _acts(char: str) -> bool:
    """Whether ``char`` acts on a terminal, or hides what follows: a control, a lone surrogate, a line or paragraph
    separator, a bidirectional control."""
    return char in _BIDI_CONTROLS or unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"}


_WINDOWS_DEVICE = re.compile(r"(?i)(?:con|prn|aux|nul|com[1-9]|lpt[1-9])(?:\..*)?")
"""Names Windows keeps for devices, with any extension: a project's folder so named cannot be made on Windows or a
Samba share."""


def _slug_rule_broken(project_id: str) -> str:
    """Which rule of a project id (it names the project's folder) ``project_id`` breaks, said as the rule."""
    if not _SLUG_CHARACTERS.fullmatch(project_id):
        return "must be a slug: ASCII letters, digits, '.', '_' or '-' only"
    if not project_id[0].isalnum():
        return "must start with a letter or digit"
    return f"must be at most {_ID_MAX_CHARS} characters, not {len(project_id)}"


def parse_project(raw: Any, where: str = "project") -> Project:
    """Turn one JSON object into a :class:`Project`, or raise :class:`InvalidInput` naming every bad field."""
    if isinstance(raw, UnreadableRecord):
        raise InvalidInput(raw.errors)
    if not isinstance(raw, Mapping):
        raise InvalidInput([f"{where}: must be an object, got {_show(raw)}"])
    c = _Checker(where)
    c.repeated(raw, "")
    project_id = c.text(raw, "id", "id")
    if project_id and not _SLUG.fullmatch(project_id):
        c.fail("id", f"{_slug_rule_broken(project_id)}, got {_show(project_id)}")
    elif project_id and _WINDOWS_DEVICE.fullmatch(project_id):
        c.fail(
            "id",
            f"names a device on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9): no folder can take it there, got "
            f"{_show(project_id)}",
        )
    transactions = []
    raw_transactions = raw.get("transactions", [])
    if not isinstance(raw_transactions, list):
        c.fail("transactions", f"must be a list, got {_show(raw_transactions)}")
        raw_transactions = []
    if len(raw_transactions) > LIMITS.transactions_max:
        c.fail("transactions", f"at most {LIMITS.transactions_max:,} comparable sales, got {len(raw_transactions):,}")
        raw_transactions = []
    for i, t in enumerate(raw_transactions):
        path = f"transactions[{i}]"
        if not isinstance(t, Mapping):
            c.fail(path, f"must be an object, got {_show(t)}")
            continue
        c.repeated(t, f"{path}.")
        transactions.append(
            Transaction(
                date=c.date(t, "date", f"{path}.date"),
                area_sqm=c.number(
                    t,
                    "area_sqm",
                    f"{path}.area_sqm",
                    minimum=0,
                    strict=True,
                    low=LIMITS.transaction_area_min_sqm,
                    high=LIMITS.transaction_area_max_sqm,
                ),
                price_krw=c.integer(t, "price_krw", f"{path}.price_krw", high=LIMITS.transaction_price_max_krw),
                distance_m=c.number(
                    t, "distance_m", f"{path}.distance_m", minimum=0, strict=False, high=LIMITS.distance_max_m
                ),
                zone_type=c.zone(t, "zone_type", f"{path}.zone_type"),
            )
        )
    raw_demo = raw.get("demographics")
    shares = {}
    given = isinstance(raw_demo, Mapping)  # an empty object is given, its groups missing
    if not isinstance(raw_demo, Mapping):
        c.fail("demographics", "missing" if raw_demo is None else f"must be an object, got {_show(raw_demo)}")
        raw_demo = {}
    c.repeated(raw_demo, "demographics.")
    for group in DEMOGRAPHIC_GROUPS:
        share = c.number(raw_demo, group, f"demographics.{group}", minimum=0, strict=False) if given else 0.0
        if math.isfinite(share) and share > 1:
            c.fail(f"demographics.{group}", f"must be a share in [0, 1], got {share:g}")
        shares[group] = share
    for key in sorted({str(k) for k in raw_demo} - set(DEMOGRAPHIC_GROUPS)):
        c.fail(f"demographics.{printable(key)}", f"unknown group; expected {', '.join(DEMOGRAPHIC_GROUPS)}")
    project = Project(
        id=project_id,
        road_address=c.text(raw, "road_address", "road_address"),
        jibun_address=c.text(raw, "jibun_address", "jibun_address"),
        sido=c.text(raw, "sido", "sido"),
        sigungu=c.text(raw, "sigungu", "sigungu"),
        dong=c.text(raw, "dong", "dong"),
        land_area_sqm=c.number(
            raw,
            "land_area_sqm",
            "land_area_sqm",
            minimum=0,
            strict=True,
            low=LIMITS.land_area_min_sqm,
            high=LIMITS.land_area_max_sqm,
        ),
        zone_type=c.zone(raw, "zone_type", "zone_type"),
        official_price_per_sqm=c.integer(
            raw, "official_price_per_sqm", "official_price_per_sqm", high=LIMITS.price_per_sqm_max_krw
        ),
        road_width_m=c.number(
            raw, "road_width_m", "road_width_m", minimum=0, strict=False, high=LIMITS.road_width_max_m
        ),
        corner_lot=c.boolean(raw, "corner_lot", "corner_lot"),
        subway_distance_m=c.number(
            raw, "subway_distance_m", "subway_distance_m", minimum=0, strict=False, high=LIMITS.distance_max_m
        ),
        transactions=tuple(transactions),
        demographics=Demographics(**shares),
    )
    if c.errors:
        raise InvalidInput(c.errors)
    return project


def validate_project(project: Project, where: str = "") -> Project:
    """``project``, made by code rather than read from a file (a data source's answer), put through the checks
    and limits of :func:`parse_project` as the record a file would hold: the Project that record parses to
    (every field normalized, as from a file), or :class:`InvalidInput` naming each bad field.
    A field of the wrong type (a ``dict`` for the demographics, a ``str`` for a number) is named, never raised on.
    """
    return parse_project(project_to_dict(project), where)


def project_to_dict(project: Project) -> dict[str, Any]:
    """The JSON form of a project, as :func:`parse_project` reads it back: dataclasses as mappings, dates as ISO
    text, zones as their names. A value of another type (a data source's answer) is left as it is, for
    :func:`parse_project` to name."""
    record: dict[str, Any] = _fields_of(project)
    record["zone_type"] = _plain(record["zone_type"])
    transactions = record["transactions"]
    if isinstance(transactions, tuple | list):
        record["transactions"] = [_transaction_record(t) for t in transactions]
    record["demographics"] = _fields_of(record["demographics"])
    return record


def _transaction_record(transaction: Any) -> Any:
    record = _fields_of(transaction)
    if isinstance(record, dict):
        if isinstance(record.get("date"), dt.date):
            record["date"] = record["date"].isoformat()
        if "zone_type" in record:
            record["zone_type"] = _plain(record["zone_type"])
    return record


def _fields_of(value: Any) -> Any:
    """A dataclass instance as a mapping of its fields (not deep, unlike ``asdict``); anything else as it is."""
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in fields(value)}
    return value


def _plain(value: Any) -> Any:
    """An enum member as its value (``Zone.RESIDENTIAL_2`` -> ``"제2종일반주거지역"``); anything else as it is."""
    return value.value if isinstance(value, enum.Enum) else value


def iter_raw_projects(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(location, raw_object)`` from a JSON list or a JSON Lines file; JSON Lines is read lazily.

    The input is read exactly once, so ``path`` may be a pipe: :data:`STDIN` (``-``) is standard input,
    and ``/dev/stdin`` or a FIFO work too. A stream is JSON Lines unless it starts with ``[`` or is a
    ``{"projects": [...]}`` document; a regular file is JSON Lines when named ``*.jsonl`` or ``*.ndjson``.
    The text is UTF-8; a byte-order mark at its start is skipped (``utf-8-sig``).

    :raises InvalidInput: the input cannot be read or is not JSON (with the line where it can say); in JSON Lines
        a line that is not JSON comes as an :class:`UnreadableRecord` instead, one invalid project.
    """
    name = "<stdin>" if path == STDIN else path.name
    try:
        if path.suffix in {".jsonl", ".ndjson"}:
            with path.open(encoding="utf-8-sig") as lines:
                yield from _json_lines(name, lines)
            return
        if path == STDIN or not _is_regular_file(path):
            yield from _stream_projects(name, path)
            return
        with path.open(encoding="utf-8-sig") as handle:
            data = load_json(name, handle.read())
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput([f"{name if path == STDIN else path}: cannot read: {error}"]) from None
    yield from _listed_projects(name, data)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return True  # opening it says what is wrong


def _stream_projects(name: str, path: Path) -> Iterator[tuple[str, Any]]:
    """Read a pipe once, whole, then tell a JSON document from JSON Lines by its first character."""
    if path == STDIN:
        if sys.stdin is None:  # file descriptor 0 closed (``<&-``): Python has no stream for it
            raise InvalidInput([f"{name}: cannot read: standard input is closed"])
        text = sys.stdin.buffer.read().decode("utf-8-sig")
    else:
        with path.open(encoding="utf-8-sig") as handle:
            text = handle.read()
    yield from records_from_text(name, text)


def records_from_text(name: str, text: str) -> Iterator[tuple[str, Any]]:
    """``(location, raw project)`` from a whole text: a JSON list or ``{"projects": [...]}`` (``projects[i]``),
    else JSON Lines (``NAME:LINE``), told apart by the first character. A byte-order mark before it is skipped.

    :raises InvalidInput: text that is neither, named with ``name`` and where it fails (a JSON Lines line that is
        not JSON comes as an :class:`UnreadableRecord`).
    """
    text = text.removeprefix(_BOM)
    start = text.lstrip()[:1]
    if start == "[":
        yield from _listed_projects(name, load_json(name, text))
        return
    if start == "{":
        try:
            document = _DECODER.decode(text)
        except (ValueError, RecursionError):
            document = None  # more than one object: JSON Lines
        if isinstance(document, Mapping) and "projects" in document:
            yield from _listed_projects(name, document)
            return
    # Lines as a file's are read (universal newlines): str.splitlines also splits at U+2028, U+0085, ..., which a JSON
    # string may hold raw, so a file read from a pipe gave other lines, and errors, than the same file on disk.
    yield from _json_lines(name, io.StringIO(text, newline=None))


def _json_lines(name: str, lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            where = f"{name}:{number}"
            try:
                yield where, load_json(where, line, one_line=True)
            except InvalidInput as unreadable:
                yield where, UnreadableRecord(unreadable.errors)


class RepeatedKeys(dict[str, Any]):
    """A JSON object that gave some key more than once, as :func:`load_json` returns it: the last value of each
    key, as ``json.loads`` keeps it, and in ``repeated`` each key given more than once with how many times, for
    :func:`parse_project` to name (``projects[0].land_area_sqm: given twice``). An object without one is a plain
    ``dict``."""

    repeated: dict[str, int]


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a plain ``dict`` unless a key came twice (it runs for every object: kept short)."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    repeated = RepeatedKeys(obj)
    counts = Counter(key for key, _ in pairs)
    repeated.repeated = {key: times for key, times in counts.items() if times > 1}
    return repeated


_DECODER = json.JSONDecoder(object_pairs_hook=json_object)
_BOM = "\ufeff"
"""A UTF-8 byte-order mark, decoded: Windows tools start files with it. One is allowed at the start of the input."""


def load_json(where: str, text: str, *, one_line: bool = False) -> Any:
    """Parse JSON text; every way it can fail (syntax, nesting, a number too long) is :class:`InvalidInput`.

    A key given twice in an object is not a failure here: that object is a :class:`RepeatedKeys`, which
    :func:`parse_project` names. A byte-order mark is skipped at the start of a whole document, refused at the
    start of a line (``one_line``): there it is not at the start of the input.
    """
    if not one_line:
        text = text.removeprefix(_BOM)
    elif text.startswith(_BOM):
        raise InvalidInput([f"{where}: not valid JSON: a byte-order mark (U+FEFF) is allowed only at the start"])
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        at = "" if one_line else f":{error.lineno}:{error.colno}"
        raise InvalidInput([f"{where}{at}: not valid JSON: {error.msg}"]) from None
    except RecursionError:
        raise InvalidInput([f"{where}: not valid JSON: nested too deeply"]) from None
    except ValueError as error:  # an integer longer than sys.get_int_max_str_digits()
        limit = sys.get_int_max_str_digits()
        reason = f"a number has more than {limit} digits" if "digits" in str(error) else printable(str(error))
        raise InvalidInput([f"{where}: not valid JSON: {reason}"]) from None


def _listed_projects(name: str, data: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(data, RepeatedKeys) and "projects" in data.repeated:
        raise InvalidInput([f'{name}: "projects" given more than once; expected one list of projects'])
    if isinstance(data, Mapping) and "projects" in data:
        data = data["projects"]
    if not isinstance(data, list):
        raise InvalidInput([f"{name}: expected a JSON list of projects (or JSON Lines, one per line)"])
    for index, raw in enumerate(data):
        yield f"projects[{index}]", raw


def parse_batch(records: Iterable[tuple[str, Any]]) -> tuple[list[Project], list[str]]:
    """Parse a whole batch once: ``(valid projects in order, every error)``; a duplicate id is an error."""
    seen: dict[str, tuple[str, str]] = {}  # by the id casefolded: two folders that differ only in case are one on
    valid: list[Project] = []  # macOS and Windows, where the second project's reports would replace the first's
    errors: list[str] = []
    for where, raw in records:
        try:
            project = parse_project(raw, where)
        except InvalidInput as invalid:
            errors.extend(invalid.errors)
            continue
        first = seen.get(project.id.casefold())
        if first is not None:
            twin, at = first
            how = "" if twin == project.id else f", differing only in case from {twin!r}"
            errors.append(f"{where}.id: duplicate id {project.id!r} (first at {at}{how})")
            continue
        seen[project.id.casefold()] = (project.id, where)
        valid.append(project)
    return valid, errors


def validate_batch(records: Iterable[tuple[str, Any]]) -> tuple[list[str], list[str]]:
    """Check a whole batch: ``(valid ids in order, every error)``; duplicates are errors."""
    valid, errors = parse_batch(records)
    return [project.id for project in valid], errors
