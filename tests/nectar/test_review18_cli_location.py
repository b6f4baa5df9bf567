"""review18: ``nectar run`` and ``nectar status`` name where a plain luigi task's output is, as its API status does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from tests.nectar.test_cli import nectar

#: a plain luigi task with its own LocalTarget, as luigi's examples have (``/tmp/...``): no out.txt under a key
PLAIN_CHAIN = """
import os

import luigi


class PlainTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW18_OUT"], "plain.txt"))

    def run(self):
        with self.output().open("w") as out:
            out.write("plain\\n")
"""


@pytest.mark.parametrize("command", ["run", "status"])
def test_the_location_printed_is_the_plain_tasks_output(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path, command: str
) -> None:
    """README: "``run`` and ``status`` print a ``location:`` once the output exists". A plain ``luigi.Task`` writing a
    ``LocalTarget`` of its own (luigi's examples write to ``/tmp``) run by ``nectar run``: DONE, its file made; the
    location printed (by ``run``, then by ``status`` of the key it printed) is that file. On main it is
    ``<local_targets>/chains/review18/plain_chain/PlainTask/<md5>/out.txt``, which does not exist."""
    write_chain("review18/plain_chain", PLAIN_CHAIN)
    out = tmp_path / "outputs"
    out.mkdir()
    env = {"REVIEW18_OUT": str(out)}
    ran = nectar(settings, "run", "review18/plain_chain/PlainTask", **env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (out / "plain.txt").read_text() == "plain\n"
    said = ran.stdout
    if command == "status":
        key = next(line.split()[1] for line in said.splitlines() if line.startswith("key:"))
        said = nectar(settings, "status", key, **env).stdout
    locations = [line.split(None, 1)[1] for line in said.splitlines() if line.startswith("location:")]
    assert locations == [str(out / "plain.txt")], said
