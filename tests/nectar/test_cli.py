"""The ``nectar`` command, run as a real process; a refusal whose message and status are the question asked of
``nectar.cli.main`` in the test's process (``asked``: :mod:`tests.helpers.suitecli_inprocess`), one case of each test
of refusals kept a real process (its exit status and stderr, nothing started)."""

from __future__ import annotations

import ctypes
import functools
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Processes, bound_to_a_free_port, lifeline_env, waitfor
from nectar.cli import build_parser
from nectar.cli.local import _log_location, run_to_its_end
from nectar.config import Settings, check_role_settings
from nectar.errors import InvalidSetting
from nectar.keys import STDERR_FILE, TargetKey
from nectar.registry.model import Run, RunState
from nectar.registry.sqlite import SCHEMA_VERSION, SQLiteRunStore
from nectar.service import Nectar
from nectar.stores import get_store
from nectar.task import create_live_logs
from tests.conftest import NECTAR, REPO, free_port, settings_env, wait_until
from tests.helpers.suitecli_inprocess import Ended
from tests.nectar.test_cli_chains_dir import Runs, asked, started

__all__ = ["asked"]  # the fixture, taken here

WriteChain = Callable[[str, str], Path]
HELLO = "testchains/hello_luigiworld_chain"


def nectar(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NECTAR, *args],
        env={**os.environ, **settings_env(settings), **env, **lifeline_env()},  # dies with this process
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_chains_prints_a_table_of_tasks_and_parameters(settings: Settings, write_chain: WriteChain) -> None:
    write_chain("broken/oops_chain", "raise RuntimeError('oops')\n")

    result = nectar(settings, "chains")

    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["CHAIN", "TASK", "PARAMETERS"]
    assert [
        "broken/oops_chain",
        "(import",
        "failed)",
        "RuntimeError:",
        "oops",
        "(oops_chain.py,",
        "line",
        "1)",
    ] in lines
    assert [
        "etl/sales_chain",
        "AggregateSalesTask",
        "day:date*,",
        "rows:int=1000,",
        "min_quantity:int=1,",
        "group_by:choice=region,",
        "metrics:list=['quantity',",
        "'revenue']",
    ] in lines
    assert [f"{HELLO}", "TestS3Task", "-"] in lines
    assert [f"{HELLO}", "WithDependencyTask", "aparam:str*"] in lines
    assert result.stdout.rstrip().endswith("* required")


def test_run_then_status(settings: Settings) -> None:
    result = nectar(settings, "run", f"{HELLO}/WithDependencyTask", "--aparam", "hi there")

    assert result.returncode == 0, result.stdout + result.stderr
    info = Nectar(settings).catalog.task("testchains", "hello_luigiworld_chain", "WithDependencyTask")
    key = info.key_of(info.instantiate({"aparam": "hi there"}))
    assert "job_status: DONE" in result.stdout
    assert f"location:   {settings.local_targets_dir / key.path}" in result.stdout
    assert (settings.local_targets_dir / key.path).read_text() == "hello luigi world, hi there\n"

    status = nectar(settings, "status", key.path)
    assert status.returncode == 0
    assert status.stdout.splitlines()[:2] == ["job_status: DONE", f"key:        {key.path}"]

    again = nectar(settings, "run", f"{HELLO}/WithDependencyTask", "--aparam=hi there")
    assert again.returncode == 0 and again.stdout.startswith("already done, nothing to run")


def test_run_waits_for_a_run_a_serves_worker_claimed_before_it(settings: Settings) -> None:
    """`nectar run` beside a `nectar serve` on the same registry: the service's worker, woken by the submission's
    commit, may claim the run before the command does; the command then waits for that worker to end it (it printed
    RUNNING and exited 1 at once, the run going on elsewhere)."""
    note = io.StringIO()
    with Nectar(settings) as nectar:
        submission = nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {})
        assert submission.run is not None and submission.created
        claimed = nectar.runs.claim("elsewhere:1", run_id=submission.run.id)  # as the service's worker does
        assert claimed is not None
        command = threading.Thread(
            target=run_to_its_end, args=(settings, nectar.runs, claimed.id, "cli:1", note), daemon=True
        )
        command.start()
        wait_until(lambda: "waiting for it to end" in note.getvalue() or not command.is_alive())
        assert command.is_alive(), "returned while another worker still had the run"
        assert f"run {claimed.id} was claimed by worker elsewhere:1" in note.getvalue()

        assert nectar.runs.complete(claimed.id, claimed.attempt)  # the other worker ends it
        command.join(timeout=60)
        assert not command.is_alive()
        ended = nectar.runs.get(claimed.id)
        assert ended is not None and ended.state == RunState.DONE


WAIT_FOR_A_RUN = """
import signal, sys
from nectar.cli.local import run_to_its_end

# Ctrl-C as a terminal's foreground command takes it, even where the test run was started with SIGINT ignored (a
# shell's background job: Python then leaves it ignored, and the command would never see the test's Ctrl-C)
signal.signal(signal.SIGINT, signal.default_int_handler)
from nectar.config import Settings, configure
from nectar.service import Nectar

settings = Settings.from_env()
configure(settings)
with Nectar(settings) as nectar:
    run_to_its_end(settings, nectar.runs, sys.argv[1], "cli:1")
print("returned")
"""
#: :data:`WAIT_FOR_A_RUN` in a process with a thread of a user's (a library's pool, a metrics client) that sleeps for
#: good, having written its thread id (``gettid``) to the file named by the second argument
WAIT_WITH_ANOTHER_THREAD = (
    """
import sys, threading, time
from pathlib import Path

def sleeper():
    Path(sys.argv[2]).write_text(str(threading.get_native_id()))
    time.sleep(3600)

threading.Thread(target=sleeper, daemon=True).start()
"""
    + WAIT_FOR_A_RUN
)
#: ``tgkill``'s system call number (a signal to one thread of another process: ``os.kill`` lets the kernel choose)
TGKILL = {"x86_64": 234, "aarch64": 131}


def waiting_for_a_run_claimed_elsewhere(
    settings: Settings,
    nectar: Nectar,
    tmp_path: Path,
    then: Callable[[Run, subprocess.Popen[bytes]], object],
    script: str = WAIT_FOR_A_RUN,
) -> tuple[Run, str, Path]:
    """A hello run claimed by another worker (``elsewhere:1``), and a command that runs it to its end
    (:data:`WAIT_FOR_A_RUN`) waiting for that worker; ``then(claimed, command)`` once it waits, then the command's exit
    (0): the run claimed, what the command printed, and the file of its stderr."""
    submission = nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {})
    assert submission.run is not None
    claimed = nectar.runs.claim("elsewhere:1", run_id=submission.run.id)
    assert claimed is not None
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        command = subprocess.Popen(
            [sys.executable, "-c", script, claimed.id, str(tmp_path / "thread.txt")],
            env={**os.environ, **settings_env(settings), **lifeline_env()},
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        wait_until(lambda: "waiting for it to end" in stderr.read_text() or command.poll() is not None)
        assert command.poll() is None, stderr.read_text()
        then(claimed, command)
        out, _ = command.communicate(timeout=60)
    finally:
        command.kill()
    assert command.returncode == 0, stderr.read_text()
    return claimed, out.decode(), stderr


@pytest.mark.skipif(os.uname().machine not in TGKILL, reason="tgkill's number on this machine not known here")
def test_a_ctrl_c_another_thread_takes_while_run_waits_for_another_workers_run_stops_the_waiting(
    settings: Settings, tmp_path: Path
) -> None:
    """A SIGINT the kernel hands to another thread of the waiting command (here sent to that thread) ends its wait
    all the same, with a poll (``NECTAR_WORKER_POLL``) of an hour: before, the main thread slept on in its wait,
    never interrupted (the command's end not seen within the 60 s it is given: TimeoutExpired)."""
    settings = settings.replace(worker_poll_interval=3600.0)
    libc = ctypes.CDLL(None, use_errno=True)

    def ctrl_c_to_the_other_thread(claimed: Run, command: subprocess.Popen[bytes]) -> None:
        main = command.pid
        waitfor(lambda: "poll" in Path(f"/proc/{main}/task/{main}/wchan").read_text(), 60, "the wait to begin")
        other = int(
            waitfor(
                lambda: (tmp_path / "thread.txt").exists() and (tmp_path / "thread.txt").read_text(), 60, "the thread"
            )
        )
        assert libc.syscall(TGKILL[os.uname().machine], main, other, signal.SIGINT) == 0, ctypes.get_errno()

    with Nectar(settings) as nectar:
        claimed, out, stderr = waiting_for_a_run_claimed_elsewhere(
            settings, nectar, tmp_path, ctrl_c_to_the_other_thread, WAIT_WITH_ANOTHER_THREAD
        )

        assert out.split() == ["returned"]
        assert f"stopped waiting: run {claimed.id} goes on in worker elsewhere:1" in stderr.read_text()
        assert "Traceback" not in stderr.read_text()


def test_run_waiting_for_another_workers_run_takes_the_retry_it_leaves_queued_when_it_is_queued(
    settings: Settings, tmp_path: Path
) -> None:
    """A retry the other worker leaves in the queue wakes the waiting command at once (its commit queues a run), with a
    poll (``NECTAR_WORKER_POLL``) of an hour: before, the command slept out the poll before it looked again (the
    command's end not seen within the 60 s it is given: TimeoutExpired)."""
    settings = settings.replace(retries=1, worker_poll_interval=3600.0)
    with Nectar(settings) as nectar:

        def other_worker_fails(claimed: Run, command: subprocess.Popen[bytes]) -> None:
            assert nectar.runs.fail(claimed.id, claimed.attempt, None, "its attempt failed") == RunState.PENDING

        claimed, out, _ = waiting_for_a_run_claimed_elsewhere(settings, nectar, tmp_path, other_worker_fails)

        assert out.split() == ["returned"]
        ended = nectar.runs.get(claimed.id)
        assert ended is not None and (ended.state, ended.attempt) == (RunState.DONE, 2)
        assert ended.worker != "elsewhere:1"  # the command's process ran the retry


def test_ctrl_c_while_run_waits_for_another_workers_run_stops_the_waiting_in_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    with Nectar(settings) as nectar:
        claimed, out, stderr = waiting_for_a_run_claimed_elsewhere(
            settings, nectar, tmp_path, lambda claimed, command: command.send_signal(signal.SIGINT)
        )

        assert out.split() == ["returned"]
        assert f"stopped waiting: run {claimed.id} goes on in worker elsewhere:1" in stderr.read_text()
        assert "Traceback" not in stderr.read_text()
        going_on = nectar.runs.get(claimed.id)
        assert going_on is not None and going_on.state == RunState.RUNNING


def test_a_failed_run_names_its_step_and_logs(settings: Settings, write_chain: WriteChain) -> None:
    write_chain(
        "broken/fails_chain",
        "from nectar import NectarTask\nclass FailsTask(NectarTask):\n"
        "    def run(self):\n        raise KeyError('nope')\n",
    )

    result = nectar(settings, "run", "broken/fails_chain/FailsTask")

    assert result.returncode == 1
    assert "job_status: FAILED" in result.stdout
    assert "failed:     FailsTask: KeyError: 'nope'" in result.stdout
    assert "/log/stderr.log" in result.stdout


#: bad input to a command, each with what its one line on stderr says of it
BAD_INPUT = [
    (["run", "etl/sales_chain/AggregateSalesTask", "--day", "someday"], "--day: not a valid date"),
    (["run", "etl/sales_chain/AggregateSalesTask", "--day", "2024-01-01", "--rows", "x"], "--rows: not a valid int"),
    (["run", "etl/sales_chain/AggregateSalesTask"], "--day: missing required parameter"),
    (["run", "etl/sales_chain/AggregateSalesTask", "--day", "2024-01-01", "--colour", "red"], "--colour: unknown"),
    (["run", "etl/sales_chain/NoSuchTask"], "no task NoSuchTask in chain etl/sales_chain"),
    (["run", "etl/no_chain/ATask"], "no chain etl/no_chain"),
    (["status", "chains/etl/../x"], "'..' segment"),
    # where no registry is, it is named (review23), not made and read as empty ("no run and no target": test_status)
    (["status", "chains/etl/sales_chain/ATask/0123456789abcdef0123456789abcdef/out.txt"], "no run registry at"),
]
#: ``nectar.cli.main`` asked each argv of a JSON list on stdin in turn, in one process; for each, its exit status,
#: stdout and stderr (a ``SystemExit`` as the interpreter ends with it), then what else the process wrote on its stderr
ASK_EACH = """
import contextlib, io, json, sys
from nectar.cli import main

said = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    said.append([code, out.getvalue(), err.getvalue()])
json.dump(said, sys.__stdout__)
"""


@pytest.fixture(scope="module")
def runs_refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """``run``'s bad input of :data:`BAD_INPUT`, each asked of one ``nectar`` process (:data:`ASK_EACH`) on a copy of
    the example chains and a registry of the module's (nothing is submitted: each is refused before), by its argv's
    words: each case imports the chain and luigi as the first did, so one process answers them all."""
    folder = tmp_path_factory.mktemp("refused")
    shutil.copytree(REPO / "chains", folder / "chains", ignore=shutil.ignore_patterns("__pycache__"))
    settings = Settings(
        env="local", chains_dir=folder / "chains", data_dir=folder / "data", local_targets_dir=folder / "targets"
    ).resolved()
    cases = [args for args, _ in BAD_INPUT if args[0] == "run"]
    asked = subprocess.run(
        [sys.executable, "-c", ASK_EACH],
        input=json.dumps(cases),
        env={**os.environ, **settings_env(settings), **lifeline_env()},  # dies with this process
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0, asked.stderr
    assert "Traceback" not in asked.stderr, asked.stderr
    answers = json.loads(asked.stdout)
    return {
        " ".join(args): subprocess.CompletedProcess(args, code, out, err)
        for args, (code, out, err) in zip(cases, answers, strict=True)
    }


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2_naming_what_is_wrong(
    asked: Runs, runs_refused: dict[str, subprocess.CompletedProcess[str]], args: list[str], message: str
) -> None:
    """``run``'s asked of one real process for the module (each imports the chain, luigi's registry of task classes
    beside it: :func:`runs_refused`); ``status``'s asked in this one."""
    result = asked(args, {}) if args[0] == "status" else runs_refused[" ".join(args)]
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("command", "flag"), [("api", "--port"), ("scheduler", "--scheduler-port")])
def test_a_bad_setting_is_named_before_a_port_in_use(asked: Runs, command: str, flag: str) -> None:
    """A bad setting is what a command refuses first, even when its port is taken too (``nectar scheduler`` named
    the port and not the setting, whenever anything listened on 8082)."""
    with bound_to_a_free_port(socket.create_server) as held:
        port = str(held.getsockname()[1])
        result = asked([command, flag, port], {"NECTAR_MAX_QUEUE": "lots"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "nectar: NECTAR_MAX_QUEUE must be a whole number from 1 to 2147483647, not 'lots'\n"


def test_a_failed_steps_log_its_upload_left_in_the_live_logs_folder_is_named_there(settings: Settings) -> None:
    key = TargetKey.parse("chains/t/c_chain/ATask/0123456789abcdef0123456789abcdef/out.txt")
    store = get_store(settings)
    assert _log_location(store, key.with_file(STDERR_FILE)) is None
    _, stderr = create_live_logs(key)  # as a step leaves them when their upload fails

    assert _log_location(store, key.with_file(STDERR_FILE)) == str(stderr)


@pytest.mark.parametrize("command", ["serve", "api", "scheduler", "worker", "chains"])
def test_a_bad_setting_exits_2_in_one_line_naming_it(settings: Settings, asked: Runs, command: str) -> None:
    """Every command, the two that become gunicorn or luigid included, refuses a bad setting before it starts
    anything: one line naming the variable, no traceback (``serve`` a real process, the others asked here)."""
    ports = {"NECTAR_PORT": str(free_port()), "NECTAR_SCHEDULER_PORT": str(free_port())}  # 8082 may be taken here
    run = functools.partial(nectar, settings) if command == "serve" else lambda *argv, **env: asked(list(argv), env)
    result = run(command, NECTAR_MAX_QUEUE="lots", **ports)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "nectar: NECTAR_MAX_QUEUE must be a whole number from 1 to 2147483647, not 'lots'\n"


@pytest.mark.parametrize("command", ["serve", "worker", "status"])
def test_a_url_expiry_s3_would_refuse_stops_every_command_before_it_starts(
    settings: Settings, asked: Runs, command: str
) -> None:
    """S3 refuses a presigned URL that lives more than a week (SigV4), at its download: every command started with
    ``NECTAR_URL_EXPIRY=604801`` and the API handed out links S3 refused. Now none starts: one line, exit 2
    (``serve`` a real process, the others asked here)."""
    ports = {"NECTAR_PORT": str(free_port()), "NECTAR_SCHEDULER_PORT": str(free_port())}
    args = [
        command,
        *(["chains/etl/sales_chain/ATask/0123456789abcdef0123456789abcdef/out.txt"] * (command == "status")),
    ]
    run = functools.partial(nectar, settings) if command == "serve" else lambda *argv, **env: asked(list(argv), env)
    result = run(*args, ENV="prod", NECTAR_URL_EXPIRY="604801", **ports)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "nectar: NECTAR_URL_EXPIRY must be a whole number from 1 to 604800, not '604801'\n"


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        ("serve", {"NECTAR_API_THREADS": "x"}, "NECTAR_API_THREADS must be a whole number from 1 to 999, not 'x'"),
        (
            "api",
            {"NECTAR_API_MAX_REQUESTS": "lots"},
            "NECTAR_API_MAX_REQUESTS must be a whole number of at least 0, not 'lots'",
        ),
        (
            "serve",
            {"NECTAR_API_WORKERS": "x"},
            "--api-workers (env NECTAR_API_WORKERS) must be a whole number from 1 to 65536, not 'x'",
        ),
        (
            "serve",
            {"NECTAR_WORKERS": "0"},
            "--workers (env NECTAR_WORKERS) must be a whole number from 1 to 65536, not '0'",
        ),
        (
            "api",
            {"NECTAR_READ_TIMEOUT": "1e1"},
            "NECTAR_READ_TIMEOUT must be a number of seconds > 0, at most 1000000000 (digits, at most one point), "
            "not '1e1'",
        ),
        (
            "serve",
            {"NECTAR_KEEPALIVE_REQUESTS": "-1"},
            "NECTAR_KEEPALIVE_REQUESTS must be a whole number of at least 0, not '-1'",
        ),
        (
            "api",
            {"NECTAR_KEEPALIVE_REQUESTS": "+5"},
            "NECTAR_KEEPALIVE_REQUESTS must be a whole number of at least 0, not '+5'",
        ),
        ("api", {"NECTAR_LOG_LEVEL": "loud"}, "NECTAR_LOG_LEVEL must be one of debug, info, warning, error, critical"),
        ("serve", {"NECTAR_PORT": "x"}, "--port (env NECTAR_PORT) must be a whole number from 1 to 65535, not 'x'"),
        (
            "scheduler",
            {"NECTAR_SCHEDULER_PORT": "99999"},
            "--scheduler-port (env NECTAR_SCHEDULER_PORT) must be a whole number from 1 to 65535, not '99999'",
        ),
    ],
)
def test_a_bad_value_of_a_variable_a_role_reads_outside_the_settings_exits_2_naming_it(
    settings: Settings, asked: Runs, command: str, env: dict[str, str], message: str
) -> None:
    """gunicorn's variables and ``serve``'s number flags (from their variables here) are refused as a setting is:
    before anything starts (no luigid, no gunicorn started then stopped), one line naming the variable
    (``NECTAR_API_THREADS`` to a real ``serve``, the others asked here: a role that starts raises there)."""
    ports = {"NECTAR_PORT": str(free_port()), "NECTAR_SCHEDULER_PORT": str(free_port())}
    if "NECTAR_API_THREADS" in env:
        result: subprocess.CompletedProcess[str] | Ended = nectar(settings, command, **{**ports, **env})
    else:
        result = asked([command], {**ports, **env})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"nectar: {message}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["status", "chains/etl/sales_chain/ATask/0123456789abcdef0123456789abcdef/out.txt"],
        ["cancel", "0123"],
        ["schedules"],
        ["triggers"],
        ["worker"],
    ],
)
def test_a_registry_a_newer_release_upgraded_is_refused_in_one_line(
    settings: Settings, asked: Runs, command: list[str]
) -> None:
    """The README's *Upgrading*: an older release refuses a newer schema; the command says why in one line. ``worker``
    a real process (its exit status and stderr), the others asked of ``nectar.cli.main`` here: the message and the
    status are the question (:mod:`tests.helpers.suitecli_inprocess`)."""
    path = settings.data_dir / "runs.sqlite3"
    SQLiteRunStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    result = nectar(settings, *command) if command == ["worker"] else asked(command, {})

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"nectar: the run registry {path} has schema version {SCHEMA_VERSION + 1}, newer than this release's "
        f"{SCHEMA_VERSION}: run the newer release (or restore the registry from before the upgrade)\n"
    )


def test_a_reader_that_stops_early_ends_the_command_quietly(settings: Settings) -> None:
    """``nectar chains | head -1``: the pipe is closed before the command writes (its read end closed before the
    command starts), so every write meets it closed; the command ends with 1 and no traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [*NECTAR, "chains"],
            env={**os.environ, **settings_env(settings), **lifeline_env()},
            cwd=settings.data_dir.parent,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""


GUNICORN_VARIABLES = {
    "NECTAR_API_THREADS": "x",
    "NECTAR_API_MAX_REQUESTS": "lots",
    "NECTAR_KEEPALIVE_REQUESTS": "-1",
    "NECTAR_READ_TIMEOUT": "abc",
    "NECTAR_LOG_LEVEL": "loud",
}


@pytest.mark.parametrize(("var", "value"), sorted(GUNICORN_VARIABLES.items()))
def test_gunicorns_variables_are_checked_only_for_the_roles_that_start_gunicorn(var: str, value: str) -> None:
    """``nectar scheduler`` starts luigid alone and never reads gunicorn's variables: whatever they hold (an env file
    shared with the API's host), it starts as it did before the check; ``api`` and ``serve`` refuse the value."""
    parser = build_parser(roles_only=True)
    check_role_settings(parser.parse_args(["scheduler"]), {var: value})
    for role in ("api", "serve"):
        with pytest.raises(InvalidSetting, match=var):
            check_role_settings(parser.parse_args([role]), {var: value})


#: a command that writes to a pipe other than stdout whose reader is gone (a child's stdin, a socket's peer): a
#: stand-in, as no command of the CLI writes to one that a test can close under it
OTHER_PIPE_BROKEN = """
import os, sys
import nectar.cli.local as local
from nectar.cli import main

def chains(args):
    print("a line on stdout, read to the end")
    read, write = os.pipe()
    os.close(read)
    os.write(write, b"to a reader that is gone")

local.cmd_chains = chains
sys.exit(main(["chains"]))
"""


def test_a_broken_pipe_that_is_not_stdouts_is_an_error_not_a_quiet_end(settings: Settings) -> None:
    """Only a reader of stdout that stopped early ends the command quietly; a write to another pipe that fails (its
    stdout read to the end) says so with its traceback, instead of an exit 1 with nothing on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", OTHER_PIPE_BROKEN],
        env={**os.environ, **settings_env(settings), **lifeline_env()},
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "a line on stdout, read to the end\n"
    assert "BrokenPipeError: [Errno 32] Broken pipe" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "command", [["chains"], ["status", "chains/etl/sales_chain/ATask/0123456789abcdef0123456789abcdef/out.txt"]]
)
def test_a_command_started_with_stdout_closed_ends_as_it_would_with_it_open(
    settings: Settings, command: list[str]
) -> None:
    """``nectar … >&-`` (a script's daemon, a cron line): Python has no ``sys.stdout`` then, and print writes
    nothing; the command's exit status and its stderr are those it has with stdout open (chains 0, status of a key
    never run 2 with its one line), no traceback."""
    opened = nectar(settings, *command)
    closed = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *NECTAR, *command],
        env={**os.environ, **settings_env(settings), **lifeline_env()},
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert closed.returncode == opened.returncode, closed.stderr
    assert closed.stderr == opened.stderr
    assert "Traceback" not in closed.stderr


#: ``nectar <command>`` whose clock's stop raises (no stop of the clock raises on its own: its threads' joins, the
#: signals handled by the command; the one fault made here, the rest real), the registry's close told on stdout
CLOCK_STOP_RAISES = """
import sys
from nectar.cli import main
from nectar.schedules.clock import Clock
from nectar.service import Nectar

def stop(clock):
    Clock.request_stop(clock)
    raise RuntimeError("the clock's stop failed")

close = Nectar.close

def closing(nectar):
    close(nectar)
    print("the registry closed", flush=True)

Clock.stop = stop
Nectar.close = closing
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("command", "ready"),
    [(["worker", "--clock"], "slot(s), registry"), (["clock"], "firing schedules")],
    ids=["worker --clock", "clock"],
)
def test_a_clock_that_fails_to_stop_still_closes_its_registry(
    settings: Settings, tmp_path: Path, command: list[str], ready: str
) -> None:
    """``nectar worker --clock`` or ``nectar clock`` stopped by SIGTERM: its clock's stop raising left the registry
    open (one ``finally`` for both); the stop's error is still the command's, with its traceback. ``ready``: logged
    once the command's signal handlers are set."""
    log = tmp_path / "command.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLOCK_STOP_RAISES, *command],
            env={**os.environ, **settings_env(settings), **lifeline_env()},
            cwd=settings.data_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: ready in log.read_text(errors="replace"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = log.read_text(errors="replace")
    assert "RuntimeError: the clock's stop failed" in said, said
    assert "the registry closed\n" in said, said


@pytest.mark.parametrize(("value", "informs"), [("info", True), ("warn", False), ("fatal", False)])
def test_nectar_api_started_with_an_old_log_level_name_serves_at_that_level(
    settings: Settings, processes: Processes, value: str, informs: bool
) -> None:
    """``NECTAR_LOG_LEVEL=warn`` or ``fatal`` (Python's logging's older names, in an old env file) stopped ``nectar
    api`` before it started (exit 2); it serves now, its gunicorn logging no ``[INFO]`` line (``Starting gunicorn``,
    ``Listening at``), which ``info`` shows."""
    env = {**os.environ, **settings_env(settings), "NECTAR_LOG_LEVEL": value}

    def launch(port: int) -> subprocess.Popen[bytes]:
        return processes.start("api", [*NECTAR, "api", "--port", str(port)], env, settings.data_dir.parent)

    served = processes.serve("nectar api", None, False, launch, "/healthz")
    log = processes.log_of[served.proc.pid].read_text(errors="replace")
    assert ("[INFO]" in log) is informs, log


@pytest.mark.parametrize("command", ["worker", "serve", "chains", "scheduler"])
def test_luigis_toml_parser_is_refused_before_anything_starts(settings: Settings, asked: Runs, command: str) -> None:
    """``LUIGI_CONFIG_PARSER=toml`` needs a package Datanectar does not ship (luigi's ``ImportError`` was a traceback
    from every command, luigi's import its first step), and would keep luigi's settings where a reused process's
    put-back does not look: one line naming it, exit 2, nothing started (``worker`` a real process, before luigi is
    imported; the others asked here)."""
    run = functools.partial(started, settings) if command == "worker" else asked
    result = run([command], {"LUIGI_CONFIG_PARSER": "toml"})

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("nectar: LUIGI_CONFIG_PARSER=toml is not supported: luigi's toml parser needs the")
    assert result.stderr.count("\n") == 1 and "NECTAR_LUIGI_CONFIG" in result.stderr
    assert not (settings.data_dir / "luigid").exists()  # serve started no luigid (it makes its state folder first)


def test_a_command_that_never_imports_luigi_is_not_refused_for_its_parser(asked: Runs) -> None:
    result = asked(["token"], {"LUIGI_CONFIG_PARSER": "toml"})

    assert result.returncode == 0, result.stdout + result.stderr
