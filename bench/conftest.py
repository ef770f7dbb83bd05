"""Benchmarks run on their own path (``pytest bench/``) with the ZeroSite harness plugin."""

from __future__ import annotations

from importlib.metadata import entry_points

# The plugin is normally loaded through its pytest11 entry point; from a bare checkout, load it here.
if not any(ep.value == "zerosite.benchmarking.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["zerosite.benchmarking.plugin"]
