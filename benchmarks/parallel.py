"""Parallel steps: a wrapper over independent sleeping steps through the service, beside ``luigi --workers N``."""

from __future__ import annotations

import sys
import time
from urllib.parse import urlsplit

from benchmarks.harness import (
    CHAIN,
    CHAIN_TYPE,
    MODULE,
    Cluster,
    Context,
    Figure,
    median,
    ratio_at_most,
    submit,
)
from harness import LUIGI_CFG

NAME = "parallel"
#: steps run at once, through the service (NECTAR_TASK_WORKERS) and by plain luigi (--workers)
WORKERS = 2


#: the work the waits are sized from (:mod:`benchmarks.patience`): the slowest wrapper yet, either side, or its steps'
#: sleeps one after another where none was slower
WRAPPER = "the slowest wrapper yet, or its steps' sleeps one after another"


def expected(cluster: Cluster, size: int, seconds: float) -> float:
    """What a wait for a wrapper of ``size`` steps of ``seconds`` is sized from: the slowest measured, at least the
    steps' sleeps one after another (what it sleeps at any parallelism)."""
    return max(cluster.patience.longest(WRAPPER), size * seconds)


def through_service(cluster: Cluster, size: int, seconds: float, salt: str) -> float:
    """Seconds from POSTing SleepersTask to its run being DONE in the registry."""
    params = f"size={size}&seconds={seconds}&salt={salt}"
    patience, sized = cluster.patience, expected(cluster, size, seconds)
    began = time.perf_counter()
    run_id, _ = submit(cluster.api_url, f"/api/chains/{CHAIN_TYPE}/{CHAIN}/SleepersTask?{params}")
    cluster.run_ended(run_id, sized, WRAPPER, 0.02)
    took = time.perf_counter() - began
    patience.note(WRAPPER, took)
    return took


def plain_luigi(cluster: Cluster, size: int, seconds: float, salt: str) -> float:
    """Seconds of ``python -m luigi --workers N`` for the same wrapper against the same luigid, start to exit."""
    assert cluster.settings.scheduler_url
    scheduler = urlsplit(cluster.settings.scheduler_url)
    argv = [sys.executable, "-m", "luigi", "--module", MODULE, "SleepersTask", "--workers", str(WORKERS)]
    argv += ["--size", str(size), "--seconds", str(seconds), "--salt", salt]
    argv += ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(scheduler.port)]
    env = cluster.env(PYTHONPATH=str(cluster.dir), LUIGI_CONFIG_PATH=str(LUIGI_CFG))
    sized = expected(cluster, size, seconds)
    began = time.perf_counter()
    proc = cluster.procs.start("luigi-workers", argv, env, cluster.dir)
    try:
        cluster.exited(proc, f"python -m luigi --workers {WORKERS}", sized, WRAPPER)
        took = time.perf_counter() - began
    finally:
        cluster.procs.stop(proc)
    cluster.patience.note(WRAPPER, took)
    return took


def run(ctx: Context) -> list[Figure]:
    # the shape: 10 steps of 1 s, 2 at a time (about 5 s a measurement, 10 s a repeat)
    size, seconds = (6, 0.5) if ctx.quick else (10, 1.0)
    with ctx.cluster(NAME) as cluster:
        cluster.tune(task_workers=WORKERS)
        cluster.start_luigid()
        cluster.start_workers(1)
        cluster.start_api()
        through_service(cluster, 2, 0.01, "warm")
        took: dict[str, list[float]] = {"service": [], "luigi": []}
        for r in range(ctx.repeats):  # alternated, so that the machine's noise falls on both alike
            order = ("service", "luigi") if r % 2 == 0 else ("luigi", "service")
            for name in order:
                measure = through_service if name == "service" else plain_luigi
                took[name].append(measure(cluster, size, seconds, f"{name}{r}"))
    print("seconds per run:", "; ".join(f"{name} {', '.join(f'{t:.2f}' for t in took[name])}" for name in took))
    what = f"python -m luigi --workers {WORKERS}, same luigid (n={ctx.repeats})"
    serial = size * seconds
    return [
        Figure(
            NAME,
            f"wrapper over {size} steps of {seconds:g} s, {WORKERS} at once, via the API",
            median(took["service"]),
            "s",
            what,
            median(took["luigi"]),
            ratio_at_most(1.2),
            note=f"one at a time: {serial:g} s",
        ),
    ]
