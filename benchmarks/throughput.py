"""Sustained runs/s: 2,000 trivial runs submitted at once to 2 workers and to 1 (rounds of a batch each, which runs
first alternating, read as medians), the 2 workers' rate beside 2 ÷ the dispatch median and beside what ~linear
scaling up to the cores allows (twice the 1 worker's rate, or the cores ÷ the CPU a run cost with 1 worker, whichever
is lower), each ratio with its interval (a seeded bootstrap of the rounds, each drawn whole: a batch and the dispatch
samples taken after it; rounds added past those asked, within a cap, until the interval decides the target); and
where each batch's CPU went, to tell a rate the cores cap from one that waits. And the 2 workers' rate with their
attempt processes recycled inside the batch (``NECTAR_RUNS_PER_PROCESS`` set lower: at its default, 1,000, none is in a
batch this size), beside the rate without in batches of the same size, in pairs that alternate which runs first: what a
recycle costs, and that no run is lost or fails across one."""

from __future__ import annotations

import math
import os
import resource
import sqlite3
import subprocess
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.dispatch import RUN, TASK_PATH, idle_cpu, settle, through_service
from benchmarks.harness import Cluster, Context, Figure, median, percentile, ratio_at_least
from benchmarks.load import hammer
from benchmarks.machine import PROBE_SETS, Calibration, calibrate, calibrations_said, run_inodes_cpu, stolen
from benchmarks.spread import Interval, decides, level, of_few_rounds, round_cap, take_rounds, verdict
from harness import busy_cpu, cpu_seconds, descendants, thread_times, tree_cpu

NAME = "throughput"
CLIENTS = 16
#: samples of the dispatch latency taken after each 2 workers' batch, in the same minutes as the rates they are set
#: beside, of each kind (:func:`scaling_rounds`): the baseline is 2 ÷ the median of those taken as the dispatch
#: benchmark takes its own, each begun on a settled cluster (the issue's "dispatch median"); those taken straight
#: after the batch, on cores and caches the batch left warm, read ~0.7x of them (2.2 against 3.1 ms in round 59's
#: table) and are said beside it. 20 taken once before the batches read 2.7-5.3 ms in eleven runs of the same code,
#: their first five the workers' start-up (a median of 7-20 ms, queued to run()): a baseline made easier (round 59)
DISPATCH_EACH = 7
#: ``NECTAR_RUNS_PER_PROCESS`` of the phase with recycles (quick, full): the runs it sends are sized from it
RECYCLED_AFTER = (25, 100)
#: how many times, at least, each attempt process of the batch without recycles is recycled in the batch with them
RECYCLES = 3
#: the first ``n`` of each batch's ProbeTask runs (the scaling batches', the recycle pairs'): a batch's n from
#: its first + batch × :data:`BATCH_SPAN`, so that no run is deduplicated against another batch's
SCALING_FIRST, RECYCLE_FIRST, BATCH_SPAN = 1_000_000, 3_000_000, 100_000
#: the ``n`` of the warm-up run before the first batch of :func:`recycle_pairs` (the next batch's one below): below
#: those of the scaling rounds' warm-ups (-2 down to -1 - 2 × their cap), whose DONE runs a POST would not run again
RECYCLE_WARM = -1_000
#: pairs of batches of one size, one with recycles and one without, which of the two runs first alternating by pair
RECYCLE_PAIRS = 2


def ended(db: sqlite3.Connection, first: int, count: int) -> tuple[int, float] | None:
    """How many of the ProbeTask runs ``first`` … ``first + count - 1`` are DONE and when the last ended, once
    every one has; None before. Raises if one ended otherwise.

    Polled every 50 ms on the cores the service runs on, through one connection (``db``, read-only; opening one
    costs 0.8 ms of CPU), so it first counts the active runs (by the index on state: as many rows as are still
    queued or running, 0 at the end) and reads the batch's runs (every run's parameters, 1.6 ms of CPU at 800
    runs, growing with the registry) only once none is active: the service runs nothing else meanwhile."""
    (active,) = db.execute("SELECT COUNT(*) FROM runs WHERE state IN ('PENDING', 'RUNNING')").fetchone()
    if active:
        return None
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


def batch(registry: Path, first: int, count: int, columns: str) -> list[tuple[Any, ...]]:
    """The ``columns`` of each ProbeTask run of ``first`` … ``first + count - 1``."""
    with closing(sqlite3.connect(f"file:{registry}?mode=ro", uri=True)) as db:
        return db.execute(
            f"SELECT {columns} FROM runs WHERE task = 'ProbeTask' "
            "AND CAST(json_extract(params, '$.n') AS INTEGER) BETWEEN ? AND ?",
            (first, first + count - 1),
        ).fetchall()


def claims_and_ends(registry: Path, first: int, count: int) -> list[tuple[float, float]]:
    """When each ProbeTask run of ``first`` … ``first + count - 1`` was claimed (``started_at``) and ended."""
    return [(float(began), float(end)) for began, end in batch(registry, first, count, "started_at, finished_at")]


def busy(registry: Path, first: int, count: int) -> tuple[float, float]:
    """When the first ProbeTask run of ``first`` … ``first + count - 1`` was claimed and the last ended (the
    registry's times, as :func:`held` and :func:`idle` read them): the window the batch's cores are read over. The
    benchmark's own window, from before the first POST to after its poll saw the last DONE, held 3-84 ms more before
    the first claim and 3-47 ms more after the last DONE under load (round 62), time in which the service's parts
    were mostly idle: over it, the cores used read low and the parts' sleep high."""
    times = claims_and_ends(registry, first, count)
    return min(began for began, _ in times), max(end for _, end in times)


def held(registry: Path, first: int, count: int) -> float:
    """The median seconds a ProbeTask run of ``first`` … ``first + count - 1`` held its slot, from its claim to its
    DONE (``started_at`` is the claim's time): what a run costs a slot, where the dispatch median (POST to
    ``run()``) counts the POST's answer and the wait for the claim, which no slot pays, and leaves out ``run()`` to
    DONE, which the slot pays."""
    return median([end - began for began, end in claims_and_ends(registry, first, count)])


def processes(registry: Path, first: int, count: int) -> int:
    """How many attempt processes executed the ProbeTask runs ``first`` … ``first + count - 1``: the processes named
    by their runs' holders (``host:pid``, then ``host:pid.n`` for its n-th run), each one a fork and a first set-up of
    its own, whose first run costs more than the next ones (the pages it copies from its worker as it writes them)."""
    holders = [worker.rpartition(":") for (worker,) in batch(registry, first, count, "worker") if worker]
    return len({(host, pid.partition(".")[0]) for host, _, pid in holders})


def idle(registry: Path, first: int, count: int, slots: int) -> tuple[float, float, float] | None:
    """The seconds a slot sat idle per run of ProbeTask ``first`` … ``first + count - 1``, from a run's DONE to the
    slot's next claim: median, p90 and mean. The k-th claim after the first ``slots`` is paired with the k-th DONE
    (the slots as a queue: the mean is exact, however the pairs fall; each pair's spread near enough), so ``slots``
    × (the mean held + the mean idle) is a run's share of the wall time while the batch ran. None where no run
    followed another on a slot (no more runs than ``slots``): no idle time was measured."""
    times = claims_and_ends(registry, first, count)
    claims = sorted(began for began, _ in times)
    ends = sorted(end for _, end in times)
    gaps = [claim - end for claim, end in zip(claims[slots:], ends, strict=False)]
    if not gaps:
        return None
    return median(gaps), percentile(gaps, 90), sum(gaps) / len(gaps)


def idle_said(gaps: tuple[float, float, float] | None) -> str:
    """:func:`idle`'s figures as the benchmark prints them, or that none was measured."""
    if gaps is None:
        return "not measured (no run followed another on a slot)"
    gap, gap_p90, gap_mean = gaps
    return f"{gap * 1000:.2f} ms median, p90 {gap_p90 * 1000:.2f}, mean {gap_mean * 1000:.2f}"


#: the work a batch's wait is sized from (:mod:`benchmarks.patience`): a run's share of a batch's time, the slowest yet
BATCH_RUN = "a run's share of the slowest batch yet"


def sustained(cluster: Cluster, first: int, count: int) -> float:
    """Runs/s: ``count`` new ProbeTask runs POSTed at once (16 clients), from the first POST to the last run DONE.
    Waited for up to :data:`benchmarks.patience.HANG` times ``count`` runs of the slowest batch yet (before the
    first, of the slowest dispatch sample: a run's POST to its run() alone, less than a run costs a batch)."""
    requests = [("POST", f"{TASK_PATH}?n={n}") for n in range(first, first + count)]
    patience = cluster.patience
    each, of = patience.longest(BATCH_RUN), BATCH_RUN
    if each <= 0:
        each, of = patience.longest(RUN), RUN
    began = time.time()
    hammer(cluster.api_url, requests, CLIENTS, duration=None, per_client=math.ceil(count / CLIENTS)).check(202)
    db = sqlite3.connect(f"file:{cluster.settings.registry_path}?mode=ro", uri=True)
    try:
        done, last = patience.wait(
            lambda: ended(db, first, count), f"{count} runs to end", count * each, f"{count} × {of}"
        )
    finally:
        db.close()
    patience.note(BATCH_RUN, (last - began) / done)
    return float(done / (last - began))


def loop_waits(pid: int) -> tuple[float, int]:
    """Of the worker's loop (its process's main thread): seconds it has waited for a core while runnable (its
    ``schedstat``), and how often it was preempted (``nonvoluntary_ctxt_switches``)."""
    waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    status = Path(f"/proc/{pid}/status").read_text()
    (preempted,) = (int(line.split()[1]) for line in status.splitlines() if line.startswith("nonvoluntary_ctxt"))
    return waited, preempted


#: seconds between two reads of every thread's schedstat by :class:`Cores` (a process that exits loses at most this)
SAMPLE_EVERY = 0.25
#: the parts :class:`Cores` tells apart
PARTS = ("loop", "attempts", "attempts' other threads", "luigid", "API")


def started(pid: int, tid: int) -> float:
    """When thread ``tid`` of ``pid`` started, in seconds since boot (``CLOCK_BOOTTIME``, in clock ticks), or 0."""
    try:
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except OSError:
        return 0.0
    return int(stat.rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")


class Cores:
    """Of each part (the worker's loop: its process's threads; its attempts and spares, their main threads and the
    others (luigi's keep-alive, the heartbeat) apart; luigid; the API), the
    nanoseconds its threads ran, waited for a core while runnable, and slept, from each thread's ``schedstat`` read
    every :data:`SAMPLE_EVERY` seconds while a phase runs (the last read of a thread that exits is kept; a thread that
    appears mid-phase starts from 0, at its start). A thread slept for the time it was there, neither running nor
    waiting for a core: waiting on something other than a core (a lock, a reply, a run to do); within a window of
    the phase where one is given (:meth:`used`)."""

    def __init__(self, roots: dict[str, int]) -> None:
        #: the pid at the root of each part's processes (the loop's: its attempts' too)
        self.roots = roots
        self.first: dict[int, tuple[int, int, float]] = {}
        self.last: dict[int, tuple[str, int, int, float]] = {}
        self.done = threading.Event()
        #: CPU seconds its reads took (this benchmark's, told apart from its clients'), and of them the system's
        self.cost = 0.0
        self.cost_system = 0.0
        self.reader = threading.Thread(target=self._read, daemon=True)

    def _sample(self) -> dict[int, tuple[str, int, int, float]]:
        found, now = {}, time.clock_gettime(time.CLOCK_BOOTTIME)
        for part, root in self.roots.items():
            for pid in [root, *descendants(root)]:
                role = "attempts" if part == "loop" and pid != root else part
                for tid, (ran, waited) in thread_times(pid).items():
                    if tid not in self.first and tid not in self.last:  # new since the phase began
                        self.first[tid] = (0, 0, started(pid, tid) or now)
                    kind = f"{role}' other threads" if role == "attempts" and tid != pid else role
                    found[tid] = (kind, ran, waited, now)
        return found

    def _read(self) -> None:
        began = resource.getrusage(resource.RUSAGE_THREAD)
        while not self.done.wait(SAMPLE_EVERY):
            self.last.update(self._sample())
        ended = resource.getrusage(resource.RUSAGE_THREAD)
        self.cost_system = ended.ru_stime - began.ru_stime
        self.cost = ended.ru_utime - began.ru_utime + self.cost_system

    def __enter__(self) -> Cores:
        #: the wall clock's time (``time.time``, the registry's) less the boot clock's, which the samples are told in
        self.offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        self.last = self._sample()
        self.first = {tid: (ran, waited, at) for tid, (_, ran, waited, at) in self.last.items()}
        self.reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.reader.join()
        self.last.update(self._sample())

    def used(self, window: tuple[float, float] | None = None) -> dict[str, tuple[float, float, float]]:
        """Seconds each part ran, waited for a core and slept over the phase; with ``window`` (its start and end by
        the wall clock: :func:`busy`'s), a thread's sleep is the time it was there within the window, less what it ran
        and waited (over the phase: at its edges the parts are mostly idle, the window's is what they waited on)."""
        start, end = (-math.inf, math.inf) if window is None else (t - self.offset for t in window)
        sums = {part: [0.0, 0.0, 0.0] for part in PARTS}
        for tid, (role, ran, waited, at) in self.last.items():
            ran0, waited0, since = self.first.get(tid, (0, 0, at))
            there = min(at, end) - max(since, start)
            sums[role][0] += (ran - ran0) / 1e9
            sums[role][1] += (waited - waited0) / 1e9
            sums[role][2] += max(0.0, there - (ran - ran0 + waited - waited0) / 1e9)
        return {part: (ran, waited, slept) for part, (ran, waited, slept) in sums.items()}


#: the processes whose CPU per run :func:`cpu_used` reads, user and system apart: the worker's own (its loop), its
#: attempt processes and spares (those it reaped too), luigid, the API's gunicorn (master and workers), this
#: benchmark's clients (and its polls)
PROCESSES = ("the worker's loop", "its attempt processes", "luigid", "the API", "this benchmark's clients")
#: the service's processes of :data:`PROCESSES` (all but this benchmark's clients)
SERVICE = PROCESSES[:4]
#: the new files and folders (inodes) a trivial run makes: its step's folder and ``log/``, ``params.txt``,
#: ``out.txt``, ``stdout.log`` and ``stderr.log``
RUN_INODES = 6


def cpu_used(cluster: Cluster, workers: subprocess.Popen[bytes]) -> dict[str, tuple[float, float]]:
    """CPU seconds used so far by each of :data:`PROCESSES`, user and system (the kernel's work for it) apart; and the
    whole machine's (``machine``, busy: all of it as user)."""
    assert cluster.luigid is not None
    own = cpu_seconds(workers.pid), cpu_seconds(workers.pid, system=True)
    tree = tree_cpu(workers.pid), tree_cpu(workers.pid, system=True)
    luigid = tree_cpu(cluster.luigid.pid), tree_cpu(cluster.luigid.pid, system=True)
    api = cluster.apis[cluster.api_url].pid
    ours = resource.getrusage(resource.RUSAGE_SELF)
    both = {
        PROCESSES[0]: own,
        PROCESSES[1]: (tree[0] - own[0], tree[1] - own[1]),
        PROCESSES[2]: luigid,
        PROCESSES[3]: (cluster.api_cpu(cluster.api_url), tree_cpu(api, system=True)),
        PROCESSES[4]: (ours.ru_utime + ours.ru_stime, ours.ru_stime),
    }
    return {**{name: (total - system, system) for name, (total, system) in both.items()}, "machine": (busy_cpu(), 0.0)}


def by_process_said(per_run: dict[str, tuple[float, float]]) -> str:
    """The ms of CPU a run cost each of :data:`PROCESSES` (``per_run``: user and system), the service's together and
    the kernel's share of them."""
    service = sum(sum(per_run[name]) for name in SERVICE)
    kernel = sum(per_run[name][1] for name in SERVICE)
    return (
        "CPU per run by process, user + system (ms): "
        + ", ".join(f"{name} {user:.2f} + {system:.2f}" for name, (user, system) in per_run.items())
        + f"; the service's {service:.2f}, of which the kernel's {kernel:.2f} ({kernel / service:.0%})"
    )


def ceiling(cores: int, per_run_ms: float, one: float) -> tuple[float, str]:
    """What the cores allow while a run costs ``per_run_ms`` ms of CPU over every part (the service's and this
    benchmark's clients, with 2 workers): ``cores`` ÷ that, in runs/s, the most any number of workers can sustain;
    and said beside the 1 worker's rate ``one``: the most 2 workers can gain over 1 unless a run's CPU falls."""
    cap = cores / per_run_ms * 1000
    said = (
        f"{cores} cores ÷ {per_run_ms:.2f} ms of CPU a run (every part, this benchmark's clients too, with 2 workers) "
        f"= {cap:.0f} runs/s at most: {cap / one:.2f}x the 1 worker's {one:.0f}/s, the most 2 workers can gain over 1 "
        f"unless a run's CPU falls"
    )
    return cap, said


class Batch(NamedTuple):
    """What :func:`measured` answers of a batch: its workers' slots, its rate (runs/s), what it said, the ms of CPU a
    run cost each of :data:`PROCESSES` (user, system), the machine's calibration as it began, and the µs of CPU an
    inode of a run's cost where the runs make theirs as it began and as it ended
    (:func:`benchmarks.machine.run_inodes_cpu`)."""

    slots: int
    rate: float
    said: str
    per_run: dict[str, tuple[float, float]]
    calibration: Calibration
    inode_us: tuple[float, float]


def measured(cluster: Cluster, workers: subprocess.Popen[bytes], slots: int, first: int, count: int) -> Batch:
    """:func:`sustained`, and where its CPU went: per run, by process, user and system apart (:func:`by_process_said`),
    beside the machine's calibration and what an inode of a run cost where the runs make theirs as it began and ended
    (:mod:`benchmarks.machine`), the share of the cores' time the hypervisor stole, the cores they used beside the
    machine's; how long a run held its slot; per run, what each part ran, waited for a core and slept (:class:`Cores`);
    and the ms of CPU a run cost each of :data:`PROCESSES`, user and system. The probes' runs are numbered from the top
    of the batch's span (:data:`BATCH_SPAN`), which its runs never reach."""
    if count > BATCH_SPAN - 2 * PROBE_SETS:
        raise ValueError(f"{count:,} runs leave no numbers in a batch's span for the probes")
    calibration = calibrate()
    targets = cluster.settings.local_targets_dir
    probe = run_inodes_cpu(targets, first + BATCH_SPAN - 2 * PROBE_SETS)
    began, before, waits_before = time.monotonic(), cpu_used(cluster, workers), loop_waits(workers.pid)
    stolen_before = stolen()
    assert cluster.luigid is not None
    roots = {"loop": workers.pid, "luigid": cluster.luigid.pid, "API": cluster.apis[cluster.api_url].pid}
    with Cores(roots) as sampled:
        rate = sustained(cluster, first, count)
    after = cpu_used(cluster, workers)
    waited, preempted = (after - then for after, then in zip(loop_waits(workers.pid), waits_before, strict=True))
    wall = time.monotonic() - began
    steal = (stolen() - stolen_before) / (wall * len(os.sched_getaffinity(0)))
    probe_after = run_inodes_cpu(targets, first + BATCH_SPAN - PROBE_SETS)
    used = {name: tuple(a - b for a, b in zip(after[name], before[name], strict=True)) for name in after}
    clients = used[PROCESSES[4]]  # the reads of schedstat apart
    used[PROCESSES[4]] = (clients[0] - sampled.cost + sampled.cost_system, clients[1] - sampled.cost_system)
    per_run = {name: (user / count * 1000, system / count * 1000) for name, (user, system) in used.items()}
    machine = per_run.pop("machine")[0]
    window = busy(cluster.settings.registry_path, first, count)
    span = window[1] - window[0]  # the cores over the runs' own window, not this benchmark's wider one (wall)
    cores = ", ".join(f"{name} {sum(used[name]) / span:.2f}" for name in PROCESSES)
    total = every_part(per_run)
    said = (
        f"{rate:.1f} runs/s; {by_process_said(per_run)} (the reads of schedstat {sampled.cost / count * 1000:.2f} "
        f"apart); an inode of a run's, made beside the runs', cost {probe * 1e6:.0f} µs of CPU as the batch began, "
        f"{probe_after * 1e6:.0f} as it ended (a run makes {RUN_INODES}); the machine as it began: "
        f"{calibration.said()}, {steal:.1%} of the cores' time stolen meanwhile; from the first claim to the last "
        f"DONE ({span * 1000:.0f} ms) these used {total * count / 1000 / span:.2f} cores ({cores}); the machine "
        f"{machine * count / 1000 / wall:.2f} over the {wall * 1000:.0f} ms measured (others' load goes on at the "
        "edges, the service's parts are mostly idle there); the "
        f"worker's loop waited for a core {waited / count * 1000:.2f} ms per run, preempted {preempted / count:.2f} "
        "times per run"
    )
    slot = held(cluster.settings.registry_path, first, count)
    said += (
        f"; a run held its slot (claim to DONE) {slot * 1000:.2f} ms median, {slots} ÷ that "
        f"{slots / slot:.1f}/s (beside {slots} ÷ the dispatch median, POST to run()); the slot sat idle (a run's DONE "
        f"to its slot's next claim) {idle_said(idle(cluster.settings.registry_path, first, count, slots))}; its runs "
        f"were executed by {processes(cluster.settings.registry_path, first, count)} attempt processes"
    )
    parts = sampled.used(window)
    said += "; per run, ran / waited for a core / slept (ms): " + ", ".join(
        f"{part} {ran / count * 1000:.2f} / {waited / count * 1000:.2f} / {slept / count * 1000:.2f}"
        for part, (ran, waited, slept) in parts.items()
    )
    return Batch(slots, rate, said, per_run, calibration, (probe * 1e6, probe_after * 1e6))


def every_part(per_run: dict[str, tuple[float, float]]) -> float:
    """The ms of CPU a run cost every part, this benchmark's clients too (``per_run``: by process, user and system)."""
    return sum(sum(pair) for pair in per_run.values())


def scaling_said(one: dict[str, tuple[float, float]], two: dict[str, tuple[float, float]]) -> str:
    """The CPU a run cost with 1 worker and with 2 (``one``, ``two``: ms by process, user and system, as
    :func:`measured` gives them): its attempt process's and every part's, each with its ratio. What 2 workers can gain
    over 1 is 2 ÷ the second ratio, at most, once the cores are full (:func:`ceiling`). The ratio is the cost of
    cores taken in turns: the same code run slower once other processes take a run's core while it waits, not more
    work, nor anything the two share (CONTRIBUTING.md, "Performance notes"); ~1.0x when other load takes the cores
    from 1 worker as well."""
    attempt_one, attempt_two = sum(one[PROCESSES[1]]), sum(two[PROCESSES[1]])
    all_one, all_two = every_part(one), every_part(two)
    return (
        f"CPU a run, 1 -> 2 workers: the attempt's {attempt_one:.2f} -> {attempt_two:.2f} ms "
        f"({attempt_two / attempt_one:.2f}x), every part's {all_one:.2f} -> {all_two:.2f} ms ({all_two / all_one:.2f}x)"
    )


def linear(one: float, per_run_ms: float, cores: int) -> tuple[float, str]:
    """What 2 workers would sustain were workers ~linear up to the cores (issue 21's words): twice the 1 worker's rate
    ``one``, or what ``cores`` allow at the ``per_run_ms`` ms of CPU a run cost every part with 1 worker
    (:func:`ceiling`), whichever is lower. The CPU a run of the 1 worker's batches, not the 2 workers': a run that
    costs more once two take turns on the cores lowers the 2 workers' rate against this, as it should."""
    cap, _ = ceiling(cores, per_run_ms, one)
    said = (
        f"~linear up to the cores: the lower of 2 × the 1 worker's {one:.0f}/s and {cores} cores ÷ the "
        f"{per_run_ms:.2f} ms of CPU a run cost every part with 1 worker ({cap:.0f}/s)"
    )
    return min(2 * one, cap), said


def per_process_median(batches: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """The median over ``batches`` of each process's ms of CPU a run, user and system apart (:func:`measured`'s)."""
    return {name: (median([b[name][0] for b in batches]), median([b[name][1] for b in batches])) for name in batches[0]}


class Round(NamedTuple):
    """One round of :func:`scaling_rounds`: a batch of 2 workers, the batch of 1 beside it, and the dispatch samples
    taken after the 2 workers' batch (seconds, POST to ``run()``), of each kind; what the round's holders were."""

    two: Batch
    one: Batch
    #: each begun on a settled cluster, as :mod:`benchmarks.dispatch` takes its own: the baseline's
    settled: list[float]
    #: each begun as the last ended, straight after the batch: said beside it
    warm: list[float]
    #: of each settled sample, whether the attempt process that ran it had run none before (its first run)
    fresh: list[bool]


def scaling_order(r: int) -> tuple[int, int]:
    """The workers of round ``r``'s two batches, in the order they run: which runs first alternating by round (a batch
    after another finds the machine as that one left it), the 2 workers' first in the first."""
    return (2, 1) if r % 2 == 0 else (1, 2)


def scaling_asked(repeats: int) -> int:
    """The rounds of :func:`scaling_rounds` taken at least: ``--repeats`` batches of each side, read as pairs of a 2
    workers' and a 1 worker's batch, half as many (3 at the default 5: the six batches of earlier rounds)."""
    return math.ceil(repeats / 2)


def dispatch_figure(rounds: Sequence[Round]) -> float:
    """The 2 workers' median rate over 2 ÷ the median of the settled dispatch samples of ``rounds`` (issue 21's
    "runs/s vs 2 ÷ dispatch median")."""
    return median([found.two.rate for found in rounds]) / (2 / median([s for found in rounds for s in found.settled]))


def linear_figure(rounds: Sequence[Round], cores: int) -> float:
    """The 2 workers' median rate over :func:`linear` of the 1 worker's batches of ``rounds``."""
    one = median([found.one.rate for found in rounds])
    cpu_one = every_part(per_process_median([found.one.per_run for found in rounds]))
    return median([found.two.rate for found in rounds]) / linear(one, cpu_one, cores)[0]


#: the figures of :func:`scaling_rounds` judged at a target, each with its limit (a ratio at least)
JUDGED = {"dispatch": 0.8, "linear": 0.8}


def judged_intervals(rounds: Sequence[Round], cores: int, level: float) -> dict[str, Interval]:
    """The interval of each of :data:`JUDGED` at ``level``: a seeded bootstrap over ``rounds``, each drawn whole (the
    2 workers' batch with the dispatch samples taken after it and the 1 worker's batch beside it), widened for so few
    rounds (:func:`benchmarks.spread.of_few_rounds`)."""
    return {
        "dispatch": of_few_rounds(rounds, dispatch_figure, level),
        "linear": of_few_rounds(rounds, partial(linear_figure, cores=cores), level),
    }


def scaling_rounds(
    cluster: Cluster, workers: subprocess.Popen[bytes], count: int, repeats: int, cores: int
) -> tuple[list[Round], float]:
    """Rounds of a 2 workers' batch and a 1 worker's (:func:`scaling_order`), each on workers started for it and warmed
    alike (the first on ``workers``), and the dispatch samples: after each 2 workers' batch once its runs ended,
    :data:`DISPATCH_EACH` one after another on its workers as the batch left them (warm), then as many each begun on
    a settled cluster (:func:`benchmarks.dispatch.settle`, against the cluster's idle CPU measured once after the
    warm-up): the dispatch median as the dispatch benchmark measures it, in the minutes of the rates set beside it, as
    the file system and the machine's other load then were. :func:`scaling_asked` rounds, then more while an interval
    of :data:`JUDGED` does not decide its target (:func:`benchmarks.spread.take_rounds`, up to
    :func:`benchmarks.spread.round_cap`). Answers the rounds and the level their intervals are drawn at."""
    through_service(cluster, -1)  # warm: the API's catalog, the workers' luigi
    idle = idle_cpu(cluster)  # the warm-up run ended (through_service waits for it): known idle
    rounds: list[Round] = []
    asked = scaling_asked(repeats)
    cap = round_cap(asked)
    drawn_at = level(asked, cap)
    warmed: subprocess.Popen[bytes] | None = workers  # the first batch's: those the warm-up above warmed

    def one_round(r: int) -> None:
        nonlocal warmed
        found: dict[int, Batch] = {}
        settled: list[float] = []
        warm: list[float] = []
        fresh: list[bool] = []
        for slots in scaling_order(r):
            number = 2 * r + len(found)  # of the batch, from 0
            if warmed is not None:
                batch_workers, warmed = warmed, None
            else:
                batch_workers = cluster.start_workers(slots)
                through_service(cluster, -2 - number)  # warm as the first were: a start-up is not the rate
            found[slots] = measured(cluster, batch_workers, slots, SCALING_FIRST + number * BATCH_SPAN, count)
            print(f"{slots} worker{'s' if slots > 1 else ''}, round {r + 1}, batch {number + 1}: {found[slots].said}")
            if slots == 2:  # numbers no batch's runs are given
                first = 2 * number * DISPATCH_EACH
                warm.extend(through_service(cluster, first + n)[2] for n in range(DISPATCH_EACH))
                for n in range(DISPATCH_EACH):
                    settle(cluster, idle)
                    settled.append(through_service(cluster, first + DISPATCH_EACH + n)[2])
                fresh = first_runs(cluster.settings.registry_path, first + DISPATCH_EACH, DISPATCH_EACH)
            cluster.procs.stop(batch_workers)
        rounds.append(Round(found[2], found[1], settled, warm, fresh))
        print(f"round {r + 1}: {round_said(rounds[-1])}")

    def decided() -> bool:
        return all(decides(found, JUDGED[name]) for name, found in judged_intervals(rounds, cores, drawn_at).items())

    take_rounds(asked, cap, one_round, decided)
    return rounds, drawn_at


def first_runs(registry: Path, first: int, count: int) -> list[bool]:
    """Of the ProbeTask runs ``first`` … ``first + count - 1``, in that order: whether each was its attempt process's
    first run (its holder ``host:pid``, where a later run's is ``host:pid.n``; none where no holder was recorded)."""
    holders = dict(batch(registry, first, count, "CAST(json_extract(params, '$.n') AS INTEGER), worker"))
    return [bool(holders[n]) and "." not in holders[n].rpartition(":")[2] for n in range(first, first + count)]


def round_said(found: Round) -> str:
    """A round's figures as the benchmark prints them: its two rates, its settled and warm dispatch samples (an F
    marks one run by a fresh attempt process, its first run), and the round's own ratio to 2 ÷ its settled median."""
    samples = " ".join(
        f"{s * 1000:.2f}{'F' if fresh else ''}" for s, fresh in zip(found.settled, found.fresh, strict=True)
    )
    settled = median(found.settled)
    return (
        f"2 workers {found.two.rate:.1f}/s, 1 worker {found.one.rate:.1f}/s; dispatch samples settled (ms) {samples} "
        f"(median {settled * 1000:.2f}; 2 ÷ that {2 / settled:.0f}/s, the 2 workers' rate "
        f"{found.two.rate * settled / 2:.3f}x of it), warm median {median(found.warm) * 1000:.2f}"
    )


def run(ctx: Context) -> list[Figure]:
    count = 400 if ctx.quick else 2_000
    with ctx.cluster(NAME) as cluster:
        if cluster.tune(max_queue=count).max_queue < count:
            raise RuntimeError(f"NECTAR_MAX_QUEUE={cluster.settings.max_queue} is below the {count:,} runs sent here")
        cluster.start_luigid()
        workers = cluster.start_workers(2)
        cluster.start_api()
        cores = len(os.sched_getaffinity(0))
        rounds, drawn_at = scaling_rounds(cluster, workers, count, ctx.repeats, cores)
        batches = [
            found.two if slots == 2 else found.one for r, found in enumerate(rounds) for slots in scaling_order(r)
        ]
        rates = {slots: [found.rate for found in batches if found.slots == slots] for slots in (1, 2)}
        cpu = {slots: [found.per_run for found in batches if found.slots == slots] for slots in (1, 2)}
        settled, warm_samples = [s for found in rounds for s in found.settled], [s for f in rounds for s in f.warm]
        dispatch, warm = median(settled), median(warm_samples)
        every, default = RECYCLED_AFTER[0 if ctx.quick else 1], cluster.settings.runs_per_process
        served = processes(cluster.settings.registry_path, SCALING_FIRST, count)  # the first batch's
        # each of as many processes as served the first batch, recycled as often; a whole number of runs per client,
        # so that every client sends as many (hammer sends each POST once: a client past the last run stops)
        recycled_count = math.ceil(every * served * RECYCLES / CLIENTS) * CLIENTS
        if recycled_count > cluster.settings.max_queue:  # the API reads its queue's bound as it starts
            if cluster.tune(max_queue=recycled_count).max_queue < recycled_count:
                raise RuntimeError(f"NECTAR_MAX_QUEUE={cluster.settings.max_queue} is below {recycled_count:,} runs")
            cluster.stop_apis()
            cluster.start_api()
        paired, said_recycled = recycle_pairs(cluster, every, recycled_count)
    two, one = median(rates[2]), median(rates[1])
    cpu_one, cpu_two = per_process_median(cpu[1]), per_process_median(cpu[2])
    recycled, without = median([w for w, _ in paired]), median([o for _, o in paired])
    machine = machine_said(batches, calibrate())
    each = f"{DISPATCH_EACH} after each 2 workers' batch"
    print(f"dispatch median {dispatch * 1000:.1f} ms, each begun on a settled cluster (n={len(settled)}, {each})")
    print(f"dispatch median {warm * 1000:.1f} ms, each begun as the last ended (n={len(warm_samples)}, {each} first)")
    print(f"the machine over the batches: {machine}")
    for slots in (2, 1):
        said_rates = ", ".join(f"{rate:.1f}" for rate in rates[slots])
        print(f"{slots} worker{'s' if slots > 1 else ''}: runs/s {said_rates}, median {median(rates[slots]):.1f}")
    print(f"2 workers, each attempt process recycled after {every} runs: {said_recycled}")
    print(f"a recycle: {recycle_said(paired, every, 2, default)}")
    scaling = scaling_said(cpu_one, cpu_two)
    print(f"the cores' ceiling: {ceiling(cores, every_part(cpu_two), one)[1]}; {scaling} (medians of the batches)")
    order = f"median of {len(rates[2])} batches, each beside one of 1 worker, which ran first alternating"
    figure, ideal = (
        f"runs/s, {count:,} runs at once, 2 workers ({order})",
        f"2 ÷ dispatch median (n={len(settled)}, taken after each 2 workers' batch, each begun on a settled "
        f"cluster as the dispatch benchmark takes its own; the machine meanwhile: {machine})",
    )
    said_warm = (
        f"2 ÷ dispatch median of samples each begun as the last ended, straight after a batch (n={len(warm_samples)})"
    )
    up_to_the_cores, said_linear = linear(one, every_part(cpu_one), cores)
    intervals = judged_intervals(rounds, cores, drawn_at)
    spreads = {
        name: verdict(
            found,
            JUDGED[name],
            drawn_at,
            f"a seeded bootstrap of {len(rounds)} rounds, each drawn whole, widened for so few",
        )
        for name, found in intervals.items()
    }
    for name, found in spreads.items():
        print(f"the ratio to {name}: {found}")
    return [
        Figure(
            NAME,
            figure,
            two,
            "/s",
            f"{ideal}; the ratio's {spreads['dispatch']}",
            2 / dispatch,
            ratio_at_least(JUDGED["dispatch"]),
            spread=intervals["dispatch"],
        ),
        Figure(NAME, figure, two, "/s", said_warm, 2 / warm),
        Figure(
            NAME,
            figure,
            two,
            "/s",
            f"{said_linear}; the ratio's {spreads['linear']}",
            up_to_the_cores,
            ratio_at_least(JUDGED["linear"]),
            spread=intervals["linear"],
        ),
        Figure(NAME, figure, two, "/s", f"the same with 1 worker (median; {scaling})", one),
        Figure(
            NAME,
            f"runs/s, {recycled_count:,} runs at once, 2 workers, each process recycled after {every} runs "
            f"(median of {len(paired)} batches)",
            recycled,
            "/s",
            "without a recycle (the same runs, each batch paired with one above)",
            without,
        ),
    ]


def machine_said(batches: list[Batch], last: Calibration) -> str:
    """The machine's state over ``batches`` (:func:`measured`'s), ``last`` its calibration after them: the
    calibration's median and range (:func:`benchmarks.machine.calibrations_said`), and what an inode of a run cost
    where the runs make theirs, as each batch began and ended, the median and range of the 2 workers' batches and of
    the 1 worker's apart: above ~50 µs, files removed in the last minutes near the runs' own made each run's kernel
    time dearer (:mod:`benchmarks.machine`), and a side that paid it where the other did not reads a ratio that says
    the file system, not the workers."""
    sides = []
    for slots in sorted({found.slots for found in batches}, reverse=True):
        inodes = [us for found in batches if found.slots == slots for us in found.inode_us]
        whose = f"{slots} workers'" if slots > 1 else "1 worker's"
        sides.append(f"{whose} batches {median(inodes):.0f} µs ({min(inodes):.0f}-{max(inodes):.0f})")
    calibrations = calibrations_said([found.calibration for found in batches] + [last])
    return f"{calibrations}; an inode of a run's, {', '.join(sides)}"


def recycle_pairs(cluster: Cluster, every: int, count: int) -> tuple[list[tuple[float, float]], str]:
    """:data:`RECYCLE_PAIRS` pairs of batches of ``count`` runs to 2 workers: one with each attempt process recycled
    after ``every`` runs, one without (``NECTAR_RUNS_PER_PROCESS`` at its default), each on workers started for it and
    warmed alike, which of the two runs first alternating by pair (a batch after another finds the machine as that one
    left it: the targets' folder fuller, the file system's freed inodes nearer). Answers each pair's rates (with,
    without), and what the last batch with recycles said (:func:`measured`)."""
    pairs, said = [], ""
    for pair in range(RECYCLE_PAIRS):
        rates = {}
        for recycled in (True, False) if pair % 2 == 0 else (False, True):
            batch = 2 * pair + recycled
            workers = cluster.start_workers(2, **({"NECTAR_RUNS_PER_PROCESS": str(every)} if recycled else {}))
            through_service(cluster, RECYCLE_WARM - batch)  # warm as the 2 were
            first = RECYCLE_FIRST + batch * BATCH_SPAN
            _, rates[recycled], batch_said, *_ = measured(cluster, workers, 2, first, count)
            cluster.procs.stop(workers)
            if recycled:
                said = batch_said
                if (by := processes(cluster.settings.registry_path, first, count)) < count / every:
                    raise RuntimeError(f"{by} processes executed {count} runs: more than {every} each")
        pairs.append((rates[True], rates[False]))
    return pairs, said


def recycle_said(pairs: list[tuple[float, float]], every: int, slots: int, default: int) -> str:
    """What a recycle cost, from pairs of rates of ``slots`` slots with a recycle every ``every`` runs of a process
    and without (:func:`recycle_pairs`): the slot time a run took more (from the median of the pairs' ratios, beside
    the median rate without), times ``every``; and that cost spread over the ``default`` runs of a process
    (``NECTAR_RUNS_PER_PROCESS`` of the batches without). No measurable cost when the batches with recycles were as
    fast or faster (the pairs' spread is wider than the cost)."""
    ratios = ", ".join(f"{recycled / without:.3f}" for recycled, without in pairs)
    ratio, rate = median([recycled / without for recycled, without in pairs]), median([w for _, w in pairs])
    per_run = slots * (1 / (rate * ratio) - 1 / rate)
    if per_run <= 0:
        return (
            f"no measurable cost: the batches with one every {every} runs a process ran at {ratio:.3f}x the rate of "
            f"those without, {rate:.0f}/s (median of {len(pairs)} pairs' ratios: {ratios})"
        )
    return (
        f"{per_run * every * 1000:.1f} ms of a slot each ({slots} slots × the {per_run * 1000:.2f} ms a run took more "
        f"at {ratio:.3f}x the rate without, {rate:.0f}/s, × {every} runs a process; median of {len(pairs)} pairs' "
        f"ratios: {ratios}); at the default {default} runs a process, {per_run * every / default * 1000:.3f} ms a run"
    )
