"""What a chain module's execution sets in luigi's process-wide state is held to that execution
(:mod:`nectar.catalog.luigi_state`), in the test's own process: each chain file executed as the service executes it
(:func:`nectar.catalog.loader.load_chain_module`), again and again, changed between."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import luigi
import luigi.configuration
import pytest

from nectar.catalog.loader import load_chain_module
from nectar.catalog.luigi_state import forget_module
from nectar.luigi_internals import task_namespaces
from nectar.task import chain_module

HEAD = "import luigi\n\n"
HANDLER = """
@luigi.Task.event_handler(luigi.Event.START)
def started(task):
    pass
"""
SET = 'luigi.configuration.get_config().set("luigi_state_test", "word", {word!r})\n'
TASK = "\n\nclass StateTask(luigi.Task):\n    pass\n"


@pytest.fixture
def executed(tmp_path: Path) -> Iterator[Callable[[str, str], luigi.Task]]:
    """``executed(chain, source)``: the chain file ``luigi_state/<chain>.py`` written with ``source`` and executed
    as the service executes it, its task class made; each module forgotten after the test, and luigi's configuration
    and namespaces as they were."""
    config = luigi.configuration.get_config()
    namespaces = dict(task_namespaces())
    names: list[str] = []

    def execute(chain: str, source: str) -> luigi.Task:
        path = tmp_path / f"{chain}.py"
        path.write_text(source)
        names.append(chain_module("luigi_state", chain))
        module = load_chain_module(path, "luigi_state", chain)
        return module.StateTask()

    yield execute
    for name in names:
        forget_module(name)
    config.remove_section("luigi_state_test")
    task_namespaces().clear()
    task_namespaces().update(namespaces)


def handlers_of(name: str) -> int:
    """How many of luigi's START handlers of every task were made in the module ``name``."""
    called = luigi.Task._event_callbacks.get(luigi.Task, {}).get(luigi.Event.START, set())
    return sum(getattr(handler, "__module__", None) == name for handler in called)


def word() -> str:
    return str(luigi.configuration.get_config().get("luigi_state_test", "word", "none"))


def test_a_chain_module_executed_again_registers_its_handlers_once(
    executed: Callable[[str, str], luigi.Task],
) -> None:
    name = chain_module("luigi_state", "handled_chain")
    for _ in range(3):
        executed("handled_chain", HEAD + HANDLER + TASK)
        assert handlers_of(name) == 1
    executed("handled_chain", HEAD + TASK)  # the file changed: no handler
    assert handlers_of(name) == 0


def test_a_namespace_holds_for_the_execution_that_set_it(executed: Callable[[str, str], luigi.Task]) -> None:
    scoped = executed("spaced_chain", HEAD + 'luigi.namespace("spam", scope=__name__)\n' + TASK)
    assert scoped.get_task_family() == "spam.StateTask"
    assert executed("spaced_chain", HEAD + TASK).get_task_family() == "StateTask"  # a hot reload
    assert executed("global_chain", HEAD + 'luigi.namespace("eggs")\n' + TASK).get_task_family() == "eggs.StateTask"
    assert executed("other_chain", HEAD + TASK).get_task_family() == "StateTask"  # the next chain


def test_an_option_a_chain_file_no_longer_sets_is_not_read_and_another_chains_stays(
    executed: Callable[[str, str], luigi.Task],
) -> None:
    executed("set_chain", HEAD + SET.format(word="v1") + TASK)
    assert word() == "v1"
    executed("set_chain", HEAD + SET.format(word="v2") + TASK)
    assert word() == "v2"
    executed("set_chain", HEAD + TASK)  # the file no longer sets it
    assert word() == "none"
    executed("set_chain", HEAD + SET.format(word="v3") + TASK)
    executed("reader_chain", HEAD + TASK)  # another chain's execution leaves it: one that imports it reads it
    assert word() == "v3"


def test_a_chain_module_first_imported_by_another_chain_files_execution_keeps_its_options_for_the_importer(
    executed: Callable[[str, str], luigi.Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain module imported by Python's import as another chain file is executed (``chains`` on the path) sets an
    option as it is imported: the option is its own, not its importer's, so the importer executed again (its next
    run in a reused process, a hot reload), which finds the module in ``sys.modules``, still reads it, as each
    ``python -m luigi`` of the importer does."""
    folder = tmp_path / "chains" / "luigi_state"
    folder.mkdir(parents=True)
    (folder / "imported_chain.py").write_text(HEAD + SET.format(word="imported"))
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = chain_module("luigi_state", "imported_chain")
    importer = HEAD + f"import {imported}\n" + TASK
    try:
        for _ in range(3):
            executed("importer_chain", importer)
            assert word() == "imported"
        executed("other_chain", HEAD + TASK)  # another chain's execution leaves it
        assert word() == "imported"
    finally:
        forget_module(imported)
        sys.modules.pop(imported, None)
