"""One attempt of a run in this process (:mod:`nectar.attempt`), against a real luigid: what it asks luigid ahead."""

from __future__ import annotations

import json
import logging
import shutil
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import luigi
import pytest

from harness import Processes
from nectar import attempt as attempt_module
from nectar import luigid as luigid_module
from nectar.attempt import attempt, load_task, task_in
from nectar.build import Build
from nectar.catalog.loader import load_chain_module
from nectar.catalog.stamps import file_stamp
from nectar.config import Settings
from nectar.executor import Likely
from nectar.exposure import Exposure, exposure
from nectar.keys import TargetKey
from nectar.leases import process_name
from nectar.luigid import BATCH_RPC, Connections, SchedulerClient, scheduler_of
from nectar.registry import Run, RunState
from nectar.service import Nectar
from nectar.steps import StepRecorder
from nectar.task import log_key
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end


def log_key_of(task: luigi.Task) -> TargetKey:
    """The key of the folder of ``task``'s params.txt and logs."""
    key = log_key(task)
    assert key is not None
    return key


#: the signals whose handlers an attempt's lease sets in the main thread, and sets back to their defaults at its end
LEASE_SIGNALS = (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)


class _AskedBy(logging.Handler):
    """At the attempt's "started" record: whether luigid had been asked about the run's disabled steps by then."""

    def __init__(self, asked: Mapping[str, object], task_id: str) -> None:
        super().__init__(logging.INFO)
        self.asked, self.task_id = asked, task_id
        self.seen: list[bool] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().endswith(" started"):
            self.seen.append(self.task_id in self.asked)


class FirstAttempt:
    """A run of the test chains submitted and claimed, its attempt's build made as a spare makes it, with its client."""

    def __init__(self, settings: Settings, luigid: str, task: str = "TestS3Task", **params: str) -> None:
        self.settings, self.luigid = settings.replace(scheduler_url=luigid), luigid
        self.nectar = closed_at_end(Nectar(self.settings))
        submission = self.nectar.submit("testchains", "hello_luigiworld_chain", task, params)
        assert submission.run is not None
        self.task_id = submission.run.task_id
        self.claim(submission.run.id)
        assert self.run.attempt == 1

    def claim(self, run_id: str) -> None:
        run = wait_until(lambda: self.nectar.runs.claim(process_name(), run_id=run_id))
        assert isinstance(run, Run)
        client = scheduler_of(self.settings)
        assert client is not None
        self.run, self.client = run, client
        self.build = Build(self.luigid, process_name(), None, client)

    def attempt(self) -> attempt_module.Ending:
        """The attempt, in this process; the signal handlers its lease sets are set back after."""
        saved = {signum: signal.getsignal(signum) for signum in LEASE_SIGNALS}
        try:
            return attempt(self.settings, self.nectar.runs, self.run, self.build)
        finally:
            for signum, handler_was in saved.items():
                signal.signal(signum, handler_was)


def test_a_first_attempt_asks_luigid_about_disabled_steps_before_it_sets_itself_up(
    settings: Settings, luigid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """luigid answers while the attempt notes its start, takes its lease and compiles its chain: the question is the
    attempt's first act. The run still ends DONE, the answer read."""
    first = FirstAttempt(settings, luigid)
    handler = _AskedBy(first.client._disabled_asked, first.run.task_id)
    caplog.set_level(logging.INFO, logger="nectar.attempt")
    logging.getLogger("nectar.attempt").addHandler(handler)
    try:
        ending = first.attempt()
    finally:
        logging.getLogger("nectar.attempt").removeHandler(handler)
    assert handler.seen == [True]
    assert ending.state == RunState.DONE
    assert first.client._disabled_asked == {}  # its answer was read


#: a chain with an exposed task and a helper class it does not expose
EXPOSED_CHAIN = """
import luigi
from nectar import NectarTask


class Helper(NectarTask):
    def run(self):
        pass


class ShownTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        pass
"""


def test_a_chain_modules_tasks_are_found_once_for_a_spares_rehearsal_and_its_attempt(
    write_chain: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spare rehearses its likely run in the module it executed ahead, then its attempt looks its own task up in
    that same module: the module's names are walked for its exposed tasks once, not at each look. A name the module
    does not expose is still refused, and a module executed anew is walked anew."""
    path = write_chain("demo/exposed_chain", EXPOSED_CHAIN)
    walked: list[ModuleType] = []

    def walk(module: ModuleType) -> Exposure:
        walked.append(module)
        return exposure(module)

    monkeypatch.setattr(attempt_module, "exposure", walk)
    module = load_chain_module(path, "demo", "exposed_chain")
    rehearsed = task_in(module, "ShownTask", {"n": "1"}, "gone")
    own = task_in(module, "ShownTask", {"n": "2"}, "gone")
    assert type(rehearsed) is type(own) is module.ShownTask and own.param_kwargs["n"] == 2
    with pytest.raises(LookupError, match="gone"):
        task_in(module, "Helper", {}, "gone")
    with pytest.raises(LookupError, match="gone"):
        task_in(module, "NoSuchTask", {}, "gone")
    assert walked == [module]
    again = load_chain_module(path, "demo", "exposed_chain")
    assert type(task_in(again, "ShownTask", {"n": "1"}, "gone")) is again.ShownTask
    assert walked == [module, again]


def test_a_spare_makes_a_task_of_its_likely_run_in_its_first_rehearsal_of_that_task_only(
    write_chain: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spare rehearses the run its worker claimed last in the module it executed ahead: the first time in its
    process, with a task made of that run's parameters (what a making imports or sets up once a process); after,
    the class made anew has its parameters and family read, as its first task's making would, and no task is made:
    the attempt makes its own, of its own run's parameters."""
    path = write_chain("demo/rehearsed_chain", EXPOSED_CHAIN)
    made: list[type] = []
    make = vars(luigi.Task)["from_str_params"].__func__

    def counted(cls: type[luigi.Task], params: dict[str, str]) -> luigi.Task:
        made.append(cls)
        return make(cls, params)

    monkeypatch.setattr(luigi.Task, "from_str_params", classmethod(counted))
    stamp = file_stamp(str(path))
    assert stamp is not None
    likely = Likely(str(path), "demo", "rehearsed_chain", stamp, "ShownTask", (("n", "1"),))
    first = load_chain_module(path, "demo", "rehearsed_chain")
    likely.rehearse(first)
    assert made == [first.ShownTask]
    again = load_chain_module(path, "demo", "rehearsed_chain")
    assert again.ShownTask.__dict__.get("_nectar_class_params") is None  # a class made anew has read nothing yet
    likely.rehearse(again)
    assert made == [first.ShownTask]
    assert again.ShownTask.__dict__.get("_nectar_class_params") is not None
    own = task_in(again, "ShownTask", {"n": "2"}, "gone")
    assert made == [first.ShownTask, again.ShownTask] and own.param_kwargs["n"] == 2


def test_a_one_step_run_asks_luigid_in_three_requests(
    settings: Settings, own_luigid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first attempt of a one-step run, ended DONE, as luigid gets it, in a process luigid told nothing yet: the
    question about disabled steps, then luigi's worker's calls in two requests ([add_task PENDING, add_worker,
    get_work], [add_task DONE]); each request costs luigid about 0.9 ms of CPU, most of it tornado's HTTP handling
    (it was five: one per call). The worker's keep-alive thread pings luigid on its own timer besides."""
    requests = requests_of(monkeypatch)
    assert FirstAttempt(settings, own_luigid).attempt().state == RunState.DONE
    assert requests == ["dep_graph", BATCH_RPC, "add_task"]


@pytest.fixture
def own_luigid(processes: Processes, tmp_path: Path) -> str:
    """A luigid of this test's own: no other test's DISABLED task in it; on a free port, another if that one was
    taken before luigid bound it (its port read from what started it); stopped with the test's processes."""
    return f"http://127.0.0.1:{processes.luigid(None, tmp_path / 'luigid').port}"


def requests_of(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The RPCs (or batch) of each request this process writes to luigid from now on, luigi's keep-alive pings aside:
    an HTTP request, or a frame on a connection luigid switched to frames (:data:`~nectar.luigid.UPGRADE_RPC`)."""
    requests: list[str] = []
    request, frame = Connections._request, luigid_module._frame

    def counted(self: Connections, path: str, body: bytes, *args: str) -> bytes:
        if path != "/api/ping":
            requests.append(path.removeprefix("/api/"))
        return request(self, path, body, *args)

    def counted_frame(body: bytes) -> bytes:
        calls = json.loads(body)  # a batch's body: [[method, {arguments}], ...]
        if calls != [["ping", calls[0][1]]]:
            requests.append(calls[0][0] if len(calls) == 1 else BATCH_RPC)
        return frame(body)

    monkeypatch.setattr(Connections, "_request", counted)
    monkeypatch.setattr(luigid_module, "_frame", counted_frame)
    return requests


def test_a_process_told_at_its_last_grant_that_luigid_holds_no_disabled_step_does_not_ask_for_its_next_run(
    settings: Settings, own_luigid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that takes run after run: luigid's answer to its last get_work said it held no DISABLED task, so
    its next run's attempt does not ask which of its steps luigid disabled (a one-step run: two requests)."""
    requests = requests_of(monkeypatch)
    assert FirstAttempt(settings, own_luigid).attempt().state == RunState.DONE
    assert requests[0] == "dep_graph"  # the process's first run: nothing told it yet
    requests.clear()
    assert FirstAttempt(settings, own_luigid, "WithDependencyTask", aparam="a").attempt().state == RunState.DONE
    assert "dep_graph" not in requests and requests[0] == BATCH_RPC


def test_a_step_disabled_since_the_processs_last_grant_is_met_learnt_and_re_enabled_for_a_new_submission(
    settings: Settings, own_luigid: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """luigid disables a step after the process's last grant said it held none: the next new submission's attempt,
    not asking, meets it (luigid grants it nothing), learns it, re-enables it and puts the run back at once; its next
    attempt asks (the last grant said luigid held one), and runs it."""
    assert FirstAttempt(settings, own_luigid).attempt().state == RunState.DONE
    second = FirstAttempt(settings, own_luigid, "WithDependencyTask", aparam="b")
    assert second.build.none_disabled
    policy = {"retry_count": 1, "disable_window": 3600, "disable_hard_timeout": 3600}
    for status in ("PENDING", "FAILED"):  # luigid sets a task's retry policy after its status: added first
        told = {"worker": "elsewhere", "expl": "boom", "retry_policy_dict": policy, "family": "WithDependencyTask"}
        second.client.call("add_task", task_id=second.task_id, status=status, **told)
    assert second.task_id in second.client.disabled(second.task_id)
    requests = requests_of(monkeypatch)
    caplog.set_level(logging.INFO, logger="nectar.outcomes")
    assert second.attempt().state == RunState.PENDING
    assert requests[0] == BATCH_RPC  # not asked: it met the step disabled
    assert f"re-enabling {second.task_id}, disabled by luigid" in caplog.text
    requeued = second.nectar.run(second.run.id)
    assert (requeued.attempt, requeued.error) == (0, "waiting: luigid re-enabled the steps it had disabled")
    requests.clear()
    second.claim(second.run.id)
    assert not second.build.none_disabled  # luigid held the step DISABLED when it last granted this process
    assert second.attempt().state == RunState.DONE
    assert requests[0] == "dep_graph"


def test_a_one_step_runs_folders_are_made_while_luigid_answers_the_get_work_that_grants_it(
    settings: Settings, own_luigid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's folder and its ``log/`` exist as luigi starts the step (its START handlers run once luigid granted
    it): made while the attempt waited for that grant, not between it and ``run()``. The step still writes its
    params.txt and logs there, and a run of two steps makes each one's folder as that step starts (the second's does
    not exist while the first starts: none is made for a step that may never run)."""
    seen: dict[str, tuple[bool, bool]] = {}
    start = StepRecorder.start

    def noted(recorder: StepRecorder, task: luigi.Task) -> None:
        folder = settings.local_targets_dir / log_key_of(task).folder
        seen[type(task).__name__] = (folder.is_dir(), (folder / "log").is_dir())
        start(recorder, task)

    monkeypatch.setattr(StepRecorder, "start", noted)
    first = FirstAttempt(settings, own_luigid)
    assert first.attempt().state == RunState.DONE
    assert seen == {"TestS3Task": (True, True)}
    folder = settings.local_targets_dir / log_key_of(load_task(settings, first.run)).folder
    assert {"params.txt", "log"} <= {path.name for path in folder.iterdir()}
    assert sorted(path.name for path in (folder / "log").iterdir()) == ["stderr.log", "stdout.log"]

    shutil.rmtree(folder)  # its step is to run again, first of two
    seen.clear()
    two = FirstAttempt(settings, own_luigid, "WithDependencyTask", aparam="b")
    assert two.attempt().state == RunState.DONE
    assert seen == {"TestS3Task": (False, False), "WithDependencyTask": (False, False)}


def running_in_luigid(client: SchedulerClient, task_id: str) -> str | None:
    """The worker luigid has ``task_id`` RUNNING in the name of (None: it has it in no state of RUNNING)."""
    record = client.task(task_id) or {}
    return str(record.get("worker_running")) if record.get("status") == "RUNNING" else None


def starts_noted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the steps that start in this process from now on (luigi's START, as the attempt records it)."""
    started: list[str] = []
    start = StepRecorder.start

    def noted(recorder: StepRecorder, task: luigi.Task) -> None:
        started.append(task.task_id)
        start(recorder, task)

    monkeypatch.setattr(StepRecorder, "start", noted)
    return started


def test_a_step_luigid_has_granted_another_worker_is_not_run_by_an_attempt(
    settings: Settings, own_luigid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """luigi's rule: a step luigid has RUNNING in another worker's name is not granted, so the attempt does not run it
    (its run waits for that worker), and luigid keeps it that worker's. (Round 54's dispatch2: a cut that ran the step
    it asked for without a grant ended this run DONE.)"""
    started = starts_noted(monkeypatch)
    first = FirstAttempt(settings, own_luigid)
    told = {"worker": "elsewhere", "family": "TestS3Task", "status": "PENDING", "runnable": True}
    first.client.call("add_task", task_id=first.task_id, **told)
    assert first.client.call("get_work", worker="elsewhere", current_tasks=[])["task_id"] == first.task_id
    assert first.attempt().state == RunState.PENDING
    assert started == []
    assert running_in_luigid(first.client, first.task_id) == "elsewhere"
