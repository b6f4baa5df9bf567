"""Submit throughput: POSTs accepted per second at 16 clients (new runs, and finished tasks), beside a hello world."""

from __future__ import annotations

from benchmarks.harness import CHAIN, CHAIN_TYPE, Context, Figure, at_least
from benchmarks.load import Load, hammer, median_rate, rates
from benchmarks.population import fill_registry, fill_store
from nectar.runs import RunState
from nectar.sqlruns import SQLiteRunStore

NAME = "submit"
CLIENTS = 16
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}/ProbeTask"
FINISHED = 2_000
#: more distinct submissions per repeat than the API can accept in its duration (none is sent twice)
PER_REPEAT = 20_000


def run(ctx: Context) -> list[Figure]:
    duration = 1.0 if ctx.quick else 2.0
    with ctx.cluster(NAME) as cluster:
        cluster.start_luigid()  # no workers: only the API's acceptance is measured, the queue just fills
        fill_registry(cluster.settings.registry_path, range(FINISHED))
        fill_store(cluster.settings.local_targets_dir, range(FINISHED))
        url = cluster.start_api()
        base_url = cluster.start_api(app="benchmarks.baseline_app:create_app()")
        runs = SQLiteRunStore(cluster.settings.registry_path)
        finished = [("POST", f"{TASK_PATH}?n={n}") for n in range(FINISHED)]
        hello = [("GET", "/hello")]
        hammer(url, finished, CLIENTS, duration=min(1.0, duration)).check(200)  # warm every worker thread
        hammer(base_url, hello, CLIENTS, duration=min(1.0, duration)).check(200)
        new: list[Load] = []
        done: list[Load] = []
        hellos: list[Load] = []
        for r in range(ctx.repeats):  # interleaved, so that all three see the same noise
            first = 1_000_000 + r * PER_REPEAT
            fresh = [("POST", f"{TASK_PATH}?n={n}") for n in range(first, first + PER_REPEAT)]
            new.append(hammer(url, fresh, CLIENTS, duration=duration).check(202))
            done.append(hammer(url, finished, CLIENTS, duration=duration).check(200))
            hellos.append(hammer(base_url, hello, CLIENTS, duration=duration).check(200))
        for name, loads in (("new", new), ("finished", done), ("hello", hellos)):
            print(f"{name} requests/s per repeat:", rates(loads))
        queued = runs.count(RunState.PENDING)
        accepted = sum(len(load.latencies) for load in new)
        if queued != accepted:
            raise RuntimeError(f"{accepted} new submissions were accepted but {queued} runs are queued")
    what = "hello-world JSON, same gunicorn"
    return [
        Figure(
            NAME,
            f"new runs accepted/s, {CLIENTS} clients",
            median_rate(new),
            "/s",
            what,
            median_rate(hellos),
            at_least(300, "≥ 300/s"),
        ),
        Figure(
            NAME,
            f"POSTs of finished tasks/s, {CLIENTS} clients",
            median_rate(done),
            "/s",
            what,
            median_rate(hellos),
            at_least(800, "≥ 800/s"),
        ),
    ]
