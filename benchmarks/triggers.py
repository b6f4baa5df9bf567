"""Triggers: a ``nectar clock``'s detection lag (PUT → run queued), S3 requests a poll, at 10 and 10,000 old objects
(2,500 in a quick run)."""

from __future__ import annotations

import glob
import math
import random
import time
from dataclasses import dataclass, field

from benchmarks.harness import Context, Figure, at_most, median, percentile, ratio_at_most
from benchmarks.landing import BUCKET, Landing, in_process
from harness import MOTO_CREDENTIALS, NECTAR, free_port
from nectar.triggers.loop import TriggerLoop
from nectar.triggers.model import DEFAULT_POLL_S

NAME = "triggers"
#: objects already under the prefix when the trigger is made (``existing: new``): a poll must not cost more with more.
#: A quick run's many is 2,500: still three pages of a listing that would not start after them (a poll that did must
#: show 3 requests, not 1), and a fraction of the trigger's first poll, which lists them all twice (on moto: the case
#: of 10,000 was 85 s of a quick run's 110 s, 20 pages of 1,000 each sorted from all 10,000 keys). The knob of a run
#: smaller still: the suite's test of this benchmark sets it (and QUICK_INTERVALS) lower (tests/test_benchmarks.py)
OLD, QUICK_OLD = (10, 10_000), (10, 2_500)
#: the poll interval (s) at least: the default a trigger gets; a quick run polls more often to finish sooner
POLL_S, QUICK_POLL_S = DEFAULT_POLL_S, 1.0
#: a poll (with its share of the objects) may take at most this fraction of the interval: longer on a slow machine;
#: a quick run lets it take a larger share, so that its intervals (and the windows made of them) stay short
POLL_SHARE, QUICK_POLL_SHARE = 0.05, 0.25
#: in-process polls of each kind (nothing new, new objects) at least, and raw listings a median is taken of: a
#: quick run's are one each (the requests a poll makes are counted, not timed: one poll of each kind shows them)
POLLS, QUICK_POLLS = 3, 1
RAW_LISTS, QUICK_RAW_LISTS = 3, 1
#: poll intervals the objects are written over, and how many objects (fewer if claiming them would take more
#: than POLL_SHARE of the window): ≥ 100 so that p99 is not the maximum (see benchmarks.harness.percentile)
INTERVALS, QUICK_INTERVALS = 6, 4
SAMPLES, QUICK_SAMPLES = 200, 40


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
    """What one case (``old`` objects under the prefix, the registry in ``registry``) measured."""

    old: int
    sizing: Sizing
    registry: str = "SQLite"
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


def polled(case: Case, landing: Landing, repeats: int, per_poll: int, raw_lists: int = RAW_LISTS) -> float:
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
                case.raw_list.append(median([landing.raw_list() for _ in range(raw_lists)]))
    if not any(case.requests):
        raise RuntimeError("the botocore hook saw no S3 request of the polls: is the listing's client from boto3's?")
    return median(claims)


def clocked(case: Case, landing: Landing, seed: int) -> None:
    """A real ``nectar clock`` polls while objects land at random moments of the window; their lags go to ``case``.

    A real process, not a loop in a thread here: the loop as it is deployed (its own interpreter, registry
    connections and S3 client), and a lag this process's own work (the PUTs, the registry reads) cannot add to.
    The requests are counted in this process (:func:`polled`), where a botocore hook sees every S3 call.
    """
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

    cluster.patience.wait(polling, "nectar clock to poll the trigger", interval=0.1)
    first_poll = time.time() - started  # its start and a listing of every old object
    spread = random.Random(seed)
    moments = sorted(spread.uniform(0, sizing.window) for _ in range(sizing.samples))
    returned: dict[str, float] = {}
    began = time.time()
    for moment in moments:
        time.sleep(max(0.0, began + moment - time.time()))
        returned.update(landing.land(1))
    try:
        what = f"the runs of the {sizing.samples} objects landed"
        # after the window, a poll or two queues the last: a poll interval or the first poll's time, tens of times
        sized, of = max(sizing.poll_s, first_poll), "a poll interval, or the clock's start to its first poll"
        cluster.patience.wait(lambda: landing.claimed() >= before + sizing.samples, what, sized, of, 0.1)
    except AssertionError:
        pass  # those not queued count as missed
    cluster.procs.stop(proc)
    queued = {}
    for obj, run in landing.book.objects(landing.id, limit=before + sizing.samples):
        if run is not None:
            queued[f"s3://{BUCKET}/{obj.object_key}"] = run.queued_at
    case.lags = [queued.get(uri, math.inf) - at for uri, at in returned.items()]


def measured(ctx: Context, old: int, sizing: Sizing | None, database_url: str | None = None) -> Case:
    """One case: ``old`` objects under the prefix, the registry in SQLite (or at ``database_url``); sized by its
    own in-process polls when ``sizing`` is None."""
    least_poll = QUICK_POLL_S if ctx.quick else POLL_S
    samples = QUICK_SAMPLES if ctx.quick else SAMPLES
    intervals = QUICK_INTERVALS if ctx.quick else INTERVALS
    registry = {"database_url": database_url} if database_url else {}
    with ctx.cluster(f"{NAME}-{old}{'-pg' if database_url else ''}", **registry) as cluster:
        landing = Landing(cluster, old, sizing.poll_s if sizing else least_poll)
        per_poll = sizing.samples // intervals if sizing else math.ceil(samples / intervals)
        case = Case(old, sizing or Sizing(least_poll, samples, least_poll * intervals))
        case.registry = "PostgreSQL" if database_url else case.registry
        polls, raw_lists = (QUICK_POLLS, QUICK_RAW_LISTS) if ctx.quick else (POLLS, RAW_LISTS)
        claim = polled(case, landing, max(polls, ctx.repeats), per_poll, raw_lists)
        if sizing is None:  # a poll with its share of the objects takes at most POLL_SHARE of the interval
            share = QUICK_POLL_SHARE if ctx.quick else POLL_SHARE
            busy = median(case.idle_poll) + per_poll * claim
            poll_s = max(least_poll, math.ceil(busy / share * 10) / 10)  # in tenths of a second
            window = poll_s * intervals
            fits = int(share * window / claim) if claim > 0 else samples
            case.sizing = Sizing(poll_s, max(intervals, min(samples, fits)), window)
            with in_process(cluster.settings, landing.endpoint):
                landing.book.change(landing.id, {"poll_s": poll_s})
            print(f"a poll takes {busy * 1000:.1f} ms with {per_poll} new objects: {case.sizing.text()}", flush=True)
        clocked(case, landing, seed=old)
        landing.nectar.close()
    return case


def on_postgres(ctx: Context, sizing: Sizing) -> Case | None:
    """The 10,000 case with the registry in PostgreSQL, when its server programs are installed (a full run only)."""
    if ctx.quick or not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):  # Debian's package, as the tests use it
        return None
    from tests.helpers.postgres import PostgresServer

    server = PostgresServer.start(free_port())
    try:
        return measured(ctx, OLD[-1], sizing, server.create_database())
    finally:
        server.stop()


def run(ctx: Context) -> list[Figure]:
    cases: dict[int, Case] = {}
    sizes = QUICK_OLD if ctx.quick else OLD
    for old in sizes:
        cases[old] = measured(ctx, old, cases[sizes[0]].sizing if cases else None)
    postgres = on_postgres(ctx, cases[sizes[0]].sizing)
    for case in [*cases.values(), *([postgres] if postgres else [])]:
        p50, p99 = percentile(case.lags, 50), percentile(case.lags, 99)
        print(
            f"{case.old:,} old objects, {case.registry}: lag p50 {p50:.3f} s, p99 {p99:.3f} s, "
            f"max {max(case.lags):.3f} s, "
            f"{case.missed} missed; S3 requests per poll {case.requests} (the polls' own count {case.counted}); "
            f"a pass with nothing new {median(case.idle_poll) * 1000:.1f} ms, one raw ListObjectsV2 after the last "
            f"key {median(case.raw_list) * 1000:.1f} ms",
            flush=True,
        )
    few, many = cases[sizes[0]], cases[sizes[-1]]
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
    if postgres is not None:
        what = f"detection lag p{{}}, {postgres.old:,} old objects, registry in PostgreSQL ({postgres.missed} missed)"
        for pct in (50, 99):
            lag, target = percentile(postgres.lags, pct), reach if pct == 99 else None
            baseline = percentile(many.lags, pct)
            figures.append(Figure(NAME, what.format(pct), lag, "s", "the same, in SQLite", baseline, target))
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
