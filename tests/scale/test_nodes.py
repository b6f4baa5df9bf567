"""Three nodes (API + workers each) sharing one PostgreSQL registry, one luigid and one bucket: every run
executed exactly once (a node killed half-way: tests/scale/test_node_killed.py)."""

from __future__ import annotations

import re
import time
from collections import Counter

from nectar.attempt import process_name
from nectar.registry import RunState
from tests.faults.conftest import waitfor
from tests.scale.conftest import NODES, RUNS, Deployment, account, submit_round_robin


def test_runs_sent_to_three_nodes_each_execute_once(deployment: Deployment) -> None:
    deployment.start_scheduler()
    deployment.start_nodes(NODES, workers=2)
    started = time.monotonic()

    accepted = submit_round_robin(deployment)

    assert len({a["run_id"] for a in accepted}) == RUNS
    waitfor(lambda: deployment.states()[RunState.DONE] == RUNS, 240, "every run to be DONE", interval=0.1)
    figures = account(deployment, f"{RUNS} runs round-robin to {NODES} nodes", started)
    ended = Counter(e.task_id for e in deployment.ledger.executions() if e.end is not None)
    assert len(ended) == RUNS and set(ended.values()) == {1}
    assert (figures.executions, figures.duplicates, figures.lost) == (RUNS, 0, 0)
    assert deployment.outputs() == RUNS
    executed_by = {e.task_id: process_name(e.pid) for e in deployment.ledger.executions() if e.end is not None}
    runs = [deployment.registry.get(a["run_id"]) for a in accepted]
    named = {run.task_id: re.sub(r"\.\d+$", "", run.worker or "") for run in runs if run}  # its n-th run: host:pid.n
    assert named == executed_by, "every run names the process that ran it"
