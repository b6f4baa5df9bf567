"""Processes die: the API, a worker with its children, luigid, or everything at once under ``nectar serve``."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator

from nectar.attempt import process_name
from nectar.runs import RunState
from tests.faults.conftest import Cluster, alive, children, cmdline, descendants, ppid, tagged, waitfor


def test_runs_accepted_before_the_api_is_killed_are_all_done_by_a_new_api(cluster: Cluster) -> None:
    cluster.fault = "kill -9 the API (gunicorn group) after 202s"
    cluster.start_luigid()
    cluster.start_worker(workers=2)
    cluster.start_api()
    keys = [cluster.api.queue(n=n, sleeps="0.8")["key"] for n in range(6)]
    waitfor(lambda: cluster.ledger.count("start") >= 1, 20, "a run to start")

    killed = cluster.kill_api()

    assert not any(alive(pid) for pid in killed)
    cluster.start_api()
    for data in cluster.api.wait_all(keys, timeout=40):
        assert data["attempt"] == 1 and data["error"] is None
    assert cluster.ledger.count("end", "LedgerTask") == 6
    cluster.account()


def test_a_killed_worker_and_its_children_are_noticed_and_their_runs_retried(cluster: Cluster) -> None:
    cluster.fault = "kill -9 a worker and its children mid-task"
    cluster.settings = cluster.settings.replace(retries=2, lease_timeout=3)
    cluster.start_luigid()
    cluster.start_api()
    first = cluster.start_worker(workers=2)
    running = [cluster.api.queue(n=n, sleeps="20,0.3") for n in range(2)]
    queued = cluster.api.queue(n=2, sleeps="0.3")
    waitfor(lambda: cluster.ledger.count("start") == 2, 20, "two runs to start")
    executing = {e.pid for e in cluster.ledger.executions()}
    assert executing <= set(children(first.pid)), "the attempts run in the worker's children"

    killed = cluster.kill_worker(first)
    killed_at = time.monotonic()

    assert executing <= set(killed)
    cluster.start_worker(workers=2)
    noticed: dict[str, dict] = {}

    def noticed_all() -> bool:
        """Every killed attempt has stopped showing RUNNING (it is waiting for, or running, attempt 2)."""
        for data in running:
            if data["key"] not in noticed:
                status = cluster.api.state(data["key"])
                if status["job_status"] != "RUNNING" or status["attempt"] >= 2:
                    noticed[data["key"]] = status
        return len(noticed) == len(running)

    waitfor(noticed_all, cluster.settings.lease_timeout + 5, "the killed attempts to stop showing RUNNING")
    took = time.monotonic() - killed_at
    for status in noticed.values():
        assert status["error"].startswith("worker lost: "), status
        assert "during attempt 1" in status["error"], status
    for data in cluster.api.wait_all([d["key"] for d in running], timeout=30):
        assert (data["job_status"], data["attempt"], data["max_attempts"]) == ("DONE", 2, 3), data
    assert cluster.api.wait(queued["key"])["attempt"] == 1
    for data in running:
        run = cluster.run(data["run_id"])
        assert run.attempt == 2 and run.error is None
    assert took < cluster.settings.lease_timeout + 5
    assert cluster.ledger.count("start", "LedgerTask") == 5 and cluster.ledger.count("end", "LedgerTask") == 3
    cluster.account()


def test_runs_survive_luigid_killed_and_restarted_mid_run(cluster: Cluster) -> None:
    cluster.fault = "kill -9 luigid mid-run, restart on the same port and state"
    cluster.settings = cluster.settings.replace(retries=2, lease_timeout=3)
    cluster.start_luigid()
    cluster.start_api()
    cluster.start_worker(workers=2)
    keys = [cluster.api.queue(n=n, sleeps="2")["key"] for n in range(4)]
    waitfor(lambda: cluster.ledger.count("start") >= 2, 20, "two runs to start")

    cluster.kill_luigid()
    assert cluster.api.healthz().json()["message"].startswith("degraded: scheduler unavailable")
    # stay down until a task has finished: its luigi worker reports DONE to a dead scheduler
    waitfor(lambda: cluster.ledger.count("end") >= 1, 10, "a task to finish while luigid is down")
    cluster.start_luigid()

    cluster.api.wait_all(keys, timeout=90)
    assert cluster.ledger.count("end", "LedgerTask") == 4
    cluster.account()


#: the order the whole-service test kills the parts in is shuffled with this seed
SEED = int(os.environ.get("NECTAR_FAULTS_SEED", "20240607"))


def test_nectar_serve_killed_part_by_part_finishes_every_run_after_a_restart(cluster: Cluster) -> None:
    order = ["api", "workers", "luigid"]
    random.Random(SEED).shuffle(order)
    cluster.fault = f"nectar serve: kill -9 supervisor, then {', '.join(order)} (seed {SEED}); serve again"
    env = {"NECTAR_RETRIES": "2", "NECTAR_LEASE": "3", "NECTAR_HEARTBEAT": "0.5", "NECTAR_DRAIN_GRACE": "1"}
    env["NECTAR_RETRY_DELAY"] = "0.2"
    serve = cluster.start_serve(workers=4, **env)
    runs = [cluster.api.queue(n=n, sleeps="2") for n in range(10)]
    waitfor(lambda: cluster.ledger.count("start") >= 2, 20, "runs to start")
    parts = cluster.serve_parts(serve)

    cluster.kill_pids([serve.pid])
    serve.wait(timeout=10)
    for part in order:
        pid = parts[part]
        if part == "api":
            group = [pid, *descendants(pid)]
            os.killpg(pid, signal.SIGKILL)
            waitfor(lambda: not any(alive(p) for p in group), 10, "the API to die")  # noqa: B023
        elif part == "workers":
            cluster.kill_pids([pid, *descendants(pid)])
            # children claimed meanwhile were orphaned when their parent died: same command line, our token
            cluster.kill_pids([p for p in tagged(cluster.token) if "nectar.cli worker" in cmdline(p)])
        else:
            cluster.kill_pids([pid])
    left = [p for p in tagged(cluster.token) if alive(p)]
    assert not left, {p: cmdline(p) for p in left}
    unfinished = [r for r in runs if cluster.run(r["run_id"]).state in (RunState.PENDING, RunState.RUNNING)]
    assert unfinished, "the kill came after every run had finished: nothing was tested"

    cluster.start_serve(workers=4, **env)

    finals = cluster.api.wait_all([r["key"] for r in runs], ("DONE", "FAILED"), timeout=60)
    assert [f["job_status"] for f in finals] == ["DONE"] * len(runs), finals  # each run was killed once at most
    cluster.account()


def test_a_frozen_attempt_is_reclaimed_and_exits_without_finishing_when_thawed(cluster: Cluster) -> None:
    cluster.fault = "SIGSTOP the child executing a task; SIGCONT after the run was reclaimed and DONE"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=3)
    cluster.start_luigid()
    cluster.start_api()
    workers = [cluster.start_worker(workers=1), cluster.start_worker(workers=1)]
    data = cluster.api.queue(n=0, sleeps="30,0.3")
    waitfor(lambda: cluster.ledger.count("start") == 1, 20, "the run to start")
    frozen = cluster.ledger.executions()[0].pid
    owner = ppid(frozen)
    assert owner in {w.pid for w in workers}
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(frozen), 5, "the child's first heartbeat")

    cluster.freeze(frozen)
    frozen_at = time.monotonic()

    done = cluster.api.wait(data["key"], timeout=cluster.settings.lease_timeout + 10)
    took = time.monotonic() - frozen_at
    assert took < cluster.settings.lease_timeout + 6, took
    assert (done["attempt"], done["max_attempts"]) == (2, 2)
    [second] = [e for e in cluster.ledger.executions() if e.pid != frozen]
    assert second.end is not None
    assert cluster.run(data["run_id"]).worker == process_name(second.pid)
    assert alive(frozen), "still frozen: its own worker must not have been able to finish it"

    os.kill(frozen, signal.SIGCONT)

    waitfor(lambda: not alive(frozen), 10, "the thawed child to exit")
    [first] = [e for e in cluster.ledger.executions() if e.pid == frozen]
    assert first.end is None, "the thawed child went on and finished a task it had lost"
    assert cluster.ledger.count("end") == 1
    assert cluster.read(data["key"]) == f"{second.task_id} {second.pid}\n"
    assert cluster.run(data["run_id"]).state == RunState.DONE
    cluster.account()


def test_a_frozen_attempt_thawed_when_its_work_is_due_does_not_finish_it(cluster: Cluster) -> None:
    """The frozen child's task has no work left when it is thawed (its sleep ran out while it was stopped), and
    the registry is busy for a moment (another writer holds its lock): the child must still not finish a task
    whose attempt was reclaimed and done by another worker."""
    cluster.fault = "SIGSTOP a child near the end of its task; SIGCONT after reclaim, registry busy for 1 s"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=3)
    cluster.start_luigid()
    cluster.start_api()
    cluster.start_worker(workers=1)
    cluster.start_worker(workers=1)
    data = cluster.api.queue(n=0, sleeps="1.5,0.3")
    waitfor(lambda: cluster.ledger.count("start") == 1, 20, "the run to start")
    frozen = cluster.ledger.executions()[0].pid
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(frozen), 5, "the child's first heartbeat")
    cluster.freeze(frozen)
    done = cluster.api.wait(data["key"], timeout=cluster.settings.lease_timeout + 10)
    assert done["attempt"] == 2
    [second] = [e for e in cluster.ledger.executions() if e.pid != frozen]

    with registry_busy(cluster, seconds=1.0):
        os.kill(frozen, signal.SIGCONT)

    waitfor(lambda: not alive(frozen), 10, "the thawed child to exit")
    [first] = [e for e in cluster.ledger.executions() if e.pid == frozen]
    ledger = cluster.ledger.path.read_text()
    assert first.end is None, f"the thawed child finished the task after its attempt was reclaimed:\n{ledger}"
    assert cluster.read(data["key"]) == f"{second.task_id} {second.pid}\n"
    cluster.account()


@contextlib.contextmanager
def registry_busy(cluster: Cluster, seconds: float) -> Iterator[None]:
    """Hold the registry's write lock (as a long transaction of another process would) around the block and
    for ``seconds`` after it."""
    db = sqlite3.connect(cluster.settings.registry_path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        time.sleep(seconds)
        db.execute("COMMIT")
    finally:
        db.close()
