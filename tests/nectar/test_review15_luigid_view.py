"""review15 (round 61): what luigid holds of a plain ``luigi.Task`` run by the service's worker (an attempt process,
fresh or reused) is what it holds of the same task run by luigi's own ``python -m luigi`` against the same luigid:
each step's status, family, priority, resources, deps, the tracking URL, status message and progress the task set
while it ran, and what luigi's worker sent as the step's explanation (``on_success``'s answer, ``on_failure``'s
traceback). Two values of ``n`` keep the two sides' task ids apart; everything else is compared exactly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from harness import lifeline_env
from nectar.config import Settings
from nectar.luigid import SchedulerClient
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_worker import module_settings, module_worker, write_chain_file
from tests.nectar.test_reuse import reused
from tests.nectar.test_spare import KEPT, ended

StartWorker = Callable[..., subprocess.Popen[bytes]]
CHAIN = """
import os

import luigi


class UpTask(luigi.Task):
    n = luigi.IntParameter()
    priority = 3

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"up-{self.n}"))

    def run(self):
        self.set_status_message("up")
        with self.output().open("w") as out:
            out.write("up\\n")


class ReportingTask(luigi.Task):
    n = luigi.IntParameter()
    priority = 7
    resources = {"review15_pool": 1}

    def requires(self):
        return UpTask(n=self.n)

    def run(self):
        self.set_tracking_url("http://example.invalid/tracked")
        self.set_status_message("halfway")
        self.set_progress_percentage(50)

    def on_success(self):
        return "all good"


class DynamicTask(luigi.Task):
    n = luigi.IntParameter()

    def run(self):
        yield UpTask(n=self.n)
        self.set_status_message("after its dynamic dependency")


class DynamicRaisingTask(luigi.Task):  # fails after its dynamic dependency: its traceback through a generator
    n = luigi.IntParameter()

    def run(self):
        yield UpTask(n=self.n)
        raise RuntimeError("boom after its dynamic dependency")


class BrokenCompleteTask(luigi.Task):
    n = luigi.IntParameter()

    def complete(self):
        raise RuntimeError("complete() broke")

    def run(self):
        pass


class FailingTask(luigi.Task):
    n = luigi.IntParameter()
    retry_count = 1  # luigid disables it at its first failure: its policy as the worker sent it

    def run(self):
        self.set_status_message("about to fail")
        self.set_progress_percentage(10)
        raise RuntimeError("boom")
"""
#: the chain file :func:`module_served`'s worker runs
SHARED_CHAIN = ("review15/view_chain", CHAIN)
#: the families the chain defines: the session's luigid also holds other tests' tasks with the same ``n``
#: (``reuse.reuse_chain.CountTask(n=1001)``), which luigid's search by ``n=1001)`` finds too
FAMILIES = frozenset(re.findall(r"^class (\w+)\(luigi\.Task\)", CHAIN, re.M))
#: what luigid says of a step that does not depend on the worker, the time or the task's parameters
COMPARED = ("status", "name", "priority", "resources", "tracking_url", "status_message", "progress_percentage")


#: the frame of nectar's own that records a plain task's run (nectar.task's wrapper), in a traceback
NECTAR_FRAME = re.compile(r'  File "[^"]*/nectar/task\.py", line \d+, in \w+\n    .*\n(    [ ^]*\n)?')


def under_luigi(chain: Path, luigid: str, task: str, n: int) -> str:
    """``python -m luigi`` running ``task`` of the chain file (``--n n``) against ``luigid``; what it printed."""
    env = {**os.environ, "PYTHONPATH": str(chain.parent), **lifeline_env()}
    env.pop("LUIGI_CONFIG_PATH", None)
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, task, "--n", str(n), "--scheduler-url", luigid]
    done = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


class Served(NamedTuple):
    """A real ``nectar worker`` (one, its attempt processes reused) against the session's luigid."""

    nectar: Nectar
    luigid: str
    scheduler: SchedulerClient


@pytest.fixture
def served(
    settings: Settings, luigid: str, start_worker: StartWorker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Served:
    """The worker, its tasks' files in ``tmp_path`` (``REVIEW15_OUT``, which luigi's processes inherit too)."""
    monkeypatch.setenv("REVIEW15_OUT", str(tmp_path))
    reusing = settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=0, retry_delay=0)
    nectar = closed_at_end(Nectar(reusing))
    start_worker(reusing, workers=1)
    return Served(nectar, luigid, SchedulerClient(luigid))


@pytest.fixture(scope="module")
def module_served(
    luigid: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Settings, Path]]:
    """One worker as :func:`served`'s for the cases that write the chain file as it is and run each its own ``n``
    (CONTRIBUTING "(round 68, suitenectarB)"), the module's ``SHARED_CHAIN`` (its name, its source) written before it
    starts; its settings and its tasks' folder (``REVIEW15_OUT``)."""
    folder = tmp_path_factory.mktemp("review15")
    settings = module_settings(folder, scheduler_url=luigid, spare_idle=KEPT, retry_delay=0)
    write_chain_file(settings, *request.module.SHARED_CHAIN)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REVIEW15_OUT", str(folder))
        with module_worker(settings):
            yield settings, folder


@pytest.fixture
def served_alike(module_served: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch) -> Served:
    """:func:`module_served` for a test: its registry of its own, ``REVIEW15_OUT`` the worker's."""
    settings, folder = module_served
    monkeypatch.setenv("REVIEW15_OUT", str(folder))
    return Served(
        closed_at_end(Nectar(settings)), settings.scheduler_url or "", SchedulerClient(settings.scheduler_url or "")
    )


def served_runs(served: Served, chain: str, task: str, ns: range, state: RunState) -> Iterator[tuple[int, Run]]:
    """``task`` of ``review15/<chain>`` run by the worker with each ``n`` of ``ns`` in turn (a fresh process first,
    then reused ones, as they come), each ended in ``state``."""
    for n in ns:
        submission = served.nectar.submit("review15", chain, task, {"n": n})
        assert submission.run is not None
        run = ended(served.nectar, submission.run.id)
        assert run.state == state, run
        yield n, run


def luigi_then_served(served: Served, chain: Path, task: str, base: int, state: RunState) -> Iterator[tuple[int, Run]]:
    """``task`` of the chain file ``chain`` (``review15/<its name>``) run by ``python -m luigi`` with ``n = base``, now;
    then by the worker with each ``n`` of the next 4, as the answer is read (:func:`served_runs`). The file of each
    ``n``'s ``ThereTask`` (``there-<n>`` in ``REVIEW15_OUT``: a dependency complete before the run) made first."""
    out = Path(os.environ["REVIEW15_OUT"])
    for n in range(base, base + 5):
        (out / f"there-{n}").write_text("there\n")
    under_luigi(chain, served.luigid, task, base)
    return served_runs(served, chain.stem, task, range(base + 1, base + 5), state)


def seen_by_luigid(scheduler: SchedulerClient, n: int, exact: bool) -> dict[str, dict[str, Any]]:
    """luigid's record of each task of the chain's with ``n``, by family: the compared fields, its deps' families and
    its explanation (but for a frame of nectar's own in its traceback, unless ``exact``)."""
    listed = scheduler.call("task_list", status="", upstream_status="", search=f"n={n})") or {}
    listed = {task_id: task for task_id, task in listed.items() if task["name"] in FAMILIES}
    family = {task_id: task["name"] for task_id, task in listed.items()}
    seen = {}
    for task_id, task in listed.items():
        record = {field: task.get(field) for field in COMPARED}
        graph = scheduler.call("dep_graph", task_id=task_id)[task_id]
        record["deps"] = sorted(family.get(dep, dep) for dep in graph["deps"])
        expl = scheduler.call("fetch_error", task_id=task_id).get("error")
        record["expl"] = expl if exact else NECTAR_FRAME.sub("", json.loads(expl) if expl else "")
        seen[task["name"]] = record
    return seen


@pytest.mark.parametrize(
    ("task", "state", "exact", "base"),
    [
        ("ReportingTask", RunState.DONE, True, 1000),
        ("DynamicTask", RunState.DONE, True, 2000),
        ("FailingTask", RunState.FAILED, False, 3000),
        ("BrokenCompleteTask", RunState.FAILED, True, 6000),
        ("FailingTask", RunState.FAILED, True, 4000),
        ("DynamicRaisingTask", RunState.FAILED, True, 7000),
    ],
)
def test_luigid_holds_of_a_plain_task_run_by_the_service_what_it_holds_of_it_run_by_luigi(
    served_alike: Served, task: str, state: RunState, exact: bool, base: int
) -> None:
    served, chain = served_alike, served_alike.nectar.settings.chains_dir / "review15" / "view_chain.py"
    under_luigi(chain, served.luigid, task, base + 1)
    expected = seen_by_luigid(served.scheduler, base + 1, exact)
    assert task in expected, expected
    assert expected[task]["deps"] == (["UpTask"] if "Failing" not in task and "Broken" not in task else []), expected
    for n, run in served_runs(served, "view_chain", task, range(base + 2, base + 5), state):
        seen = seen_by_luigid(served.scheduler, n, exact)
        differ = [(family, field) for family in expected for field in expected[family]]
        differ = [(family, field) for family, field in differ if seen[family][field] != expected[family][field]]
        assert not differ, [(run.worker, *each, seen[each[0]][each[1]], expected[each[0]][each[1]]) for each in differ]


def test_a_chain_file_changed_between_runs_is_what_luigid_sees_of_the_next_run_in_a_reused_process(
    served: Served, write_chain: Callable[[str, str], Path]
) -> None:
    """A chain file rewritten between runs (a task's priority, resources and what it tells luigid changed): each run
    after, fresh or reused, shows luigid what luigi's own run of the new file shows, nothing of the file before (a hot
    reload; a process that ran the old file's task, its module kept or not, runs the new)."""
    write_chain("review15/view_chain", CHAIN)
    before = list(served_runs(served, "view_chain", "FailingTask", range(5001, 5005), RunState.FAILED))
    assert any(reused(run) for _, run in before), [run.worker for _, run in before]
    changed = CHAIN.replace(
        "retry_count = 1", "retry_count = 1\n    priority = 5\n    resources = {'review15_pool': 1}"
    )
    chain = write_chain("review15/view_chain", changed.replace("about to fail", "about to fail, changed"))
    under_luigi(chain, served.luigid, "FailingTask", 5100)
    expected = seen_by_luigid(served.scheduler, 5100, False)
    assert expected["FailingTask"]["priority"] == 5, expected
    runs: list[Run] = []

    def one_more_until_reused() -> bool:
        n, run = next(
            served_runs(served, "view_chain", "FailingTask", range(5101 + len(runs), 5102 + len(runs)), RunState.FAILED)
        )
        runs.append(run)
        assert seen_by_luigid(served.scheduler, n, False) == expected, run.worker
        return reused(run) and len(runs) >= 2

    wait_until(one_more_until_reused, timeout=120, interval=0)
