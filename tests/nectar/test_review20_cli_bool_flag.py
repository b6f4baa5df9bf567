"""review20 (on main): ``nectar run <type>/<chain>/<Task> --param value ...`` takes a task's parameters as luigi's
command line does (the README's ``nectar run etl/sales_chain/AggregateSalesTask --day 2024-01-02``), except a
``luigi.BoolParameter``, which luigi's command line takes as a flag (``--flag``, no value: luigi's docs and every
example of one). ``nectar.cli.local._task_params`` reads every ``--name`` as followed by its value: ``--flag --n 3``
takes ``--n`` for the flag's value and stops on ``3`` ("expected --<param> <value>, got '3'"), and a flag given last
is "--flag needs a value", so a command copied from ``python -m luigi`` fails."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import lifeline_env, settings_env
from nectar.config import Settings
from tests.helpers.suitecli_inprocess import nectar_in_process
from tests.nectar.test_cli import nectar

#: a task with a flag and a number; its file names both, as the task saw them
CHAIN = """
import os

import luigi


class FlagTask(luigi.Task):
    flag = luigi.BoolParameter()
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW20_OUT"], f"flag-{self.flag}-{self.n}"))

    def run(self):
        with self.output().open("w") as out:
            out.write("made")
"""


@pytest.mark.parametrize(
    "given",
    [["--flag", "--n", "3"], ["--n", "3", "--flag"], ["--flag", "--n", "3", "--local-scheduler"]],
    ids=["flag-first", "flag-last", "local-scheduler"],
)
def test_nectar_run_takes_a_bool_parameter_as_luigis_command_line_does(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path, given: list[str]
) -> None:
    """``python -m luigi --module <chain> FlagTask --flag --n 3`` (checked first) makes ``flag-True-3``; ``nectar run``
    with the same words makes it too, exit 0. Fails on main: exit 1, "nectar run: expected --<param> <value>, got
    '3'" (flag first) or "nectar run: --flag needs a value" (flag last), nothing made."""
    chain = write_chain("review20/flag_chain", CHAIN)
    under_luigi = tmp_path / "under_luigi"
    under_luigi.mkdir()
    env = {**os.environ, "REVIEW20_OUT": str(under_luigi), "PYTHONPATH": str(chain.parent), **lifeline_env()}
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, "FlagTask", *given, "--local-scheduler", "--no-lock"]
    said = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    assert (under_luigi / "flag-True-3").exists(), said.stdout + said.stderr
    result = nectar(settings, "run", "review20/flag_chain/FlagTask", *given, REVIEW20_OUT=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "flag-True-3").exists(), result.stdout + result.stderr


def test_an_explicit_bool_parameter_takes_a_value_or_none_as_luigis_command_line_does() -> None:
    """luigi's ``BoolParameter(parsing=EXPLICIT_PARSING)`` is argparse's ``nargs='?', const=True``: ``--flag false``
    gives false, ``--flag`` before another ``--name`` or last gives true; an implicit one never takes a value."""
    from nectar.cli.local import _task_params
    from nectar.errors import InvalidSetting

    assert _task_params(["--flag", "false", "--n", "3"], {"flag": True}) == {"flag": "false", "n": "3"}
    assert _task_params(["--flag", "--n", "3"], {"flag": True}) == {"flag": "true", "n": "3"}
    assert _task_params(["--n", "3", "--flag"], {"flag": True}) == {"n": "3", "flag": "true"}
    assert _task_params(["--flag=false"], {"flag": False}) == {"flag": "false"}
    with pytest.raises(InvalidSetting, match="expected --<param> <value>, got 'true'"):
        _task_params(["--flag", "true"], {"flag": False})


REFUSING = """
import luigi


class PositiveTask(luigi.Task):
    n = luigi.IntParameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.n < 0:
            raise ValueError("n must be positive")
"""


def test_a_task_that_refuses_its_values_is_named_as_the_task_not_as_a_flag(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A task whose ``__init__`` refuses a value: ``nectar run`` exits 2 saying so of the task, not of a ``--_task``
    flag that does not exist (review20: it said ``nectar: --_task: ValueError: n must be positive``). The refusal is
    the question: asked of ``nectar.cli.main`` in this process (the cases above run ``nectar run`` for real)."""
    write_chain("review20/positive_chain", REFUSING)
    argv = ["run", "review20/positive_chain/PositiveTask", "--n", "-1"]
    result = nectar_in_process(monkeypatch, capsys, argv, settings_env(settings), settings.data_dir.parent)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nectar: the task: ValueError: n must be positive" in result.stderr, result.stderr
    assert "--_task" not in result.stderr
