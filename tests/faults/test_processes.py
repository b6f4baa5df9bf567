"""Processes die: the API, luigid, each killed mid-run. (A worker killed or stopped: test_worker_dies.py; an attempt
frozen: test_frozen_attempts.py; ``nectar serve``'s processes stopped the hard way: test_serve_stops.py. Files of
their own, so that pytest-xdist shares them between its workers.)"""

from __future__ import annotations

from tests.faults.conftest import Cluster, alive, waitfor


def test_runs_accepted_before_the_api_is_killed_are_all_done_by_a_new_api(cluster: Cluster) -> None:
    cluster.fault = "kill -9 the API (gunicorn group) after 202s"
    cluster.start_service(workers=2)
    keys = [cluster.api.queue(n=n, sleeps="0.8")["key"] for n in range(6)]
    waitfor(lambda: cluster.ledger.count("start") >= 1, 60, "a run to start")

    killed = cluster.kill_api()

    assert not any(alive(pid) for pid in killed)
    cluster.start_api()
    for data in cluster.api.wait_all(keys, timeout=60):
        assert data["attempt"] == 1 and data["error"] is None
    assert cluster.ledger.count("end", "LedgerTask") == 6
    cluster.account()


def test_runs_survive_luigid_killed_and_restarted_mid_run(cluster: Cluster) -> None:
    cluster.fault = "kill -9 luigid mid-run, restart on the same port and state"
    cluster.settings = cluster.settings.replace(retries=2, lease_timeout=3600)  # no reclaim by silence: none is lost
    cluster.start_service(workers=2)
    keys = [cluster.api.queue(n=n, sleeps="2")["key"] for n in range(4)]
    waitfor(lambda: cluster.ledger.count("start") >= 2, 60, "two runs to start")

    cluster.kill_luigid()
    assert cluster.api.healthz().json()["message"].startswith("degraded: scheduler unavailable")
    # stay down until a task has finished: its luigi worker reports DONE to a dead scheduler
    waitfor(lambda: cluster.ledger.count("end") >= 1, 60, "a task to finish while luigid is down")
    cluster.start_luigid()

    cluster.api.wait_all(keys, timeout=90)
    assert cluster.ledger.count("end", "LedgerTask") == 4
    cluster.account()
