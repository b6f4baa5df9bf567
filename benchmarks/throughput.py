"""Sustained runs/s: 2,000 trivial runs submitted at once to 2 workers and to 1, beside 2 ÷ the dispatch median."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

from benchmarks.dispatch import TASK_PATH, through_service
from benchmarks.harness import Cluster, Context, Figure, Target, median, ratio_at_least
from benchmarks.load import hammer
from harness import cpu_seconds, tree_cpu, waitfor

NAME = "throughput"
CLIENTS = 16
#: samples of the dispatch latency whose median makes the baseline (2 ÷ it: two workers with nothing queued)
DISPATCH_SAMPLES = 20


def ended(registry: Path, first: int, count: int) -> tuple[int, float] | None:
    """How many of the ProbeTask runs ``first`` … ``first + count - 1`` are DONE and when the last ended, once
    every one has; None before. Raises if one ended otherwise."""
    with sqlite3.connect(f"file:{registry}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT state, COUNT(*), MAX(finished_at) FROM runs WHERE task = 'ProbeTask' "
            "AND CAST(json_extract(params, '$.n') AS INTEGER) BETWEEN ? AND ? GROUP BY state",
            (first, first + count - 1),
        ).fetchall()
    by_state = {state: (n, last) for state, n, last in rows}
    if set(by_state) - {"PENDING", "RUNNING", "DONE"}:
        raise RuntimeError(f"runs of the batch from n={first} ended otherwise: {by_state}")
    done, last = by_state.get("DONE", (0, None))
    return (done, float(last)) if done == count else None


def sustained(cluster: Cluster, first: int, count: int) -> float:
    """Runs/s: ``count`` new ProbeTask runs POSTed at once (16 clients), from the first POST to the last run DONE."""
    requests = [("POST", f"{TASK_PATH}?n={n}") for n in range(first, first + count)]
    began = time.time()
    hammer(cluster.api_url, requests, CLIENTS, duration=None, per_client=math.ceil(count / CLIENTS)).check(202)
    done, last = waitfor(lambda: ended(cluster.settings.registry_path, first, count), 3600, f"{count} runs to end")
    return float(done / (last - began))


def run(ctx: Context) -> list[Figure]:
    count = 400 if ctx.quick else 2_000
    with ctx.cluster(NAME) as cluster:
        if cluster.tune(max_queue=count).max_queue < count:
            raise RuntimeError(f"NECTAR_MAX_QUEUE={cluster.settings.max_queue} is below the {count:,} runs sent here")
        cluster.start_luigid()
        workers = cluster.start_workers(2)
        cluster.start_api()
        through_service(cluster, -1)  # warm: the API's catalog, the workers' luigi
        dispatch = median([through_service(cluster, n)[-1] for n in range(DISPATCH_SAMPLES)])
        cpu, own = tree_cpu(workers.pid), cpu_seconds(workers.pid)
        two = sustained(cluster, 1_000_000, count)
        cpu, own = tree_cpu(workers.pid) - cpu, cpu_seconds(workers.pid) - own
        cluster.procs.stop(workers)
        cluster.start_workers(1)
        one = sustained(cluster, 2_000_000, count)
    print(f"dispatch median {dispatch * 1000:.1f} ms; runs/s: 2 workers {two:.1f}, 1 worker {one:.1f}")
    print(
        f"worker CPU per run, 2 workers: {cpu / count * 1000:.1f} ms, of which its own process "
        f"{own / count * 1000:.1f} ms (the rest: its attempt processes)"
    )
    figure, ideal = f"runs/s, {count:,} runs at once, 2 workers", f"2 ÷ dispatch median (n={DISPATCH_SAMPLES})"
    linear = Target("ratio", False, 1.6, "≥ 1.6x (~linear)")
    return [
        Figure(NAME, figure, two, "/s", ideal, 2 / dispatch, ratio_at_least(0.8)),
        Figure(NAME, figure, two, "/s", "the same with 1 worker", one, linear),
    ]
