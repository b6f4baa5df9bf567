"""review22 (on main): two chain types each with a helper module of the same plain name (``chains/alpha/utils.py``,
``chains/beta/utils.py``), each chain file putting its own folder on ``sys.path`` and importing it (``import utils``:
a notebook's habit, and luigi's examples' way to share code beside a script). ``python -m luigi`` executes one chain
file a process: each task reads its own ``utils``. ``nectar serve``'s worker (``--clock``) executes every chain in one
process before it forks: the second chain's ``import utils`` finds the first's module in ``sys.modules``, and that
chain's runs use the other type's code, silently (DONE, a wrong output)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask.testing import FlaskClient

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from tests.conftest import wait_until

CHAIN = '''
"""Puts its own folder on sys.path and imports its helper by its plain name."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import luigi
import utils


class WordTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget({out!r})

    def run(self):
        with self.output().open("w") as out:
            out.write(utils.WORD)
'''


def test_each_chain_reads_its_own_helper_of_a_shared_plain_name(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    processes: Processes,
    request: pytest.FixtureRequest,
) -> None:
    """Each task's output is its own type's word, as under ``python -m luigi``. Fails on main: one of them wrote the
    other type's word (``{'alpha': 'beta', 'beta': 'beta'}``, the order as the worker's catalog executed them)."""
    types = ("alpha", "beta")
    # the API in this process executes both chain files too: its module ``utils`` goes with the test
    request.addfinalizer(functools.partial(_put_back, "utils", sys.modules.get("utils")))
    for kind in types:
        write_chain(f"{kind}/utils", f"WORD = {kind!r}\n")
        write_chain(f"{kind}/word_chain", CHAIN.format(out=str(tmp_path / f"{kind}.txt")))
    env = base_env() | settings_env(settings)
    worker = processes.start("worker", [*NECTAR, "worker", "--clock", "--workers", "1"], env, tmp_path)
    client = client_for(settings)
    urls: dict[str, str] = {}
    for kind in types:
        answer = client.post(f"/api/chains/{kind}/word_chain/WordTask", json={})
        assert answer.status_code == 202, answer.get_json()
        urls[kind] = answer.get_json()["data"]["status_url"]

    def over(url: str) -> dict[str, Any] | None:
        assert worker.poll() is None, processes.log_of[worker.pid].read_text()
        status = client.get(url).get_json()["data"]
        return status if status["job_status"] in {"DONE", "FAILED"} else None

    for url in urls.values():
        status = wait_until(functools.partial(over, url))
        assert status["job_status"] == "DONE", status
    assert {kind: (tmp_path / f"{kind}.txt").read_text() for kind in types} == {kind: kind for kind in types}


def _put_back(name: str, module: ModuleType | None) -> None:
    """``sys.modules[name]`` as it was (``module``; None: absent)."""
    if module is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = module
