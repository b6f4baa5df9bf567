"""Dispatch latency: POST → the task's run() starts, through the service, beside one ``python -m luigi`` per request
and one ``luigi.build`` with the local scheduler in a warm process.

The second baseline is the floor: a process that has luigi and the chain imported (as our attempt process, forked
ahead, has) times ``luigi.build([ProbeTask(n)], local_scheduler=True)`` from its call to ``run()`` starting. It pays
no interpreter start and no import, as the service does not (both happen before the request); it pays no HTTP,
no registry and no luigid, which the service must. Its samples are taken in turn with the service's, each in the
next of a few such processes (:class:`LocalBuilders`): both sides measured under the same conditions.
"""

from __future__ import annotations

import importlib
import os
import select
import subprocess
import sys
import time
from pathlib import Path
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
)
from benchmarks.load import hammer
from harness import LUIGI_CFG, read_calls
from harness.procfs import descendants, thread_cpu, thread_times
from nectar import wakeup
from nectar.registry import RunState
from nectar.registry.sqlite import SQLiteRunStore

NAME = "dispatch"
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}/ProbeTask"


#: the work a sample's waits are sized from (:mod:`benchmarks.patience`): its POST to its run's start, the slowest yet
RUN = "the slowest sample yet, POST to run()"
#: the floor's: a local build, call to run(), the slowest yet
BUILD = "the slowest local build yet"


def started_at(cluster: Cluster, n: int, written: int | None = None) -> float:
    """When ProbeTask(n)'s run() noted its start (it notes once per execution). With ``written`` (a descriptor
    readable once the ledger is written, made before the run was asked for: :func:`nectar.wakeup.changes`), the
    ledger is read only after a write to it, never while the run is on its way to run()."""

    def noted() -> float | None:
        return next((float(t) for m, t in cluster.ledger_lines("start") if int(m) == n), None)

    what, patience = f"ProbeTask(n={n}) to start", cluster.patience
    if written is None:
        return float(patience.wait(noted, what, patience.longest(RUN), RUN))
    slowest = patience.longest(RUN)
    bound = patience.bound(slowest)
    deadline = time.monotonic() + bound
    while (found := noted() if wakeup.drain(written) else None) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {bound:.1f}s waiting for {what} ({patience.basis(slowest, RUN)})")
        wakeup.readable([written], left)
    return found


def through_service(cluster: Cluster, n: int) -> tuple[float, float, float, float]:
    """Seconds from the POST leaving to its answer, to a worker's claim, to ProbeTask(n).run() starting; and the CPU
    seconds luigid used from the POST to the run's end (:func:`luigid_cpu`).

    Waits for the run to end before answering, so that every sample starts with idle workers. Meanwhile this process
    does only what a client does (the POST, its answer read): it learns of the run's start as the ledger is written
    (:func:`started_at`), as it learns of a floor's build's end on a pipe (:meth:`LocalBuilders.build`); it read the
    ledger as soon as the answer came and every 50 ms after, and the answer came before run() started in about half
    of the samples (162 of 302, by a median 4.8 ms, load 8-9): that read, of a ledger that grows with every sample,
    competed with the run on its way to run(), where no work of this process competes with a floor's build.
    """
    luigid = luigid_cpu(cluster)
    written = wakeup.changes(cluster.ledger)
    try:
        posted = time.time()
        run_id, _ = submit(cluster.api_url, f"{TASK_PATH}?n={n}")
        answered = time.time()
        began = started_at(cluster, n, written)
    finally:
        wakeup.close_all(written)
    patience = cluster.patience
    slowest = max(patience.longest(RUN), began - posted)
    run = cluster.run_ended(run_id, slowest, RUN)
    patience.note(RUN, began - posted)
    assert run.started_at is not None  # the claim's time
    return answered - posted, run.started_at - posted, began - posted, luigid_cpu(cluster) - luigid


def luigid_cpu(cluster: Cluster) -> float:
    """CPU seconds the cluster's luigid has used so far (every thread, to the nanosecond). A trivial run's share is
    its attempt's two frames on an upgraded connection (the batched add_task, add_worker and get_work before run(),
    the DONE add_task after): in a process kept busy, about 90 µs of Python (luigi's scheduler 55, reading and
    answering the frames the rest), twice that with caches cold; most of a run's 0.3 (busy) to 0.6 ms (woken for it)
    is the kernel's (loopback TCP, epoll, the wake-ups) and a cold process's."""
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
    workers = cluster.patience.wait(
        lambda: found if len(found := cluster.api_workers(cluster.api_url)) == api_workers else None,
        f"the API's {api_workers} workers",
    )
    before = read_calls(workers)
    began = time.perf_counter()
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

    try:  # each run of the bursts was answered in their time: tens of times it for them all to end
        sent = time.perf_counter() - began
        cluster.patience.wait(idle, "the warm-up runs to end", sent, f"the {(burst + 1) * WARM_BURST} POSTs' time")
    finally:
        runs.close()
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
        cluster.exited(proc, f"python -m luigi for ProbeTask(n={n})", latency, "its start to its run()")
    finally:
        cluster.procs.stop(proc)
    return latency


#: the processes the floor's builds take turns in (:class:`LocalBuilders`)
BUILDERS = 4


class LocalBuilders:
    """:data:`BUILDERS` processes started ahead, each with luigi and the chain imported and one build done, that
    build ``ProbeTask(n)`` with luigi alone when asked (:func:`build_on_request`), in turn: the floor's samples.

    Asked one build at a time between the service's samples, so both sides are measured under the same conditions
    (what else the machine runs at that moment, the cluster's idle processes beside them), and spread over several
    processes as the service's are (its attempt processes, workers, API workers): the median of one process's builds
    was steady within a run of this benchmark but 3.4 to 7.7 ms between runs of identical code, for the same work
    (15.2 M instructions per build under callgrind, the same to 0.5 % whatever the hash seed; 2.3 to 3.0 ms of CPU):
    the rest was time waiting for a core (``schedstat``: 0.1 ms in one process's median build, 13.6 ms in
    another's), which is whatever else runs at that moment, so both sides must take their samples at the same
    moments, from the same idle cluster. Printed: how long the floor's builds ran and waited for a core.
    """

    def __init__(self, cluster: Cluster, count: int = BUILDERS) -> None:
        self.cluster = cluster
        self.asked = 0
        self.pipes: list[tuple[int, int]] = []
        self.pids: list[int] = []
        #: of each measured build, whole, the nanoseconds its process ran and waited for a core while runnable
        self.spent: list[tuple[int, int]] = []
        #: of each measured build, the process that said it built it
        self.built_by: list[int] = []
        env = cluster.env(PYTHONPATH=os.pathsep.join([str(cluster.dir), os.getcwd()]), LUIGI_CONFIG_PATH=str(LUIGI_CFG))
        for i in range(count):
            ask, told = cluster.dir / f"build-ask-{i}", cluster.dir / f"build-told-{i}"
            os.mkfifo(ask)
            os.mkfifo(told)
            proc = cluster.procs.start(
                "local-build", [sys.executable, "-m", "benchmarks.dispatch", str(ask), str(told)], env
            )
            self.pipes.append((fifo_end(cluster, ask, os.O_WRONLY, proc), fifo_end(cluster, told, os.O_RDONLY, proc)))
            self.pids.append(proc.pid)
        for i in range(count):  # each process's first build, unmeasured
            self.build(-1000 - i)
        self.spent.clear()
        self.built_by.clear()

    def build(self, n: int) -> float:
        """Seconds from the call of ``luigi.build([ProbeTask(n)], local_scheduler=True)`` to its run() starting, in
        the next process in turn, once that build has ended."""
        (ask, told), pid = self.pipes[self.asked % len(self.pipes)], self.pids[self.asked % len(self.pids)]
        self.asked += 1
        before = thread_times(pid)
        os.write(ask, f"{n}\n".encode())
        # a process that hangs, not one that died (b""); nor a first build asked before the process opened its end
        # of ``told`` (a FIFO's read with no writer yet is the end of the stream, where poll waits for one)
        patience = self.cluster.patience
        bound, slowest = patience.bound(patience.longest(BUILD)), patience.longest(BUILD)
        if not select.select([told], [], [], bound)[0]:
            logs, basis = self.cluster.procs.logs, patience.basis(slowest, BUILD)
            raise RuntimeError(
                f"a local build process said nothing of ProbeTask(n={n}) in {bound:.1f} s ({basis}); see {logs}"
            )
        said = os.read(told, 64)
        if said != f"built {pid}\n".encode():  # by the process asked, and by no other
            raise RuntimeError(
                f"a local build process failed to build ProbeTask(n={n}) ({said!r}); see {self.cluster.procs.logs}"
            )
        self.built_by.append(pid)
        after = thread_times(pid)  # a thread the build started and ended (luigi's keep-alive) is not counted
        self.spent.append(
            (
                sum(ran - before[tid][0] for tid, (ran, _) in after.items() if tid in before),
                sum(waited - before[tid][1] for tid, (_, waited) in after.items() if tid in before),
            )
        )
        called = next(float(t) for m, t in self.cluster.ledger_lines("call") if int(m) == n)
        took = started_at(self.cluster, n) - called
        patience.note(BUILD, took)
        return took

    def close(self) -> None:
        for ask, told in self.pipes:
            os.close(ask)  # the process reads the end of its requests and exits
            os.close(told)


def fifo_end(cluster: Cluster, path: Path, flags: int, proc: subprocess.Popen[bytes]) -> int:
    """This side's end of the named pipe at ``path`` that ``proc`` opens too; raises if ``proc`` exits first."""

    def opened() -> int | None:
        if proc.poll() is not None:
            raise RuntimeError(f"a local build process exited with {proc.returncode} while starting")
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)  # the write end fails (ENXIO) until a reader has it open
        except OSError:
            return None
        os.set_blocking(fd, True)
        return fd

    return int(cluster.patience.wait(opened, f"a local build process to open {path.name}"))


#: the window over which the cluster's CPU is measured (:func:`settle`, :func:`idle_cpu`)
QUIET_WINDOW = 0.05
#: windows measured while the cluster is known idle (:func:`idle_cpu`): a second of them
IDLE_WINDOWS = 20
#: a window is quiet when the cluster used at most this many times its idle CPU in it (:func:`settle`)
QUIET_FACTOR = 3


def tree_threads(pids: list[int], waited: bool = False) -> dict[int, int]:
    """Of each live thread of ``pids`` and their descendants: the nanoseconds it has run (``schedstat``: exact, where
    ``stat`` counts 10 ms ticks, and a 50 ms window saw one tick or none); with ``waited``, the nanoseconds it has
    waited for a core while runnable instead (``schedstat``'s second field)."""
    found: dict[int, int] = {}
    for top in pids:
        for pid in (top, *descendants(top)):
            found.update((tid, times[1 if waited else 0]) for tid, times in thread_times(pid).items())
    return found


def cluster_threads(cluster: Cluster) -> dict[int, int]:
    """:func:`tree_threads` of the cluster's processes (luigid, the workers and their attempt processes, the API,
    the local builders)."""
    return tree_threads([proc.pid for proc in cluster.procs.procs if proc.poll() is None])


def used_since(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the threads of ``after`` ran since ``before`` (each from its start if it was not there yet; a
    thread that ended between the two is not counted)."""
    return sum(ran - before.get(tid, 0) for tid, ran in after.items()) / 1e9


def window_cpu(cluster: Cluster) -> float:
    """CPU seconds the cluster's processes used in the next :data:`QUIET_WINDOW` (a thread that ended meanwhile is
    not counted: the threads alive at its end, each from its start or the window's)."""
    before = cluster_threads(cluster)
    time.sleep(QUIET_WINDOW)
    return used_since(before, cluster_threads(cluster))


def idle_cpu(cluster: Cluster, windows: int = IDLE_WINDOWS) -> float:
    """CPU seconds the cluster's processes use in a :data:`QUIET_WINDOW` while it is idle: the median of ``windows``
    windows in a row, measured when it is known to be (no run active, nothing asked of it). What an idle cluster
    uses (its loops' wake-ups, luigid's timers, the reads of ``/proc`` that measure it) depends on the machine's
    speed: a quiet window is sized from it (:func:`settle`), not a constant."""
    return median([window_cpu(cluster) for _ in range(windows)])


def settle(cluster: Cluster, idle: float) -> None:
    """Until the cluster's processes used at most :data:`QUIET_FACTOR` times ``idle`` (:func:`idle_cpu`) of CPU in a
    :data:`QUIET_WINDOW`: what a run left to do after its end (an attempt process set up again as a spare, a worker's
    pass) is done before the next sample, of either side, begins."""
    most = QUIET_FACTOR * idle
    slowest = cluster.patience.longest(RUN)
    cluster.patience.wait(lambda: window_cpu(cluster) <= most, "the cluster's processes to be idle", slowest, RUN, 0)


def build_on_request(ask: str, told: str) -> None:
    """In each process :class:`LocalBuilders` starts: for each ``n`` read from ``ask``, note the call, build
    ``ProbeTask(n)`` with luigi alone, then say so on ``told``; until ``ask`` ends."""
    import luigi

    chain = importlib.import_module(MODULE)  # its ProbeTask, and its note() to the ledger
    with open(ask, "rb") as asks, open(told, "wb", buffering=0) as tells:
        for line in asks:
            n = int(line)
            chain.note("call", n, f"{time.time():.6f}")
            if not luigi.build([chain.ProbeTask(n=n)], local_scheduler=True, detailed_summary=False):
                raise SystemExit(f"luigi.build of ProbeTask(n={n}) failed")
            tells.write(f"built {os.getpid()}\n".encode())


def run(ctx: Context) -> list[Figure]:
    samples, seed_samples = max(20, 10 * ctx.repeats), max(5, 2 * ctx.repeats)
    with ctx.cluster(NAME) as cluster:
        cluster.start_luigid()
        workers = cluster.start_workers(2)
        cluster.start_api()
        cold = through_service(cluster, -1)[2]  # the first run: an API worker's first request, a worker's first claim
        warm_every_api_worker(cluster)  # and the workers' luigi
        builders = LocalBuilders(cluster)
        idle = idle_cpu(cluster)  # every warm-up run ended, the builders wait: known idle
        measured, local, worked = [], [], []
        #: per sample, seconds the workers' threads (POST to idle), luigid's (POST to the run's end) waited for a core
        workers_waits: list[float] = []
        waits: list[float] = []
        assert cluster.luigid is not None
        luigid_pid = cluster.luigid.pid
        for n in range(samples):  # the service's samples and the floor's in turn, each begun on an idle cluster
            settle(cluster, idle)
            before, before_waits = tree_threads([workers.pid]), tree_threads([workers.pid], waited=True)
            luigid_waits = tree_threads([luigid_pid], waited=True)
            measured.append(through_service(cluster, n))
            waits.append(used_since(luigid_waits, tree_threads([luigid_pid], waited=True)))
            settle(cluster, idle)  # what the run left its attempt process to do (set up again as a spare) is done
            worked.append(used_since(before, tree_threads([workers.pid])))
            workers_waits.append(used_since(before_waits, tree_threads([workers.pid], waited=True)))
            local.append(builders.build(200_000 + n))
        builders.close()
        phases = [p[:3] for p in measured]
        service = [p[-1] for p in phases]
        seed = [seed_design(cluster, 100_000 + n) for n in range(seed_samples)]
    answered, claimed, _ = (median(p) for p in zip(*phases, strict=True))
    print(
        f"median phases: POST → 202 {answered * 1000:.1f} ms, → claimed {claimed * 1000:.1f} ms, "
        f"→ run() {median(service) * 1000:.1f} ms"
    )
    slowest = "; ".join(" / ".join(f"{hop * 1000:.1f}" for hop in p) for p in sorted(phases, key=lambda p: p[-1])[-5:])
    print(f"the 5 slowest samples, POST → 202 / → claimed / → run() in ms: {slowest}")
    ran, waited = (median(ns) / 1e6 for ns in zip(*builders.spent, strict=True))
    print(f"the floor's builds, call to end: median {ran:.2f} ms on a core, {waited:.2f} ms waiting for one")
    print(f"luigid's CPU per run, POST to the run's end: median {median([p[3] for p in measured]) * 1000:.2f} ms")
    spent = median(worked) * 1000
    print(f"the workers' CPU per run (the worker, its attempt processes), POST to idle: median {spent:.2f} ms", end="")
    print(f" ({spent / ran:.2f}x the floor's build on a core)")
    print(
        f"waiting for a core per run (run-queue time, schedstat): the workers, POST to idle, median "
        f"{median(workers_waits) * 1000:.2f} ms; luigid, POST to the run's end, {median(waits) * 1000:.2f} ms"
    )
    quiet = f"at most {QUIET_FACTOR * idle * 1000:.3f} ms ({QUIET_FACTOR}x its idle {idle * 1000:.3f} ms)"
    print(f"a sample began once the cluster used {quiet} of CPU in {QUIET_WINDOW * 1000:.0f} ms")
    what = f"python -m luigi per request (n={seed_samples})"
    floor = f"luigi.build, local scheduler, warm process (n={samples}, {BUILDERS} processes, in turn with the service)"
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
    build_on_request(sys.argv[1], sys.argv[2])
