"""An interrupted attempt that could not run (here stopped, as on a machine too busy to give it a CPU) is not killed
before it could use its grace (:mod:`nectar.grace`): continued, it records its interruption (in a file of its own,
beside test_submissions.py, so that pytest-xdist shares them between its workers)."""

from __future__ import annotations

import signal

from tests.faults.conftest import Cluster, alive, frozen_outside_turn, send, waitfor


def test_a_cancelled_attempt_stopped_past_its_grace_records_its_interruption_once_continued(cluster: Cluster) -> None:
    """Its grace counted the wall clock: 5 s after its worker saw the cancel, the stopped attempt was killed, its
    execution left with no end and no stop (``Execution(..., end=None, stop=None)``), its step's log cut short."""
    cluster.fault = "SIGSTOP the child executing a task, cancel its run; SIGCONT the child past 5 s"
    cluster.start_service(workers=1)
    gate = cluster.tmp / "gate"  # never created: the attempt ends only if the cancel stops it
    [running] = cluster.start_runs(1, gate=str(gate))
    child = cluster.ledger.executions()[0].pid
    # not noted in the ledger as cluster.freeze does (its task itself says it stopped); outside its registry turn, or
    # the cancel below waits for it
    frozen_outside_turn(child, cluster.settings.registry_path)

    assert cluster.api.cancel(running["run_id"]).status_code == 200
    # its worker says so once its grace's seconds of the wall clock passed with none of them used (a grace of the
    # wall clock killed it then)
    said = f"interrupted attempt {child} used 0.0 s"
    waitfor(lambda: said in cluster.worker_log() or not alive(child), 60, "the grace's 5 s to pass")
    send(child, signal.SIGCONT)

    waitfor(lambda: not alive(child), 60, "the cancelled attempt's process to end")
    [execution] = cluster.ledger.executions()
    assert execution.end is None and execution.stop is not None, execution  # its task said it failed: interrupted
    stderr = cluster.read(running["key"].replace("out.txt", "log/stderr.log"))
    assert stderr.strip().endswith("interrupted: the run was cancelled or reclaimed"), stderr
    assert cluster.api.state(running["key"])["job_status"] == "CANCELLED"
