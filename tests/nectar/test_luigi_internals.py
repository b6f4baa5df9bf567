"""luigi's private names that nectar/luigi_internals.py relies on are there and behave as it relies on.

A failure here means the luigi release installed changed under the seam: read the test's message, adapt
the seam (one module), and only then widen luigi's pin in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import hashlib
import inspect
import json
import logging
import multiprocessing.queues
import os
import pathlib
import pickle
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import luigi
import luigi.configuration
import luigi.contrib.s3
import luigi.execution_summary
import luigi.interface
import luigi.mock
import luigi.rpc
import luigi.scheduler
import luigi.server
import luigi.worker
import pytest
import tornado.httpserver
import tornado.web
from hypothesis import given
from hypothesis import strategies as st
from luigi.setup_logging import InterfaceLogging
from luigi.task_register import Register, TaskClassNotFoundException

import nectar.luigi_internals
from harness import LUIGI_CFG, lifeline_env
from nectar import NectarTask
from nectar.keys import param_digest
from nectar.luigi_internals import (
    REOPENED,
    UNCOUNTED,
    RemoteScheduler,
    choices_of,
    complete_error,
    done_in_build,
    extend_task_registry,
    forget_event_handlers,
    forget_task_classes,
    given_param_values,
    is_external,
    luigi_task_id,
    luigid_counts_no_cancel,
    luigid_finds_workers_once,
    luigid_marks_reopened,
    luigid_prunes_lean,
    luigid_reads_cors_once,
    luigid_rpc_handler,
    luigid_rpc_methods,
    luigid_saves_whole,
    make_as_luigi_does,
    new_worker,
    read_past_request,
    route_luigid_app,
    s3_bucket_and_key,
    schedule_and_run,
    task_namespaces,
    task_params,
    tasks_by_outcome,
    uncached_task,
    uncounted,
    wrap_luigid_app,
)
from nectar.supervisor import LUIGID
from tests.conftest import free_port

T = TypeVar("T")

#: the module the probe task classes of these tests claim to be defined in (forgotten after each test)
PROBES = "tests.luigi_internals_probes"


@pytest.mark.parametrize(
    ("function", "parameters"),
    [
        (luigi.rpc.RemoteScheduler._fetch, ["self", "url_suffix", "body"]),
        (luigi.rpc.RemoteScheduler._request, ["self", "url", "data", "attempts", "allow_null"]),
        (luigi.rpc.RemoteScheduler._get_retryer, ["self"]),
        (luigi.worker.Worker.__init__, ["self", "scheduler", "worker_id", "worker_processes", "assistant", "kwargs"]),
        (luigi.worker.Worker.add, ["self", "task", "multiprocess", "processes"]),
        (luigi.worker.Worker._add_worker, ["self"]),
        (
            luigi.worker.KeepAliveThread.__init__,
            ["self", "scheduler", "worker_id", "ping_interval", "rpc_message_callback"],
        ),
        (luigi.worker.Worker._get_work, ["self"]),
        (luigi.worker.Worker._add_task, ["self", "args", "kwargs"]),
        (luigi.worker.Worker._run_task, ["self", "task_id"]),
        (luigi.execution_summary._summary_dict, ["worker"]),
        (luigi.execution_summary.LuigiRunResult.__init__, ["self", "worker", "worker_add_run_status"]),
        (luigi.execution_summary._summary_format, ["set_tasks", "worker"]),
        (luigi.execution_summary._summary_wrap, ["str_output"]),
        (luigi.execution_summary._tasks_status, ["set_tasks"]),
        (luigi.execution_summary._create_one_line_summary, ["status_code"]),
        (luigi.worker._is_external, ["task"]),
        (luigi.worker._get_retry_policy_dict, ["task"]),
        (luigi.Parameter._is_batchable, ["self"]),
        (luigi.server.app, ["scheduler"]),
        (luigi.contrib.s3.S3Client._path_to_bucket_and_key, ["path"]),
    ],
    ids=lambda value: getattr(value, "__qualname__", None),
)
def test_the_private_functions_the_seam_calls_keep_their_signatures(
    function: Callable[..., Any], parameters: list[str]
) -> None:
    assert list(inspect.signature(function).parameters) == parameters, f"luigi changed {function.__qualname__}"


def test_luigis_keep_alive_loop_reads_only_what_the_seams_keep_alive_sets() -> None:
    """The seam runs luigi's ``KeepAliveThread.run`` on an object of its own (not a thread): the loop may read no
    other attribute of its ``self`` than those luigi's ``__init__`` sets, which the seam's sets too."""
    names = set(luigi.worker.KeepAliveThread.run.__code__.co_names)
    own = {"_should_stop", "_ping_interval", "_scheduler", "_worker_id", "_rpc_message_callback"}
    assert {name for name in names if name.startswith("_")} <= own, f"luigi's keep-alive loop reads {names}"


def test_luigis_worker_runs_each_granted_step_through_run_task() -> None:
    """The seam's worker re-checks a granted step in ``_run_task``: luigi's ``run`` must call it, for each grant."""
    assert "_run_task" in luigi.worker.Worker.run.__code__.co_names, "luigi's Worker.run no longer calls _run_task"
    worker = luigi.worker.Worker(scheduler=luigi.scheduler.Scheduler(), worker_id="probe")
    assert isinstance(worker._batch_running_tasks, dict), "luigi's Worker._batch_running_tasks is gone"
    assert isinstance(worker._scheduled_tasks, dict), "luigi's Worker._scheduled_tasks is gone"


def test_workers_made_in_one_process_read_the_password_database_once_and_name_the_user_as_getpass_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With neither LOGNAME nor USER set (a worker started so), luigi names a worker's user from the password database
    (``getpass.getuser``, called by ``Worker._generate_worker_info`` through ``luigi.worker``'s name ``getpass``): once
    per process, not once per worker (each run makes one), and the same name luigid shows."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(variable, raising=False)
    expected = pwd.getpwuid(os.getuid()).pw_name
    looked_up: list[int] = []

    def getpwuid(uid: int) -> Any:
        looked_up.append(uid)
        return real_getpwuid(uid)

    real_getpwuid = pwd.getpwuid
    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    cached = getattr(nectar.luigi_internals, "_account_name", None)
    if cached is not None:
        cached.cache_clear()  # as a process that has made no worker yet
    infos = [dict(new_worker(luigi.scheduler.Scheduler(), f"nectar-user:{n}", 1)._worker_info) for n in range(3)]
    assert [info.get("username") for info in infos] == [expected] * 3, "luigi's worker info names another user"
    assert looked_up == [os.getuid()], "the password database was read once per worker, not once per process"
    monkeypatch.setenv("USER", "someone-else")
    assert (
        dict(new_worker(luigi.scheduler.Scheduler(), "nectar-user:env", 1)._worker_info)["username"] == "someone-else"
    )


def test_workers_made_in_one_process_ask_the_host_name_once_and_name_the_host_as_socket_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """luigi's ``Worker.__init__`` names its host (``self.host``, then its worker info's, which luigid's workers view
    shows) through ``luigi.worker``'s name ``socket``: ``socket.gethostname``, a system call each, asked once per
    process, not twice per worker (each run makes one)."""
    real = socket.gethostname()
    asked: list[str] = []

    def gethostname() -> str:
        asked.append(real)
        return real

    monkeypatch.setattr(socket, "gethostname", gethostname)
    cached = getattr(nectar.luigi_internals, "host_name", None)
    if cached is not None:
        cached.cache_clear()  # as a process that has made no worker yet
    workers = [new_worker(luigi.scheduler.Scheduler(), f"nectar-host:{n}", 1) for n in range(3)]
    assert [(worker.host, dict(worker._worker_info)["host"]) for worker in workers] == [(real, real)] * 3
    assert asked == [real], "the host's name was asked for each worker made, not once per process"
    assert vars(luigi.worker)["socket"] is socket, "luigi.worker's name socket was left swapped"


def test_luigid_marks_a_step_reopened_once_a_late_pending_takes_it_back_from_done() -> None:
    """What luigid_marks_reopened adds to luigi's grants: whether a PENDING took the step back from DONE since its
    last grant (a PENDING while it runs elsewhere is ignored by luigi, and reopens nothing)."""
    saved = luigi.scheduler.Scheduler.add_task, luigi.scheduler.Scheduler.get_work
    try:
        luigid_marks_reopened()
        scheduler = luigi.scheduler.Scheduler(record_task_history=False, stable_done_cooldown_secs=0)
        scheduler.add_task(worker="w1", task_id="T", status="PENDING")
        assert (scheduler.get_work(worker="w1")["task_id"], scheduler.get_work(worker="w2")["task_id"]) == ("T", None)
        scheduler.add_task(worker="w2", task_id="T", status="PENDING")  # T runs on w1: luigi ignores it
        scheduler.add_task(worker="w1", task_id="T", status="DONE")
        scheduler.add_task(worker="w2", task_id="T", status="PENDING")  # w2 found T undone before w1 made it
        granted = scheduler.get_work(worker="w2")
        assert (granted["task_id"], granted[REOPENED]) == ("T", True)
        scheduler.add_task(worker="w2", task_id="T", status="DONE")
        scheduler.add_task(worker="w3", task_id="U", status="PENDING")
        granted = scheduler.get_work(worker="w3")
        assert (granted["task_id"], granted[REOPENED]) == ("U", False)
        first = scheduler.get_work(worker="w1")
        assert first["task_id"] is None and REOPENED not in first
    finally:
        for name, method in zip(("add_task", "get_work"), saved, strict=True):
            setattr(luigi.scheduler.Scheduler, name, method)  # luigi's own again


def test_luigid_counts_no_failure_of_a_cancel_and_each_other_one() -> None:
    """What luigid_counts_no_cancel changes of luigi's count of a task's failures (``Task.failures``,
    ``first_failure_time``): a FAILED that says UNCOUNTED ends the task RUNNING but leaves its count as it was; a
    plain FAILED is counted, and ``retry_count`` of them disable the task, as luigi does."""
    saved = luigi.scheduler.Scheduler.add_task
    try:
        luigid_counts_no_cancel()
        scheduler = luigi.scheduler.Scheduler(record_task_history=False, retry_count=2, disable_window=3600)
        for _ in range(3):  # cancelled three times while it runs: no failure counted
            scheduler.add_task(worker="w", task_id="T", status="PENDING")
            assert scheduler.get_work(worker="w")["task_id"] == "T"
            scheduler.add_task(worker="w", task_id="T", status="FAILED", **{UNCOUNTED: True})
            scheduler.add_task(worker="w", task_id="T", status="DISABLED")
            task = scheduler._state.get_task("T")
            assert (task.status, list(task.failures), task.first_failure_time) == ("DISABLED", [], None)
        scheduler.add_task(worker="w", task_id="T", status="PENDING")
        scheduler.add_task(worker="w", task_id="T", status="FAILED")
        assert (task.status, task.num_failures()) == ("FAILED", 1)
        scheduler.add_task(worker="w", task_id="T", status="FAILED")
        assert task.status == "DISABLED" and task.scheduler_disable_time is not None  # luigi's own, at retry_count
    finally:
        setattr(luigi.scheduler.Scheduler, "add_task", saved)  # noqa: B010  (luigi's own again; mypy refuses a method assigned)


#: luigi as an upgrade could change it: a task's failure counted by ``SimpleTaskState.set_status`` itself, not through
#: ``Task.add_failure`` (which luigid_counts_no_cancel makes count nothing for a call), so a cancel's FAILED and a
#: failure sent again would be counted, in silence
COUNTED_ELSEWHERE = (
    "import luigi.scheduler as s, time; s.Task.add_failure = lambda self: None; "
    "set_status = s.SimpleTaskState.set_status; "
    "s.SimpleTaskState.set_status = lambda self, task, new, config=None: ("
    "new == 'FAILED' and task.status != 'DISABLED' and task.failures.append(time.time()), "
    "set_status(self, task, new, config))[1]"
)


def test_luigid_counts_no_cancel_refuses_a_luigi_that_counts_failures_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """luigid_counts_no_cancel checks itself as luigid applies it: on a luigi that counts a task's failures where it
    does not put them back, it raises, naming what it found (it applied itself in silence, and luigid counted every
    cancel's failure toward retry_count)."""
    monkeypatch.setattr(luigi.scheduler.Scheduler, "add_task", luigi.scheduler.Scheduler.add_task)  # put back after
    monkeypatch.setattr(luigi.scheduler.Task, "add_failure", luigi.scheduler.Task.add_failure)
    monkeypatch.setattr(luigi.scheduler.SimpleTaskState, "set_status", luigi.scheduler.SimpleTaskState.set_status)
    exec(COUNTED_ELSEWHERE, {})
    with pytest.raises(
        RuntimeError, match=r"luigi changed how luigid counts a task's failures .* \('FAILED', 1, None\)"
    ):
        luigid_counts_no_cancel()


def test_luigid_counts_no_cancel_refuses_a_luigi_that_takes_a_tasks_retry_policy_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """luigid_counts_no_cancel also keeps a task's retry policy through the calls that send none (the service's
    FAILED, DISABLED): on a luigi that no longer takes it from ``retry_policy_dict`` it raises, naming what it found
    (it checked nothing of the policy, and luigid would judge the service's failures by its defaults in silence)."""
    monkeypatch.setattr(luigi.scheduler.Scheduler, "add_task", luigi.scheduler.Scheduler.add_task)  # put back after
    defaults = luigi.scheduler.Scheduler._generate_retry_policy
    monkeypatch.setattr(luigi.scheduler.Scheduler, "_generate_retry_policy", lambda self, _: defaults(self, {}))
    with pytest.raises(RuntimeError, match=r"the task's retry_count 2, expected 5"):
        luigid_counts_no_cancel()


def test_our_luigid_does_not_start_on_a_luigi_whose_failure_count_it_cannot_put_back(tmp_path: pathlib.Path) -> None:
    """A luigi upgrade that breaks luigid_counts_no_cancel fails our luigid's start, loudly: it exits, saying so (it
    started and served, counting every cancel's failure)."""
    code = LUIGID[-1]
    argv = [*LUIGID[:-1], f"{COUNTED_ELSEWHERE}; {code}", "--port", str(free_port()), "--logdir", str(tmp_path)]
    argv += ["--address", "127.0.0.1", "--state-path", str(tmp_path / "state.pickle")]
    env = {**os.environ, **lifeline_env(), "LUIGI_CONFIG_PATH": str(LUIGI_CFG)}
    ended = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)  # a hung start only
    assert ended.returncode != 0
    assert "RuntimeError: luigi changed how luigid counts a task's failures" in ended.stderr, ended.stderr


class _InterruptedStep(luigi.Task):
    """A step interrupted as it runs: marked uncounted, as the step recorder marks one (``steps.StepRecorder``)."""

    def complete(self) -> bool:
        return False

    def run(self) -> None:
        uncounted(self)
        raise RuntimeError("interrupted")


@pytest.mark.parametrize("processes", [1, 2])
def test_a_step_marked_uncounted_is_told_failed_uncounted_from_its_own_process_too(processes: int) -> None:
    """A step interrupted as it runs is told FAILED with UNCOUNTED by its worker (luigid counts no failure of it),
    whether it ran in the worker's process or in one of its own (``workers = 2``: luigi forks a process per step).
    Before, the mark set in a step's own process never reached its worker: luigid counted the failure."""
    saved = luigi.scheduler.Scheduler.add_task
    try:
        luigid_counts_no_cancel()
        scheduler = luigi.scheduler.Scheduler(record_task_history=False, retry_count=3, disable_window=3600)
        step = _InterruptedStep()
        with new_worker(scheduler, f"uncounted-{processes}", processes) as worker:
            assert worker.add(step)
            worker.run()
        task = scheduler._state.get_task(step.task_id)
        assert (task.status, list(task.failures)) == ("FAILED", [])
    finally:
        setattr(luigi.scheduler.Scheduler, "add_task", saved)  # noqa: B010  (luigi's own again; mypy refuses a method assigned)


def test_luigi_builds_task_classes_into_a_list_it_looks_classes_up_through() -> None:
    """``Register._reg`` (every class, a list) and ``Register._get_reg`` (a classmethod: name -> class)."""
    assert isinstance(Register._reg, list), "luigi's Register._reg is no longer a list of task classes"
    assert isinstance(Register.__dict__.get("_get_reg"), classmethod), "luigi's Register._get_reg is gone"
    asks = vars(Register)["get_task_cls"].__func__.__code__.co_names  # a classmethod's function's names
    assert "_get_reg" in asks, "get_task_cls no longer asks _get_reg"


@pytest.fixture
def probes() -> Iterator[str]:
    yield PROBES
    forget_task_classes(PROBES)


def probe(name: str, *bases: type, **members: Any) -> type:
    return type(name, bases or (luigi.Task,), {"__module__": PROBES, **members})


class Recorded(RemoteScheduler):
    """luigi's scheduler client over a transport that records each post and answers as luigid would."""

    raises = (OSError,)

    def __init__(self, failures: int = 0) -> None:
        super().__init__("http://127.0.0.1:1/luigi/", connect_timeout=3.5)
        self.posts: list[tuple[str, dict[str, str]]] = []
        self.failures = failures
        self.post = self.record

    def record(self, path: str, form: dict[str, str]) -> bytes:
        self.posts.append((path, form))
        if len(self.posts) <= self.failures:
            raise ConnectionRefusedError("refused")
        return json.dumps({"response": {"ok": True}}).encode()


def test_every_rpc_method_of_luigis_client_goes_through_the_one_hook() -> None:
    rpc = Recorded()
    assert rpc.ping(worker="w") == {"ok": True}
    rpc.add_task(worker="w", task_id="T_1", status="PENDING")
    assert [path for path, _ in rpc.posts] == ["/api/ping", "/api/add_task"]
    assert rpc.posts[0][1] == {"data": json.dumps({"worker": "w"})}
    assert (rpc.url, rpc.connect_timeout) == ("http://127.0.0.1:1/luigi", 3.5)


def test_every_rpc_method_of_luigis_client_asks_the_hook_the_seam_replaces_and_reads_a_decoded_answer() -> None:
    """luigi's RPC methods go through its ``_request`` (which the seam answers from an answer already decoded, if the
    transport decoded it) as luigi's own reads the text, a null response as luigi's too."""
    assert all("_request" in method.__code__.co_names for method in luigi.scheduler.RPC_METHODS.values())
    rpc = Recorded()
    rpc.post = lambda path, form: {"response": {"decoded": path}}
    assert rpc.ping(worker="w") == {"decoded": "/api/ping"}
    rpc.post = lambda path, form: {"response": None}
    assert rpc.ping(worker="w") is None  # luigi's ping allows a null answer; its get_work does not
    assert "_request" in luigi.rpc.RemoteScheduler.__dict__ and "_request" in vars(RemoteScheduler)


def test_the_client_makes_no_transport_of_luigis_and_reads_its_settings_as_luigis_does() -> None:
    """luigi's client makes a requests Session where requests is installed (its import: ~10 MB in each process that
    makes one); the seam's runs luigi's ``__init__`` with ``HAS_REQUESTS`` false: urllib's fetcher, which imports
    nothing, and luigi's settings read as luigi's own client reads them."""
    assert "HAS_REQUESTS" in luigi.rpc.RemoteScheduler.__init__.__code__.co_names  # what the seam turns off
    ours, luigis = Recorded(), luigi.rpc.RemoteScheduler("http://127.0.0.1:1/luigi/", connect_timeout=3.5)
    assert (type(ours._fetcher), type(luigis._fetcher)) == (luigi.rpc.URLLibFetcher, luigi.rpc.RequestsFetcher)
    read = ("_url", "_connect_timeout", "_rpc_retry_attempts", "_rpc_retry_wait", "_rpc_log_retries")
    assert [getattr(ours, name) for name in read] == [getattr(luigis, name) for name in read]


@pytest.fixture
def quick_retries() -> Iterator[None]:
    """luigi's ``[core] rpc-retry-attempts = 2``, ``rpc-retry-wait = 0`` for one test."""
    config = luigi.configuration.get_config()
    if not config.has_section("core"):
        config.add_section("core")
    before = {name: config.get("core", name, None) for name in ("rpc-retry-attempts", "rpc-retry-wait")}
    config.set("core", "rpc-retry-attempts", "2")
    config.set("core", "rpc-retry-wait", "0")
    yield
    for name, value in before.items():
        if value is None:
            config.remove_option("core", name)
        else:
            config.set("core", name, value)


@pytest.mark.usefixtures("quick_retries")
def test_a_failed_call_goes_through_luigis_retry_loop_and_fails_as_luigis_client_does() -> None:
    recovering = Recorded(failures=2)  # the call, then luigi's first try, fail; its second answers
    assert recovering.ping(worker="w") == {"ok": True}
    assert len(recovering.posts) == 3

    down = Recorded(failures=10)
    with pytest.raises(luigi.rpc.RPCError) as ours:
        down.ping(worker="w")
    assert len(down.posts) == 3 and isinstance(ours.value.sub_exception, ConnectionRefusedError)
    url = f"http://127.0.0.1:{free_port()}"
    ping = luigi.scheduler.RPC_METHODS["ping"]  # luigi's, as luigi sets it on its client's class
    with pytest.raises(luigi.rpc.RPCError) as luigis:
        ping(luigi.rpc.RemoteScheduler(url), worker="w")
    assert str(ours.value).replace("127.0.0.1:1/luigi", url.removeprefix("http://")) == str(luigis.value)


def source_and_step(prefix: str, done: list[str]) -> tuple[type, type]:
    """An external task found complete, and a step that requires it, runs (noting "ran" in ``done``) and is complete
    once it ran."""
    source = probe(f"{prefix}Source", luigi.ExternalTask, complete=lambda self: True)
    step = probe(
        f"{prefix}Step",
        requires=lambda self: source(),
        run=lambda self: done.append("ran"),
        complete=lambda self: "ran" in done,
    )
    return source, step


def test_a_worker_made_and_run_as_luigi_build_does(probes: str) -> None:
    done: list[str] = []
    source, step = source_and_step("Seam", done)
    missing = probe("SeamMissing", luigi.ExternalTask, complete=lambda self: False)
    assert (is_external(source()), is_external(step())) == (True, False)

    env = luigi.interface.core(no_lock=True, workers=1, local_scheduler=True)
    scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
    worker = new_worker(scheduler, "nectar-seam:1", 1)
    result = schedule_and_run(worker, step(), env)
    assert (done, result.scheduling_succeeded) == (["ran"], True)
    # luigi's summary is made when read (an attempt reads it only when its task is not complete), and is luigi's
    assert not {"summary_text", "status", "one_line_summary"} & set(vars(result)), "the summary was made unread"
    luigis = luigi.execution_summary.LuigiRunResult(worker, True)
    assert isinstance(result, luigi.execution_summary.LuigiRunResult)
    assert (result.summary_text, result.status, result.one_line_summary) == (
        luigis.summary_text,
        luigis.status,
        luigis.one_line_summary,
    )
    assert "1 ran successfully" in result.summary_text
    outcomes = tasks_by_outcome(worker)
    assert (outcomes["completed"], outcomes["already_done"]) == ({step()}, {source()})
    for kind in ("run_by_other_worker", "upstream_run_by_other_worker", "not_run", "failed"):
        assert outcomes[kind] == set(), f"luigi's summary has no {kind!r} group"

    again = new_worker(scheduler, "nectar-seam:2", 1)
    schedule_and_run(again, missing(), env)
    assert tasks_by_outcome(again)["still_pending_ext"] == {missing()}


def _raises(self: luigi.Task) -> bool:
    raise RuntimeError("complete() broke")


def _fails(self: luigi.Task) -> None:
    raise RuntimeError("run() broke")


def test_a_task_done_in_a_build_is_the_one_luigis_summary_has_completed_or_already_done(probes: str) -> None:
    """``done_in_build`` answers, for every task a build scheduled, what luigi's summary says (``completed`` or
    ``already_done``), in each shape a build can leave a task: run, found complete, failed, its ``complete()``
    raising, external and missing, its dependency failed, a ``run()`` that leaves its output missing (DONE to luigi)."""
    made: list[str] = []
    _, ran = source_and_step("SeamDone", made)
    found = probe("SeamDoneFound", complete=lambda self: True)
    broken = probe("SeamDoneBroken", run=_fails, complete=lambda self: False)
    raising = probe("SeamDoneRaising", complete=_raises)
    missing = probe("SeamDoneMissing", luigi.ExternalTask, complete=lambda self: False)
    upstream = probe(
        "SeamDoneUpstream", requires=lambda self: broken(), run=lambda self: None, complete=lambda self: False
    )
    no_output = probe("SeamDoneNoOutput", run=lambda self: made.append("no output"), complete=lambda self: False)
    expected = {ran: True, found: True, broken: False, raising: False, missing: False, upstream: False, no_output: True}
    env = luigi.interface.core(no_lock=True, workers=1, local_scheduler=True)
    seen: dict[type, bool] = {}
    for number, (cls, done) in enumerate(expected.items()):
        scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
        worker = new_worker(scheduler, f"nectar-seam:done{number}", 1)
        schedule_and_run(worker, cls(), env)
        summary = tasks_by_outcome(worker)
        for task in worker._scheduled_tasks.values():
            assert done_in_build(worker, task) is (task in summary["completed"] | summary["already_done"]), task
        seen[cls] = done_in_build(worker, cls())
        assert seen[cls] is done, cls
    assert seen == expected
    assert done_in_build(new_worker(luigi.scheduler.Scheduler(), "nectar-seam:none", 1), ran()) is False


def test_a_worker_of_luigis_local_scheduler_tells_add_worker_first_as_luigi_does(probes: str) -> None:
    """Only a scheduler that answers add_worker later (luigid's, :class:`~nectar.luigid.LuigidRPC`) has it told
    after the first get_work (``tests/nectar/test_scheduler.py``): luigi's own scheduler gets luigi's order."""
    done: list[str] = []
    step = probe("SeamAside", run=lambda self: done.append("ran"), complete=lambda self: bool(done))
    calls: list[str] = []

    class Noted(luigi.scheduler.Scheduler):
        def add_worker(self, worker: str, info: Any, **kwargs: Any) -> None:
            calls.append("add_worker")
            super().add_worker(worker, info, **kwargs)

        def get_work(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("get_work")
            return super().get_work(*args, **kwargs)

    scheduler = Noted(prune_on_get_work=True, record_task_history=False)
    worker = new_worker(scheduler, "nectar-seam:3", 1)
    result = schedule_and_run(worker, step(), env=luigi.interface.core(no_lock=True, local_scheduler=True))

    assert (done, result.scheduling_succeeded) == (["ran"], True)
    assert calls[:2] == ["add_worker", "get_work"]
    known = {info["name"]: info for info in scheduler.worker_list()}
    assert known["nectar-seam:3"]["first_task"] == step().task_id  # luigid's workers view: its root task


def results_queue(worker: luigi.worker.Worker) -> Any:
    """The queue a worker gets its steps' results from: luigi's, under the wrapper that carries the uncounted mark of
    a step run in a process of its own (``_MarkedResults.results``), or ours in memory."""
    got = worker._task_result_queue
    return getattr(got, "results", got)


@pytest.mark.parametrize(
    ("processes", "config", "in_memory"),
    [(1, {}, True), (1, {"force_multiprocessing": True}, False), (2, {}, False)],
    ids=["one process", "force_multiprocessing", "two processes"],
)
def test_a_worker_running_its_steps_in_its_own_process_gets_their_results_in_memory(
    probes: str, processes: int, config: dict[str, Any], in_memory: bool
) -> None:
    """luigi's worker reads each step's result from ``_task_result_queue``, a ``multiprocessing.Queue`` (a pipe and a
    feeder thread); a step run in the worker's own process hands it over in memory, a forked one as luigi does."""
    done: list[str] = []
    step = probe("SeamInMemory", run=lambda self: done.append("ran"), complete=lambda self: bool(done))
    scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)

    worker = new_worker(scheduler, "nectar-seam:4", processes, **config)

    assert isinstance(luigi.worker.Worker(scheduler)._task_result_queue, multiprocessing.queues.Queue)  # luigi's own
    assert isinstance(results_queue(worker), multiprocessing.queues.Queue) is not in_memory
    if in_memory:  # the results still reach luigi's worker: the step is done, and so is the build
        result = schedule_and_run(worker, step(), env=luigi.interface.core(no_lock=True, local_scheduler=True))
        assert (done, result.scheduling_succeeded, tasks_by_outcome(worker)["completed"]) == (["ran"], True, {step()})


@pytest.mark.parametrize(("config", "purged"), [({}, False), ({"force_multiprocessing": True}, True)])
def test_a_worker_looks_for_dead_step_processes_only_where_it_starts_them(
    probes: str, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], purged: bool
) -> None:
    """luigi's worker looks for a step's process dead or past its timeout before each result it waits for; a worker
    that runs its steps in its own process starts none, and does not look. One that starts them looks, as luigi's."""
    done: list[str] = []
    step = probe("SeamPurge", run=lambda self: done.append("ran"), complete=lambda self: bool(done))
    looks: list[int] = []
    luigis = luigi.worker.Worker._purge_children

    def purge(self: luigi.worker.Worker) -> None:
        looks.append(len(self._running_tasks))
        luigis(self)

    monkeypatch.setattr(luigi.worker.Worker, "_purge_children", purge)
    scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
    worker = new_worker(scheduler, "nectar-seam:purge", 1, **config)
    schedule_and_run(worker, step(), env=luigi.interface.core(no_lock=True, local_scheduler=True))
    assert done_in_build(worker, step()), "the step ran (in this process, or in one of its own)"
    assert bool(looks) is purged, looks


@pytest.mark.parametrize("level", [logging.DEBUG, logging.WARNING])
def test_a_worker_granted_nothing_logs_luigis_debug_lines_where_luigis_logger_shows_them(
    probes: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, level: int
) -> None:
    """luigi's worker logs at DEBUG why it stops asking for work (``Done``, no more tasks...): the same lines where
    luigi's logger shows DEBUG, and no call where it does not."""
    calls: list[Any] = []
    luigis = luigi.worker.Worker._log_remote_tasks

    def log_remote_tasks(self: luigi.worker.Worker, response: Any) -> None:
        calls.append(response)
        luigis(self, response)

    monkeypatch.setattr(luigi.worker.Worker, "_log_remote_tasks", log_remote_tasks)
    done: list[str] = []
    step = probe(f"SeamDebug{level}", run=lambda self: done.append("ran"), complete=lambda self: bool(done))
    caplog.set_level(level, logger="luigi-interface")
    scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
    worker = new_worker(scheduler, f"nectar-seam:debug{level}", 1)
    schedule_and_run(worker, step(), env=luigi.interface.core(no_lock=True, local_scheduler=True))
    lines = [r.getMessage() for r in caplog.records if r.name == "luigi-interface" and r.levelno == logging.DEBUG]
    assert done == ["ran"]
    shown = ["Done", "There are no more tasks to run at this time"]
    assert (lines[-2:] == shown, bool(calls)) == (level == logging.DEBUG,) * 2, lines


def test_a_task_process_made_ahead_is_handed_out_once_and_only_for_its_own_task(probes: str) -> None:
    """luigi's task process of the step a worker will likely run, made while luigid answers
    (``Worker.task_process_ahead``), is the one luigi's ``_create_task_process`` gets for that very task, once; another
    task, or the same task asked for again, gets one made then; one luigi would run in a process of its own, or whose
    task takes messages (a queue: a pipe), is not made ahead."""
    one, other = probe("SeamAheadOne")(), probe("SeamAheadOther")()
    scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
    worker = new_worker(scheduler, "nectar-seam:ahead", 1)
    assert isinstance(worker, nectar.luigi_internals.Worker)
    worker.task_process_ahead(one)
    assert worker._process_ahead is not None
    ahead = worker._process_ahead[1]
    assert (ahead.task, ahead.use_multiprocessing) == (one, False)
    made = worker._create_task_process(one)
    assert made is ahead
    again = worker._create_task_process(one)
    assert again is not ahead and again.task is one  # handed out once
    worker.task_process_ahead(one)
    assert worker._create_task_process(other).task is other and worker._process_ahead is None
    assert worker._create_task_process(one) is not ahead

    worker.task_process_ahead(probe("SeamAheadMessages", accepts_messages=True)())
    assert worker._process_ahead is None
    forked = new_worker(scheduler, "nectar-seam:ahead2", 1, force_multiprocessing=True)
    assert isinstance(forked, nectar.luigi_internals.Worker)
    forked.task_process_ahead(one)
    assert forked._process_ahead is None


def test_workers_made_in_one_process_set_sigusr1_once_and_it_stops_the_last_made_asking_for_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """luigi's ``Worker.__init__`` sets SIGUSR1's handler to its ``handle_interrupt`` through ``luigi.worker``'s name
    ``signal`` (and asks ``siginterrupt``): set once per process, not for each worker (each run makes one), and the
    signal still stops the worker made last from asking for work, as luigi's handler did."""
    monkeypatch.setattr(nectar.luigi_internals, "_interrupted", None, raising=False)
    before = signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # as a process that has made no worker yet
    try:
        real, set_for = signal.signal, []

        def counted(signum: int, handler: Any) -> Any:
            set_for.append(signum)
            return real(signum, handler)

        monkeypatch.setattr(signal, "signal", counted)
        workers = [new_worker(luigi.scheduler.Scheduler(), f"nectar-usr1:{n}", 1) for n in range(3)]
        monkeypatch.setattr(signal, "signal", real)
        assert set_for == [signal.SIGUSR1], "SIGUSR1's handler was set for each worker made, not once per process"
        assert vars(luigi.worker)["signal"] is signal, "luigi.worker's name signal was left swapped"
        assert not any(worker._stop_requesting_work for worker in workers)
        signal.raise_signal(signal.SIGUSR1)  # its handler runs before this returns (the main thread's own signal)
        assert [worker._stop_requesting_work for worker in workers] == [False, False, True]
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_luigis_worker_reads_its_settings_and_makes_its_queue_through_the_names_the_seam_swaps() -> None:
    names = luigi.worker.Worker.__init__.__code__.co_names
    assert "worker" in names and "multiprocessing" in names, "luigi's Worker.__init__ no longer reads these names"
    assert "Queue" in names, "luigi's Worker.__init__ no longer makes multiprocessing.Queue()"


@pytest.mark.parametrize(
    ("processes", "forced", "in_memory"),
    [(1, False, True), (1, True, False), (2, False, False)],
    ids=["one process", "force_multiprocessing", "two processes"],
)
def test_a_worker_given_its_settings_ahead_reads_none_and_makes_no_queue_it_does_not_use(
    probes: str, processes: int, forced: bool, in_memory: bool
) -> None:
    """Read once, ahead, luigi's [worker] settings serve a worker made later (a fresh attempt's process reads
    luigi's configuration for the first time: 1.6 ms); one that runs its steps in its own process makes no
    multiprocessing queue (pipe and semaphores: 0.7 ms), only to close it."""
    done: list[str] = []
    step = probe("SeamReadAhead", run=lambda self: done.append("ran"), complete=lambda self: bool(done))
    settings = luigi.worker.worker(force_multiprocessing=forced)
    scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
    made: list[str] = []
    real_queue = multiprocessing.Queue

    def counted() -> multiprocessing.queues.Queue[Any]:
        made.append("queue")
        return real_queue()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multiprocessing, "Queue", counted)
        patch.setattr(luigi.worker, "worker", lambda **_: pytest.fail("the [worker] settings were read again"))
        worker = new_worker(scheduler, "nectar-seam:5", processes, settings=settings)
        assert (luigi.worker.multiprocessing, worker._config) == (multiprocessing, settings)
    assert made == ([] if in_memory else ["queue"])
    assert isinstance(results_queue(worker), multiprocessing.queues.Queue) is not in_memory
    if in_memory:
        result = schedule_and_run(worker, step(), env=luigi.interface.core(no_lock=True, local_scheduler=True))
        assert (done, result.scheduling_succeeded) == (["ran"], True)


def test_forgotten_task_classes_leave_luigis_registry(probes: str) -> None:
    probe("SeamForgotten", task_namespace="seam_probe")
    assert Register.get_task_cls("seam_probe.SeamForgotten").__module__ == PROBES
    forget_task_classes(PROBES)
    with pytest.raises(TaskClassNotFoundException):
        Register.get_task_cls("seam_probe.SeamForgotten")


def test_the_registry_answers_its_extension_once_per_process(probes: str) -> None:
    """``import nectar`` extended luigi's registry with chain tasks' class names; a second extension is ignored."""
    chain_task = probe("SeamChainTask", NectarTask, task_namespace="seam.probe_chain")
    extend_task_registry(lambda reg: {})
    assert Register.get_task_cls("seam.probe_chain.SeamChainTask") is chain_task
    assert Register.get_task_cls("SeamChainTask") is chain_task


def test_luigid_serves_the_wrapped_application(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(luigi.server, "app", luigi.server.app)  # put back after the test
    served = luigi.server._init_api.__code__.co_names  # what luigi.server.run serves, looked up when it runs
    assert "_init_api" in luigi.server.run.__code__.co_names and "app" in served, "luigid no longer serves .app"
    wrap_luigid_app(lambda app: ("guarded", app))
    kind, app = luigi.server.app(luigi.scheduler.Scheduler(record_task_history=False))
    assert kind == "guarded" and isinstance(app, tornado.web.Application)


def test_luigid_serves_the_routed_application_given_its_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(luigi.server, "app", luigi.server.app)  # put back after the test
    scheduler = luigi.scheduler.Scheduler(record_task_history=False)
    route_luigid_app(lambda app, scheduler: ("routed", app, scheduler))
    kind, app, given = luigi.server.app(scheduler)
    assert kind == "routed" and isinstance(app, tornado.web.Application) and given is scheduler


def test_luigids_rpc_handler_calls_the_scheduler_methods_luigi_lists() -> None:
    """What nectar/luigid_server.py answers as luigi's handler would (tests/nectar/test_luigid_server.py compares
    their answers): luigi's handler made with the scheduler, reading ``data``, calling a method of RPC_METHODS."""
    assert {"add_task", "add_worker", "get_work", "ping", "dep_graph", "is_paused"} <= luigid_rpc_methods()
    handler = luigid_rpc_handler()
    assert handler is luigi.server.RPCHandler
    assert list(inspect.signature(handler.initialize).parameters) == ["self", "scheduler"]
    assert {"RPC_METHODS", "get_argument", "loads", "write"} <= set(handler.get.__code__.co_names)


@pytest.mark.parametrize(
    ("function", "digest"),
    [
        (luigi.scheduler.Scheduler._prune_tasks, "6cbb914717f5b488"),
        (luigi.scheduler.Scheduler.prune, "7ce46cb5ef27cf3b"),
        (luigi.scheduler.SimpleTaskState.fail_dead_worker_task, "a74a43fb6e14a7df"),
        (luigi.scheduler.SimpleTaskState.update_status, "9620ba192b981288"),
        (luigi.scheduler.SimpleTaskState.may_prune, "d0fdb3a9bc3e7eed"),
        (luigi.scheduler.SimpleTaskState._remove_workers_from_tasks, "706a89ffa0144d53"),
        (luigi.scheduler.SimpleTaskState.inactivate_workers, "4e34899257cb5837"),
        (luigi.scheduler.SimpleTaskState.set_status, "377ac06a2763b812"),
        (luigi.scheduler.SimpleTaskState.get_task, "3d9be00a0299ad75"),
        (luigi.scheduler.SimpleTaskState.inactivate_tasks, "9dc7d58c9123b1aa"),
        (luigi.scheduler.Task.__init__, "00b0cbcf80ce932a"),
        (luigi.scheduler.Task.num_failures, "79a3393596f717c5"),
        (luigi.scheduler.Task.has_excessive_failures, "96d38b31cef9a2db"),
        (luigi.scheduler.SimpleTaskState.re_enable, "3f85983604a53997"),
    ],
    ids=lambda value: getattr(value, "__qualname__", None),
)
def test_luigids_prune_is_the_code_luigid_prunes_lean_steps_through(function: Callable[..., Any], digest: str) -> None:
    """luigid_prunes_lean skips what these would not change, and forgets the oldest finished tasks beyond those kept
    from the heads of luigi's ``_status_tasks`` (a task put last in its new status's dict as ``set_status`` sets its
    ``updated``, last in its first status's as ``get_task`` makes it, ``updated`` its ``__init__``'s time), through
    ``inactivate_tasks``: a change to any of them is a change to re-check."""
    source = inspect.getsource(function).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == digest, f"luigi changed {function.__qualname__}"


def test_luigid_finds_a_worker_it_knows_without_making_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """luigi's ``get_worker`` makes a ``Worker`` at each lookup (``setdefault``'s default) and drops it when it knows
    the id; under luigid_finds_workers_once one is made only for an id luigid does not know, and kept as luigi keeps
    it. luigi's ``get_worker`` is still the code it replaces."""
    source = inspect.getsource(luigi.scheduler.SimpleTaskState.get_worker).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == "678da5a61f2555ed", "luigi changed SimpleTaskState.get_worker"
    made: list[str] = []

    class Counted(luigi.scheduler.Worker):
        def __init__(self, worker_id: str, *args: Any) -> None:
            made.append(worker_id)
            super().__init__(worker_id, *args)

    monkeypatch.setattr(luigi.scheduler, "Worker", Counted)
    monkeypatch.setattr(luigi.scheduler.SimpleTaskState, "get_worker", luigi.scheduler.SimpleTaskState.get_worker)
    luigid_finds_workers_once()
    scheduler = luigi.scheduler.Scheduler(record_task_history=False)
    scheduler.add_task(worker="w1", task_id="T", status="PENDING")  # an attempt's frame: add_task, add_worker, get_work
    scheduler.add_worker(worker="w1", info={"host": "h"})
    assert scheduler.get_work(worker="w1")["task_id"] == "T"
    assert made == ["w1"]
    known = scheduler._state.get_worker("w1")
    assert (known.info, [task.id for task in known.tasks]) == ({"host": "h"}, ["T"])
    assert scheduler._state.get_worker("w2") is scheduler._state.get_worker("w2")
    assert made == ["w1", "w2"] and list(scheduler._state.get_worker_ids()) == ["w1", "w2"]


def test_luigid_forgets_the_oldest_finished_first_in_the_order_luigi_keeps_them() -> None:
    """In luigi's own scheduler, the finished tasks beyond those kept are forgotten by the time each finished (a task
    finished again moves last), held ones (a stakeholder) kept, PENDING ones never counted."""
    scheduler = luigi.scheduler.Scheduler(record_task_history=False, retry_delay=-1, stable_done_cooldown_secs=0)
    for task_id, status in [("A", "DONE"), ("B", "FAILED"), ("C", "DONE"), ("P", "PENDING"), ("D", "DONE")]:
        scheduler.add_task(worker="gone", task_id=task_id, status=status, family="T", assistant=True)
    scheduler.add_task(worker="live", task_id="H", status="DONE", family="T")  # held by a live worker
    scheduler.add_task(worker="gone", task_id="A", status="PENDING", family="T", assistant=True)
    scheduler.add_task(worker="gone", task_id="A", status="DONE", family="T", assistant=True)  # finished last now
    state = scheduler._state
    forget = vars(nectar.luigi_internals)["_forget_oldest_finished"]
    forget(state, 2, scheduler._config)
    # C, D and A forgotten; H held; B's failure still counts (luigi's disable_window, an hour)
    assert sorted(task.id for task in state.get_active_tasks()) == ["B", "H", "P"]
    forget(state, 0, scheduler._config)
    assert sorted(task.id for task in state.get_active_tasks()) == ["B", "H", "P"]


def test_luigid_keeps_the_finished_tasks_whose_forgetting_changes_what_luigi_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond the finished tasks kept, a task luigid DISABLED is kept until its ``disable_persist`` ends, and a
    FAILED one while its failures count within ``disable_window``: the failure of its run's retry brings luigi's count
    to its ``retry_count`` and disables it, as it would had nothing been forgotten. A step a cancelled run DISABLED
    (nothing re-enables it), and the others once their time is past, are forgotten."""
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # luigi's scheduler and the seam read it: the test moves it
    scheduler = luigi.scheduler.Scheduler(
        record_task_history=False,
        retry_delay=-1,
        stable_done_cooldown_secs=0,
        retry_count=2,
        disable_window=100,
        disable_persist=50,
    )
    state = scheduler._state
    forget = vars(nectar.luigi_internals)["_forget_oldest_finished"]

    def add(task_id: str, status: str) -> None:
        scheduler.add_task(worker="gone", task_id=task_id, status=status, family="T", assistant=True)

    def held() -> list[str]:
        return sorted(task.id for task in state.get_active_tasks())

    add("Disabled", "FAILED")
    add("Disabled", "FAILED")  # its second failure: luigi disables it for disable_persist
    add("Failed", "FAILED")
    add("Cancelled", "DISABLED")  # as a cancelled run's step: nothing re-enables it
    add("Done", "DONE")
    assert state.get_task("Disabled").status == "DISABLED"
    forget(state, 0, scheduler._config)
    assert held() == ["Disabled", "Failed"]
    add("Failed", "PENDING")  # its run's retry
    add("Failed", "FAILED")
    assert state.get_task("Failed").status == "DISABLED"  # luigi counted 2 failures: its retry_count
    clock[0] += 51  # both disables ended
    forget(state, 0, scheduler._config)
    assert held() == []
    add("Again", "FAILED")
    forget(state, 0, scheduler._config)
    assert held() == ["Again"]
    clock[0] += 101  # its failure left the window
    forget(state, 0, scheduler._config)
    assert held() == []


@pytest.mark.parametrize(
    ("function", "digest"),
    [
        (luigi.scheduler.SimpleTaskState.dump, "d6179ea40841d3a1"),
        (luigi.scheduler.SimpleTaskState.get_state, "a32b691a687b164c"),
        (luigi.server.run, "e1a8d9ca577afb4b"),
    ],
    ids=lambda value: getattr(value, "__qualname__", None),
)
def test_luigids_save_is_the_code_luigid_saves_whole_replaces(function: Callable[..., Any], digest: str) -> None:
    """luigid_saves_whole saves what luigi's ``dump`` saves (``get_state``), to its ``_state_path``, with its log
    lines, once: luigi's ``run`` calls it only as luigid ends (its SIGTERM handler, then ``atexit``): a change to any
    is a change to copy."""
    source = inspect.getsource(function).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == digest, f"luigi changed {function.__qualname__}"


def test_luigid_saves_its_state_once_as_it_ends(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """luigi saves luigid's state in its SIGTERM handler and again at exit: the second save, of the same state, is
    skipped (the state file is the first save's: the same inode; a save puts a new file in its place). A save that
    failed (no state folder) is tried again at the next call."""
    monkeypatch.setattr(luigi.scheduler.SimpleTaskState, "dump", luigi.scheduler.SimpleTaskState.dump)  # put back
    luigid_saves_whole()
    state = luigi.scheduler.SimpleTaskState(str(tmp_path / "later" / "state.pickle"))
    state.dump()  # its folder not made yet: failed, warned
    assert not (tmp_path / "later").exists()
    (tmp_path / "later").mkdir()
    state.dump()
    first = os.stat(tmp_path / "later" / "state.pickle").st_ino
    state.dump()
    assert os.stat(tmp_path / "later" / "state.pickle").st_ino == first


def test_luigis_worker_enters_as_the_seams_worker_does() -> None:
    """The seam's ``Worker.__enter__`` makes luigi's keep-alive thread as luigi's does (its loop on a standby thread):
    a change to luigi's is a change to copy."""
    source = inspect.getsource(luigi.worker.Worker.__enter__).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == "ce678cec4cb06533", "luigi changed Worker.__enter__"


STATUSES = ["PENDING", "RUNNING", "DONE", "FAILED", "DISABLED", "BATCH_RUNNING", "UNKNOWN"]
#: a task drawn: its status, stakeholders and workers (of w0..w3), the worker running it, its removal time, its
#: retry time and its disable time (seconds from now, or None)
TASKS = st.lists(
    st.tuples(
        st.sampled_from(STATUSES),
        st.sets(st.sampled_from(["w0", "w1", "w2", "w3"])),
        st.sets(st.sampled_from(["w0", "w1", "w2", "w3"])),
        st.sampled_from([None, "w0", "w1", "w2", "w3"]),
        st.none() | st.sampled_from([-1.0, 0.0, 1.0]),
        st.sampled_from([-1.0, 1.0]),
        st.none() | st.sampled_from([-100_000.0, -1.0]),
    ),
    max_size=12,
)
NOW = 1_800_000_000.0


class Noted(logging.Handler):
    """A log handler noting each record's message in ``records``."""

    def __init__(self, records: list[str]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def pruned(tasks: list[Any], workers_seen: list[float], retry_delay: float, lean: bool) -> Any:
    """What a prune at :data:`NOW` leaves of a scheduler holding ``tasks`` and workers w0..w3 last seen
    ``workers_seen`` seconds ago (w3 an assistant), luigi's or lean, and what it logged."""
    saved = luigi.scheduler.SimpleTaskState._remove_workers_from_tasks, luigi.scheduler.Scheduler._prune_tasks
    clock = types.SimpleNamespace(time=lambda: NOW)
    records: list[str] = []
    handler = Noted(records)
    logger = logging.getLogger("luigi.scheduler")
    level = logger.level
    try:
        vars(luigi.scheduler)["time"] = vars(nectar.luigi_internals)["time"] = clock
        if lean:
            luigid_prunes_lean()
        scheduler = luigi.scheduler.Scheduler(retry_delay=retry_delay, record_task_history=False)
        for n, seen in enumerate(workers_seen):
            worker = scheduler._state.get_worker(f"w{n}")
            worker.last_active = NOW - seen
            worker.info["assistant"] = n == 3
        for n, (status, stakeholders, workers, running, remove, retry, disabled) in enumerate(tasks):
            made = luigi.scheduler.Task(f"T{n}", status, [], retry_policy=scheduler._generate_retry_policy({}))
            task = scheduler._state.get_task(f"T{n}", setdefault=made)
            scheduler._state._status_tasks[status][task.id] = task
            task.stakeholders, task.worker_running = set(stakeholders), running
            task.workers = luigi.scheduler.OrderedSet(sorted(workers))
            task.remove = None if remove is None else NOW + remove
            task.retry = NOW + retry
            task.scheduler_disable_time = None if disabled is None else NOW + disabled
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        scheduler.prune()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        vars(luigi.scheduler)["time"] = vars(nectar.luigi_internals)["time"] = time
        owners = (
            (luigi.scheduler.SimpleTaskState, "_remove_workers_from_tasks"),
            (luigi.scheduler.Scheduler, "_prune_tasks"),
        )
        for (owner, name), method in zip(owners, saved, strict=True):
            setattr(owner, name, method)
    state = scheduler._state
    left = {
        task.id: (task.status, sorted(task.stakeholders), sorted(task.workers), task.worker_running, task.remove)
        + (task.retry, task.scheduler_disable_time, list(task.failures))
        for task in state.get_active_tasks()
    }
    by_status = {status: sorted(found) for status, found in state._status_tasks.items() if found}
    return left, by_status, sorted(state._active_workers), records


@given(TASKS, st.lists(st.sampled_from([0.0, 100.0]), min_size=4, max_size=4), st.sampled_from([-1.0, 0.0, 900.0]))
def test_a_lean_prune_leaves_luigid_as_luigis_own_prune_leaves_it(
    tasks: list[Any], workers_seen: list[float], retry_delay: float
) -> None:
    assert pruned(tasks, workers_seen, retry_delay, lean=True) == pruned(tasks, workers_seen, retry_delay, lean=False)


def test_a_lean_prune_checks_no_done_or_pending_task_it_would_not_change(monkeypatch: pytest.MonkeyPatch) -> None:
    state = luigi.scheduler.SimpleTaskState
    for name in ("_remove_workers_from_tasks", "fail_dead_worker_task", "update_status", "may_prune"):
        monkeypatch.setattr(state, name, getattr(state, name))  # put back after the test
    monkeypatch.setattr(luigi.scheduler.Scheduler, "_prune_tasks", luigi.scheduler.Scheduler._prune_tasks)
    scheduler = luigi.scheduler.Scheduler(record_task_history=False)
    for n in range(100):
        scheduler.add_task(worker="w", task_id=f"T{n}", status="DONE" if n % 2 else "PENDING", family="T")
    scheduler.add_task(worker="w", task_id="R", status="RUNNING", family="T")
    luigid_prunes_lean()
    checked: list[str] = []

    def noted(check: Callable[..., Any]) -> Callable[..., Any]:
        def noting(self: Any, task: Any, *args: Any) -> Any:
            checked.append(task.id)
            return check(self, task, *args)

        return noting

    for name in ("fail_dead_worker_task", "update_status", "may_prune"):
        monkeypatch.setattr(state, name, noted(getattr(state, name)))
    walks = []
    walk = state.get_active_tasks

    def counted(self: Any) -> Any:
        walks.append(1)
        return walk(self)

    monkeypatch.setattr(state, "get_active_tasks", counted)
    scheduler.prune()
    assert checked == ["R", "R", "R"] and len(walks) == 1  # luigi's: 303 checks, 2 walks


def test_luigid_reads_its_cors_settings_once_not_for_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """luigi's RPCHandler makes a ``cors()`` per call, which reads luigi's configuration each time; read once, every
    call of a real tornado server of luigi's app is answered as before, with the settings read no more."""
    monkeypatch.setattr(luigi.server, "cors", luigi.server.cors)  # put back after the test
    reads = []
    bound = luigi.server.cors.get_param_values
    assert isinstance(bound, types.MethodType)  # a classmethod read from its class
    read = bound.__func__

    def counted(*args: Any) -> Any:
        reads.append(1)
        return read(*args)

    monkeypatch.setattr(luigi.server.cors, "get_param_values", classmethod(counted))
    luigid_reads_cors_once()
    read_once = len(reads)
    assert read_once > 0
    port, served = free_port(), threading.Event()
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(luigi.server.app(luigi.scheduler.Scheduler(record_task_history=False)))
        server.listen(port, "127.0.0.1")
        running.append((asyncio.get_running_loop(), asyncio.Event()))
        served.set()
        await running[0][1].wait()
        server.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert served.wait(60)
    try:
        for _ in range(3):
            data = urllib.parse.quote(json.dumps({"worker": "probe"}))
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/ping?data={data}", timeout=60) as answer:
                assert json.loads(answer.read()) == {"response": {"rpc_messages": []}}
    finally:
        loop, stop = running[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
    assert len(reads) == read_once  # luigi's own handler reads them once more for each call


class Colour(enum.Enum):
    red = 1
    green = 2


@pytest.mark.parametrize(
    ("param", "choices"),
    [
        (luigi.ChoiceParameter(choices=["b", "a"]), ["a", "b"]),
        (luigi.ChoiceListParameter(choices=["b", "a"]), ["a", "b"]),
        (luigi.ChoiceParameter(choices=[2, 1], var_type=int), ["1", "2"]),
        (luigi.EnumParameter(enum=Colour), ["red", "green"]),
        (luigi.EnumListParameter(enum=Colour), ["red", "green"]),
        (luigi.Parameter(), None),
        (luigi.IntParameter(), None),
    ],
    ids=lambda value: type(value).__name__,
)
def test_the_choices_a_parameter_keeps(param: luigi.Parameter, choices: list[str] | None) -> None:
    assert choices_of(param) == choices, f"luigi's {type(param).__name__} keeps its choices elsewhere"


def test_s3_paths_split_as_luigi_splits_them() -> None:
    assert s3_bucket_and_key("s3://bucket/chains/t/x_chain/T/0a/out.txt") == ("bucket", "chains/t/x_chain/T/0a/out.txt")
    assert s3_bucket_and_key("s3://bucket/a b/c?d") == ("bucket", "a b/c?d")


def test_luigi_keeps_each_task_it_makes_and_uncached_task_makes_an_equal_one_it_does_not(probes: str) -> None:
    """luigi's ``Register.__call__`` answers the task it made before for the same parameters (so it keeps them all);
    :func:`uncached_task` makes the same task, as luigi would make it, and keeps nothing."""
    cls = probe("SeamCached", n=luigi.IntParameter())
    assert cls(n=1) is cls(n=1), "luigi no longer caches the tasks it makes"
    made = uncached_task(cls, {"n": 2})
    assert type(made) is cls and made.task_id == cls(n=2).task_id and made is not cls(n=2)
    assert uncached_task(cls, {"n": 3}) is not uncached_task(cls, {"n": 3})


def test_luigi_notes_unconsumed_parameters_on_a_class_as_hold_class_shape_does() -> None:
    """luigi adds ``_unconsumed_params`` to a task class as it makes its first task (unless a base has one: luigi's
    own Task has one once a plain luigi.Task was made); a class given it ahead
    (:func:`~nectar.luigi_internals.hold_class_shape`) gains no attribute as its tasks are made."""

    class Noted(luigi.Task):
        n = luigi.IntParameter()

    class Held(luigi.Task):
        n = luigi.IntParameter()

    nectar.luigi_internals.hold_class_shape(Held)
    held = dict(vars(Held))
    Noted(n=1), Held(n=1)
    assert isinstance(getattr(Noted, "_unconsumed_params", None), set), "luigi no longer notes _unconsumed_params"
    assert vars(Held) == held, "luigi sets another attribute on a task class as it makes its first task"


def test_luigi_keeps_mock_targets_in_a_manager_process_that_stop_mock_filesystem_stops() -> None:
    before = multiprocessing.active_children()
    target = luigi.mock.MockTarget("kept")
    with target.open("w") as out:
        out.write("kept\n")
    data = luigi.mock.MockFileSystem._data
    assert data is not None, "luigi.mock.MockFileSystem._data: no longer where MockTargets keep their data"
    manager = data._manager
    assert manager is not None and manager._process in multiprocessing.active_children(), (
        "MockFileSystem._data._manager._process: no longer the manager process luigi started"
    )
    assert manager._process._parent_pid == os.getpid()
    nectar.luigi_internals.stop_mock_filesystem()
    assert multiprocessing.active_children() == before
    assert not target.exists(), "a MockTarget kept its data once its process was stopped"
    nectar.luigi_internals.stop_mock_filesystem()  # the one that exists() started again
    assert multiprocessing.active_children() == before
    nectar.luigi_internals.stop_mock_filesystem()  # none started: nothing to stop


def test_a_detached_tornado_stream_gives_what_it_read_past_the_request() -> None:
    """luigid's upgrade (:class:`nectar.luigid_server.Upgrade`) takes, with a connection's socket, the bytes tornado's
    ``IOStream`` read past the request's end (a client's first frame sent with it): read from tornado's own buffer."""
    import socket

    import tornado.httputil
    import tornado.iostream
    from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection

    async def detached_after_a_request() -> bytes:
        read_past: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        class Request(tornado.httputil.HTTPMessageDelegate):
            def __init__(self, connection: HTTP1Connection) -> None:
                self.connection = connection

            def finish(self) -> None:  # as the upgrade's handler ends its request
                read_past.set_result(read_past_request(self.connection.detach()))

        class Server(tornado.httputil.HTTPServerConnectionDelegate):
            def start_request(self, server_conn: object, request_conn: Any) -> tornado.httputil.HTTPMessageDelegate:
                return Request(request_conn)

        ours, theirs = socket.socketpair()
        try:
            theirs.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nframes after it")
            HTTP1ServerConnection(tornado.iostream.IOStream(ours)).start_serving(Server())
            return await asyncio.wait_for(read_past, 60)
        finally:
            ours.close()
            theirs.close()

    assert in_a_loop_of_its_own(detached_after_a_request) == b"frames after it"


def in_a_loop_of_its_own(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(coroutine())`` on a thread of its own: the main thread of a pytest process that opened the
    session's browser (Playwright's sync API, :mod:`tests.helpers.browser`) has Playwright's loop running for the
    rest of the session, and ``asyncio.run`` there raises "cannot be called from a running event loop"."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine()).result()


def test_the_detached_stream_test_still_passes_where_an_event_loop_runs_on_the_main_thread() -> None:
    """The test above, called where an event loop is running on the main thread: as Playwright's sync API leaves the
    main thread of a pytest process that opened a page of the session's browser (tests/ui/test_browser.py's), from the
    browser's start on (between its calls it marks its loop running there). ``asyncio.run`` on that thread raised
    "cannot be called from a running event loop" (seed 5301 of a shuffled ``-n0`` run, where tests/ui ran before
    tests/nectar). The loop is made here, in this process: a pytest of its own that opened a real browser for it cost
    ~7 s of CPU (Chromium, the served app) to set the same one condition."""
    detached = test_a_detached_tornado_stream_gives_what_it_read_past_the_request

    async def called_from_the_running_loop() -> None:
        detached()  # blocks this loop while it runs: as a sync call of Playwright's does

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # none yet on this thread: one is run, and the test called from it
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(called_from_the_running_loop())
        finally:
            loop.close()
    else:  # this process opened the session's browser before: its loop runs here already
        detached()


@pytest.mark.parametrize(
    "str_params",
    [
        {},
        {"n": "1"},
        {"b": "x y/z", "a": "1", "c": "long" * 40, "d": "never in the summary"},
        {"é": "naïve ☃", "x": '"quoted" \\ back'},
        {"items": '["a", "b"]', "when": "2024-01-02T03:04:05"},
    ],
)
def test_luigi_task_id_is_luigis_task_id_str(str_params: dict[str, str]) -> None:
    """luigi's task_id of a family and parameters, made from the full MD5 of their canonical JSON (the one the key
    keeps), is the one ``luigi.task.task_id_str`` makes."""
    expected = luigi.task.task_id_str("ns.Family", str_params)
    assert luigi_task_id("ns.Family", str_params, param_digest(str_params)) == expected, "luigi's task_id changed"


def test_make_as_luigi_does_does_what_luigis_task_init_does(probes: str) -> None:
    """luigi's ``Task.__init__`` reads the names :func:`make_as_luigi_does` does its work with, and a task made by it
    (its task_id from luigi's own ``task_id_str``) has every attribute and the hash luigi's own would have."""
    assert luigi.Task.__init__.__code__.co_names == nectar.luigi_internals.LUIGI_TASK_INIT_NAMES, (
        "luigi's Task.__init__ changed: make_as_luigi_does no longer does what it does"
    )
    cls = probe(
        "SeamMade",
        n=luigi.IntParameter(),
        items=luigi.ListParameter(default=[1, 2]),
        hidden=luigi.Parameter(default="h", significant=False),
        private=luigi.Parameter(default="p", visibility=luigi.parameter.ParameterVisibility.PRIVATE),
    )
    for args, kwargs in (((), {"n": 1}), ((2,), {"items": ["x"]}), ((3, ["y"], "seen"), {})):
        made: luigi.Task = object.__new__(cls)
        make_as_luigi_does(made, args, kwargs, luigi.task.task_id_str)
        luigis = type.__call__(cls, *args, **kwargs)  # luigi's own __init__, the task not kept in luigi's cache
        assert vars(made) == vars(luigis) and hash(made) == hash(luigis) and made == luigis


def _luigi_parameter_kinds() -> list[type]:
    """Every parameter class of ``luigi.parameter`` that can be made without arguments."""
    kinds = []
    for kind in vars(luigi.parameter).values():
        if isinstance(kind, type) and issubclass(kind, luigi.Parameter):
            try:
                kind()
            except Exception:  # one that needs its choices, its enum... made otherwise
                continue
            kinds.append(kind)
    return kinds


def _made_warnings(make: Callable[[], Any]) -> tuple[list[tuple[type, str]], str | None]:
    """The warnings ``make()`` gave (category and text), and its error if it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = _param_values_or_error(make)[1]
    return [(w.category, str(w.message)) for w in caught], error


@pytest.mark.parametrize("kind", _luigi_parameter_kinds(), ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("value", [1, "text", None, 2.5])
def test_make_as_luigi_does_warns_of_a_wrong_value_as_luigi_does(probes: str, kind: type, value: Any) -> None:
    """A task made by :func:`make_as_luigi_does`, which asks luigi's check of its parameters' values only where one
    of them may warn (:func:`~nectar.luigi_internals.warn_on_wrong_param_types`), warns of a value of the wrong type
    as luigi's own ``Task.__init__`` does (``Parameter``, ``OptionalParameter``'s kinds, ``TimeDeltaParameter``...), for
    every parameter class luigi has; and so does a task class with a check of its own. A luigi whose checks changed
    fails here too (their code pinned)."""
    pinned: dict[Callable[..., Any], str] = {
        luigi.Task._warn_on_wrong_param_types: "9e083854c020bb80",
        luigi.Parameter._warn_on_wrong_param_type: "a439c2eb1747c273",
    }
    for function, digest in pinned.items():
        source = inspect.getsource(function).encode()
        assert hashlib.sha256(source).hexdigest()[:16] == digest, f"luigi changed {function.__qualname__}"
    checked: list[str] = []

    def own_check(self: luigi.Task) -> None:  # a class's own check: asked whatever its parameters
        checked.append(type(self).__name__)

    def made_by(make: Callable[[], Any]) -> tuple[Any, ...]:
        """What making a task warned, raised and checked."""
        found = (*_made_warnings(make), list(checked))
        checked.clear()
        return found

    for members in ({}, {"_warn_on_wrong_param_types": own_check}):
        cls: Any = probe(f"SeamWarned{kind.__name__}{len(members)}", p=kind(), **members)
        luigis = made_by(lambda: type.__call__(cls, p=value))  # noqa: B023 -- called at once, in this pass
        made = object.__new__(cls)
        ours = made_by(lambda: make_as_luigi_does(made, (), {"p": value}, luigi.task.task_id_str))  # noqa: B023
        assert ours == luigis


def _param_values_or_error(read: Callable[[], Any]) -> tuple[Any, str | None]:
    """What a read of parameter values answers: its values, or the type and text of its error."""
    try:
        return read(), None
    except Exception as exc:  # compared as luigi raises it
        return None, f"{type(exc).__name__}: {exc}"


GIVEN_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {"n": 3, "items": [1, [2]], "word": "w"}),  # every parameter by name: the path without luigi's
    ((), {"word": "x", "n": "4", "items": ()}),  # in another order
    ((), {"n": 3, "items": [1]}),  # a default
    ((), {"n": 3, "items": [1], "other": 2}),  # as many as its parameters, one unknown
    ((3,), {"items": [1], "word": "w"}),  # positional
    ((), {"n": "three", "items": [1], "word": "w"}),  # a value its parameter refuses
    ((), {"n": 3, "items": [1], "word": "w", "other": 2}),
]


@pytest.mark.parametrize(("args", "kwargs"), GIVEN_CALLS)
def test_given_param_values_are_luigis(probes: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A task's parameter values read without luigi's ``get_param_values`` (every parameter given by name, no section
    of luigi's configuration for it) are luigi's, and so is every other call's answer or error: a luigi whose reading
    changed fails here."""
    word = luigi.Parameter(default="d")
    cls: Any = probe("SeamGiven", n=luigi.IntParameter(), items=luigi.ListParameter(), word=word)
    params = cls.get_params()
    read = vars(luigi.Task)["get_param_values"].__func__
    calls: list[int] = []

    def luigis(params: Any, args: Any, kwargs: Any) -> Any:
        calls.append(1)
        return read(cls, params, args, kwargs)

    expected = _param_values_or_error(lambda: read(cls, params, args, kwargs))
    assert _param_values_or_error(lambda: given_param_values(cls, params, args, kwargs, luigis)) == expected
    assert calls == ([] if not args and set(kwargs) == {"n", "items", "word"} else [1])


def test_given_param_values_of_a_configured_task_are_luigis_with_its_warning(probes: str) -> None:
    """A task whose family has a section in luigi's configuration is read by luigi, which warns of a configured name
    it does not consume."""
    cls: Any = probe("SeamConfigured", n=luigi.IntParameter())
    config, family = luigi.configuration.get_config(), cls.get_task_family()
    config.add_section(family)
    config.set(family, "unused", "1")
    read = vars(luigi.Task)["get_param_values"].__func__
    try:
        with pytest.warns(luigi.parameter.UnconsumedParameterWarning, match="'unused'"):
            found = given_param_values(cls, cls.get_params(), (), {"n": 1}, lambda *a: read(cls, *a))
    finally:
        config.remove_section(family)
    assert found == [("n", 1)]


@pytest.mark.parametrize("parser", [None, "cfg", "toml", "unknown"])
def test_configured_is_luigis_section_of_the_family_whatever_parser_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, parser: str | None
) -> None:
    """:func:`~nectar.luigi_internals.configured` answers as ``family in get_config().sections()``: a section added,
    and taken off, shows at once; with a parser named in the environment (luigi's own read of it), its answer or error
    is luigi's (a parser not installed: ImportError). ``get_config`` and its choice of parser pinned: the answer asked
    of the default parser's instance is what luigi's get_config gives where no parser is named."""
    for function, digest in {
        luigi.configuration.get_config: "27284ce59f651ce4",
        luigi.configuration.core._get_default_parser: "180d736945adc2be",
    }.items():
        source = inspect.getsource(function).encode()
        assert hashlib.sha256(source).hexdigest()[:16] == digest, f"luigi changed {function.__qualname__}"
    if parser is None:
        monkeypatch.delenv("LUIGI_CONFIG_PARSER", raising=False)
    else:
        monkeypatch.setenv("LUIGI_CONFIG_PARSER", parser)
    config, family = luigi.configuration.LuigiConfigParser.instance(), "nectar_probe_configured"

    def both() -> tuple[Any, Any]:
        luigis = _param_values_or_error(lambda: family in luigi.configuration.get_config().sections())
        return _param_values_or_error(lambda: nectar.luigi_internals.configured(family)), luigis

    answers = [both()]
    config.add_section(family)
    try:
        answers.append(both())
    finally:
        config.remove_section(family)
    answers.append(both())
    for ours, luigis in answers:
        assert ours == luigis
    if parser != "toml":
        assert [ours for ours, _ in answers] == [(False, None), (True, None), (False, None)]


def test_luigis_configuration_reads_the_files_config_paths_lists_and_add_config_path_appends_to_it(
    tmp_path: pathlib.Path,
) -> None:
    config = luigi.configuration.get_config()
    paths = nectar.luigi_internals.config_paths(config)
    kept = list(paths)
    added = tmp_path / "added.cfg"
    added.write_text("[internals_probe]\nread = yes\n")
    try:
        assert luigi.configuration.add_config_path(str(added))
        assert paths == [*kept, str(added)], "_config_paths: no longer the list add_config_path appends to"
        assert config.get("internals_probe", "read") == "yes"
    finally:
        paths[:] = kept
        config.remove_section("internals_probe")


def test_a_parameter_made_does_not_walk_the_visibilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``Parameter.__init__`` asks ``ParameterVisibility.has_value`` (each parameter of a chain file, each time a
    run executes it): the seam answers without luigi's loop over the enum's members, as luigi answers."""
    assert "has_value" in luigi.Parameter.__init__.__code__.co_names, "luigi's Parameter.__init__ no longer asks it"
    luigis = vars(nectar.luigi_internals)["_luigi_has_visibility"]
    assert list(inspect.signature(luigis).parameters) == ["cls", "value"], "luigi changed ParameterVisibility.has_value"
    assert [m.value for m in luigi.parameter.ParameterVisibility] == [0, 1, 2], "luigi changed its visibilities"
    walked: list[type] = []
    iterate = type(luigi.parameter.ParameterVisibility).__iter__

    def counted(cls: Any) -> Any:
        walked.append(cls)
        return iterate(cls)

    monkeypatch.setattr(type(luigi.parameter.ParameterVisibility), "__iter__", counted)
    made = [luigi.Parameter(), luigi.Parameter(visibility=luigi.parameter.ParameterVisibility.HIDDEN)]
    private: Any = 2  # an int, as a chain may give it
    made.append(luigi.IntParameter(visibility=private))
    monkeypatch.undo()
    assert luigi.parameter.ParameterVisibility not in walked, "a parameter made walked luigi's visibilities"
    assert [p.visibility for p in made] == [0, 1, 2]


@pytest.mark.parametrize("value", [*luigi.parameter.ParameterVisibility, 0, 1, 2, 3, -1, True, 1.0, 2.5, "1", None])
def test_the_seams_visibility_check_answers_as_luigis(value: Any) -> None:
    luigis = vars(nectar.luigi_internals)["_luigi_has_visibility"]
    ours = luigi.parameter.ParameterVisibility.has_value(value)
    assert ours == luigis(luigi.parameter.ParameterVisibility, value)
    assert luigi.Parameter(visibility=value).visibility == (value if ours else 0)


def test_a_lean_prune_drops_the_workers_that_stopped_from_each_task_by_its_own_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each run is a worker of its own in luigid: a prune drops thousands that stopped from every task kept. It
    discards from each task the workers it has among them, not every one of them (luigi's: 50 x 100 here, 180 million
    after a 10-minute soak); what it leaves is luigi's (the property test above)."""
    state = luigi.scheduler.SimpleTaskState
    monkeypatch.setattr(state, "_remove_workers_from_tasks", state._remove_workers_from_tasks)  # put back after
    monkeypatch.setattr(luigi.scheduler.Scheduler, "_prune_tasks", luigi.scheduler.Scheduler._prune_tasks)
    scheduler = luigi.scheduler.Scheduler(record_task_history=False)
    for n in range(100):
        scheduler.add_task(worker=f"w{n}", task_id=f"T{n}", status="DONE", family="T")
    luigid_prunes_lean()
    discards = []
    discard = luigi.scheduler.OrderedSet.discard

    def counted(self: Any, key: Any) -> None:
        discards.append(key)
        discard(self, key)

    monkeypatch.setattr(luigi.scheduler.OrderedSet, "discard", counted)
    scheduler._state.inactivate_workers([f"w{n}" for n in range(50)])

    tasks = {task.id: task for task in scheduler._state.get_active_tasks()}
    assert sorted(discards) == sorted(f"w{n}" for n in range(50))  # luigi's: 5,000
    assert all(not tasks[f"T{n}"].workers and not tasks[f"T{n}"].stakeholders for n in range(50))
    assert all(list(tasks[f"T{n}"].workers) == [f"w{n}"] == list(tasks[f"T{n}"].stakeholders) for n in range(50, 100))


def test_luigis_get_params_is_the_walk_task_params_answers_as() -> None:
    """luigi's ``Task.get_params``: ``getattr`` of each name of ``dir(cls)``, the parameters sorted by ``_counter``
    (:func:`~nectar.luigi_internals.task_params` answers as it does, without the walk)."""
    source = inspect.getsource(nectar.luigi_internals.luigi_get_params).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == "466e8c3c4c02de9c", "luigi changed Task.get_params"
    assert isinstance(luigi.Parameter()._counter, int), "luigi's parameters no longer have a _counter"


class _Defaulted:
    """A descriptor that answers a lookup on its class with a parameter (luigi's walk asks every name)."""

    def __get__(self, instance: object, owner: type) -> Any:
        return _DEFAULTED


_DEFAULTED = luigi.IntParameter(default=3)


class _Meta(Register):
    """A metaclass with a data descriptor of its own, which a lookup on its class answers before the class's."""

    @property
    def shadowed(cls) -> Any:
        return _SHADOWING


_SHADOWING = luigi.Parameter(default="meta")
_SHARED = luigi.Parameter(default="shared")


def _task_classes() -> list[type]:
    base = probe("Base", b=luigi.Parameter(), a=luigi.IntParameter(default=1), helper=lambda self: None)
    mixin = probe("Mixin", luigi.Config, m=luigi.BoolParameter())
    return [
        luigi.Task,
        base,
        probe("Overridden", base, b=5, c=luigi.DateParameter(), prop=property(lambda self: 1)),
        probe("Aliased", base, z=_SHARED, y=_SHARED, x=staticmethod(luigi.Parameter())),
        probe("Mixed", base, mixin, d=luigi.FloatParameter(), defaulted=_Defaulted()),
        _Meta("Shadowed", (luigi.Task,), {"__module__": PROBES, "shadowed": luigi.Parameter(), "e": luigi.Parameter()}),
        type("Nectar", (NectarTask,), {"__module__": PROBES, "n": luigi.IntParameter(), "hidden": 1}),
    ]


def test_task_params_are_luigis_get_params(probes: str) -> None:
    """The parameters of task classes of every shape (a parameter shadowed by a plain value, one parameter under two
    names, one behind a staticmethod, a mixin's, a descriptor's answer, a metaclass's data descriptor) as luigi's
    ``get_params`` answers them, in its order."""
    for cls in _task_classes():
        assert task_params(cls) == nectar.luigi_internals.luigi_get_params(cls), cls.__name__


def test_a_nectar_task_class_made_anew_reads_its_parameters_without_luigis_walk_of_its_names(
    probes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run executes its chain file anew, and its task's class reads its parameters as its first task is made:
    luigi's ``get_params`` looked each of ~150 names of ``dir(cls)`` up on the class (~340,000 instructions a run);
    the seam finds the same parameters in the classes' dicts (a class with a ``get_params`` of its own is asked)."""
    listed: list[object] = []

    def counted(*args: Any) -> list[str]:
        listed.extend(args)
        return dir(*args)

    monkeypatch.setattr(luigi.task, "dir", counted, raising=False)
    made: Any = type("Fresh", (NectarTask,), {"__module__": PROBES, "n": luigi.IntParameter(), "m": luigi.Parameter()})
    assert [name for name, _ in made.get_params()] == ["n", "m"]
    assert made(n=1, m="x").task_id.startswith("Fresh_x_1_")
    assert listed == []
    own = type("Own", (luigi.Task,), {"__module__": PROBES, "get_params": classmethod(lambda cls: [])})
    mixed: Any = type("OwnMixed", (NectarTask, own), {"__module__": PROBES, "n": luigi.IntParameter()})
    assert mixed.get_params() == []  # its base's own get_params, as luigi would ask it


def test_a_class_made_asks_luigis_namespace_of_its_module_and_the_parents_luigi_lists() -> None:
    """``Register.__new__`` asks ``_get_namespace(module)``, which walks ``_module_parents(module)``: the seam answers
    it (:func:`nectar.luigi_internals._namespace_of`) with luigi's parents of the name, kept per name."""
    assert "_get_namespace" in Register.__new__.__code__.co_names, "luigi's Register.__new__ no longer asks it"
    luigis = vars(nectar.luigi_internals)["_luigi_get_namespace"]
    assert list(inspect.signature(luigis).parameters) == ["mcs", "module_name"], "luigi changed _get_namespace"
    assert isinstance(vars(Register)["_module_parents"], staticmethod), "luigi changed _module_parents"
    parents = vars(nectar.luigi_internals)["_parents"]
    for name in ["", "a", "a.b", "chains.bench.probe_chain", PROBES, "x..y"]:
        assert list(parents(name)) == list(Register._module_parents(name))


@pytest.mark.parametrize("scope", [PROBES, PROBES.rpartition(".")[0], ""])
def test_a_class_made_again_takes_its_modules_namespace_as_set_now(probes: str, scope: str) -> None:
    """A chain module executed anew makes its classes again: each takes the namespace ``luigi.namespace`` set for its
    module (or a parent, or every module) as it is made, not as it was when a class of that module was last made."""
    namespaces = Register._default_namespace_dict
    kept = dict(namespaces)

    def made_again() -> str:
        made: Any = probe("SeamSpaced")
        return str(made.get_task_namespace())

    try:
        assert made_again() == kept.get(PROBES, "")
        luigi.namespace("seam_first", scope=scope)
        assert made_again() == "seam_first"
        luigi.namespace("seam_then", scope=scope)
        assert made_again() == "seam_then"
        luigi.namespace(scope=scope)
        assert made_again() == ""
    finally:
        namespaces.clear()
        namespaces.update(kept)


def test_classes_made_again_do_not_walk_luigis_parents_of_their_modules_name(probes: str) -> None:
    """Each class made asked luigi's ``_module_parents`` generator for its module's parents (each class of a chain
    file, each time a run executes it): the seam lists them once per module name."""
    walks: list[str] = []
    parents_code = Register._module_parents.__code__

    def seen(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is parents_code:
            walks.append(frame.f_locals["module_name"])

    probe("SeamWalkedOnce")
    was = sys.getprofile()
    sys.setprofile(seen)
    try:
        made: list[Any] = [probe("SeamWalkedOnce"), probe("SeamWalkedTwice")]
    finally:
        sys.setprofile(was)
    assert walks == []
    assert [cls.get_task_namespace() for cls in made] == [Register._get_namespace(PROBES)] * 2


def test_luigis_logging_set_up_again_only_makes_a_record_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """``InterfaceLogging.setup`` once ``_configured``: an INFO record of the "luigi" logger and False, nothing else
    (what :func:`nectar.build._set_up` no longer asks for once :func:`luigi_logging_set_up` says so)."""
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def recorded(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(factory(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(InterfaceLogging, "_configured", True)
    assert nectar.luigi_internals.luigi_logging_set_up()
    luigi_log = logging.getLogger("luigi")
    kept = (list(luigi_log.handlers), list(logging.getLogger().handlers))
    monkeypatch.setattr(luigi_log, "isEnabledFor", lambda level: True)
    monkeypatch.setattr(InterfaceLogging, "_cli", lambda *a: pytest.fail("set up again"))
    logging.setLogRecordFactory(recorded)
    try:
        assert InterfaceLogging.setup(luigi.interface.core()) is False
    finally:
        logging.setLogRecordFactory(factory)
    assert [(r.name, r.levelno, r.getMessage()) for r in made] == [
        ("luigi", logging.INFO, "logging already configured")
    ]
    assert (list(luigi_log.handlers), list(logging.getLogger().handlers)) == kept
    monkeypatch.setattr(InterfaceLogging, "_configured", False)
    assert not nectar.luigi_internals.luigi_logging_set_up()


class _PerClass:
    """A descriptor that answers a lookup on each class with a parameter of that class's own (its ``own``)."""

    def __get__(self, instance: object, owner: type) -> Any:
        return vars(owner).get("own")


def test_task_params_of_classes_made_again_of_the_same_bases_are_luigis(probes: str) -> None:
    """A chain's classes are made anew at each run, of the same bases: what the bases give is read once for them
    (:class:`nectar.luigi_internals.Inherited`), what each class holds itself read at each making (its parameters
    added, removed, shadowing a base's or shadowed), a name a descriptor answers asked of each class, and a parameter a
    base gains later (``luigi.util.inherits``) seen by the classes made after: each answer luigi's ``get_params``."""
    base: Any = probe(
        "InheritedBase", NectarTask, a=luigi.Parameter(), b=luigi.IntParameter(default=2), per=_PerClass()
    )
    base_params = [("a", base.a), ("b", base.b)]
    shapes = [
        {"n": luigi.IntParameter()},
        {"n": luigi.IntParameter(), "m": luigi.Parameter()},
        {"a": 1},  # a base's parameter shadowed by a plain value
        {"b": luigi.Parameter(), "own": luigi.Parameter()},  # one shadowed by a parameter; the descriptor's answer
        {"own": luigi.DateParameter(), "x": staticmethod(luigi.Parameter())},
        {},
    ]
    for members in [*shapes, *shapes]:
        made = probe("InheritedTask", base, **members)
        assert task_params(made) == nectar.luigi_internals.luigi_get_params(made), members
    assert isinstance(vars(base)["_nectar_inherited"], nectar.luigi_internals.Inherited)
    assert nectar.luigi_internals.luigi_get_params(probe("InheritedTask", base)) == base_params
    base.c = luigi.Parameter()  # as luigi.util.inherits adds one
    made = probe("InheritedTask", base, n=luigi.IntParameter())
    assert task_params(made) == nectar.luigi_internals.luigi_get_params(made)
    assert [name for name, _ in task_params(made)] == ["a", "b", "c", "n"]


def test_a_class_made_again_of_the_same_bases_asks_nothing_of_the_names_its_bases_hold(probes: str) -> None:
    """Made anew at each run, a chain's class read each name of its bases (~110 for a NectarTask's) to find its
    parameters: made again of the same bases, it asks only about its own names and those a descriptor answers."""
    base = probe("AskedBase", NectarTask, a=luigi.Parameter(), **{f"s{n}": staticmethod(len) for n in range(5)})
    task_params(probe("AskedTask", base, n=luigi.IntParameter()))
    asked: list[object] = []

    def seen(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "c_call" and arg is hasattr:
            asked.append(frame.f_locals.get("name"))

    made = probe("AskedTask", base, n=luigi.IntParameter())
    was = sys.getprofile()
    sys.setprofile(seen)
    try:
        found = task_params(made)
    finally:
        sys.setprofile(was)
    assert found == nectar.luigi_internals.luigi_get_params(made)
    assert asked and set(asked) <= set(vars(made))  # its own parameter, abc's own record of the class


def test_luigis_worker_asks_complete_through_check_complete_cached_and_the_error_is_noted_on_the_task(
    probes: str,
) -> None:
    """luigi's ``check_complete`` (as its worker adds a task) asks ``complete()`` through the module's name
    ``check_complete_cached``, which the seam answers: what ``complete()``
    raised is kept on the task (:func:`nectar.luigi_internals.complete_error`), luigi's text of it is luigi's own."""
    assert "check_complete_cached" in luigi.worker.check_complete.__code__.co_names, "luigi asks complete() elsewhere"

    def broken(self: luigi.Task) -> bool:
        raise RuntimeError("complete() broke")

    task: Any = probe("SeamBrokenComplete", complete=broken)()
    out: Any = luigi.worker.DequeQueue()
    luigi.worker.check_complete(task, out)
    ((asked, answer),) = [out.get()]
    assert asked is task and isinstance(answer, luigi.worker.TracebackWrapper), answer
    noted = complete_error(task)
    assert noted is not None and isinstance(noted.error, RuntimeError) and str(noted.error) == "complete() broke"
    copy: Any = object.__new__(type(task))  # as a process of luigi's scheduling pool sends the task back, pickled:
    copy.__dict__.update(pickle.loads(pickle.dumps(task.__dict__)))  # what its complete() raised stays here
    assert complete_error(copy) is None
    frames = [line for line in answer.trace.splitlines() if line.lstrip().startswith("File ")]
    assert [line.rsplit(" ", 1)[-1] for line in frames] == ["check_complete", "check_complete_cached", "broken"], frames
    type(task).complete = lambda self: False
    luigi.worker.check_complete(task, out)
    assert complete_error(task) is None  # answered since: nothing kept


@pytest.mark.parametrize("answer", ["yes", "raise"])
def test_luigis_worker_adds_each_task_through_add_with_its_complete_answer_and_the_seam_notes_luigis_text(
    probes: str, answer: str
) -> None:
    """luigi's ``Worker._add(task, is_complete)`` is given each task with what its ``complete()`` answered (a
    ``TracebackWrapper`` of what it raised, in a process of the scheduling pool too) before it fires
    ``DEPENDENCY_MISSING``: the seam's worker notes luigi's text of an answer that is no boolean there
    (:func:`~nectar.luigi_internals.complete_error`), which the step recorder tells without asking ``complete()``
    again."""

    def complete(self: luigi.Task) -> Any:
        if answer == "raise":
            raise RuntimeError("complete() broke")
        return answer

    task: Any = probe("SeamAddedAnswer", complete=complete)()
    seen: list[Any] = []
    type(task).event_handler(luigi.Event.DEPENDENCY_MISSING)(lambda missing: seen.append(complete_error(missing)))
    with new_worker(luigi.scheduler.Scheduler(), "seam-added-answer", 1) as worker:
        assert worker.add(task) is False
    ((noted,),) = [seen]
    assert noted is not None
    if answer == "raise":
        assert isinstance(noted.error, RuntimeError) and noted.trace.rstrip().endswith("RuntimeError: complete() broke")
    else:
        assert noted.error is None and noted.trace.endswith("must be boolean (was 'yes')"), noted.trace


def test_a_parameter_written_as_its_default_is_left_to_its_default_as_luigi_gives_it(probes: str) -> None:
    """luigi writes a None default ``'None'`` (``to_str_params``) and parses that back as text (``from_str_params``),
    a FloatParameter's default 1 ``'1'`` (parsed, 1.0): :func:`~nectar.luigi_internals.as_given_to_luigi` leaves each
    parameter written as its default (luigi's ``Parameter._default``) out, not one given another value, nor one
    without a default."""
    none: Any = None  # luigi's stubs type IntParameter's default as an int: users give it None all the same
    made: Any = probe(
        "SeamNoneDefaults",
        label=luigi.Parameter(default=none),
        limit=luigi.IntParameter(default=none),
        maybe=luigi.OptionalParameter(default=none),
        given=luigi.IntParameter(default=none),
        needed=luigi.Parameter(),
        ratio=luigi.FloatParameter(default=1),
    )
    written = made(needed="None", given=3).to_str_params()
    assert written == {
        **{"label": "None", "limit": "None", "maybe": "", "given": "3", "needed": "None", "ratio": "1"}
    }, written
    with pytest.raises(ValueError):
        made.from_str_params(written)  # int('None')
    again = made.from_str_params(nectar.luigi_internals.as_given_to_luigi(made, written))
    values = (again.label, again.limit, again.maybe, again.given, again.needed, again.ratio)
    assert values == (None, None, None, 3, "None", 1) and type(again.ratio) is int, values  # luigi's: the default
    assert again.task_id == made(needed="None", given=3).task_id


def test_luigis_event_handlers_and_namespaces_are_kept_where_the_seam_forgets_them(probes: str) -> None:
    """``Task.event_handler`` registers in ``Task._event_callbacks`` (by class, by event, a set), which
    :func:`~nectar.luigi_internals.forget_event_handlers` replaces; ``luigi.namespace`` sets the dict
    :func:`~nectar.luigi_internals.task_namespaces` answers."""
    kept = {
        cls: {event: set(called) for event, called in events.items()}
        for cls, events in luigi.Task._event_callbacks.items()
    }
    spaced = dict(task_namespaces())
    probed: Any = probe("SeamHandled")

    def handler(task: luigi.Task) -> None:
        pass

    handler.__module__ = probes
    try:
        luigi.Task.event_handler(luigi.Event.START)(handler)
        probed.event_handler(luigi.Event.SUCCESS)(print)
        assert handler in luigi.Task._event_callbacks[luigi.Task][luigi.Event.START]
        assert print in luigi.Task._event_callbacks[probed][luigi.Event.SUCCESS]
        forget_event_handlers(probes)
        assert handler not in luigi.Task._event_callbacks[luigi.Task][luigi.Event.START]
        assert probed not in luigi.Task._event_callbacks
        luigi.namespace("seam_ns", scope=probes)
        assert task_namespaces()[probes] == "seam_ns"
    finally:
        luigi.Task._event_callbacks = kept
        task_namespaces().clear()
        task_namespaces().update(spaced)
