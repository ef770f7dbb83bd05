"""The dask strategy, a plugin: batches on a Dask cluster, local or on many machines (``zerosite[dask]``)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from zerosite import hookimpl
from zerosite.types import Runner, Strategy, StrategyOptions, WorkerConfig

__all__ = ["SCHEDULER_ENV", "DaskStrategy", "scheduler_address"]

SCHEDULER_ENV = "ZEROSITE_DASK_SCHEDULER"
"""The scheduler to use when ``--scheduler`` is not given."""


def scheduler_address(scheduler: str | None) -> str | None:
    """The address of the Dask scheduler a batch uses (``scheduler``, else ``$ZEROSITE_DASK_SCHEDULER``), or
    ``None``: a local cluster, started for the batch."""
    return scheduler or os.environ.get(SCHEDULER_ENV) or None


class DaskStrategy(Strategy):
    name = "dask"
    batches_only = True
    description = (
        "Dask distributed: a local cluster of --workers processes, or the machines of --scheduler ADDRESS; "
        "chunks sized from measured costs."
    )

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("distributed") is None:
            return "needs Dask distributed: pip install 'zerosite[dask]'"
        return None

    def start(self, config: WorkerConfig, options: StrategyOptions) -> Runner:
        from zerosite.dask_strategy.runner import DaskRunner  # Dask only when the strategy runs: a fast start-up

        return DaskRunner(config, options)


@hookimpl
def zerosite_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(DaskStrategy())
