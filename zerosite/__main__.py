"""``python -m zerosite``: the same as the ``zerosite`` command."""

from zerosite.cli import run

run()
