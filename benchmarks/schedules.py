"""Schedules: fire lag (fire time → run queued) of a real ``nectar clock`` at 1, 1,000 and 10,000 schedules; its CPU."""

from __future__ import annotations

import math
import sqlite3
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from benchmarks.harness import CHAIN, CHAIN_TYPE, Context, Figure, at_most, median, percentile
from harness import NECTAR, cpu_seconds, waitfor
from nectar.registry.sqlite import SQLiteRunStore
from nectar.schedules.model import ScheduleRecord, ScheduleSpec

NAME = "schedules"
TASK = f"{CHAIN_TYPE}/{CHAIN}/FireTask"
SIZES = (1, 1_000, 10_000)
#: the schedules' intervals are spread evenly over this range (s): 10,000 of them fire ~43 times a second on average,
#: in bursts at the seconds that are multiples of many intervals (fire times are multiples of the interval since 1970)
SHORTEST, LONGEST = 60, 600
#: a lone schedule fires every second, so that its lag has samples
LONE_INTERVAL = 1
#: seconds the clock may take to start and fire its first schedule: fails only a hung start


def intervals(size: int) -> list[int]:
    """The intervals of ``size`` schedules: spread evenly over [SHORTEST, LONGEST], or every second for a lone one."""
    if size == 1:
        return [LONE_INTERVAL]
    return [SHORTEST + n * (LONGEST - SHORTEST) // max(1, size - 1) for n in range(size)]


def add_schedules(registry: Path, size: int, now: float) -> list[ScheduleRecord]:
    """``size`` interval schedules of FireTask (the fire time its ``at``), firing from ``now`` on, through the
    registry (the API's checks of the task are not what is measured)."""
    runs = SQLiteRunStore(registry)
    records = []
    for n, interval in enumerate(intervals(size)):
        definition = {"task": TASK, "interval_s": interval, "params": {"n": n}, "fire_time_param": "at"}
        spec = ScheduleSpec.from_definition(definition)
        record = ScheduleRecord(f"bench-{n:05d}", "api", spec, 1, False, now, now, now)
        runs.add_schedule(record)
        records.append(record)
    runs.close()
    return records


def recorded(registry: Path, start: float, end: float) -> int:
    """How many fires the registry holds with a fire time in (start, end]: a cheap read while the clock runs."""
    with closing(sqlite3.connect(f"file:{registry}?mode=ro", uri=True)) as db:
        text = "SELECT COUNT(*) FROM fires WHERE fire_time > ? AND fire_time <= ?"
        return int(db.execute(text, (start, end)).fetchone()[0])


@dataclass(frozen=True)
class Clocked:
    """What one clock did over its measured windows."""

    size: int
    #: seconds from each fire time of the windows to its run queued (inf: no run queued, or the fire never made)
    lags: list[float]
    #: the clock's CPU in each window, in % of one core
    cpu: list[float]
    #: the fire times due in each window: at 10,000 schedules a 10 s window holds from ~110 to ~1,250 of them (p10-p90
    #: ~240-650: the bursts at seconds that are multiples of many intervals), which moves its CPU more than the code
    fires: list[int]
    #: fire times per second, on average and in the busiest second of the windows
    rate: float
    busiest: int

    def per_fire(self, idle: float, window: float) -> float:
        """The clock's CPU a fire (s), over every window: what the windows used beyond ``idle`` (its CPU % with no
        schedule), over the fires due in them."""
        spent = sum(self.cpu) / 100 * window - idle / 100 * window * len(self.cpu)
        return spent / max(1, sum(self.fires))

    @property
    def missed(self) -> int:
        return sum(math.isinf(lag) for lag in self.lags)

    def load(self) -> str:
        if self.size == 1:
            return f"1 schedule every {LONE_INTERVAL} s (n={len(self.lags)})"
        return (
            f"{self.size:,} schedules every {SHORTEST}–{LONGEST} s: {self.rate:.0f} fires/s, "
            f"{self.busiest} in the busiest second (n={len(self.lags):,})"
        )


def clocked(ctx: Context, size: int, window: float, windows: int = 1) -> Clocked:
    """Start ``nectar clock`` on a registry of ``size`` schedules and measure ``windows`` windows of ``window`` s.

    The windows begin once the clock has fired its first schedule and then had as long again as it took to get
    there (the fires due while it started are made late, as after any restart); the fires of the windows are
    read from the registry once each is recorded, or one more window later (a fire not made by then is missed).
    """
    with ctx.cluster(f"{NAME}-{size}") as cluster:
        # no worker runs the fires' runs: a queue bound would skip fires once it fills (NECTAR_MAX_QUEUE still wins)
        cluster.tune(max_queue=1_000_000_000)
        registry = cluster.settings.registry_path
        began = time.time()
        records = add_schedules(registry, size, began)
        SQLiteRunStore(registry).close()  # the registry exists even without schedules
        started = time.time()
        print(f"{size:,} schedules written in {started - began:.1f} s", flush=True)
        proc = cluster.procs.start("clock", [*NECTAR, "clock"], cluster.env(), cluster.dir)
        log = cluster.procs.log_of[proc.pid]

        def firing() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"nectar clock exited with {proc.returncode}; its log: {log}")
            return "firing schedules" in log.read_text() and (size == 0 or recorded(registry, 0, math.inf) > 0)

        written = f"writing the {size:,} schedules"  # what the clock reads of them as it starts, at least
        cluster.patience.wait(
            firing, f"nectar clock to fire the first of {size:,} schedules", started - began, written, 0.1
        )
        ready = time.time()
        edges = [ready + (ready - started) + k * window for k in range(windows + 1)]
        cpu: list[float] = []
        fires = [
            sum(len(record.spec.timing.fires_between(begin, end)) for record in records)
            for begin, end in pairwise(edges)
        ]
        used, at = 0.0, 0.0
        for k, edge in enumerate(edges):
            time.sleep(max(0.0, edge - time.time()))
            before, since = used, at
            used, at = cpu_seconds(proc.pid), time.time()
            if k:
                cpu.append(100 * (used - before) / (at - since))
        start, end = edges[0], edges[-1]
        due = {record.id: record.spec.timing.fires_between(start, end) for record in records}
        expected = sum(map(len, due.values()))
        try:
            waitfor(lambda: recorded(registry, start, end) >= expected, window, "every fire of the windows", 0.2)
        except AssertionError:
            pass  # those not made count as missed
        cluster.procs.stop(proc)
        stopped = time.time()
        runs = SQLiteRunStore(registry)
        lags: list[float] = []
        for record in records:
            since = len(record.spec.timing.fires_between(start, stopped)) + 1  # every fire made since the windows began
            made = {fire.fire_time: fire.lag for fire in runs.fires(record.id, limit=since)}
            lags += [lag if (lag := made.get(fire_time)) is not None else math.inf for fire_time in due[record.id]]
        runs.close()
    busiest = Counter(math.floor(t) for times in due.values() for t in times).most_common(1)
    rate = sum(1 / interval for interval in intervals(size)) if size else 0.0
    return Clocked(size, lags, cpu, fires, rate, busiest[0][1] if busiest else 0)


def run(ctx: Context) -> list[Figure]:
    window = 10.0 if ctx.quick else 60.0  # a minute: the CPU figure is per minute
    # the CPU figure and its baseline are the median of a window per repeat; the lags pool every fire of theirs
    idle = clocked(ctx, 0, window, ctx.repeats)
    found = {size: clocked(ctx, size, window, ctx.repeats if size == SIZES[-1] else 1) for size in SIZES}
    for measured in (idle, *found.values()):
        cpu = ", ".join(f"{c:.2f}" for c in measured.cpu)
        print(f"{measured.size:,} schedules: CPU % per {window:g} s [{cpu}], fires due {measured.fires}", end="")
        if measured.lags:
            p50, p99 = percentile(measured.lags, 50), percentile(measured.lags, 99)
            print(f"; {measured.load()}: lag p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(measured.lags):.3f} s, "
                  f"{measured.missed} missed", end="")  # fmt: skip
        print(flush=True)
    lone, most = found[SIZES[0]], found[SIZES[-1]]
    figures = []
    for size, measured in found.items():
        for pct in (50, 99):
            alone = size == SIZES[0]
            baseline = None if alone else percentile(lone.lags, pct)
            target = at_most(1.0, "≤ 1 s") if size == SIZES[-1] and pct == 99 else None
            lag = percentile(measured.lags, pct)
            what = f"fire lag p{pct}, {measured.load()}"
            figures.append(Figure(NAME, what, lag, "s", "-" if alone else lone.load(), baseline, target))
    figures.append(
        Figure(
            NAME,
            f"clock CPU, {most.size:,} schedules (median of {len(most.cpu)} × {window:g} s)",
            median(most.cpu),
            "%",
            "the same clock, no schedule",
            median(idle.cpu),
            at_most(5.0, "≤ 5% of a core"),
        )
    )
    # beside it, what the code decides whichever windows it fell on: a fire's CPU over every window, and the CPU it
    # makes at the schedules' mean rate (the windows' median moves with how many fires fall in them)
    idle_cpu = median(idle.cpu)
    per_fire = most.per_fire(idle_cpu, window)
    n = f"{sum(most.fires):,} fires in {len(most.cpu)} × {window:g} s, less the idle CPU"
    what = f"clock CPU a fire, {most.size:,} schedules ({n})"
    figures.append(Figure(NAME, what, round(per_fire * 1e6, 1), "µs", "-", None))
    figures.append(
        Figure(
            NAME,
            f"clock CPU at the mean rate, {most.size:,} schedules ({most.rate:.0f} fires/s × a fire's CPU + idle)",
            idle_cpu + per_fire * most.rate * 100,
            "%",
            "the same clock, no schedule",
            idle_cpu,
        )
    )
    return figures
