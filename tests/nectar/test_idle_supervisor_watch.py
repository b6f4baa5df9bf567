"""``nectar serve``'s supervisor waits for a part's exit or a signal in one ``poll()`` (the parts' pidfds, the signals'
pipe), where it looked every 0.2 s (5 wake-ups a second of an idle serve): nectar/supervisor.py ``watch``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nectar import supervisor
from nectar.cli import build_parser


def test_the_supervisor_looks_at_its_parts_once_as_it_starts_and_once_as_one_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = build_parser(roles_only=True).parse_args(["serve", "--data-dir", str(tmp_path / "data")])
    watcher = supervisor.Supervisor(args)
    woken, said = os.pipe()  # the signals' pipe (listen_for_stops'), without this process's handlers changed
    watcher._woken = woken
    # a part that lives a second at least (its own sleep: however loaded the machine, never less), then exits 3
    part = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit(3)"])
    watcher.parts.append(supervisor.Part("workers", part))
    looks: list[bool] = []
    died = watcher.died

    def counted(besides: supervisor.Part | None = None) -> supervisor.Part | None:
        found = died(besides)
        looks.append(found is not None)
        return found

    monkeypatch.setattr(watcher, "died", counted)
    try:
        assert watcher.watch() == 1  # a part exited: the stop begins
    finally:
        os.close(woken)
        os.close(said)
        if part.poll() is None:
            part.kill()
        part.wait()
    assert part.returncode == 3
    # before: a look every 0.2 s for the part's second and more (6 and more looks)
    assert looks == [False, True], looks
