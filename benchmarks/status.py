"""Status lookup: GET /api/chainstatus at 16 clients, beside the seed's lookup and a hello world (same gunicorn).

The lookups and the hello world are measured in pairs of bursts side by side (ABBA), and their targets are on the
median of each pair's ratio. The machine's other load moves a burst's rate by half within seconds, and not the two
bursts of a pair alike: the rate target is on each rate over the share of the machine's CPU that the processes
outside the benchmark left it during its burst (/proc/stat's busy time less the API's and the clients'), which
on a machine to itself is the rate itself. So is the figure that must stay flat as the registry grows: each size's
lookup bursts beside hello bursts of their own (ABBA), the largest size's median ratio over the smallest's, with its
interval (95 %, shared among its looks: :func:`benchmarks.spread.level`); the sizes' pairs go on past ``--repeats``
rounds, within a cap, until that interval decides the target
(:mod:`benchmarks.spread`).
Beside them, the floor probe (:func:`benchmarks.baseline_app.floor_app`): the service's app answering a lookup's
bytes without the lookup, through Flask and every guard, and from a bare WSGI callable in front of Flask; and the
API's CPU per request of each (counted from /proc, which the machine's noise moves far less than a rate).
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from flask import Flask
from prometheus_client.mmap_dict import MmapedDict
from werkzeug.test import EnvironBuilder

from api.metrics import begun
from app import create_app
from benchmarks.baseline_app import FLOOR_FLASK, FLOOR_WSGI
from benchmarks.baseline_app import create_app as baseline_app
from benchmarks.harness import (
    Cluster,
    Context,
    Figure,
    at_least,
    at_most,
    median,
    percentile,
    ratio_at_least,
)
from benchmarks.load import Load, Request, hammer, median_p99, median_rate, rates, samples
from benchmarks.population import Probe, fill_luigid, fill_registry, fill_store
from benchmarks.spread import decides, enough, interval, level, of_few_rounds, round_cap, said, take_rounds, verdict
from harness.processes import waitfor
from harness.procfs import busy_cpu, thread_cpu
from nectar.gunicorn_ext import METRICS_PREFIX

NAME = "status"
CLIENTS = 16
#: runs known to luigid (and to the registry) for the main figures and the seed's lookup
MAIN_SIZE = 10_000
#: distinct keys the clients cycle through, drawn from the whole registry
SAMPLE = 2_000
#: lookups each client sends in a burst of the figure with a recycle (16 clients: 1,600 lookups, a count, not a time:
#: ~1.5 s quiet, seconds under load); gunicorn's ``max_requests`` is a worker's share of it (:func:`recycle_every`),
#: so that each worker is recycled about once a burst whatever the machine's speed. A replacement costs ~25-40
#: lookups' CPU (measured directly below): at 800 lookups a worker, under 5 % of them
RECYCLE_WINDOW = 100
#: the lookup bursts and hello bursts beside each other (ABBA: a lookup's first, then a hello's, then ...) in a repeat,
#: whose rates and p99s are compared pair by pair: the machine's noise moves a pair's two bursts alike
PAIRS = 2
#: lookups each client sends in a burst of the direct measure of a recycle (16 clients: 320 lookups, ~0.15 s of CPU)
RECYCLE_BURST = 20
#: the target of the lookups' rate at the largest size over the smallest (issue 21): flat, give or take 5 %
FLAT_LIMIT = 0.95
#: the target of the lookups' rate with a recycle in each burst over the rate without (a ratio at least)
RECYCLE_LIMIT = 0.9
#: requests an app answers in the benchmark's own process, for a request's CPU without serving it
IN_PROCESS_CALLS = 4_000
#: the garbage collector's collections during those requests are given per this many
GC_PER = 10_000
#: bytes written before each call of the in-process figure from cold caches, one in each 64-byte line: more than a
#: core's L1 and L2 caches hold (2 MiB of L2 a core on the 2-core machine of issue 21), as a served worker's thread
#: finds them after the clients, the gunicorn loop, the other threads and processes ran between two of its requests
EVICTION = 16 << 20
#: calls of that figure (each after its eviction, ~1 ms)
COLD_CALLS = 1_000
#: the size of a CPU cache's line
LINE = 64


def recycle_every(workers: int, per_client: int = RECYCLE_WINDOW) -> int:
    """gunicorn's ``max_requests`` for the figure with a recycle: a worker's share of a burst of ``per_client``
    lookups from each client, so that each of ``workers`` is recycled once per burst on average (give or take
    gunicorn's jitter, a tenth more, and the workers' uneven shares), however long the burst takes."""
    return CLIENTS * per_client // workers


def paired(values: list[float], baselines: list[float]) -> float:
    """The median of ``values[n] / baselines[n]``: each measured beside its baseline, so that what moved both (the
    machine's load over those seconds) cancels out."""
    return median([value / baseline for value, baseline in zip(values, baselines, strict=True) if baseline])


def ratio_median(pairs: Sequence[tuple[float, float]]) -> float:
    """:func:`paired` of ``pairs``, each a value and the baseline measured beside it."""
    return paired([value for value, _ in pairs], [baseline for _, baseline in pairs])


class CpuLeft:
    """From its making to :meth:`share`: the share of the machine's CPU that the processes outside the benchmark left
    it (1 on a machine to itself): /proc/stat's busy time, less its API's and this process's (its clients', threads of
    this process), is what the others used of the cores' time."""

    def __init__(self) -> None:
        self.busy, self.own, self.began = busy_cpu(), time.process_time(), time.perf_counter()

    def share(self, api_seconds: float) -> float:
        """The share left, the API having used ``api_seconds`` meanwhile: the cores' time less the others', and never
        less than the benchmark's own (its clients' and its API's: what it used was left to it), whatever share the
        others took (a machine whose other processes took 95 % of it left 5 %, not a floor's tenth); at most 1."""
        ours = time.process_time() - self.own + api_seconds
        others = max(0.0, busy_cpu() - self.busy - ours)
        cores = (os.cpu_count() or 1) * (time.perf_counter() - self.began)
        return min(1.0, max(ours, cores - others) / cores)


def tick_error(seconds: float) -> float:
    """The most /proc/stat can misread of the share of the cores' time others left over a window of ``seconds``
    (:class:`CpuLeft`): it counts a core's time in clock ticks (10 ms), a tick a core at each end of the window at
    most, over the cores' time. No finer count of the whole machine exists here (no ``/proc/schedstat``, no cgroup's
    ``cpu.stat``); a thread's own ``schedstat`` is exact, but the threads that ended within the window are lost."""
    return 2 / os.sysconf("SC_CLK_TCK") / seconds


def left_said(left: Sequence[tuple[float, float]], seconds: float) -> str:
    """The machine's CPU used outside the benchmark in each pair's bursts of ``seconds`` at least, and the bound of
    the error of those shares (:func:`tick_error`), which a rate over the share left multiplies by 1 ÷ that share."""
    error = tick_error(seconds)
    least = min((share for pair in left for share in pair), default=1.0)
    return (
        ", ".join(f"{1 - a:.0%}/{1 - b:.0%}" for a, b in left)
        + f" (each ±{error:.1%} of the cores' time: /proc/stat's ticks over {seconds:g} s; a rate over the share "
        f"left ±{error / max(least, error):.1%} at the least share, {least:.0%})"
    )


def over_cpu_left(loads: list[Load], left: list[float]) -> list[float]:
    """Each burst's rate over the share of the machine's CPU others left it: its rate on a machine to itself."""
    return [load.rate / share for load, share in zip(loads, left, strict=True)]


def in_turn(index: int, first: Callable[[], object], second: Callable[[], object]) -> None:
    """The ``index``-th pair of bursts: ``first`` then ``second``, the other way round at an odd ``index`` (ABBA: the
    first burst of a pair is the dearer one, and the machine's load moves the two of a pair alike)."""
    for burst in (first, second) if index % 2 == 0 else (second, first):
        burst()


def side_by_side(
    repeats: int,
    new: Callable[[], object],
    hello: Callable[[], object],
    before: Callable[[], object] = lambda: None,
    pairs: int = PAIRS,
) -> None:
    """``repeats`` times ``before``, then ``pairs`` pairs of bursts, one of ``new`` beside one of ``hello``, each side
    first in turn (:func:`in_turn`)."""
    for r in range(repeats):
        before()
        for p in range(pairs):
            in_turn(r * pairs + p, new, hello)


def over_hello(loads: dict[str, list[Load]], left: dict[str, list[float]], name: str, hello: str) -> list[float]:
    """Each of the bursts ``name`` over the hello burst beside it (``hello``: their name), both rates over the share
    of the machine's CPU others left them (:func:`over_cpu_left`), pair by pair."""
    found, beside = (over_cpu_left(loads[one], left[one]) for one in (name, hello))
    return [a / b for a, b in zip(found, beside, strict=True)]


def hello_beside(size: int) -> str:
    """The name of the hello bursts measured beside the lookups at ``size`` runs: those beside :data:`MAIN_SIZE`'s
    are the main figures' ``hello``."""
    return "hello" if size == MAIN_SIZE else f"hello beside {size:,}"


def status_requests(prefix: str, size: int, seed: int = 0) -> list[Request]:
    rng = random.Random(seed)
    keys = [Probe(n).key.path for n in rng.sample(range(size), min(SAMPLE, size))]
    return [("GET", f"{prefix}?chain={quote(key, safe='/')}") for key in keys]


def fetched(base_url: str, path: str, into: Path) -> Path:
    """The body ``GET path`` answers (200), written to ``into``."""
    into.write_bytes(fetched_body(base_url, path))
    return into


def fetched_body(base_url: str, path: str) -> bytes:
    """The body ``GET path`` answers (200)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    if answer.status != 200:
        raise RuntimeError(f"GET {path} answered {answer.status}: {body[:200]!r}")
    return body


#: the lines of a thread's ``status`` that count its context switches
SWITCHES = ("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")


def switches(pid: int) -> int:
    """Context switches the live threads of ``pid`` have made: voluntary (it waited: for the GIL, a lock, a socket)
    and not (a preemption), together (``/proc/<pid>/task/<tid>/status``); a thread gone meanwhile is left out."""
    made = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                made += sum(int(line.split()[1]) for line in status if line.startswith(SWITCHES))
        except OSError:
            continue
    return made


#: the fields of a worker's ``io`` read into :class:`WorkerCounts` (read and write system calls; bytes they moved)
IO_FIELDS = {"syscr:": "reads", "syscw:": "writes", "rchar:": "read_bytes"}


class WorkerCounts(NamedTuple):
    """What a served worker has done so far, whose share of each request, lookup beside hello, splits the served
    gap: its CPU in user mode and in the kernel (``stat``'s utime and stime, clock ticks, in seconds), its context
    switches (:func:`switches`), its read and write system calls (``io``'s syscr and syscw: SQLite reads each page
    that is not in its connection's cache with a ``pread``; a socket's ``recv``/``send`` are not counted) and the
    bytes those reads returned (``rchar``)."""

    user: float
    system: float
    switches: float
    reads: float
    writes: float
    read_bytes: float

    def per_request(self, before: WorkerCounts, requests: int) -> WorkerCounts:
        """What was done since ``before``, per request of ``requests``."""
        return WorkerCounts(*((now - then) / max(1, requests) for now, then in zip(self, before, strict=True)))


def worker_counts(pid: int) -> WorkerCounts:
    """``pid``'s :class:`WorkerCounts` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name in IO_FIELDS:
            found[IO_FIELDS[name]] = int(value)
    return WorkerCounts(int(fields[11]) / tick, int(fields[12]) / tick, switches(pid), **found)


def minor_faults(pid: int) -> tuple[int, int]:
    """``pid``'s minor page faults so far, and those of the children it has reaped (``stat``'s minflt and cminflt): a
    page first written (copy-on-write of one its parent left shared, or a new one) or first touched; a count the
    machine's load does not move."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[7]), int(fields[8])


def api_faults(cluster: Cluster, url: str) -> int:
    """Minor page faults the gunicorn at ``url`` has taken so far: its master's, its live workers' and those of the
    workers it reaped (``cminflt``). Read again if the master reaped one while its live workers were read (counted
    twice, or not at all)."""
    master = cluster.apis[url].pid
    while True:
        own, reaped = minor_faults(master)
        taken = 0
        for pid in cluster.api_workers(url):
            with contextlib.suppress(OSError):  # exiting now: in the master's cminflt once reaped
                taken += minor_faults(pid)[0]
        if minor_faults(master)[1] == reaped:
            return own + reaped + taken


def summed(counts: Iterable[WorkerCounts]) -> WorkerCounts:
    """The sum of ``counts``, field by field (the workers of an API)."""
    return WorkerCounts(*(sum(values) for values in zip(*counts, strict=True)))


#: the figures of :class:`WorkerCounts` printed per request, lookup beside hello: what, field, scale, format
SERVED_COUNTS = (
    ("user CPU (us)", "user", 1e6, ".0f"),
    ("system CPU (us)", "system", 1e6, ".0f"),
    ("read calls", "reads", 1, ".2f"),
    ("bytes read", "read_bytes", 1, ".0f"),
    ("write calls", "writes", 1, ".2f"),
)


def served_median(found: list[WorkerCounts], field: str) -> float:
    """The median of ``field`` over the bursts' :class:`WorkerCounts` (nan without one: every burst recycled)."""
    return median([getattr(one, field) for one in found]) if found else float("nan")


def timed_burst(
    cluster: Cluster, url: str, requests: list[Request], duration: float | None, per_client: int | None = None
) -> tuple[Load, float]:
    """A burst of ``requests`` at 16 clients (for ``duration`` seconds, or ``per_client`` requests each), and the CPU
    seconds its API spent per request meanwhile."""
    before = cluster.api_cpu(url)
    load = hammer(url, requests, CLIENTS, duration, per_client).check(200)
    return load, (cluster.api_cpu(url) - before) / max(1, len(load.latencies))


def us(seconds: list[float]) -> float:
    """The median of CPU seconds per request, in whole microseconds."""
    return round(median(seconds) * 1e6)


class Collections:
    """The garbage collector's collections, by generation (0, 1, 2), started while this is entered (``gc.callbacks``):
    a generation-2 collection walks every object the process tracks, the suspect of a latency's tail."""

    def __init__(self) -> None:
        self.by_generation = [0, 0, 0]

    def __enter__(self) -> Collections:
        gc.callbacks.append(self._started)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._started)

    def _started(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.by_generation[info["generation"]] += 1

    def per(self, count: int, calls: int) -> list[float]:
        """The collections of each generation per ``count`` of the ``calls`` made while this was entered."""
        return [seen * count / max(1, calls) for seen in self.by_generation]


class PerCall:
    """Each call's CPU and wall seconds, and the garbage collections that started in it, of the calls
    :func:`in_process_cpu` makes: the shape of a lookup's cost (a histogram) and what its slowest are made of."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []
        #: the collections started during each call, by the highest generation collected (-1: none)
        self.collected: list[int] = []

    def spread(self, which: list[float]) -> str:
        """``which``'s percentiles (:data:`SHAPE`) in microseconds: its histogram's shape in one line."""
        return ", ".join(f"p{pct:g} {percentile(which, pct) * 1e6:.0f}" for pct in SHAPE)

    def slowest(self, pct: float = 99) -> str:
        """What the calls whose CPU is above its ``pct``-th percentile are made of: how many started a collection,
        of which generation, and their CPU beside the others' median."""
        bound = percentile(self.cpu, pct)
        slow = [n for n, cpu in enumerate(self.cpu) if cpu > bound]
        rest = [cpu for cpu in self.cpu if cpu <= bound]
        by_generation = [sum(self.collected[n] == generation for n in slow) for generation in (-1, 0, 1, 2)]
        slow_median = median([self.cpu[n] for n in slow]) if slow else 0.0
        return (
            f"{len(slow)} calls above p{pct:g} of CPU ({bound * 1e6:.0f} us): median {slow_median * 1e6:.0f} us "
            f"beside {median(rest) * 1e6:.0f} us; with no collection {by_generation[0]}, with a generation-0/1/2 "
            f"collection {'/'.join(map(str, by_generation[1:]))}"
        )


#: the percentiles a histogram of a request's cost is printed by
SHAPE = (50, 90, 99, 99.9, 100)


class Eviction:
    """A buffer larger than a core's caches, written one byte a line (:meth:`write`) before a call: the call then
    finds its code and data in none of them, as a served request does, not hot from the call before it."""

    def __init__(self, size: int = EVICTION) -> None:
        self.buffer = bytearray(size)
        self.writes = 0
        self._lines = [bytes(len(range(0, size, LINE))), bytes([1]) * len(range(0, size, LINE))]

    def write(self) -> None:
        """Write a byte of each line (alternately 0 and 1: a line written is a line changed)."""
        self.writes += 1
        self.buffer[::LINE] = self._lines[self.writes % 2]


def in_process_cpu(
    app: Flask,
    requests: list[Request],
    calls: int,
    collections: Collections | None = None,
    each: PerCall | None = None,
    evict: Eviction | None = None,
) -> float:
    """CPU seconds per request of ``app`` called as a WSGI app in this process, on one thread, over ``requests`` in
    turn (``calls`` of them, after a round that warms it): the request's own work, without gunicorn, sockets, other
    threads or processes. Beside the server's figure: what serving it adds. An answer other than 200 raises.
    ``collections``: counts the garbage collector's collections during the ``calls``; ``each``: keeps each call's
    CPU and wall time, and the collections started in it (two clock reads more a call: the sum is the same loop's);
    ``evict``: written before each call (:class:`Eviction`), outside the CPU counted, which is each call's own."""
    environs = [EnvironBuilder(method=method, path=path).get_environ() for method, path in requests]
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
        statuses.append(status)

    def call(environ: dict) -> None:
        for _ in app.wsgi_app(dict(environ), start_response):
            pass

    for environ in environs:  # links' URL bases are built (by Flask) once per Host, then lookups go in front of it
        call(environ)
    turns = [environs[n % len(environs)] for n in range(calls)]
    statuses.clear()
    with collections or Collections() as counted:
        evicting = 0.0  # the CPU of the evictions, not the calls'
        used = time.thread_time()
        if evict is not None:
            for environ in turns:
                cpu = time.thread_time()
                evict.write()
                evicting += time.thread_time() - cpu
                call(environ)
        elif each is None:
            for environ in turns:
                call(environ)
        else:
            for environ in turns:
                before, cpu, wall = list(counted.by_generation), time.thread_time(), time.perf_counter()
                call(environ)
                each.cpu.append(time.thread_time() - cpu)
                each.wall.append(time.perf_counter() - wall)
                started = [n for n, seen in enumerate(counted.by_generation) if seen != before[n]]
                each.collected.append(max(started, default=-1))
        used = time.thread_time() - used - evicting
    if set(statuses) != {"200 OK"}:
        raise RuntimeError(f"the app in process answered {sorted(set(statuses))}")
    return used / calls


class RecyclePairs:
    """The bursts of the figure with a recycle: each a count of lookups (:data:`RECYCLE_WINDOW` a client) by the API
    whose workers are each recycled about once a burst (``recycled``), beside one by the API that recycles none
    (``steady``), each side first in turn (:func:`in_turn`), each rate with the share of the machine's CPU others left
    it (:class:`CpuLeft`), the API's CPU per lookup, its minor page faults per lookup (:func:`api_faults`) and the
    clients' CPU per lookup (this process's: under load the figure is the ratio of the API's and the clients' CPU per
    lookup, without over with a recycle, burst by burst, as each rate over the share left is the cores over it)."""

    def __init__(self, cluster: Cluster, steady: str, recycled: str, requests: list[Request]) -> None:
        self.cluster, self.urls, self.requests = cluster, {"steady": steady, "recycled": recycled}, requests
        self.loads: dict[str, list[Load]] = {"steady": [], "recycled": []}
        self.cpu: dict[str, list[float]] = {"steady": [], "recycled": []}
        self.left: dict[str, list[float]] = {"steady": [], "recycled": []}
        self.faults: dict[str, list[float]] = {"steady": [], "recycled": []}
        self.clients: dict[str, list[float]] = {"steady": [], "recycled": []}
        #: workers the recycling API replaced, and connections closed under a client (a keep-alive connection closed
        #: by a worker that exits: the client reconnects)
        self.replaced = self.dropped = 0
        #: the recycling API's workers seen so far, before and after its bursts
        self.seen: set[int] = set()

    def pair(self, index: int) -> None:
        """The ``index``-th pair: a burst of each API, the recycling one's first at an odd ``index``."""
        in_turn(index, partial(self.burst, "steady"), partial(self.burst, "recycled"))

    def burst(self, side: str) -> None:
        """A burst of ``side``'s API, recorded as its."""
        url = self.urls[side]
        before, used, cpu_left = self.cluster.api_workers(url), self.cluster.api_cpu(url), CpuLeft()
        faults, own = api_faults(self.cluster, url), time.process_time()
        load = hammer(url, self.requests, CLIENTS, None, RECYCLE_WINDOW)
        clients = time.process_time() - own
        seconds = self.cluster.api_cpu(url) - used
        self.left[side].append(cpu_left.share(seconds))
        lookups = max(1, len(load.latencies))
        self.cpu[side].append(seconds / lookups)
        self.faults[side].append((api_faults(self.cluster, url) - faults) / lookups)
        self.clients[side].append(clients / lookups)
        if side == "steady":
            load.check(200)
        elif set(load.statuses) - {200}:
            raise RuntimeError(f"a recycling API answered {dict(load.statuses)}")
        else:
            self.replaced += self.forked(before) + self.forked(self.cluster.api_workers(url))
            self.dropped += load.errors
        self.loads[side].append(load)

    def forked(self, workers: list[int]) -> int:
        """How many of the recycling API's ``workers`` were not seen before (none at the first look): a successor,
        forked once its predecessor has exited, may appear between two bursts, after the one whose lookups recycled
        its predecessor (counted per burst, it was missed)."""
        new = len(set(workers) - self.seen) if self.seen else 0
        self.seen.update(workers)
        return new

    def rates(self, side: str) -> list[float]:
        """Each of ``side``'s bursts' rate over the CPU others left it."""
        return over_cpu_left(self.loads[side], self.left[side])

    def pairs(self) -> list[tuple[float, float]]:
        """Each pair's rates over the CPU left, with a recycle and without."""
        return list(zip(self.rates("recycled"), self.rates("steady"), strict=True))

    def added(self, counts: str = "cpu") -> float:
        """What the recycling bursts used over the same lookups at the steady bursts' rate each, pair by pair: API CPU
        seconds (``counts`` "cpu"), its minor page faults ("faults"), the clients' CPU seconds ("clients")."""
        per: dict[str, list[float]] = getattr(self, counts)
        recycled = zip(per["recycled"], per["steady"], self.loads["recycled"], strict=True)
        return sum((with_ - without) * len(load.latencies) for with_, without, load in recycled)


def replace_a_worker(cluster: Cluster, url: str) -> tuple[int, int, float]:
    """End one API worker as ``max_requests`` does (SIGTERM: its loop ends, its connections are answered, it exits)
    and return its pid and its successor's, once the master has forked it and it has settled (its CPU still for
    20 ms), with the most CPU seconds the ended worker's threads were seen to have used together (a look every ms;
    what they used after, in their exit, is missed)."""
    before = cluster.api_workers(url)
    ending = before[0]
    last = [thread_cpu(ending)]
    os.kill(ending, signal.SIGTERM)

    def successor() -> int | None:
        try:  # the most its threads were seen to have used: those that exit leave the sum
            last[0] = max(last[0], thread_cpu(ending))
        except OSError:  # gone (or going: its threads' files with it)
            pass
        now = cluster.api_workers(url)
        return None if ending in now else next(iter(set(now) - set(before)), None)

    pid: int = waitfor(successor, 60, "gunicorn's master to replace the worker it was sent SIGTERM", 0.001)
    used = -1.0
    while used != (used := thread_cpu(pid)):
        time.sleep(0.02)
    return ending, pid, last[0]


def api_threads_cpu(cluster: Cluster, url: str) -> dict[int, float]:
    """CPU seconds each process of the API at ``url`` (its master, its live workers) has used, to the nanosecond
    (their live threads': a gthread worker keeps its threads; :meth:`Cluster.api_cpu` counts clock ticks, 10 ms)."""
    return {pid: thread_cpu(pid) for pid in (cluster.apis[url].pid, *cluster.api_workers(url))}


def answers(pid: int) -> int:
    """Answers ``pid`` (a gunicorn worker) has sent so far: the requests its app recorded, the observations in its
    latency histogram's file (in its gunicorn's metrics folder; none yet, none). Its write calls (``syscw``) counted
    them while gthread's loop was woken through a pipe after each answer; an answer itself is sent with ``send``,
    which ``syscw`` does not count."""
    total = 0.0
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # the API's too, if this process had one when it started it
    found = [*Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*/histogram_{pid}.db")]
    found += [path] if shared and (path := Path(shared) / f"histogram_{pid}.db").exists() else []
    for path in found:
        total += sum(value for key, value in recorded(path) if json.loads(key)[1].endswith("_bucket"))
    return round(total)


def recorded(path: Path) -> list[tuple[str, float]]:
    """The (key, value) pairs a process has written so far in its prometheus file at ``path``, read from a copy of
    its bytes: none while its process is making it (no header yet: :func:`api.metrics.begun`, the scrape's own rule).
    ``MmapedDict(read_mode=True)`` failed on a file made but not yet begun; the copy's reader reads a header still 0
    as nothing written."""
    if not begun(str(path)):
        return []
    return [(key, value) for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path))]


class RecycleCost(NamedTuple):
    """One recycle, measured directly (medians over the replacements; CPU in seconds)."""

    #: the API's CPU over a burst right after a worker was replaced, less that of the same burst just before
    added: float
    #: the successor's CPU from its fork to its first request
    start: float
    #: the API's CPU over a burst without a replacement
    burst: float
    #: the successor's share of the answers of the burst after it started
    share: float
    #: CPU per answer in that burst: the successor's, and its sibling's
    successor: float
    sibling: float
    #: the registry connections the successor had open after that burst (a SQLite connection opens the file once)
    connections: float
    #: the successor's minor page faults from its fork to its first request (copy-on-write of its master's pages)
    start_faults: float
    #: minor page faults per answer in the burst after it: the successor's, and its sibling's
    successor_faults: float
    sibling_faults: float


def open_on(pid: int, path: Path) -> int:
    """How many descriptors ``pid`` has open on the file ``path``."""
    fds = Path(f"/proc/{pid}/fd")
    found = 0
    for fd in os.listdir(fds):
        try:
            found += os.readlink(fds / fd) == str(path)
        except OSError:  # closed meanwhile
            pass
    return found


def recycle_cost(cluster: Cluster, url: str, requests: list[Request], repeats: int, registry: Path) -> RecycleCost:
    """A recycle's CPU, measured directly: the API's CPU over a burst of a fixed number of lookups right after one
    worker was replaced (its exit, the master's fork, the successor's start and first lookups), less that of the
    same burst just before, each counted to the nanosecond per process (:func:`api_threads_cpu`; the ended worker's
    to its last look). A burst not measured follows each replacement, so that the next pair's first is warm."""
    master = cluster.apis[url].pid
    found: list[RecycleCost] = []
    for _ in range(3 * repeats):  # a pair a worker's own recycle (max_requests) cut into is measured again
        if len(found) == repeats:
            break
        used = api_threads_cpu(cluster, url)
        hammer(url, requests, CLIENTS, None, RECYCLE_BURST).check(200)
        steady = sum(api_threads_cpu(cluster, url).values()) - sum(used.values())
        used = api_threads_cpu(cluster, url)
        ending, new, last = replace_a_worker(cluster, url)
        sibling = next(pid for pid in cluster.api_workers(url) if pid in used and pid != ending)
        before = {pid: (thread_cpu(pid), answers(pid), minor_faults(pid)[0]) for pid in (new, sibling)}
        hammer(url, requests, CLIENTS, None, RECYCLE_BURST).check(200)
        after = api_threads_cpu(cluster, url)
        if not {master, new, sibling} <= after.keys():  # one ended on its own meanwhile: not this replacement's cost
            hammer(url, requests, CLIENTS, None, RECYCLE_BURST).check(200)
            continue
        added = sum(after[pid] - used.get(pid, 0.0) for pid in (master, new, sibling)) + last - used[ending] - steady
        cpu, sent, faults = zip(
            *(
                (after[p] - before[p][0], answers(p) - before[p][1], minor_faults(p)[0] - before[p][2])
                for p in (new, sibling)
            ),
            strict=True,
        )
        theirs, its_sibling = (c / max(1, n) for c, n in zip(cpu, sent, strict=True))
        faults_each = [f / max(1, n) for f, n in zip(faults, sent, strict=True)]
        found.append(
            RecycleCost(
                added,
                before[new][0],
                steady,
                sent[0] / max(1, sum(sent)),
                theirs,
                its_sibling,
                open_on(new, registry),
                before[new][2],
                *faults_each,
            )
        )
        hammer(url, requests, CLIENTS, None, RECYCLE_BURST).check(200)
    assert found, f"every one of {3 * repeats} replacements met another worker's own recycle"
    return RecycleCost(*(median([getattr(one, name) for one in found]) for name in RecycleCost._fields))


def run(ctx: Context) -> list[Figure]:
    sizes = [1_000, MAIN_SIZE] if ctx.quick else [1_000, MAIN_SIZE, 100_000]
    duration = 1.0 if ctx.quick else 2.0
    with ctx.cluster(NAME) as cluster:
        fill_store(cluster.settings.local_targets_dir, range(sizes[-1]))
        # luigid answers the seed's lookup; the service's lookup never asks it about a run the registry knows
        fill_luigid(cluster.start_luigid(), range(MAIN_SIZE))
        targets: dict[str, tuple[str, list[Request]]] = {}
        for size in sizes:  # a registry and an API each, all up at once
            data_dir = cluster.dir / f"data-{size}"
            fill_registry(data_dir / "runs.sqlite3", range(size))
            url = cluster.start_api(NECTAR_DATA_DIR=str(data_dir))
            targets[str(size)] = (url, status_requests("/api/chainstatus", size))
        # the baselines, served beside them under the same gunicorn settings
        base_url = cluster.start_api(app="benchmarks.baseline_app:create_app()")
        targets["hello"] = (base_url, [("GET", "/hello")])
        # the floor probe: the service's app answering a real lookup's bytes, with no lookup (same registry)
        answer = fetched(targets[str(MAIN_SIZE)][0], targets[str(MAIN_SIZE)][1][0][1], cluster.dir / "answer.json")
        floor_data = str(cluster.dir / f"data-{MAIN_SIZE}")
        floor_url = cluster.start_api(
            app="benchmarks.baseline_app:floor_app()", NECTAR_DATA_DIR=floor_data, NECTAR_FLOOR_ANSWER=str(answer)
        )
        targets["floor-flask"] = (floor_url, [("GET", FLOOR_FLASK)])
        targets["floor-wsgi"] = (floor_url, [("GET", FLOOR_WSGI)])
        loads: dict[str, list[Load]] = {name: [] for name in targets}
        cpu: dict[str, list[float]] = {name: [] for name in targets}
        for url, requests in targets.values():  # warm every worker thread
            hammer(url, requests, CLIENTS, duration=min(1.0, duration)).check(200)
        pair = (str(MAIN_SIZE), "hello")  # compared burst by burst: each lookup burst beside a hello burst
        # each size's lookups beside hello bursts of their own (the flat figure compares sizes through them)
        beside = {str(size): hello_beside(size) for size in sizes}
        names = [name for name in targets if name not in beside and name != "hello"]
        for name in beside.values():
            loads.setdefault(name, [])
            cpu.setdefault(name, [])

        left: dict[str, list[float]] = {name: [] for pair_of in beside.items() for name in pair_of}  # in each burst

        # per request, in each paired burst, and in each burst of the lookups at each size
        counted: dict[str, list[WorkerCounts]] = {name: [] for name in (*pair, *beside)}

        def burst(name: str, target: str | None = None) -> None:
            """A burst at ``target`` (``name``'s own by default), recorded as ``name``'s."""
            url, requests = targets[target or name]
            cpu_left = CpuLeft()
            workers = {pid: worker_counts(pid) for pid in cluster.api_workers(url)}  # before the burst
            load, seconds = timed_burst(cluster, url, requests, duration)
            loads[name].append(load)
            cpu[name].append(seconds)
            if name in left:
                left[name].append(cpu_left.share(seconds * len(load.latencies)))
            if name in counted and set(cluster.api_workers(url)) == workers.keys():  # none recycled: all counted
                with contextlib.suppress(FileNotFoundError):  # one recycled since that look: not counted
                    now = summed(worker_counts(pid) for pid in workers)
                    counted[name].append(now.per_request(summed(workers.values()), len(load.latencies)))

        big, small = sizes[-1], sizes[0]

        def flat_pairs() -> tuple[list[float], list[float]]:
            """The largest size's pairs and the smallest's (each lookup burst over the hello burst beside it)."""
            return over_hello(loads, left, str(big), beside[str(big)]), over_hello(
                loads, left, str(small), beside[str(small)]
            )

        def one_round(r: int) -> None:  # interleaved and rotated, so that all see the same noise
            if r < ctx.repeats:  # the other bursts: as many as asked; the sizes' pairs until the flat figure is decided
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    burst(name)
            for size in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:  # each beside its hellos, ABBA
                side_by_side(1, partial(burst, str(size)), partial(burst, beside[str(size)], "hello"))

        def decided() -> bool:  # a round's pairs at each size are taken beside each other: drawn together
            return enough(interval(*flat_pairs(), paired=True, level=drawn_at), FLAT_LIMIT)

        drawn_at = level(ctx.repeats, round_cap(ctx.repeats))
        rounds = take_rounds(ctx.repeats, round_cap(ctx.repeats), one_round, decided)
        flat_spread = interval(*flat_pairs(), paired=True, level=drawn_at)
        main_rates, hello_rates = ([load.rate for load in loads[name]] for name in pair)
        rate_ratio = paired(main_rates, hello_rates)
        main_left, hello_left = (over_cpu_left(loads[name], left[name]) for name in pair)
        left_ratio = paired(main_left, hello_left)
        p99_ratio = paired(*([load.p99 for load in loads[name]] for name in pair))
        print("requests/s per repeat:", "; ".join(f"{name} {rates(found)}" for name, found in loads.items()))
        print(
            f"{pair[0]} over hello, burst by burst (ABBA): rates",
            ", ".join(f"{a / b:.2f}" for a, b in zip(main_rates, hello_rates, strict=True)),
            f"(median {rate_ratio:.3f}); p99s",
            ", ".join(f"{a.p99 / b.p99:.2f}" for a, b in zip(*(loads[name] for name in pair), strict=True)),
            f"(median {p99_ratio:.3f}); the machine's CPU used outside the benchmark in each pair's bursts",
            left_said(list(zip(left[pair[0]], left[pair[1]], strict=True)), duration),
            "; rates over the CPU left to each:",
            ", ".join(f"{a / b:.2f}" for a, b in zip(main_left, hello_left, strict=True)),
            f"(median {left_ratio:.3f})",
        )
        by_size = {size: over_hello(loads, left, str(size), beside[str(size)]) for size in (sizes[0], sizes[-1])}
        rates_alone = {
            size: paired(*([one.rate for one in loads[name]] for name in (str(size), beside[str(size)])))
            for size in by_size
        }
        print(
            "lookups over the hello burst beside them (ABBA), pair by pair, each rate over the CPU others left it:",
            "; ".join(
                f"{size:,} runs {', '.join(f'{x:.3f}' for x in found)} (median {median(found):.3f}; the rates alone "
                f"{rates_alone[size]:.3f})"
                for size, found in by_size.items()
            ),
        )
        print(
            "API CPU per request (gunicorn's master and workers, median of the bursts):",
            "; ".join(f"{name} {median(found) * 1e6:.0f} us" for name, found in cpu.items()),
        )
        # the same lookups by an API whose workers are each recycled about once a burst of a fixed count of lookups
        # (gunicorn's max_requests: a worker's share of that count), each burst beside one of the same count by the
        # API that recycles none, so both see the same noise
        main_url, main_requests = targets[str(MAIN_SIZE)]
        max_requests = recycle_every(cluster.api_sizes[main_url])
        data_dir = cluster.dir / f"data-{MAIN_SIZE}"
        recycled_url = cluster.start_api(NECTAR_DATA_DIR=str(data_dir), NECTAR_API_MAX_REQUESTS=str(max_requests))
        hammer(recycled_url, main_requests, CLIENTS, None, RECYCLE_BURST).check(200)  # warm, well short of a recycle
        bursts = RecyclePairs(cluster, main_url, recycled_url, main_requests)

        def recycle_decided() -> bool:
            return decides(of_few_rounds(bursts.pairs(), ratio_median, drawn_at), RECYCLE_LIMIT)

        recycle_rounds = take_rounds(ctx.repeats, round_cap(ctx.repeats), bursts.pair, recycle_decided)
        recycle_left, steady_left_rates = bursts.rates("recycled"), bursts.rates("steady")
        recycle_ratio = paired(recycle_left, steady_left_rates)
        recycle_interval = of_few_rounds(bursts.pairs(), ratio_median, drawn_at)
        recycle_spread = verdict(
            recycle_interval,
            RECYCLE_LIMIT,
            drawn_at,
            f"a seeded bootstrap of {recycle_rounds} pairs, each drawn whole, widened for so few",
        )
        recycled, steady = bursts.loads["recycled"], bursts.loads["steady"]
        replaced, added = bursts.replaced, bursts.added()
        print(
            f"recycling API (max_requests {max_requests}): {replaced} workers replaced in {recycle_rounds} bursts of "
            f"{CLIENTS * RECYCLE_WINDOW} lookups (ABBA: the recycling API's first in every second pair), "
            f"{bursts.dropped} connections closed under a client; requests/s {rates(recycled)} beside {rates(steady)}; "
            f"API CPU per lookup {us(bursts.cpu['recycled'])} us beside {us(bursts.cpu['steady'])} us; "
            f"{added / max(1, replaced) * 1e3:.1f} ms more per worker replaced; API page faults per lookup "
            f"{median(bursts.faults['recycled']):.2f} beside {median(bursts.faults['steady']):.2f}, "
            f"{bursts.added('faults') / max(1, replaced):.0f} more per worker replaced; the clients' CPU per lookup "
            f"{us(bursts.clients['recycled'])} us beside {us(bursts.clients['steady'])} us, "
            f"{bursts.added('clients') / max(1, replaced) * 1e3:.1f} ms more per worker replaced; the machine's CPU "
            "used outside the benchmark in each pair's bursts (without/with a recycle) "
            + ", ".join(f"{1 - a:.0%}/{1 - b:.0%}" for a, b in zip(*bursts.left.values(), strict=True))
            + "; burst by burst, over the CPU left to each: "
            + ", ".join(f"{a / b:.2f}" for a, b in zip(recycle_left, steady_left_rates, strict=True))
            + f" (median {recycle_ratio:.3f})"
        )
        print(f"lookups/s with a recycle in each burst over without, each over the CPU left: {recycle_spread}")
        direct = recycle_cost(cluster, main_url, main_requests, max(ctx.repeats, 8), data_dir / "runs.sqlite3")
        print(
            f"a recycle measured directly: {direct.added * 1e3:.1f} ms of API CPU, of which its successor's start "
            f"{direct.start * 1e3:.1f} ms (a burst of {CLIENTS * RECYCLE_BURST} lookups: {direct.burst * 1e3:.0f} ms);"
            f" in the burst after it, the successor sent {direct.share:.0%} of the answers, at "
            f"{direct.successor * 1e6:.0f} us of CPU each (its sibling {direct.sibling * 1e6:.0f} us), with "
            f"{direct.connections:.0f} registry connections open after it; minor page faults: the successor's "
            f"{direct.start_faults:.0f} from its fork to its first request, then {direct.successor_faults:.1f} per "
            f"answer in that burst (its sibling {direct.sibling_faults:.1f})"
        )
        service_app = create_app({"NECTAR_SETTINGS": cluster.settings.replace(data_dir=data_dir)})
        lookup_collections, hello_collections = Collections(), Collections()
        lookup_each, hello_each = PerCall(), PerCall()
        alone = in_process_cpu(service_app, main_requests, IN_PROCESS_CALLS, lookup_collections, lookup_each)
        hello_app = baseline_app()
        hello_alone = in_process_cpu(hello_app, targets["hello"][1], IN_PROCESS_CALLS, hello_collections, hello_each)
        # the same calls from cold caches, a lookup's and a hello's in turn (the machine's noise on both alike)
        cold: dict[str, list[float]] = {"lookup": [], "hello": []}
        evict = Eviction()
        for _ in range(ctx.repeats):
            cold["lookup"].append(in_process_cpu(service_app, main_requests, COLD_CALLS // ctx.repeats, evict=evict))
            cold["hello"].append(in_process_cpu(hello_app, targets["hello"][1], COLD_CALLS // ctx.repeats, evict=evict))
        service_app.extensions["nectar"].close()  # its registry: its lookups are over
        lookup_gcs, hello_gcs = (
            found.per(GC_PER, IN_PROCESS_CALLS) for found in (lookup_collections, hello_collections)
        )
        print(
            f"in this process, one thread: a lookup {alone * 1e6:.0f} us of CPU, a hello {hello_alone * 1e6:.0f} us; "
            f"garbage collections per {GC_PER:,} (generations 0/1/2): lookups {'/'.join(f'{n:g}' for n in lookup_gcs)},"
            f" hellos {'/'.join(f'{n:g}' for n in hello_gcs)}"
        )
        print(
            f"in this process, one thread, each call from cold caches ({EVICTION >> 20} MiB written before it): a "
            f"lookup {us(cold['lookup'])} us of CPU, a hello {us(cold['hello'])} us (hot, above: {alone * 1e6:.0f} "
            f"and {hello_alone * 1e6:.0f} us); served, context switches of the API's workers per request (voluntary "
            "+ not), median of the bursts: "
            + "; ".join(f"{name} {served_median(found, 'switches'):.2f}" for name, found in counted.items())
        )
        answer_bytes = {name: len(fetched_body(targets[name][0], targets[name][1][0][1])) for name in pair}
        print(
            f"served, per request, median of the paired bursts ({pair[0]} / hello): "
            + "; ".join(
                f"{what} {served_median(counted[pair[0]], field) * scale:{form}} / "
                f"{served_median(counted[pair[1]], field) * scale:{form}}"
                for what, field, scale, form in SERVED_COUNTS
            )
            + f"; bytes of the answer's body {answer_bytes[pair[0]]} / {answer_bytes[pair[1]]}"
        )
        print(  # where a lookup at the largest size costs more than at the smallest: the pages SQLite reads again
            f"served, per lookup, median of the bursts at {' / '.join(f'{size:,}' for size in sizes)} runs: "
            + "; ".join(
                f"{what} " + " / ".join(f"{served_median(counted[str(size)], field) * scale:{form}}" for size in sizes)
                for what, field, scale, form in SERVED_COUNTS
            )
        )
        for name, each in (("lookup", lookup_each), ("hello", hello_each)):
            print(
                f"in this process, one thread, each {name} (us): CPU {each.spread(each.cpu)}; wall "
                f"{each.spread(each.wall)}; {each.slowest()}"
            )
        for name in pair:  # every latency of the paired bursts, served: the client's wall time of each request
            print(
                f"served {name} latencies (us), {CLIENTS} clients, all bursts:",
                PerCall().spread([latency for load in loads[name] for latency in load.latencies]),
            )
        # the seed's lookup takes seconds at 16 clients: each client sends one per repeat (600 s fails only a hung one)
        seed = [
            hammer(base_url, status_requests("/seed/chainstatus", MAIN_SIZE, r), CLIENTS, None, 1, 600).check(200)
            for r in range(ctx.repeats)
        ]
    at_main = f"at {MAIN_SIZE:,} runs, {CLIENTS} clients"
    main, hello = loads[str(MAIN_SIZE)], loads["hello"]
    rate, p99, hello_what = median_rate(main), median_p99(main), "hello-world JSON, same gunicorn"
    floor_what = "the service's app answering a lookup's bytes without the lookup"
    by_pair = f"each burst over the {hello_what} burst beside it (median of {len(main)} pairs)"
    flat = (f"lookups/s at {big:,} runs (registry and store), × hello", round(median(by_size[big]), 3), "x")
    flat_by_pair = (
        f"(each: the median of {len(by_size[small])} bursts over the hello burst beside it, ABBA, rates over the CPU "
        f"left; the ratio's {said(flat_spread, len(by_size[small]), rounds, FLAT_LIMIT, drawn_at)})"
    )
    return [
        Figure(NAME, f"lookups/s {at_main}", rate, "/s", "seed: 4 full task_list fetches", median_rate(seed),
               ratio_at_least(50)),
        Figure(NAME, f"lookups/s {at_main}", rate, "/s", hello_what, median_rate(hello)),
        Figure(NAME, f"lookups/s {at_main} per hello/s, {by_pair}", round(rate_ratio, 3), "x", "-", None),
        Figure(NAME, f"the same, each rate over the share of the machine's CPU others left it ({by_pair})",
               round(left_ratio, 3), "x", "-", None, at_least(0.8, "≥ 0.8x")),
        Figure(NAME, f"p99 latency {at_main} ({samples(main)})", p99, "ms", f"{hello_what} ({samples(hello)})",
               median_p99(hello)),
        Figure(NAME, f"p99 latency {at_main} per hello's, {by_pair}", round(p99_ratio, 3), "x", "-", None,
               at_most(1.25, "≤ 1.25x")),
        Figure(NAME, *flat, f"the same at {small:,} runs, × hello {flat_by_pair}", round(median(by_size[small]), 3),
               ratio_at_least(FLAT_LIMIT), spread=flat_spread),
        Figure(NAME, f"API CPU per lookup {at_main}", us(cpu[str(MAIN_SIZE)]), "us", hello_what, us(cpu["hello"])),
        Figure(NAME, f"of which in the kernel (system CPU per request of the paired bursts, {CLIENTS} clients)",
               round(served_median(counted[pair[0]], "system") * 1e6), "us", hello_what,
               round(served_median(counted[pair[1]], "system") * 1e6)),
        Figure(NAME, "CPU per lookup in process (the app called as WSGI, one thread, the same keys)",
               round(alone * 1e6), "us", f"API CPU per lookup {at_main}", us(cpu[str(MAIN_SIZE)])),
        Figure(NAME, f"generation-2 garbage collections per {GC_PER:,} lookups in process (all printed above)",
               lookup_gcs[2], "", f"the same per {GC_PER:,} hellos", hello_gcs[2]),
        Figure(NAME, "CPU per hello in process (the baseline app called as WSGI, one thread)",
               round(hello_alone * 1e6), "us", f"API CPU per hello, {CLIENTS} clients", us(cpu["hello"])),
        Figure(NAME, f"CPU per lookup in process from cold caches ({EVICTION >> 20} MiB written before each call)",
               us(cold["lookup"]), "us", "the same per hello", us(cold["hello"])),
        Figure(NAME, f"API CPU per lookup at {small:,} runs", us(cpu[str(small)]), "us", f"the same at {big:,} runs",
               us(cpu[str(big)])),
        Figure(NAME, f"API CPU per request: {floor_what}, every guard", us(cpu["floor-flask"]), "us", hello_what,
               us(cpu["hello"])),
        Figure(NAME, f"API CPU per request: {floor_what}, from a bare WSGI callable in front of Flask",
               us(cpu["floor-wsgi"]), "us", "the same through Flask and every guard", us(cpu["floor-flask"])),
        Figure(NAME, f"lookups/s {at_main}, an API worker recycled in each burst ({replaced} in {len(recycled)})",
               median_rate(recycled), "/s", "the same, no recycle (bursts beside them)", median_rate(steady)),
        Figure(NAME, "the same, each burst's rate over the share of the machine's CPU others left it, over the burst's "
               f"beside it (median of {len(recycled)} pairs)", round(recycle_ratio, 3), "x", "-", None,
               at_least(RECYCLE_LIMIT, "≥ 0.9x"), spread=recycle_interval),
        Figure(NAME, "API CPU a recycle adds (over the bursts' lookups without one, per worker replaced)",
               added / max(1, replaced), "ms", f"API CPU of a worker's {max_requests} lookups between two recycles",
               median(bursts.cpu['steady']) * max_requests),
        Figure(NAME, "API CPU a recycle adds, measured directly (a worker ended, its successor's first lookups)",
               direct.added, "ms", f"API CPU of a worker's {max_requests} lookups between two recycles",
               median(bursts.cpu['steady']) * max_requests),
    ]  # fmt: skip
