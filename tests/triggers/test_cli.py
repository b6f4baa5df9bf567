"""``nectar triggers``, run as a real process on the test's registry."""

from __future__ import annotations

from pathlib import Path

from nectar.config import Settings
from nectar.registry import open_run_store
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.nectar.test_cli import nectar as run_nectar
from tests.triggers.test_api import FILE_TRIGGER, LOAD_FILE
from tests.triggers.test_core import declared, land, landing, nectar  # noqa: F401  (fixtures)


def test_triggers_lists_the_files_and_the_apis_with_their_counts(
    settings: Settings,
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    declared: Path,  # noqa: F811
) -> None:
    made = nectar.triggers.create({"task": LOAD_FILE, "prefix": str(landing), "param": "path", "poll_s": 60})
    land(declared, "a.csv", "b.csv", "notes.txt")
    TriggerLoop(nectar.triggers).tick()
    nectar.triggers.change(made.id, {"paused": True})

    result = run_nectar(settings, "triggers")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = ["ID", "SOURCE", "TASK", "PREFIX", "GLOB", "PAUSED", "SEEN", "RUNS", "WAITING", "ERROR"]
    assert lines[0].split() == header
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[FILE_TRIGGER][1:] == ["file", LOAD_FILE, str(declared), "*.csv", "no", "2", "2", "2", "-"]
    assert rows[made.id][1:] == ["api", LOAD_FILE, str(landing), "-", "yes", "0", "0", "0", "-"]


def test_triggers_says_when_there_are_none(settings: Settings) -> None:
    open_run_store(settings).close()  # the service's registry, with no trigger (where none is: named, test_review23)
    result = run_nectar(settings, "triggers")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no triggers: declare one on a task, or POST /api/triggers")
