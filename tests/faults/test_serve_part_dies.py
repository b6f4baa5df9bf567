"""``nectar serve`` whose part died stops everything; a Ctrl-C meanwhile hurries that stop as a second one would (in a
file of its own, beside test_serve_stops.py, so that pytest-xdist shares them between its workers)."""

from __future__ import annotations

import signal

from tests.faults.conftest import Cluster, send, waitfor
from tests.faults.stopped import requeued


def test_a_ctrl_c_while_serve_stops_for_a_dead_part_interrupts_the_drain_and_requeues_running_runs(
    cluster: Cluster,
) -> None:
    """A part died (here the API's master, killed): serve began its stop, the workers draining for
    ``NECTAR_DRAIN_GRACE``. A Ctrl-C then was taken as a first one, which does nothing once a stop is under way:
    serve waited out the drain (here an hour). It ends the drain now, as a second Ctrl-C does; exit 1 (a part died)."""
    cluster.fault = "kill -9 nectar serve's API while a run runs, then Ctrl-C nectar serve"
    serve = cluster.start_serve(workers=1, NECTAR_DRAIN_GRACE="3600")
    [data] = cluster.start_runs(1, sleeps="3600,0.3")
    log = cluster.log_of[serve.pid]
    waiting = f"stopping: waiting up to 3600 s for 1 running run ({data['run_id']}) to finish"

    send(cluster.serve_parts(serve)["api"], signal.SIGKILL)
    waitfor(lambda: waiting in log.read_text(), 60, f"the worker to say {waiting!r}")
    serve.send_signal(signal.SIGINT)

    assert serve.wait(timeout=60) == 1, log.read_text()  # a deadline for a hung test only: it drained for an hour
    said = log.read_text()
    assert "api exited with code -9; stopping everything" in said, said
    assert f"interrupting 1 running run ({data['run_id']}) now" in said, said
    requeued(cluster, [data])
    cluster.start_serve(workers=1)
    assert cluster.api.wait(data["key"], timeout=60)["attempt"] == 1
    cluster.account()
