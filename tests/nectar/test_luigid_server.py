"""luigid answering our RPCs straight from its scheduler (nectar/luigid_server.py): every request, ours and not, is
answered as luigi's own luigid answers it (status, headers, body, state, errors in its log), and the RPCs our
processes POST are answered without luigi's handler: no access line at INFO for each."""

from __future__ import annotations

import functools
import gzip
import http.client
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.httputil
from hypothesis import given
from hypothesis import strategies as st

from harness import LUIGI_CFG, Processes, wait_until
from harness.processes import base_env
from nectar.luigi_internals import HOLDS_DISABLED, REOPENED
from nectar.luigid import BATCH_RPC, DISABLED_ONLY, JSON, form_body
from nectar.luigid_server import rpc_arguments
from nectar.supervisor import LUIGID

#: luigi's own luigid, as ``luigid`` starts it: no seam of ours in its process
LUIGIS_LUIGID = [sys.executable, "-c", "from luigi.cmdline import luigid; luigid()"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
WORKER = "Worker(salt=probe, workers=1, host=h, username=u, pid=1)"
TASK = {
    "worker": WORKER,
    "task_id": "Probe_x_3f0a",
    "family": "Probe",
    "module": "probes",
    "params": {"text": "</script> é ü \u2028", "n": "3"},
    "param_visibilities": {"text": 0, "n": 0},
    "resources": {},
    "deps": [],
    "runnable": True,
    "priority": 0,
}


@dataclass
class Luigid:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        """The answer to one request as http.client sends it (``Host``, ``Accept-Encoding: identity`` unless given):
        status, reason, headers without ``Date``, body (gzip undone: its bytes carry a time)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            content = answer.read()
            fields = [(name, value) for name, value in answer.getheaders() if name != "Date"]
        finally:
            conn.close()
        if answer.getheader("Content-Encoding") == "gzip":
            content = gzip.decompress(content)
            fields = [(name, value) for name, value in fields if name != "Content-Length"]
        return answer.status, answer.reason, fields, content

    def rpc(self, method: str, **data: Any) -> Any:
        """An RPC as our processes POST it."""
        return self.send("POST", f"/api/{method}", form_body({"data": json.dumps(data)}), FORM)

    def has_logged(self, record: str) -> bool:
        return record in self.logged()

    def logged(self) -> list[str]:
        """luigid's log records, without their time, process id and duration (nor a traceback's lines)."""
        text = self.log.read_text().replace(str(self.log.parent), "<state>")
        records = re.findall(r"^\d{4}-\d\d-\d\d [\d:,]+ (.*)$", text, re.MULTILINE)
        return [re.sub(r"\[\d+\]|[\d.]+ms$", "", record) for record in records]


def start_both(processes: Processes, root: Path) -> tuple[Luigid, Luigid]:
    """luigi's own luigid and ours (:data:`nectar.supervisor.LUIGID`), each with the project's luigi.cfg, a fresh
    state and its log at luigid's level."""
    return start_one(processes, root, "luigis", LUIGIS_LUIGID), start_one(processes, root, "ours", LUIGID)


def start_one(processes: Processes, root: Path, name: str, argv: list[str]) -> Luigid:
    """The luigid ``argv`` starts, with the project's luigi.cfg, a fresh state in ``root / name``, on a free port
    (another if it was taken since its pick)."""
    state = root / name
    state.mkdir()
    env = {**base_env(), "LUIGI_CONFIG_PATH": str(LUIGI_CFG)}

    def launch(port: int) -> subprocess.Popen[bytes]:
        listen = ["--address", "127.0.0.1", "--port", str(port), "--state-path", str(state / "state.pickle")]
        return processes.start(name, [*argv, *listen, "--logdir", str(state)], env, state)

    served = processes.serve(name, None, False, launch, "/")
    return Luigid(served.port, state / "luigi-server.log")


@pytest.fixture
def luigids(tmp_path: Path) -> Iterator[tuple[Luigid, Luigid]]:
    processes = Processes(tmp_path)
    try:
        yield start_both(processes, tmp_path)
    finally:
        processes.close()


ERROR = form_body({"data": json.dumps({"task_id": TASK["task_id"]})})
LONG = "a failure </b> " * 100  # an answer past tornado's gzip threshold (1,024 bytes)
#: what each luigid is sent, in turn: (method, path, body, headers)
REQUESTS: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("POST", "/api/add_task", form_body({"data": json.dumps({**TASK, "status": "PENDING"})}), FORM),
    ("POST", "/api/add_worker", form_body({"data": json.dumps({"worker": WORKER, "info": {"pid": 1}})}), FORM),
    ("POST", "/api/get_work", form_body({"data": json.dumps({"worker": WORKER, "host": "h"})}), FORM),
    ("POST", "/api/add_task", form_body({"data": json.dumps({**TASK, "status": "FAILED", "expl": LONG})}), FORM),
    ("POST", "/api/fetch_error", ERROR, FORM),
    ("POST", "/api/fetch_error", b"data=" + json.dumps({"task_id": TASK["task_id"]}).encode(), FORM),
    ("POST", "/api/fetch_error", ERROR, {**FORM, "Accept-Encoding": "gzip"}),
    ("POST", "/api/is_paused", b"", FORM),  # no data: luigi's handler calls it with {}
    ("POST", "/api/is_paused", b"other=1", FORM),
    ("POST", "/api/count_pending", form_body({"data": json.dumps({"worker": WORKER})}), FORM),
    ("POST", "/api/is_paused", form_body({"data": json.dumps({"bogus": 1})}), FORM),  # the method raises: a 500
    ("POST", "/api/is_paused", b"data=%5B1%5D", FORM),  # JSON that is no object: a 500
    ("POST", "/api/is_paused", b"data=%7Bnot+json", FORM),  # a 500
    ("POST", "/api/is_paused", b"data=%FF%FE", FORM),  # no UTF-8: a 400
    ("POST", "/api/is_paused", b"data=%7B%7D&data=%7Bx", FORM),  # the last value counts
    ("POST", "/api/is_paused", b"data=%7Bx&data=%7B%7D", FORM),
    ("POST", "/api/is_paused", b"data=+%7B%7D%0A", FORM),  # spaces stripped
    ("POST", "/api/count_pending", b"data=%7B%22worker%22%3A%22a%01b%22%7D", FORM),  # a control character: a space
    ("POST", "/api/is_paused", b"data=%7B%7D&data", FORM),
    ("POST", "/api/is_paused", b"%%%", FORM),
    ("POST", "/api/no_such_rpc", b"data=%7B%7D", FORM),  # a 404
    ("POST", "/api/is%5Fpaused", b"data=%7B%7D", FORM),  # the path unquoted by tornado's route
    ("POST", "/api/is_paused?data=%7B%7D", b"", FORM),
    ("POST", "/api/is_paused", b"data=%7B%7D", {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}),
    ("POST", "/api/is_paused", b"data=%7B%7D", {**FORM, "Origin": "http://127.0.0.1"}),
    ("POST", "/api/is_paused", b"data=%7B%7D", {**FORM, "Content-Encoding": "gzip"}),
    ("POST", "/api/is_paused", b"data=%7B%7D", {"Content-Type": "text/plain"}),
    ("GET", "/api/fetch_error?" + ERROR.decode(), None, {}),
    ("HEAD", "/api/is_paused", None, {}),
    ("POST", "/api/pause", b"", FORM),
    ("POST", "/api/get_work", form_body({"data": json.dumps({"worker": WORKER, "host": "h"})}), FORM),
    ("POST", "/api/unpause", b"", FORM),
]


def without_reopened(answer: Any) -> Any:
    """A ``get_work`` answer of our luigid as luigi's would be: without what it adds to a grant, that the step was
    not reopened (:func:`nectar.luigi_internals.luigid_marks_reopened`), and that it holds no DISABLED task; its body
    parsed, its length not compared."""
    status, reason, fields, content = answer
    work = json.loads(content)
    assert work["response"].pop(HOLDS_DISABLED) is False
    reopened = work["response"].pop(REOPENED, None)
    assert reopened is (None if work["response"]["task_id"] is None else False), work
    return status, reason, [(name, value) for name, value in fields if name != "Content-Length"], work


def as_luigis(answer: Any) -> Any:
    status, reason, fields, content = answer
    return status, reason, [(name, value) for name, value in fields if name != "Content-Length"], json.loads(content)


def test_every_request_is_answered_as_luigis_own_luigid_answers_it(luigids: tuple[Luigid, Luigid]) -> None:
    luigis, ours = luigids
    for method, path, body, headers in REQUESTS:
        mine, theirs = ours.send(method, path, body, headers), luigis.send(method, path, body, headers)
        if path == "/api/get_work":  # ours adds whether the step granted was reopened
            mine, theirs = without_reopened(mine), as_luigis(theirs)
        assert mine == theirs, (method, path, body)
    # the state both hold (but the times): the same task, failed, with its error
    graph = [json.loads(luigid.rpc("dep_graph", task_id=TASK["task_id"])[3]) for luigid in luigids]
    for found in graph:
        for record in found["response"].values():
            del record["start_time"], record["last_updated"], record["time_running"]
    assert graph[0] == graph[1] and graph[0]["response"][TASK["task_id"]]["status"] == "FAILED"
    assert ours.rpc("fetch_error", task_id=TASK["task_id"]) == luigis.rpc("fetch_error", task_id=TASK["task_id"])


def test_an_rpc_our_processes_post_is_logged_at_debug_errors_as_luigis_luigid_logs_them(
    luigids: tuple[Luigid, Luigid],
) -> None:
    luigis, ours = luigids
    last = "tornado.access INFO: 200 GET /api/is_paused (127.0.0.1) "
    for luigid in luigids:
        assert luigid.rpc("add_task", **TASK, status="PENDING")[0] == 200
        assert luigid.rpc("get_work", worker=WORKER, host="h")[0] == 200
        assert luigid.rpc("is_paused", bogus=1)[0] == 500  # the scheduler's method raised
        assert luigid.send("POST", "/api/is_paused", b"data=%7Bnot+json", FORM)[0] == 500
        assert luigid.send("POST", "/api/no_such_rpc", b"", FORM)[0] == 404
        assert luigid.send("GET", "/api/is_paused")[0] == 200  # the visualiser's
        wait_until(functools.partial(luigid.has_logged, last))  # luigid logs a request once it has answered it
    ours_answered = {f"tornado.access INFO: 200 POST /api/{rpc} (127.0.0.1) " for rpc in ("add_task", "get_work")}
    assert ours_answered <= set(luigis.logged())
    assert ours.logged() == [record for record in luigis.logged() if record not in ours_answered]
    assert "tornado.access ERROR: 500 POST /api/is_paused (127.0.0.1) " in ours.logged()
    assert "tornado.application ERROR: Uncaught exception POST /api/is_paused (127.0.0.1)" in ours.logged()


#: JSON values: scalars, and lists of them nested, short (unbounded lists had most draws exceed hypothesis's 100
#: leaves and retry: 12-28 s of generating in the suite, 2 minutes on a loaded machine, for no other path)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(), lambda values: st.lists(values, max_size=4), max_leaves=20
)


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=8))
def test_an_rpcs_arguments_are_the_json_object_our_processes_post(data: dict[str, Any]) -> None:
    body = form_body({"data": json.dumps(data)})
    assert rpc_arguments(body, tornado.httputil.HTTPHeaders(FORM)) == data


def test_a_dep_graph_asked_for_disabled_steps_only_is_empty_while_luigid_holds_none(
    luigids: tuple[Luigid, Luigid],
) -> None:
    luigis, ours = luigids
    task_id = str(TASK["task_id"])
    asked = {"task_id": task_id, "include_done": False, DISABLED_ONLY: True}

    def graphs() -> list[dict[str, Any]]:
        found = [json.loads(luigid.rpc("dep_graph", **asked)[3])["response"] for luigid in luigids]
        for graph in found:
            for record in graph.values():
                del record["start_time"], record["last_updated"], record["time_running"]
        return found

    for luigid in luigids:
        assert luigid.rpc("add_task", **TASK, status="PENDING")[0] == 200
    theirs, mine = graphs()
    assert mine == {} and theirs[task_id]["status"] == "PENDING"  # luigi's ignores the argument
    for luigid in luigids:  # as SchedulerClient.disable does it
        assert luigid.rpc("add_task", **{**TASK, "runnable": False}, status="FAILED", expl="boom")[0] == 200
        assert luigid.rpc("add_task", **{**TASK, "runnable": False}, status="DISABLED", expl="boom")[0] == 200
    theirs, mine = graphs()
    assert mine == theirs and mine[task_id]["status"] == "DISABLED"


#: a batch's calls (:data:`~nectar.luigid.BATCH_RPC`): luigi's worker's, a call that raises, one luigid does not serve
BATCH: list[tuple[str, dict[str, Any]]] = [
    ("add_task", {**TASK, "status": "PENDING"}),
    ("add_worker", {"worker": WORKER, "info": {"pid": 1}}),
    ("is_paused", {"bogus": 1}),  # the scheduler's method raises: a 500, and the next run as after it
    ("no_such_rpc", {}),  # a 404
    ("get_work", {"worker": WORKER, "host": "h"}),
    ("add_task", {**TASK, "status": "FAILED", "expl": LONG}),
    ("fetch_error", {"task_id": TASK["task_id"]}),
]


def test_a_batch_is_run_and_answered_as_its_calls_posted_one_by_one(luigids: tuple[Luigid, Luigid]) -> None:
    """Our luigid runs a batch's calls in turn and answers each as luigi's own luigid answers it alone: the same
    answer, or the same error status (the one that raised logged with its traceback, named); the same state after.
    luigi's own luigid has no such RPC: a 404, which our client takes as "send each call alone"."""
    luigis, ours = luigids
    body = json.dumps([[method, data] for method, data in BATCH]).encode()
    headers = {"Content-Type": JSON}
    assert luigis.send("POST", f"/api/{BATCH_RPC}", body, headers)[0] == 404
    status, _, _, content = ours.send("POST", f"/api/{BATCH_RPC}", body, headers)
    assert status == 200
    answers = json.loads(content)
    assert len(answers) == len(BATCH)
    for (method, data), mine in zip(BATCH, answers, strict=True):
        theirs_status, theirs_reason, _, theirs = luigis.rpc(method, **data)
        if theirs_status != 200:
            assert mine == {"status": theirs_status, "reason": theirs_reason}, method
            continue
        if method == "get_work":
            assert mine["response"].pop(REOPENED) is False and mine["response"].pop(HOLDS_DISABLED) is False
        assert mine == json.loads(theirs), method
    graph = [json.loads(luigid.rpc("dep_graph", task_id=TASK["task_id"])[3]) for luigid in luigids]
    for found in graph:
        for record in found["response"].values():
            del record["start_time"], record["last_updated"], record["time_running"]
    assert graph[0] == graph[1] and graph[0]["response"][TASK["task_id"]]["status"] == "FAILED"
    raised = "tornado.application ERROR: Uncaught exception POST /api/is_paused (127.0.0.1) in a batch"
    wait_until(functools.partial(ours.has_logged, raised))
    assert "got an unexpected keyword argument 'bogus'" in ours.log.read_text()
    assert "tornado.access WARNING: 404 POST /api/no_such_rpc (127.0.0.1) in a batch" in ours.logged()


def test_an_unknown_methods_name_is_logged_as_tornado_logs_a_uri_so_it_forges_no_line(
    luigids: tuple[Luigid, Luigid],
) -> None:
    """A batch's (or a frame's) method that luigid has not is logged at WARNING by its name: a client's text, which
    is written percent-encoded as tornado writes a request's URI, so that a line break in it cannot end the 404's
    line and begin a record of the client's own (on main: a forged ``200`` record in luigid's log)."""
    _, ours = luigids
    forged = "tornado.access INFO: 200 POST /api/add_task (10.0.0.9)"
    body = json.dumps([[f"no_such_rpc\n2026-01-01 00:00:00,000 {forged}", {}]]).encode()
    status, _, _, content = ours.send("POST", f"/api/{BATCH_RPC}", body, {"Content-Type": JSON})
    assert status == 200 and json.loads(content) == [{"status": 404, "reason": "Not Found"}]
    shown = "no_such_rpc%0A2026-01-01%2000%3A00%3A00%2C000%20tornado.access%20INFO%3A%20200%20POST%20/api/add_task"
    logged = f"tornado.access WARNING: 404 POST /api/{shown}%20%2810.0.0.9%29 (127.0.0.1) in a batch"
    wait_until(
        lambda: any(record.startswith("tornado.access WARNING: 404 POST /api/no_such_rpc") for record in ours.logged())
    )
    records = ours.logged()
    assert not any(record.startswith(forged) for record in records) and logged in records, records


def test_a_batch_that_is_no_list_of_calls_is_refused_whole(luigids: tuple[Luigid, Luigid]) -> None:
    _, ours = luigids
    for body in (b"{}", b"[[1, {}]]", b'[["is_paused"]]', b'[["is_paused", []]]', b"not json"):
        assert ours.send("POST", f"/api/{BATCH_RPC}", body, {"Content-Type": JSON})[0] == 400, body
    assert ours.rpc("task_list", status="PENDING")[3] == b'{"response": {}}'  # nothing of them ran
