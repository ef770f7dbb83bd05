"""Measure the costs behind docs/scaling.md's model on a real `dask scheduler` and `dask worker`s on loopback.

    .venv/bin/python bench/dask_costs.py [--projects 1000] [--workers 2] [--tasks 2000]

Prints one JSON object. Per report, with workers started here (sequential: none; process x2; dask x2, a local
cluster): the CPU of this process and of its workers; through the cluster, the workers' time by stage
and the CPU of the parent, the scheduler and the workers (shared filesystem, and --hand-back). Per no-op task:
Dask's wall-clock cost in a stream of them, and the CPU it takes in the client, the scheduler and the workers.
CPU seconds are what a quiet machine would take as wall time; this machine is shared and may be busy.
Not a test: a script, run by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from distributed import Client, as_completed

from zerosite.engine import BatchOptions, generate
from zerosite.project import parse_project
from zerosite.sample import iter_sample_projects

QUIET = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


def noop(x: int) -> int:
    return x


def start(*args: str) -> subprocess.Popen[bytes]:
    dask = str(Path(sys.executable).parent / "dask")
    return subprocess.Popen(
        [dask, *args], env={**os.environ, **QUIET}, stderr=subprocess.DEVNULL, start_new_session=True
    )


def cpu_s(process: psutil.Process) -> float:
    """CPU seconds of a process and its children (a `dask worker`'s nanny and worker process)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def task_costs(client: Client, cluster: list[psutil.Process], tasks: int, in_flight: int) -> dict[str, float]:
    """No-op tasks, ``in_flight`` at a time: Dask's own cost per task."""
    wall, parent, cpu = time.perf_counter(), time.process_time(), [cpu_s(p) for p in cluster]
    futures = as_completed([client.submit(noop, i, pure=False) for i in range(in_flight)], loop=client.loop)
    submitted = in_flight
    for future in futures:
        future.result()
        if submitted < tasks:
            futures.add(client.submit(noop, submitted, pure=False))
            submitted += 1
    return {
        "wall_ms_per_task": (time.perf_counter() - wall) * 1e3 / tasks,
        "client_cpu_ms_per_task": (time.process_time() - parent) * 1e3 / tasks,
        **_cluster_cpu(cluster, cpu, tasks, "task"),
    }


def _cluster_cpu(cluster: list[psutil.Process], before: list[float], n: int, per: str) -> dict[str, float]:
    """CPU milliseconds per ``per`` in the scheduler (``cluster[0]``) and in all the workers together."""
    spent = [cpu_s(p) - b for p, b in zip(cluster, before, strict=True)]
    return {f"scheduler_cpu_ms_per_{per}": spent[0] * 1e3 / n, f"workers_cpu_ms_per_{per}": sum(spent[1:]) * 1e3 / n}


def batch_costs(address: str, cluster: list[psutil.Process], projects: int, hand_back: bool) -> dict[str, float]:
    """One batch through the cluster: per report, the workers' time and the parent's and scheduler's CPU."""
    batch = [parse_project(raw) for raw in iter_sample_projects(projects)]
    out = Path(tempfile.mkdtemp(prefix="zerosite-costs-"))
    try:
        options = BatchOptions(out=out, strategy="dask", scheduler=address, hand_back=hand_back)
        parent, cpu = time.process_time(), [cpu_s(p) for p in cluster]
        summary = generate(batch, options)
        parent = time.process_time() - parent
        spent = _cluster_cpu(cluster, cpu, summary.written, "report")
        reports = summary.written
        size = sum(p.stat().st_size for p in out.rglob("*.html"))
    finally:
        shutil.rmtree(out)
    stages = summary.stage_ns.by_stage()
    return {
        "reports": reports,
        "wall_s": summary.wall_s,
        "worker_ms_per_report": sum(stages.values()) / 1e6 / reports,
        **{f"{stage}_ms_per_report": ns / 1e6 / reports for stage, ns in stages.items()},
        "parent_cpu_ms_per_report": parent * 1e3 / reports,
        **spent,
        "bytes_per_report": size / reports,
    }


def local_costs(projects: int, strategy: str) -> dict[str, float]:
    """The same batch with workers started here (none for sequential): CPU per report in this process (the
    parent: the index writer, and for dask the scheduler too) and in its workers, reaped when it ends."""
    batch = [parse_project(raw) for raw in iter_sample_projects(projects)]
    out = Path(tempfile.mkdtemp(prefix="zerosite-costs-"))
    try:
        parent, children = time.process_time(), _reaped_cpu_s()
        summary = generate(batch, BatchOptions(out=out, strategy=strategy, workers=2))
        parent, children = time.process_time() - parent, _reaped_cpu_s() - children
    finally:
        shutil.rmtree(out)
    reports = summary.written
    return {
        "wall_s": summary.wall_s,
        "parent_cpu_ms_per_report": parent * 1e3 / reports,
        "workers_cpu_ms_per_report": children * 1e3 / reports,
    }


def _reaped_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    processes = [start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")]
    try:
        processes += [start("worker", address, "--nthreads", "1", "--no-dashboard") for _ in range(args.workers)]
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(args.workers, timeout=60)
            cluster = [psutil.Process(p.pid) for p in processes]
            results = {
                "sequential": local_costs(args.projects, "sequential"),
                "process": local_costs(args.projects, "process"),
                "dask_local": local_costs(args.projects, "dask"),
                "tasks": task_costs(client, cluster, args.tasks, 2 * args.workers),
                "shared_filesystem": batch_costs(address, cluster, args.projects, hand_back=False),
                "hand_back": batch_costs(address, cluster, args.projects, hand_back=True),
            }
    finally:
        for process in reversed(processes):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
    print(json.dumps({k: {m: round(v, 4) for m, v in r.items()} for k, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
