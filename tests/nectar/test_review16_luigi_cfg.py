"""review16 (round 62): a task's parameter values that the project's luigi.cfg sets (``[<TaskFamily>] name = value``,
luigi's own way of giving a task a default) are what luigi's worker runs with, and what ``python -m luigi`` runs with
from the same luigi.cfg; the API a deployment starts alone (``nectar api``: gunicorn with ``NECTAR_LUIGI_CONFIG``)
must read them too, or it refuses a task luigi runs and names the run for a task luigi does not run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from harness import Processes, lifeline_env
from harness.processes import REPO, settings_env
from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import ended

CHAIN = """
import json
import os

import luigi


class CfgTask(luigi.Task):
    x = luigi.IntParameter()  # no default in the code: luigi.cfg's [CfgTask] x gives one
    y = luigi.Parameter(default="code")  # luigi.cfg's [CfgTask] y overrides it

    def run(self):
        with open(os.path.join(os.environ["REVIEW16_OUT"], "ran"), "a") as out:
            out.write(json.dumps({"task_id": self.task_id, "x": self.x, "y": self.y}) + "\\n")
"""
OWN_SECTION = "\n[CfgTask]\nx = 7\ny = cfg\n"


def post(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The API's status and JSON answer to ``body`` POSTed at ``path`` (an error's too)."""
    sent = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(sent, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def under_luigi(chain: Path, config: Path, luigid: str, *given: str) -> str:
    """``python -m luigi`` running ``CfgTask`` of the chain file, ``config`` its luigi.cfg, no parameter given."""
    env = {**os.environ, "PYTHONPATH": str(chain.parent), "LUIGI_CONFIG_PATH": str(config), **lifeline_env()}
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, "CfgTask", *given, "--scheduler-url", luigid]
    done = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


class Configured(NamedTuple):
    """The chain file, the project's luigi.cfg with ``[CfgTask]``'s section, the folder ``CfgTask`` writes in, and
    settings that read that luigi.cfg against the session's luigid."""

    chain: Path
    config: Path
    out: Path
    settings: Settings


@pytest.fixture
def configured(
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Configured:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("REVIEW16_OUT", str(out))
    config = tmp_path / "luigi.cfg"
    config.write_text((REPO / "configuration" / "luigi.cfg").read_text() + OWN_SECTION)
    chain = write_chain("review16/cfg_chain", CHAIN)
    return Configured(chain, config, out, settings.replace(luigi_config=config, scheduler_url=luigid))


def ran_under_luigi(on: Configured, luigid: str, *given: str) -> dict[str, Any]:
    """What ``CfgTask`` saw run by ``python -m luigi`` with ``given``; its note removed after."""
    said = under_luigi(on.chain, on.config, luigid, *given)
    assert (on.out / "ran").exists(), said
    seen: dict[str, Any] = json.loads((on.out / "ran").read_text())
    (on.out / "ran").unlink()
    return seen


def test_a_parameter_luigi_cfg_sets_is_the_apis_as_it_is_luigis_and_the_workers(
    configured: Configured, luigid: str, start_worker: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    expected = ran_under_luigi(configured, luigid)
    assert (expected["x"], expected["y"]) == (7, "cfg"), expected
    out = configured.out
    processes = Processes(tmp_path / "api-logs")
    try:
        api = processes.nectar_api(configured.settings)
        status, answer = post(api.port, "/api/chains/review16/cfg_chain/CfgTask", {})
        assert status == 202, answer  # luigi runs CfgTask with no parameter given: its luigi.cfg gives x
        # the run named for the task luigi runs: its key's digest is the md5 whose head luigi's task_id ends with
        assert answer["data"]["key"].split("/")[-2][:10] == expected["task_id"].rsplit("_", 1)[1], answer
        start_worker(configured.settings, workers=1)
        nectar = closed_at_end(Nectar(configured.settings))
        run = ended(nectar, answer["data"]["run_id"])
        assert run.state == RunState.DONE, run
        assert json.loads((out / "ran").read_text()) == expected
    finally:
        processes.close()


def test_a_value_given_as_the_codes_default_is_run_where_luigi_cfg_sets_another(
    configured: Configured, luigid: str, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    expected = ran_under_luigi(configured, luigid, "--x", "8", "--y", "code")
    assert expected["y"] == "code", expected  # given, it is the task's value, whatever luigi.cfg says
    nectar = closed_at_end(Nectar(configured.settings))
    submission = nectar.submit("review16", "cfg_chain", "CfgTask", {"x": 8, "y": "code"})
    assert submission.run is not None and submission.run.task_id == expected["task_id"], submission
    start_worker(configured.settings, workers=1)
    run = ended(nectar, submission.run.id)
    assert run.state == RunState.DONE, run.error
    assert json.loads((configured.out / "ran").read_text()) == expected, run.worker


WORD_CHAIN = """
import os

import luigi


class WordTask(luigi.Task):
    n = luigi.IntParameter()

    def run(self):
        word = luigi.configuration.get_config().get("review16", "word", "none")
        with open(os.path.join(os.environ["REVIEW16_OUT"], f"word-{self.n}"), "w") as out:
            out.write(word)
"""


def test_a_process_with_no_luigi_config_set_reads_configuration_luigi_cfg_where_it_runs(
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where ``NECTAR_LUIGI_CONFIG`` is unset, a worker started in a folder holding ``configuration/luigi.cfg`` reads
    that luigi.cfg, as ``nectar serve`` there hands it to its parts (one rule for every process: README's
    configuration table), and a task's ``run()`` reads what ``python -m luigi`` with that luigi.cfg reads; its runs
    in a fresh attempt process and in a reused one. Before, only ``serve`` and ``scheduler`` looked there: the worker
    read no luigi.cfg."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("REVIEW16_OUT", str(out))
    project = tmp_path / "project"
    (project / "configuration").mkdir(parents=True)
    config = project / "configuration" / "luigi.cfg"
    config.write_text((REPO / "configuration" / "luigi.cfg").read_text() + "\n[review16]\nword = cfg\n")
    chain = write_chain("review16/word_chain", WORD_CHAIN)
    env = {**os.environ, "PYTHONPATH": str(chain.parent), "LUIGI_CONFIG_PATH": str(config), **lifeline_env()}
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, "WordTask", "--n", "0", "--scheduler-url", luigid]
    done = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    assert (out / "word-0").read_text() == "cfg", done.stdout + done.stderr
    settings = settings.replace(scheduler_url=luigid)
    worker_env = {**os.environ, **settings_env(settings)}
    worker_env.pop("NECTAR_LUIGI_CONFIG")
    processes = Processes(tmp_path / "worker-logs")
    try:
        processes.worker(worker_env, project, workers=1)
        nectar = closed_at_end(Nectar(settings))
        for n in (1, 2):
            submission = nectar.submit("review16", "word_chain", "WordTask", {"n": n})
            assert submission.run is not None
            run = ended(nectar, submission.run.id)
            assert run.state == RunState.DONE, run.error
            assert (out / f"word-{n}").read_text() == "cfg", run.worker
    finally:
        processes.close()
