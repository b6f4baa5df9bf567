"""review11 (round 57): what a chain module kept between runs of one attempt process must not carry, through a real
``nectar worker`` and luigid: each chain file here is one a keeping rule may accept, each of its runs reads something
of the module and then changes it, and every run must read what a fresh execution of the file gives."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_worker import module_settings, module_worker, write_chain_file
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

#: by case: the top level, the task class's body, and what the runs must read: every one the same (the file's)
#: value ("same"), each its own execution's ("distinct"), each run in a process that ran one before its own ``n``
#: from its third run on ("own": what its own task's making sets, as in a module executed anew, where a spare's
#: rehearsal makes a task only the first time in a process)
CASES: dict[str, tuple[str, str, str]] = {
    # luigi's ChoiceParameter keeps its choices as a set it makes of the tuple given (a literal the rule accepts)
    "a ChoiceParameter's choices": (
        "def observe():\n    return sorted(ProbeTask.mode._choices)\n\n\n"
        "def change():\n    ProbeTask.mode._choices.add('c')\n",
        '    mode = luigi.ChoiceParameter(choices=("a", "b"), default="a")\n',
        "same",
    ),
    "a staticmethod's defaults": (
        "def observe():\n    return ProbeTask.helper()\n\n\ndef change():\n    ProbeTask.helper.__defaults__ = (2,)\n",
        "\n    @staticmethod\n    def helper(x=1):\n        return x\n",
        "same",
    ),
    "a method's defaults": (
        "def observe():\n    return ProbeTask.helper(None)\n\n\n"
        "def change():\n    ProbeTask.helper.__defaults__ = (2,)\n",
        "\n    def helper(self, x=1):\n        return x\n",
        "same",
    ),
    "a class's qualified name": (
        "class Helper:\n    pass\n\n\n"
        "def observe():\n    return Helper.__qualname__\n\n\n"
        "def change():\n    Helper.__qualname__ = 'Changed'\n",
        "",
        "same",
    ),
    "a function's docstring": (
        'def helper():\n    """The file\'s."""\n\n\n'
        "def observe():\n    return helper.__doc__\n\n\n"
        "def change():\n    helper.__doc__ = 'changed'\n",
        "",
        "same",
    ),
    "a function's qualified name": (
        "def helper():\n    return 1\n\n\n"
        "def observe():\n    return helper.__qualname__\n\n\n"
        "def change():\n    helper.__qualname__ = 'changed'\n",
        "",
        "same",
    ),
    # luigi's instance cache: a task made with the same parameters is the same object while the cache holds it
    "a task object luigi's instance cache holds": (
        "def observe():\n    return getattr(ProbeTask(n=0), 'mark', None)\n\n\n"
        "def change():\n    ProbeTask(n=0).mark = 'changed'\n",
        "",
        "same",
    ),
    "the module's annotations": (
        "LIMIT: int = 1\n\n\n"
        "def observe():\n    return sorted(globals()['__annotations__'])\n\n\n"
        "def change():\n    globals()['__annotations__']['CHANGED'] = int\n",
        "",
        "same",
    ),
    "a class's annotations": (
        "def observe():\n    return sorted(ProbeTask.__annotations__)\n\n\n"
        "def change():\n    ProbeTask.__annotations__['changed'] = int\n",
        "    limit: int = 1\n",
        "same",
    ),
    "a function's annotations": (
        "def helper(x: int = 1):\n    return x\n\n\n"
        "def observe():\n    return sorted(helper.__annotations__)\n\n\n"
        "def change():\n    helper.__annotations__['changed'] = int\n",
        "",
        "same",
    ),
    "a class's bases": (
        "class First:\n    value = 1\n\n\nclass Second:\n    value = 2\n\n\nclass Helper(First):\n    pass\n\n\n"
        "def observe():\n    return Helper.value\n\n\n"
        "def change():\n    Helper.__bases__ = (Second,)\n",
        "",
        "same",
    ),
    "a function's keyword-only defaults, changed in place": (
        "def helper(*, x=1):\n    return x\n\n\n"
        "def observe():\n    return helper()\n\n\n"
        "def change():\n    helper.__kwdefaults__['x'] = 2\n",
        "",
        "same",
    ),
    # a spare's rehearsal makes a task of the run its worker claimed last, before a module's state is noted
    "what the rehearsal's task set": (
        "def observe():\n    return vars(ProbeTask).get('first')\n\n\ndef change():\n    pass\n",
        "\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n"
        "        if 'first' not in vars(ProbeTask):\n            ProbeTask.first = self.n\n",
        "own",
    ),
    # code that runs at every execution of the file though no statement at its top level is a call
    "a call in an annotation": (
        "STAMP: str(time.time_ns()) = 0\n\n\n"
        "def observe():\n    return globals()['__annotations__']['STAMP']\n\n\n"
        "def change():\n    pass\n",
        "",
        "distinct",
    ),
    "a call in a parameter's annotation": (
        "def stamped(x: str(time.time_ns()) = 1):\n    return x\n\n\n"
        "def observe():\n    return stamped.__annotations__['x']\n\n\n"
        "def change():\n    pass\n",
        "",
        "distinct",
    ),
    "an __init_subclass__ of the file's own": (
        "class Stamped:\n    def __init_subclass__(cls, **kwargs):\n        cls.STAMP = time.time_ns()\n\n\n"
        "class Helper(Stamped):\n    pass\n\n\n"
        "def observe():\n    return Helper.STAMP\n\n\n"
        "def change():\n    pass\n",
        "",
        "distinct",
    ),
    "a __class_getitem__ of the file's own, in an annotation": (
        "class Stamp:\n    def __class_getitem__(cls, item):\n        return time.time_ns()\n\n\n"
        "STAMP: Stamp[0] = 0\n\n\n"
        "def observe():\n    return globals()['__annotations__']['STAMP']\n\n\n"
        "def change():\n    pass\n",
        "",
        "distinct",
    ),
    "an else of the main block": (
        'if __name__ == "__main__":\n    pass\nelse:\n    STAMP = time.time_ns()\n\n\n'
        "def observe():\n    return STAMP\n\n\n"
        "def change():\n    pass\n",
        "",
        "distinct",
    ),
    "a main block after __name__ is rebound": (
        '__name__ = "__main__"\nif __name__ == "__main__":\n    STAMP = time.time_ns()\n__name__ = "MODULE"\n\n\n'
        "def observe():\n    return STAMP\n\n\n"
        "def change():\n    pass\n",
        "",
        "distinct",
    ),
    "a main block after an import binds __name__": (
        "from __main__ import __name__\n"
        'if __name__ == "__main__":\n    STAMP = time.time_ns()\n__name__ = "MODULE"\n\n\n'
        "def observe():\n    return STAMP\n\n\n"
        "def change():\n    pass\n",
        "",
        "distinct",
    ),
    # names the rule reads as builtins, bound by an import
    "frozenset bound by an import to a deque": (
        "from collections import deque as frozenset\n\nLIMITS = frozenset((1, 2))\n\n\n"
        "def observe():\n    return list(LIMITS)\n\n\n"
        "def change():\n    LIMITS.append(3)\n",
        "",
        "same",
    ),
    "frozenset bound by an import": (
        "from builtins import list as frozenset\n\nLIMITS = frozenset((1, 2))\n\n\n"
        "def observe():\n    return list(LIMITS)\n\n\n"
        "def change():\n    LIMITS.append(3)\n",
        "",
        "same",
    ),
    "staticmethod bound by an import": (
        "from functools import cache as staticmethod\n\n\n"
        "def observe():\n    return list(ProbeTask.helper())\n\n\n"
        "def change():\n    ProbeTask.helper().append(3)\n",
        "\n    @staticmethod\n    def helper():\n        return []\n",
        "same",
    ),
}


def probe_source(case: str, chain: str) -> str:
    top, body, _ = CASES[case]
    return CHAIN.format(top=top.replace("MODULE", f"chains.review11.{chain}"), body=body)


def runs_until_reused(nectar: Nectar, chain: str, runs_in_one: int) -> list[Run]:
    """ProbeTask runs one after the other until one process ran ``runs_in_one`` of them."""
    runs: list[Run] = []

    def enough() -> bool:
        submission = nectar.submit("review11", chain, "ProbeTask", {"n": len(runs) + 1})
        assert submission.run is not None
        runs.append(ended(nectar, submission.run.id))
        return max(Counter(map(pid_of, runs)).values()) >= runs_in_one

    wait_until(enough, timeout=240, interval=0)
    return runs


@pytest.fixture(scope="module")
def shared(luigid: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One worker and registry for the cases whose runs read a value the same or each its own in any process (each
    case its own chain file, its own runs): a process that ran other cases' chains before is one more a kept module
    must not carry into (CONTRIBUTING "(round 68, suitenectarB)")."""
    folder = tmp_path_factory.mktemp("review11")
    settings = module_settings(folder, scheduler_url=luigid, spare_idle=KEPT, runs_per_process=50)
    with module_worker(settings):
        yield settings


@pytest.mark.parametrize("case", CASES)
def test_each_run_reads_the_chain_module_as_a_fresh_execution_of_its_file_gives_it(
    case: str, shared: Settings, settings: Settings, luigid: str, start_worker: StartWorker
) -> None:
    chain = f"c{list(CASES).index(case)}_chain"
    expected = CASES[case][2]
    if expected == "own":  # a process's rehearsals must all be of this chain: a worker that ran no other chain
        settings = settings.replace(scheduler_url=luigid, spare_idle=KEPT, runs_per_process=50)
        nectar = closed_at_end(Nectar(settings))
        start_worker(settings, workers=1)
    else:
        nectar = closed_at_end(Nectar(shared))
    write_chain_file(nectar.settings, f"review11/{chain}", probe_source(case, chain))

    runs = runs_until_reused(nectar, chain, 4)

    assert [run.state for run in runs] == [RunState.DONE] * len(runs), [run.error for run in runs]
    seen = [(pid_of(run), reused(run), output(nectar, run)) for run in runs]
    if expected == "same":
        assert len({value for _, _, value in seen}) == 1, seen
    elif expected == "distinct":
        assert len({value for _, _, value in seen}) == len(seen), seen
    else:  # from a process's third run on: its first rehearsal, which made a task, was for its first or second
        nth = [sum(pid_of(earlier) == pid for earlier in runs[: at + 1]) for at, (pid, _, _) in enumerate(seen)]
        assert all(value == run.params["n"] for run, (_, _, value), n in zip(runs, seen, nth, strict=True) if n >= 3), (
            seen
        )


#: a module of the user's own beside the chains (a base class its chains share), which a chain imports
HELPER = """
import time


class StampedBase:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.STAMP = time.time_ns()
"""


def test_a_class_made_of_an_imported_base_whose_init_subclass_runs_reads_its_own_executions_value(
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: StartWorker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The base's ``__init_subclass__`` is code the chain file's source does not show, run at each execution."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "review11_helper.py").write_text(HELPER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(library), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(library))  # the test's own catalog imports the chain too
    monkeypatch.delitem(sys.modules, "review11_helper", raising=False)
    top = (
        "from review11_helper import StampedBase\n\n\nclass Helper(StampedBase):\n    pass\n\n\n"
        "def observe():\n    return Helper.STAMP\n\n\ndef change():\n    pass\n"
    )
    write_chain("review11/imported_base_chain", CHAIN.format(top=top, body=""))
    settings = settings.replace(scheduler_url=luigid, spare_idle=KEPT, runs_per_process=50)
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=1)

    try:
        runs = runs_until_reused(nectar, "imported_base_chain", 4)
    finally:
        sys.modules.pop("review11_helper", None)

    assert [run.state for run in runs] == [RunState.DONE] * len(runs), [run.error for run in runs]
    seen = [(pid_of(run), reused(run), output(nectar, run)) for run in runs]
    assert len({value for _, _, value in seen}) == len(seen), seen
