"""A signal that the kernel hands to another thread of an attempt process than its main one is acted on all the same,
while the main thread sleeps in one long system call (:mod:`nectar.main_signals`).

CPython runs a signal's Python handler on the main thread only; another thread that takes the signal only notes it,
and a main thread asleep in a call the signal did not interrupt never looks. The kernel hands a process's signal to
another thread when the main thread cannot take it: the process was stopped (every thread waits; once continued,
whichever runs first takes it: racy, the main thread often first), or the main thread blocks it (every time: how the
tests without a SIGSTOP make it happen). What is checked: a SIGTERM requeues the run and ends the attempt; the
freshness budget of a chain executed ahead (its SIGALRM) cuts a chain file that sleeps as it is executed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from nectar.attempt import process_name
from nectar.registry import RunState
from tests.faults.conftest import Cluster, alive, waitfor
from tests.helpers.threads import asleep

#: a chain whose task sleeps an hour with SIGTERM blocked in its main thread (the kernel hands the process's SIGTERM
#: to another thread: a thread of its own, nectar's), writing its pid as it begins and whether its sleep was cut short
MASKED_CHAIN = """
import os
import signal
import threading
import time
from pathlib import Path

from nectar import NectarTask

HERE = Path(__file__).parent


class MaskedSleepTask(NectarTask):
    def run(self):
        held = threading.Event()
        threading.Thread(target=held.wait, daemon=True).start()  # a thread of its own, started with nothing blocked
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        (HERE / "masked.pid").write_text(str(os.getpid()))
        try:
            time.sleep(3600)
        finally:
            (HERE / "masked.cut").write_text(str(os.getpid()))
"""

#: a chain whose file, once ``slow`` is beside it, sleeps an hour as it is executed, with SIGALRM (the budget of a
#: chain executed ahead) blocked in its main thread; its task says it ``started``, then waits for ``gate`` beside it
SLOW_CHAIN = """
import os
import signal
import time
from pathlib import Path

from nectar import NectarTask

HERE = Path(__file__).parent

if (HERE / "slow").exists():
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
    (HERE / "slow.pid").write_text(str(os.getpid()))
    try:
        time.sleep(3600)
    finally:
        (HERE / "slow.cut").write_text(str(os.getpid()))


class GatedTask(NectarTask):
    def run(self):
        (HERE / "started").touch()
        while not (HERE / "gate").exists():
            time.sleep(0.01)
        with self.output().open("w") as out:
            out.write("done\\n")
"""


def queue(cluster: Cluster, chain: str, task: str) -> dict[str, Any]:
    """Submit ``task`` of ``faults/<chain>``; the 202's data."""
    answer = requests.post(f"{cluster.api.url}/api/chains/faults/{chain}/{task}", timeout=60)
    cluster.accepted_answer(answer)
    assert answer.status_code == 202, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def requeued(cluster: Cluster, run_id: str, attempt: int) -> None:
    """The attempt process ``attempt`` exits and its run is requeued (taken by another process or waiting), not
    failed."""
    waitfor(lambda: not alive(attempt), 60, "the attempt to act on its SIGTERM and exit")
    waitfor(lambda: cluster.run(run_id).worker != process_name(attempt), 60, "the run requeued")
    assert cluster.run(run_id).state != RunState.FAILED


def test_a_sigterm_another_thread_takes_while_the_main_thread_sleeps_requeues_the_run(
    cluster: Cluster, write_chain: Callable[[str, str], Path]
) -> None:
    """No SIGSTOP: the task's main thread blocks SIGTERM as it sleeps, so the kernel hands it to another thread."""
    cluster.fault = "SIGTERM an attempt whose main thread sleeps blocking it (another thread takes it)"
    chain = write_chain("faults/masked_chain", MASKED_CHAIN).parent
    cluster.start_service(workers=1)
    data = queue(cluster, "masked_chain", "MaskedSleepTask")
    waitfor(lambda: (chain / "masked.pid").exists(), 60, "the task to sleep")
    attempt = int((chain / "masked.pid").read_text())
    waitfor(lambda: asleep(attempt, attempt), 60, "its main thread in its sleep")  # not on its way there

    os.kill(attempt, signal.SIGTERM)

    requeued(cluster, data["run_id"], attempt)
    assert (chain / "masked.cut").read_text() == str(attempt)  # its sleep was cut short, not its process killed


def test_a_sigterm_sent_while_an_attempt_is_stopped_requeues_its_run_once_continued(cluster: Cluster) -> None:
    """With every thread stopped the kernel keeps the signal for the whole process and, on SIGCONT, hands it to
    whichever thread runs first (racy: on a main without the fix it failed 2 times in 3)."""
    cluster.fault = "SIGSTOP the child sleeping in an hour-long task; SIGTERM it; SIGCONT it"
    cluster.start_service(workers=1)
    [data] = cluster.start_runs(1, sleeps="3600,0.2")
    attempt = cluster.ledger.executions()[0].pid
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(attempt), 60, "the child's claim")
    waitfor(lambda: asleep(attempt, attempt), 60, "its main thread in its task's sleep")

    cluster.freeze(attempt)
    os.kill(attempt, signal.SIGTERM)
    os.kill(attempt, signal.SIGCONT)

    requeued(cluster, data["run_id"], attempt)
    assert cluster.ledger.count("end") == 0


def test_the_budget_of_a_chain_executed_ahead_cuts_a_file_that_sleeps_with_its_alarm_taken_by_another_thread(
    cluster: Cluster, write_chain: Callable[[str, str], Path]
) -> None:
    """A spare executes the chain of its process's last run ahead of its next (within a budget: a SIGALRM); the
    file sleeps with SIGALRM blocked in the main thread, so the kernel hands the alarm to another thread."""
    cluster.fault = "a chain file executed ahead sleeps, its main thread blocking SIGALRM"
    chain = write_chain("faults/slow_chain", SLOW_CHAIN).parent
    cluster.start_service(workers=1)
    data = queue(cluster, "slow_chain", "GatedTask")
    waitfor(lambda: (chain / "started").exists(), 60, "the task to run (its file executed)")
    (chain / "slow").touch()  # its process, once the run ends, executes the file ahead of its next run: it sleeps
    (chain / "gate").touch()

    waitfor(lambda: (chain / "slow.pid").exists(), 60, "the file executed ahead")
    waitfor(lambda: (chain / "slow.cut").exists(), 60, "the budget to cut the file's sleep short")
    waitfor(lambda: cluster.run(data["run_id"]).state == RunState.DONE, 60, "the run done")
