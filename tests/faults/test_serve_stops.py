"""``nectar serve`` stopped the hard way: every process dead at once, the supervisor killed alone, a second Ctrl-C
(in a file of its own, beside test_processes.py, so that pytest-xdist shares them between its workers)."""

from __future__ import annotations

import signal

import pytest
import requests

from harness.procfs import state
from nectar import ports
from nectar.registry import RunState
from tests.faults.conftest import Cluster, alive, cmdline, descendants, tagged, waitfor
from tests.faults.stopped import gone, requeued


def test_nectar_serve_whose_every_process_dies_at_once_finishes_every_run_after_a_restart(cluster: Cluster) -> None:
    """A power cut: every process of the service is frozen (none sees another die), then all are killed."""
    cluster.fault = "nectar serve: every process frozen, then kill -9 (a power cut); serve again"
    # the attempts the cut killed are reclaimed by their pids, gone; a lease of 3 s also reclaimed a live attempt
    # whose heartbeat came late after the restart (an attempt more, or a run FAILED past its retries); 30 s reclaims
    # a killed attempt by silence within the final wait where its pid was reused
    env = {"NECTAR_RETRIES": "2", "NECTAR_LEASE": "30", "NECTAR_HEARTBEAT": "0.5", "NECTAR_DRAIN_GRACE": "1"}
    env["NECTAR_RETRY_DELAY"] = "0.2"
    serve = cluster.start_serve(workers=4, **env)
    gate = cluster.tmp / "gate"  # opened once every process is dead: the cut comes while runs run and others wait
    runs = [cluster.api.queue(n=n, gate=str(gate)) for n in range(10)]
    waitfor(lambda: cluster.ledger.count("start") >= 4, 60, "a run in each of the 4 slots")
    everything = frozen_whole(cluster, serve.pid)

    cluster.kill_pids(everything)
    serve.wait(timeout=60)

    left = [p for p in tagged(cluster.token) if alive(p)]
    assert not left, {p: cmdline(p) for p in left}
    states = [cluster.run(r["run_id"]).state for r in runs]
    assert set(states) == {RunState.PENDING, RunState.RUNNING}, states  # none finished, some ran, some waited

    gate.touch()
    cluster.start_serve(workers=4, **env)

    finals = cluster.api.wait_all([r["key"] for r in runs], ("DONE", "FAILED"), timeout=60)
    assert [f["job_status"] for f in finals] == ["DONE"] * len(runs), finals  # each run was killed once at most
    cluster.account()


def frozen_whole(cluster: Cluster, root: int) -> list[int]:
    """``root`` and every process under it, frozen: listed and frozen again until a listing finds none new and every
    one listed is stopped (a stopped process forks nothing, so the list is whole). Listed once and frozen, a spare its
    worker forked after the listing escaped the freeze and the kill."""
    everything: list[int] = []

    def whole() -> bool:
        new = [pid for pid in [root, *descendants(root)] if pid not in everything]
        for pid in new:
            cluster.freeze(pid)
        everything.extend(new)
        return not new and all(stopped(pid) for pid in everything)

    waitfor(whole, 60, f"every process under {root} stopped, none new")
    return everything


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (by a signal, or traced), a zombie or gone: in no state to fork."""
    return state(pid) in (None, "T", "t", "Z", "X")


def test_nectar_serve_killed_alone_takes_every_process_with_it_and_requeues_its_running_runs(
    cluster: Cluster,
) -> None:
    cluster.fault = "kill -9 the nectar serve supervisor alone; serve again"
    # a drain that outlasts the test: a worker whose supervisor is gone must not wait for it
    serve = cluster.start_serve(workers=2, NECTAR_DRAIN_GRACE="3600")
    runs = cluster.start_runs(2, sleeps="3600,0.3")

    def workers() -> dict[int, str]:
        return {pid: line for pid in descendants(serve.pid) if "nectar.cli worker" in (line := cmdline(pid))}

    # the worker, its 2 attempts and a spare at least: spares are forked one per pass of the worker's loop, the last
    # one held back until an attempt says its step started, so some may come after the runs' starts
    waitfor(lambda: len(workers()) >= 4, 60, "the worker, its 2 attempts and a spare")
    started = {pid: cmdline(pid) for pid in descendants(serve.pid)}

    cluster.ledger.note("kill", serve.pid)
    serve.kill()
    serve.wait(timeout=60)

    gone(started, "every process nectar serve started to stop on its own")
    # and those forked after the list was read (a spare), which no one forks any more
    gone({p: cmdline(p) for p in tagged(cluster.token) if alive(p)}, "every process of the test's to stop")
    for port in (cluster.api_port, cluster.luigid_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=60)
        ports.ensure_free("127.0.0.1", port, "a test")
    requeued(cluster, runs)

    again = cluster.start_serve(workers=2)

    for data in cluster.api.wait_all([r["key"] for r in runs], timeout=60):
        assert data["attempt"] == 1, data
    # luigid saved the tasks as RUNNING when it stopped: the new worker told it at once that their attempts are gone,
    # so no attempt waited for luigid to time the dead workers out
    said = cluster.log_of[again.pid].read_text()
    assert "ended: PENDING" not in said, said
    cluster.account()


def test_a_second_ctrl_c_at_nectar_serve_interrupts_the_drain_and_requeues_running_runs(cluster: Cluster) -> None:
    cluster.fault = "Ctrl-C nectar serve while a run runs, then Ctrl-C again"
    serve = cluster.start_serve(workers=1, NECTAR_DRAIN_GRACE="3600")
    [data] = cluster.start_runs(1, sleeps="3600,0.3")
    log = cluster.log_of[serve.pid]
    waiting = f"stopping: waiting up to 3600 s for 1 running run ({data['run_id']}) to finish"

    serve.send_signal(signal.SIGINT)
    waitfor(lambda: waiting in log.read_text(), 60, f"the worker to say {waiting!r}")
    serve.send_signal(signal.SIGINT)

    assert serve.wait(timeout=60) == 0, log.read_text()
    assert f"stopping (asked again): interrupting 1 running run ({data['run_id']}) now" in log.read_text()
    requeued(cluster, [data])
    cluster.start_serve(workers=1)
    assert cluster.api.wait(data["key"], timeout=60)["attempt"] == 1
    cluster.account()
