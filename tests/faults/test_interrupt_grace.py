"""An interrupted attempt that could not run (here stopped, as on a machine too busy to give it a CPU) is not killed
before it could use its grace (:mod:`nectar.grace`): continued, it records its interruption and its run is requeued (in
a file of its own, beside test_serve_stops.py, so that pytest-xdist shares them between its workers)."""

from __future__ import annotations

import signal

from tests.faults.conftest import Cluster, send, waitfor
from tests.faults.stopped import requeued


def test_an_attempt_stopped_when_serve_interrupts_it_records_its_interruption_once_continued(cluster: Cluster) -> None:
    """Its grace counted the wall clock: 5 s after the second Ctrl-C the stopped attempt was killed, its execution
    left with no end and no stop (``Execution(..., end=None, stop=None)``), its run never requeued by itself."""
    cluster.fault = "SIGSTOP the child executing a task, Ctrl-C nectar serve twice; SIGCONT the child past 5 s"
    serve = cluster.start_serve(workers=1, NECTAR_DRAIN_GRACE="3600")
    [data] = cluster.start_runs(1, sleeps="3600,0.3")
    attempt = cluster.ledger.executions()[0].pid
    log = cluster.log_of[serve.pid]
    waiting = f"stopping: waiting up to 3600 s for 1 running run ({data['run_id']}) to finish"
    cluster.freeze(attempt)

    serve.send_signal(signal.SIGINT)
    waitfor(lambda: waiting in log.read_text(), 60, f"the worker to say {waiting!r}")
    serve.send_signal(signal.SIGINT)
    # the worker says so once its grace's seconds of the wall clock passed with none of them used
    waitfor(lambda: f"interrupted attempt {attempt} used 0.0 s" in log.read_text(), 60, "the grace's 5 s to pass")
    send(attempt, signal.SIGCONT)

    assert serve.wait(timeout=60) == 0, log.read_text()
    requeued(cluster, [data])
    cluster.start_serve(workers=1)
    assert cluster.api.wait(data["key"], timeout=60)["attempt"] == 1
    cluster.account()
