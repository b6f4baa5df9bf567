"""Dispatch latency: POST → the task's run() starts, through the service, beside one ``python -m luigi`` per request
and one ``luigi.build`` with the local scheduler in a warm process.

The second baseline is the floor: a process that has luigi and the chain imported (as our attempt process, forked
ahead, has) times ``luigi.build([ProbeTask(n)], local_scheduler=True)`` from its call to ``run()`` starting. It pays
no interpreter start and no import, as the service does not (both happen before the request); it pays no HTTP,
no registry and no luigid, which the service must.
"""

from __future__ import annotations

import importlib
import os
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
from benchmarks.load import hammer
from harness import LUIGI_CFG, read_calls, waitfor
from harness.procfs import thread_cpu
from nectar.registry import RunState
from nectar.registry.sqlite import SQLiteRunStore

NAME = "dispatch"
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}/ProbeTask"


def started_at(cluster: Cluster, n: int) -> float:
    """When ProbeTask(n)'s run() noted its start (it notes once per execution)."""

    def noted() -> float | None:
        return next((float(t) for m, t in cluster.ledger_lines("start") if int(m) == n), None)

    return float(waitfor(noted, 60, f"ProbeTask(n={n}) to start"))


def through_service(cluster: Cluster, n: int) -> tuple[float, float, float, float]:
    """Seconds from the POST leaving to its answer, to a worker's claim, to ProbeTask(n).run() starting; and the CPU
    seconds luigid used from the POST to the run's end (:func:`luigid_cpu`).

    Waits for the run to end before answering, so that every sample starts with idle workers.
    """
    luigid = luigid_cpu(cluster)
    posted = time.time()
    run_id, _ = submit(cluster.api_url, f"{TASK_PATH}?n={n}")
    answered = time.time()
    began = started_at(cluster, n)
    run = wait_run(cluster.settings.registry_path, run_id, 60)
    assert run.started_at is not None  # the claim's time
    return answered - posted, run.started_at - posted, began - posted, luigid_cpu(cluster) - luigid


def luigid_cpu(cluster: Cluster) -> float:
    """CPU seconds the cluster's luigid has used so far (every thread, to the nanosecond). A trivial run's share is
    its attempt's two requests (the batched add_task, add_worker and get_work before run(), the DONE add_task after),
    of which luigi's scheduler is about a fifth and tornado's HTTP handling most of the rest."""
    assert cluster.luigid is not None
    return thread_cpu(cluster.luigid.pid)


#: warm-up runs sent at once, a burst at a time, until every API worker has answered one
WARM_BURST = 16
#: bursts after which an API worker that has still answered none is an error (16 requests at once to 2 workers)
WARM_BURSTS = 20


def warm_every_api_worker(cluster: Cluster) -> int:
    """Bursts of :data:`WARM_BURST` new runs at once (their ``n`` below -1) until each of the API's workers (once
    all it was started with are up: gunicorn forks them one after another) has read a
    request (its ``read`` system calls grew: an idle gunicorn worker makes none), then until those runs all ended;
    how many bursts it took. One warm-up run reached one API worker of two: the other's first request, 10-20 ms
    slower than its later ones, was then the first or second sample, and the slowest of nearly every run of this
    benchmark, which its p99 (the slowest but one of 50) read. The first run after start is measured on its own
    (the cold figure)."""
    api_workers = cluster.api_size(cluster.api_url)
    workers = waitfor(
        lambda: found if len(found := cluster.api_workers(cluster.api_url)) == api_workers else None,
        60,
        f"the API's {api_workers} workers",
    )
    before = read_calls(workers)
    for burst in range(WARM_BURSTS):
        first = -2 - burst * WARM_BURST
        requests = [("POST", f"{TASK_PATH}?n={n}") for n in range(first, first - WARM_BURST, -1)]
        hammer(cluster.api_url, requests, WARM_BURST, duration=None, per_client=1).check(202)
        now = read_calls(workers)
        if all(now.get(pid, 0) > calls for pid, calls in before.items()):
            break
    else:
        raise RuntimeError(f"an API worker of {workers} answered none of {WARM_BURSTS * WARM_BURST} requests")
    runs = SQLiteRunStore(cluster.settings.registry_path)

    def idle() -> bool:
        counts = runs.count_by_state()
        return not any(counts[state] for state in RunState if state.active)

    waitfor(idle, 120, "the warm-up runs to end")
    return burst + 1


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


def local_builds(cluster: Cluster, first: int, count: int) -> list[float]:
    """Seconds from calling ``luigi.build([ProbeTask(n)], local_scheduler=True)`` to its run() starting, for ``count``
    tasks from ``first``, in one process started ahead with luigi and the chain imported (one build to warm it)."""
    argv = [sys.executable, "-m", "benchmarks.dispatch", str(first - 1), str(count + 1)]
    env = cluster.env(PYTHONPATH=os.pathsep.join([str(cluster.dir), os.getcwd()]), LUIGI_CONFIG_PATH=str(LUIGI_CFG))
    cluster.run_once("local-build", argv, env, 120)
    called = {int(m): float(t) for m, t in cluster.ledger_lines("call")}
    return [started_at(cluster, n) - called[n] for n in range(first, first + count)]


def build_locally(first: int, count: int) -> None:
    """In the process :func:`local_builds` starts: note each call, then build ``ProbeTask(n)`` with luigi alone."""
    import luigi

    chain = importlib.import_module(MODULE)  # its ProbeTask, and its note() to the ledger
    for n in range(first, first + count):
        chain.note("call", n, f"{time.time():.6f}")
        if not luigi.build([chain.ProbeTask(n=n)], local_scheduler=True, detailed_summary=False):
            raise SystemExit(f"luigi.build of ProbeTask(n={n}) failed")


def run(ctx: Context) -> list[Figure]:
    samples, seed_samples = max(20, 10 * ctx.repeats), max(5, 2 * ctx.repeats)
    with ctx.cluster(NAME) as cluster:
        cluster.start_luigid()
        cluster.start_workers(2)
        cluster.start_api()
        cold = through_service(cluster, -1)[2]  # the first run: an API worker's first request, a worker's first claim
        warm_every_api_worker(cluster)  # and the workers' luigi
        measured = [through_service(cluster, n) for n in range(samples)]
        phases = [p[:3] for p in measured]
        service = [p[-1] for p in phases]
        seed = [seed_design(cluster, 100_000 + n) for n in range(seed_samples)]
        local = local_builds(cluster, 200_000, samples)
    answered, claimed, _ = (median(p) for p in zip(*phases, strict=True))
    print(
        f"median phases: POST → 202 {answered * 1000:.1f} ms, → claimed {claimed * 1000:.1f} ms, "
        f"→ run() {median(service) * 1000:.1f} ms"
    )
    slowest = "; ".join(" / ".join(f"{hop * 1000:.1f}" for hop in p) for p in sorted(phases, key=lambda p: p[-1])[-5:])
    print(f"the 5 slowest samples, POST → 202 / → claimed / → run() in ms: {slowest}")
    print(f"luigid's CPU per run, POST to the run's end: median {median([p[3] for p in measured]) * 1000:.2f} ms")
    what = f"python -m luigi per request (n={seed_samples})"
    floor = f"luigi.build, local scheduler, warm process (n={samples})"
    return [
        Figure(
            NAME,
            f"median POST → run() (n={samples})",
            median(service),
            "ms",
            what,
            median(seed),
            ratio_at_most(0.05),
        ),
        Figure(
            NAME,
            f"median POST → run() (n={samples})",
            median(service),
            "ms",
            floor,
            median(local),
            ratio_at_most(1.2),
        ),
        Figure(
            NAME,
            f"p99 POST → run() (n={samples})",
            percentile(service, 99),
            "ms",
            what,
            percentile(seed, 99),
            ratio_at_most(0.1),
        ),
        Figure(
            NAME,
            "POST → run() of the first run after start (cold: an API worker's first request, a worker's first attempt)",
            cold,
            "ms",
            f"median POST → run() (n={samples})",
            median(service),
        ),
    ]


if __name__ == "__main__":
    build_locally(int(sys.argv[1]), int(sys.argv[2]))
