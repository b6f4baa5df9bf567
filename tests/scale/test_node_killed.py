"""Three nodes sharing one PostgreSQL registry, one luigid and one bucket, one of them killed half-way: its runs
are left to the others, each executed to its end exactly once (in a file of its own, so that pytest-xdist runs it
beside tests/scale/test_nodes.py)."""

from __future__ import annotations

import time

from nectar.registry import RunState
from tests.faults.conftest import waitfor
from tests.scale.conftest import NODES, RUNS, Deployment, account, submit_round_robin


def test_a_node_killed_half_way_leaves_its_runs_to_the_others(deployment: Deployment) -> None:
    deployment.start_scheduler()
    deployment.start_nodes(NODES, workers=2)
    started = time.monotonic()
    accepted = submit_round_robin(deployment, sleeps="0.3")
    waitfor(lambda: deployment.ledger.count("end") >= RUNS // 2, 240, "half the runs to end", interval=0.2)
    victim = deployment.nodes[1]
    deployment.freeze_node(victim)  # the executions in flight, read now, are those the kill cuts short
    in_flight = {e.pid for e in deployment.ledger.executions() if e.end is None}

    deployment.kill_node(victim)

    waitfor(lambda: deployment.states()[RunState.DONE] == RUNS, 240, "every run to be DONE", interval=0.5)
    figures = account(deployment, "the same, node 2 killed (SIGKILL) half-way", started)
    # an execution completed when it wrote its output: the kill may fall between that and its ledger's "end" line
    # (the output then exists, so no attempt executes the task again)
    writer = deployment.written_by()
    assert len(writer) == RUNS
    completed = [e for e in deployment.ledger.executions() if e.end is not None or writer[e.task_id] == e.pid]
    assert sorted(e.task_id for e in completed) == sorted(writer), "each run's task completed exactly once"
    assert all(writer[e.task_id] == e.pid for e in completed), "by the execution that wrote its output"
    assert (figures.duplicates, figures.lost) == (0, 0)
    killed = [e for e in deployment.ledger.executions() if e not in completed]
    assert {e.pid for e in killed} <= in_flight, "only the executions the kill cut short were left unfinished"
    assert figures.executions == RUNS + len(killed)
    assert deployment.outputs() == RUNS
    # the victim's 2 slots held attempts when it died (some may not have reached run() yet): they were retried
    retried = [a for a in accepted if deployment.registry.get(a["run_id"]).attempt > 1]  # type: ignore[union-attr]
    assert 1 <= len(retried) <= 2 and len(killed) <= len(retried), (retried, killed)
