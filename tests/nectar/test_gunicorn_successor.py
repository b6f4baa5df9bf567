"""A recycled API worker's successor is forked before the worker ends (``nectar.gunicorn_ext.SuccessorsAhead``): up
and waiting while its predecessor still answers, the predecessor still ending at its ``max_requests``, and the master
back to its count of workers once the predecessor has exited."""

from __future__ import annotations

import http.client
from functools import partial
from pathlib import Path

from harness import Processes, base_env, children, settings_env, waitfor
from nectar.config import Settings

#: requests after which gunicorn replaces a worker: below 10, gunicorn's jitter (a tenth) is 0, so each worker ends
#: at exactly this many, its successor asked for one before (at least one request ahead)
MAX_REQUESTS = 5
#: what the worker logs as it asks for its successor
ASKED = "Worker's successor asked for, 1 requests before its end"


def answered(connection: http.client.HTTPConnection) -> bool:
    """``GET /api/runs`` on ``connection`` (kept alive), answered 200; whether the answer closes the connection."""
    connection.request("GET", "/api/runs")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200
    return answer.will_close


def newcomer(master: int, worker: int) -> int | None:
    """A worker of ``master`` other than ``worker``, if there is one."""
    return next(iter(set(children(master)) - {worker}), None)


def alone(master: int, worker: int) -> bool:
    """Whether ``worker`` is ``master``'s only worker."""
    return children(master) == [worker]


def test_a_recycled_workers_successor_is_forked_while_it_still_answers_and_the_master_keeps_its_count(
    settings: Settings, tmp_path: Path
) -> None:
    """One worker, one kept-alive connection: once the worker has said it asked for its successor (in its log, before
    its answer), a second worker is forked while the first waits for that connection's next request; that request,
    its last (``max_requests``), closes the connection, the first worker exits and the successor is the only worker
    left (gunicorn's count of workers taken back). The successor does the same in its turn."""
    env = base_env() | settings_env(settings) | {"NECTAR_API_MAX_REQUESTS": str(MAX_REQUESTS)}
    env |= {"NECTAR_API_THREADS": "2", "NECTAR_LOG_LEVEL": "info", "NECTAR_KEEPALIVE_REQUESTS": "0"}
    processes = Processes(tmp_path / "logs")
    try:
        served = processes.api(None, env, workers=1)
        api, log = served.proc, processes.log_of[served.proc.pid]
        (worker,) = children(api.pid)
        for turn in range(2):
            connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
            try:
                for _ in range(MAX_REQUESTS):  # the ready check took one of them, or none (a turn's successor)
                    assert not answered(connection), "the worker ended before it asked for its successor"
                    if log.read_text().count(ASKED) > turn:
                        break
                assert log.read_text().count(ASKED) == turn + 1
                successor = waitfor(partial(newcomer, api.pid, worker), 60, "the successor, forked ahead")
                assert worker in children(api.pid)  # still there, waiting for the connection's next request
                assert answered(connection), "the worker's last request did not end it"
            finally:
                connection.close()
            waitfor(partial(alone, api.pid, successor), 60, "the ended worker gone, its successor alone")
            worker = successor
    finally:
        processes.close()
