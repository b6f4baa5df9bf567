"""review11 (round 57): what a chain module kept between runs of one attempt process must not carry, through a real
``nectar worker`` and luigid: each chain file here is one a keeping rule may accept, each of its runs reads something
of the module and then changes it, and every run must read what a fresh execution of the file gives."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import output, reused
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]

#: a chain file of the shape a keeping rule accepts: ``{top}`` at the top level, ``{body}`` in the task's class; each
#: run writes what ``observe()`` returns, then calls ``change()``
CHAIN = '''
"""A probe of what a kept module carries."""

import sys
import time

import luigi
from nectar import NectarTask

{top}


class ProbeTask(NectarTask):
    """Reads the module, then changes it."""

    n = luigi.IntParameter()
{body}

    def run(self):
        seen = observe()
        change()
        with self.output().open("w") as out:
            out.write(repr(seen))
'''

#: by case: the top level, the task class's body, and whether every run must read the same (the file's) value
#: (True) or each run its own execution's (False)
CASES: dict[str, tuple[str, str, bool]] = {
    # luigi's ChoiceParameter keeps its choices as a set it makes of the tuple given (a literal the rule accepts)
    "a ChoiceParameter's choices": (
        "def observe():\n    return sorted(ProbeTask.mode._choices)\n\n\n"
        "def change():\n    ProbeTask.mode._choices.add('c')\n",
        '    mode = luigi.ChoiceParameter(choices=("a", "b"), default="a")\n',
        True,
    ),
    "a staticmethod's defaults": (
        "def observe():\n    return ProbeTask.helper()\n\n\ndef change():\n    ProbeTask.helper.__defaults__ = (2,)\n",
        "\n    @staticmethod\n    def helper(x=1):\n        return x\n",
        True,
    ),
    "a method's defaults": (
        "def observe():\n    return ProbeTask.helper(None)\n\n\n"
        "def change():\n    ProbeTask.helper.__defaults__ = (2,)\n",
        "\n    def helper(self, x=1):\n        return x\n",
        True,
    ),
    "a class's qualified name": (
        "class Helper:\n    pass\n\n\n"
        "def observe():\n    return Helper.__qualname__\n\n\n"
        "def change():\n    Helper.__qualname__ = 'Changed'\n",
        "",
        True,
    ),
    "a function's docstring": (
        'def helper():\n    """The file\'s."""\n\n\n'
        "def observe():\n    return helper.__doc__\n\n\n"
        "def change():\n    helper.__doc__ = 'changed'\n",
        "",
        True,
    ),
    "the module's annotations": (
        "LIMIT: int = 1\n\n\n"
        "def observe():\n    return sorted(globals()['__annotations__'])\n\n\n"
        "def change():\n    globals()['__annotations__']['CHANGED'] = int\n",
        "",
        True,
    ),
    "a class's annotations": (
        "def observe():\n    return sorted(ProbeTask.__annotations__)\n\n\n"
        "def change():\n    ProbeTask.__annotations__['changed'] = int\n",
        "    limit: int = 1\n",
        True,
    ),
    "a function's annotations": (
        "def helper(x: int = 1):\n    return x\n\n\n"
        "def observe():\n    return sorted(helper.__annotations__)\n\n\n"
        "def change():\n    helper.__annotations__['changed'] = int\n",
        "",
        True,
    ),
    "a class's bases": (
        "class First:\n    value = 1\n\n\nclass Second:\n    value = 2\n\n\nclass Helper(First):\n    pass\n\n\n"
        "def observe():\n    return Helper.value\n\n\n"
        "def change():\n    Helper.__bases__ = (Second,)\n",
        "",
        True,
    ),
    # code that runs at every execution of the file though no statement at its top level is a call
    "a call in an annotation": (
        "STAMP: str(time.time_ns()) = 0\n\n\n"
        "def observe():\n    return globals()['__annotations__']['STAMP']\n\n\n"
        "def change():\n    pass\n",
        "",
        False,
    ),
    "a call in a parameter's annotation": (
        "def stamped(x: str(time.time_ns()) = 1):\n    return x\n\n\n"
        "def observe():\n    return stamped.__annotations__['x']\n\n\n"
        "def change():\n    pass\n",
        "",
        False,
    ),
    "an else of the main block": (
        'if __name__ == "__main__":\n    pass\nelse:\n    STAMP = time.time_ns()\n\n\n'
        "def observe():\n    return STAMP\n\n\n"
        "def change():\n    pass\n",
        "",
        False,
    ),
    "a main block after __name__ is rebound": (
        'NAME = __name__\n__name__ = "__main__"\nif __name__ == "__main__":\n    STAMP = time.time_ns()\n'
        "__name__ = NAME\n\n\n"
        "def observe():\n    return STAMP\n\n\n"
        "def change():\n    pass\n",
        "",
        False,
    ),
}


def probe_source(case: str) -> str:
    top, body, _ = CASES[case]
    return CHAIN.format(top=top, body=body)


def runs_until_reused(nectar: Nectar, chain: str, reused_runs: int) -> list[Run]:
    """ProbeTask runs one after the other until ``reused_runs`` of them ran in a process that had run one before."""
    runs: list[Run] = []

    def enough() -> bool:
        submission = nectar.submit("review11", chain, "ProbeTask", {"n": len(runs) + 1})
        assert submission.run is not None
        runs.append(ended(nectar, submission.run.id))
        return sum(map(reused, runs)) >= reused_runs

    wait_until(enough, timeout=240, interval=0)
    return runs


@pytest.mark.parametrize("case", CASES)
def test_each_run_reads_the_chain_module_as_a_fresh_execution_of_its_file_gives_it(
    case: str, settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], start_worker: StartWorker
) -> None:
    chain = f"c{list(CASES).index(case)}_chain"
    write_chain(f"review11/{chain}", probe_source(case))
    settings = settings.replace(scheduler_url=luigid, spare_idle=KEPT, runs_per_process=50)
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=1)

    runs = runs_until_reused(nectar, chain, 3)

    assert [run.state for run in runs] == [RunState.DONE] * len(runs), [run.error for run in runs]
    seen = [(pid_of(run), reused(run), output(nectar, run)) for run in runs]
    same = CASES[case][2]
    if same:
        assert len({value for _, _, value in seen}) == 1, seen
    else:
        assert len({value for _, _, value in seen}) == len(seen), seen
