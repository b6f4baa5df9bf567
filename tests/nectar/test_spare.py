"""A worker's spare attempt processes: none while idle; while runs are claimed, one set up ahead per slot, and a
claimed run goes to one whose setup has finished (:mod:`nectar.spares`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import freeze
from nectar import executor as executor_module
from nectar import spares as spares_module
from nectar import wakeup
from nectar.build import Build
from nectar.catalog import loader
from nectar.config import Settings
from nectar.executor import Executor
from nectar.leases import HOST, holder
from nectar.registry import Run, RunState
from nectar.registry.sql import SqlRunStore
from nectar.service import Nectar
from nectar.spares import AHEAD, ENDED, FIRST_BACKOFF, Spare, Spares, hand_over, heard
from tests.conftest import wait_until
from tests.faults.conftest import alive, children
from tests.helpers.registries import closed_at_end

StartWorker = Callable[..., subprocess.Popen[bytes]]
QUICK_CHAIN = """
import os
import time

import luigi
from nectar import NectarTask


class QuickTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.n}\\n")


class SlowStartTask(NectarTask):
    gate = luigi.Parameter()
    submitter = luigi.IntParameter()

    def complete(self):
        while os.getpid() != self.submitter and not os.path.exists(self.gate):  # the attempt's luigi asks first
            time.sleep(0.05)
        return super().complete()

    def run(self):
        with self.output().open("w") as out:
            out.write("started\\n")


class HeldTask(NectarTask):
    gate = luigi.Parameter()

    def run(self):
        while not os.path.exists(self.gate):
            time.sleep(0.05)
        with self.output().open("w") as out:
            out.write("held\\n")
"""
#: long enough that no test sees a spare let go for idleness unless it asks for it
KEPT = 3600.0
#: a :data:`~nectar.catalog.loader.SETTLED` no chain file a test writes comes to: its bytes are read at each use
YEAR = 365 * 24 * 3600.0


@pytest.fixture
def quick(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path]) -> Settings:
    write_chain("quick/quick_chain", QUICK_CHAIN)
    return settings.replace(scheduler_url=luigid, spare_idle=KEPT, runs_per_process=1)  # a process per run: test_reuse


def ended(nectar: Nectar, run_id: str) -> Run:
    run = wait_until(lambda: (r := nectar.runs.get(run_id)) and not r.state.active and r, timeout=60)
    assert isinstance(run, Run)
    return run


def submit(nectar: Nectar, n: int) -> str:
    submission = nectar.submit("quick", "quick_chain", "QuickTask", {"n": n})
    assert submission.run is not None
    return submission.run.id


def pid_of(run: Run) -> int:
    """The pid of the process that held ``run``'s attempt (``host:pid``, or ``host:pid.n`` for its n-th run)."""
    assert run.worker is not None and run.worker.startswith(f"{HOST}:")
    pid = holder(run.worker)[1]
    assert pid is not None
    return pid


def spares_after(worker: subprocess.Popen[bytes], run: Run, count: int) -> list[int]:
    """The worker's spares once ``run``'s process is gone and ``count`` children are left (all spares then)."""
    done = pid_of(run)
    found = wait_until(
        lambda: not alive(done) and len(kids := children(worker.pid)) == count and done not in kids and (kids,),
        timeout=60,
    )
    assert isinstance(found, tuple)
    return sorted(found[0])


def test_a_worker_keeps_spares_for_its_slots_once_it_has_claimed_and_the_next_run_goes_to_one(
    quick: Settings, start_worker: StartWorker
) -> None:
    nectar = closed_at_end(Nectar(quick))
    worker = start_worker(quick, workers=2)
    first = ended(nectar, submit(nectar, 1))
    spares = spares_after(worker, first, AHEAD * 2)

    run = ended(nectar, submit(nectar, 2))

    assert (first.state, run.state, run.attempt) == (RunState.DONE, RunState.DONE, 1)
    assert pid_of(run) in spares  # claimed in the spare's name: a dead spare is reclaimed by pid
    wait_until(lambda: not alive(pid_of(run)), timeout=60)  # the attempt's process ends with it


def test_spares_are_let_go_once_no_run_was_claimed_for_a_while(quick: Settings, start_worker: StartWorker) -> None:
    settings = quick.replace(spare_idle=0.2)
    nectar = closed_at_end(Nectar(settings))
    worker = start_worker(settings, workers=2)

    run = ended(nectar, submit(nectar, 3))

    assert run.state == RunState.DONE
    assert spares_after(worker, run, 0) == []
    assert worker.poll() is None


def test_a_spare_that_dies_while_every_slot_is_busy_is_reaped_and_replaced(
    quick: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Not left a zombie counted among the spares until a slot is free: the worker looks at its spares each pass."""
    nectar = closed_at_end(Nectar(quick))
    worker = start_worker(quick, workers=1)
    spares_after(worker, ended(nectar, submit(nectar, 8)), AHEAD)
    gate = tmp_path / "held-gate"
    held = nectar.submit("quick", "quick_chain", "HeldTask", {"gate": str(gate)}).run
    assert held is not None
    try:
        running = wait_until(lambda: (r := nectar.runs.get(held.id)) and r.state == RunState.RUNNING and r, timeout=60)
        assert isinstance(running, Run)
        attempt = pid_of(running)
        spares = wait_until(
            lambda: len(kids := [k for k in children(worker.pid) if k != attempt and alive(k)]) == AHEAD and kids,
            timeout=60,
        )
        assert isinstance(spares, list)
        os.kill(spares[0], signal.SIGKILL)
        wait_until(lambda: spares[0] not in children(worker.pid), timeout=60)  # reaped, the slot still busy
        wait_until(lambda: len([k for k in children(worker.pid) if k != attempt and alive(k)]) == AHEAD, timeout=60)
        current = nectar.runs.get(held.id)
        assert current is not None and current.state == RunState.RUNNING
    finally:
        gate.touch()
    assert ended(nectar, held.id).state == RunState.DONE


@pytest.fixture
def new_executor(quick: Settings) -> Iterator[Callable[[], Executor]]:
    """Makes a worker's executor in this process (its spares are forks of it), on the local scheduler."""
    made: list[Executor] = []

    def new(concurrency: int = 2, **changes: Any) -> Executor:
        made.append(closed_at_end(Executor(quick.replace(scheduler_url=None, **changes), concurrency=concurrency)))
        return made[-1]

    yield new
    for executor in made:
        executor.spares.close()
        for pid in list(executor.children):
            executor._kill(pid, signal.SIGKILL)
        executor._reap(block=True)


def forks_no_spare(executor: Executor) -> None:
    """A few passes of ``executor``'s loop fork no process and leave it no spare."""
    before = set(children(os.getpid()))
    for _ in range(3):
        executor._serve_once()
    assert set(children(os.getpid())) == before
    assert len(executor.spares) == 0


def test_an_idle_worker_forks_no_spare(new_executor: Callable[[], Executor]) -> None:
    forks_no_spare(new_executor())


def test_an_idle_worker_asks_whether_luigid_answers_ahead_of_its_next_claim(
    quick: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker asks luigid whether it answers at most once per heartbeat interval, before it claims; a pass of its
    loop that claims nothing asks again once the answer is :data:`~nectar.executor.CHECK_AHEAD` of that old, so that
    a worker woken by a run queued seldom waits for luigid's answer before its claim. Here nothing is queued and no
    look is made after the first: luigid, paused meanwhile, is found so all the same."""
    executor = closed_at_end(Executor(quick, concurrency=1))
    executor.look_anyway = 3600.0  # only the first pass looks for a run: nothing tells of one after
    executor._serve_once()  # its look: luigid answers
    assert executor.scheduler is not None
    caplog.set_level("WARNING", logger=executor_module.__name__)
    executor.scheduler.call("pause")

    def told_paused() -> bool:
        executor._serve_once()  # a pass, then a sleep of at most the poll interval: nothing to claim, no spare
        return "not claiming runs until luigid answers" in caplog.text

    try:
        wait_until(told_paused)
    finally:
        executor.scheduler.call("unpause")
    assert not executor.children and not len(executor.spares)


@pytest.mark.parametrize("settled", [False, True], ids=["changed-just-now", "settled"])
def test_a_runs_chain_file_is_stated_once_in_all_by_its_worker_and_the_process_that_runs_it(
    new_executor: Callable[..., Executor],
    quick: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settled: bool,
) -> None:
    """The claim's stat tells the worker whether to compile the file again and the process that stays for another
    run which file to execute ahead: neither stats it again (it was 3 a run: the claim, the attempt's end in the
    process, its return to the spares in the worker).

    Whatever the file's age: once its last change is :data:`~nectar.catalog.loader.SETTLED`, a process's stat of it
    (``_unchanged``) vouches for the bytes it read before, in place of reading them again (test_chain_code); those are
    not this stat. The test wrote the file just before, so whether it was settled at a use depended on how long the
    runs took to come to it: on a loaded machine the count took them in (13 for 4 runs), so both states are set here."""
    monkeypatch.setattr(loader, "SETTLED", -3600.0 if settled else YEAR)
    executor = new_executor(concurrency=1, runs_per_process=100, worker_poll_interval=0.05)
    nectar = closed_at_end(Nectar(quick))
    chain = os.fspath(quick.chains_dir / "quick" / "quick_chain.py")
    noted, vouches = tmp_path / "stats", tmp_path / "vouches"
    serving = False  # the executor's stats, not the submissions' (the API's catalog stats the file too)
    vouching = False  # in loader._unchanged
    stat, unchanged = os.stat, loader._unchanged

    def note(into: Path) -> None:
        fd = os.open(into, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)

    def noting(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if serving and isinstance(path, str | os.PathLike) and os.fspath(path) == chain:  # its forks note theirs
            note(vouches if vouching else noted)
        return stat(path, *args, **kwargs)

    def vouched(path: Path, seen: Any) -> bool:
        nonlocal vouching
        vouching = True
        try:
            return unchanged(path, seen)
        finally:
            vouching = False

    monkeypatch.setattr(os, "stat", noting)
    monkeypatch.setattr(loader, "_unchanged", vouched)

    def run(n: int) -> Run:
        run_id = submit(nectar, n)

        def ended_and_back() -> Run | None:
            nonlocal serving
            serving = True
            try:
                executor._serve_once()
            finally:
                serving = False
            current = nectar.runs.get(run_id)
            return current if current and not current.state.active and not executor.children else None

        found = wait_until(ended_and_back, timeout=60, interval=0)
        assert isinstance(found, Run)
        return found

    run(1)  # the chain compiled in the worker, its first process forked
    noted.unlink(missing_ok=True)
    runs = [run(n) for n in range(2, 6)]

    assert [r.state for r in runs] == [RunState.DONE] * len(runs)
    assert len({pid_of(r) for r in runs}) < len(runs), "no process took a second run: nothing here is reuse's"
    stats = noted.read_text().split() if noted.exists() else []
    assert len(stats) == len(runs), f"{len(stats)} stats of the chain file for {len(runs)} runs (by pid: {stats})"
    assert vouches.exists() == settled, "a file's stat vouched for its bytes where it was not settled, or none did"


def runs_one_by_one(executor: Executor, nectar: Nectar, count: int) -> list[Run]:
    """``count`` runs submitted one after another, each once the last ended and its process is back among the
    spares (or gone), all DONE."""
    runs = []
    for n in range(1, count + 1):
        run_id = submit(nectar, n)

        def ended_and_back(run_id: str = run_id) -> bool:
            executor._serve_once()
            current = nectar.runs.get(run_id)
            return current is not None and not current.state.active and not executor.children

        wait_until(ended_and_back, timeout=60, interval=0)
        runs.append(ended(nectar, run_id))
    assert [r.state for r in runs] == [RunState.DONE] * len(runs)
    return runs


def test_a_processs_exit_and_proc_descriptors_are_made_once_whatever_the_runs_it_takes(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim hands its run to a process that may have taken runs before: the descriptor that tells of its exit
    (``pidfd_open``) and the one its worker reads its ``/proc`` state from, to hand no run to a dead spare, were
    made at its first claim and are kept with it (they were made, and closed, at each claim: 4 system calls a run,
    the ``/proc`` path looked up each time)."""
    executor = new_executor(concurrency=1, runs_per_process=100, worker_poll_interval=0.05)
    nectar = closed_at_end(Nectar(quick))
    worker = os.getpid()
    made: dict[str, list[int]] = {"exits": [], "stat": []}
    exits, opened = wakeup.exits, os.open

    def noting_exits(pid: int) -> int | None:
        made["exits"].append(pid)
        return exits(pid)

    def noting_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.getpid() == worker and isinstance(path, str) and path.startswith("/proc/") and path.endswith("/stat"):
            made["stat"].append(int(path.split("/")[2]))
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(wakeup, "exits", noting_exits)
    monkeypatch.setattr(os, "open", noting_open)
    runs = runs_one_by_one(executor, nectar, 5)
    pids = [pid_of(r) for r in runs]
    assert len(set(pids)) < len(pids), "no process took a second run: not the case under test"
    assert sorted(made["exits"]) == sorted(set(pids)), f"pidfds made {made['exits']} for runs taken by {pids}"
    # a spare a claim looked at before it found no run has its /proc state opened too (once): each at most once
    stats = made["stat"]
    assert len(stats) == len(set(stats)) and set(pids) <= set(stats), f"/proc stats opened {stats} for runs by {pids}"


def test_an_attempt_says_its_first_step_started_only_while_a_fork_waits_for_it(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt's word that its first step started ends the hold on the last spare's fork; with every spare
    wanted there (processes back from their runs), no fork waits for it, and the word only woke its worker's loop for
    a pass on the attempt's way to ``run()``, each run. Asked of the attempt only while spares are short."""
    executor = new_executor(concurrency=1, runs_per_process=100, worker_poll_interval=0.05)
    nectar = closed_at_end(Nectar(quick))
    heard_started = 0
    listened = executor_module.heard

    def noting(channel: socket.socket) -> tuple[bytes, int] | None:
        nonlocal heard_started
        said = listened(channel)
        heard_started += said is not None and said[0] == spares_module.STARTED
        return said

    monkeypatch.setattr(executor_module, "heard", noting)
    runs = runs_one_by_one(executor, nectar, 6)
    assert len({pid_of(r) for r in runs}) < len(runs), "no process took a second run: not the case under test"
    assert 1 <= heard_started < len(runs), f"{heard_started} attempts of {len(runs)} said their first step started"
    assert len(executor.spares) >= AHEAD, "spares went missing"


def test_a_run_queued_for_later_makes_no_spare(new_executor: Callable[[], Executor], quick: Settings) -> None:
    """A PENDING run not due yet (a retry's backoff, luigid unreachable) is no work: no spare is forked for it
    (were one, it would be let go after ``spare_idle`` and forked again, round after round)."""
    nectar = closed_at_end(Nectar(quick))
    run_id = submit(nectar, 7)
    claimed = nectar.runs.claim("elsewhere:1", run_id)
    assert claimed is not None and nectar.runs.requeue(run_id, claimed.attempt, delay=3600.0)
    forks_no_spare(new_executor())


@pytest.mark.parametrize("later", [False, True], ids=["none-queued", "one-queued-for-later"])
def test_a_pass_with_a_free_slot_and_no_spare_reads_the_queue_once(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch, later: bool
) -> None:
    """A free slot, no spare ready, no run due: one read of the queue says both that none is due and when the one
    due first will be (it was two: whether one is due, then when)."""
    executor = new_executor(concurrency=1)
    executor.runs.wait_for_work(0.0)  # its watch for queued runs made (a process's first wait returns at once)
    nectar = closed_at_end(Nectar(quick))
    due_at = None
    if later:
        run_id = submit(nectar, 8)
        claimed = nectar.runs.claim("elsewhere:1", run_id)
        assert claimed is not None and nectar.runs.requeue(run_id, claimed.attempt, delay=3600.0)
        queued = nectar.runs.get(run_id)
        assert queued is not None
        due_at = queued.not_before
    runs = executor.runs
    assert isinstance(runs, SqlRunStore)
    reads: list[object] = []
    read = runs._read

    def counted(query: Callable[[Any], Any]) -> Any:
        reads.append(query)
        return read(query)

    monkeypatch.setattr(runs, "_read", counted)
    monkeypatch.setattr(executor, "_watch", lambda: None)  # the leases' reclaim reads too: not the subject here

    executor._serve_once()

    assert len(reads) == 1, f"{len(reads)} reads of the registry"
    assert executor._due_at == due_at  # None: none PENDING
    assert len(executor.spares) == 0


def test_a_spare_still_being_set_up_is_let_go_without_waiting_for_its_setup(
    new_executor: Callable[[], Executor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its setup may wait long (on luigid, on the registry): letting it go (idle, or the worker stopping) kills it,
    as no run was claimed in its name, rather than stopping the worker's loop until its setup ends."""
    gate = tmp_path / "gate"
    prepare = Executor._prepare

    def held(self: Executor) -> tuple[Build | None, bytes]:  # until the gate, however long (the test opens it)
        while not gate.exists():
            time.sleep(0.05)
        return prepare(self)

    monkeypatch.setattr(Executor, "_prepare", held)
    executor = new_executor()
    executor.spares.wanted()
    executor.spares.keep(1)
    (spare,) = executor.spares.spares
    closing = threading.Thread(target=executor.spares.close, daemon=True)
    try:
        closing.start()
        closing.join(60)  # a deadline that only fails a hung test: the old loop waited for the gate
        assert not closing.is_alive(), "the worker's loop waits for a spare's setup"
        assert not alive(spare.pid)
    finally:
        gate.touch()
        closing.join(60)


def test_an_attempts_exit_wakes_the_workers_loop_not_a_look_on_a_timer(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its slot is free as soon as its process is gone: the kernel says so (a pidfd), where the loop used to look
    every ``REAP_INTERVAL``. Here no look on a timer would come within the test."""
    monkeypatch.setattr(executor_module, "REAP_INTERVAL", 3600.0)
    executor = new_executor(concurrency=1, worker_poll_interval=3600.0)
    nectar = closed_at_end(Nectar(quick))
    run_id = submit(nectar, 11)
    while not executor.children:  # each pass returns once a spare is ready, or a run is queued
        executor._serve_once()
    sleep = executor._sleep
    # once reaped, nothing is left to wake the loop (rightly: no run, no attempt): that sleep is not this test's
    monkeypatch.setattr(executor, "_sleep", lambda blocked: sleep(blocked) if executor.children else None)

    def until_reaped() -> None:
        while executor.children:
            executor._serve_once()

    reaping = threading.Thread(target=until_reaped, daemon=True)
    reaping.start()
    reaping.join(60)  # a deadline that only fails a hung test

    assert not reaping.is_alive(), "the attempt's exit did not wake the worker's loop"
    assert ended(nectar, run_id).state == RunState.DONE


def test_a_pass_woken_by_a_spare_alone_does_not_look_for_a_run_until_one_is_queued(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a look found no run due, a pass of the loop that a spare (or an attempt) woke does not look again (a
    claim that finds nothing, or a read of the queue): the registry's word that a run was queued makes the next
    pass look. Here no wait times out within the test; the passes are the test's own."""
    executor = new_executor(concurrency=1, worker_poll_interval=3600.0)
    executor.look_anyway = float("inf")  # the look a lost word would need is not the subject here
    executor.runs.wait_for_work(0.0)  # its watch for queued runs made (a process's first wait returns at once)
    looks: list[str | None] = []  # each claim's run (None: it found none), or "due?" for a read of the queue
    claim, next_due = executor.runs.claim, executor.runs.next_due

    def claimed(worker: str, run_id: str | None = None) -> Run | None:
        run = claim(worker, run_id)
        looks.append(run.id if run is not None else None)
        return run

    def due() -> float | None:
        looks.append("due?")
        return next_due()

    monkeypatch.setattr(executor.runs, "claim", claimed)
    monkeypatch.setattr(executor.runs, "next_due", due)
    nectar = closed_at_end(Nectar(quick))

    def passes() -> None:
        executor.spares.wanted()  # runs were wanted: a spare is forked, whose readiness wakes the loop
        executor._serve_once()  # no spare ready: the queue read (nothing due); a sleep until the spare is ready
        executor._serve_once()  # the spare is ready: no look; a second spare forked, a sleep until it is ready
        run_id.append(submit(nectar, 21))
        while not executor.children:  # the word of the run queued wakes the loop, which claims it
            executor._serve_once()

    run_id: list[str] = []
    passing = threading.Thread(target=passes, daemon=True)
    passing.start()
    passing.join(60)  # a deadline that only fails a hung test

    assert not passing.is_alive(), "the queued run never reached the worker"
    assert looks == ["due?", run_id[0]], "a pass looked for a run though none was queued"


def test_an_idle_workers_passes_look_for_a_run_once_then_only_when_one_is_queued_or_due(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker's sleep ends every ``worker_poll_interval`` (leases, luigid): such a pass does not read the
    queue again, once a look found no run due. A run queued for later (a retry's delay) is claimed once due, though
    nothing tells of it then."""
    executor = new_executor(concurrency=1, worker_poll_interval=0.001)
    executor.look_anyway = float("inf")  # the look a lost word would need is not the subject here
    executor.runs.wait_for_work(0.0)  # its watch for queued runs made (a process's first wait returns at once)
    looks: list[str] = []
    next_due = executor.runs.next_due

    def due() -> float | None:
        looks.append("due?")
        return next_due()

    monkeypatch.setattr(executor.runs, "next_due", due)
    for _ in range(20):  # passes that each sleep out the poll interval (no spare, no run)
        executor._serve_once()
    assert looks == ["due?"], "an idle pass looked for a run though none was queued"

    nectar = closed_at_end(Nectar(quick))
    run_id = submit(nectar, 22)
    claimed = nectar.runs.claim("elsewhere:1", run_id)
    assert claimed is not None and nectar.runs.requeue(run_id, claimed.attempt, delay=0.2)

    def claimed_once_due() -> bool:
        executor._serve_once()
        return bool(executor.children)

    wait_until(claimed_once_due, timeout=60)  # due in 0.2 s: claimed then

    assert [child.run.id for child in executor.children.values()] == [run_id]


def test_a_run_whose_word_was_lost_is_claimed_by_a_look_all_the_same(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The word that a run was queued is an event a fault can lose (inotify out of instances, a connection cut
    between the commit and its NOTIFY): an idle worker that found no run and hears nothing still looks again after
    ``look_anyway`` seconds, so such a run waits that long, not for good (it stayed PENDING before)."""
    executor = new_executor(concurrency=1, worker_poll_interval=0.001)
    executor.look_anyway = 0.2
    while executor.runs.wait_for_work(0.0):  # its first waits say a run may have been queued before them
        pass
    executor._serve_once()  # a look finds none: none is looked for until told (or look_anyway has passed)
    nectar = closed_at_end(Nectar(quick))
    monkeypatch.setattr(type(nectar.runs), "_queued", lambda self: None)  # the run's word is lost
    run_id = submit(nectar, 24)

    def claimed() -> bool:
        executor._serve_once()
        return bool(executor.children)

    wait_until(claimed, timeout=60)

    assert [child.run.id for child in executor.children.values()] == [run_id]


def test_without_the_kernels_word_an_idle_worker_claims_a_run_queued_in_its_waits_last_sleep(
    new_executor: Callable[..., Executor], quick: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel cannot tell of writes (no inotify: out of instances), an idle worker that found no run learns
    of one queued in the last sleep of its wait from its next wait, and claims it (a version read again as the wait
    ended took it as seen: the run stayed PENDING). The run is queued inside that sleep; the passes are the test's."""
    monkeypatch.setattr(wakeup, "changes", lambda path: None)
    executor = new_executor(concurrency=1, worker_poll_interval=0.001)
    while executor.runs.wait_for_work(0.0):  # its first waits say a run may have been queued before them
        pass
    executor._serve_once()  # a look finds none: none is looked for until told
    nectar = closed_at_end(Nectar(quick))
    sleep = wakeup.readable
    run_id: list[str] = []

    def sleeping(fds: list[int], timeout: float) -> list[int]:  # the idle wait's sleep (no spare, no child)
        if not run_id:
            run_id.append(submit(nectar, 23))
        return sleep(fds, timeout)

    monkeypatch.setattr(wakeup, "readable", sleeping)
    executor._serve_once()  # its wait ends by its timeout, the run queued in its sleep
    monkeypatch.setattr(wakeup, "readable", sleep)
    assert run_id

    def claimed() -> bool:
        executor._serve_once()
        return bool(executor.children)

    wait_until(claimed, timeout=60)

    assert [child.run.id for child in executor.children.values()] == run_id


def test_a_draining_worker_sleeps_though_a_spare_said_it_is_ready(
    new_executor: Callable[..., Executor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopping worker reads its spares no more: a spare's word (or death) left unread must not wake its loop
    again and again while its attempts finish, so its sleep is on none of their sockets (each sleep of the pass
    seen as it is asked for, not timed)."""
    executor = new_executor(worker_poll_interval=0.01)
    executor.spares.wanted()
    executor.spares.keep(2)
    (spare,) = executor.spares.spares
    wait_until(lambda: wakeup.readable([spare.channel.fileno()], 0.0), timeout=60)  # it said it is ready, unread
    executor.stop()
    sleeps: list[list[int]] = []
    readable = wakeup.readable

    def watched(fds: Iterable[int], timeout: float) -> list[int]:
        fds = list(fds)
        if timeout > 0:  # a sleep, not a look
            sleeps.append(fds)
        return readable(fds, timeout)

    monkeypatch.setattr(wakeup, "readable", watched)
    executor._serve_once()  # until a child exits (it has none), or the poll interval passes

    assert sleeps, "the draining worker's pass did not sleep"
    assert all(spare.channel.fileno() not in fds for fds in sleeps), "the draining worker sleeps on its spare's word"


def test_a_spare_that_dies_in_its_setup_is_forked_again_only_after_a_backoff() -> None:
    """Not once per pass of the loop (a fork each, which the spare's death now wakes at once): after
    ``FIRST_BACKOFF`` seconds, doubled at each such death, until one is ready again."""
    now = [0.0]
    spares = Spares(lambda: os._exit(3), lambda given, prepared: (0, False), idle_after=KEPT, clock=lambda: now[0])
    try:
        spares.wanted()
        spares.keep(1)
        (spare,) = spares.spares
        wait_until(lambda: spares.ready() is None and not spares.spares, timeout=60)  # dead in its setup, reaped

        spares.keep(1)
        assert not spares.spares, "forked again at once"
        now[0] += FIRST_BACKOFF
        spares.keep(1)
        (again,) = spares.spares
        wait_until(lambda: spares.ready() is None and not spares.spares, timeout=60)
        now[0] += FIRST_BACKOFF
        spares.keep(1)
        assert not spares.spares, "the second death waits twice as long"
        now[0] += FIRST_BACKOFF
        spares.keep(1)
        assert len(spares.spares) == 1
    finally:
        spares.close()


def test_a_spare_let_go_that_is_slow_to_exit_does_not_hold_up_the_workers_loop() -> None:
    """A ready spare let go exits once it reads its socket's end; the loop does not wait for that exit (one stopped
    here; on a loaded machine, one not yet scheduled), and reaps it on a later pass once it has exited: no zombie
    is left."""
    now = [0.0]
    spares = Spares(lambda: (None, b"r"), lambda given, prepared: (0, False), idle_after=1.0, clock=lambda: now[0])
    stopped: int | None = None
    try:
        spares.wanted()
        spares.keep(1)
        (spare,) = spares.spares
        wait_until(lambda: spares.ready() is spare, timeout=60)
        stopped = spare.pid
        freeze(stopped)
        now[0] += 2.0  # no run wanted for longer than idle_after: the spare is let go
        kept = threading.Thread(target=spares.keep, args=(1,), daemon=True)
        kept.start()
        kept.join(60)

        assert not kept.is_alive(), "the loop waited for a stopped spare to exit"
        assert not spares.spares
        os.kill(stopped, signal.SIGCONT)
        wait_until(lambda: spares.keep(1) is None and not Path(f"/proc/{stopped}").exists(), timeout=60)
        stopped = None  # reaped by a pass of the loop
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        spares.close()


def handed_a_run(spares: Spares) -> tuple[Spare, socket.socket]:
    """Fork a spare, wait until it is ready, and hand it a run: the spare and the worker's end of its socket."""
    spares.wanted()
    spares.keep(1)
    (spare,) = spares.spares
    wait_until(lambda: spares.ready() is spare, timeout=60)
    spares.take(spare)
    return spare, hand_over(spare, b"run")


def test_a_process_back_from_its_run_that_dies_before_it_is_ready_again_is_replaced_without_a_backoff() -> None:
    """The backoff is for fresh spares dying in their setup (the next fork may die the same way). A process that
    ran a run and stays, then dies setting itself up again, says nothing of a fresh fork's setup (and no fork loop
    can come of it: it is not forked): its replacement is forked at once."""
    now = [0.0]
    calls = [0]

    def prepare() -> tuple[None, bytes]:  # in each process: its first setup goes well, its second dies
        calls[0] += 1
        if calls[0] > 1:
            os._exit(3)
        return None, b"r"

    spares = Spares(
        prepare, lambda given, prepared: (0, True), idle_after=KEPT, clock=lambda: now[0], runs_per_process=2
    )
    try:
        spare, channel = handed_a_run(spares)
        assert wait_until(lambda: heard(channel), timeout=60) == (ENDED, 0)
        spares.returned(spare.pid, channel, runs_done=1)
        wait_until(lambda: spares.ready() is None and not spares.spares, timeout=60)  # dead in its setup, reaped

        spares.keep(1)

        assert len(spares.spares) == 1, "its replacement waits for a backoff"
    finally:
        spares.close()


def test_a_process_says_its_run_ended_before_it_looks_at_what_the_run_left_then_exits_if_it_must() -> None:
    """Its slot is free as soon as its run has ended: a thread its run left (which it waits ``THREAD_GRACE`` for,
    then exits) does not hold the slot; the worker drops it as a spare that died before it was ready: reaped, no
    backoff, nothing left behind."""
    now = [0.0]

    def execute(given: bytes, prepared: Any) -> tuple[int, bool]:  # in the spare: a run that leaves a thread behind
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        return 0, True

    spares = Spares(lambda: (None, b"r"), execute, idle_after=KEPT, clock=lambda: now[0], runs_per_process=2)
    try:
        spare, channel = handed_a_run(spares)

        assert wait_until(lambda: heard(channel), timeout=60) == (ENDED, 0), "its slot was held until it exited"
        spares.returned(spare.pid, channel, runs_done=1)
        wait_until(lambda: spares.ready() is None and not spares.spares, timeout=60)  # it exits, and is dropped
        spares.keep(1)
        assert len(spares.spares) == 1, "its replacement waits for a backoff"

        def reaped() -> bool:
            spares.ready()  # a look reaps the spares let go that have exited
            return not Path(f"/proc/{spare.pid}").exists()

        wait_until(reaped, timeout=60)  # not even a zombie
    finally:
        spares.close()


def test_an_idle_worker_has_not_imported_what_only_runs_need(settings: Settings) -> None:
    """boto3 (~8 MB, through luigi's S3 targets) and the like are imported before the first spare is forked."""
    probe = (
        "import sys; from pathlib import Path\n"
        "from nectar.config import Settings; from nectar.executor import Executor\n"
        f"executor = Executor(Settings(data_dir=Path({str(settings.data_dir)!r})))\n"
        "for _ in range(3): executor._serve_once()\n"
        "print(sorted({'boto3', 'botocore', 'luigi.contrib.s3'} & set(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_what_the_worker_holds_once_warm_stays_out_of_its_collectors_sight(settings: Settings) -> None:
    """Frozen once (luigi, boto3, nectar), never thawed by a fork: a full collection of the worker scans none of it
    (it took 20-40 ms on the claims' path, copying every page a spare shares with the worker)."""
    probe = (
        "import gc; from pathlib import Path\n"
        "from nectar.config import Settings; from nectar.executor import Executor\n"
        f"executor = Executor(Settings(data_dir=Path({str(settings.data_dir)!r})))\n"
        "executor.warm(); warm = gc.get_freeze_count()\n"
        "executor.spares.wanted(); executor.spares.keep(1); forked = len(executor.spares)\n"
        "print(warm, gc.get_freeze_count(), forked); executor.spares.close()"
    )
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    warm, after_fork, forked = map(int, answer.split())
    assert forked == 1
    assert warm > 10_000, "warm froze nothing"
    assert after_fork >= warm, "a fork thawed what the worker holds"


def test_a_warm_worker_has_read_luigis_settings_for_its_attempts_which_read_them_no_more(settings: Settings) -> None:
    """luigi's [core] and [worker] settings, read in each attempt (4.4 ms of a trivial run's ~25), are read once by
    the worker before its first fork (:func:`nectar.build.prepare`): a build made after reads none."""
    probe = (
        "from pathlib import Path\n"
        "import luigi.interface, luigi.worker\n"
        "from nectar import build\n"
        "from nectar.config import Settings; from nectar.executor import Executor\n"
        f"settings = Settings(data_dir=Path({str(settings.data_dir)!r}))\n"
        "executor = Executor(settings); executor.warm()\n"
        "reads = []\n"
        "for kind in (luigi.interface.core, luigi.worker.worker):\n"
        "    kind.__init__ = (lambda made: lambda *a, **k: reads.append(1) or made(*a, **k))(kind.__init__)\n"
        "build.Build(settings.scheduler_url, 'probe'); print(len(reads))"
    )
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert answer.split()[-1] == "0", answer


def test_a_warm_worker_has_set_up_luigis_logging_for_its_attempts_which_set_it_up_no_more(settings: Settings) -> None:
    """luigi's logging, set up once per process by the first build (~0.8 ms of a fresh attempt's CPU), is set up by
    the worker before its first fork, as an attempt leaves it (:func:`nectar.attempt.quiet_luigi`): a build made
    after adds no handler, and luigi's records go to the process's log only."""
    answer = after_a_warm_worker(
        settings,
        "luigis = logging.getLogger('luigi-interface')\n"
        "before = InterfaceLogging._configured, list(luigis.handlers)\n"
        "build.Build(settings.scheduler_url, 'probe')\n"
        "print(*before, luigis.handlers == before[1])",
    )
    assert answer.split("\n")[-2] == "True [] True", answer


def after_a_warm_worker(settings: Settings, probe: str) -> str:
    """What ``probe`` prints, run in a process whose logging is configured as a worker's, once an executor of
    ``settings`` was warmed there (:meth:`Executor.warm`); ``logging``, ``InterfaceLogging``, ``build`` and
    ``settings`` are its names."""
    warmed = (
        "import logging\n"
        "from pathlib import Path\n"
        "from luigi.setup_logging import InterfaceLogging\n"
        "from nectar import build\n"
        "from nectar.config import Settings; from nectar.executor import Executor\n"
        "from nectar.logs.format import configure_logging\n"
        "configure_logging()\n"
        f"settings = Settings(data_dir=Path({str(settings.data_dir)!r}))\n"
        "Executor(settings).warm()\n"
    )
    return subprocess.run([sys.executable, "-c", warmed + probe], capture_output=True, text=True, check=True).stdout


def test_builds_made_after_luigis_logging_is_set_up_make_no_record_of_it(settings: Settings) -> None:
    """A spare makes a build at each set-up: once luigi's logging is set up (by the worker, before its first fork),
    a build does not ask luigi to set it up again, which only made an INFO record, "logging already configured", each
    time (a fresh process's one build never makes it); luigi's logging stays set up."""
    answer = after_a_warm_worker(
        settings,
        "made = []\n"
        "factory = logging.getLogRecordFactory()\n"
        "logging.setLogRecordFactory(lambda *a, **k: made.append(factory(*a, **k)) or made[-1])\n"
        "for _ in range(2): build.Build(settings.scheduler_url, 'probe')\n"
        "print(InterfaceLogging._configured, [r.getMessage() for r in made if r.name.startswith('luigi')])",
    )
    assert answer.split("\n")[-2] == "True []", answer


def test_a_run_is_claimed_only_by_a_spare_whose_setup_has_finished(
    new_executor: Callable[[], Executor], quick: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spare's setup held on a gate (a slow luigid, say): the run stays queued until it is over."""
    gate = tmp_path / "gate"
    prepare = Executor._prepare

    def held(self: Executor) -> tuple[Build | None, bytes]:
        wait_until(gate.exists, timeout=120)
        return prepare(self)

    monkeypatch.setattr(Executor, "_prepare", held)  # what its spares run as they start
    executor = new_executor()
    nectar = closed_at_end(Nectar(quick))
    run_id = submit(nectar, 4)
    before = set(children(os.getpid()))
    for _ in range(5):
        executor._serve_once()
    spares = set(children(os.getpid())) - before
    assert spares and all(alive(pid) for pid in spares)
    queued = nectar.runs.get(run_id)
    assert queued is not None and queued.state == RunState.PENDING

    gate.touch()

    def claimed() -> bool:
        executor._serve_once()
        return bool(executor.children)

    wait_until(claimed, timeout=60)

    run = ended(nectar, run_id)
    assert (run.state, run.attempt) == (RunState.DONE, 1)
    assert pid_of(run) in spares


def test_a_spare_killed_before_its_run_costs_the_run_no_attempt(
    quick: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Its socket tells the worker it died: no run is claimed in its name."""
    nectar = closed_at_end(Nectar(quick))
    worker = start_worker(quick, workers=1)
    spares = spares_after(worker, ended(nectar, submit(nectar, 5)), AHEAD)
    for spare in spares:
        os.kill(spare, signal.SIGKILL)
    # dead (zombies), not dying: a zombie's other threads may still be exiting, its socket open (the worker
    # reads its state, test_a_spare_whose_process_exited_is_not_handed_a_run_though_its_socket_is_still_open)
    wait_until(lambda: not any(map(alive, spares)), timeout=60)

    run = ended(nectar, submit(nectar, 6))

    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None)
    assert pid_of(run) not in spares
    assert worker.poll() is None
    (log,) = tmp_path.glob("worker-*.log")
    assert "was gone before it began" not in log.read_text()


def run_to_its_end(executor: Executor, nectar: Nectar, run_id: str) -> Run:
    """Pass after pass of ``executor``'s loop until ``run_id`` has ended."""

    def over() -> bool:
        executor._serve_once()
        run = nectar.runs.get(run_id)
        return run is not None and not run.state.active

    wait_until(over, timeout=60)
    return ended(nectar, run_id)


def first_spare(executor: Executor) -> Spare:
    """The one spare ``executor`` forks once runs are wanted, once it is ready."""
    executor.spares.wanted()
    executor.spares.keep(1)
    (spare,) = executor.spares.spares
    wait_until(lambda: executor.spares.ready() is spare, timeout=60)
    return spare


def charged_once(nectar: Nectar, run: Run) -> None:
    """``run`` ended DONE at its first attempt, the one its history holds."""
    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None)
    assert [(a.attempt, a.state) for a in nectar.runs.attempts(run.id)] == [(1, "DONE")]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file the test's processes wait for until the test creates it, or its end does (none is left waiting)."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def socket_held_after_the_first_spare(tmp_path: Path, gate: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The first spare forks, in its setup, a process that holds its socket until ``gate`` (a stand-in for its
    exiting threads, or a task's forked process): the file answered names that process once it is forked."""
    holder = tmp_path / "holder"
    prepare = Executor._prepare

    def holding(self: Executor) -> tuple[Build | None, bytes]:
        if not holder.exists():
            held = os.fork()
            if held == 0:
                try:
                    wait_until(gate.exists, timeout=120)
                finally:
                    os._exit(0)
            holder.write_text(str(held))
        return prepare(self)

    monkeypatch.setattr(Executor, "_prepare", holding)
    return holder


def first_spare_held_before_it_reads_its_run(tmp_path: Path, gate: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The first spare waits at ``gate`` between saying it is ready and reading its run; the file answered exists
    once it waits there."""
    first = tmp_path / "first"
    read_run = spares_module._read_run

    def held(channel: socket.socket) -> bytes | None:
        if not first.exists():
            first.touch()
            wait_until(gate.exists, timeout=120)  # never opened unless the test fails: killed there
        return read_run(channel)

    monkeypatch.setattr(spares_module, "_read_run", held)
    return first


def killed_at_the_gate(
    executor: Executor,
    nectar: Nectar,
    spare: Spare,
    first: Path,
    n: int,
    premise: Callable[[socket.socket], None] | None = None,
) -> str:
    """Once ``spare`` waits at its gate (``first``, :func:`first_spare_held_before_it_reads_its_run`): a run is
    submitted (its id answered) and handed to it, it is killed there, and ``executor`` reaps it. ``premise``, if
    given, checks the case under test on the worker's end of the spare's socket once the spare is dead, not reaped."""
    wait_until(first.exists, timeout=60)  # at the gate
    run_id = submit(nectar, n)
    executor._serve_once()
    assert spare.pid in executor.children, "not handed to the spare at the gate"

    channel = executor.children[spare.pid].channel
    assert channel is not None
    os.kill(spare.pid, signal.SIGKILL)
    if premise is not None:
        wait_until(lambda: not alive(spare.pid), timeout=60)  # dead, not reaped: the worker has judged nothing yet
        premise(channel)

    def reaped() -> bool:
        executor._reap()
        return spare.pid not in executor.children

    wait_until(reaped, timeout=60)
    return run_id


def test_a_spare_whose_process_exited_is_not_handed_a_run_though_its_socket_is_still_open(
    new_executor: Callable[..., Executor], quick: Settings, tmp_path: Path, gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spare killed while it has other threads (its standby threads) is a zombie before the last of them has closed
    its socket: on 2 loaded cores, 62 of 200 killed in a row were zombies with their socket still open. A run queued
    then was claimed in its name and FAILED, "killed by signal 9" (CI, test_a_spare_killed_before_its_run_...).
    Here the events are in that order every time: the spare's socket outlives it in a process it forked in its setup,
    until the test's gate."""
    holder = socket_held_after_the_first_spare(tmp_path, gate, monkeypatch)
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    spare = first_spare(executor)
    os.kill(spare.pid, signal.SIGKILL)
    wait_until(lambda: not alive(spare.pid), timeout=60)
    assert alive(int(holder.read_text())), "its fork is gone: not the case under test"
    assert not wakeup.readable([spare.channel.fileno()], 0.0), "its socket closed: not the case under test"
    run_id = submit(nectar, 12)

    executor._serve_once()

    queued = nectar.runs.get(run_id)
    assert queued is not None and (queued.state, queued.worker) == (RunState.PENDING, None), "claimed by the dead"
    assert spare not in executor.spares.spares
    wait_until(lambda: not alive(int(holder.read_text())), timeout=60)  # killed with it: its gate still shut
    gate.touch()
    run = run_to_its_end(executor, nectar, run_id)
    charged_once(nectar, run)
    assert pid_of(run) != spare.pid


@pytest.mark.parametrize("socket_held", [False, True], ids=["its-socket-closed", "its-socket-held-by-its-fork"])
def test_a_spare_killed_after_its_claim_before_it_read_its_run_costs_the_run_no_attempt(
    new_executor: Callable[..., Executor],
    quick: Settings,
    tmp_path: Path,
    gate: Path,
    monkeypatch: pytest.MonkeyPatch,
    socket_held: bool,
) -> None:
    """The kernel tells the worker whether the spare read the run handed to it: a socket closed with bytes unread
    reads as a reset, not as the end of the stream. One that never read it never began its attempt: the run goes
    back to the queue, uncounted (it was FAILED, "killed by signal 9 during attempt 1"). Here the first spare waits
    at a gate between saying it is ready and reading its run, and is killed there once handed it. With
    ``socket_held``, its socket outlives it in a process it forked in its setup: its death closes nothing, and the
    kernel says neither a reset nor the end of the stream; the worker asks it whether what it sent is still unread
    (the run was FAILED at attempt 1 all the same before)."""
    holder = socket_held_after_the_first_spare(tmp_path, gate, monkeypatch) if socket_held else None
    first = first_spare_held_before_it_reads_its_run(tmp_path, gate, monkeypatch)
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    spare = first_spare(executor)

    def premise(channel: socket.socket) -> None:
        if holder is None:  # its death closed its socket, its run unread (a reset)
            wait_until(lambda: wakeup.readable([channel.fileno()], 0.0), timeout=60)
        else:  # its death closed nothing, its fork holding its socket (neither a reset nor its end)
            assert alive(int(holder.read_text())), "its fork is gone: not the case under test"
            assert not wakeup.readable([channel.fileno()], 0.0), "its socket closed: not the case under test"

    run_id = killed_at_the_gate(executor, nectar, spare, first, 13, premise)
    requeued = nectar.runs.get(run_id)
    assert requeued is not None and (requeued.state, requeued.attempt) == (RunState.PENDING, 0), requeued
    if holder is not None:  # it held the socket until the worker reaped the spare: then it was killed with it
        wait_until(lambda: not alive(int(holder.read_text())), timeout=60)
    gate.touch()
    run = run_to_its_end(executor, nectar, run_id)

    charged_once(nectar, run)
    assert pid_of(run) != spare.pid


def process_state(pid: int) -> str | None:
    """The state letter of the process ``pid`` (``Z``: a zombie, not reaped yet), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def test_what_a_spare_that_died_before_it_read_its_run_left_is_killed_before_its_pid_is_freed(
    new_executor: Callable[..., Executor],
    quick: Settings,
    tmp_path: Path,
    gate: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its process group is killed by its id while the dead spare is still a zombie of its worker: a reaped pid may be
    handed out again at once (to the spare forked next, which makes a group of that id: killed by a group kill made
    after the reap). Here it died at the gate between its claim and its run's read, a process it forked holding its
    socket; the worker's kill of its group is watched (and made)."""
    holder = socket_held_after_the_first_spare(tmp_path, gate, monkeypatch)
    first = first_spare_held_before_it_reads_its_run(tmp_path, gate, monkeypatch)
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    killed: list[tuple[int, str | None]] = []
    end_group = executor_module.end_group

    def watched(pid: int) -> None:
        killed.append((pid, process_state(pid)))
        end_group(pid)

    monkeypatch.setattr(executor_module, "end_group", watched)
    spare = first_spare(executor)
    killed_at_the_gate(executor, nectar, spare, first, 14)
    assert killed == [(spare.pid, "Z")]
    assert process_state(spare.pid) is None, "reaped once its end was handled"
    wait_until(lambda: not alive(int(holder.read_text())), timeout=60)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_worker_leaves_no_spare_behind(
    quick: Settings, start_worker: StartWorker, signum: int
) -> None:
    nectar = closed_at_end(Nectar(quick))
    worker = start_worker(quick, workers=2)
    spares = spares_after(worker, ended(nectar, submit(nectar, 7)), AHEAD * 2)

    worker.send_signal(signum)
    worker.wait(timeout=60)

    wait_until(lambda: not any(alive(spare) for spare in spares), timeout=60)  # a killed worker's: lifeline


def test_luigi_failing_to_set_up_fails_the_run_naming_why(
    quick: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A spare that cannot prepare the luigi build leaves it to the attempt, which fails with the reason."""
    bad = tmp_path / "luigi.cfg"
    bad.write_text("[worker]\nwait_interval = 0\n")
    settings = quick.replace(luigi_config=bad)
    nectar = closed_at_end(Nectar(settings))
    worker = start_worker(settings, workers=1)

    run = ended(nectar, submit(nectar, 8))

    assert run.state == RunState.FAILED
    assert "wait_interval must be positive" in (run.error or "")
    assert worker.poll() is None
    spares_after(worker, run, AHEAD)  # still serving, with new spares


def test_the_last_spare_is_forked_once_the_attempts_first_step_has_started(
    new_executor: Callable[..., Executor], quick: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork and a spare's setup would compete for the CPU with the attempt just handed its run: the last spare
    wanted waits until the attempt says its first step started (or until START_WAIT: here never)."""
    monkeypatch.setattr(executor_module, "START_WAIT", 3600.0)
    executor = new_executor(concurrency=1)
    nectar = closed_at_end(Nectar(quick))
    gate = tmp_path / "gate"
    submission = nectar.submit("quick", "quick_chain", "SlowStartTask", {"gate": str(gate), "submitter": os.getpid()})
    assert submission.run is not None
    while not executor.children:
        executor._serve_once()
    for _ in range(5):  # each pass returns within the poll interval, or once a spare is ready
        executor._serve_once()
    assert len(executor.spares) == AHEAD - 1

    gate.touch()

    def refilled() -> bool:
        executor._serve_once()
        return len(executor.spares) == AHEAD

    wait_until(refilled, timeout=60)
    assert ended(nectar, submission.run.id).state == RunState.DONE


def sleeps_in_poll(thread: threading.Thread) -> bool:
    """Whether ``thread`` (of this process) sleeps in the kernel in a ``poll()``: a readable descriptor in its set
    would have ended that sleep."""
    try:
        task = Path(f"/proc/self/task/{thread.native_id}")
        state = (task / "stat").read_text().rpartition(")")[2].split()[0]
        return state == "S" and "poll" in (task / "wchan").read_text()
    except OSError:  # it ended
        return False


def test_a_spare_saying_it_is_ready_does_not_wake_a_loop_whose_every_slot_is_busy(
    new_executor: Callable[..., Executor], quick: Settings, tmp_path: Path, gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No run could be claimed for it before a slot is free: that wakes the loop, whose pass reads the spare then.
    A wake for it was a pass of the loop for nothing, once a run when processes are reused. One that dies still wakes
    it (:meth:`Spares.fds`)."""
    monkeypatch.setattr(executor_module, "REAP_INTERVAL", 3600.0)
    executor = new_executor(concurrency=1, worker_poll_interval=3600.0)
    nectar = closed_at_end(Nectar(quick))
    held = nectar.submit("quick", "quick_chain", "HeldTask", {"gate": str(gate)}).run
    assert held is not None
    executor.warm()  # as a worker before its first spare: its attempts say when their first step starts
    assert executor._claim(first_spare(executor))
    (child,) = executor.children.values()

    def started() -> bool:  # what the attempt says on its way is read
        executor._reap()
        return child.started

    wait_until(started, timeout=60)
    setup = tmp_path / "setup-gate"
    prepare = Executor._prepare

    def held_setup(self: Executor) -> tuple[Build | None, bytes]:  # until the test opens the gate
        while not setup.exists():
            time.sleep(0.05)
        return prepare(self)

    monkeypatch.setattr(Executor, "_prepare", held_setup)
    executor.spares.wanted()
    spare = executor.spares.keep(1)
    assert spare is not None and not spare.ready
    setup.touch()
    wait_until(lambda: wakeup.readable([spare.channel.fileno()], 0.0), timeout=60)  # it said it is ready
    sleeping = threading.Thread(target=executor._sleep, args=(False,), daemon=True)
    sleeping.start()

    wait_until(lambda: sleeps_in_poll(sleeping) or not sleeping.is_alive(), timeout=60)

    assert sleeping.is_alive(), "a spare saying it is ready woke a loop whose every slot is busy"
    gate.touch()  # the run ends: its slot is free, which wakes the loop
    sleeping.join(60)  # a deadline that only fails a hung test
    assert not sleeping.is_alive()
    assert run_to_its_end(executor, nectar, held.id).state == RunState.DONE
    assert executor.spares.ready() is spare


def test_a_run_handed_to_a_spare_arrives_whole_every_field_and_its_likely_chain_file() -> None:
    """The hand-over sends a run's values, not the run: each field, set away from its default, arrives as it was."""
    run = Run(
        id="r1", key="k1", chain_type="bench", chain="probe_chain", task="ProbeTask", params={"n": "7"},
        task_id="ProbeTask_7_0123456789", state=RunState.RUNNING, queued_at=1.5, started_at=2.5, finished_at=3.5,
        worker="host:1/0", failed_step="ProbeTask", error="boom", attempt=2, max_attempts=3, retry_delay=4.0,
        retry_backoff=3.0, not_before=5.0, heartbeat_at=6.0, waiting_since=7.0, schedule_id="s1", fire_time=8.0,
        trigger_id="t1", objects=("s3://b/o",), waiting_for=("run:r0",), wait_until=9.0, on_wait_timeout="skip",
    )  # fmt: skip
    made = Run("r1", "k1", "bench", "probe_chain", "ProbeTask", {"n": "7"}, "ProbeTask_7_0123456789")
    assert [f for f in executor_module._RUN_FIELDS if getattr(run, f) == getattr(made, f)] == [
        "id", "key", "chain_type", "chain", "task", "params", "task_id"
    ]  # fmt: skip
    likely = executor_module.Likely(
        "/c/bench/probe_chain.py", "bench", "probe_chain", (1, 2), "ProbeTask", (("n", "7"),)
    )
    for sent in (likely, None):
        got, got_likely = executor_module.given_run(executor_module.handed(run, sent))
        assert got == run and vars(got) == vars(run) and got.state is RunState.RUNNING
        assert got_likely == sent and (sent is None or type(got_likely) is executor_module.Likely)
