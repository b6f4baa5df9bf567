"""review23: an operator's `nectar` read or cancel run where there is no registry (another folder than the service's,
a mistyped ``NECTAR_DATA_DIR``) makes one: ``<data dir>/runs.sqlite3``, empty, and answers from it as if the service
had no such run ("no run <id>", "no run and no target for <key>", exit 2) or no schedule at all ("no schedules: declare
one on a task, or POST /api/schedules", exit 0). The service's runs are there, in the folder it was not run from; the
command names nothing of where it looked, and a read writes a registry (STYLE: "A read never writes")."""

from __future__ import annotations

from pathlib import Path

import pytest

from nectar.config import Settings
from tests.nectar.test_cli import nectar

RUN_ID = "01a252a699837a8ca992a82ca6c744e4"
KEY = "chains/testchains/hello_luigiworld_chain/TestS3Task/d41d8cd98f00b204e9800998ecf8427e/out.txt"


@pytest.mark.parametrize(
    "args", [("cancel", RUN_ID), ("status", KEY), ("schedules",), ("triggers",)], ids=lambda a: a[0]
)
def test_a_command_where_no_registry_is_makes_none_and_names_the_folder(
    settings: Settings, tmp_path: Path, args: tuple[str, ...]
) -> None:
    elsewhere = settings.replace(data_dir=tmp_path / "not-the-service" / "nectar_data")
    elsewhere.data_dir.parent.mkdir()  # the folder the command is run in (the helper's cwd)
    said = nectar(elsewhere, *args)
    assert not elsewhere.data_dir.exists(), (said.returncode, said.stdout, said.stderr)
    assert said.returncode == 2 and str(elsewhere.data_dir) in said.stderr, (said.returncode, said.stdout, said.stderr)
