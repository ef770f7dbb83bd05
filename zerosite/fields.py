"""The unit and meaning of each field of a module's result, kept in the field's dataclass metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["METADATA_KEY", "FieldDoc", "described", "field_doc"]

METADATA_KEY = "zerosite"
"""The key of :class:`FieldDoc` in ``dataclasses.Field.metadata``."""


@dataclass(frozen=True)
class FieldDoc:
    """What a result field holds: its unit (``""`` for none) and a one-line meaning."""

    unit: str
    meaning: str

    def __post_init__(self) -> None:
        if not self.meaning.strip() or "\n" in self.meaning:
            raise ValueError(f"a field's meaning is one non-empty line, got {self.meaning!r}")


def described(unit: str, meaning: str) -> Mapping[str, FieldDoc]:
    """Field metadata saying a field's unit and meaning.

    Example::

        total_value_krw: int = field(metadata=described("KRW", "Appraised land value"))
    """
    return MappingProxyType({METADATA_KEY: FieldDoc(unit, meaning)})


def field_doc(field: dataclasses.Field[object]) -> FieldDoc | None:
    """The :class:`FieldDoc` given with :func:`described`, or None when the field has none."""
    found = field.metadata.get(METADATA_KEY)
    return found if isinstance(found, FieldDoc) else None
