"""Every process the harness starts dies with the process that started it, whatever kills that process
(:mod:`harness.lifeline`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import (
    LIFELINE_VAR,
    REPO,
    Processes,
    alive,
    base_env,
    cmdline,
    descendants,
    free_port,
    freeze,
    lifeline,
    lifeline_env,
    send,
    settings_env,
    waitfor,
)
from nectar import ports
from nectar.config import Settings
from tests.helpers.debian import install
from tests.helpers.postgres import ensure_installed, stop_orphans


def first_line_said(
    processes: Processes, starter: subprocess.Popen[bytes], wanted: Callable[[str], bool]
) -> Callable[[], str]:
    """What :func:`waitfor` asks: the first line of the starter's log that is ``wanted`` ("" before; fails at once if
    the starter ended)."""
    log = processes.log_of[starter.pid]

    def said() -> str:
        assert starter.poll() is None, log.read_text()
        return next((line for line in log.read_text().splitlines() if wanted(line)), "")

    return said


def killed_with_all_it_started(starter: subprocess.Popen[bytes], pids: dict[int, str]) -> None:
    """SIGKILL the starter, then wait for every one of ``pids`` (each with what it is) to exit."""
    send(starter.pid, signal.SIGKILL)
    starter.wait(timeout=60)
    try:
        waitfor(lambda: not any(alive(pid) for pid in pids), 60, "every process of the killed starter to exit")
    except AssertionError:
        raise AssertionError(f"still running: { {p: n for p, n in pids.items() if alive(p)} }") from None


def test_every_part_dies_when_the_process_that_started_it_is_killed(
    processes: Processes, settings: Settings, tmp_path: Path
) -> None:
    """A process starts luigid and moto (from a thread that has ended by then), an API and a worker, and is killed
    by SIGKILL (no finalizer, no handler runs): each of them, and what each started (gunicorn's workers, the
    worker's spare processes), exits, the API's master too though frozen (SIGSTOP: a signal it is sent stays
    pending). Before the harness's lifeline, every one lived on, handed to init."""
    env = {**base_env(), **settings_env(settings)}
    starter = processes.start("starter", [sys.executable, "-m", "tests.harness.starter", str(tmp_path)], env, REPO)
    said = first_line_said(processes, starter, lambda line: line.startswith("{"))
    parts: dict[str, int] = json.loads(waitfor(said, 120, "the starter to start its parts and print their pids"))
    assert sorted(parts) == ["api", "luigid", "moto", "worker"]
    freeze(parts["api"])
    pids = {pid: name for name, part in parts.items() for pid in [part, *descendants(part)]}
    assert all(alive(pid) for pid in pids), {pid: name for pid, name in pids.items() if not alive(pid)}

    killed_with_all_it_started(starter, pids)


#: a process that starts a PostgreSQL server through the tests' helper, prints its postmaster's pid and waits
POSTGRES_STARTER = """
import threading
from harness import free_port
from tests.helpers.postgres import PostgresServer
server = PostgresServer.start(free_port())
print((server.folder / "data" / "postmaster.pid").read_text().split()[0], flush=True)
threading.Event().wait()
"""


def test_a_postgresql_server_dies_when_the_process_that_started_it_is_killed(
    processes: Processes, tmp_path: Path
) -> None:
    """``pg_ctl`` starts the server in the background, a child of no one once ``pg_ctl`` exits: the tests' helper
    gives it the lifeline of the process that started it, so that a killed session leaves no server running. (Its
    folder is left, for the next session's :func:`stop_orphans` to remove.) Before, the server lived on."""
    starter = processes.start("postgres-starter", [sys.executable, "-c", POSTGRES_STARTER], base_env(), REPO)
    said = first_line_said(processes, starter, str.isdigit)
    postmaster = int(waitfor(said, 120, "the starter to start PostgreSQL and print its pid"))
    pids = {pid: cmdline(pid) for pid in [postmaster, *descendants(postmaster)]}
    assert all(alive(pid) for pid in pids)

    try:
        killed_with_all_it_started(starter, pids)
    finally:
        stop_orphans(ensure_installed())


def test_a_child_forked_from_a_process_with_a_lifeline_holds_none_of_it() -> None:
    """A child forked (not exec'd) from this process closes its copy of the lifeline's write end: the watcher sees
    this process's end when this process ends, not when the child does too."""
    lifeline_env()
    assert lifeline._held is not None
    pipe = os.readlink(f"/proc/self/fd/{lifeline._held[1]}")
    forked, go = os.pipe()
    ready, said_ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its fork handlers have run; says so, then waits to be let go
        os.write(said_ready, b"1")
        os.read(forked, 1)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"1"
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert pipe.startswith("pipe:") and pipe not in held, held
    finally:
        os.write(go, b"1")
        os.waitpid(pid, 0)
        for fd in (forked, go, ready, said_ready):
            os.close(fd)


def test_a_watcher_killed_is_replaced_for_the_same_lifeline_by_the_next_start() -> None:
    """Someone kills this process's watcher: the next part started gets a new one, watching the same lifeline, so
    the parts started before it are still watched."""
    before = lifeline_env()
    killed = lifeline._watchers[-1]
    killed.kill()
    killed.wait(timeout=60)

    assert lifeline_env() == before
    watcher = lifeline._watchers[-1]
    assert watcher is not killed and watcher.poll() is None
    # Popen returns once the child is in execve, where /proc's cmdline reads empty until its new arguments are set
    *_, read_end, watched = waitfor(lambda: cmdline(watcher.pid), 60, "the new watcher's command line").split()
    assert watched == before[LIFELINE_VAR] and lifeline._held is not None
    assert os.readlink(f"/proc/{watcher.pid}/fd/{read_end}") == os.readlink(f"/proc/self/fd/{lifeline._held[1]}")


#: a process that starts another inside a write transaction of a registry, as the SQLite registry's tests do (a pipe
#: to read that it is inside), prints its pid and waits
HOLDER_STARTER = """
import sys, threading
from pathlib import Path
from tests.nectar.test_sqlite_writers import inside_a_transaction
print(inside_a_transaction(Path(sys.argv[1])).pid, flush=True)
threading.Event().wait()
"""


def test_a_process_a_test_starts_itself_dies_when_the_test_process_is_killed(
    processes: Processes, tmp_path: Path
) -> None:
    """A test's own child with a pipe to read (another writer holding a registry's turn; the registry tests' transaction
    killed half way starts the same way) dies with the test's process, SIGKILLed. Before, it slept on for an hour,
    handed to init, the registry's write turn held."""
    argv = [sys.executable, "-c", HOLDER_STARTER, str(tmp_path / "registry.db")]
    starter = processes.start("holder-starter", argv, base_env(), REPO)
    holder = int(waitfor(first_line_said(processes, starter, str.isdigit), 120, "the starter to start the holder"))
    assert alive(holder)

    killed_with_all_it_started(starter, {holder: cmdline(holder)})


#: a process that starts the session's mypy as a pytest controller does (tests/helpers/background_mypy.py), prints its
#: pid and waits
MYPY_STARTER = """
import sys, threading, types
from pathlib import Path
import pytest
from tests.helpers import background_mypy
config = types.SimpleNamespace(stash=pytest.Stash())
config.stash[background_mypy.FOLDER] = Path(sys.argv[1])
background_mypy.start(config)
print(config.stash[background_mypy.STARTED].pid, flush=True)
threading.Event().wait()
"""


def test_the_sessions_mypy_dies_when_the_session_is_killed(processes: Processes, tmp_path: Path) -> None:
    """The mypy a session starts at its beginning for tests/test_lint.py dies with the session, SIGKILLed. Before, it
    ran on to its end (~45 s of a CPU), writing into the folder of a session long gone."""
    starter = processes.start("mypy-starter", [sys.executable, "-c", MYPY_STARTER, str(tmp_path)], base_env(), REPO)
    mypy = int(waitfor(first_line_said(processes, starter, str.isdigit), 120, "the starter to start mypy"))
    assert alive(mypy)

    killed_with_all_it_started(starter, {mypy: cmdline(mypy)})


#: a chain module whose task listens on the port it is given and waits: what plain luigi runs for the test below
LISTENER_CHAIN = """
import socket, threading
import luigi
class Listener(luigi.Task):
    port = luigi.IntParameter()
    def run(self):
        held = socket.create_server(("127.0.0.1", self.port))
        threading.Event().wait()
"""
#: a process that runs a command through a test's own ``subprocess.run`` helper (it blocks there) and is killed
#: meanwhile: plain luigi (tests/api/test_plain_tasks.py) running a task that listens on ``port``, or ``nectar
#: scheduler`` (tests/nectar/test_cli.py) listening on it
RUN_STARTERS = {
    "plain-luigi": """
import sys
from pathlib import Path
from tests.api.test_plain_tasks import plain_luigi
from tests.harness.test_lifeline import LISTENER_CHAIN
folder, port = Path(sys.argv[1]), sys.argv[2]
chain = folder / "chains" / "plain" / "shapes_chain.py"
chain.parent.mkdir(parents=True)
chain.write_text(LISTENER_CHAIN)
plain_luigi(folder, "Listener", "--port", port)
""",
    "nectar-cli": """
import sys
from pathlib import Path
from nectar.config import Settings
from tests.nectar.test_cli import nectar
folder, port = Path(sys.argv[1]), sys.argv[2]
nectar(Settings.from_env(), "scheduler", "--scheduler-port", port, "--data-dir", str(folder / "data"))
""",
}


@pytest.mark.parametrize("kind", sorted(RUN_STARTERS))
def test_a_command_a_test_runs_to_its_end_dies_when_the_test_process_is_killed(
    processes: Processes, settings: Settings, tmp_path: Path, kind: str
) -> None:
    """A test's ``subprocess.run`` of a command (plain luigi, a ``nectar`` command) that has not ended when the test's
    process is SIGKILLed: the command, and what it started, die with it. Before, they ran on, handed to init (until
    the command ended by itself, if ever)."""
    port = free_port()
    argv = [sys.executable, "-c", RUN_STARTERS[kind], str(tmp_path), str(port)]
    starter = processes.start(f"{kind}-starter", argv, {**base_env(), **settings_env(settings)}, REPO)

    def listening() -> bool:
        assert starter.poll() is None, processes.log_of[starter.pid].read_text()
        return bool(ports.listeners(port))

    waitfor(listening, 120, f"the command the starter runs to listen on {port}")
    pids = {pid: cmdline(pid) for pid in descendants(starter.pid)}
    assert pids

    killed_with_all_it_started(starter, pids)


#: a process that starts its lifeline's watcher, then a part through the harness (from a thread: the start returns
#: only once the part has exec'd), prints its pid and the watcher's and waits
HELD_STARTER = """
import os, sys, threading
from pathlib import Path
from harness import Processes, base_env, lifeline
lifeline.lifeline_env()
print(os.getpid(), lifeline._watchers[-1].pid, flush=True)
start = Processes(Path(sys.argv[1])).start
threading.Thread(target=start, args=("held", [sys.argv[2], "3600"], base_env()), daemon=True).start()
threading.Event().wait()
"""


def two_pids(line: str) -> bool:
    return len(line.split()) == 2 and line.replace(" ", "").isdigit()


def strace() -> str:
    """strace's path, installing Debian's package if it is missing."""
    install("strace", lambda: shutil.which("strace") is not None)
    found = shutil.which("strace")
    assert found is not None  # install() checked it
    return found


def state(pid: int) -> str:
    """The state letter of ``pid`` in /proc ("t": stopped by its tracer; "" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def pipe_holders(pipe: str) -> set[int]:
    """Every process holding ``pipe`` (a ``pipe:[inode]`` link of /proc) open."""
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == pipe for fd in os.listdir(f"/proc/{entry}/fd")):
                found.add(int(entry))
    return found


def test_a_part_held_in_its_execve_when_its_starter_dies_dies_too(processes: Processes, tmp_path: Path) -> None:
    """A part forked by the harness, stopped at the entry of its ``execve`` (strace holds it there until the test kills
    strace) when its starter is SIGKILLed, carries nothing yet: its environment is still its starter's. It still
    holds the lifeline's write end, which its exec closes (close-on-exec), so the watcher waits for that exec and
    finds it. Before, the harness's ``close_fds`` had closed it before the ``execve``: the watcher swept at once,
    found nothing and ended, and the part then ran on, carrying a lifeline no one watched."""
    held = tmp_path / "held-sleep"
    shutil.copy("/bin/sleep", held)  # a file of its own: strace holds no other execve
    hold = ["-f", "-qq", "-o", "/dev/null", "-P", str(held), "-e", "trace=execve"]
    hold += ["-e", "inject=execve:delay_enter=3600s"]  # an hour: until the test kills strace
    argv = [strace(), *hold, sys.executable, "-c", HELD_STARTER, str(tmp_path / "held-logs"), str(held)]
    tracer = processes.start("held-starter", argv, base_env(), REPO)
    said = waitfor(first_line_said(processes, tracer, two_pids), 120, "the starter's pids")
    starter, watcher = map(int, said.split())

    def part() -> int | None:  # the starter's child stopped by strace: at the entry of its execve
        return next((pid for pid in descendants(starter) if pid != watcher and state(pid) == "t"), None)

    child = waitfor(part, 60, "the part held at its execve")
    *_, read_end, _ = waitfor(lambda: cmdline(watcher), 60, "the watcher's command line").split()
    pipe = os.readlink(f"/proc/{watcher}/fd/{read_end}")
    try:
        send(starter, signal.SIGKILL)
        waitfor(lambda: not alive(starter), 60, "the starter to die")
        # the watcher has seen the end of its pipe and ended, or a process still holds the write end: its decision
        waitfor(lambda: not alive(watcher) or pipe_holders(pipe) - {watcher}, 60, "the watcher's decision")
        send(tracer.pid, signal.SIGKILL)  # the part let go: its execve goes on
        waitfor(lambda: not alive(child), 60, "the part, exec'd, to be killed by the watcher")
    finally:
        send(child, signal.SIGKILL)


def test_a_part_holds_none_of_its_starter_s_files_but_its_standard_streams(processes: Processes) -> None:
    """Parts start without ``close_fds`` (their exec closes what they hold, above): a file this process holds, one it
    inherited too (made inheritable here), still does not reach them (kept behaviour)."""
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)
    try:
        part = processes.start("sleeper", ["sleep", "3600"], base_env())

        # in its sleep (state S), past its loader, which holds the C library open (fd 3) while it maps it: listed
        # as soon as the exec is seen, a part read then showed that file (CI, round 61)
        def asleep() -> list[str] | bool:
            exec_d = cmdline(part.pid).startswith("sleep")
            return exec_d and state(part.pid) == "S" and os.listdir(f"/proc/{part.pid}/fd")

        held = waitfor(asleep, 60, "it asleep")
        assert sorted(map(int, held)) == [0, 1, 2], {fd: os.readlink(f"/proc/{part.pid}/fd/{fd}") for fd in held}
    finally:
        os.close(read_end)
        os.close(write_end)
