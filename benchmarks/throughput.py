"""Sustained runs/s: 2,000 trivial runs submitted at once to 2 workers and to 1, beside 2 ÷ the dispatch median; and
where each one's CPU went, to tell a rate the cores cap from one that waits."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import time
from pathlib import Path

from benchmarks.dispatch import TASK_PATH, through_service
from benchmarks.harness import Cluster, Context, Figure, Target, median, ratio_at_least
from benchmarks.load import hammer
from harness import busy_cpu, cpu_seconds, tree_cpu, waitfor

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


def loop_waits(pid: int) -> tuple[float, int]:
    """Of the worker's loop (its process's main thread): seconds it has waited for a core while runnable (its
    ``schedstat``), and how often it was preempted (``nonvoluntary_ctxt_switches``)."""
    waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    status = Path(f"/proc/{pid}/status").read_text()
    (preempted,) = (int(line.split()[1]) for line in status.splitlines() if line.startswith("nonvoluntary_ctxt"))
    return waited, preempted


def cpu_used(cluster: Cluster, workers: subprocess.Popen[bytes]) -> dict[str, float]:
    """CPU seconds used so far by each part: the workers (and their attempts), their own process, luigid, the API,
    this benchmark (its clients and its polls), the whole machine."""
    assert cluster.luigid is not None
    return {
        "workers": tree_cpu(workers.pid),
        "own": cpu_seconds(workers.pid),
        "luigid": tree_cpu(cluster.luigid.pid),
        "API": cluster.api_cpu(cluster.api_url),
        "client": time.process_time(),
        "machine": busy_cpu(),
    }


def measured(cluster: Cluster, workers: subprocess.Popen[bytes], first: int, count: int) -> tuple[float, str]:
    """:func:`sustained`, and where its CPU went: per run, by part, and the cores they used beside the machine's."""
    began, before, waits_before = time.monotonic(), cpu_used(cluster, workers), loop_waits(workers.pid)
    rate = sustained(cluster, first, count)
    used = {part: value - before[part] for part, value in cpu_used(cluster, workers).items()}
    waited, preempted = (after - then for after, then in zip(loop_waits(workers.pid), waits_before, strict=True))
    wall = time.monotonic() - began
    ours = sum(used[part] for part in ("workers", "luigid", "API", "client"))
    per_run = {part: used[part] / count * 1000 for part in used}
    cores = ", ".join(f"{part} {used[part] / wall:.2f}" for part in ("workers", "own", "luigid", "API", "client"))
    said = (
        f"{rate:.1f} runs/s; CPU per run: workers {per_run['workers']:.2f} ms (their own process "
        f"{per_run['own']:.2f}), luigid {per_run['luigid']:.2f}, API {per_run['API']:.2f}, this benchmark's clients "
        f"{per_run['client']:.2f}; these used {ours / wall:.2f} cores ({cores}), "
        f"the machine {used['machine'] / wall:.2f}; the worker's loop waited for a core {waited / count * 1000:.2f} "
        f"ms per run, preempted {preempted / count:.2f} times per run"
    )
    return rate, said


def run(ctx: Context) -> list[Figure]:
    count = 400 if ctx.quick else 2_000
    with ctx.cluster(NAME) as cluster:
        if cluster.tune(max_queue=count).max_queue < count:
            raise RuntimeError(f"NECTAR_MAX_QUEUE={cluster.settings.max_queue} is below the {count:,} runs sent here")
        cluster.start_luigid()
        workers = cluster.start_workers(2)
        cluster.start_api()
        through_service(cluster, -1)  # warm: the API's catalog, the workers' luigi
        dispatch = median([through_service(cluster, n)[2] for n in range(DISPATCH_SAMPLES)])
        two, said_two = measured(cluster, workers, 1_000_000, count)
        cluster.procs.stop(workers)
        workers = cluster.start_workers(1)
        through_service(cluster, -2)  # warm as the 2 were: its start-up (imports, warm()) is not the 1-worker rate's
        one, said_one = measured(cluster, workers, 2_000_000, count)
    print(f"dispatch median {dispatch * 1000:.1f} ms")
    print(f"2 workers: {said_two}")
    print(f"1 worker: {said_one}")
    figure, ideal = f"runs/s, {count:,} runs at once, 2 workers", f"2 ÷ dispatch median (n={DISPATCH_SAMPLES})"
    linear = Target("ratio", False, 1.6, "≥ 1.6x (~linear)")
    return [
        Figure(NAME, figure, two, "/s", ideal, 2 / dispatch, ratio_at_least(0.8)),
        Figure(NAME, figure, two, "/s", "the same with 1 worker", one, linear),
    ]
