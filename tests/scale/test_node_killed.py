"""Three nodes sharing one PostgreSQL registry, one luigid and one bucket, one of them killed half-way: its runs
are left to the others, each executed to its end exactly once (in a file of its own, so that pytest-xdist runs it
beside tests/scale/test_nodes.py)."""

from __future__ import annotations

import time

from harness import descendants
from nectar.registry import RunFilter, RunState
from tests.faults.conftest import waitfor
from tests.helpers.registries import known
from tests.scale.conftest import NODES, RUNS, Deployment, Node, account, submit_round_robin


def pid_of(worker: str) -> int:
    """The pid in a run's worker, ``host:pid`` or ``host:pid.n``."""
    return int(worker.rpartition(":")[2].partition(".")[0])


def held_by(deployment: Deployment, pids: set[int]) -> set[str]:
    """The runs whose attempt one of ``pids`` holds."""
    running, _ = deployment.registry.find(RunFilter(state=RunState.RUNNING), limit=RUNS)
    return {run.id for run in running if run.worker and pid_of(run.worker) in pids}


def node_pids(node: Node) -> set[int]:
    return {node.worker.pid, *descendants(node.worker.pid)}


def test_a_node_killed_half_way_leaves_its_runs_to_the_others(deployment: Deployment) -> None:
    deployment.start_scheduler()
    # the killed node's attempts are found lost because their processes are gone (one host); a lease only a hung
    # node outlasts, so that a live node slow to renew one on a busy machine is not taken for dead
    deployment.settings = deployment.settings.replace(lease_timeout=120.0)
    deployment.start_nodes(NODES, workers=2)
    started = time.monotonic()
    accepted = submit_round_robin(deployment, sleeps="0.3")
    waitfor(lambda: deployment.ledger.count("end") >= RUNS // 2, 240, "half the runs to end", interval=0.2)
    victim = deployment.nodes[1]
    waitfor(lambda: held_by(deployment, node_pids(victim)), 240, "the node to be killed to hold a run", interval=0.05)
    deployment.freeze_node(victim)  # the executions in flight and the runs it holds, read now, are what the kill cuts
    in_flight = {e.pid for e in deployment.ledger.executions() if e.end is None}
    pids = node_pids(victim)
    held = held_by(deployment, pids)

    deployment.kill_node(victim)

    waitfor(lambda: deployment.states()[RunState.DONE] == RUNS, 240, "every run to be DONE", interval=0.1)
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
    # the victim's 2 slots held attempts when it died (some may not have reached run() yet): they were retried, found
    # lost because their process was gone (a completion already sent when it was frozen may have ended one instead)
    retried = {a["run_id"] for a in accepted if known(deployment.registry.get(a["run_id"])).attempt > 1}
    firsts = {run_id: deployment.registry.attempts(run_id)[0] for run_id in held | retried}
    assert all(firsts[run_id].state == "DONE" for run_id in held - retried), (held, retried, firsts)
    for run_id in retried:  # and no other run: a live node's attempt was never taken for lost
        error = firsts[run_id].error or ""
        assert "(its process is gone)" in error and pid_of(error.split()[2]) in pids, (run_id, error, pids)
    assert len(killed) <= len(retried) <= 2, (held, retried, killed)
