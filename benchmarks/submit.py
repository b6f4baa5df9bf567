"""Submit throughput: POSTs accepted per second at 16 clients (new runs, and finished tasks), beside a hello world;
and whether new runs are accepted as fast once many are queued (bursts at a registry behind a queue, vs the first).

Rates on a shared 2-core machine swing by up to 2x between repeats, the hello world's with them; the API workers'
CPU time per request (user + system, from /proc) is counted beside each rate: it barely moves with the noise, so it
says whether a request got dearer (behind the queue, or against the hello world) where the rates cannot. The figure
behind the queue compares bursts side by side, as the status benchmark does: each burst of new runs beside a hello
burst (ABBA: neither side always first), each rate over the share of the machine's CPU that the processes outside the
benchmark left it, and the median of the pairs' ratios behind the queue over the same median in the first bursts.
The two are two registries served side by side, the second holding the queue more, their pairs taken in turn round
by round: where the first bursts and those behind were two phases a minute apart, the load that came between them
moved the figure alone (0.909x-1.14x for the same code). Its interval is printed beside it, and rounds are added,
within a cap, until it decides the target (:mod:`benchmarks.spread`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.harness import CHAIN, CHAIN_TYPE, Cluster, Context, Figure, at_least, median, ratio_at_least
from benchmarks.load import Load, Request, hammer, median_rate, rates
from benchmarks.population import TASK, Probe, fill_registry, fill_store
from benchmarks.spread import enough, interval, looks_level, said, scheduled_looks, take_rounds
from benchmarks.status import CpuLeft, over_cpu_left
from harness import read_calls
from nectar.registry import Run, RunState
from nectar.registry.sqlite import SQLiteRunStore

NAME = "submit"
CLIENTS = 16
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}/ProbeTask"
FINISHED = 2_000
#: new runs each client sends to warm the API and measure how many a repeat should send
WARM_PER_CLIENT = 100
#: runs queued in bulk between the first bursts and the last (quick, full): the queue they are accepted behind
QUEUE = (20_000, 50_000)
#: parameters of the runs queued in bulk: apart from those sent (Fresh's)
BULK_FIRST = 10_000_000
#: runs submitted straight to the registry, in this process, before the bulk and after (their parameters from
#: DIRECT_FIRST on): the registry's own CPU per submission, without HTTP
DIRECT = 2_000
#: seconds the checkpoints the direct submissions asked may take to be made: a hung thread's bound, not a measure
CHECKPOINT_WAIT = 120.0
DIRECT_FIRST = 20_000_000
#: the pairs of bursts (new runs beside a hello) in a round at each registry, as the status benchmark's: its figure is
#: the median of the pairs' ratios, of rounds x PAIRS of them (under a load of 20, one pair's 0.51 to another's 0.68)
PAIRS = 2
#: a burst of new runs lasts as long as a hello burst, from a list of this many times the new runs the API accepted in
#: that time while warming: a list it does not reach the end of (where it would end, as a count does). The warm burst,
#: a fresh API's first, under a load of 15-26 read 1.1-2.4x below the fastest burst of the same run (12 runs)
RESERVE = 5
#: the registries the new runs are sent to: the first bursts' and those behind the queue
SIDES = ("first", "behind")
#: the target of the figure behind the queue (issue 21): as fast as the first bursts, give or take 5 %
LIMIT = 0.95


class Fresh:
    """Submissions of distinct new runs, never one sent twice (a second one would answer 200, not 202)."""

    def __init__(self) -> None:
        self.sent = 0

    def next(self, count: int) -> list[Request]:
        first, self.sent = 1_000_000 + self.sent, self.sent + count
        return [("POST", f"{TASK_PATH}?n={n}") for n in range(first, first + count)]


def queue_in_bulk(path: Path, count: int) -> None:
    """``count`` PENDING runs of ProbeTask written straight to the registry at ``path``, as if that many had been sent,
    through a store closed after: what it wrote is copied from the WAL into the file (a checkpoint), as
    :func:`~benchmarks.population.fill_registry` does. Written through the benchmark's store, the copy of the bulk's
    WAL (~20,000 runs) was made by the checkpoints the next submissions in process asked, and counted in their CPU
    (registry CPU per run behind the queue, in process: its first 2,000 121-129 µs, the next 103-107)."""
    runs = SQLiteRunStore(path)
    try:
        for start in range(BULK_FIRST, BULK_FIRST + count, 5_000):
            probes = map(Probe, range(start, min(start + 5_000, BULK_FIRST + count)))
            runs.import_runs(Run.new(p.key.path, CHAIN_TYPE, CHAIN, TASK, p.params, p.task_id) for p in probes)
    finally:
        runs.close()


class Counted:
    """Bursts at one API, with the CPU time its gunicorn spent on each (µs per request answered), a worker recycled
    meanwhile included; its workers' read system calls per request (of the workers alive throughout); and the share
    of the machine's CPU the processes outside the benchmark left each (:class:`~benchmarks.status.CpuLeft`)."""

    def __init__(self, cluster: Cluster, url: str) -> None:
        self.cluster, self.url = cluster, url
        self.loads: list[Load] = []
        self.cpu_us: list[float] = []
        self.reads: list[float] = []
        self.left: list[float] = []

    def hammer(self, *args: Any, **kwargs: Any) -> Load:
        workers = self.cluster.api_workers(self.url)
        cpu_left = CpuLeft()
        before, reads = self.cluster.api_cpu(self.url), read_calls(workers)
        load = hammer(*args, **kwargs)
        used = self.cluster.api_cpu(self.url) - before
        self.left.append(cpu_left.share(used))
        self.cpu_us.append(1e6 * used / max(1, len(load.latencies)))
        after = read_calls(workers)
        self.reads.append(sum(after[pid] - reads[pid] for pid in after.keys() & reads.keys()) / len(load.latencies))
        self.loads.append(load)
        return load

    def over_cpu_left(self, bursts: slice) -> list[float]:
        """The rates of ``bursts`` (a slice of them, in the order sent), each over the share of the CPU left it."""
        return over_cpu_left(self.loads[bursts], self.left[bursts])

    def median_of(self, bursts: slice) -> float:
        """The median CPU µs per request of ``bursts`` (a slice of them, in the order sent)."""
        return round(median(self.cpu_us[bursts]), 1)


def registry_cpu(runs: SQLiteRunStore, probes: range, bound: int) -> float:
    """The CPU µs per run of ``probes`` submitted straight to the registry (its transaction alone), within the queue's
    ``bound`` as the API submits them (an unbounded submission is another statement), with the checkpoints their turns
    ask of the process's checkpointer thread, waited for: the process's CPU (no other thread of it works meanwhile)."""
    made = [Run.new(p.key.path, CHAIN_TYPE, CHAIN, TASK, p.params, p.task_id) for p in map(Probe, probes)]
    runs.checkpoints.wait_quiet(CHECKPOINT_WAIT)  # those asked before are not this measure's
    began = time.process_time()
    for run in made:
        runs.submit(run, max_pending=bound)
    if not runs.checkpoints.wait_quiet(CHECKPOINT_WAIT):
        raise RuntimeError(f"the registry's checkpointer was still busy {CHECKPOINT_WAIT} s after the submissions")
    return round(1e6 * (time.process_time() - began) / len(made), 1)


def beside_hello(api: Counted, base: Counted, bursts: slice | None = None) -> list[float]:
    """Each of the API's ``bursts`` of new runs over the hello burst beside it, both over the CPU left to them."""
    bursts = bursts or slice(None)
    return [a / b for a, b in zip(api.over_cpu_left(bursts), base.over_cpu_left(bursts), strict=True)]


def bound_queue(cluster: Cluster, runs: int) -> None:
    """Let the API's queue hold ``runs`` (NECTAR_MAX_QUEUE in the environment wins: it must be large enough)."""
    if cluster.tune(max_queue=runs).max_queue < runs:
        raise RuntimeError(f"NECTAR_MAX_QUEUE={cluster.settings.max_queue} is below the {runs:,} runs queued here")


class Side(NamedTuple):
    """One registry's API, its bursts of new runs and of finished tasks, and the hello bursts beside its own."""

    url: str
    new: Counted
    hello: Counted
    done: list[Load]


def in_turn(sides: list[Callable[[int], None]], finished: Callable[[], None], repeats: int) -> Callable[[int], None]:
    """A round (its number given): ``finished``'s bursts (in the ``repeats`` rounds asked: those past them are for the
    figure behind the queue), then :data:`PAIRS` pairs at each of ``sides`` in turn, which side first alternating pair
    by pair, each side called with the count of pairs made before (for its own ABBA)."""

    def one(r: int) -> None:
        if r < repeats:
            finished()
        for p in range(PAIRS):
            made = r * PAIRS + p
            for side in sides if made % 2 == 0 else sides[::-1]:
                side(made)

    return one


def run(ctx: Context) -> list[Figure]:
    duration = 1.0 if ctx.quick else 2.0
    behind = QUEUE[0] if ctx.quick else QUEUE[1]
    # looked at after 5, 8, 12 and 18 rounds (5 asked): its true ratio is ~0.99 (the registry's own submission behind
    # 20,000 queued is 1.03-1.06x of ~1 % of a new run's API CPU), where 8 rounds left half-widths of ~0.05
    looks = scheduled_looks(ctx.repeats)
    cap, drawn_at = looks[-1], looks_level(len(looks))
    with ctx.cluster(NAME) as cluster:
        cluster.start_luigid()  # no workers: only the API's acceptance is measured, the queue just fills
        # a registry for the first bursts and one for those behind the queue, served side by side: the bursts at
        # each are taken in turn, so that the machine's load meets both alike
        folders = {side: cluster.dir / f"data-{side}" for side in SIDES}
        registries = {side: folder / "runs.sqlite3" for side, folder in folders.items()}
        for path in registries.values():
            fill_registry(path, range(FINISHED))
        fill_store(cluster.settings.local_targets_dir, range(FINISHED))
        fresh = Fresh()
        # each repeat sends as many new runs as this machine accepts in `duration` (measured while warming),
        # and every one stays queued: the queue's bound is sized from that total, before the API starts
        warming = fresh.next(WARM_PER_CLIENT * CLIENTS)
        bound_queue(cluster, len(warming))
        url = cluster.start_api(NECTAR_DATA_DIR=str(folders["first"]))
        warm = hammer(url, warming, CLIENTS, duration=None, per_client=WARM_PER_CLIENT).check(202)
        cluster.procs.stop(cluster.apis.pop(url))
        per_client = max(10, math.ceil(warm.rate * duration / CLIENTS))
        burst = per_client * CLIENTS
        # a burst of new runs lasts `duration`, as a hello burst does, from a list of new runs it does not reach the
        # end of (it would end there): every client busy to its end
        reserve = RESERVE * burst
        # the queue behind: the runs warming sent to the first registry, and `behind` more
        queue_in_bulk(registries["behind"], len(warming) + behind)
        # to each registry: the runs submitted straight to it, a burst not counted and its bursts, at most
        sent = DIRECT + burst + cap * PAIRS * reserve
        bound_queue(cluster, len(warming) + behind + sent)
        direct = {}
        for side, path in registries.items():  # the registry's own CPU a submission, in this process
            runs = SQLiteRunStore(path)
            try:
                direct[side] = registry_cpu(
                    runs, range(DIRECT_FIRST, DIRECT_FIRST + DIRECT), cluster.settings.max_queue
                )
            finally:
                runs.close()
        base_url = cluster.start_api(app="benchmarks.baseline_app:create_app()")
        finished = [("POST", f"{TASK_PATH}?n={n}") for n in range(FINISHED)]
        hello = [("GET", "/hello")]
        sides: dict[str, Side] = {}
        for side, folder in folders.items():
            url = cluster.start_api(NECTAR_DATA_DIR=str(folder))
            sides[side] = Side(url, Counted(cluster, url), Counted(cluster, base_url), [])
            hammer(url, finished, CLIENTS, duration=min(1.0, duration)).check(200)  # warm every worker thread
            # a burst of new runs not counted: the first of a fresh API paid for its connections and caches (801 µs of
            # CPU a run, then 684, 654, 647, 551 in one run's first bursts)
            hammer(url, fresh.next(burst), CLIENTS, duration=None, per_client=per_client).check(202)
        hammer(base_url, hello, CLIENTS, duration=min(1.0, duration)).check(200)

        def pair_at(side: Side) -> Callable[[int], None]:
            def new_burst() -> None:
                side.new.hammer(side.url, fresh.next(reserve), CLIENTS, duration=duration, once=True).check(202)

            def hello_burst() -> None:
                side.hello.hammer(base_url, hello, CLIENTS, duration=duration).check(200)

            def pair(made: int) -> None:  # ABBA: the first burst of a pair is the dearer one
                for one in (new_burst, hello_burst) if made % 2 == 0 else (hello_burst, new_burst):
                    one()

            return pair

        def finished_bursts() -> None:  # beside the pairs of each round: they see the same noise
            for side in sides.values():
                side.done.append(hammer(side.url, finished, CLIENTS, duration=duration).check(200))

        def found() -> tuple[list[float], list[float]]:
            return beside_hello(sides["behind"].new, sides["behind"].hello), beside_hello(
                sides["first"].new, sides["first"].hello
            )

        def decided() -> bool:
            return enough(interval(*found(), paired=True, level=drawn_at), LIMIT)

        rounds = take_rounds(
            ctx.repeats,
            cap,
            in_turn([pair_at(side) for side in sides.values()], finished_bursts, ctx.repeats),
            decided,
            looks,
        )
        behind_pairs, first_pairs = found()
        spread = interval(behind_pairs, first_pairs, paired=True, level=drawn_at)
        pairs = len(first_pairs)
        first, last = sides["first"], sides["behind"]
        print(
            f"new runs per {duration:g} s burst, at most: {reserve:,} (measured while warming: {warm.rate:,.0f}/s); "
            f"{rounds} rounds"
        )
        loads = (("new", first.new.loads), ("finished", first.done), ("hello", first.hello.loads))
        queued_loads = (
            (f"new, {behind:,} queued", last.new.loads),
            (f"hello, {behind:,} queued", last.hello.loads),
            (f"finished, {behind:,} queued", last.done),
        )
        for name, measured in (*loads, *queued_loads):
            print(f"{name} requests/s per repeat:", rates(measured))
        for name, at in (("first", first), (f"{behind:,} queued", last)):
            print(
                f"{name}: API CPU µs per new run per repeat:", ", ".join(f"{us:.0f}" for us in at.new.cpu_us),
                "; per hello beside them:", ", ".join(f"{us:.0f}" for us in at.hello.cpu_us),
                "; API read calls per new run:", ", ".join(f"{n:.1f}" for n in at.new.reads),
            )  # fmt: skip
        print(
            "new runs over the hello burst beside them (ABBA), each over the CPU others left it, pair by pair: first",
            ", ".join(f"{x:.3f}" for x in first_pairs),
            f"(median {median(first_pairs):.3f}); behind {behind:,} queued",
            ", ".join(f"{x:.3f}" for x in behind_pairs),
            f"(median {median(behind_pairs):.3f}); the ratio {median(behind_pairs) / median(first_pairs):.3f}, "
            f"{said(spread, pairs, rounds, LIMIT, drawn_at)};",
            "the machine's CPU used outside the benchmark, new/hello, first:",
            ", ".join(f"{1 - a:.0%}/{1 - b:.0%}" for a, b in zip(first.new.left, first.hello.left, strict=True)),
            "; behind:",
            ", ".join(f"{1 - a:.0%}/{1 - b:.0%}" for a, b in zip(last.new.left, last.hello.left, strict=True)),
        )
        ahead = {"first": len(warming), "behind": len(warming) + behind}
        made = {side: DIRECT + burst + sum(len(load.latencies) for load in at.new.loads) for side, at in sides.items()}
        for side, path in registries.items():
            runs = SQLiteRunStore(path)
            try:
                queued = runs.count(RunState.PENDING)
            finally:
                runs.close()
            if queued != ahead[side] + made[side]:
                raise RuntimeError(f"{made[side]} new runs were accepted beside {ahead[side]} queued, but {queued} are")
    what = "hello-world JSON, same gunicorn"
    all_bursts = slice(None)
    return [
        Figure(NAME, f"new runs accepted/s, {CLIENTS} clients", median_rate(first.new.loads), "/s", what,
               median_rate(first.hello.loads)),
        Figure(  # its target on the bursts side by side, pair by pair, as the figure behind the queue's
            NAME,
            f"new runs accepted/s, {CLIENTS} clients, × hello (each burst over the {what} burst beside it, ABBA, rates"
            f" over the CPU left; the median of {pairs} pairs)",
            round(median(first_pairs), 3), "x", "-", None, at_least(0.5, "≥ 0.5x"),
        ),
        Figure(NAME, f"POSTs of finished tasks/s, {CLIENTS} clients", median_rate(first.done), "/s", what,
               median_rate(first.hello.loads), at_least(800, "≥ 800/s")),
        Figure(  # each registry's bursts over the hello bursts beside them, pair by pair, the two taken in turn
            NAME,
            f"new runs accepted behind {behind:,} queued runs, × hello",
            round(median(behind_pairs), 3),
            "x",
            f"the first bursts (≤ {len(warming) + made['first']:,} queued), × hello (each: the median of {pairs} "
            "bursts over the hello burst beside it, ABBA, rates over the CPU left; the two registries' pairs in turn; "
            f"the ratio's {said(spread, pairs, rounds, LIMIT, drawn_at)})",
            round(median(first_pairs), 3),
            ratio_at_least(LIMIT),
            spread=spread,
        ),
        Figure(NAME, "API CPU per new run accepted (user + system, all workers)", first.new.median_of(all_bursts),
               "µs", "per hello world, same gunicorn", first.hello.median_of(all_bursts)),
        Figure(  # counted: a page SQLite reads again is one (the request's own reads are in the hello world's)
            NAME, "API read system calls per new run accepted", round(median(first.new.reads), 1), "",
            "per hello world, same gunicorn", round(median(first.hello.reads), 1),
        ),
        Figure(NAME, f"API CPU per new run accepted behind {behind:,} queued runs", last.new.median_of(all_bursts),
               "µs", "in the first bursts", first.new.median_of(all_bursts)),
        Figure(NAME, f"registry CPU per run submitted in process, behind {behind:,} queued", direct["behind"], "µs",
               "the same before the bulk", direct["first"]),
    ]  # fmt: skip
