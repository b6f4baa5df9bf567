"""review16 (round 62): a parameter's default reaches the task a worker runs as luigi gives it, not as its text read
back. The service keeps a run's parameters as ``to_str_params`` writes them, the defaults included, and its attempt
makes the task of that text (``from_str_params``); a default whose text parses to another value (a ``FloatParameter``
whose default is the int ``1``: ``'1'`` read back is ``1.0``; a ``Parameter`` whose default is not a str) is another
value in the worker than under ``python -m luigi``, and than in the submission's own task. A target named after it is
another file: the worker makes ``ratio-1.0`` where luigi makes ``ratio-1``, and each submission after finds the task
not complete (it asks for ``ratio-1``) and runs it again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nectar.registry import RunState
from tests.nectar.test_review15_luigid_view import Served, module_served, served_alike  # noqa: F401 (fixtures)
from tests.nectar.test_review16_none_default import under_luigi
from tests.nectar.test_spare import ended

CHAIN = """
import json
import os

import luigi


class RatioTask(luigi.Task):
    n = luigi.IntParameter()
    ratio = luigi.FloatParameter(default=1)  # an int default: luigi's value is 1, its text '1'

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"ratio-{self.n}-{self.ratio}"))

    def run(self):
        with self.output().open("w") as out:
            out.write(json.dumps({"ratio": repr(self.ratio)}))


class SizeTask(luigi.Task):
    n = luigi.IntParameter()
    size = luigi.Parameter(default=5)  # not a str: luigi warns, and runs it as 5

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"size-{self.n}-{self.size!r}"))

    def run(self):
        with self.output().open("w") as out:
            out.write(json.dumps({"size": repr(self.size)}))
"""
#: the chain file the module's worker runs (test_review15_luigid_view's module_served): each case its own ``n``
SHARED_CHAIN = ("review15/default_chain", CHAIN)


@pytest.mark.parametrize(("task", "base"), [("RatioTask", 100), ("SizeTask", 200)])
def test_a_default_reaches_the_task_as_luigi_gives_it_and_its_target_is_luigis(
    served_alike: Served,  # noqa: F811 (the fixture: the module's worker, each case its own n)
    task: str,
    base: int,
) -> None:
    served, tmp_path = served_alike, Path(os.environ["REVIEW15_OUT"])  # the worker's folder of its tasks' files
    chain = served.nectar.settings.chains_dir / "review15" / "default_chain.py"
    said = under_luigi(chain, served.luigid, task, {"n": str(base)})
    made = sorted(path.name.replace(str(base), "<n>") for path in tmp_path.glob(f"*-{base}-*"))
    assert len(made) == 1, said
    expected = json.loads(next(tmp_path.glob(f"*-{base}-*")).read_text())
    n = base + 1
    submission = served.nectar.submit("review15", "default_chain", task, {"n": n})
    assert submission.run is not None
    run = ended(served.nectar, submission.run.id)
    assert run.state == RunState.DONE, run.error
    assert sorted(path.name.replace(str(n), "<n>") for path in tmp_path.glob(f"*-{n}-*")) == made, run.worker
    assert json.loads(next(tmp_path.glob(f"*-{n}-*")).read_text()) == expected, run.worker
    again = served.nectar.submit("review15", "default_chain", task, {"n": n})
    assert again.done and not again.created, again  # its target made: complete, as luigi finds it
