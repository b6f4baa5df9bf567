"""A chain module kept from one run to the next in a reused attempt process, only where its file's import would make
the same module again and each run left it exactly as executed (:mod:`nectar.catalog.keepable`,
:mod:`nectar.catalog.kept`): real ``nectar worker``\\ s and luigid where a run is involved, the rule on sources."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from nectar import attempt
from nectar.catalog import kept
from nectar.catalog.keepable import keepable
from nectar.catalog.loader import fresh_chain_module, load_ahead
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.luigi_internals import forget_task_classes
from nectar.registry import Run, RunState
from nectar.service import Nectar
from nectar.task import chain_module
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import KEPT, ended

StartWorker = Callable[..., subprocess.Popen[bytes]]

#: what each run of the chains below writes: whether its module is one a run before it in its process ran in
#: (kept), then what it read of the module (its global, a class attribute, a parameter's description, a function's
#: default, whether luigi holds a class a run made in its name, whether a class was registered as a virtual subclass
#: of its task), before it changes what ``how`` names
TASK = """
class KeptTask(NectarTask):
    LABEL = "fresh"
    n = luigi.IntParameter()
    how = luigi.Parameter(default="", description="fresh")

    def run(self):
        module = sys.modules[__name__]
        seen = builtins.__dict__.setdefault("_kept_modules_test", [])
        again = any(earlier is module for earlier in seen)
        seen.append(module)  # held: no later module is given an earlier one's address
        cls = type(self)
        extra = any(c.__name__ == "ExtraTask" and c.__module__ == __name__ for c in task_classes())
        virtual = issubclass(bytearray, cls)
        read = [WORD, cls.LABEL, cls.how.description, greet(), str(extra), str(virtual), str(STARTED)]
        if self.how == "global":
            globals()["WORD"] = "changed"
        elif self.how == "class":
            cls.LABEL = "changed"
        elif self.how == "parameter":
            cls.how.description = "changed"
        elif self.how == "defaults":
            greet.__defaults__ = ("changed",)
        elif self.how == "new class":
            type("ExtraTask", (luigi.Task,), {"__module__": __name__})
        elif self.how == "virtual subclass":
            cls.register(bytearray)
        with self.output().open("w") as out:
            out.write(" ".join(["kept" if again else "new", *read]) + "\\n")
"""
HEAD = """
import builtins
import sys

import luigi

from nectar import NectarTask
from nectar.luigi_internals import task_classes

WORD = {word!r}
STARTED = 0


def greet(word="fresh"):
    return word
"""


def chain(word: str = "fresh", more: str = "") -> str:
    """A chain of :data:`TASK` whose module global ``WORD`` is ``word``, its source ending with ``more``."""
    return HEAD.format(word=word) + TASK + more


#: what makes a chain's source not keepable, each for one reason (appended to a keepable one)
NOT_KEEPABLE = {
    "a call": "\nimport time\n\nSTARTED = time.time()\n",
    "a mutable literal": "\nSEEN = []\n",
    "a decorator": "\nimport functools\n\n\n@functools.lru_cache\ndef cached():\n    return 1\n",
    "a comprehension": "\nNAMES = (name for name in 'ab')\n",
}
#: a chain whose run changes the keepable chain's module (through ``sys.modules``) if this process holds it
OTHER = """
import sys

import luigi

from nectar import NectarTask


class OtherTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        module = sys.modules.get("chains.keep.keep_chain")
        if module is not None:
            module.WORD = "changed by another chain"
        with self.output().open("w") as out:
            out.write("other\\n")
"""
FRESH = "fresh fresh fresh fresh False False"


@pytest.fixture
def keeping(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path]) -> Settings:
    write_chain("keep/keep_chain", chain())
    return settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=0, runs_per_process=1000)


class Ran:
    """Runs submitted one after the other to one worker slot, each with the process it ran in and what it wrote."""

    def __init__(self, nectar: Nectar) -> None:
        self.nectar = nectar
        self.runs: list[tuple[Run, str]] = []

    def one(self, task: str = "KeptTask", chain: str = "keep_chain", **params: object) -> tuple[Run, str]:
        submission = self.nectar.submit("keep", chain, task, {"n": len(self.runs), **params})
        assert submission.run is not None
        run = ended(self.nectar, submission.run.id)
        assert run.state == RunState.DONE, run.error
        written = self.nectar.store.read_text(TargetKey.parse(run.key)).strip()
        self.runs.append((run, written))
        return run, written

    def until(self, done: Callable[[], bool], how: str = "") -> None:
        """Runs of KeptTask (changing what ``how`` names) one after the other until ``done()``: which process takes
        each depends on which spare is ready first, so how many it takes is not counted; the deadline only fails a
        worker that never gets there."""

        def next_run() -> bool:
            self.one(how=how)
            return done()

        wait_until(next_run, timeout=180, interval=0)

    def process(self) -> str:
        """The process of the last run (``host:pid``)."""
        return (self.runs[-1][0].worker or "").split(".")[0]

    def earlier_in_its_process(self) -> int:
        """How many runs the process of the last run ran before it (``host:pid.n``: n - 1)."""
        found = re.fullmatch(r".*:\d+(?:\.(\d+))?", self.runs[-1][0].worker or "")
        assert found is not None
        return int(found.group(1) or 1) - 1


def test_a_keepable_chain_run_again_in_one_process_keeps_its_module_and_runs_right(
    keeping: Settings, start_worker: StartWorker
) -> None:
    ran = Ran(closed_at_end(Nectar(keeping)))
    start_worker(keeping, workers=1)

    ran.until(lambda: ran.runs[-1][1].startswith("kept"))

    assert ran.runs[-1][1] == f"kept {FRESH} 0"
    assert ran.earlier_in_its_process() >= 1
    assert all(written.split(" ", 1)[1] == f"{FRESH} 0" for _, written in ran.runs)


@pytest.mark.parametrize("how", ["global", "class", "parameter", "defaults", "new class", "virtual subclass"])
def test_a_run_that_changes_the_module_leaves_the_next_run_a_fresh_one(
    keeping: Settings, start_worker: StartWorker, how: str
) -> None:
    ran = Ran(closed_at_end(Nectar(keeping)))
    start_worker(keeping, workers=1)

    # each run reads the module, then changes it: a run in a process whose runs before it changed the module (its
    # second ran in the module executed ahead, the one a process keeps) reads it as a fresh execution makes it
    ran.until(lambda: ran.earlier_in_its_process() >= 2, how=how)

    assert ran.runs[-1][1] == f"new {FRESH} 0"
    assert [written for _, written in ran.runs if written != f"new {FRESH} 0"] == []


@pytest.mark.parametrize("why", sorted(NOT_KEEPABLE))
def test_a_chain_whose_source_is_not_keepable_is_executed_anew_for_each_run(
    keeping: Settings, start_worker: StartWorker, write_chain: Callable[[str, str], Path], why: str
) -> None:
    write_chain("keep/keep_chain", chain(more=NOT_KEEPABLE[why]))
    ran = Ran(closed_at_end(Nectar(keeping)))
    start_worker(keeping, workers=1)

    ran.until(lambda: ran.earlier_in_its_process() >= 2)

    assert ran.runs[-1][1].startswith(f"new {FRESH} ")
    assert [written for _, written in ran.runs if not written.startswith("new ")] == []
    if why == "a call":  # STARTED = time.time(): each execution's own
        started = [written.rsplit(" ", 1)[1] for _, written in ran.runs]
        assert len(set(started)) == len(started)


def test_a_changed_file_is_executed_anew_though_its_module_was_kept(
    keeping: Settings, start_worker: StartWorker, write_chain: Callable[[str, str], Path]
) -> None:
    ran = Ran(closed_at_end(Nectar(keeping)))
    start_worker(keeping, workers=1)
    ran.until(lambda: ran.runs[-1][1].startswith("kept"))

    write_chain("keep/keep_chain", chain("v2"))
    after = len(ran.runs)
    since: list[str] = []  # the processes of the runs since the change

    def twice_in_one_process() -> bool:  # its second run since the change: it was set up again after it
        pid = ran.process()
        since.append(pid)
        return since.count(pid) > 1

    ran.until(twice_in_one_process)

    assert [written.split(" ")[1] for _, written in ran.runs[after:]] == ["v2"] * (len(ran.runs) - after)


def test_a_run_of_another_chain_between_two_runs_changes_nothing_the_next_run_sees(
    keeping: Settings, start_worker: StartWorker, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("keep/other_chain", OTHER)
    ran = Ran(closed_at_end(Nectar(keeping)))
    start_worker(keeping, workers=1)
    ran.until(lambda: ran.runs[-1][1].startswith("kept"))
    last: dict[str, str] = {}  # by process: the chain of its last run
    followed: list[str] = []  # what each run of keep_chain read that came after another chain's in its process

    def alternate() -> bool:
        for name, task in (("other_chain", "OtherTask"), ("keep_chain", "KeptTask")):
            _, written = ran.one(task, name)
            pid = ran.process()
            if name == "keep_chain" and last.get(pid) == "other_chain":
                followed.append(written)
            last[pid] = name
        return len(followed) >= 2

    wait_until(alternate, timeout=180, interval=0)

    assert [written for _, written in ran.runs if written != "other" and written.split(" ", 1)[1] != f"{FRESH} 0"] == []


def test_a_chain_file_changed_between_two_set_ups_is_executed_anew_not_kept(
    settings: Settings, write_chain: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kept, "_KEPT", None)  # this process's, as a spare's is: what it keeps is the test's
    path = write_chain("keep/keep_chain", chain())
    name = chain_module("keep", "keep_chain")

    def set_up_and_taken() -> ModuleType:  # a spare's set-up, then its attempt's taking of the module
        assert load_ahead(path, "keep", "keep_chain", 60.0)
        return fresh_chain_module(path, "keep", "keep_chain")

    try:
        first = set_up_and_taken()
        kept.after_run()
        assert set_up_and_taken() is first  # unchanged, and left as executed: kept
        kept.after_run()
        write_chain("keep/keep_chain", chain("v2"))  # between a run's put-back and the next set-up
        again = set_up_and_taken()
        assert again is not first
        assert again.WORD == "v2"
    finally:
        forget_task_classes(name)
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "source",
    [
        (
            '"""doc"""\n'
            "from __future__ import annotations\n"
            "import os.path\n"
            "import luigi.parameter as lp\n"
            "X = -1\n"
            'Y = (1, "a", b"b", None, True, 2.5)\n'
            "Z = frozenset({1, 2})\n"
        ),
        "import logging\nlogger = logging.getLogger(__name__)\nnamed = logging.getLogger('x')\n",
        (
            "import luigi\n"
            "class A(luigi.Task):\n"
            "    '''doc'''\n"
            "    n: int = luigi.IntParameter(default=1)\n"
            "    m = luigi.parameter.Parameter()\n"
            "    K = 'k'\n"
            "    @property\n"
            "    def p(self):\n"
            "        return 1\n"
            "    @staticmethod\n"
            "    def s(x=1, *, y=None):\n"
            "        return x\n"
        ),
        "from luigi import IntParameter, Task\nclass B(Task):\n    n = IntParameter(default=3)\n",
        (
            "def f(a: int, b: list[int] | None = None) -> dict[str, int]:\n"
            "    global_ = [1]\n"
            "    return {}\n"
            "if __name__ == '__main__':\n"
            "    f(1)\n"
            "    print([x for x in 'ab'])\n"
        ),
        (
            "import typing\n"
            "import luigi\n"
            "from typing import Optional\n"
            "X: Optional[int] = 0\n"
            "Y: typing.Union[int, str] = 0\n"
            "class A(luigi.Task):\n"
            "    n: luigi.Parameter | None = None\n"
        ),
    ],
)
def test_the_rule_keeps_these_sources(source: str) -> None:
    assert keepable(ast.parse(source)) is not None


#: the chain files the repository ships, which a newcomer copies: each keepable, so that what they show is kept
SHIPPED = sorted(Path(__file__).resolve().parents[2].glob("chains/*/*_chain.py"))


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_the_chain_files_the_repository_ships_are_keepable(path: Path) -> None:
    assert keepable(ast.parse(path.read_text(), str(path))) is not None


@pytest.mark.parametrize(
    "source",
    [
        "import time\nSTARTED = time.time()\n",
        "SEEN = []\n",
        "SEEN = {}\n",
        "import functools\n@functools.cache\ndef f():\n    return 1\n",
        "NAMES = tuple(x for x in 'ab')\n",
        "NAMES = (x for x in 'ab')\n",
        "X = 1\ndef f():\n    global X\n    X = 2\n",
        "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n",
        "import luigi\nclass A(luigi.Task):\n    n = luigi.IntParameter(default=[1])\n",
        "import luigi\nclass A(luigi.Task):\n    items = []\n",
        (
            "import luigi\n"
            "class A(luigi.Task):\n"
            "    def __init_subclass__(cls, **kwargs):\n"
            "        cls.made = id(cls)\n"
            "class B(A):\n"
            "    pass\n"
        ),
        "import luigi\nclass A(luigi.Task):\n    n = luigi.IntParameter(default=len('ab'))\n",
        "import luigi\ndef make():\n    return 1\nclass A(luigi.Task):\n    n = make()\n",
        "import luigi\n@luigi.util.requires(luigi.Task)\nclass A(luigi.Task):\n    pass\n",
        "import luigi\nclass A(luigi.Task):\n    @functools.cache\n    def f(self):\n        return 1\n",
        "import luigi\nluigi = 3\nclass A:\n    n = luigi.IntParameter()\n",
        "from . import sibling\n",
        "from os import *\n",
        "def f(x=[]):\n    return x\n",
        "if __name__ == '__main__':\n    pass\nelse:\n    X = 1\n",
        "import logging\nlogger = logging.getLogger(__name__ + 'x')\n",
        "X = f'{1}'\n",
        "def f(a: make()):\n    pass\n",
        # a dunder name bound: a main block that runs, a module's hooks
        '__name__ = "__main__"\nif __name__ == "__main__":\n    X = 1\n',
        'from __main__ import __name__\nif __name__ == "__main__":\n    X = 1\n',
        "import luigi\nclass A(luigi.Task):\n    __module__ = 'elsewhere'\n",
        "def __getattr__(name):\n    return name\n",
        # a name the rule reads as a builtin bound by an import
        "from collections import deque as frozenset\nLIMITS = frozenset((1, 2))\n",
        "from functools import cache as staticmethod\nclass A:\n    @staticmethod\n    def f():\n        return []\n",
        "from builtins import list as tuple\n",
        "import os as property\n",
        # an annotation evaluated as the file is executed subscripting or joining a class of the user's own module
        "from mylib import Stamp\nX: Stamp[0] = 0\n",
        "import mylib\ndef f(a: mylib.Stamp | None):\n    pass\n",
        "import luigi\nfrom mylib import Stamp\nclass A(luigi.Task):\n    x: dict[str, Stamp[0]] = None\n",
    ],
)
def test_the_rule_refuses_these_sources(source: str) -> None:
    assert keepable(ast.parse(source)) is None


#: a keepable chain whose helper function a run may change in ways its module's dict does not show
HELPER_CHAIN = """
import luigi

from nectar import NectarTask


def helper(a: int = 1, *, x=1) -> int:
    \"\"\"The file's.\"\"\"
    return a + x


class HelperTask(NectarTask):
    n = luigi.IntParameter()
"""


@pytest.fixture
def fresh_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's kept module and rehearsals, as a new spare's are: what it keeps is the test's."""
    monkeypatch.setattr(kept, "_KEPT", None)
    monkeypatch.setattr(attempt, "_rehearsed", set())


def set_up(path: Path, chain_name: str, task: str | None = None) -> ModuleType:
    """A spare's set-up of the chain file ``keep/<chain_name>`` (rehearsing ``task`` with n=1, as a worker's spare
    does), then its attempt's taking of the module."""
    rehearsal = None if task is None else (lambda module: attempt.rehearse(module, task, {"n": "1"}))
    assert load_ahead(path, "keep", chain_name, 60.0, rehearsal)
    return fresh_chain_module(path, "keep", chain_name)


#: a keepable chain whose class's property and staticmethod objects a run may change
METHODS_CHAIN = """
class Helper:
    @property
    def value(self):
        \"\"\"The file's.\"\"\"
        return 1

    @staticmethod
    def helper():
        return 1
"""
#: by chain: its source, the task its spare rehearses (None: none), and what a fresh execution of it reads
FRESH_READS: dict[str, tuple[str, str | None, Callable[[ModuleType], object], object]] = {
    "helper_chain": (
        HELPER_CHAIN,
        "HelperTask",
        lambda module: (
            [getattr(module.helper, name) for name in ("__doc__", "__annotations__", "__kwdefaults__")]
            + [getattr(module.helper, name) for name in ("__name__", "__qualname__", "__module__")]
        ),
        ["The file's.", {"a": int, "return": int}, {"x": 1}, "helper", "helper", "chains.keep.helper_chain"],
    ),
    "methods_chain": (
        METHODS_CHAIN,
        None,
        lambda module: (vars(module.Helper)["value"].__doc__, hasattr(vars(module.Helper)["helper"], "mark")),
        ("The file's.", False),
    ),
}
#: what a run does to a chain's module, each a change a fresh execution would not show: (the chain, the change)
RUN_CHANGES: dict[str, tuple[str, Callable[[ModuleType], None]]] = {
    "a function's docstring": ("helper_chain", lambda module: setattr(module.helper, "__doc__", "changed")),
    "a function's annotations rebound": ("helper_chain", lambda module: setattr(module.helper, "__annotations__", {})),
    "a function's annotations changed in place": (
        "helper_chain",
        lambda module: module.helper.__annotations__.update(changed=int),
    ),
    "a function's keyword-only defaults changed in place": (
        "helper_chain",
        lambda module: module.helper.__kwdefaults__.update(x=2),
    ),
    "a function's qualified name": ("helper_chain", lambda module: setattr(module.helper, "__qualname__", "changed")),
    "a function's name": ("helper_chain", lambda module: setattr(module.helper, "__name__", "changed")),
    "a function's module": ("helper_chain", lambda module: setattr(module.helper, "__module__", "changed")),
    "a property's docstring": (
        "methods_chain",
        lambda module: setattr(vars(module.Helper)["value"], "__doc__", "changed"),
    ),
    "a staticmethod's attribute": (
        "methods_chain",
        lambda module: setattr(vars(module.Helper)["helper"], "mark", "changed"),
    ),
}


@pytest.mark.usefixtures("fresh_kept")
@pytest.mark.parametrize("change", sorted(RUN_CHANGES))
def test_a_run_that_changes_what_the_modules_dicts_do_not_show_leaves_the_next_run_a_fresh_module(
    write_chain: Callable[[str, str], Path], change: str
) -> None:
    """A function's docstring, annotations, names, keyword defaults; a property's or a staticmethod's own state."""
    chain_name, changed = RUN_CHANGES[change]
    source, task, read, fresh = FRESH_READS[chain_name]
    path = write_chain(f"keep/{chain_name}", source)
    try:
        first = set_up(path, chain_name, task)
        kept.after_run()
        assert set_up(path, chain_name, task) is first  # left as executed: kept
        changed(first)  # the run
        kept.after_run()
        again = set_up(path, chain_name, task)
        assert again is not first
        assert read(again) == fresh
    finally:
        forget_task_classes(chain_module("keep", chain_name))
        sys.modules.pop(chain_module("keep", chain_name), None)


#: a keepable chain whose task's making sets a class attribute (as a spare's rehearsal makes its first task)
MAKING_SETS = """
import luigi

from nectar import NectarTask


class MakingTask(NectarTask):
    n = luigi.IntParameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "first" not in vars(MakingTask):
            MakingTask.first = self.n
"""


@pytest.mark.usefixtures("fresh_kept")
def test_what_the_rehearsals_task_set_on_its_class_makes_the_module_executed_anew(
    write_chain: Callable[[str, str], Path],
) -> None:
    path = write_chain("keep/making_chain", MAKING_SETS)
    try:
        first = set_up(path, "making_chain", "MakingTask")  # its rehearsal made a task of n=1
        assert first.MakingTask.first == 1
        kept.after_run()
        again = set_up(path, "making_chain", "MakingTask")
        assert again is not first
        assert "first" not in vars(again.MakingTask)  # as a fresh execution has it: this process rehearsed before
    finally:
        forget_task_classes(chain_module("keep", "making_chain"))
        sys.modules.pop(chain_module("keep", "making_chain"), None)


@pytest.mark.usefixtures("fresh_kept")
def test_a_task_class_rehearsed_and_made_is_still_kept_what_nectar_caches_on_it_is_ours(
    write_chain: Callable[[str, str], Path],
) -> None:
    """The caches nectar sets on a task class as its tasks are made (:data:`kept.OURS`) leave the module kept."""
    path = write_chain("keep/keep_chain", chain(more="\n\nclass SubTask(KeptTask):\n    pass\n"))
    try:
        first = set_up(path, "keep_chain", "KeptTask")
        first.KeptTask.from_str_params({"n": "2", "how": ""})  # the run's task
        first.SubTask.from_str_params({"n": "3"})  # its making keeps what KeptTask gives it on KeptTask
        first.KeptTask.chain_ref()
        assert [name for name in kept.OURS if vars(first.KeptTask)[name] is None] == []
        kept.after_run()
        assert set_up(path, "keep_chain", "KeptTask") is first
    finally:
        forget_task_classes(chain_module("keep", "keep_chain"))
        sys.modules.pop(chain_module("keep", "keep_chain"), None)


#: modules of the user's own beside the chains, each with a base class whose making of a subclass runs their code
LIBRARIES = {
    "__init_subclass__": (
        "import time\n\n\nclass Base:\n    def __init_subclass__(cls, **kwargs):\n"
        "        super().__init_subclass__(**kwargs)\n        cls.STAMP = time.time_ns()\n"
    ),
    "a metaclass": (
        "import time\n\n\nclass Meta(type):\n    def __init__(cls, *args):\n"
        "        super().__init__(*args)\n        cls.STAMP = time.time_ns()\n\n\n"
        "class Base(metaclass=Meta):\n    pass\n"
    ),
    "__mro_entries__": (
        "import time\n\n\nclass Plain:\n    pass\n\n\nclass Entries:\n    def __mro_entries__(self, bases):\n"
        "        Plain.STAMP = time.time_ns()\n        return (Plain,)\n\n\nBase = Entries()\n"
    ),
    "__class_getitem__": (
        "import time\n\n\nclass Base:\n    def __class_getitem__(cls, item):\n        return time.time_ns()\n"
    ),
    "nothing": "class Base:\n    STAMP = 0\n",
}


@pytest.mark.usefixtures("fresh_kept")
@pytest.mark.parametrize("hook", sorted(LIBRARIES))
def test_a_class_made_of_a_users_base_whose_making_runs_its_code_is_not_kept(
    write_chain: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    name = f"kept_library_{sorted(LIBRARIES).index(hook)}"
    (library / f"{name}.py").write_text(LIBRARIES[hook])
    monkeypatch.syspath_prepend(str(library))
    monkeypatch.delitem(sys.modules, name, raising=False)
    source = f"from {name} import Base\n\n\nclass Helper(Base):\n    pass\n"
    assert keepable(ast.parse(source)) is not None  # its source alone is keepable
    path = write_chain("keep/base_chain", source)
    try:
        first = set_up(path, "base_chain")
        kept.after_run()
        assert (set_up(path, "base_chain") is first) == (hook == "nothing")
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop(chain_module("keep", "base_chain"), None)
