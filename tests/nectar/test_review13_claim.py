"""review13 (round 59): the windows between a run's claim in a spare's name and its attempt's start, for a real
``nectar worker`` killed (-9) in them; the run must not be charged an attempt that never began."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import alive, children, freeze
from nectar import executor as executor_module
from nectar import lifeline
from nectar.config import Settings
from nectar.executor import Executor
from nectar.registry import Run, RunState
from nectar.service import Nectar
from nectar.spares import AHEAD
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import (  # noqa: F401 (fixtures)
    StartWorker,
    charged_once,
    ended,
    first_spare,
    new_executor,
    pid_of,
    quick,
    run_to_its_end,
    spares_after,
    submit,
)


@contextlib.contextmanager
def two_held_runs(nectar: Nectar, tmp_path: Path) -> Iterator[list[str]]:
    """Two runs of HeldTask queued one after the other (their ids), each held in its ``run()`` until the block ends."""
    gate, ids = tmp_path / "steps-gate", []
    try:
        for n in (1, 2):
            run = nectar.submit("quick", "quick_chain", "HeldTask", {"gate": f"{gate}-{n}"}).run
            assert run is not None
            ids.append(run.id)
        yield ids
    finally:
        for n in (1, 2):
            Path(f"{gate}-{n}").touch()


#: where a ready spare's main thread sleeps: in a read of its socket (main's spares), or in a poll of it and the
#: registry's word (a spare armed to claim, wt59-claim's); the only other socket a spare reads in its setup is
#: luigid's, a TCP one (``sk_wait_data``)
WAITING = ("unix_stream_read_generic", "do_sys_poll", "poll_schedule_timeout", "do_poll")


def waits_for_its_run(pid: int) -> bool:
    """Whether the spare ``pid`` said it is ready and waits for its run (its main thread asleep in :data:`WAITING`)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().startswith(WAITING)
    except OSError:
        return False


def test_a_worker_killed_after_its_claim_before_its_spare_read_the_run_costs_the_run_no_attempt(
    quick: Settings,  # noqa: F811
    start_worker: StartWorker,
) -> None:
    """The worker claims the run in a ready spare's name and hands it over; the spare, stopped (SIGSTOP, as a loaded
    machine leaves a process unscheduled), has not read it yet when the worker is killed (-9). The spare then dies
    of its worker's death (its parent-death signal, SIGTERM) before its attempt began: nothing of the run ran. The
    README promises that a worker killed outright "takes its attempt processes with it, and they requeue their runs
    the same way" (uncounted), and a worker that sees its spare die before it read its run requeues it uncounted
    (test_spare's test_a_spare_killed_before_its_run_costs_the_run_no_attempt). On main the run is left RUNNING in
    the dead spare's name and the next worker reclaims it as a lost attempt, counted ("worker lost: ... (its process
    is gone) during attempt 1"): the run ends at attempt 2, or FAILED with no retries left."""
    nectar = closed_at_end(Nectar(quick))
    worker = start_worker(quick, workers=1)
    spares = spares_after(worker, ended(nectar, submit(nectar, 31)), AHEAD)
    wait_until(lambda: all(map(waits_for_its_run, spares)), timeout=60)
    for spare in spares:
        freeze(spare)
    try:
        run_id = submit(nectar, 32)
        claimed = wait_until(lambda: (r := nectar.runs.get(run_id)) and r.state == RunState.RUNNING and r, timeout=60)
        assert isinstance(claimed, Run) and pid_of(claimed) in spares, claimed
        worker.kill()
        worker.wait(timeout=60)
    finally:
        for spare in spares:
            os.kill(spare, signal.SIGCONT)
    wait_until(lambda: not any(map(alive, spares)), timeout=60)  # dead of their worker's death, the run unread

    second = start_worker(quick, workers=1)
    run = ended(nectar, run_id)

    history = [(a.attempt, a.state, a.error) for a in nectar.runs.attempts(run.id)]
    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None), history
    charged_once(nectar, run)
    assert second.poll() is None and children(second.pid)


def test_a_spare_that_gets_no_core_holds_up_no_run_a_free_slot_and_another_spare_can_take(
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
) -> None:
    """Two slots. The spare the worker would give the next run (main: the oldest ready, handed the run; wt59-claim:
    the one armed to claim in its own name) is stopped (SIGSTOP: a loaded machine's process that gets no core for a
    while, or one under a debugger); two runs are queued. The worker's loop gives the other run to another ready
    spare, and it ends DONE while the stopped spare still sleeps (on main the first run waits in the stopped spare's
    socket, the second goes to the next spare). Seen on wt59-claim 6aab7cb: while a spare is armed its worker neither
    waits for the registry's word nor looks all the same (``Executor._sleep``'s ``armed``): no run is claimed by
    anyone until the stopped spare runs again, both slots idle, the other spares ready."""
    executor, nectar = new_executor(concurrency=2), closed_at_end(Nectar(quick))
    first_spare(executor)
    arms = hasattr(executor.spares, "armed")
    for n in range(36, 41):  # a run to its end, then the passes after its slot freed (wt59-claim arms a spare in one
        wait_until(lambda: executor.spares.ready() is not None, timeout=60)  # of them, if a spare is ready then)
        run_to_its_end(executor, nectar, submit(nectar, n))
        for _ in range(10):
            executor._serve_once()
        if not arms or getattr(executor.spares, "armed", None) is not None:
            break
    chosen = getattr(executor.spares, "armed", None) or executor.spares.ready()
    assert chosen is not None
    others = wait_until(lambda: [s for s in executor.spares.spares if s.ready and s is not chosen] or None, timeout=60)
    assert others
    freeze(chosen.pid)
    try:
        queued = [submit(nectar, n) for n in (34, 35)]

        def one_done() -> bool:
            executor._serve_once()
            return any((run := nectar.runs.get(run_id)) and run.state == RunState.DONE for run_id in queued)

        wait_until(one_done, timeout=60)
    finally:
        os.kill(chosen.pid, signal.SIGCONT)
    for run_id in queued:
        charged_once(nectar, run_to_its_end(executor, nectar, run_id))


def test_runs_queued_together_go_to_a_workers_free_slots_at_the_registrys_word(
    quick: Settings,  # noqa: F811
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """A worker of two slots, idle, its spares ready (after a first run); two held runs are queued one after the other:
    both are claimed while both are held (each a slot), at the registry's word. The worker's poll interval is an
    hour here, so that only the word can wake its loop (the executor's promise: it sleeps "until ... a run is
    queued"). Seen on wt59-claim f221af9: the spare armed after the first run claims the first held run at the word;
    its worker, which neither waits for the word while a spare is armed nor polls the armed spare's socket, sleeps on,
    and the second run waits for its poll interval (50 ms by default) with a slot free and spares ready. Passes on
    3d7d01d (the armed spare's socket polled again: the worker wakes as the attempt's first step starts, when it was
    asked to say so, else at its end). ``NECTAR_RUNS_PER_PROCESS`` at its default (processes reused), as served."""
    settings = quick.replace(worker_poll_interval=3600.0, runs_per_process=Settings().runs_per_process)
    nectar = closed_at_end(Nectar(settings))
    worker = start_worker(settings, workers=2)
    ended(nectar, submit(nectar, 51))
    wait_until(lambda: len(kids := children(worker.pid)) >= AHEAD * 2 and all(map(waits_for_its_run, kids)), timeout=60)
    with two_held_runs(nectar, tmp_path) as held:

        def both_claimed() -> bool:
            return all((run := nectar.runs.get(run_id)) and run.state == RunState.RUNNING for run_id in held)

        wait_until(both_claimed, timeout=60)
    for run_id in held:
        assert ended(nectar, run_id).state == RunState.DONE


def test_a_worker_killed_between_its_claim_and_its_hand_over_costs_the_run_no_attempt(
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker (forked here, its spares forks of it) claims a run in its ready spare's name and is killed (-9) before
    it hands the run over: nothing was sent, and no process but the spare can tell that the run began nowhere. The
    spare, its worker gone (its socket closed, its parent-death SIGTERM), puts the run back in the queue, uncounted,
    before it exits; before that fix the run was left RUNNING in the spare's name, and the next worker reclaimed it as
    a lost attempt, counted (FAILED, "worker lost: ... (its process is gone) during attempt 1", no retry left)."""
    tester = os.getpid()
    settings = quick.replace(scheduler_url=None)
    nectar = closed_at_end(Nectar(settings))
    run_id = submit(nectar, 61)

    def killed_instead(*_: object) -> None:  # the worker dies as it would hand the run over
        if os.getpid() != tester:
            os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("hand_over was called in the test's own process")

    monkeypatch.setattr(executor_module, "hand_over", killed_instead)
    worker = os.fork()
    if worker == 0:  # the worker: its loop until it kills itself
        code = 1
        try:
            lifeline.die_with_parent(tester)
            Executor(settings, concurrency=1).serve_forever()
            code = 0
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(worker, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    claimed = nectar.runs.get(run_id)
    assert claimed is not None and claimed.worker is not None, claimed
    spare = pid_of(claimed)
    wait_until(lambda: not alive(spare), timeout=60)  # the spare, its worker gone, exits

    monkeypatch.undo()
    run = run_to_its_end(new_executor(concurrency=1), nectar, run_id)

    history = [(a.attempt, a.state, a.error) for a in nectar.runs.attempts(run.id)]
    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None), history
    charged_once(nectar, run)
