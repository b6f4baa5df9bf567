"""An attempt frozen (SIGSTOP) with step changes it has not written yet, its run reclaimed and done by another
attempt, then thawed: its heartbeat's flush of those changes is fenced, so none lands in the successor's run.

The lease is long: no worker reclaims the run for its silence while the test waits for the attempt to stop itself,
however slow the machine; the test reclaims it once the attempt is frozen, as a worker's reclaim does when it has
been silent for its lease."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from nectar.leases import reclaim
from nectar.luigid import scheduler_of
from nectar.registry import RunState
from tests.faults.conftest import CHAIN, CHAIN_TYPE, Cluster, alive, children, waitfor
from tests.helpers.ledger import LEDGER_CHAIN

#: a task whose first attempt leaves a step change pending (``Side`` DONE, luigi's event, not yet written: the
#: recorder's batch waits for the next write) and stops its own process, so that nothing can write it before the
#: freeze; thawed, it waits until its lost lease interrupts it. Its second attempt writes its output. It stops itself
#: outside the registry's write turn: stopped by its own SIGSTOP as its heartbeat renewed (in the turn), the
#: process kept the test's reclaim waiting ``BUSY_TIMEOUT`` for the turn, then failing (``TurnNotTaken``).
FROZEN_STEPS = """

import signal as _signal

import nectar.steps
from nectar.steps import current_recorder

nectar.steps.FLUSH_INTERVAL = float("inf")  # a change other than a start or a failure waits for the heartbeat
MARK = @MARK@


class Side(luigi.Task):
    def complete(self):
        return True


class FrozenPendingTask(NectarTask):
    def run(self):
        if not os.path.exists(MARK):
            with open(MARK + ".tmp", "w") as out:
                out.write(str(os.getpid()))
            os.rename(MARK + ".tmp", MARK)
            # the process's write turn held by this thread, at the thread's level: it waits for a thread of this
            # process in its turn (the heartbeat's renewal, a checkpoint) to leave it, and none enters one until the
            # thaw, so the process stops holding neither the registry's turn nor SQLite's write lock
            with current_recorder().runs._writer()._threads:
                self.trigger_event(luigi.Event.DEPENDENCY_PRESENT, Side())
                os.kill(os.getpid(), _signal.SIGSTOP)
            while True:  # thawed: until the lease's loss interrupts it
                time.sleep(0.01)
        with self.output().open("w") as out:
            out.write("second\\n")
"""


def test_a_thawed_attempt_does_not_flush_its_pending_steps_into_its_successors_run(
    cluster: Cluster, write_chain: Callable[[str, str], Path]
) -> None:
    cluster.fault = "SIGSTOP a child with a step change pending; SIGCONT after its run was reclaimed and DONE"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=600)
    mark = cluster.tmp / "first-attempt"
    source = LEDGER_CHAIN.replace("@LEDGER@", repr(str(cluster.ledger.path))) + FROZEN_STEPS
    write_chain(f"{CHAIN_TYPE}/{CHAIN}", source.replace("@MARK@", repr(str(mark))))
    workers = [cluster.start_service(workers=1), cluster.start_worker(workers=1)]
    data = cluster.api.queue("FrozenPendingTask")
    waitfor(mark.exists, 60, "the first attempt to start")
    frozen = int(mark.read_text())
    waitfor(lambda: stopped(frozen), 60, "the first attempt to stop itself")
    [owner] = [w for w in workers if frozen in children(w.pid)]
    cluster.freeze_idle(owner.pid)  # its worker must not kill it once it is disowned: the thaw is the test's
    [lost] = reclaim(cluster.registry, 0.0, scheduler_of(cluster.settings))  # its lease taken as run out
    assert (lost.id, lost.attempt) == (data["run_id"], 1)

    done = cluster.api.wait(data["key"], timeout=60)
    assert done["attempt"] == 2
    before = steps_of(cluster, data["run_id"])
    assert "Side" not in {task for task, *_ in before}, before

    os.kill(frozen, signal.SIGCONT)

    waitfor(lambda: not alive(frozen), 60, "the thawed attempt to exit")
    assert steps_of(cluster, data["run_id"]) == before, "the thawed attempt wrote steps into its successor's run"
    assert cluster.run(data["run_id"]).state == RunState.DONE
    os.kill(owner.pid, signal.SIGCONT)


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (SIGSTOP): its state in ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


def steps_of(cluster: Cluster, run_id: str) -> list[tuple[str, str, float]]:
    """The run's steps as the registry keeps them: task, state, time of the last change."""
    return [(step.task, step.state, step.updated_at) for step in cluster.registry.steps(run_id)]
