"""The secret file in the data folder is created whole or not at all, and every creator agrees on one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nectar.config import Settings
from nectar.signing import SECRET_FILE, load_secret

FAILING_CREATOR = (
    "import resource, sys; from pathlib import Path; resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); "
    "from nectar.config import Settings; from nectar.signing import load_secret; "
    "load_secret(Settings.from_env(data_dir=Path(sys.argv[1])), {})"
)


def test_a_creator_stopped_part_way_leaves_no_file_and_the_next_start_makes_it(tmp_path: Path) -> None:
    """A process whose write of the new secret fails (here for real: a file size limit of 0, as a full disk would)
    leaves no file behind: before, the file was created empty first, and every later start was refused with
    'secret file ... is empty'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")}
    failed = subprocess.run([sys.executable, "-c", FAILING_CREATOR, str(tmp_path)], env=env, capture_output=True)
    assert failed.returncode != 0
    assert b"File too large" in failed.stderr, failed.stderr.decode()
    assert sorted(tmp_path.iterdir()) == []

    secret = load_secret(Settings.from_env(data_dir=tmp_path), {})

    assert len(secret) == 64
    assert (tmp_path / SECRET_FILE).read_bytes() == secret
    assert oct((tmp_path / SECRET_FILE).stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == [SECRET_FILE]


def test_the_first_creators_secret_is_everyones(tmp_path: Path) -> None:
    """A second process that finds the file (or loses the race to link it) reads the first one's secret."""
    settings = Settings.from_env(data_dir=tmp_path)
    first = load_secret(settings, {})
    env = {k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")}
    probe = (
        "import sys; from pathlib import Path; from nectar.config import Settings; from nectar.signing import "
        "load_secret; print(load_secret(Settings.from_env(data_dir=Path(sys.argv[1])), {}).decode())"
    )
    second = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], env=env, capture_output=True, check=True)
    assert second.stdout.decode().strip() == first.decode()
