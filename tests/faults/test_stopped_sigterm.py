"""A SIGTERM sent to an attempt while it is stopped (SIGSTOP) is acted on once it is continued: the attempt requeues
its run and exits, though its task sleeps for an hour.

With every thread stopped the kernel keeps the signal for the whole process and, on SIGCONT, hands it to whichever
thread that does not block it runs first; Python only sets a flag there, and the main thread, asleep in the task's
``sleep()``, never looks. Every thread nectar starts in an attempt blocks the signals the attempt handles, so the
kernel can only deliver them to the main thread."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from nectar.attempt import process_name
from nectar.registry import RunState
from nectar.standby import MAIN_THREAD_SIGNALS
from tests.faults.conftest import Cluster, alive, waitfor


def blocked(pid: int, tid: int) -> set[int]:
    """The signals thread ``tid`` of process ``pid`` blocks (its SigBlk)."""
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            mask = int(line.split()[1], 16)
            return {number for number in range(1, 65) if mask >> (number - 1) & 1}
    raise AssertionError(f"no SigBlk for thread {tid} of {pid}")


def test_a_sigterm_sent_while_an_attempt_is_stopped_requeues_its_run_once_continued(cluster: Cluster) -> None:
    cluster.fault = "SIGSTOP the child sleeping in an hour-long task; SIGTERM it; SIGCONT it"
    cluster.start_service(workers=1)
    [data] = cluster.start_runs(1, sleeps="3600,0.2")
    attempt = cluster.ledger.executions()[0].pid
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(attempt), 60, "the child's first heartbeat")
    threads = [int(tid) for tid in os.listdir(f"/proc/{attempt}/task") if int(tid) != attempt]
    assert threads, "the attempt runs its heartbeat on a thread"
    for tid in threads:  # only its main thread can take them
        if os.path.exists(f"/proc/{attempt}/task/{tid}"):  # not a thread that ended since
            assert {int(s) for s in MAIN_THREAD_SIGNALS} <= blocked(attempt, tid), tid

    cluster.freeze(attempt)
    os.kill(attempt, signal.SIGTERM)
    os.kill(attempt, signal.SIGCONT)

    waitfor(lambda: not alive(attempt), 60, "the continued child to act on its SIGTERM and exit")
    # requeued, not failed: its worker (or it again) runs it anew
    waitfor(lambda: cluster.run(data["run_id"]).worker != process_name(attempt), 60, "the run requeued")
    assert cluster.run(data["run_id"]).state != RunState.FAILED
    assert cluster.ledger.count("end") == 0
