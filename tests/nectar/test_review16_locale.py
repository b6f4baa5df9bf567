"""review16 (round 62): a reused attempt process is as clean as a new one in the C library's locale. A run that sets
it (``locale.setlocale``: for its numbers' or dates' format, or ``"C"`` for a tool that wants it) leaves it set for
the next run in its process, as the time zone was before ``put_back`` took it back (``nectar/reuse.py``): under
``python -m luigi`` each run is a process of its own, which starts in the locale its environment says. The next run
then writes its text files in the encoding the locale says (``open()``'s default): ASCII after ``"C"``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nectar.registry import Run, RunState
from tests.conftest import wait_until
from tests.nectar.test_reuse import reused
from tests.nectar.test_review15_luigid_view import Served, served  # noqa: F401 (a fixture)
from tests.nectar.test_review16_none_default import under_luigi
from tests.nectar.test_spare import ended, pid_of

CHAIN = """
import json
import locale
import os

import luigi


class LocaleTask(luigi.Task):  # sets the process's locale, as a task formatting for its readers may
    n = luigi.IntParameter()

    def run(self):
        locale.setlocale(locale.LC_ALL, "C")


class WriterTask(luigi.Task):  # writes a text file in the encoding its process's locale says
    n = luigi.IntParameter()

    def run(self):
        seen = {"locale": locale.setlocale(locale.LC_ALL), "encoding": locale.getpreferredencoding(False)}
        with open(os.path.join(os.environ["REVIEW15_OUT"], f"seen-{self.n}"), "w") as out:
            out.write(json.dumps(seen) + "\\n# café\\n")
"""


def test_a_locale_one_run_set_is_not_the_next_runs_in_its_reused_process(
    served: Served,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    chain = write_chain("review15/locale_chain", CHAIN)
    said = under_luigi(chain, served.luigid, "WriterTask", {"n": "0"})
    assert (tmp_path / "seen-0").exists(), said
    expected = json.loads((tmp_path / "seen-0").read_text().splitlines()[0])
    pairs: list[tuple[Run, Run]] = []

    def run(task: str, n: int) -> Run:
        submission = served.nectar.submit("review15", "locale_chain", task, {"n": n})
        assert submission.run is not None
        return ended(served.nectar, submission.run.id)

    def a_writer_reused_after_a_setter() -> bool:
        """A LocaleTask then a WriterTask, until a writer ran in a process that had run a setter before (a worker
        keeps more than one process: its runs go round them)."""
        n = len(pairs) + 1
        setter = run("LocaleTask", n)
        assert setter.state == RunState.DONE, setter.error
        pairs.append((setter, run("WriterTask", n)))
        return reused(pairs[-1][1]) and pid_of(pairs[-1][1]) in {pid_of(setter) for setter, _ in pairs}

    wait_until(a_writer_reused_after_a_setter, timeout=120, interval=0)
    writer = pairs[-1][1]
    assert writer.state == RunState.DONE, (writer.worker, writer.error)
    assert json.loads((tmp_path / f"seen-{len(pairs)}").read_text().splitlines()[0]) == expected, writer.worker
