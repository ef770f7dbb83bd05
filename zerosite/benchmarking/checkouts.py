"""Other checkouts of zerosite, measured side by side with this one by the scripts in ``bench/``: each runs its
own code in its own virtual environment (``.venv``), in a process of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["python_of", "pythons"]


def python_of(checkout: str | Path) -> str:
    """The Python of ``checkout``'s virtual environment; a clear exit where it has none."""
    python = Path(checkout) / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no virtual environment at {python}")
    return str(python)


def pythons(checkouts: Iterable[str]) -> dict[str, str]:
    """``{"this": this interpreter, checkout: its Python, ...}``, in that order (``--tree``)."""
    return {"this": sys.executable, **{str(checkout): python_of(checkout) for checkout in checkouts}}
