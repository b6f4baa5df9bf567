"""Talking to luigid: luigi's workers and our client over kept-alive connections, against a real luigid."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nectar.errors import SchedulerUnavailable
from nectar.luigid import LuigidRPC, SchedulerClient
from tests.conftest import free_port, start_luigid, stop


def test_luigi_worker_calls_go_through_one_kept_alive_connection(luigid: str) -> None:
    rpc = LuigidRPC(luigid)
    rpc.add_worker("test-rpc-worker", {})
    rpc.add_task(worker="test-rpc-worker", task_id="RpcProbe_1", status="PENDING", family="RpcProbe")
    work = rpc.get_work(worker="test-rpc-worker", host="here")
    assert work["task_id"] == "RpcProbe_1"
    rpc.add_task(worker="test-rpc-worker", task_id="RpcProbe_1", status="DONE")
    assert SchedulerClient(luigid).task("RpcProbe_1")["status"] == "DONE"  # type: ignore[index]


def test_a_restarted_luigid_is_reached_on_the_next_call(tmp_path: Path) -> None:
    """A kept-alive connection that luigid closed by restarting is replaced on the next call.

    SchedulerClient has no retry loop of its own: its call answering proves the replacement."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_luigid(port, tmp_path)
    rpc, client = LuigidRPC(url), SchedulerClient(url)
    try:
        rpc.add_task(worker="w", task_id="Before_1", status="PENDING")
        client.check()
        stop(proc)
        proc = start_luigid(port, tmp_path)
        client.check()
        rpc.add_task(worker="w", task_id="After_1", status="PENDING")
        assert client.task("After_1") is not None
    finally:
        stop(proc)


def test_luigid_down_is_scheduler_unavailable_naming_the_call() -> None:
    client = SchedulerClient(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(SchedulerUnavailable, match="is_paused failed"):
        client.check()


def test_an_http_error_from_luigid_is_scheduler_unavailable(luigid: str) -> None:
    with pytest.raises(SchedulerUnavailable, match="no_such_method failed: luigid answered 404"):
        SchedulerClient(luigid).call("no_such_method")


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST like luigid (``{"response": ...}``) and keeps the path, headers and form it got."""

    seen: list[tuple[str, str | None, str]] = []

    def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        answer = json.dumps({"response": {"ok": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[int]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_url_with_credentials_and_a_path_prefix_is_honoured(recorder: int) -> None:
    """luigid behind a proxy: ``http://user:password@host/prefix`` (as luigi's own fetchers accept)."""
    url = f"http://nectar:p%40ss@127.0.0.1:{recorder}/luigi/"
    assert SchedulerClient(url).call("ping", worker="w") == {"ok": True}
    assert LuigidRPC(url).ping(worker="w") == {"ok": True}
    expected = "Basic " + base64.b64encode(b"nectar:p@ss").decode()
    assert [(path, auth) for path, auth, _ in Recorder.seen] == [("/luigi/api/ping", expected)] * 2
    assert all(body == "data=%7B%22worker%22%3A+%22w%22%7D" for _, _, body in Recorder.seen)
