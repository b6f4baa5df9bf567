"""An attempt frozen (SIGSTOP) while its run is reclaimed and done by another worker, then thawed: it never finishes
the task it lost.

The workers' lease is an hour: a short one (it was 3 s) let a heartbeat late on a loaded machine end the next
attempt too (with one retry, the run FAILED). The frozen attempt, the one RUNNING, is reclaimed by what a worker's
loop calls (:func:`nectar.leases.reclaim`), called by the test once it has been silent a moment."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator

from nectar.attempt import process_name
from nectar.leases import reclaim
from nectar.luigid import SchedulerClient
from nectar.ports import parent_of
from nectar.registry import RunState
from tests.faults.conftest import Cluster, alive, waitfor


def test_a_frozen_attempt_is_reclaimed_and_exits_without_finishing_when_thawed(cluster: Cluster) -> None:
    cluster.fault = "SIGSTOP the child executing a task; SIGCONT after the run was reclaimed and DONE"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=LEASE)
    workers = [cluster.start_service(workers=1), cluster.start_worker(workers=1)]
    [data] = cluster.start_runs(1, sleeps="30,2")
    frozen = cluster.ledger.executions()[0].pid
    owner = parent_of(frozen)
    assert owner in {w.pid for w in workers}
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(frozen), 60, "the child's first heartbeat")

    cluster.freeze_idle(frozen)
    reclaim_frozen(cluster, data["run_id"])

    # reclaimed for its silence (the frozen process is alive): the second attempt carries the reason while it runs
    second_attempt = waitfor(lambda: (r := cluster.run(data["run_id"])).attempt == 2 and r, 60, "attempt 2 to start")
    assert f"worker lost: {process_name(frozen)} (no heartbeat for " in second_attempt.error, second_attempt
    done = cluster.api.wait(data["key"], timeout=60)
    assert (done["attempt"], done["max_attempts"]) == (2, 2)
    [second] = [e for e in cluster.ledger.executions() if e.pid != frozen]
    assert second.end is not None
    assert cluster.run(data["run_id"]).worker == process_name(second.pid)
    assert alive(frozen), "still frozen: its own worker must not have been able to finish it"

    os.kill(frozen, signal.SIGCONT)

    waitfor(lambda: not alive(frozen), 60, "the thawed child to exit")
    [first] = [e for e in cluster.ledger.executions() if e.pid == frozen]
    assert first.end is None, "the thawed child went on and finished a task it had lost"
    assert cluster.ledger.count("end") == 1
    assert cluster.read(data["key"]) == f"{second.task_id} {second.pid}\n"
    assert cluster.run(data["run_id"]).state == RunState.DONE
    cluster.account()


def test_a_frozen_attempt_thawed_when_its_work_is_due_does_not_finish_it(cluster: Cluster) -> None:
    """The frozen child's task has no work left when it is thawed (the gate it waits for was opened while it was
    stopped), and the registry is busy for a moment (another writer holds its lock): the child must still not
    finish a task whose attempt was reclaimed and done by another worker."""
    cluster.fault = "SIGSTOP a child near the end of its task; SIGCONT after reclaim, registry busy for 1 s"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=LEASE)
    cluster.start_service(workers=1)
    cluster.start_worker(workers=1)
    gate = cluster.tmp / "gate"  # held until the child is frozen: a slow test cannot see it finish first
    [data] = cluster.start_runs(1, gate=str(gate))
    frozen = cluster.ledger.executions()[0].pid
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(frozen), 60, "the child's first heartbeat")
    cluster.freeze_idle(frozen)
    reclaim_frozen(cluster, data["run_id"])
    gate.touch()
    done = cluster.api.wait(data["key"], timeout=60)
    assert done["attempt"] == 2
    [second] = [e for e in cluster.ledger.executions() if e.pid != frozen]

    with registry_busy(cluster, seconds=1.0):
        os.kill(frozen, signal.SIGCONT)

    waitfor(lambda: not alive(frozen), 60, "the thawed child to exit")
    [first] = [e for e in cluster.ledger.executions() if e.pid == frozen]
    ledger = cluster.ledger.path.read_text()
    assert first.end is None, f"the thawed child finished the task after its attempt was reclaimed:\n{ledger}"
    assert cluster.read(data["key"]) == f"{second.task_id} {second.pid}\n"
    cluster.account()


def test_an_attempt_thawed_after_its_lease_ran_out_stops_though_no_worker_reclaimed_it(cluster: Cluster) -> None:
    """An attempt frozen past its lease, and thawed before any worker reclaimed its run (its one worker frozen too),
    has lost its run all the same (:func:`nectar.registry.model.lease_ran_out`): its heartbeat is refused, it stops
    without finishing its task, and once its worker is thawed it reclaims the run and retries it (attempt 2).

    Time passes for the lease by the test's hand: the registry's record of the attempt's claim and heartbeat is set
    back by more than the lease, as an hour of a frozen process would leave it."""
    cluster.fault = "SIGSTOP a child and its worker; its lease runs out; SIGCONT the child before any reclaim"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=LEASE)
    worker = cluster.start_service(workers=1)
    gate = cluster.tmp / "gate"  # held until the child was thawed: before, it would finish its task at once
    [data] = cluster.start_runs(1, gate=str(gate))
    frozen = cluster.ledger.executions()[0].pid
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(frozen), 60, "the child's first heartbeat")
    cluster.freeze_idle(worker.pid)  # the one worker that could reclaim the run, between two of its writes
    cluster.freeze_idle(frozen)

    with contextlib.closing(sqlite3.connect(cluster.settings.registry_path, isolation_level=None)) as db:
        moved = LEASE + 60.0
        db.execute(
            "UPDATE runs SET heartbeat_at = heartbeat_at - ?, started_at = started_at - ? WHERE id = ?",
            (moved, moved, data["run_id"]),
        )
    ran_out = cluster.run(data["run_id"])
    assert ran_out.state == RunState.RUNNING and ran_out.attempt == 1, ran_out

    os.kill(frozen, signal.SIGCONT)  # its heartbeat renews at once: refused, or (the lease renewed) it goes on

    renewed = lambda: (cluster.run(data["run_id"]).heartbeat_at or 0.0) > (ran_out.heartbeat_at or 0.0)  # noqa: E731
    waitfor(lambda: not alive(frozen) or renewed(), 60, "the thawed child to stop or renew its lease")
    assert not renewed(), "the lease of an attempt frozen past it was renewed: the attempt went on"
    gate.touch()
    os.kill(worker.pid, signal.SIGCONT)

    done = cluster.api.wait(data["key"], timeout=60)
    assert (done["attempt"], done["max_attempts"]) == (2, 2), done
    [first] = [e for e in cluster.ledger.executions() if e.pid == frozen]
    assert first.end is None, "the thawed child finished the task after its lease ran out"
    [second] = [e for e in cluster.ledger.executions() if e.pid != frozen]
    assert cluster.read(data["key"]) == f"{second.task_id} {second.pid}\n"
    cluster.account()


#: the workers' lease: no heartbeat of a running attempt is ever this late, on however loaded a machine
LEASE = 3600.0
#: how long the frozen attempt has been silent when the test reclaims it
SILENT = 1.0


def reclaim_frozen(cluster: Cluster, run_id: str) -> None:
    """Reclaim the run's frozen attempt, the one RUNNING, as a worker's loop would once its lease ran out, and as
    it tells luigid; once it has been silent for :data:`SILENT` (frozen, it can write no heartbeat)."""
    silent = cluster.run(run_id)
    since = silent.heartbeat_at or silent.started_at or 0.0
    waitfor(lambda: time.time() - since > SILENT, 60, "the frozen attempt to be silent a moment")
    scheduler = SchedulerClient(cluster.settings.scheduler_url or "", 60.0)
    assert [run.id for run in reclaim(cluster.registry, SILENT, scheduler)] == [run_id]


@contextlib.contextmanager
def registry_busy(cluster: Cluster, seconds: float) -> Iterator[None]:
    """Hold the registry's write lock (as a long transaction of another process would) around the block and
    for ``seconds`` after it."""
    db = sqlite3.connect(cluster.settings.registry_path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        time.sleep(seconds)
        db.execute("COMMIT")
    finally:
        db.close()
