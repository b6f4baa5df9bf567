"""The chains folder every command that reads one is given (``--chains-dir``, ``NECTAR_CHAINS_DIR``, ``./chains``):
one that is no folder it can list is refused before anything starts, one line naming the path and what is wrong with
it, exit 2 (``nectar serve --chains-dir <a file>`` started everything, then each request's catalog raised
``NotADirectoryError`` in the API's workers; a missing folder was served as a service with no chain).

A refusal is asked of ``nectar.cli.main`` in the test's process (:mod:`tests.helpers.suitecli_inprocess`), its
message and status being the question; ``nectar serve`` given a file is the end-to-end one, a real process."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Processes, base_env, lifeline_env, wait_until
from nectar.config import CHAINS_COMMANDS, Settings
from tests.conftest import NECTAR, free_port, settings_env
from tests.helpers.suitecli_inprocess import Ended, nectar_in_process

#: each command that reads the chains folder, with the arguments it needs to start
COMMANDS = {
    "chains": [],
    "run": ["testchains/hello_luigiworld_chain/WithDependencyTask"],
    "status": ["chains/etl/sales_chain/ATask/0123456789abcdef0123456789abcdef/out.txt"],
    "cancel": ["0123"],
    "worker": [],
    "schedules": [],
    "backfill": ["daily.sales_chain.DailyTask.0", "--start", "2026-03-01", "--end", "2026-03-02"],
    "triggers": [],
    "clock": [],
    "serve": [],
    "api": [],
}


def test_every_command_that_reads_the_chains_folder_is_checked() -> None:
    assert set(COMMANDS) == CHAINS_COMMANDS


def started(settings: Settings, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    ports = {"NECTAR_PORT": str(free_port()), "NECTAR_SCHEDULER_PORT": str(free_port())}
    return subprocess.run(
        [*NECTAR, *argv],
        env={**os.environ, **settings_env(settings), **ports, **env, **lifeline_env()},  # dies with this process
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


#: how a test runs a command: ``(argv, env)`` to what it ended with (a real process, :func:`started`, or
#: ``nectar.cli.main`` in the test's process, :func:`asked`)
Runs = Callable[[list[str], dict[str, str]], "subprocess.CompletedProcess[str] | Ended"]


@pytest.fixture
def asked(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runs:
    """``nectar <argv>`` as :func:`started` runs it (the same environment and folder), asked of ``nectar.cli.main`` in
    this process: for a refusal whose message and status are the question."""

    def ask(argv: list[str], env: dict[str, str]) -> Ended:
        ports = {"NECTAR_PORT": str(free_port()), "NECTAR_SCHEDULER_PORT": str(free_port())}
        environ = {**settings_env(settings), **ports, **env}
        return nectar_in_process(monkeypatch, capsys, argv, environ, settings.data_dir.parent)

    return ask


def refused(
    settings: Settings, tmp_path: Path, command: str, made: str, given_by: str = "flag", run: Runs | None = None
) -> None:
    """``command`` given a chains folder that is not one (``made`` so) by ``given_by`` ends with one line naming it,
    exit 2, having started nothing; run by ``run`` (a real process by default)."""
    problem = "does not exist" if made == "missing" else "is not a folder"
    places = {"file": tmp_path / "chains.txt", "missing": tmp_path / "nowhere", "below a file": tmp_path / "f" / "c"}
    path = places[made]
    (tmp_path / "chains.txt").write_text("not a folder\n")
    (tmp_path / "f").write_text("not a folder either\n")
    argv = [command, *COMMANDS[command]]
    if given_by == "flag" and command != "api":  # api takes no --chains-dir: its variable alone
        argv += ["--chains-dir", str(path)]
        env = {}
    else:
        env = {"NECTAR_CHAINS_DIR": str(path)}

    result = (run or functools.partial(started, settings))(argv, env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"nectar: the chains folder {path} (--chains-dir, env NECTAR_CHAINS_DIR) {problem}\n"
    assert not (settings.data_dir / "luigid").exists()  # serve started no luigid (it makes its state folder first)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_file_given_as_the_chains_folder_is_refused_by_every_command(
    settings: Settings, tmp_path: Path, asked: Runs, command: str
) -> None:
    """``nectar serve`` as a real process (its exit, and no luigid started), the others asked in this one."""
    refused(settings, tmp_path, command, "file", run=None if command == "serve" else asked)


@pytest.mark.parametrize("command", ["serve", "worker", "chains"])
@pytest.mark.parametrize(("made", "given_by"), [("missing", "flag"), ("below a file", "flag"), ("file", "variable")])
def test_a_chains_folder_that_is_not_one_is_refused_however_given(
    settings: Settings, tmp_path: Path, asked: Runs, command: str, made: str, given_by: str
) -> None:
    refused(settings, tmp_path, command, made, given_by, run=asked)


@pytest.mark.parametrize("made", ["file", "missing"])
def test_the_default_chains_folder_is_checked_where_the_command_runs(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], made: str
) -> None:
    """Without a flag or a variable, ``./chains`` of the working folder: a file there is refused; none there is no
    chain, as before (a project with none yet), not a refusal."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    if made == "file":
        (cwd / "chains").write_text("not a folder\n")
    env: dict[str, str | None] = {**settings_env(settings), "NECTAR_CHAINS_DIR": None}
    result = nectar_in_process(monkeypatch, capsys, ["chains"], env, cwd)
    if made == "file":
        assert result.returncode == 2, result.stdout + result.stderr
        said = f"nectar: the chains folder {cwd / 'chains'} (--chains-dir, env NECTAR_CHAINS_DIR) is not a folder\n"
        assert result.stderr == said
    else:
        assert result.returncode == 0, result.stderr
        assert f"no chains under {cwd / 'chains'}" in result.stdout


def test_an_empty_chains_folder_is_a_folder(tmp_path: Path, asked: Runs) -> None:
    """Taken, and listed as holding no chain, saying what a chain file is named (before, the folder alone)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = asked(["chains", "--chains-dir", str(empty)], {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"no chains under {empty}: a chain is a file <type>/<name>_chain.py in it\n")


def test_serve_in_a_folder_without_chains_starts_its_workers(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """serve hands its parts the default ``./chains`` resolved (``NECTAR_CHAINS_DIR``): its workers take it as the
    default, absent as before, and start."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in base_env().items() if k != "NECTAR_CHAINS_DIR"}
    env |= {k: v for k, v in settings_env(settings).items() if k != "NECTAR_CHAINS_DIR"}
    served = processes.nectar_serve(env, cwd)
    log = processes.log_of[served.proc.pid]

    wait_until(lambda: "slot(s), registry" in log.read_text())  # the workers' executor started

    assert served.proc.poll() is None, log.read_text()
    assert "nectar: the chains folder" not in log.read_text()


def test_a_link_that_leads_nowhere_is_named_as_given(tmp_path: Path, asked: Runs) -> None:
    """A chains folder given as a link to nothing is named by the link the user gave, its target beside it (before,
    the target alone, resolved: a path the user never typed)."""
    link = tmp_path / "chains_link"
    link.symlink_to(tmp_path / "gone", target_is_directory=True)

    result = asked(["chains", "--chains-dir", str(link)], {})

    assert result.returncode == 2, result.stdout + result.stderr
    said = f"the chains folder {link} (--chains-dir, env NECTAR_CHAINS_DIR) does not exist (a link to {tmp_path}/gone)"
    assert result.stderr == f"nectar: {said}\n"


#: what runs a command without the capabilities to read past permissions where the suite runs as root, so mode 000
#: holds for it too
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []

#: the app's listing and home page, printed as JSON, from a process of its own (run under :data:`NO_OVERRIDE`)
LISTED = """
import json, sys
from app import create_app
from nectar.config import Settings
app = create_app({"NECTAR_SETTINGS": Settings.from_env(), "TESTING": True})
client = app.test_client()
answer = client.get("/api/chains")
page = client.get("/")
print(json.dumps({"status": answer.status_code, "answer": answer.get_json(), "page": page.get_data(as_text=True)}))
"""


def with_a_type_it_cannot_read(tmp_path: Path) -> Path:
    """A chains folder holding one chain (``etl/sales_chain.py``) and a chain type folder of mode 000 (``secret``)."""
    chains = tmp_path / "my_chains"
    (chains / "etl").mkdir(parents=True)
    (chains / "etl" / "sales_chain.py").write_text("import luigi\n\n\nclass SalesTask(luigi.Task):\n    pass\n")
    (chains / "secret").mkdir()
    (chains / "secret").chmod(0)
    return chains


def run_without_override(settings: Settings, chains: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings.replace(chains_dir=chains)), **lifeline_env()}
    try:
        return subprocess.run(
            [*NO_OVERRIDE, *argv], env=env, cwd=chains.parent, capture_output=True, text=True, timeout=120
        )
    finally:
        (chains / "secret").chmod(0o700)  # pytest removes it after


def test_a_chain_type_folder_it_cannot_read_is_passed_over_and_named(settings: Settings, tmp_path: Path) -> None:
    """``nectar chains`` lists the chains it can read and names, in one WARNING line on stderr, the chain type folder
    it cannot list (before: no listing at all, the one line and exit 2: one unreadable folder hid every chain)."""
    chains = with_a_type_it_cannot_read(tmp_path)

    result = run_without_override(settings, chains, [*NECTAR, "chains"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "etl/sales_chain  SalesTask" in result.stdout
    said = f"the chain type folder {chains / 'secret'} in the chains folder {chains} cannot be read (Permission denied)"
    assert result.stderr == f"{said}: its chains are not listed\n"  # the catalog's WARNING, once


def test_the_api_and_the_ui_list_the_other_chains_and_name_the_folder_they_cannot_read(
    settings: Settings, tmp_path: Path
) -> None:
    """``GET /api/chains`` answers 200 with the chains it can read, its message naming the chain type folder it
    cannot list, and the UI's home says the same above them (before: a 500 on every listing)."""
    chains = with_a_type_it_cannot_read(tmp_path)

    result = run_without_override(settings, chains, [sys.executable, "-c", LISTED])

    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(result.stdout.splitlines()[-1])
    assert listed["status"] == 200, listed["answer"]
    assert [t["name"] for t in listed["answer"]["data"]] == ["etl"]
    said = f"the chain type folder {chains / 'secret'} in the chains folder {chains} cannot be read (Permission denied)"
    assert listed["answer"]["message"] == f"{said}: its chains are not listed"
    assert f"The chain type folder {chains / 'secret'}" in listed["page"]
    assert "SalesTask" in listed["page"]
