"""The benchmark harness behind ``pytest bench/``: see docs/benchmarking.md for where each part lives.

Nothing is imported here: the pytest plugin (``zerosite.benchmarking.plugin``) loads in every pytest run
on a machine with ZeroSite installed, and must stay cheap for runs that benchmark nothing.
"""
