"""Three nodes (API + workers each) sharing one PostgreSQL registry, one luigid and one bucket: every run
executed exactly once, and a node killed half-way leaves its runs to the others."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nectar.attempt import process_name
from nectar.registry import RunState
from tests.faults.conftest import waitfor
from tests.scale.conftest import Deployment, Figures, report

NODES, RUNS = 3, 200


def submit_round_robin(deployment: Deployment, **params: Any) -> list[dict[str, Any]]:
    """RUNS distinct runs, the i-th to node i mod NODES, 16 at a time."""
    with ThreadPoolExecutor(16) as pool:
        nodes = deployment.nodes
        return list(pool.map(lambda n: deployment.submit(nodes[n % len(nodes)], n, **params), range(RUNS)))


def account(deployment: Deployment, test: str, started: float) -> Figures:
    """The figures of the test, recorded for the report."""
    states = deployment.states()
    executions = deployment.ledger.executions()
    figures = Figures(
        test,
        NODES,
        sum(states.values()),
        states[RunState.DONE],
        len(executions),
        len(deployment.ledger.duplicates()),
        sum(n for state, n in states.items() if state != RunState.DONE),
        time.monotonic() - started,
    )
    report(figures)
    return figures


def test_runs_sent_to_three_nodes_each_execute_once(deployment: Deployment) -> None:
    deployment.start_scheduler()
    for _ in range(NODES):
        deployment.start_node(workers=2)
    started = time.monotonic()

    accepted = submit_round_robin(deployment)

    assert len({a["run_id"] for a in accepted}) == RUNS
    waitfor(lambda: deployment.states()[RunState.DONE] == RUNS, 240, "every run to be DONE", interval=0.5)
    figures = account(deployment, "200 runs round-robin to 3 nodes", started)
    ended = Counter(e.task_id for e in deployment.ledger.executions() if e.end is not None)
    assert len(ended) == RUNS and set(ended.values()) == {1}
    assert (figures.executions, figures.duplicates, figures.lost) == (RUNS, 0, 0)
    assert deployment.outputs() == RUNS
    executed_by = {e.task_id: process_name(e.pid) for e in deployment.ledger.executions() if e.end is not None}
    named = {run.task_id: run.worker for run in (deployment.registry.get(a["run_id"]) for a in accepted) if run}
    assert named == executed_by, "every run names the process that ran it"


def test_a_node_killed_half_way_leaves_its_runs_to_the_others(deployment: Deployment) -> None:
    deployment.start_scheduler()
    for _ in range(NODES):
        deployment.start_node(workers=2)
    started = time.monotonic()
    accepted = submit_round_robin(deployment, sleeps="0.3")
    waitfor(lambda: deployment.ledger.count("end") >= RUNS // 2, 240, "half the runs to end", interval=0.2)
    victim = deployment.nodes[1]
    in_flight = {e.pid for e in deployment.ledger.executions() if e.end is None}

    deployment.kill_node(victim)

    waitfor(lambda: deployment.states()[RunState.DONE] == RUNS, 240, "every run to be DONE", interval=0.5)
    figures = account(deployment, "the same, node 2 killed (SIGKILL) half-way", started)
    ended = Counter(e.task_id for e in deployment.ledger.executions() if e.end is not None)
    assert len(ended) == RUNS and set(ended.values()) == {1}, "each run's task completed exactly once"
    assert (figures.duplicates, figures.lost) == (0, 0)
    killed = [e for e in deployment.ledger.executions() if e.end is None]
    assert {e.pid for e in killed} <= in_flight, "only the executions the kill cut short were left unfinished"
    assert figures.executions == RUNS + len(killed)
    assert deployment.outputs() == RUNS
    # the victim's 2 slots held attempts when it died (some may not have reached run() yet): they were retried
    retried = [a for a in accepted if deployment.registry.get(a["run_id"]).attempt > 1]  # type: ignore[union-attr]
    assert 1 <= len(retried) <= 2 and len(killed) <= len(retried), (retried, killed)
