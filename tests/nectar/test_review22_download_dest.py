"""review22 (on main): ``nectar download --dest`` given a path that is no folder it can make (an existing file, a
folder below a file) ends in a Python traceback, ``FileExistsError`` / ``NotADirectoryError`` out of
``Path.mkdir``, exit 1, after it asked the API for the task's runs; every other bad input of a ``nectar`` command is
one line naming it, exit 2 (``test_cli.py::test_bad_input_exits_2_naming_what_is_wrong``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import NECTAR, base_env, lifeline_env
from tests.helpers.module_api import module_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API the cases only read (the runs of a task: none)."""
    with module_api(tmp_path_factory.mktemp("review22-download")) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("made", ["a file", "below a file"])
def test_a_dest_that_cannot_be_a_folder_is_one_line_naming_it_exit_2(api: str, tmp_path: Path, made: str) -> None:
    """Fails on main: exit 1, ``FileExistsError: [Errno 17] File exists: '<dest>'`` (``NotADirectoryError`` below a
    file) at the end of a traceback."""
    (tmp_path / "taken").write_text("a file\n")
    dest = tmp_path / "taken" if made == "a file" else tmp_path / "taken" / "outputs"
    argv = [*NECTAR, "download", "testchains/hello_luigiworld_chain/TestS3Task", "--dest", str(dest), "--server", api]
    result = subprocess.run(
        argv, env=base_env() | lifeline_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, "Traceback" in result.stderr) == (2, False), result.stderr
    assert str(dest) in result.stderr and result.stderr.count("\n") == 1, result.stderr
