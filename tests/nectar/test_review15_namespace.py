"""review15 (round 61): what a chain file sets in luigi's process-wide state as it is imported (its namespace,
``luigi.namespace(...)``; an option of luigi's configuration) is what a fresh import of the file as it is now sets, in
a reused attempt process and in the service's own process: what the file no longer sets (a hot reload) is not kept from
its last execution, and a namespace one chain sets for every module (luigi's default scope) does not name the tasks of
the next chain the process runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.registry import Run, RunState
from tests.conftest import wait_until
from tests.nectar.test_reuse import reused
from tests.nectar.test_review15_luigid_view import Served, served, served_runs  # noqa: F401 (a fixture)

TASK = """

class NsTask(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"family-{{self.n}}"))

    def run(self):
        with self.output().open("w") as out:
            json.dump(self.get_task_family(), out)
"""
HEAD = "import json\nimport os\n\nimport luigi\n{namespace}\n"


def families(worker: Served, out: Path, chain: str, first: int) -> list[tuple[str, str, Run]]:
    """NsTask of ``review15/<chain>`` run from ``n = first`` until one ran in a reused process: each run's family
    as its run found it, its task id, the run."""
    found: list[tuple[str, str, Run]] = []

    def until_reused() -> bool:
        n = first + len(found)
        ((_, run),) = served_runs(worker, chain, "NsTask", range(n, n + 1), RunState.DONE)
        found.append((json.loads((out / f"family-{n}").read_text()), run.task_id, run))
        return reused(run)

    wait_until(until_reused, timeout=120, interval=0)
    return found


@pytest.mark.parametrize(
    ("namespace", "then"),
    [
        # the file changed: the namespace it set for its own module dropped
        ('luigi.namespace("spam", scope=__name__)', "ns_chain"),
        # another chain, after one that set a namespace for every module (luigi's default scope)
        ('luigi.namespace("spam")', "plain_chain"),
    ],
)
def test_a_namespace_a_chain_file_set_names_no_task_of_a_later_execution_that_does_not_set_it(
    served: Served,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    namespace: str,
    then: str,
) -> None:
    write_chain("review15/ns_chain", HEAD.format(namespace=namespace) + TASK.format())
    assert {family for family, _, _ in families(served, tmp_path, "ns_chain", 100)} == {"spam.NsTask"}
    write_chain(f"review15/{then}", HEAD.format(namespace="") + TASK.format())  # luigi names its task NsTask
    seen = families(served, tmp_path, then, 200)
    assert [(family, task_id.split("_")[0]) for family, task_id, _ in seen] == [("NsTask", "NsTask")] * len(seen), seen


CONFIGURED = """import json
import os

import luigi
{setting}

class ConfigTask(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"word-{{self.n}}"))

    def run(self):
        with self.output().open("w") as out:
            json.dump(luigi.configuration.get_config().get("review15", "word", "none"), out)
"""


def test_a_luigi_option_the_chain_file_no_longer_sets_as_it_is_imported_is_not_kept(
    served: Served,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    """luigi's configuration set as a chain file is imported (``get_config().set(...)`` at its top), then the file
    changed not to: the next runs, fresh or reused, read luigi's configuration as the file now leaves it."""
    setting = 'luigi.configuration.get_config().set("review15", "word", "v1")'
    write_chain("review15/config_chain", CONFIGURED.format(setting=setting))
    words: list[tuple[str, Run]] = []

    def until_reused(first: int) -> Callable[[], bool]:
        def ran() -> bool:
            n = first + len(words)
            ((_, run),) = served_runs(served, "config_chain", "ConfigTask", range(n, n + 1), RunState.DONE)
            words.append((json.loads((tmp_path / f"word-{n}").read_text()), run))
            return reused(run)

        return ran

    wait_until(until_reused(100), timeout=120, interval=0)
    assert {word for word, _ in words} == {"v1"}, words
    words.clear()
    write_chain("review15/config_chain", CONFIGURED.format(setting=""))
    wait_until(until_reused(200), timeout=120, interval=0)
    assert [word for word, _ in words] == ["none"] * len(words), [(word, run.worker) for word, run in words]
