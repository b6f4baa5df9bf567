"""Dispatch latency: POST → the task's run() starts, through the service, beside one ``python -m luigi`` per request."""

from __future__ import annotations

import sys
import time
from urllib.parse import urlsplit

from benchmarks.harness import (
    CHAIN,
    CHAIN_TYPE,
    MODULE,
    NAMESPACE,
    Cluster,
    Context,
    Figure,
    median,
    percentile,
    ratio_at_most,
    submit,
    wait_run,
)
from harness import LUIGI_CFG, waitfor

NAME = "dispatch"
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}/ProbeTask"


def started_at(cluster: Cluster, n: int) -> float:
    """When ProbeTask(n)'s run() noted its start (it notes once per execution)."""

    def noted() -> float | None:
        return next((float(t) for m, t in cluster.ledger_lines("start") if int(m) == n), None)

    return float(waitfor(noted, 60, f"ProbeTask(n={n}) to start"))


def through_service(cluster: Cluster, n: int) -> tuple[float, float, float]:
    """Seconds from the POST leaving to its answer, to a worker's claim, to ProbeTask(n).run() starting.

    Waits for the run to end before answering, so that every sample starts with idle workers.
    """
    posted = time.time()
    run_id, _ = submit(cluster.api_url, f"{TASK_PATH}?n={n}")
    answered = time.time()
    began = started_at(cluster, n)
    run = wait_run(cluster.settings.registry_path, run_id, 60)
    assert run.started_at is not None  # the claim's time
    return answered - posted, run.started_at - posted, began - posted


def seed_design(cluster: Cluster, n: int) -> float:
    """Seconds from starting ``python -m luigi`` for ProbeTask(n) (the seed's way) to its run() starting."""
    assert cluster.settings.scheduler_url
    scheduler = urlsplit(cluster.settings.scheduler_url)
    argv = [sys.executable, "-m", "luigi", "--module", MODULE, f"{NAMESPACE}.ProbeTask", "--n", str(n)]
    argv += ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(scheduler.port)]
    env = cluster.env(PYTHONPATH=str(cluster.dir), LUIGI_CONFIG_PATH=str(LUIGI_CFG))
    began = time.time()
    proc = cluster.procs.start("seed-luigi", argv, env, cluster.dir)
    try:
        latency = started_at(cluster, n) - began
        if proc.wait(timeout=60) != 0:
            raise RuntimeError(f"python -m luigi for ProbeTask(n={n}) exited with {proc.returncode}")
    finally:
        cluster.procs.stop(proc)
    return latency


def run(ctx: Context) -> list[Figure]:
    samples, seed_samples = max(20, 10 * ctx.repeats), max(5, 2 * ctx.repeats)
    with ctx.cluster(NAME) as cluster:
        cluster.start_luigid()
        cluster.start_workers(2)
        cluster.start_api()
        through_service(cluster, -1)  # warm: the API's catalog, the workers' luigi
        phases = [through_service(cluster, n) for n in range(samples)]
        service = [p[-1] for p in phases]
        seed = [seed_design(cluster, 100_000 + n) for n in range(seed_samples)]
    answered, claimed, _ = (median(p) for p in zip(*phases, strict=True))
    print(
        f"median phases: POST → 202 {answered * 1000:.1f} ms, → claimed {claimed * 1000:.1f} ms, "
        f"→ run() {median(service) * 1000:.1f} ms"
    )
    what = f"python -m luigi per request (n={seed_samples})"
    return [
        Figure(
            NAME,
            f"median POST → run() (n={samples})",
            median(service),
            "ms",
            what,
            median(seed),
            ratio_at_most(0.1),
        ),
        Figure(
            NAME,
            f"p99 POST → run() (n={samples})",
            percentile(service, 99),
            "ms",
            what,
            percentile(seed, 99),
            ratio_at_most(0.25),
        ),
    ]
