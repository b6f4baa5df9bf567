"""A chain file whose classes compute a parameter's default as it is executed (``default=datetime.date.today()``) is
executed again to make a task now (``ChainCatalog.task_now``), as ``python -m luigi`` executes it for each command;
one whose defaults are literal constants is kept (no execution per submission)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.catalog import ChainCatalog
from nectar.catalog.loader import defaults_anew


@pytest.mark.parametrize(
    ("body", "anew"),
    [
        ("day = luigi.DateParameter(default=datetime.date.today())", True),
        ("day = luigi.Parameter(today())", True),
        ("rows = luigi.IntParameter(default=ROWS)", True),  # a name is not followed
        ("stamp: str = MyParameter(default=now())", True),
        ("rows = luigi.IntParameter(default=-5)", False),
        ("names = luigi.ListParameter(default=['a', ('b', 1)], significant=False)", False),
        ("opts = luigi.DictParameter(default={'k': None})", False),
        ("day = luigi.DateParameter()", False),
        ("logger = logging.getLogger(__name__)", False),  # not a parameter
        ("retry_count = compute()", False),
    ],
)
def test_a_default_computed_as_the_file_is_executed_is_told_apart_from_a_literal(body: str, anew: bool) -> None:
    assert defaults_anew(ast.parse(f"class T(luigi.Task):\n    {body}\n")) is anew


def test_a_task_made_now_takes_the_default_of_its_moment(
    chains_dir: Path, write_chain: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The day stands in a file the default reads as the chain is executed; the chain file itself is unchanged when
    the day turns, as when the date does. Before ``task_now``, the catalog kept the first execution's default."""
    today = tmp_path / "today"
    today.write_text("2026-12-07")
    monkeypatch.setenv("NECTAR_TEST_TODAY", str(today))
    write_chain(
        "daily/today_chain",
        "import os\n\nimport luigi\n\n\ndef today():\n    with open(os.environ['NECTAR_TEST_TODAY']) as day:\n"
        "        return day.read()\n\n\nclass DailyTask(luigi.Task):\n    day = luigi.Parameter(default=today())\n",
    )
    write_chain(
        "daily/fixed_chain", "import luigi\n\n\nclass FixedTask(luigi.Task):\n    n = luigi.IntParameter(default=3)\n"
    )
    catalog = ChainCatalog(chains_dir)
    daily = catalog.task("daily", "today_chain", "DailyTask")
    fixed = catalog.task("daily", "fixed_chain", "FixedTask")
    assert daily.params[0].default == "2026-12-07"
    today.write_text("2026-12-08")
    now = catalog.task_now(daily)
    assert now.params[0].default == "2026-12-08" and now.cls is not daily.cls
    assert now.instantiate({}).param_kwargs["day"] == "2026-12-08"
    assert catalog.task_now(fixed) is fixed  # kept: nothing executed
