"""A FAILED whose answer a cut connection lost is sent again, and a real luigid counts it once toward the task's
``retry_count`` (nectar.luigi_internals.failure_named, luigid_counts_no_cancel): it counted it twice, and a step
with ``retry_count`` 2 was disabled by its first failure."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness import Processes
from nectar.build import luigi_worker_id
from nectar.leases import HOST, release_lost_in_luigid
from nectar.luigid import LuigidRPC, SchedulerClient
from tests.helpers.raw_server import RawServer
from tests.helpers.registries import known

WORKER = "Worker(salt=cut, workers=1, host=h, username=u, pid=1)"
#: a task luigid disables at its second failure
ADDED = {"family": "Cut", "runnable": True, "retry_policy_dict": {"retry_count": 2}}


class CuttingProxy(RawServer):
    """Passes each connection on to luigid at ``port``, both ways as it comes; the first request that tells luigid a
    FAILED it passes on whole, then, once luigid answers, closes the client's connection without the answer: a
    connection cut between the send and the answer. Counts the FAILEDs that reached luigid."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.failed = 0
        self.cut = False
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as upstream:
            cutting = False
            while True:
                readable, _, _ = select.select([conn, upstream], [], [])
                if conn in readable:
                    data = conn.recv(65536)
                    if not data:
                        return
                    upstream.sendall(data)
                    self.failed += data.count(b"FAILED")
                    cutting = cutting or (not self.cut and b"FAILED" in data)
                if upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    if cutting:  # luigid answered: the answer never reaches the client
                        self.cut = True
                        return
                    conn.sendall(data)


@pytest.fixture
def proxy(luigid: str) -> Iterator[CuttingProxy]:
    server = CuttingProxy(urlsplit(luigid).port or 0)
    yield server
    server.close()


def test_a_reclaims_failed_sent_again_after_its_answer_was_lost_is_counted_once(
    proxy: CuttingProxy, luigid: str
) -> None:
    """:meth:`SchedulerClient.fail` (a reclaim's, counted): its connection cut before the answer, it is sent again on
    a new one; luigid counts one failure of it: with ``retry_count`` 3, the retry's own failure is the second, FAILED
    (it was the third: DISABLED). A reclaim's FAILED sends no retry policy (luigid keeps the task's: the test of
    that is test_luigid_keeps_retry_policy): the retry's failure is what disables a task it counted twice."""
    task_id = f"Cut_{uuid.uuid4().hex}"
    client = SchedulerClient(proxy.url, 60)
    added = {**ADDED, "retry_policy_dict": {"retry_count": 3}}
    client.call("add_task", worker=WORKER, task_id=task_id, status="PENDING", **added)
    assert client.call("get_work", worker=WORKER)["task_id"] == task_id
    client.fail(task_id, WORKER, "worker lost")
    assert proxy.cut and proxy.failed == 2  # it reached luigid twice
    client.call("add_task", worker=WORKER, task_id=task_id, status="PENDING", **added)  # the run's retry
    assert client.call("get_work", worker=WORKER)["task_id"] == task_id
    client.call("add_task", worker=WORKER, task_id=task_id, status="FAILED", expl="boom", **added)
    assert known(SchedulerClient(luigid, 60).task(task_id))["status"] == "FAILED"


def test_a_luigi_workers_failed_sent_again_after_its_answer_was_lost_is_counted_once(
    proxy: CuttingProxy, luigid: str
) -> None:
    """luigi's worker's ``add_task`` FAILED (through :class:`LuigidRPC`, sent with its next call): the answer lost
    with its connection, both are sent again; luigid has one failure of the task."""
    task_id = f"Cut_{uuid.uuid4().hex}"
    rpc = LuigidRPC(proxy.url, 60)
    rpc.add_task(worker=WORKER, task_id=task_id, status="PENDING", **ADDED)
    assert rpc.get_work(worker=WORKER)["task_id"] == task_id
    rpc.add_task(worker=WORKER, task_id=task_id, status="FAILED", expl="boom", retry_policy_dict={"retry_count": 2})
    rpc.ping(worker=WORKER)
    assert proxy.cut and proxy.failed == 2
    assert known(SchedulerClient(luigid, 60).task(task_id))["status"] == "FAILED"


def test_a_lost_attempts_failed_told_as_luigid_returns_and_sent_again_is_counted_once(tmp_path: Path) -> None:
    """:func:`nectar.leases.release_lost_in_luigid` (a worker's, as luigid returns) fails the tasks luigid holds
    RUNNING for attempt processes of this host that are gone: its FAILED, sent again after its answer was lost, is
    counted once (it was sent unnamed, and counted twice: DISABLED). A luigid of its own: it fails every such task."""
    processes = Processes(tmp_path)
    url = f"http://127.0.0.1:{processes.luigid(None, tmp_path / 'luigid').port}"
    proxy = CuttingProxy(urlsplit(url).port or 0)
    try:
        gone = subprocess.Popen([sys.executable, "-c", ""])
        gone.wait()
        worker = luigi_worker_id(f"{HOST}:{gone.pid}")
        task_id = f"Cut_{uuid.uuid4().hex}"
        client = SchedulerClient(url, 60)
        added = {**ADDED, "retry_policy_dict": {"retry_count": 3}}
        client.call("add_task", worker=worker, task_id=task_id, status="PENDING", **added)
        assert client.call("get_work", worker=worker)["task_id"] == task_id
        release_lost_in_luigid(SchedulerClient(proxy.url, 60))
        assert proxy.cut and proxy.failed == 2
        client.call("add_task", worker=worker, task_id=task_id, status="PENDING", **added)  # the run's retry
        assert client.call("get_work", worker=worker)["task_id"] == task_id
        client.call("add_task", worker=worker, task_id=task_id, status="FAILED", expl="boom", **added)
        assert known(client.task(task_id))["status"] == "FAILED"
    finally:
        proxy.close()
        processes.close()
