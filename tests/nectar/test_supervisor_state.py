"""luigid's state folder held by one luigid: a data folder where it cannot be made stops ``nectar serve`` and ``nectar
scheduler`` before anything starts, in one line (exit 2), as a setting they cannot take does; the hold is in serve and
its luigid alone, and gone with them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from harness import NECTAR, alive, arguments, base_env, free_port, lifeline_env, waitfor
from tests.faults.conftest import cmdline, descendants
from tests.nectar.test_serve import _serve


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


def holders(path: Path, pids: list[int]) -> set[int]:
    """Which of ``pids`` have ``path`` open (gone processes aside)."""
    found = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    found.add(pid)
    return found


def test_only_luigid_and_serve_hold_the_state_and_a_serve_killed_frees_it_for_the_next(tmp_path: Path) -> None:
    """The hold of luigid's state folder is in ``nectar serve`` and its luigid alone (no API or worker process,
    which could outlive luigid and refuse the next ``serve``); ``serve`` killed (-9), its parts stop with it, and a
    ``serve`` started again on the same data folder and ports comes up."""
    with contextlib.contextmanager(_serve)(tmp_path, {}) as served:
        lock = served.cwd / "nectar_data" / "luigid" / "state.lock"
        started = descendants(served.proc.pid)
        luigid = [pid for pid in started if "luigid" in arguments(pid)]
        assert holders(lock, [served.proc.pid, *started]) == {served.proc.pid, *luigid}, {
            pid: cmdline(pid) for pid in started
        }
        served.proc.kill()
        served.proc.wait()
        waitfor(lambda: not any(alive(pid) for pid in started), 60, "serve's parts to stop after it was killed")
        log = tmp_path / "again.log"
        with open(log, "wb") as out:
            again = subprocess.Popen([*NECTAR, "serve"], cwd=served.cwd, env=served.env, stdout=out, stderr=out)
        try:

            def up() -> bool:
                assert again.poll() is None, log.read_text()
                return "Datanectar is up" in log.read_text()

            waitfor(up, 60, "the second serve to come up")
            assert requests.get(f"{served.api}/api/chains", timeout=60).status_code == 200
        finally:
            again.send_signal(signal.SIGTERM)
            assert again.wait(timeout=60) == 0, log.read_text()
