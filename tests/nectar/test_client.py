"""``nectar submit`` and ``nectar download`` run as real processes against a real ``nectar serve``."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import children, cmdline, freeze, lifeline_env, send, waitfor
from nectar.keys import TargetKey
from tests.conftest import NECTAR, wait_until
from tests.helpers.suitecli_inprocess import Ended, nectar_in_process
from tests.nectar.test_serve import Served, _serve, only

TASK = "testchains/hello_luigiworld_chain/WithDependencyTask"
ROWS = 200


def start_cli(served: Served, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")} | lifeline_env()
    argv = [*NECTAR, *args, "--server", served.api]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(served: Served, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The command run to its end; ``timeout`` only fails a hung one."""
    cli = start_cli(served, *args)
    stdout, stderr = cli.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cli.args, cli.returncode, stdout, stderr)


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def table(result: subprocess.CompletedProcess[str]) -> dict[int, list[str]]:
    """The summary table's rows by row number: [STATE, ATTEMPTS, SECONDS, KEY / ERRORS...]."""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ROW", "STATE", "ATTEMPTS", "SECONDS", "KEY", "/", "ERRORS"], result.stdout
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        number, *cells = line.split()
        rows[int(number)] = cells
    return rows


@pytest.fixture(scope="module")
def access_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served API's access log: a line a request."""
    return tmp_path_factory.mktemp("access") / "access.log"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, access_log: Path) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("client"), {"NECTAR_WORKERS": "4", "NECTAR_ACCESS_LOG": str(access_log)})


@pytest.fixture(scope="module")
def submitted_requests(
    served: Served, access_log: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``nectar submit`` of a 200-row CSV, waited for until every row ended; and the requests the API logged
    meanwhile."""
    csv = write_csv(tmp_path_factory.mktemp("csv") / "rows.csv", ["aparam", *(f"row {i}" for i in range(ROWS))])
    before = len(access_log.read_text().splitlines()) if access_log.exists() else 0
    result = run_cli(served, "submit", TASK, "--params-csv", str(csv))
    return result, access_log.read_text().splitlines()[before:]


@pytest.fixture(scope="module")
def submitted(
    submitted_requests: tuple[subprocess.CompletedProcess[str], list[str]],
) -> subprocess.CompletedProcess[str]:
    return submitted_requests[0]


def test_submit_shows_progress_then_a_table_of_every_row_done(submitted: subprocess.CompletedProcess[str]) -> None:
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    progress = submitted.stderr.splitlines()
    assert progress and all(f"/{ROWS} [" in line for line in progress), submitted.stderr
    assert progress[-1].lstrip().startswith(f"100%|##########| {ROWS}/{ROWS}") and "DONE 200" in progress[-1]
    rows = table(submitted)
    assert sorted(rows) == list(range(1, ROWS + 1))
    assert {cells[0] for cells in rows.values()} == {"DONE"}
    assert len({cells[3] for cells in rows.values()}) == ROWS  # one key each
    assert submitted.stdout.rstrip().endswith(f"{ROWS} rows: DONE {ROWS}")


def test_submit_follows_its_rows_with_a_listing_and_asks_each_status_once(
    submitted_requests: tuple[subprocess.CompletedProcess[str], list[str]],
) -> None:
    """One ``GET /api/runs`` a poll follows every row; a row's status is asked when its run ended, not every poll
    (200 rows polled every 0.5 s made thousands of status calls, the API's CPU second only to the workers')."""
    submitted, logged = submitted_requests
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    statuses = [line for line in logged if "GET /api/chainstatus?" in line]
    listings = [line for line in logged if "GET /api/runs?" in line]
    assert listings, "\n".join(logged[-20:])
    assert len(statuses) <= ROWS, f"{len(statuses)} status calls for {ROWS} rows, {len(listings)} listings"


def test_download_then_resume_fetches_nothing_then_only_a_truncated_file(
    served: Served, submitted: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    dest = tmp_path / "outputs"
    digests = {cells[3] for cells in table(submitted).values()}
    first = run_cli(served, "download", TASK, "--dest", str(dest), "--resume")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"fetched {ROWS}, skipped 0, failed 0 of {ROWS}" in first.stdout
    assert "file/s" in first.stderr
    assert {path.name for path in dest.iterdir()} == digests
    targets = served.cwd / "local_targets" / "chains" / TASK
    for digest in digests:
        assert (dest / digest / "out.txt").read_bytes() == (targets / digest / "out.txt").read_bytes()
    some = dest / sorted(digests)[0]
    assert (some / "params.json").read_text().startswith('{\n  "aparam": "row ')

    again = run_cli(served, "download", TASK, "--dest", str(dest), "--resume")
    assert again.returncode == 0 and f"fetched 0, skipped {ROWS}, failed 0" in again.stdout, again.stdout

    whole = (some / "out.txt").read_bytes()
    (some / "out.txt").write_bytes(whole[: len(whole) // 2])
    resumed = run_cli(served, "download", TASK, "--dest", str(dest), "--resume")
    assert f"fetched 1, skipped {ROWS - 1}, failed 0" in resumed.stdout, resumed.stdout
    assert (some / "out.txt").read_bytes() == whole
    assert not list(dest.glob("*/.*.part"))

    everything = run_cli(served, "download", TASK, "--dest", str(dest))
    assert f"fetched {ROWS}, skipped 0, failed 0" in everything.stdout, everything.stdout


def test_a_rejected_row_is_listed_with_its_errors_and_fails_the_command(served: Served, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "rows.csv", ["aparam", "good 1", '""', "", "good 2"])  # a blank line is no row

    result = run_cli(served, "submit", TASK, "--params-csv", str(csv))

    assert result.returncode == 1, result.stdout + result.stderr
    rows = table(result)
    assert rows[1][0] == rows[3][0] == "DONE"
    assert rows[2][:2] == ["REJECTED", "1"]  # a 422 is not tried again
    assert "aparam: missing required parameter" in " ".join(rows[2])
    assert result.stdout.rstrip().endswith("3 rows: DONE 2, REJECTED 1")


def test_an_unknown_column_rejects_every_row(served: Served, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "rows.csv", ["aparam,colour", "a,red", "b,"])

    result = run_cli(served, "submit", TASK, "--params-csv", str(csv))

    assert result.returncode == 1
    rows = table(result)
    assert rows[1][0] == "REJECTED" and "colour: unknown parameter (known: aparam)" in " ".join(rows[1])
    assert rows[2][0] == "DONE"  # an empty cell leaves the parameter out


def test_no_wait_stops_once_every_row_is_accepted(served: Served, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "rows.csv", ["aparam", *(f"no wait {i}" for i in range(5))])

    result = run_cli(served, "submit", TASK, "--params-csv", str(csv), "--no-wait")

    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result)
    assert sorted(rows) == [1, 2, 3, 4, 5], result.stdout  # every row accepted and listed
    assert all(cells[0] in {"PENDING", "RUNNING", "DONE"} for cells in rows.values()), result.stdout


@pytest.mark.parametrize(
    ("task", "csv_lines", "message"),
    [
        ("testchains/hello_luigiworld_chain/NoSuchTask", ["aparam", "x"], "no task NoSuchTask"),
        ("testchains/WithDependencyTask", ["aparam", "x"], "is not <type>/<chain>/<Task>"),
        (TASK, ["aparam", "x,y"], "rows.csv:2: 2 values for 1 columns"),
        (TASK, ["aparam,aparam", "x,y"], "must name each parameter once"),
    ],
    ids=["unknown task", "not a task reference", "a row too long", "a repeated column"],
)
def test_usage_errors_exit_2(
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    task: str,
    csv_lines: list[str],
    message: str,
) -> None:
    """The unknown task a real process; the others asked of ``nectar.cli.main`` in this one
    (:mod:`tests.helpers.suitecli_inprocess`): their message and status are the question."""
    csv = write_csv(tmp_path / "rows.csv", csv_lines)

    if task.endswith("/NoSuchTask"):
        result: subprocess.CompletedProcess[str] | Ended = run_cli(served, "submit", task, "--params-csv", str(csv))
    else:
        argv = ["submit", task, "--params-csv", str(csv), "--server", served.api]
        result = nectar_in_process(monkeypatch, capsys, argv, only({}), Path.cwd())

    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Served]:
    """A service that queues one run at most, with one worker, and asks to come back after 1 s; its access log is
    ``access.log`` beside it."""
    env = {"NECTAR_WORKERS": "1", "NECTAR_MAX_QUEUE": "1", "NECTAR_RETRY_AFTER": "1"}
    yield from _serve(tmp_path, {**env, "NECTAR_ACCESS_LOG": str(tmp_path / "access.log")})


def test_a_full_queue_is_waited_out(busy: Served, tmp_path: Path) -> None:
    """Eight rows, sent at once (the client's concurrency), to a queue of one whose worker is frozen until the API
    has answered a submission 503: the client comes back after Retry-After, as many times as it takes (1000 tries a
    row: the command's timeout is the one bound, a hang guard), until every row ran."""
    csv = write_csv(tmp_path / "rows.csv", ["aparam", *(f"queued {i}" for i in range(8))])
    (worker,) = [pid for pid in children(busy.proc.pid) if "nectar.cli worker" in cmdline(pid)]
    access_log = tmp_path / "access.log"

    def refused() -> bool:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        return any('"POST /api/chains/' in line and '" 503 ' in line for line in lines)

    freeze(worker)  # the queue stays full: the first row accepted waits in it
    try:
        cli = start_cli(busy, "submit", TASK, "--params-csv", str(csv), "--attempts", "1000")
        waitfor(refused, 60, "a submission answered 503 (queue full)")
    finally:
        send(worker, signal.SIGCONT)
    stdout, stderr = cli.communicate(timeout=180)
    result = subprocess.CompletedProcess(cli.args, cli.returncode, stdout, stderr)

    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result)
    assert {cells[0] for cells in rows.values()} == {"DONE"}
    assert max(int(cells[1]) for cells in rows.values()) > 1  # some were answered 503 first


def test_a_key_whose_output_was_deleted_since_ends_its_row_as_missing_with_the_reason() -> None:
    """A status of MISSING (its run DONE, its output deleted since: no run is queued to make it) is final: the
    command stops following the row, saying why, where it polled it for ever as a state still on its way."""
    from concurrent.futures import Future

    from nectar.client.batch import RowResult, _polled

    row = RowResult(1, {})
    answered: Future[dict[str, str]] = Future()
    answered.set_result({"job_status": "MISSING", "error": "not complete: its output /o.txt no longer exists"})
    _polled(row, answered)
    assert (row.final, row.state, row.detail) == (True, "MISSING", "not complete: its output /o.txt no longer exists")


def test_a_nectar_task_whose_out_txt_was_deleted_reads_missing_in_every_read(served: Served, tmp_path: Path) -> None:
    """A NectarTask's run DONE, its ``out.txt`` deleted since: luigi counts it not complete. Every read says MISSING
    and why, as a plain task's does (round 64, 930a28b): the API's status (its error naming the file, no URL),
    ``nectar status`` (it printed ``job_status: MISSING`` alone, not why), ``nectar download`` (a row failed naming
    MISSING and the reason: it gave the first output's note, "out.txt does not exist in <store>"); ``nectar submit``
    of the same row makes it again (luigi counts it not complete)."""
    queued = requests.post(f"{served.api}/api/chains/{TASK}", json={"aparam": "deleted since"}, timeout=60).json()
    status_url = f"{served.api}/api/chainstatus?chain={queued['data']['key']}"

    def ended() -> dict | None:
        data = requests.get(status_url, timeout=60).json()["data"]
        return data if data["job_status"] in {"DONE", "FAILED"} else None

    assert wait_until(ended, timeout=120)["job_status"] == "DONE"
    made = served.cwd / "local_targets" / queued["data"]["key"]
    made.unlink()
    data = requests.get(status_url, timeout=60).json()["data"]
    assert (data["job_status"], data["resource_url"]) == ("MISSING", None), data
    assert f"its output {made} no longer exists" in data["error"], data["error"]

    said = subprocess.run(
        [*NECTAR, "status", queued["data"]["key"]],
        cwd=served.cwd,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "job_status: MISSING" in said.stdout, said.stdout + said.stderr
    assert f"its output {made} no longer exists" in said.stdout, said.stdout
    assert f"location:   {made}" not in said.stdout

    dest = tmp_path / "outputs"
    fetched = run_cli(served, "download", TASK, "--dest", str(dest))
    digest = TargetKey.parse(queued["data"]["key"]).digest
    assert "failed 1" in fetched.stdout and fetched.returncode != 0, fetched.stdout + fetched.stderr
    assert f"the key is MISSING now: not complete: its output {made} no longer exists" in fetched.stdout, fetched.stdout
    assert not (dest / digest).exists()

    csv = write_csv(tmp_path / "row.csv", ["aparam", "deleted since"])
    rows = table(run_cli(served, "submit", TASK, "--params-csv", str(csv)))
    assert rows[1][0] == "DONE" and made.exists(), rows  # submitted again, it is made again, as luigi would
