"""docs/contracts.md is generated from the result types of the built-in modules and cannot drift from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from zerosite.contracts import ContractError, builtin_modules, render_contracts, result_type
from zerosite.fields import described
from zerosite.types import ReportModule

CONTRACTS = Path(__file__).resolve().parents[1] / "docs" / "contracts.md"


def test_the_committed_contracts_are_the_generated_ones(fresh_plugins: None) -> None:
    expected = render_contracts(builtin_modules())
    assert CONTRACTS.read_text(encoding="utf-8") == expected, (
        "docs/contracts.md is stale: run `python -m zerosite.contracts > docs/contracts.md`"
    )


def test_every_built_in_result_and_nested_type_is_listed(fresh_plugins: None) -> None:
    text = CONTRACTS.read_text(encoding="utf-8")
    modules = builtin_modules()
    assert [m.name for m in modules] == ["M2", "M3", "M4", "M5", "M6"]
    for name in ("Appraisal", "CaseAdjustment", "BuildingScale", "FloorPlan", "Feasibility", "ScoreItem", "ZoneLimit"):
        assert f"`{name}`" in text
    assert "| `parking_required` | `int` | spaces | Legal minimum parking spaces |" in text
    assert "| `parking_met` | `bool` | - | *Derived:* Whether the parking provided meets the legal minimum. |" in text
    assert all(dataclasses.is_dataclass(result_type(m)) for m in modules)


@dataclasses.dataclass(frozen=True)
class Documented:
    """A result with one documented field."""

    spaces: int = dataclasses.field(metadata=described("spaces", "Parking spaces"))


@dataclasses.dataclass(frozen=True)
class Undocumented:
    """A result whose field says nothing."""

    spaces: int


def _module(returns: type) -> ReportModule:
    def compute(project: object, deps: object) -> object:
        return returns(spaces=1)

    compute.__annotations__["return"] = returns
    return ReportModule(name="X1", title="시험", compute=compute, template="x1.html.j2")


def test_a_field_without_unit_and_meaning_is_refused() -> None:
    assert "| `spaces` | `int` | spaces | Parking spaces |" in render_contracts([_module(Documented)])
    with pytest.raises(ContractError, match=r"Undocumented\.spaces: no unit and meaning"):
        render_contracts([_module(Undocumented)])


def test_a_result_that_is_not_a_dataclass_is_refused() -> None:
    with pytest.raises(ContractError, match="module X1: compute must declare a dataclass return type"):
        result_type(_module(dict))


def test_a_meaning_is_one_line() -> None:
    with pytest.raises(ValueError, match="one non-empty line"):
        described("m", "two\nlines")
