"""review10's (round 56) tests of the API's answering threads (:class:`nectar.gunicorn_ext.ReadTimeoutWorker`,
leader/followers on one epoll, round 55)."""

from __future__ import annotations

import http.client
import threading
from pathlib import Path

import pytest

from harness import Processes, base_env, settings_env, waitfor
from nectar.config import Settings
from tests.helpers.held_app import HELD_APP_DIR, entered, hold, release
from tests.helpers.review10_app import APP, THREAD_STARTS

#: how long a test waits for what must happen: it only fails a hung test, it bounds nothing
PATIENCE = 60.0
#: what Python's threading prints for an exception a thread did not catch (the thread is gone)
UNCAUGHT = "Exception in thread"


@pytest.mark.xfail(
    strict=True,
    reason="review10: ReadTimeoutWorker.follow (nectar/gunicorn_ext.py:320) calls another() outside its try: a "
    "thread that cannot be started kills the thread that took the event (a listener's: EPOLLONESHOT, never armed "
    "again), and the worker, alive and heartbeating, accepts no connection for the rest of its life",
)
def test_a_thread_that_cannot_be_started_leaves_the_worker_accepting_new_connections(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """Three threads a worker, of which the system lets it start two (``can't start new thread`` for the third: a
    pids limit, memory). Its two started threads given a request each, one held, the other's thread starts the
    third, which fails. gthread started its pool's threads in its main loop, which raised: its worker ended and the
    master forked another. Here the request must be answered by the threads there are, and a new connection after.
    What fails: the thread dies with the event it took (uncaught, said in the log): the listener's, never armed
    again, and the worker, alive, accepts nothing more."""
    folder = tmp_path / "held"
    folder.mkdir()
    env = {HELD_APP_DIR: str(folder), "NECTAR_READ_TIMEOUT": "600", THREAD_STARTS: "2"}
    served = processes.api(None, base_env() | settings_env(settings) | env, app=APP, workers=1, threads=3)
    log = processes.log_of[served.proc.pid]

    def lost_a_thread() -> bool:
        return UNCAUGHT in log.read_text(errors="replace")

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", served.port, timeout=PATIENCE)

    hold(folder, "a")
    held = connect()
    held.request("GET", "/hold/a")
    answered: list[tuple[int, bytes]] = []
    late = connect()

    def ask() -> None:
        late.request("GET", "/hello")
        reply = late.getresponse()
        answered.append((reply.status, reply.read()))

    asking = threading.Thread(target=ask, daemon=True)
    try:
        waitfor(lambda: entered(folder, "a") or lost_a_thread(), PATIENCE, "the held request inside the app")
        assert not lost_a_thread(), log.read_text(errors="replace")
        asking.start()
        # the new connection answered, or the thread that took it gone (an exception no one caught: said in the log)
        waitfor(lambda: answered or lost_a_thread(), PATIENCE, "an answer, or a thread lost")
        assert not lost_a_thread(), log.read_text(errors="replace")
        asking.join(PATIENCE)
        assert answered == [(200, b"hello")]
        release(folder, "a")
        assert held.getresponse().read() == b"released a"
        again = connect()
        again.request("GET", "/again")
        assert again.getresponse().read() == b"again"  # and a new connection after
        again.close()
    finally:  # a request still held is let go as the harness stops the API
        for connection in (held, late):
            connection.close()
