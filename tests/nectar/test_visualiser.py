"""What luigi's visualiser shows (steps as the registry ended them, a folder per chain type), and plain luigi."""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Processes, lifeline_env
from nectar.build import luigi_worker_id
from nectar.catalog import ChainCatalog
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.luigid import SchedulerClient
from nectar.registry import RunState
from nectar.service import Nectar
from nectar.status import JobStatus
from nectar.stores.local import LocalStore
from tests.conftest import LUIGI_CFG, REPO, settings_env, stop
from tests.faults.conftest import waitfor
from tests.helpers.registries import closed_at_end

StartWorker = Callable[..., subprocess.Popen[bytes]]
WriteChain = Callable[[str, str], Path]

#: how long luigid waits for a silent worker in these tests, instead of the shipped 30 s
DISCONNECT_DELAY = 2.0
#: how often a live worker of these tests pings luigid: well within the delay, or a ping a loaded machine holds up
#: past it gets a running worker pruned, and its running step FAILED in luigid (the shipped 1 s left no margin)
PING_INTERVAL = DISCONNECT_DELAY / 8

VISIBLE_CHAIN = """
import time

import luigi

from nectar import NectarTask


class UpstreamTask(NectarTask):
    mode = luigi.Parameter()

    def run(self):
        while self.mode == "block":
            time.sleep(0.05)
        with self.output().open("w") as out:
            out.write("up\\n")


class DownstreamTask(NectarTask):
    mode = luigi.Parameter()

    def requires(self):
        return UpstreamTask(mode=self.mode)

    def run(self):
        raise RuntimeError("DownstreamTask gave up")
"""


def short_config(folder: Path) -> Path:
    """The shipped luigi.cfg with its waits shortened: a silent worker is pruned after ``DISCONNECT_DELAY``
    and a retry delay, if the shipped one is a delay at all (not negative: never), passes within it; a worker
    using it pings every ``PING_INTERVAL``."""
    config = configparser.ConfigParser()
    config.read(LUIGI_CFG)
    shipped = config.getfloat("scheduler", "retry_delay", fallback=900.0)
    config["scheduler"]["retry_delay"] = str(min(shipped, DISCONNECT_DELAY / 2))
    config["scheduler"]["worker_disconnect_delay"] = str(DISCONNECT_DELAY)
    config["worker"]["ping_interval"] = str(PING_INTERVAL)
    path = folder / "luigi.cfg"
    with path.open("w") as out:
        config.write(out)
    return path


@pytest.fixture(scope="module")
def short_cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`short_config`, written once for the module's luigid and workers."""
    return short_config(tmp_path_factory.mktemp("short-cfg"))


@pytest.fixture(scope="module")
def short_luigid(tmp_path_factory: pytest.TempPathFactory, short_cfg: Path) -> Iterator[str]:
    """A real luigid with :func:`short_config`; yields its URL."""
    folder = tmp_path_factory.mktemp("short-luigid")
    served = Processes(folder / "logs").luigid(None, folder, short_cfg)  # on another free port if its was taken
    yield f"http://127.0.0.1:{served.port}"
    stop(served.proc)


def statuses(scheduler: SchedulerClient, task_ids: list[str]) -> dict[str, str]:
    """``task_id -> status`` from luigid's ``task_search``, as the visualiser reads it (each call prunes first)."""
    found: dict[str, str] = {}
    for task_id in task_ids:
        for status, tasks in scheduler.call("task_search", task_str=task_id).items():
            if task_id in tasks:
                found[task_id] = status
    return found


def wait_for_prune(scheduler: SchedulerClient, worker: str) -> None:
    """Wait until luigid's own prune has dropped ``worker`` (silent for ``DISCONNECT_DELAY``): the same prune
    puts FAILED tasks whose retry delay has passed back to PENDING, and starts the removal of finished ones."""
    gone = lambda: worker not in {w["name"] for w in scheduler.call("worker_list")}  # noqa: E731
    waitfor(gone, 60, f"luigid to prune the silent worker {worker}")


@pytest.fixture
def visible(settings: Settings, short_luigid: str, short_cfg: Path, write_chain: WriteChain) -> Settings:
    write_chain("vis/visible_chain", VISIBLE_CHAIN)
    return settings.replace(scheduler_url=short_luigid, retries=0, luigi_config=short_cfg)


def wait_for_status(nectar: Nectar, key: TargetKey, predicate: Callable[[JobStatus], bool], what: str) -> JobStatus:
    found = waitfor(lambda: (lambda s: s if predicate(s) else None)(nectar.status(key)), 60, what)
    assert isinstance(found, JobStatus)
    return found


def upstream_running(status: JobStatus) -> bool:
    return any(step.task == "UpstreamTask" and step.state == "RUNNING" for step in status.steps)


def launch(settings: Settings, start_worker: StartWorker, mode: str) -> tuple[Nectar, SchedulerClient, TargetKey]:
    """Submit ``DownstreamTask(mode)`` and start a worker; the service, luigid's client and the run's key."""
    nectar = closed_at_end(Nectar(settings))
    submission = nectar.submit("vis", "visible_chain", "DownstreamTask", {"mode": mode})
    start_worker(settings, workers=1)
    return nectar, SchedulerClient(settings.scheduler_url or ""), submission.key


def test_a_failed_run_stays_failed_with_its_trace_after_the_retry_delay(
    visible: Settings, start_worker: StartWorker
) -> None:
    nectar, scheduler, key = launch(visible, start_worker, "fail")

    status = wait_for_status(nectar, key, lambda s: s.job_status == "FAILED", "the run to fail")
    assert status.run is not None and status.run.worker is not None
    steps = {step.task: step.task_id for step in nectar.runs.steps(status.run.id)}  # a status's steps: no task id
    ended = {steps["UpstreamTask"]: "DONE", steps["DownstreamTask"]: "FAILED"}
    assert statuses(scheduler, list(steps.values())) == ended
    wait_for_prune(scheduler, luigi_worker_id(status.run.worker))

    assert statuses(scheduler, list(steps.values())) == ended, "luigid forgot how the run ended"
    trace = scheduler.call("fetch_error", task_id=steps["DownstreamTask"])["error"]
    assert "Traceback (most recent call last)" in trace and "RuntimeError: DownstreamTask gave up" in trace

    again = nectar.submit("vis", "visible_chain", "DownstreamTask", {"mode": "fail"})  # submitted again: it runs
    assert again.created and again.run is not None
    rerun = again.run.id
    waitfor(lambda: nectar.run(rerun).state == RunState.FAILED, 60, "the submitted-again run to end")
    assert nectar.run(rerun).error == "RuntimeError: DownstreamTask gave up"


def test_a_cancelled_runs_steps_stay_disabled_after_the_retry_delay(
    visible: Settings, start_worker: StartWorker
) -> None:
    nectar, scheduler, key = launch(visible, start_worker, "block")
    running = wait_for_status(nectar, key, upstream_running, "UpstreamTask to run")
    assert running.run is not None and running.run.worker is not None
    steps = {step.task: step.task_id for step in nectar.runs.steps(running.run.id)}

    nectar.cancel(running.run.id)

    wanted = {task_id: "DISABLED" for task_id in steps.values()}
    waitfor(lambda: statuses(scheduler, list(steps.values())) == wanted, 60, "luigid to show every step DISABLED")
    wait_for_prune(scheduler, luigi_worker_id(running.run.worker))

    assert statuses(scheduler, list(steps.values())) == wanted, "a cancelled step changed in luigid"
    for task_id in steps.values():
        assert scheduler.call("fetch_error", task_id=task_id)["error"] == "cancelled by request"

    again = nectar.submit("vis", "visible_chain", "DownstreamTask", {"mode": "block"})  # submitted again: it runs
    assert again.created and again.run is not None
    wait_for_status(nectar, again.key, upstream_running, "UpstreamTask to run again")
    assert statuses(scheduler, [steps["UpstreamTask"]]) == {steps["UpstreamTask"]: "RUNNING"}
    nectar.cancel(again.run.id)


#: a step whose ``retry_count`` (3) luigid counts its failures against, told by a control file: ``block`` runs until
#: it changes, then its first try fails and the next writes its output
FLAKY_CHAIN = """
import pathlib
import time

from nectar import NectarTask

CONTROL = pathlib.Path(@CONTROL@)


class FlakyTask(NectarTask):
    retry_count = 3

    def run(self):
        while CONTROL.read_text() == "block":
            time.sleep(0.05)
        tried = CONTROL.with_suffix(".tried")
        if not tried.exists():
            tried.touch()
            raise RuntimeError("FlakyTask fails its first try")
        with self.output().open("w") as out:
            out.write("done\\n")
"""


def test_cancels_are_no_failures_luigid_counts_toward_disabling_a_step(
    settings: Settings, short_luigid: str, short_cfg: Path, write_chain: WriteChain, start_worker: StartWorker
) -> None:
    """A run cancelled while its step runs, three times, is not three failures of the step in luigid: a run of it
    submitted again that fails once is retried (its ``retry_count`` allows three failures) and done. Before, each
    cancel told luigid the step FAILED (to end it there) before DISABLED, counted against its ``retry_count``: the
    next run's one failure had luigid disable the step, and the run ended FAILED, "disabled by luigid"."""
    control = settings.chains_dir.parent / "flaky-control"
    control.write_text("block")
    write_chain("vis/flaky_chain", FLAKY_CHAIN.replace("@CONTROL@", repr(str(control))))
    flaky = settings.replace(scheduler_url=short_luigid, luigi_config=short_cfg, retries=2)
    nectar = closed_at_end(Nectar(flaky))
    scheduler = SchedulerClient(short_luigid)
    start_worker(flaky, workers=1)
    running = lambda s: any(step.state == "RUNNING" for step in s.steps)  # noqa: E731

    for n in range(3):
        submission = nectar.submit("vis", "flaky_chain", "FlakyTask", {})
        assert submission.created and submission.run is not None
        wait_for_status(nectar, submission.key, running, f"FlakyTask to run ({n + 1})")
        nectar.cancel(submission.run.id)
        disabled = {submission.run.task_id: "DISABLED"}
        waitfor(lambda: statuses(scheduler, list(disabled)) == disabled, 60, "luigid to disable the step")  # noqa: B023

    control.write_text("fail once")
    again = nectar.submit("vis", "flaky_chain", "FlakyTask", {})
    assert again.created and again.run is not None
    rerun = again.run.id
    ended = waitfor(lambda: (run := nectar.run(rerun)).state.active is False and run, 60, "the last run to end")
    assert (ended.state, ended.attempt) == (RunState.DONE, 2), ended.error


def test_a_stopping_workers_requeue_is_no_failure_luigid_counts_toward_disabling_a_step(
    settings: Settings, short_luigid: str, short_cfg: Path, write_chain: WriteChain, start_worker: StartWorker
) -> None:
    """A worker stopped (SIGTERM) while its run's step runs requeues the run: twice, that is not two failures of the
    step in luigid. The run, taken again, fails once and is retried (its ``retry_count`` allows three failures) and
    done. Before, each stop told luigid the step FAILED (``release`` after the requeue), counted against its
    ``retry_count``: the first real failure was the third, luigid disabled the step, and the retry ended FAILED,
    "disabled by luigid" (a first attempt re-enables a step luigid disabled; its retry does not)."""
    control = settings.chains_dir.parent / "flaky-control"
    control.write_text("block")
    source = FLAKY_CHAIN.replace("@CONTROL@", repr(str(control)))
    write_chain(
        "vis/flaky_chain", source + "\n\nclass StoppedTask(FlakyTask):  # a step of its own in luigid\n    pass\n"
    )
    flaky = settings.replace(scheduler_url=short_luigid, luigi_config=short_cfg, retries=2, drain_grace=0.5)
    nectar = closed_at_end(Nectar(flaky))
    submission = nectar.submit("vis", "flaky_chain", "StoppedTask", {})
    assert submission.created and submission.run is not None
    run_id = submission.run.id
    running = lambda s: any(step.state == "RUNNING" for step in s.steps)  # noqa: E731

    for n in range(2):
        worker = start_worker(flaky, workers=1)
        wait_for_status(nectar, submission.key, running, f"StoppedTask to run ({n + 1})")
        worker.terminate()
        assert worker.wait(timeout=120) == 0
        run = nectar.run(run_id)
        assert (run.state, run.attempt) == (RunState.PENDING, 0)  # requeued, uncounted by the registry

    control.write_text("fail once")
    start_worker(flaky, workers=1)
    ended = waitfor(lambda: (run := nectar.run(run_id)).state.active is False and run, 60, "the run to end")
    assert (ended.state, ended.attempt) == (RunState.DONE, 2), ended.error


def test_a_cancel_of_a_step_that_never_ran_is_no_failure_to_a_plain_luigid(tmp_path: Path) -> None:
    """A cancelled run's step that luigid does not have RUNNING (it never ran) is sent DISABLED alone
    (``SchedulerClient.disable``): luigi's own luigid, without our patch, counts no failure of it. Before, it was sent
    FAILED first, which luigi counts toward ``retry_count``: cancelled twice, the step was disabled by luigid at its
    first real failure."""
    config = configparser.ConfigParser()
    config.read(LUIGI_CFG)
    config["scheduler"].update(retry_count="2", disable_window="3600")
    with (tmp_path / "luigi.cfg").open("w") as out:
        config.write(out)
    served = Processes(tmp_path / "logs").luigid(None, tmp_path / "luigid", tmp_path / "luigi.cfg", plain=True)
    try:
        scheduler = SchedulerClient(f"http://127.0.0.1:{served.port}")
        for _ in range(2):  # submitted, then cancelled before it ran
            scheduler.call("add_task", task_id="T", status="PENDING", worker="w", family="T")
            scheduler.disable("T", "w", "cancelled")
            assert (scheduler.task("T") or {}).get("status") == "DISABLED"
        scheduler.call("add_task", task_id="T", status="PENDING", worker="w", family="T")
        scheduler.fail("T", "w", "its first real failure")
        assert (scheduler.task("T") or {}).get("status") == "FAILED"  # not DISABLED: one failure of two allowed
    finally:
        stop(served.proc)


def sidebar(families: list[str]) -> dict[str, list[str]]:
    """The visualiser's "Task families" sidebar (``renderSidebar`` in luigi/static/visualiser/js/visualiserApp.js):
    a folder per text before a family's first dot (``Others`` without one), each family listed under it."""
    folders: dict[str, list[str]] = {}
    for family in sorted(set(families)):
        dot = family.find(".")
        folders.setdefault(family[:dot] if dot > 0 else "Others", []).append(family)
    return folders


def test_the_visualiser_shows_a_folder_per_chain_type(
    settings: Settings, short_luigid: str, write_chain: WriteChain
) -> None:
    write_chain("north/twin_chain", "from nectar import NectarTask\n\n\nclass TwinTask(NectarTask):\n    pass\n")
    write_chain("south/twin_chain", "from nectar import NectarTask\n\n\nclass TwinTask(NectarTask):\n    pass\n")
    catalog = ChainCatalog(settings.chains_dir)
    tasks = [
        catalog.task("etl", "sales_chain", "CleanSalesTask").instantiate({"day": "2024-05-06", "rows": 20}),
        catalog.task("north", "twin_chain", "TwinTask").instantiate({}),
        catalog.task("south", "twin_chain", "TwinTask").instantiate({}),
    ]
    scheduler = SchedulerClient(short_luigid)
    for task in tasks:  # what a worker tells luigid of each task it schedules
        family = task.get_task_family()
        scheduler.call("add_task", task_id=task.task_id, family=family, worker="test-visualiser", status="PENDING")

    listed = scheduler.call("task_list", status="PENDING", search="twin_chain") | scheduler.call(
        "task_list", status="PENDING", search="sales_chain"
    )
    assert sidebar([record["name"] for record in listed.values()]) == {
        "etl": ["etl.sales_chain.CleanSalesTask"],
        "north": ["north.twin_chain.TwinTask"],
        "south": ["south.twin_chain.TwinTask"],
    }


def test_plain_luigi_runs_a_chain_task_by_its_class_name_as_the_readme_shows(settings: Settings) -> None:
    """The README's command, run as it is written from a folder holding the chains (``chains/etl/sales_chain.py``)."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith(".venv/bin/python -m luigi --module "))
    argv = [sys.executable, *shlex.split(line)[1:]]
    assert argv[1:6] == ["-m", "luigi", "--module", "chains.etl.sales_chain", "CleanSalesTask"]

    done = subprocess.run(
        argv,
        cwd=settings.chains_dir.parent,
        env={**os.environ, **settings_env(settings), **lifeline_env()},  # dies with this process (harness/lifeline.py)
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "etl.sales_chain.CleanSalesTask(day=2024-05-06" in done.stderr + done.stdout
    task = (
        ChainCatalog(settings.chains_dir)
        .task("etl", "sales_chain", "CleanSalesTask")
        .instantiate({"day": "2024-05-06"})
    )
    assert LocalStore(settings.local_targets_dir).exists(task.target_key)
