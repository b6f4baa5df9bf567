"""review16 (round 62): a parameter whose default is ``None`` without being an ``Optional...Parameter`` (luigi's
``Parameter(default=None)``, ``IntParameter(default=None)``: common in users' code, and in luigi's own
``luigi.tools.range``, whose ``RangeBase.now`` and ``param_name`` are such) has the value ``None`` in the task a
worker runs, as under ``python -m luigi``. The service keeps a run's parameters as luigi's ``to_str_params`` writes
them, the defaults included (``None`` written ``'None'``), and its attempt makes the task again from that text
(``from_str_params``): ``'None'`` parsed back is the string ``'None'``, or no int at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar.registry import RunState
from tests.nectar.test_reuse import reused
from tests.nectar.test_review15_luigid_view import Served, module_served, served, served_alike  # noqa: F401 (fixtures)
from tests.nectar.test_spare import ended

CHAIN = """
import json
import os

import luigi
from luigi.tools.range import RangeDaily


def noted(task, **values):
    with open(os.path.join(os.environ["REVIEW15_OUT"], f"noted-{task.n}"), "w") as out:
        json.dump({name: repr(value) for name, value in values.items()}, out)


class LabelTask(luigi.Task):
    n = luigi.IntParameter()
    label = luigi.Parameter(default=None)  # luigi warns it is not a str, and runs it as None

    def run(self):
        noted(self, label=self.label)


class LimitTask(luigi.Task):
    n = luigi.IntParameter()
    limit = luigi.IntParameter(default=None)

    def run(self):
        noted(self, limit=self.limit)


class DayTask(luigi.Task):
    date = luigi.DateParameter()
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"day-{self.n}-{self.date}"))

    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")


class DaysTask(RangeDaily):  # luigi's own range over DayTask: RangeBase's now and param_name default to None
    n = luigi.IntParameter()

    def run(self):
        noted(self, now=self.now, param_name=self.param_name)
"""


def under_luigi(chain: Path, luigid: str, task: str, values: dict[str, str]) -> str:
    """``python -m luigi`` running ``task`` of the chain file with ``values`` against ``luigid``; what it printed."""
    env = {**os.environ, "PYTHONPATH": str(chain.parent), **lifeline_env()}
    env.pop("LUIGI_CONFIG_PATH", None)
    given = [item for name, value in values.items() for item in (f"--{name.replace('_', '-')}", value)]
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, task, *given, "--scheduler-url", luigid]
    done = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


#: a range of three days long past, reached back to (its ``days_back`` counts from now)
#: the chain file the module's worker runs (test_review15_luigid_view's module_served)
SHARED_CHAIN = ("review15/none_chain", CHAIN)
DAYS = {"of": "DayTask", "of_params": "{}", "start": "2024-01-01", "stop": "2024-01-04", "days_back": "100000"}

#: each task's values given (``n`` but), and the first ``n`` of its runs
CASES: dict[str, tuple[dict[str, str], int]] = {"LabelTask": ({}, 100), "LimitTask": ({}, 200), "DaysTask": (DAYS, 300)}


@pytest.mark.parametrize("task", list(CASES))
def test_a_parameter_defaulting_to_none_is_none_in_the_task_the_worker_runs(
    served_alike: Served,  # noqa: F811 (the fixture: the module's worker, each case its own n)
    task: str,
) -> None:
    values, base = CASES[task]
    chain = served_alike.nectar.settings.chains_dir / "review15" / "none_chain.py"
    tmp_path = Path(os.environ["REVIEW15_OUT"])  # the worker's folder of what its tasks note
    ran = {**values, "of_params": json.dumps({"n": base})} if "of" in values else values
    said = under_luigi(chain, served_alike.luigid, task, {**ran, "n": str(base)})
    assert (tmp_path / f"noted-{base}").exists(), said
    expected = json.loads((tmp_path / f"noted-{base}").read_text())
    assert "None" in expected.values(), expected  # luigi's run saw None, the default
    for n in (base + 1, base + 2):
        given = {**values, "of_params": json.dumps({"n": n})} if "of" in values else values
        submission = served_alike.nectar.submit("review15", "none_chain", task, {**given, "n": n})
        assert submission.run is not None
        run = ended(served_alike.nectar, submission.run.id)
        assert run.state == RunState.DONE, run.error
        assert json.loads((tmp_path / f"noted-{n}").read_text()) == expected, run.worker


def test_none_given_as_text_for_a_none_default_is_the_string_as_luigi_gives_it(
    served: Served,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    """``--label None`` under ``python -m luigi`` is the string ``'None'`` (luigi parses a given value), where the
    default left out is None; to luigi both are one task (one ``task_id``: luigi writes both ``'None'``). The service
    runs each as luigi does, fresh, reused and after a hot reload, their key and task_id one. Before, ``'None'`` given
    ran as None: the run's parameters (``to_str_params``, defaults written too) did not say it was given."""
    chain = write_chain("review15/none_chain", CHAIN)
    said = under_luigi(chain, served.luigid, "LabelTask", {"n": "400", "label": "None"})
    assert json.loads((tmp_path / "noted-400").read_text()) == {"label": "'None'"}, said
    keys, reused_given = set(), False
    n = 400
    # 8 runs at least, then more until one given 'None' ran in a reused process (which spare is ready first at each
    # claim depends on the machine's load; the bound only fails a worker that never reuses one)
    while n < 408 or not reused_given:
        n += 1
        assert n < 440, "no run given 'None' ran in a reused process"
        given = {"label": "None"} if n % 2 else {}
        if n == 405:  # a hot reload
            write_chain("review15/none_chain", CHAIN + "\n# changed\n")
        submission = served.nectar.submit("review15", "none_chain", "LabelTask", {**given, "n": n})
        assert submission.run is not None
        run = ended(served.nectar, submission.run.id)
        assert run.state == RunState.DONE, run.error
        expected = "'None'" if given else "None"
        assert json.loads((tmp_path / f"noted-{n}").read_text()) == {"label": expected}, (given, run.worker)
        info = served.nectar.task("review15", "none_chain", "LabelTask")
        left_out = info.instantiate({"n": n})  # the default's: its key and luigi's task_id
        keys.add((n, run.key == info.key_of(left_out).path, run.task_id == left_out.task_id))
        reused_given = reused_given or bool(given and reused(run))
    assert keys == {(each, True, True) for each in range(401, n + 1)}
