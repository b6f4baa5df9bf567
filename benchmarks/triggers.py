"""Triggers: a real ``nectar clock``'s lag (PUT → run queued) on moto, S3 requests per poll; 10 and 10,000 old objects.

The lag is measured on a real ``nectar clock`` process (the loop as it is deployed: its own interpreter, registry
connections and S3 client), the requests in this process, where a botocore hook sees every S3 call a poll makes.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness import CHAIN, CHAIN_TYPE, Cluster, Context, Figure, at_most, median, percentile, ratio_at_most
from harness import MOTO_CREDENTIALS, NECTAR, REPO, base_env, free_port, waitfor
from nectar.config import Settings, configure
from nectar.service import Nectar
from nectar.triggers.book import TriggerBook
from nectar.triggers.loop import TriggerLoop
from nectar.triggers.model import DEFAULT_POLL_S

NAME = "triggers"
TASK = f"{CHAIN_TYPE}/{CHAIN}/LandedTask"
BUCKET, PREFIX = "bench-landing", "landing/"
#: objects already under the prefix when the trigger is made (``existing: new``): a poll must not cost more with more
OLD = (10, 10_000)
#: the poll interval (s) at least: the default a trigger gets; a quick run polls more often to finish sooner
POLL_S, QUICK_POLL_S = DEFAULT_POLL_S, 1.0
#: a poll (with its share of the objects) may take at most this fraction of the interval: longer on a slow machine
POLL_SHARE = 0.05
#: poll intervals the objects are written over, and how many objects (fewer if claiming them would take more
#: than POLL_SHARE of the window): ≥ 100 so that p99 is not the maximum (see benchmarks.harness.percentile)
INTERVALS, QUICK_INTERVALS = 6, 4
SAMPLES, QUICK_SAMPLES = 200, 40
#: seconds for the clock to start and poll, and beyond the window for the last object's run: fail a hung one only
START_TIMEOUT, DRAIN_TIMEOUT = 300.0, 300.0
#: the old objects' keys, given 0, 1, ...
OLD_KEYS = PREFIX + "0-old-{:06d}.csv"


def new_key(n: int) -> str:
    """Keys that land after the old ones in S3's order, each after the last (as timestamped names do)."""
    return f"{PREFIX}1-new-{n:06d}.csv"


@dataclass
class Sizing:
    """What the first case measures and every case then uses, so that they compare."""

    poll_s: float
    samples: int
    window: float

    def text(self) -> str:
        return f"{self.samples} objects over {self.window:g} s, poll every {self.poll_s:g} s"


@dataclass
class Case:
    """What one case (``old`` objects under the prefix) measured."""

    old: int
    sizing: Sizing
    #: seconds from each object's PUT returned to its run queued (inf: none queued before the deadline)
    lags: list[float] = field(default_factory=list)
    #: S3 requests each in-process poll made, counted by a botocore hook, and as the poll counted them itself
    requests: list[int] = field(default_factory=list)
    counted: list[int] = field(default_factory=list)
    #: seconds an in-process poll took with nothing new, and one raw ListObjectsV2 after the last key
    idle_poll: list[float] = field(default_factory=list)
    raw_list: list[float] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return sum(math.isinf(lag) for lag in self.lags)


class S3Requests:
    """Every S3 request of this process's clients made after it, by operation (botocore's ``before-call`` event,
    registered on boto3's default session, whose handlers each client made from it copies)."""

    def __init__(self) -> None:
        import boto3

        self.seen: Counter[str] = Counter()
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.seen[model.name] += 1

    def total(self) -> int:
        return sum(self.seen.values())


@contextmanager
def in_process(settings: Settings, endpoint: str) -> Iterator[None]:
    """This process pointed at the case's moto and settings (the listing reads ``AWS_*``), put back after."""
    values = {"AWS_ENDPOINT_URL": endpoint, **MOTO_CREDENTIALS}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    configure(settings)
    try:
        yield
    finally:
        configure(None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def writer(endpoint: str) -> Any:
    """An S3 client of its own session: the hook does not count its requests."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    return session.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 5}))


class Landing:
    """A case's world: moto with the old objects (put in its memory before it serves: see
    :mod:`benchmarks.seeded_moto`), the trigger made in this process, new keys in order."""

    def __init__(self, cluster: Cluster, old: int, poll_s: float) -> None:
        self.cluster = cluster
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        seed = ["--port", str(port), "--bucket", BUCKET, "--keys", OLD_KEYS, "--count", str(old)]
        began = time.monotonic()
        moto = cluster.procs.start("moto", [sys.executable, "-m", "benchmarks.seeded_moto", *seed], base_env(), REPO)
        cluster.procs.wait_up(moto, f"{self.endpoint}/", "moto", timeout=START_TIMEOUT)
        print(f"moto serves {old:,} old objects after {time.monotonic() - began:.1f} s", flush=True)
        self.client = writer(self.endpoint)
        self.written = 0
        self.requests = S3Requests()
        with in_process(cluster.settings, self.endpoint):
            self.book: TriggerBook = Nectar(cluster.settings).triggers
            definition = {"task": TASK, "prefix": f"s3://{BUCKET}/{PREFIX}", "glob": "*.csv", "param": "path"}
            self.id = self.book.create({**definition, "existing": "new", "poll_s": poll_s}).id
        print(f"the trigger starts after the old objects: {dict(self.requests.seen)} at its creation", flush=True)

    def land(self, count: int) -> dict[str, float]:
        """PUT ``count`` new objects one after the other; when each PUT returned, by URI."""
        returned = {}
        for _ in range(count):
            key = new_key(self.written)
            self.client.put_object(Bucket=BUCKET, Key=key, Body=b"new")
            returned[f"s3://{BUCKET}/{key}"] = time.time()
            self.written += 1
        return returned

    def raw_list(self) -> float:
        """Seconds one ListObjectsV2 after the last key takes: what an idle poll asks the store."""
        began = time.perf_counter()
        self.client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX, StartAfter=new_key(self.written))
        return time.perf_counter() - began

    def claimed(self) -> int:
        return self.book.runs.trigger_counts()[self.id].objects


def polled(case: Case, landing: Landing, repeats: int, per_poll: int) -> float:
    """Polls in this process by the loop (due at each tick), alternately with nothing new and with ``per_poll``
    new objects; each poll's requests and time go to ``case``; answer the seconds an object's claim takes."""
    skipped = [0.0]
    loop = TriggerLoop(landing.book, clock=lambda: time.time() + skipped[0])
    claims = []
    poll_s = landing.book.view(landing.id).spec.poll_s
    with in_process(landing.cluster.settings, landing.endpoint):
        loop.tick()  # the first pass syncs and loads the triggers
        for _ in range(repeats):
            for landed in (0, per_poll):
                landing.land(landed)
                skipped[0] += poll_s
                before, began = landing.requests.total(), time.perf_counter()
                poll = loop.tick()[landing.id]
                took = time.perf_counter() - began
                if poll.listed != landed:
                    raise RuntimeError(f"a poll after {landed} new objects listed {poll.listed}: {poll}")
                case.requests.append(landing.requests.total() - before)
                case.counted.append(poll.stats.requests)
                if landed:
                    claims.append(max(0.0, took - case.idle_poll[-1]) / landed)
                else:
                    case.idle_poll.append(took)
                case.raw_list.append(median([landing.raw_list() for _ in range(3)]))
    if not any(case.requests):
        raise RuntimeError("the botocore hook saw no S3 request of the polls: is the listing's client from boto3's?")
    return median(claims)


def clocked(case: Case, landing: Landing, seed: int) -> None:
    """A real ``nectar clock`` polls while objects land at random moments of the window; their lags go to ``case``."""
    cluster, sizing = landing.cluster, case.sizing
    before = landing.claimed()
    env = cluster.env(AWS_ENDPOINT_URL=landing.endpoint, **MOTO_CREDENTIALS)
    started = time.time()
    proc = cluster.procs.start("clock", [*NECTAR, "clock"], env, cluster.dir)
    log = cluster.procs.log_of[proc.pid]

    def polling() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"nectar clock exited with {proc.returncode}; its log: {log}")
        record = landing.book.runs.trigger(landing.id)
        return record is not None and (record.polled_at or 0.0) >= started

    waitfor(polling, START_TIMEOUT, "nectar clock to poll the trigger", interval=0.1)
    spread = random.Random(seed)
    moments = sorted(spread.uniform(0, sizing.window) for _ in range(sizing.samples))
    returned: dict[str, float] = {}
    began = time.time()
    for moment in moments:
        time.sleep(max(0.0, began + moment - time.time()))
        returned.update(landing.land(1))
    try:
        what = f"the runs of the {sizing.samples} objects landed"
        waitfor(lambda: landing.claimed() >= before + sizing.samples, DRAIN_TIMEOUT, what, 0.1)
    except AssertionError:
        pass  # those not queued count as missed
    cluster.procs.stop(proc)
    queued = {}
    for obj, run in landing.book.objects(landing.id, limit=before + sizing.samples):
        if run is not None:
            queued[f"s3://{BUCKET}/{obj.object_key}"] = run.queued_at
    case.lags = [queued.get(uri, math.inf) - at for uri, at in returned.items()]


def measured(ctx: Context, old: int, sizing: Sizing | None) -> Case:
    """One case: ``old`` objects under the prefix; sized by its own in-process polls when ``sizing`` is None."""
    least_poll = QUICK_POLL_S if ctx.quick else POLL_S
    samples = QUICK_SAMPLES if ctx.quick else SAMPLES
    intervals = QUICK_INTERVALS if ctx.quick else INTERVALS
    with ctx.cluster(f"{NAME}-{old}") as cluster:
        landing = Landing(cluster, old, sizing.poll_s if sizing else least_poll)
        per_poll = sizing.samples // intervals if sizing else math.ceil(samples / intervals)
        case = Case(old, sizing or Sizing(least_poll, samples, least_poll * intervals))
        claim = polled(case, landing, max(3, ctx.repeats), per_poll)
        if sizing is None:  # a poll with its share of the objects takes at most POLL_SHARE of the interval
            busy = median(case.idle_poll) + per_poll * claim
            poll_s = max(least_poll, math.ceil(busy / POLL_SHARE * 10) / 10)  # in tenths of a second
            window = poll_s * intervals
            fits = int(POLL_SHARE * window / claim) if claim > 0 else samples
            case.sizing = Sizing(poll_s, max(intervals, min(samples, fits)), window)
            with in_process(cluster.settings, landing.endpoint):
                landing.book.change(landing.id, {"poll_s": poll_s})
            print(f"a poll takes {busy * 1000:.1f} ms with {per_poll} new objects: {case.sizing.text()}", flush=True)
        clocked(case, landing, seed=old)
    return case


def run(ctx: Context) -> list[Figure]:
    cases: dict[int, Case] = {}
    for old in OLD:
        cases[old] = measured(ctx, old, cases[OLD[0]].sizing if cases else None)
    for case in cases.values():
        p50, p99 = percentile(case.lags, 50), percentile(case.lags, 99)
        print(
            f"{case.old:,} old objects: lag p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(case.lags):.3f} s, "
            f"{case.missed} missed; S3 requests per poll {case.requests} (the polls' own count {case.counted}); "
            f"a pass with nothing new {median(case.idle_poll) * 1000:.1f} ms, one raw ListObjectsV2 after the last "
            f"key {median(case.raw_list) * 1000:.1f} ms",
            flush=True,
        )
    few, many = cases[OLD[0]], cases[OLD[-1]]
    sizing = few.sizing
    reach = at_most(sizing.poll_s + 1.0, f"≤ poll interval + 1 s ({sizing.poll_s + 1.0:g} s)")
    figures = []
    for case in (few, many):
        what = f"detection lag p{{}}, {case.old:,} old objects ({sizing.text()}, {case.missed} missed)"
        alone = "-" if case is few else f"the same, {few.old:,} old objects"
        for pct in (50, 99):
            baseline = None if case is few else percentile(few.lags, pct)
            lag, target = percentile(case.lags, pct), reach if pct == 99 else None
            figures.append(Figure(NAME, what.format(pct), lag, "s", alone, baseline, target))
    polls = len(many.requests)
    figures.append(
        Figure(
            NAME,
            f"S3 requests per poll, {many.old:,} old objects (mean of {polls}, half with new objects)",
            sum(many.requests) / polls,
            "",
            f"the same, {few.old:,} old objects",
            sum(few.requests) / len(few.requests),
            ratio_at_most(1.0, "independent of old objects (≤ 1x)"),
        )
    )
    figures.append(
        Figure(
            NAME,
            f"a pass of the loop, nothing new, {many.old:,} old objects (median of {len(many.idle_poll)}, in process)",
            median(many.idle_poll),
            "ms",
            "one raw ListObjectsV2 after the last key",
            median(many.raw_list),
        )
    )
    return figures
