"""A pool (luigi resource) declared once is shared by the workers of every node: its tasks never overlap."""

from __future__ import annotations

import itertools

from nectar.registry import RunState
from tests.faults.conftest import waitfor
from tests.scale.conftest import Deployment

RUNS = 6


def test_a_one_slot_pool_runs_its_tasks_one_at_a_time_across_nodes(deployment: Deployment) -> None:
    deployment.start_scheduler()
    nodes = deployment.start_nodes(2, workers=2)

    for n in range(RUNS):
        deployment.submit(nodes[n % 2], n, task="PooledTask", sleeps="0.4")

    waitfor(lambda: deployment.states()[RunState.DONE] == RUNS, 120, "every pooled run to be DONE", interval=0.5)
    executions = deployment.ledger.of("PooledTask")
    assert len(executions) == RUNS and all(e.end is not None for e in executions)
    for a, b in itertools.combinations(executions, 2):
        assert a.until <= b.start or b.until <= a.start, f"{a} and {b} held the pool's one slot at once"
    assert len({e.task_id for e in executions}) == RUNS  # each run executed once, on either node
