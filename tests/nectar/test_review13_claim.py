"""review13 (round 59): the windows between a run's claim in a spare's name and its attempt's start, for a real
``nectar worker`` killed (-9) in them; the run must not be charged an attempt that never began."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from harness import alive, children, freeze
from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from nectar.spares import AHEAD
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import (  # noqa: F401 (fixtures)
    StartWorker,
    charged_once,
    ended,
    pid_of,
    quick,
    spares_after,
    submit,
)


def waits_for_its_run(pid: int) -> bool:
    """Whether the spare ``pid`` said it is ready and waits on its socket for its run (its main thread in a read of a
    Unix socket: the only one a spare reads in its setup is luigid's, a TCP one)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "unix_stream_read_generic"
    except OSError:
        return False


#: review13's F1, a gap of main's: the lead's to fix (the tests pass once it is)
F1 = pytest.mark.xfail(
    strict=True,
    reason="review13 F1 (main): a spare holding a run claimed in its name dies of its worker's death (its parent-death "
    "SIGTERM: SIG_DFL, or leases._terminate with no attempt) before its attempt began; the run is reclaimed as a lost "
    "attempt, counted",
)


@F1
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
