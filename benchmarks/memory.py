"""Memory: an API worker's RSS after 10,000 requests and over a registry of 20,000 runs (and what a /metrics scrape
costs there vs over 1,000); idle ``nectar serve``, all its processes; an idle scale-out ``nectar worker`` with the
benchmark's chains, and with a chain importing requests beside them; the peak RSS of a task writing a big out.txt to
S3 (moto)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import statistics
import time
from pathlib import Path
from urllib.parse import quote

import boto3
from prometheus_client import CollectorRegistry, generate_latest

from benchmarks.harness import (
    CHAIN,
    CHAIN_TYPE,
    Context,
    Figure,
    at_most,
    ratio_at_most,
    rss_kb,
    submit,
)
from benchmarks.load import Request, hammer
from benchmarks.population import Probe, fill_registry, fill_store
from harness import MOTO_CREDENTIALS, REPO, children, cmdline
from nectar.metrics import RunsCollector, SchedulesCollector, TriggersCollector
from nectar.registry.sqlite import SQLiteRunStore

NAME = "memory"
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}"
MB = 1024  # kB
KNOWN = 2_000
#: the registry of the soak's end (21,492 runs), where each API worker had grown from ~48 MB to 80-89 MB
BIG_REGISTRY = 20_000
#: seconds ``nectar serve`` is left alone after its first 200 before it is measured (its worker's spare is forked)
IDLE = 5.0
#: a chain that imports requests (132 modules: round 63), as a chain calling an HTTP API does; a scale-out worker
#: executes it as it starts, so its attempts find requests imported
REQUESTS_CHAIN = '''"""A chain calling an HTTP API."""

import requests

from nectar import NectarTask


class FetchTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write(requests.__version__)
'''


def mixed_requests(count: int) -> list[Request]:
    """What a busy API answers: status polls, finished and new submissions, the catalog, health (count of each kind)."""
    kinds: list[list[Request]] = [
        [("GET", f"/api/chainstatus?chain={quote(Probe(n % KNOWN).key.path, safe='/')}") for n in range(count)],
        [("POST", f"{TASK_PATH}/ProbeTask?n={n % KNOWN}") for n in range(count)],
        [("POST", f"{TASK_PATH}/ProbeTask?n={2_000_000 + n}") for n in range(count)],
        [("GET", f"/api/chains/{CHAIN_TYPE}")] * count,
        [("GET", "/healthz")] * count,
    ]
    return [request for group in zip(*kinds, strict=True) for request in group]


def scrapes_and_statuses(count: int) -> list[Request]:
    """``count`` times: a /metrics scrape, then four status reads of runs spread over the whole registry."""

    def status(n: int) -> Request:
        return ("GET", f"/api/chainstatus?chain={quote(Probe(n * 997 % BIG_REGISTRY).key.path, safe='/')}")

    return [request for n in range(count) for request in [("GET", "/metrics"), *map(status, range(4 * n, 4 * n + 4))]]


def api_rss(ctx: Context, requests: int) -> tuple[float, float]:
    """(RSS of the one API worker after ``requests`` mixed requests, its RSS after the first 100), in kB."""
    with ctx.cluster(f"{NAME}-api") as cluster:
        cluster.start_luigid()
        fill_registry(cluster.settings.registry_path, range(KNOWN))
        fill_store(cluster.settings.local_targets_dir, range(KNOWN))
        url = cluster.start_api(workers=1)  # one worker answers them all
        (worker,) = cluster.api_workers(url)
        mix = mixed_requests(requests // 5 + 1)
        hammer(url, mix[:100], 4, duration=None, per_client=25).check(200, 202)
        warm = rss_kb(worker)
        hammer(url, mix[100:requests], 16, duration=None, per_client=(requests - 100) // 16).check(200, 202)
        if cluster.api_workers(url) != [worker]:
            raise RuntimeError("the API worker was replaced while it was measured")
        return rss_kb(worker), warm


def registry_rss(ctx: Context, requests: int) -> tuple[float, float]:
    """(RSS of the one API worker after ``requests`` status reads and /metrics scrapes (one in five) over a registry
    of :data:`BIG_REGISTRY` runs, its RSS after the first 100), in kB: each scrape reads every run."""
    with ctx.cluster(f"{NAME}-registry") as cluster:
        fill_registry(cluster.settings.registry_path, range(BIG_REGISTRY))
        fill_store(cluster.settings.local_targets_dir, range(KNOWN))
        url = cluster.start_api(workers=1)
        (worker,) = cluster.api_workers(url)
        mix = scrapes_and_statuses(requests // 5 + 1)
        hammer(url, mix[:100], 4, duration=None, per_client=25).check(200)
        warm = rss_kb(worker)
        hammer(url, mix[100:requests], 16, duration=None, per_client=(requests - 100) // 16).check(200)
        if cluster.api_workers(url) != [worker]:
            raise RuntimeError("the API worker was replaced while it was measured")
        return rss_kb(worker), warm


def fill_made(path: Path, count: int) -> None:
    """``count`` fires of a schedule, a minute apart, and ``count`` objects claimed by a trigger, each with its run
    and its lag: the rows a scrape grouped before the database counted them (triggers count them as they land)."""
    fires = [(60.0 * n, f"fire-{n}", 60.0 * n + 0.2) for n in range(count)]
    objects = [(f"in/{n:06d}", f"object-{n}", 60.0 * n, 60.0 * n + 1.5) for n in range(count)]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO fires (schedule_id, fire_time, state, run_id, version, recorded_at, queued_at) "
            "VALUES ('bench', ?, 'queued', ?, 1, ?3, ?3)",
            fires,
        )
        db.executemany(
            "INSERT INTO trigger_objects (trigger_id, object_key, version, state, run_id, modified, recorded_at) "
            "VALUES ('bench', ?, 'v1', 'queued', ?, ?, ?)",
            objects,
        )


def scrape_seconds(ctx: Context, runs: int, scrapes: int) -> float:
    """Median seconds of one scrape of what /metrics reads from the registry (every collector, in this process) over
    a registry of ``runs`` DONE runs, as many fires and as many claimed objects: the same at 1,000 and 20,000 when
    the database keeps the counts."""
    store = SQLiteRunStore(ctx.root / f"{NAME}-scrape-{runs}" / "runs.sqlite3")
    fill_registry(store.path, range(runs))
    fill_made(store.path, runs)
    registry = CollectorRegistry(auto_describe=False)
    for collector in (RunsCollector, SchedulesCollector, TriggersCollector):
        registry.register(collector(store))
    took = []
    for _ in range(scrapes):
        began = time.perf_counter()
        generate_latest(registry)
        took.append(time.perf_counter() - began)  # seconds: the report shows them in ms
    return statistics.median(took)


def rollup(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, private) of a process in kB, from its ``/proc/<pid>/smaps_rollup``: private, the pages only it
    maps (what it alone adds to the machine's memory), clean or dirty."""
    fields = dict(line.split()[:2] for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Rss:"]), int(fields["Pss:"]), int(fields["Private_Clean:"]) + int(fields["Private_Dirty:"])


def role(command: str, parent: str) -> str:
    """The role in ``nectar serve`` of a process of command line ``command`` whose parent plays ``parent``: gunicorn's
    arbiter and the API workers it forks, luigid, the workers' process (with the schedules' clock) and the attempt
    processes it forks (none while idle)."""
    if "gunicorn" in command:
        return "API worker" if parent == "arbiter" else "arbiter"
    if "luigid" in command:
        return "luigid"
    if "nectar.cli worker" in command:
        return "attempt" if parent in ("worker", "attempt") else "worker"
    return f"child of {parent}"


def roles(supervisor: int) -> list[tuple[int, str]]:
    """Every process of the ``nectar serve`` whose supervisor is ``supervisor``, each with its role (:func:`role`),
    each after its parent."""
    found = [(supervisor, "supervisor")]
    for pid, name in found:  # each one's children appended as it is reached
        found += [(child, role(cmdline(child), name)) for child in children(pid)]
    return found


def idle_serve(ctx: Context) -> tuple[float, float, list[str]]:
    """(RSS, PSS) in kB of every process of ``nectar serve`` (the supervisor and all it started) :data:`IDLE`
    seconds after its first 200; and a line per process, named by its role."""
    with ctx.cluster(f"{NAME}-serve") as cluster:
        shutil.rmtree(cluster.settings.chains_dir)
        shutil.copytree(REPO / "chains", cluster.settings.chains_dir, ignore=shutil.ignore_patterns("__pycache__"))
        args = ["--data-dir", str(cluster.settings.data_dir), "--chains-dir", str(cluster.settings.chains_dir)]
        serve = cluster.procs.nectar_serve(cluster.env(), cluster.dir, args).proc  # on free ports: others if taken
        time.sleep(IDLE)
        rss = pss = 0
        lines = []
        for pid, name in roles(serve.pid):
            one_rss, one_pss, private = rollup(pid)
            rss, pss = rss + one_rss, pss + one_pss
            sizes = f"{one_rss / MB:6.1f} MB RSS {one_pss / MB:6.1f} MB PSS {private / MB:6.1f} MB private"
            lines.append(f"{name:<10}  {sizes}  {cmdline(pid)[:60]}")
        cluster.procs.stop(serve, timeout=60)
        return rss, pss, lines


def idle_worker(ctx: Context, name: str, chains: dict[str, str]) -> tuple[int, int, int]:
    """(RSS, PSS, private) in kB of a scale-out ``nectar worker`` (no clock, one slot) :data:`IDLE` seconds after it
    serves, with the benchmark's chains and ``chains`` (``<type>/<chain>``: source) beside them: a worker executes
    them as it starts, so what they import is in it (and shared with the attempts it forks)."""
    with ctx.cluster(f"{NAME}-{name}") as cluster:
        for ref, source in chains.items():
            path = cluster.settings.chains_dir / f"{ref}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        worker = cluster.start_workers(1)
        log = cluster.procs.log_of[worker.pid]
        began = time.monotonic()
        while "slot(s), registry" not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() - began > 120:
                raise RuntimeError(f"the worker did not serve: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        time.sleep(IDLE)
        sizes = rollup(worker.pid)
        cluster.procs.stop(worker, timeout=60)
        return sizes


def upload_peak(ctx: Context, sizes: list[int]) -> dict[int, float]:
    """Peak RSS (kB) of BigFileTask(mb) writing ``mb`` MiB to S3 on a moto server, through the service, per size."""
    with ctx.cluster(f"{NAME}-s3", env="bench", project_bucket="memory") as cluster:
        endpoint = f"http://127.0.0.1:{cluster.procs.moto().port}"
        cluster.extra_env |= {"AWS_ENDPOINT_URL": endpoint, **MOTO_CREDENTIALS}
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=cluster.settings.bucket)
        cluster.start_luigid()
        cluster.start_workers(1)
        url = cluster.start_api()
        peaks: dict[int, float] = {}
        per_mb = 0.0  # seconds an upload took a MiB, the slowest yet: a size's wait is sized from it
        for mb in sizes:
            began = time.monotonic()
            run_id, key = submit(url, f"{TASK_PATH}/BigFileTask?mb={mb}")
            cluster.run_ended(run_id, mb * per_mb, f"{mb} MiB at the slowest MiB's upload yet", 0.2)
            per_mb = max(per_mb, (time.monotonic() - began) / mb)
            peaks[mb] = next(float(kb) for m, kb in cluster.ledger_lines("peak_rss") if int(m) == mb)
            size = s3.head_object(Bucket=cluster.settings.bucket, Key=key)["ContentLength"]
            if size != mb << 20:
                raise RuntimeError(f"out.txt of BigFileTask(mb={mb}) has {size} bytes, not {mb << 20}")
            print(f"BigFileTask(mb={mb}): peak RSS {peaks[mb] / MB:.1f} MB, {time.monotonic() - began:.1f} s")
        return peaks


def run(ctx: Context) -> list[Figure]:
    requests = 3_000 if ctx.quick else 10_000
    size = 64 if ctx.quick else 1024
    after, warm = api_rss(ctx, requests)
    big, big_warm = registry_rss(ctx, 1_000 if ctx.quick else 3_000)
    scrape_small, scrape_big = (
        scrape_seconds(ctx, runs, 100 if ctx.quick else 500) for runs in (KNOWN // 2, BIG_REGISTRY)
    )
    rss, pss, processes = idle_serve(ctx)
    print(f"idle nectar serve, {len(processes)} processes:", *processes, sep="\n  ")
    workers = {
        "the benchmark's chains": idle_worker(ctx, "worker", {}),
        "+ a chain importing requests": idle_worker(ctx, "worker-requests", {"http/fetch_chain": REQUESTS_CHAIN}),
    }
    print("idle scale-out nectar worker:", end="")
    for chains, (one_rss, one_pss, private) in workers.items():
        sizes = f"{one_rss / MB:6.1f} MB RSS {one_pss / MB:6.1f} MB PSS {private / MB:6.1f} MB private"
        print(f"\n  {chains:<30}  {sizes}", end="")
    print()
    (alone, *_), (with_requests, *_) = workers.values()
    peaks = upload_peak(ctx, [1, size])
    return [
        Figure(
            NAME,
            f"API worker RSS after {requests:,} requests",
            after,
            "MB",
            "the same worker after 100",
            warm,
            at_most(60 * MB, "≤ 60 MB"),
        ),
        Figure(
            NAME,
            f"API worker RSS over {BIG_REGISTRY:,} runs, /metrics scraped and statuses read",
            big,
            "MB",
            "the same worker after 100",
            big_warm,
            at_most(60 * MB, "≤ 60 MB"),
        ),
        Figure(
            NAME,
            f"/metrics scrape over {BIG_REGISTRY:,} runs, fires and objects each (its registry reads, in process)",
            scrape_big,
            "ms",
            f"the same over {KNOWN // 2:,} of each",
            scrape_small,
            ratio_at_most(1.2, "≤ 1.2x (flat)"),
        ),
        Figure(
            NAME,
            f"idle nectar serve, all {len(processes)} processes: RSS",
            rss,
            "MB",
            "their PSS (shared pages split)",
            pss,
            at_most(200 * MB, "≤ 200 MB"),
        ),
        Figure(
            NAME,
            "idle scale-out nectar worker, a chain importing requests beside the benchmark's: RSS",
            with_requests,
            "MB",
            "the same with the benchmark's chains alone",
            alone,
        ),
        Figure(
            NAME,
            f"peak RSS, task writing {size:,} MB to S3",
            peaks[size],
            "MB",
            "the same task writing 1 MB",
            peaks[1],
            at_most(150 * MB, "≤ 150 MB"),
        ),
    ]
