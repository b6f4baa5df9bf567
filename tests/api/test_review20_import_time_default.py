"""review20 (on main): a parameter whose default the chain computes as its file is executed, the everyday luigi
idiom ``day = luigi.DateParameter(default=datetime.date.today())``. ``python -m luigi`` executes the file at each
command, so each run takes the default of its own moment (today's date). The API executes a chain once and keeps
the module while its file is unchanged, and a submission's parameters (its key, the dedupe) are read from that
module's defaults: after midnight a submission without ``day`` is yesterday's key, answered ``200 DONE`` with
yesterday's output, and nothing runs for today, for as long as the API process lives.

The test stands the day in by a file the default reads as the chain is executed (the date cannot be moved for a
process without moving the machine's clock): changed, it is the next day; the chain file itself is unchanged, as it
is when the date turns."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.helpers.api_alone import api_alone
from tests.helpers.registries import closed_at_end
from tests.nectar.test_review16_luigi_cfg import post
from tests.nectar.test_review16_none_default import under_luigi
from tests.nectar.test_spare import ended

#: ``DailyTask``'s default is read as the file is executed, as ``datetime.date.today()`` is
CHAIN = """
import os

import luigi


def today():
    with open(os.environ["REVIEW20_TODAY"]) as day:
        return day.read()


class DailyTask(luigi.Task):
    day = luigi.Parameter(default=today())

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW20_OUT"], f"daily-{self.day}"))

    def run(self):
        with self.output().open("w") as out:
            out.write(self.day)
"""
DAILY = "/api/chains/review20/today_chain/DailyTask"


@pytest.fixture
def today(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file that stands for the date, read by every process started after (luigi's, the API, the worker)."""
    path = tmp_path / "today"
    path.write_text("2026-12-07")
    monkeypatch.setenv("REVIEW20_TODAY", str(path))
    monkeypatch.setenv("REVIEW20_OUT", str(tmp_path))
    return path


@pytest.fixture
def api(
    today: Path, settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> Iterator[int]:
    """The API alone under gunicorn against the session's luigid; its port."""
    write_chain("review20/today_chain", CHAIN)
    with api_alone(settings, luigid, tmp_path / "api-logs") as port:
        yield port


def test_a_default_computed_as_the_chain_is_executed_is_the_submissions_moment(
    api: int,
    today: Path,
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """``python -m luigi ... DailyTask`` on each day makes that day's file (checked first). Through the API, a
    submission on the first day runs and makes its file; the day turns; a submission then is a new run (202, created)
    and makes the second day's file. Fails on main: the second POST answers 200, ``job_status`` DONE, the first
    day's key and output (``daily-2026-12-07``), and no run is made for the second day."""
    chain = write_chain("review20/today_chain", CHAIN)
    for day in ("2026-12-05", "2026-12-06"):
        today.write_text(day)
        said = under_luigi(chain, luigid, "DailyTask", {})
        assert (tmp_path / f"daily-{day}").read_text() == day, said
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings.replace(scheduler_url=luigid), workers=1)
    keys = []
    for day in ("2026-12-07", "2026-12-08"):
        today.write_text(day)
        status, answer = post(api, DAILY, {})
        assert status == 202 and answer["data"]["created"], (day, answer)
        keys.append(answer["data"]["key"])
        run = ended(nectar, answer["data"]["run_id"])
        assert run.state == RunState.DONE, run.error
        assert (tmp_path / f"daily-{day}").read_text() == day
    assert keys[0] != keys[1], keys
