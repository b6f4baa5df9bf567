"""A data folder where luigid's state folder cannot be made stops ``nectar serve`` and ``nectar scheduler`` before
anything starts, in one line (exit 2), as a setting they cannot take does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import NECTAR, base_env, free_port, lifeline_env


@pytest.mark.parametrize("role", ["serve", "scheduler"])
def test_a_data_folder_where_luigids_state_cannot_be_kept_is_refused_in_one_line(tmp_path: Path, role: str) -> None:
    """``--data-dir`` under a file (as a read-only data folder, where ``<data dir>/luigid`` cannot be made either): a
    traceback, exit 1, before."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder\n")
    argv = [*NECTAR, role, "--data-dir", str(in_the_way / "data"), "--scheduler-port", str(free_port())]
    argv += ["--port", str(free_port()), "--chains-dir", str(tmp_path)] if role == "serve" else []
    env = {**base_env(), **lifeline_env()}

    refused = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    said = refused.stdout + refused.stderr
    assert refused.returncode == 2, said
    [line] = refused.stderr.splitlines()
    assert line == (
        f"nectar: luigid's state folder {in_the_way / 'data' / 'luigid'} cannot be made (Not a directory): give "
        "--data-dir a folder this user may write to"
    )
