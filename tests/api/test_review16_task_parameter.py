"""review16 (round 62): a ``luigi.TaskParameter`` given over the API (a task's name, as ``--of DayTask`` gives it
to ``python -m luigi``): luigi finds the class by its family in its registry, where ``python -m luigi --module
<chain>`` has that chain's classes alone; the API has every chain's it has read. A family two chains define
(``DayTask``, each its own) is ambiguous there, and a name no task has is an exception luigi raises: neither is
caught (``TaskClassException`` is no ``ValueError``), so a served API answers 500 where luigi runs the chain's own
task, or says the name is none (a 422 naming the field, as for any bad value)."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Processes
from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
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
    processes = Processes(tmp_path / "api-logs")
    port = processes.nectar_api(settings.replace(scheduler_url=luigid)).port
    yield port, chain
    processes.close()


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
