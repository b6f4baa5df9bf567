"""``python -m benchmarks.soak [--minutes M] [--workers N] [--registry sqlite|postgres]``: a soak of a real ``nectar
serve``, then its checks.

16 clients submit distinct and duplicate runs of the benchmark chain's ``SoakTask`` and follow each with chainstatus
as a client is told to (a ``503``'s ``Retry-After`` waited out on the same keep-alive connection); a killer SIGKILLs
the attempt process of a random RUNNING run every so often (spaced in runs ended, from the rate measured while
warming up); a scraper reads ``/metrics`` every 2 s. Then the clients drain, ``nectar serve`` is stopped by SIGTERM,
and the soak checks and prints: every accepted run ended exactly once (none lost, none run twice for one dedupe key),
failures by cause, a WARNING naming run, attempt and signal for each kill that hit a run, the clients' connection
errors, each process's RSS at the start, middle and end (growth per 1,000 runs), processes left behind, targets
half-written. It exits 1 when a check fails. Not one of ``python -m benchmarks``'s: it runs for minutes by design.

``--runs N`` stops the clients after N distinct runs (not after ``--minutes``), and ``--forced-kills K`` replaces the
random kills by K kills of runs each held at a gate until its attempt's death is recorded: a kill that always lands
(the test's)."""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.harness import CHAIN, CHAIN_TYPE, Cluster, rss_kb
from harness import Processes, arguments, cmdline, descendants, free_port, stopping_on_signals
from nectar.registry import Run, RunFilter, RunState, open_run_store
from nectar.registry.store import RunStore

CLIENTS = 16
#: a client's runs submitted before it follows them; the queue bound is half of what the clients submit at once, so
#: that it fills (``503``, ``Retry-After``) whatever the rate
AHEAD = 20
MAX_QUEUE = CLIENTS * AHEAD // 2
#: the share of submissions that repeat the parameters of an earlier one (a dedupe key already known)
DUPLICATES = 0.25
#: random kills over a soak, spaced in runs ended: the soak's runs (its rate while warming up, times its length) / this
KILLS = 10
#: the share of the soak spent warming up (the rate measured), before any kill
WARM_SHARE = 0.05
#: the work the waits of a forced kill are sized from (:mod:`benchmarks.patience`): the warm-up, more runs than one
WARM_UP = "the warm-up"
SCRAPE_EVERY = 2.0
#: the first and the longest wait between two status reads of a run not yet ended (doubling)
POLL_FIRST, POLL_MOST = 0.05, 1.0
FINAL = ("DONE", "FAILED", "CANCELLED")
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}/SoakTask"
#: a request tried again after a connection error at most this many times (every error is counted)
TRIES = 10
MB = 1024


class Failed(RuntimeError):
    """A request that got neither an answer it expects nor one worth trying again."""


@dataclass
class Tally:
    """What every client and the killer saw, shared (each addition under :attr:`lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: n of every distinct run submitted
    submitted: list[int] = field(default_factory=list)
    #: run id -> dedupe key of each run a ``202`` said it created
    created: dict[str, str] = field(default_factory=dict)
    #: run id -> the final state chainstatus showed for it
    seen_final: dict[str, str] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    connection_errors: Counter[str] = field(default_factory=Counter)
    retried_after: int = 0
    #: when each connection error happened, and when each idle connection was found closed by the server (unix time)
    error_times: list[float] = field(default_factory=list)
    dropped_times: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def add(self, counter: Counter[str], what: str) -> None:
        with self.lock:
            counter[what] += 1


class Connection:
    """One keep-alive connection to the API, reopened after an error (each one counted) and after a ``503``'s
    ``Retry-After`` waited out on it."""

    def __init__(self, base_url: str, tally: Tally, timeout: float) -> None:
        parts = urlsplit(base_url)
        # a request's own socket timeout: ``timeout``, what the soak's patience allows one (a hang, not a slow answer)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        self.tally = tally

    def ask(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """The answer to a request, once neither a connection error (tried again :data:`TRIES` times at most) nor a
        ``503`` with ``Retry-After`` (waited out as told, however many times)."""
        tries = 0
        while tries < TRIES:
            self.reopen_if_dropped()
            try:
                self.conn.request(method, path)
                answer = self.conn.getresponse()
                body = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                self.tally.add(self.tally.connection_errors, f"{method} {type(exc).__name__}: {exc}")
                with self.tally.lock:
                    self.tally.error_times.append(time.time())
                self.conn.close()
                tries += 1
                continue
            self.tally.add(self.tally.answers, f"{method} {answer.status}")
            wait = answer.getheader("Retry-After")
            if answer.status == 503 and wait is not None:
                with self.tally.lock:
                    self.tally.retried_after += 1
                time.sleep(float(wait))
                continue
            return answer.status, json.loads(body) if body else {}
        raise Failed(f"{method} {path}: {TRIES} tries failed")

    def reopen_if_dropped(self) -> None:
        """Close the connection if the server closed it while it was idle (readable before a request is sent: its end
        of file), for the next request to open another, as urllib3 (``requests``) checks a pooled connection before it
        reuses it: the server may close an idle one (a recycled API worker closes its own 2 s after it was told to
        stop). Each one is counted, apart from the connection errors."""
        sock = self.conn.sock
        if sock is not None and select.select([sock], [], [], 0)[0]:
            self.conn.close()
            self.tally.add(self.tally.answers, "idle connections the server closed (reopened before reuse)")
            with self.tally.lock:
                self.tally.dropped_times.append(time.time())

    def close(self) -> None:
        self.conn.close()


def submit(conn: Connection, tally: Tally, n: int, gate: str = "") -> tuple[str, str]:
    """POST the run of ``n`` (with its ``gate``); its (run id, status path)."""
    status, body = conn.ask("POST", f"{TASK_PATH}?n={n}" + (f"&gate={gate}" if gate else ""))
    if status not in (200, 202):
        raise Failed(f"POST n={n} answered {status}: {body}")
    data = body["data"]
    if status == 202 and data.get("created"):
        with tally.lock:
            tally.created[data["run_id"]] = data["key"]
    parts = urlsplit(data["status_url"])
    return data["run_id"], f"{parts.path}?{parts.query}"


def follow(conn: Connection, tally: Tally, run_id: str, path: str) -> str:
    """Read the run's status until it ended (waiting longer each time); its final state."""
    wait = POLL_FIRST
    while True:
        status, body = conn.ask("GET", path)
        if status != 200:
            raise Failed(f"GET {path} answered {status}: {body}")
        data = body["data"]
        if data["job_status"] in FINAL and data["run_id"] == run_id:
            with tally.lock:
                tally.seen_final[run_id] = data["job_status"]
            return str(data["job_status"])
        time.sleep(wait)
        wait = min(POLL_MOST, wait * 2)


class Soak:
    """One soak's clients, killer and scraper around a ``nectar serve`` already answering at ``url``."""

    def __init__(self, cluster: Cluster, serve_pid: int, url: str, runs: int | None) -> None:
        self.cluster, self.serve_pid, self.url = cluster, serve_pid, url
        self.store: RunStore = open_run_store(cluster.settings)
        self.tally = Tally()
        self.numbers = itertools.count()
        self.runs = runs
        #: set when the clients stop submitting (they follow what they submitted, then end)
        self.draining = threading.Event()
        self.scraped: Counter[int] = Counter()
        #: pid -> when the scraper first saw each API worker started after the soak began (a recycled one's successor)
        self.api_workers: dict[int, float] = {}
        self.kills: list[Kill] = []
        self.errors: list[str] = []

    def connection(self) -> Connection:
        """A connection to the API whose requests each time out past the cluster's patience (:meth:`Patience.bound`:
        HANG times the slowest start of a process of the service measured, ``nectar serve``'s)."""
        return Connection(self.url, self.tally, self.cluster.patience.bound())

    def next_number(self) -> int | None:
        """The n of a new distinct run, or None once ``--runs`` were submitted."""
        with self.tally.lock:
            n = next(self.numbers)
            if self.runs is not None and n >= self.runs:
                return None
            self.tally.submitted.append(n)
            return n

    def client(self, seed: int) -> None:
        conn, rng = self.connection(), random.Random(seed)
        try:
            while not self.draining.is_set():
                mine = []
                for _ in range(AHEAD):
                    with self.tally.lock:
                        known = len(self.tally.submitted)
                    n = rng.choice(self.tally.submitted[:known]) if known and rng.random() < DUPLICATES else None
                    n = self.next_number() if n is None else n
                    if n is None:
                        self.draining.set()
                        break
                    mine.append(submit(conn, self.tally, n))
                for run_id, path in mine:
                    follow(conn, self.tally, run_id, path)
        except Exception as exc:  # a client that stops says why; the soak fails
            self.errors.append(f"client {seed}: {type(exc).__name__}: {exc}")
            self.draining.set()
        finally:
            conn.close()

    def scraper(self, stop: threading.Event) -> None:
        conn = self.connection()
        try:
            known = set(self.api_worker_pids())
            while not stop.wait(SCRAPE_EVERY):
                status, _ = self.raw_get(conn, "/metrics")
                self.scraped[status] += 1
                for pid in set(self.api_worker_pids()) - known:  # seen within a scrape of its start
                    self.api_workers[pid] = time.time()
                    known.add(pid)
        finally:
            conn.close()

    def api_worker_pids(self) -> list[int]:
        return [pid for pid in descendants(self.serve_pid) if role(pid, self.serve_pid) == "API (forked)"]

    @staticmethod
    def raw_get(conn: Connection, path: str) -> tuple[int, bytes]:
        """A GET whose answer is not JSON (``/metrics``), on ``conn``; a connection error is counted and tried again."""
        for _ in range(TRIES):
            conn.reopen_if_dropped()
            try:
                conn.conn.request("GET", path)
                answer = conn.conn.getresponse()
                return answer.status, answer.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.tally.add(conn.tally.connection_errors, f"GET {type(exc).__name__}: {exc}")
                conn.conn.close()
        raise Failed(f"GET {path}: {TRIES} tries failed")

    def ended(self) -> int:
        counts = self.store.count_by_state()
        return sum(counts.get(state, 0) for state in (RunState.DONE, RunState.FAILED, RunState.CANCELLED))

    def attempt_pid(self, run: Run) -> int | None:
        """The pid of the attempt process executing ``run`` (its holder ``host:pid[.n]``), if it is one of this
        soak's ``nectar serve``'s processes."""
        if not run.worker:
            return None
        pid = int(run.worker.rpartition(":")[2].partition(".")[0])
        return pid if pid in descendants(self.serve_pid) else None

    def kill_one(self, rng: random.Random) -> Kill | None:
        """SIGKILL the attempt process of a random RUNNING run; what was killed, or None if no run was running."""
        running, _ = self.store.find(RunFilter(state=RunState.RUNNING), limit=100)
        rng.shuffle(running)
        for run in running:
            pid = self.attempt_pid(run)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kill = Kill(run.id, run.attempt, pid, time.time())
            self.kills.append(kill)
            print(f"killed attempt {run.attempt} of run {run.id} (process {pid})", flush=True)
            return kill
        return None

    def killer(self, every: int, stop: threading.Event, rng: random.Random) -> None:
        """A kill each time ``every`` more runs have ended."""
        due = self.ended() + every
        while not stop.wait(0.05):
            if self.ended() >= due and self.kill_one(rng) is not None:
                due += every

    def forced_kill(self, gates: Path) -> None:
        """Submit a run held at a gate, SIGKILL its attempt once it waits there, open the gate once its death is
        recorded; follow it to its end."""
        conn = self.connection()
        try:
            with self.tally.lock:  # a number no client repeats: its run alone waits at the gate
                n = next(self.numbers)
            gate = gates / f"gate-{n}"
            run_id, path = submit(conn, self.tally, n, str(gate))
            patience = self.cluster.patience
            patience.wait(
                lambda: [str(n)] in self.cluster.ledger_lines("gated"),
                f"run {run_id} at its gate",
                patience.longest(WARM_UP),
                WARM_UP,
            )
            run = self.store.get(run_id)
            assert run is not None and run.state == RunState.RUNNING, run
            pid = self.attempt_pid(run)
            assert pid is not None, run
            os.kill(pid, signal.SIGKILL)
            self.kills.append(Kill(run.id, run.attempt, pid, time.time()))
            print(f"killed attempt {run.attempt} of run {run.id} (process {pid}) at its gate", flush=True)
            patience.wait(
                lambda: any(a.attempt == run.attempt for a in self.store.attempts(run_id)),
                f"attempt {run.attempt} of run {run_id} to be recorded ended",
                patience.longest(WARM_UP),
                WARM_UP,
            )
            gate.touch()
            follow(conn, self.tally, run_id, path)
        finally:
            conn.close()

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True)
class Kill:
    run_id: str
    attempt: int
    pid: int
    at: float


def role(pid: int, serve_pid: int) -> str:
    """What a process of ``nectar serve`` is, from its command line (and its parent's: a fork has the same)."""
    if pid == serve_pid:
        return "nectar serve"
    text = cmdline(pid)
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        parent = 0
    forked = parent != serve_pid and parent and cmdline(parent) == text
    said = arguments(pid)  # not the program's path: a checkout's folder may be named with one of the words
    for word, name in (("luigid", "luigid"), ("gunicorn", "API"), ("worker", "worker"), ("clock", "clock")):
        if word in said:
            return f"{name} ({'forked' if forked else 'main'})" if name in ("API", "worker") else name
    return text[:40]


def sample_rss(serve_pid: int) -> dict[int, tuple[str, int]]:
    """The role and RSS (kB) of every process of ``nectar serve``."""
    found = {}
    for pid in [serve_pid, *descendants(serve_pid)]:
        try:
            found[pid] = (role(pid, serve_pid), rss_kb(pid))
        except (OSError, LookupError):
            continue
    return found


def all_runs(store: RunStore) -> list[Run]:
    runs: list[Run] = []
    while True:
        page, total = store.find(RunFilter(), offset=len(runs), limit=1000)
        runs += page
        if not page or len(runs) >= total:
            return runs


@contextmanager
def registry(kind: str) -> Iterator[dict[str, Any]]:
    """The settings of the registry of ``kind``: SQLite's file in the data folder, or a new PostgreSQL server's
    database (Debian's ``postgresql`` package, as the tests use it)."""
    if kind == "sqlite":
        yield {}
        return
    from tests.helpers.postgres import PostgresServer

    server = PostgresServer.start(free_port())  # in the temporary folder, which its user can reach (not ours: 0700)
    try:
        yield {"database_url": server.create_database()}
    finally:
        server.stop()


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.lines.append(f"[{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            self.failed.append(what)

    def say(self, what: str) -> None:
        self.lines.append(f"       {what}")


def warnings_of(log: str, kill: Kill) -> list[str]:
    """The WARNING lines of ``log`` that name the kill's run, its attempt and the signal."""
    attempt = re.compile(rf"\battempt {kill.attempt}\b")
    return [
        line
        for line in log.splitlines()
        if "WARNING" in line and kill.run_id in line and attempt.search(line) and "signal 9" in line
    ]


def logged(log: str, levels: tuple[str, ...], but: str = "") -> Counter[str]:
    """The lines of ``log`` at one of ``levels`` (but those saying ``but``), counted by kind: their message with
    each number as N (their time and level left out)."""
    kinds: Counter[str] = Counter()
    for line in log.splitlines():
        words = line.split(" ", 3)
        if len(words) == 4 and words[2] in levels and not (but and but in line):
            kinds[re.sub(r"\d+", "N", words[3])[:160]] += 1
    return kinds


def checked(soak: Soak, log: str, report: Report) -> None:
    """The checks on the registry, the ledger and the log, once the service stopped."""
    tally, store = soak.tally, soak.store
    runs = all_runs(store)
    by_id = {run.id: run for run in runs}
    lost = [rid for rid in tally.created if rid not in by_id or by_id[rid].state.active]
    report.check(not lost, f"{len(tally.created):,} runs accepted (202, created), {len(lost)} lost {lost[:5]}")
    unseen = [rid for rid in tally.created if rid not in tally.seen_final]
    report.check(not unseen, f"every accepted run followed to its end by its client ({len(unseen)} not) {unseen[:5]}")
    active = [run.id for run in runs if run.state.active]
    report.check(not active, f"{len(runs):,} runs in the registry, {len(active)} still active {active[:5]}")
    done_by_key = Counter(run.key for run in runs if run.state == RunState.DONE)
    twice = [key for key, count in done_by_key.items() if count > 1]
    report.check(not twice, f"{len(done_by_key):,} keys DONE, {len(twice)} DONE more than once {twice[:3]}")
    soaked = Counter(n for (n,) in soak.cluster.ledger_lines("soaked"))
    again = [n for n, count in soaked.items() if count > 1]
    report.check(
        not again, f"{len(soaked):,} keys whose step wrote its output, {len(again)} more than once {again[:5]}"
    )
    failed = Counter((run.error or "")[:120] for run in runs if run.state == RunState.FAILED)
    report.check(not failed, f"runs FAILED by cause: {dict(failed) or 'none'}")
    causes: Counter[str] = Counter()
    landed = []
    for kill in soak.kills:
        ended = [a for a in store.attempts(kill.run_id) if a.attempt == kill.attempt]
        if ended and ended[0].state != "DONE":
            landed.append(kill)
            causes[re.sub(r"\d+", "N", ended[0].error or "")[:120]] += 1
    report.say(f"attempts ended by the kills, by cause: {dict(causes) or 'none'}")
    missed = len(soak.kills) - len(landed)
    report.say(f"{len(soak.kills)} kills: {len(landed)} hit a run, {missed} found it ended (the process idle)")
    unlogged = [kill for kill in landed if not warnings_of(log, kill)]
    report.check(
        not unlogged, f"a WARNING naming run, attempt and signal for each kill that hit a run ({len(unlogged)} without)"
    )
    errors = logged(log, ("ERROR", "CRITICAL"))
    report.check(not errors, f"log lines at ERROR or above: {sum(errors.values())} {dict(errors)}")
    others = logged(log, ("WARNING",), but="killed by signal")
    report.say(f"other WARNING lines, by kind: {dict(others) or 'none'}")
    for kill in landed[:3]:
        report.say(f"  e.g. {warnings_of(log, kill)[0][:200]}" if kill not in unlogged else f"  none for {kill}")


def half_written(targets: Path) -> tuple[list[Path], list[Path]]:
    """Of the soak's targets: each ``out.txt`` whose text is not its step's whole word, and the temporary files left
    (a writer killed between its open and its rename)."""
    wrong, temporary = [], []
    for path in targets.rglob("*"):
        if path.name == "out.txt" and not re.fullmatch(r"soak \d+\n", path.read_text(errors="replace")):
            wrong.append(path)
        elif "luigi-tmp" in path.name or path.name.endswith(".tmp"):
            temporary.append(path)
    return wrong, temporary


def rss_said(samples: list[tuple[str, int, dict[int, tuple[str, int]]]], report: Report) -> None:
    """A line per process of any sample (a recycled one's successor too): its RSS at each sample, and its growth per
    1,000 runs ended from the start's sample to the end's, where it is in both."""
    (_, first_ended, first), *_, (_, last_ended, last) = samples
    report.say("RSS (MB) at " + ", ".join(f"{name} ({ended:,} runs ended)" for name, ended, _ in samples))
    seen = {pid: name for _, _, sample in samples for pid, (name, _) in sample.items()}
    for pid, name in sorted(seen.items(), key=lambda item: (item[1], item[0])):
        values = [sample[pid][1] / MB if pid in sample else None for _, _, sample in samples]
        said = " -> ".join("-" if v is None else f"{v:.1f}" for v in values)
        growth = ""
        if pid in first and pid in last and last_ended > first_ended:
            grown = (last[pid][1] - first[pid][1]) / MB / (last_ended - first_ended) * 1000
            growth = f"; {grown:+.2f} MB per 1,000 runs"
        report.say(f"  {name} {pid}: {said}{growth}")
    report.say(f"  processes at the end: {dict(Counter(name for name, _ in last.values()))}")


def soak(args: argparse.Namespace, root: Path) -> Report:
    report = Report()
    with registry(args.registry) as settings:
        procs = Processes(root / "logs")
        cluster = Cluster(procs, root / "soak", **settings)
        cluster.tune(max_queue=MAX_QUEUE)
        data = ["--data-dir", str(cluster.settings.data_dir), "--chains-dir", str(cluster.settings.chains_dir)]
        try:
            began = time.monotonic()
            served = procs.nectar_serve(cluster.env(), cluster.dir, [*data, "--workers", str(args.workers)])
            cluster.patience.started(time.monotonic() - began, "nectar serve")  # the floor of every wait after
            serve, url = served.proc, f"http://127.0.0.1:{served.port}"
            report.say(f"nectar serve (pid {serve.pid}) at {url}, {args.workers} workers, registry {args.registry}")
            runner = Soak(cluster, serve.pid, url, args.runs)
            try:
                soaked(runner, args, report, root)
                log = procs.log_of[serve.pid]
                began = time.monotonic()
                serve.send_signal(signal.SIGTERM)
                patience = cluster.patience
                try:  # idle by now (drained): its stop is less work than its start, the floor
                    code: int | None = serve.wait(timeout=patience.bound())
                except subprocess.TimeoutExpired:
                    code = None
                    report.say(f"  not stopped within {patience.bound():.0f} s ({patience.basis(of='its stop')})")
                report.check(code == 0, f"nectar serve stopped by SIGTERM: exit code {code}")
                report.say(f"  in {time.monotonic() - began:.1f} s")
                left = procs.tagged()
                report.check(not left, f"processes left after the stop: {[(pid, cmdline(pid)[:60]) for pid in left]}")
                checked(runner, log.read_text(errors="replace"), report)
                wrong, temporary = half_written(cluster.settings.local_targets_dir)
                report.check(not wrong, f"targets half-written: {len(wrong)} {wrong[:3]}")
                report.say(f"temporary files left by killed writers: {len(temporary)}")
            finally:
                runner.close()
        finally:
            procs.close(grace=5.0)
    return report


def clock_times(times: list[float]) -> str:
    return ", ".join(time.strftime("%H:%M:%S", time.gmtime(t)) for t in sorted(times)) or "none"


def next_look(runs: int | None, until: float) -> float:
    """Seconds until the soak looks again whether it is midway or over: at ``until`` (a soak of ``--minutes``), or
    every 0.1 s (of ``--runs``: it counts them)."""
    return 0.1 if runs is not None else max(0.0, until - time.monotonic())


def midway(runner: Soak, runs: int | None, half: float) -> bool:
    """Whether the soak is halfway: half its time passed, or half its ``--runs`` submitted."""
    return time.monotonic() >= half if runs is None else len(runner.tally.submitted) * 2 >= runs


def soaked(runner: Soak, args: argparse.Namespace, report: Report, root: Path) -> None:
    """Clients, scraper and killer for the soak's length, then the drain; what they saw, in ``report``."""
    stop = threading.Event()
    seconds = args.minutes * 60
    clients = [threading.Thread(target=runner.client, args=(seed,), daemon=True) for seed in range(CLIENTS)]
    others = [threading.Thread(target=runner.scraper, args=(stop,), daemon=True)]
    began = time.monotonic()
    for thread in [*clients, *others]:
        thread.start()
    first = runner.ended()
    if args.runs is None:
        runner.draining.wait(seconds * WARM_SHARE)
    else:  # a share of the runs, not of the time: sized from the first run's end (its own wait from the floor)
        patience = runner.cluster.patience
        patience.wait(lambda: runner.ended() > first, "the soak's first run to end", of="the first run")
        took = time.monotonic() - began
        needed = max(1.0, args.runs * WARM_SHARE)
        patience.wait(
            lambda: runner.ended() - first >= needed, "warm-up", took * needed, f"{needed:.0f} × the first run's end"
        )
    warm = time.monotonic() - began
    rate = (runner.ended() - first) / warm
    runner.cluster.patience.note(WARM_UP, warm)
    samples = [("start", runner.ended(), sample_rss(runner.serve_pid))]
    if args.forced_kills:
        gates = root / "gates"
        gates.mkdir()
        for _ in range(args.forced_kills):
            runner.forced_kill(gates)
    else:
        every = max(1, round(rate * seconds / KILLS))
        report.say(f"warm-up: {rate:.1f} runs ended/s; a kill every {every:,} runs ended")
        killer = threading.Thread(target=runner.killer, args=(every, stop, random.Random(0)), daemon=True)
        killer.start()
        others.append(killer)
    half, end = began + seconds / 2, began + seconds
    while not runner.draining.wait(next_look(args.runs, half if len(samples) == 1 else end)):
        if len(samples) == 1 and midway(runner, args.runs, half):
            samples.append(("middle", runner.ended(), sample_rss(runner.serve_pid)))
        if args.runs is None and time.monotonic() >= end:
            runner.draining.set()
    submitting = time.monotonic() - began
    for thread in clients:
        thread.join()
    stop.set()
    for thread in others:
        thread.join()
    drained = time.monotonic() - began - submitting
    left = runner.store.count(RunState.PENDING) + runner.store.count(RunState.RUNNING)
    runner.cluster.patience.wait(
        lambda: not runner.store.count(RunState.PENDING) and not runner.store.count(RunState.RUNNING),
        "drain",
        left / rate if rate > 0 else 0.0,  # no run ended in the warm-up: the floor
        f"the {left:,} runs left at the warm-up's rate",
    )
    if len(samples) == 1:
        samples.append(("middle", runner.ended(), sample_rss(runner.serve_pid)))
    samples.append(("end", runner.ended(), sample_rss(runner.serve_pid)))
    tally = runner.tally
    ended = runner.ended()
    report.say(
        f"{submitting:.0f} s submitting, {drained:.0f} s draining: {len(tally.submitted):,} distinct runs submitted, "
        f"{ended:,} ended ({ended / (submitting + drained):.1f}/s)"
    )
    report.say(f"answers: {dict(sorted(tally.answers.items()))}; {tally.retried_after} waited out a Retry-After")
    report.say(f"/metrics scrapes: {dict(runner.scraped)}")
    report.check(not runner.errors, f"clients ended without error {runner.errors[:3]}")
    report.check(
        not tally.connection_errors,
        f"connection errors seen by clients: {sum(tally.connection_errors.values())} {dict(tally.connection_errors)}",
    )
    report.say(f"connection errors at {clock_times(tally.error_times)}")
    report.say(f"idle connections found closed at {clock_times(tally.dropped_times)}")
    report.say(f"API workers started while it ran (a recycle each) at {clock_times(list(runner.api_workers.values()))}")
    report.check(set(runner.scraped) <= {200}, "every /metrics scrape answered 200")
    rss_said(samples, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the clients submit (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="nectar serve --workers (default 2)")
    parser.add_argument("--registry", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, help="stop after this many distinct runs instead of --minutes")
    parser.add_argument("--forced-kills", type=int, default=0, help="kills of runs held at a gate, not random ones")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, registry, targets)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="nectar-soak-"))
    with stopping_on_signals():
        report = soak(args, root)
    print("\n".join(report.lines))
    print(f"\n{len(report.failed)} checks failed" if report.failed else "\nevery check passed", f"({root})")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
