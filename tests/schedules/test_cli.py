"""``nectar schedules`` and ``nectar backfill``, run as real processes on the test's registry."""

from __future__ import annotations

from nectar.config import Settings
from nectar.service import Nectar
from tests.nectar.test_cli import nectar as run_nectar
from tests.schedules.test_api import FILE_SCHEDULE, HOURLY


def test_schedules_lists_the_files_and_the_apis(settings: Settings, nectar: Nectar) -> None:
    made = nectar.schedules.create({**HOURLY, "interval_s": 900, "cron": None, "timezone": "UTC"})
    nectar.schedules.change(FILE_SCHEDULE, {"paused": True})

    result = run_nectar(settings, "schedules")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "SOURCE", "TASK", "WHEN", "PAUSED", "NEXT", "FIRE", "LAST", "FIRE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[FILE_SCHEDULE][1:8] == ["file", "daily/sales_chain/DailyTask", "0", "3", "*", "*", "*"]
    assert rows[FILE_SCHEDULE][8:] == ["(Europe/Paris)", "yes", "-", "-"]  # paused: no next fire
    api = rows[made.id]
    assert api[1:6] == ["api", "daily/sales_chain/SlotTask", "every", "900s", "(UTC)"]
    assert api[6] == "no" and api[7].endswith("+00:00") and api[8] == "-"


def test_backfill_prints_what_it_queued(settings: Settings, nectar: Nectar) -> None:
    made = nectar.schedules.create({**HOURLY, "cron": "0 12 * * *", "max_active": 2})

    result = run_nectar(settings, "backfill", made.id, "--start", "2026-05-01", "--end", "2026-05-03T23:00")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"of {made.id}: 3 fire times, 0 fired before; 1 held, 2 queued" in lines[0], lines
    fires = [line.split() for line in lines[2:5]]
    assert [fire[:2] for fire in fires] == [
        [f"2026-05-0{day}T12:00:00+02:00", state] for day, state in ((1, "queued"), (2, "queued"), (3, "held"))
    ], lines
    assert fires[0][3] == "PENDING" and fires[2][2:] == ["-", "-"]
    assert lines[-1].startswith(f"progress: GET /api/schedules/{made.id}/fires?backfill=")


def test_backfill_names_a_bad_start_and_exits_2(settings: Settings, nectar: Nectar) -> None:
    result = run_nectar(settings, "backfill", FILE_SCHEDULE, "--start", "last week", "--end", "2026-05-03")

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("nectar: --start: not an ISO 8601 date"), result.stderr
    assert nectar.schedules.fires(FILE_SCHEDULE) == []


def test_backfill_of_an_unknown_schedule_names_it(settings: Settings, nectar: Nectar) -> None:
    result = run_nectar(settings, "backfill", "nosuch", "--start", "2026-05-01", "--end", "2026-05-03")

    assert result.returncode == 2 and "nosuch" in result.stderr, result.stdout + result.stderr
