"""What the process-fault tests check once processes are stopped: every one gone, the runs they ran requeued."""

from __future__ import annotations

from nectar.registry import RunState
from tests.faults.conftest import Cluster, alive, waitfor


def gone(pids: dict[int, str], what: str) -> None:
    """Wait (a generous deadline, only there to fail a hung test) until none of ``pids`` is alive."""
    try:
        waitfor(lambda: not any(alive(pid) for pid in pids), 60, what)
    except AssertionError:
        raise AssertionError(f"{what}; still running: { {p: c for p, c in pids.items() if alive(p)} }") from None


def requeued(cluster: Cluster, runs: list[dict]) -> None:
    """Each run is back in the queue, its attempt not counted, its task interrupted (a ``fail`` in the ledger)."""
    for data in runs:
        run = cluster.run(data["run_id"])
        assert (run.state, run.attempt) == (RunState.PENDING, 0), run
    executions = cluster.ledger.executions()
    assert len(executions) == len(runs) and all(e.end is None and e.stop is not None for e in executions), executions
