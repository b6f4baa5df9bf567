"""review16 (round 62): a ``luigi.TaskParameter`` given over the API (a task's name, as ``--of DayTask`` gives it
to ``python -m luigi``): luigi finds the class by its family in its registry, where ``python -m luigi --module
<chain>`` has that chain's classes alone; the API has every chain's it has read. A family two chains define
(``DayTask``, each its own) is ambiguous there, and a name no task has is an exception luigi raises: neither is
caught (``TaskClassException`` is no ``ValueError``), so a served API answers 500 where luigi runs the chain's own
task, or says the name is none (a 422 naming the field, as for any bad value)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.api_alone import api_alone
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import reused
from tests.nectar.test_review16_luigi_cfg import post
from tests.nectar.test_review16_none_default import under_luigi
from tests.nectar.test_spare import ended, pid_of

#: ``a_chain`` and ``b_chain`` each define a ``DayTask`` of their own; ``b_chain``'s ``PickTask`` notes whose it got
CHAIN = """
import os

import luigi


class DayTask(luigi.Task):
    pass


class PickTask(luigi.Task):
    t = luigi.TaskParameter()
    n = luigi.IntParameter()

    def run(self):
        with open(os.path.join(os.environ["REVIEW15_OUT"], f"picked-{self.n}"), "w") as out:
            out.write(self.t.__module__)
"""
PICK = "/api/chains/review15/b_chain/PickTask"


@pytest.fixture
def api(
    settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> Iterator[tuple[int, Path]]:
    """The API alone under gunicorn (one worker: the one that read both chains answers the POST); its port, and
    ``b_chain``'s file. Both chains read before (as a listing of them reads them)."""
    write_chain("review15/a_chain", CHAIN)
    chain = write_chain("review15/b_chain", CHAIN)
    with api_alone(settings, luigid, tmp_path / "api-logs") as port:
        yield port, chain


def test_a_task_parameter_names_its_own_chains_task_where_another_chain_has_one_of_that_name(
    api: tuple[int, Path],
    settings: Settings,
    luigid: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, chain = api
    monkeypatch.setenv("REVIEW15_OUT", str(tmp_path))
    said = under_luigi(chain, luigid, "PickTask", {"t": "DayTask", "n": "1"})
    assert (tmp_path / "picked-1").read_text() == "b_chain", said
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains/review15", timeout=60) as listed:
        assert {"a_chain", "b_chain"} <= set(listed.read().decode().split('"')), "both chains read by the API"
    status, answer = post(port, PICK, {"t": "DayTask", "n": 2})
    assert status == 202, answer
    start_worker(settings.replace(scheduler_url=luigid), workers=1)
    run = ended(closed_at_end(Nectar(settings)), answer["data"]["run_id"])
    assert run.state == RunState.DONE, run.error
    assert (tmp_path / "picked-2").read_text().rsplit(".", 1)[-1] == "b_chain", run.worker


def test_a_task_parameter_naming_no_task_is_a_422_naming_the_field(api: tuple[int, Path]) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{api[0]}/api/chains/review15", timeout=60):
        pass
    status, answer = post(api[0], PICK, {"t": "NoSuchTask", "n": 3})
    assert status == 422, answer
    assert list(answer["errors"]) == ["t"], answer


@pytest.fixture
def one_slot(
    settings: Settings,
    luigid: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Nectar:
    """A worker of one slot on the session's luigid (its runs go round the processes it keeps), ``PickTask`` noting
    in ``tmp_path``; the service, to read the runs."""
    monkeypatch.setenv("REVIEW15_OUT", str(tmp_path))
    start_worker(settings.replace(scheduler_url=luigid), workers=1)
    return closed_at_end(Nectar(settings))


def test_a_task_parameter_names_its_own_chains_task_in_a_process_that_ran_the_other_chain(
    api: tuple[int, Path], one_slot: Nectar, tmp_path: Path
) -> None:
    port, nectar = api[0], one_slot
    pairs: list[tuple[Run, Run]] = []

    def run(chain: str, n: int) -> Run:
        status, answer = post(port, f"/api/chains/review15/{chain}/PickTask", {"t": "DayTask", "n": n})
        assert status == 202, answer
        return ended(nectar, answer["data"]["run_id"])

    def b_reused_after_a() -> bool:
        """An a_chain run then a b_chain run, until the b_chain run's process had run an a_chain run before."""
        n = 2 * len(pairs) + 1
        pairs.append((run("a_chain", n), run("b_chain", n + 1)))
        return reused(pairs[-1][1]) and pid_of(pairs[-1][1]) in {pid_of(first) for first, _ in pairs}

    wait_until(b_reused_after_a, timeout=120, interval=0)
    for n, ended_run in enumerate((each for pair in pairs for each in pair), start=1):
        assert ended_run.state == RunState.DONE, (ended_run.ref, ended_run.worker, ended_run.error)
        picked = (tmp_path / f"picked-{n}").read_text().rsplit(".", 1)[-1]
        assert picked == ended_run.chain, (ended_run.ref, ended_run.worker)


#: ``day_chain`` defines a ``DayTask`` too (as ``a_chain`` does); ``c_chain`` imports ``day_chain`` (not its
#: ``DayTask``) and has a ``PickTask``: ``python -m luigi --module chains.review15.c_chain`` holds ``day_chain``'s alone
DAY_CHAIN = "import luigi\n\n\nclass DayTask(luigi.Task):\n    pass\n\n\nclass OtherTask(luigi.Task):\n    pass\n"
C_CHAIN = CHAIN.replace("class DayTask(luigi.Task):\n    pass\n", "from chains.review15.day_chain import OtherTask\n")


@pytest.fixture
def chains_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chains folder's parent on the path of the processes started after it (the API, the worker), as under
    ``python -m luigi``: a chain file imports another as ``chains.<type>.<chain>``."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))


def under_luigi_module(chains: Path, module: str, luigid: str, *given: str) -> str:
    """``python -m luigi --module <module>`` (a chain's module, ``chains.<type>.<chain>``, the chains folder's parent
    on the path, as the service's processes have it) running ``PickTask`` against ``luigid``; what it printed."""
    env = {**os.environ, "PYTHONPATH": str(chains.parent), **lifeline_env()}
    env.pop("LUIGI_CONFIG_PATH", None)
    argv = [sys.executable, "-m", "luigi", "--module", module, "PickTask", *given, "--scheduler-url", luigid]
    done = subprocess.run(argv, env=env, cwd=chains.parent, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def test_a_task_parameter_names_the_task_of_a_module_its_chain_imports_where_another_chain_has_one_of_that_name(
    chains_on_path: None,
    api: tuple[int, Path],
    one_slot: Nectar,
    write_chain: Callable[[str, str], Path],
    luigid: str,
    tmp_path: Path,
) -> None:
    """A ``TaskParameter`` naming a class defined in a module the chain imports (not bound in the chain's own) is that
    class, as under ``python -m luigi --module <chain>``, where ``a_chain``'s of the same family is not loaded; in the
    API (which read every chain: before, 422 "names a task of several chains"), in a fresh attempt process and in one
    that ran ``a_chain``'s before, and after the chain file is changed (read again)."""
    port, nectar = api[0], one_slot
    write_chain("review15/day_chain", DAY_CHAIN)
    chain = write_chain("review15/c_chain", C_CHAIN)
    said = under_luigi_module(chain.parent.parent, "chains.review15.c_chain", luigid, "--t", "DayTask", "--n", "100")
    assert (tmp_path / "picked-100").read_text() == "chains.review15.day_chain", said
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains/review15", timeout=60) as listed:
        assert {"a_chain", "c_chain", "day_chain"} <= set(listed.read().decode().split('"')), "all read by the API"
    runs: list[Run] = []

    def run(chain: str, n: int) -> Run:
        status, answer = post(port, f"/api/chains/review15/{chain}/PickTask", {"t": "DayTask", "n": n})
        assert status == 202, answer
        runs.append(ended(nectar, answer["data"]["run_id"]))
        return runs[-1]

    def c_reused_after_a() -> bool:
        """An a_chain run then a c_chain run, until the c_chain run's process had run an a_chain run before."""
        n = 101 + len(runs)
        run("a_chain", n)
        second = run("c_chain", n + 1)
        ran_a = {pid_of(each) for each in runs if each.chain == "a_chain"}
        return second.state != RunState.DONE or (reused(second) and pid_of(second) in ran_a)

    run("c_chain", 101)
    wait_until(c_reused_after_a, timeout=120, interval=0)
    write_chain("review15/c_chain", C_CHAIN + "\n# changed\n")
    run("c_chain", 101 + len(runs))
    for n, ended_run in enumerate(runs, start=101):
        assert ended_run.state == RunState.DONE, (ended_run.ref, ended_run.worker, ended_run.error)
        picked = (tmp_path / f"picked-{n}").read_text().rsplit(".", 1)[-1]
        assert picked == ("a_chain" if ended_run.chain == "a_chain" else "day_chain"), (ended_run.ref, picked)
