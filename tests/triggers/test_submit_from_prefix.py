"""``nectar submit --from-prefix`` as a real process against a real ``nectar serve``: a run per file of a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nectar.test_client import TASK, run_cli, table
from tests.nectar.test_serve import Served, _serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # the tests' folders (each under the session's base temp folder) are landing roots the API may list
    roots = str(tmp_path_factory.getbasetemp())
    yield from _serve(tmp_path_factory.mktemp("from-prefix"), {"NECTAR_WORKERS": "2", "NECTAR_LANDING_ROOTS": roots})


def landing(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x\n")
    return folder


def test_a_run_per_object_is_followed_to_done_in_a_table(served: Served, tmp_path: Path) -> None:
    folder = landing(tmp_path / "in", "b.csv", "a.csv", "sub/c.csv", "notes.txt", "_SUCCESS")

    result = run_cli(served, "submit", TASK, "--from-prefix", str(folder), "--param", "aparam", "--glob", "**/*.csv")

    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result)
    assert sorted(rows) == [1, 2, 3] and {cells[0] for cells in rows.values()} == {"DONE"}, result.stdout
    assert result.stdout.rstrip().endswith("3 rows: DONE 3")
    assert "/3 [" in result.stderr  # the progress bar

    again = run_cli(served, "submit", TASK, "--from-prefix", str(folder), "--param", "aparam", "--glob", "*.csv")

    assert again.returncode == 0 and again.stdout.rstrip().endswith("2 rows: DONE 2"), again.stdout + again.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--param", "nope"], "param: 'nope' is not a parameter of testchains/hello_luigiworld_chain/"),
        (["--param", "aparam", "--batch-size", "2"], "batch_size: 'aparam' is a str parameter"),
        (["--param", "aparam", "--glob", "[a"], "glob: unbalanced '['"),
        ([], "--from-prefix needs --param"),
    ],
)
def test_a_bad_option_exits_2_naming_it(served: Served, tmp_path: Path, args: list[str], says: str) -> None:
    folder = landing(tmp_path / "in", "a.csv")

    result = run_cli(served, "submit", TASK, "--from-prefix", str(folder), *args)

    assert result.returncode == 2 and says in result.stderr, result.stdout + result.stderr


def test_prefix_options_without_a_prefix_exit_2(served: Served, tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("aparam\nx\n")

    result = run_cli(served, "submit", TASK, "--params-csv", str(tmp_path / "rows.csv"), "--glob", "*.csv")

    assert result.returncode == 2 and "--glob: only with --from-prefix" in result.stderr, result.stderr


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Served]:
    """A service that queues one run at most, with one worker, and asks to come back after 1 s."""
    limits = {"NECTAR_WORKERS": "1", "NECTAR_MAX_QUEUE": "1", "NECTAR_RETRY_AFTER": "1"}
    yield from _serve(tmp_path, {**limits, "NECTAR_LANDING_ROOTS": str(tmp_path)})


def test_objects_the_full_queue_refused_are_submitted_again_until_done(busy: Served, tmp_path: Path) -> None:
    folder = landing(tmp_path / "in", *(f"{n}.csv" for n in range(4)))

    result = run_cli(busy, "submit", TASK, "--from-prefix", str(folder), "--param", "aparam", "--attempts", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result)
    assert {cells[0] for cells in rows.values()} == {"DONE"}, result.stdout
    assert max(int(cells[1]) for cells in rows.values()) > 1  # the queue refused some at first
