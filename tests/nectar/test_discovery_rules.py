"""Discovery that explains itself: the tasks a chain file hides and why, ``__nectar_tasks__``, aliases,
upstream tasks known without running, and the same names on luigi's own command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar.catalog import ChainCatalog
from nectar.catalog.loader import is_chain_task, load_chain_module
from nectar.config import Settings
from nectar.errors import ChainNotFound, TaskNotFound
from tests.conftest import settings_env

WriteChain = Callable[[str, str], Path]

#: six luigi tasks in the shapes of luigi's examples, none named ...Task: all hidden by the seed's rule
SIX_PLAIN = """
import luigi


class HelloWorld(luigi.Task):
    def run(self):
        print("hello world")


class Words(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("words.txt")


class Base(luigi.Task):
    day = luigi.DateParameter()


class Count(Base):
    def requires(self):
        return Words()

    def run(self):
        pass


class Everything(luigi.WrapperTask):
    def requires(self):
        yield HelloWorld()
        yield Count(day=__import__("datetime").date(2024, 1, 1))


class Top(luigi.Task):
    n = luigi.IntParameter(default=3)

    def requires(self):
        return {"count": Count(day=__import__("datetime").date(2024, 1, 1)), "hello": HelloWorld()}
"""

NOT_TASK = "its name does not end in Task; add it to __nectar_tasks__ to expose it"
NO_RUN = "it defines no run() and no requires() (a base class?); add it to __nectar_tasks__ to expose it"


def test_a_file_of_plain_luigi_tasks_says_why_each_is_hidden(chains_dir: Path, write_chain: WriteChain) -> None:
    """Before, this chain was listed with "tasks": [] and "error": null: hidden without a word."""
    write_chain("plain/six_chain", SIX_PLAIN)
    catalog = ChainCatalog(chains_dir)
    chain = catalog.chain("plain", "six_chain")

    assert (chain.tasks, chain.error) == ({}, None)
    assert chain.to_dict()["hidden"] == [
        {"name": "Base", "reason": NO_RUN},
        {"name": "Count", "reason": NOT_TASK},
        {"name": "Everything", "reason": NOT_TASK},
        {"name": "HelloWorld", "reason": NOT_TASK},
        {"name": "Top", "reason": NOT_TASK},
        {"name": "Words", "reason": NOT_TASK},
    ]
    with pytest.raises(
        TaskNotFound, match=f"HelloWorld is a luigi task of chain plain/six_chain but is not exposed: {NOT_TASK}"
    ):
        catalog.task("plain", "six_chain", "HelloWorld")


def test_a_hidden_task_says_its_schedules_and_triggers_are_not_used(chains_dir: Path, write_chain: WriteChain) -> None:
    """Before, a trigger or schedule on a hidden class (the README's ``LoadSales``, no ``Task`` suffix) vanished
    without a word: no trigger listed, no ``trigger_errors``, and a reason that did not say it went with the task."""
    write_chain(
        "ingest/sales_chain",
        """
import luigi
from nectar import NectarTask, Schedule, Trigger


class LoadSales(NectarTask):
    triggers = [Trigger("/data/landing/sales", glob="*.csv", param="path")]
    path = luigi.Parameter()

    def run(self):
        pass


class Daily(NectarTask):
    schedules = Schedule("0 3 * * *")
    triggers = [Trigger("/data/landing/daily", param="path")]
    path = luigi.Parameter()

    def run(self):
        pass


class Plain(NectarTask):
    def run(self):
        pass
""",
    )
    chain = ChainCatalog(chains_dir).chain("ingest", "sales_chain")

    assert chain.to_dict()["hidden"] == [
        {"name": "Daily", "reason": f"{NOT_TASK} (its schedules and triggers are not used while it is hidden)"},
        {"name": "LoadSales", "reason": f"{NOT_TASK} (its triggers are not used while it is hidden)"},
        {"name": "Plain", "reason": NOT_TASK},
    ]


def test_nectar_tasks_exposes_classes_by_name_with_their_upstream(chains_dir: Path, write_chain: WriteChain) -> None:
    listed = '__nectar_tasks__ = ["HelloWorld", "Count", "Everything", "Top"]\n'
    write_chain("plain/six_chain", SIX_PLAIN + listed)
    catalog = ChainCatalog(chains_dir)
    chain = catalog.chain("plain", "six_chain")

    assert list(chain.tasks) == ["Count", "Everything", "HelloWorld", "Top"]
    assert [h.name for h in chain.hidden] == ["Base", "Words"]
    requires = {name: info.requires for name, info in chain.tasks.items()}
    assert requires == {
        "Count": ("Words",),  # day is required: read from the source
        "Everything": ("HelloWorld", "Count"),  # yield in requires(), called
        "HelloWorld": (),
        "Top": ("Count", "HelloWorld"),  # a dict of tasks, called
    }
    assert catalog.task("plain", "six_chain", "HelloWorld").cls.__name__ == "HelloWorld"


@pytest.mark.parametrize(
    ("listed", "error"),
    [
        ('["HelloWorld", "Nope"]', "__nectar_tasks__: Nope is not defined in this file"),
        ('["luigi"]', "__nectar_tasks__: luigi is not a luigi task class (it is a module)"),
        ('"HelloWorld"', "__nectar_tasks__: it must be a list of class names, not a str"),
        (
            "[HelloWorld]",
            "__nectar_tasks__: it must hold class names (strings), not <class 'chains.plain.six_chain.HelloWorld'>",
        ),
    ],
)
def test_a_bad_nectar_tasks_list_is_the_chains_error(
    chains_dir: Path, write_chain: WriteChain, listed: str, error: str
) -> None:
    write_chain("plain/six_chain", f"{SIX_PLAIN}\n__nectar_tasks__ = {listed}\n")
    catalog = ChainCatalog(chains_dir)
    chain = catalog.chain("plain", "six_chain")
    assert (chain.error, chain.tasks, chain.import_failed) == (error, {}, False)
    with pytest.raises(ChainNotFound, match=f"chain plain/six_chain exposes no task: {error[:30]}"):
        catalog.task("plain", "six_chain", "HelloWorld")


def test_a_listed_task_imported_from_another_chain_is_an_error(chains_dir: Path, write_chain: WriteChain) -> None:
    write_chain(
        "plain/borrow_chain",
        "from chains.etl.sales_chain import CleanSalesTask, GenerateSalesTask as Gen\n__nectar_tasks__ = ['Gen']\n",
    )
    chain = ChainCatalog(chains_dir).chain("plain", "borrow_chain")
    assert chain.error == (
        "__nectar_tasks__: Gen is imported from chains.etl.sales_chain: a task is exposed by the file that defines it"
    )
    reason = "imported from chains.etl.sales_chain; it is not a task of this file"
    assert chain.to_dict()["hidden"] == [
        {"name": "CleanSalesTask", "reason": reason},
        {"name": "Gen", "reason": reason},
    ]


REQUIRES_SHAPES = """
import luigi
from luigi.util import requires

from chains.etl.sales_chain import CleanSalesTask
from nectar import NectarTask


class ATask(NectarTask):
    day = luigi.DateParameter()


class BTask(NectarTask):
    pass


class ReturnOneTask(NectarTask):
    day = luigi.DateParameter()

    def requires(self):
        return ATask(day=self.day)


class ListTask(NectarTask):
    day = luigi.DateParameter()

    def requires(self):
        return [ATask(day=self.day), BTask()]


class YieldTask(NectarTask):
    day = luigi.DateParameter()

    def requires(self):
        yield BTask()
        yield ATask(day=self.day)


class DictTask(NectarTask):
    day = luigi.DateParameter()

    def requires(self):
        return {"a": ATask(day=self.day), "sales": CleanSalesTask(day=self.day)}


class CloneTask(NectarTask):
    day = luigi.DateParameter()

    def requires(self):
        return self.clone(ATask)


@requires(ATask)
class DecoratedTask(NectarTask):
    pass


class RaisingTask(NectarTask):
    def requires(self):
        if True:
            raise RuntimeError("needs the network")
        return BTask()


class CalledTask(NectarTask):
    pick = luigi.Parameter(default="b")

    def requires(self):
        return BTask() if self.pick == "b" else ATask(day=None)


class InheritsTask(ReturnOneTask):
    pass
"""


def test_requires_shows_upstream_tasks_in_common_shapes(chains_dir: Path, write_chain: WriteChain) -> None:
    """Before, requires was [] for a call to a task not named ...Task and for any task of another chain file."""
    write_chain("shapes/req_chain", REQUIRES_SHAPES)
    tasks = ChainCatalog(chains_dir).chain("shapes", "req_chain").tasks
    assert {name: info.requires for name, info in tasks.items()} == {
        "ATask": (),
        "BTask": (),
        "CalledTask": ("BTask",),  # all defaults: called, so only the branch taken
        "CloneTask": ("ATask",),
        "DecoratedTask": ("ATask",),
        "DictTask": ("ATask", "etl/sales_chain/CleanSalesTask"),
        "InheritsTask": ("ATask",),
        "ListTask": ("ATask", "BTask"),
        "RaisingTask": ("BTask",),  # requires() raised: read from the source
        "ReturnOneTask": ("ATask",),
        "YieldTask": ("BTask", "ATask"),
    }


ALIASED = """
import luigi

from nectar import NectarTask


class Top10Artists(NectarTask):
    '''The ten most streamed artists.'''

    n = luigi.IntParameter(default=10)

    def run(self):
        print(f"top {self.n} artists", flush=True)
        with self.output().open("w") as out:
            out.write("artist\\n")


class Streams(NectarTask):
    '''Exposed by __nectar_tasks__, not by its name.'''

    def run(self):
        with self.output().open("w") as out:
            out.write("streams\\n")


class HelloWorld(luigi.Task):
    def output(self):
        return luigi.LocalTarget(f"{self.__class__.__name__}.out")

    def run(self):
        with self.output().open("w") as out:
            out.write("hello world\\n")


Top10ArtistsTask = Top10Artists
__nectar_tasks__ = ["Streams", "HelloWorld"]
"""


def test_an_alias_is_one_task_under_its_class_name(chains_dir: Path, write_chain: WriteChain) -> None:
    """Before, the alias was the task (Top10ArtistsTask) while its keys used the class name (Top10Artists)."""
    path = write_chain("music/artists_chain", ALIASED)
    catalog = ChainCatalog(chains_dir)
    chain = catalog.chain("music", "artists_chain")

    assert list(chain.tasks) == ["HelloWorld", "Streams", "Top10Artists"]
    top = catalog.task("music", "artists_chain", "Top10ArtistsTask")
    assert top is catalog.task("music", "artists_chain", "Top10Artists")
    assert (top.name, top.aliases, top.to_dict()["aliases"]) == (
        "Top10Artists",
        ("Top10ArtistsTask",),
        ["Top10ArtistsTask"],
    )
    instance = top.instantiate({"n": 3})
    assert top.key_of(instance) == instance.target_key  # the catalog's key and the task's own: one folder
    assert instance.target_key.task == "Top10Artists"

    module = load_chain_module(path, "music", "artists_chain")  # what a worker checks before it runs a task
    assert is_chain_task("Top10Artists", module.Top10Artists, module)
    assert is_chain_task("Streams", module.Streams, module)
    assert not is_chain_task("Base", None, module)


def luigi_command(settings: Settings, chains_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m luigi --module chains.music.artists_chain ... --local-scheduler`` where a user runs it."""
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(chains_dir.parent), **lifeline_env()}
    argv = [sys.executable, "-m", "luigi", "--module", "chains.music.artists_chain", *args, "--local-scheduler"]
    return subprocess.run(
        argv, cwd=chains_dir.parent, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize(
    ("name", "args", "output"),
    [
        ("Top10ArtistsTask", ["--n", "3"], "chains/music/artists_chain/Top10Artists"),  # an alias of a NectarTask
        ("Streams", [], "chains/music/artists_chain/Streams"),  # a NectarTask exposed by the list
        ("HelloWorld", [], "HelloWorld.out"),  # a plain luigi task exposed by the list
    ],
)
def test_exposed_names_work_on_luigis_command_line(
    settings: Settings, chains_dir: Path, write_chain: WriteChain, name: str, args: list[str], output: str
) -> None:
    write_chain("music/artists_chain", ALIASED)
    done = luigi_command(settings, chains_dir, name, *args)
    assert "This progress looks :) because there were no failed tasks" in done.stderr + done.stdout, done.stderr
    written = chains_dir.parent / output if output.endswith(".out") else settings.local_targets_dir / output
    assert written.exists(), f"{name} wrote nothing at {written}: {done.stderr}"
