"""review13 (round 59): a spare armed to claim in its own name (wt59-claim's ``nectar.armed``), caught at the points
a kill, a stop or a slow core can land in, through a worker's executor in this process (its spares are forks of it)."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import alive
from nectar import lifeline
from nectar.config import Settings
from nectar.executor import Executor
from nectar.registry import RunState
from nectar.service import Nectar
from nectar.spares import Spare
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_review13_claim import F1, two_held_runs
from tests.nectar.test_spare import (  # noqa: F401 (fixtures)
    charged_once,
    first_spare,
    gate,
    new_executor,
    quick,
    run_to_its_end,
    submit,
)

#: the armed spare's claim in wt59-claim (:meth:`Executor._claim_own`), named here: main has none (mypy reads this
#: file against main too); its spares (``Spares.armed``, ``Spares.ready(armed=...)``) are reached through :func:`kept`
CLAIM_OWN = "_claim_own"
pytestmark = pytest.mark.skipif(
    not hasattr(Executor, CLAIM_OWN), reason="wt59-claim's armed spares (Executor._claim_own) are not merged"
)


def kept(executor: Executor) -> Any:
    """``executor``'s spares, as wt59-claim's armed spares (``armed``, ``ready(armed=False)``)."""
    return executor.spares


@pytest.fixture
def held(tmp_path: Path, gate: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # noqa: F811
    """The first armed spare to claim waits at ``gate`` inside the word's lock, its claim's statement not made yet
    (as a spare preempted there on a loaded machine): the file answered names it once it waits. Set before the
    executor is made (its spares take its ``_claim_own`` as it is made)."""
    path, tester = tmp_path / "held", os.getpid()
    claim_own = getattr(Executor, CLAIM_OWN)

    def gated(self: Executor) -> bytes | None:
        if os.getpid() != tester and not path.exists():
            path.write_text(str(os.getpid()))
            wait_until(gate.exists, timeout=120)
        return claim_own(self)

    monkeypatch.setattr(Executor, CLAIM_OWN, gated)
    yield path


@pytest.fixture
def held_after_its_claim(tmp_path: Path, gate: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # noqa: F811
    """The first armed spare whose claim returns a run (RUNNING in its name) waits at ``gate`` before it tells its
    worker (inside the word's lock): the file answered names it once it waits. Only an armed spare claims in its own
    name (``_claim_own``). Set before the executor (or the worker) is made."""
    path = tmp_path / "claimed"
    claim_own = getattr(Executor, CLAIM_OWN)

    def gated(self: Executor) -> bytes | None:
        given = claim_own(self)
        if given is not None and not path.exists():
            path.write_text(str(os.getpid()))
            wait_until(gate.exists, timeout=120)  # killed there, or its worker is
        return given

    monkeypatch.setattr(Executor, CLAIM_OWN, gated)
    yield path


def armed_after_a_run(executor: Executor, nectar: Nectar, n: int) -> Spare:
    """Runs one run to its end, then makes the worker's passes until it arms a spare (a pass that freed a slot, no
    run due, a spare ready); again with another run if the pass that freed the slot had no spare ready (each a
    fresh key: ``n``, ``n + 100``, ...). The armed spare answered."""
    first_spare(executor)
    for tries in range(5):
        wait_until(lambda: kept(executor).ready(armed=False) is not None, timeout=60)
        run_to_its_end(executor, nectar, submit(nectar, n + 100 * tries))
        for _ in range(10):
            if kept(executor).armed is not None:
                return kept(executor).armed
            executor._serve_once()
    raise AssertionError("no spare armed after 5 runs")


def held_in_its_claim(executor: Executor, nectar: Nectar, held: Path, n: int) -> Spare:
    """A spare armed, then waiting at its gate inside the word's lock (it looks on its own once a second)."""
    spare = armed_after_a_run(executor, nectar, n)
    wait_until(held.exists, timeout=60)
    assert int(held.read_text()) == spare.pid and kept(executor).armed is spare
    return spare


def running(nectar: Nectar, run_ids: list[str]) -> list[str]:
    return [run_id for run_id in run_ids if (run := nectar.runs.get(run_id)) and run.state == RunState.RUNNING]


def test_a_worker_with_its_armed_spare_in_its_claim_runs_no_more_attempts_than_its_slots(
    held: Path,
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    gate: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """One slot. The armed spare holds the word's lock (its claim under way, preempted before its statement) as two
    runs are queued; the worker's next pass wants to look itself (the registry's word), cannot disarm it (a claim
    under way: ``CLAIMING``), and claims the first run for another ready spare all the same; the armed spare then
    claims the second. Two attempts run at once on a worker of one slot (``NECTAR_WORKERS`` is the bound of what a
    worker runs at once). Seen on wt59-claim 6aab7cb: ``Executor._serve_once`` leaves ``_disarm()``'s False unread
    and fills the slots without counting the armed spare's claim under way."""
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    held_in_its_claim(executor, nectar, held, 41)
    with two_held_runs(nectar, tmp_path) as ids:
        wait_until(lambda: kept(executor).ready(armed=False) is not None, timeout=60)  # another spare to claim with
        executor._work_may_wait = True  # as the registry's word wakes its sleep
        executor._serve_once()
        gate.touch()  # the armed spare's claim goes on
        most = 0

        def both_seen_or_settled() -> bool:
            nonlocal most
            executor._serve_once()
            most = max(most, len(executor.children), len(running(nectar, ids)))
            return most > executor.concurrency or (len(running(nectar, ids)) == 1 and kept(executor).armed is None)

        wait_until(both_seen_or_settled, timeout=60)
        assert most <= executor.concurrency, f"{most} attempts at once on a worker of {executor.concurrency} slot"


def test_a_stopping_workers_armed_spare_in_its_claim_claims_no_run_queued_after_the_stop(
    request: pytest.FixtureRequest,
    held: Path,
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    gate: Path,  # noqa: F811
) -> None:
    """The armed spare holds the word's lock (its claim under way, before its statement) when its worker is told to
    stop; the stopping pass cannot disarm it; a run is queued after the stop; the spare's claim then goes on. A
    stopping worker claims nothing (README, Shutdown; review9's stop test, there with the spare outside its claim):
    the run stays PENDING, attempt 0. On main a claim is one statement in the worker's loop, which sees no run
    queued after the stop. Seen on wt59-claim 6aab7cb: the spare claims it, its worker hears the claim in its drain
    and runs it (DONE at attempt 1)."""
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    held_in_its_claim(executor, nectar, held, 42)
    executor.stop()
    executor._serve_once()  # the stopping worker's pass: its armed spare cannot be disarmed (its lock is held)
    run_id = submit(nectar, 43)
    gate.touch()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # serve_forever sets its own: set back after
        request.addfinalizer(functools.partial(signal.signal, signum, signal.getsignal(signum)))
    executor.serve_forever()  # drains what runs, then ends
    queued = nectar.runs.get(run_id)
    assert queued is not None and (queued.state, queued.attempt, queued.worker) == (RunState.PENDING, 0, None), queued


def test_a_worker_going_idle_while_its_armed_spare_is_in_its_claim_lets_its_spares_go_and_goes_on(
    held: Path,
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    gate: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No run wanted for the spares' idle time (a clock the test moves) while the armed spare holds the word's lock:
    the pass that lets the spares go cannot disarm it, and must still end (its loop goes on; a run queued after is
    run). Seen on wt59-claim 6aab7cb: ``Spares.keep`` drops the extra spares until none is left but the armed one,
    and ``Spares._extra`` then takes the last of an empty list: IndexError out of the worker's loop, which
    ``serve_forever`` does not catch (the worker exits)."""
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    held_in_its_claim(executor, nectar, held, 44)
    now = [time.monotonic()]
    monkeypatch.setattr(executor.spares, "_clock", lambda: now[0])
    now[0] += quick.spare_idle + 1.0
    try:
        executor._serve_once()  # the worker goes idle
    finally:
        gate.touch()
    run = run_to_its_end(executor, nectar, submit(nectar, 45))
    charged_once(nectar, run)


def test_an_armed_spare_killed_between_its_claim_and_its_word_costs_the_run_no_attempt(
    held_after_its_claim: Path,
    gate: Path,  # noqa: F811
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
) -> None:
    """The armed spare's claim returned (the run RUNNING in its name), it is killed (-9) before it tells its worker
    (review9's first test's window, reached on the armed path: review9's reaches the worker's loop's claim, as its
    first pass looks itself): the run goes back to the queue, uncounted, and ends DONE at its first attempt."""
    held = held_after_its_claim
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    spare = armed_after_a_run(executor, nectar, 46)
    run_id = submit(nectar, 47)
    wait_until(held.exists, timeout=60)
    claimed = nectar.runs.get(run_id)
    assert int(held.read_text()) == spare.pid and claimed is not None and claimed.state == RunState.RUNNING, claimed
    os.kill(spare.pid, signal.SIGKILL)
    gate.touch()  # for none: only the first armed claim waits there

    run = run_to_its_end(executor, nectar, run_id)

    charged_once(nectar, run)


@F1
def test_a_worker_killed_as_its_armed_spare_claimed_costs_the_run_no_attempt(
    held_after_its_claim: Path,
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
) -> None:
    """A worker (forked here, its spares forks of it) whose armed spare has claimed a run in its own name, and holds
    it before it tells its worker, is killed (-9): the spare dies of its worker's death (its parent-death signal,
    SIGTERM) before its attempt began. wt59-claim's spare answers its worker's absence with "its lifeline ends the
    attempt, which requeues" (``_claim_armed``'s ``told``); no attempt has begun there, and the SIGTERM ends the
    process (its default action, or the lease's handler with no attempt: ``leases._terminate``): the run is left
    RUNNING in the dead spare's name and the next worker reclaims it as a lost attempt, counted. The README promises
    that a killed worker's attempt processes "requeue their runs the same way" (uncounted); review13's F1 is the same
    window on main's hand-over (tests/nectar/test_review13_claim.py)."""
    held, tester = held_after_its_claim, os.getpid()
    settings = quick.replace(scheduler_url=None)
    worker = os.fork()
    if worker == 0:  # the worker: its loop until it is killed
        code = 1
        try:
            lifeline.die_with_parent(tester)
            Executor(settings, concurrency=1).serve_forever()
            code = 0
        finally:
            os._exit(code)
    nectar = closed_at_end(Nectar(settings))
    try:
        for n in range(48, 60):  # one after another, until the worker armed a spare and it claimed one
            run_id = submit(nectar, n)
            wait_until(functools.partial(claimed_or_ended, held, nectar, run_id), timeout=60)
            if held.exists():
                break
        claimed = nectar.runs.get(run_id)
        assert held.exists() and claimed is not None and claimed.state == RunState.RUNNING, claimed
    finally:
        os.kill(worker, signal.SIGKILL)
        os.waitpid(worker, 0)
    spare = int(held.read_text())
    wait_until(lambda: not alive(spare), timeout=60)  # dead of its worker's death, its claim untold

    run = run_to_its_end(new_executor(concurrency=1), nectar, run_id)

    history = [(a.attempt, a.state, a.error) for a in nectar.runs.attempts(run.id)]
    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None), history


def claimed_or_ended(held: Path, nectar: Nectar, run_id: str) -> bool:
    """Whether an armed spare holds its claim (``held`` exists), or ``run_id`` ended (the worker's loop claimed it)."""
    run = nectar.runs.get(run_id)
    return held.exists() or (run is not None and not run.state.active)
