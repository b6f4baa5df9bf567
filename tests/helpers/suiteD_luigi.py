"""``python -m luigi`` run once for a module's cases that each checked it first (round 70, suiteD).

review19's and review20's command tests are parametrized by the ``nectar`` command that runs a chain file (``chains``,
``run``, ``worker``...); each case first ran the same file with ``python -m luigi`` (~0.4 s of CPU, more for a
spawned pool) to show that luigi runs it, the same files, arguments and folder whatever the case. That run is made
once here, in the layout each case made (a copy of the repository's chains folder, as conftest's ``chains_dir``,
with the case's files), the first time a case asks for it; each case still asserts on what it made and said. A
case whose luigi run differs (other files, another task, other arguments) asks for another run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import REPO, lifeline_env


@dataclass(frozen=True)
class Ran:
    """A ``python -m luigi`` run: the folder its tasks wrote in (its ``out_var``) and what it printed."""

    out: Path
    said: str


class LuigiOnce:
    """``python -m luigi`` runs of a module's tests, each made once for its files, arguments and folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[tuple[object, ...], Ran] = {}

    def ran(self, files: Mapping[str, str], args: Sequence[str], out_var: str, where: str, path: str | None) -> Ran:
        """``python -m luigi <args>`` in ``<project>/<where>`` of a project holding the repository's chains folder and
        ``files`` (paths relative to the project), its tasks' folder in ``out_var``; ``PYTHONPATH`` is
        ``<project>/<path>``, or unset if ``path`` is None. Run the first time these are asked, its answer kept."""
        key = (tuple(sorted(files.items())), tuple(args), out_var, where, path)
        if key not in self.done:
            project = self.root / f"project-{len(self.done)}"
            shutil.copytree(REPO / "chains", project / "chains", ignore=shutil.ignore_patterns("__pycache__"))
            for name, source in files.items():
                (project / name).parent.mkdir(parents=True, exist_ok=True)
                (project / name).write_text(source)
            out = project / "under_luigi"
            env = {**os.environ, out_var: str(out), **lifeline_env()}
            env.pop("PYTHONPATH", None)
            env |= {"PYTHONPATH": str(project / path)} if path is not None else {}
            argv = [sys.executable, "-m", "luigi", *args]
            done = subprocess.run(argv, env=env, cwd=project / where, capture_output=True, text=True, timeout=120)
            self.done[key] = Ran(out, done.stdout + done.stderr)
        return self.done[key]


@pytest.fixture(scope="module")
def luigi_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LuigiOnce]:
    """The module's :class:`LuigiOnce`."""
    yield LuigiOnce(tmp_path_factory.mktemp("luigi_once"))
