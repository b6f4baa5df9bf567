"""What ``nectar serve`` says of processes: its stop line names what it stops (luigid only where it started one), and
a port's holder that is a part of a serve is named by its role and its serve, not by its 200-character prelude."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import NECTAR, REPO, Processes, Served, base_env, free_port, lifeline_env, settings_env, wait_until
from nectar.config import Settings
from nectar.lifeline import SUPERVISOR_VAR
from nectar.ports import name_of


def stops_said(processes: Processes, served: Served) -> list[str]:
    """What ``served`` (a ``nectar serve`` up) says it stops, once stopped after it started its workers."""
    log = processes.log_of[served.proc.pid]
    wait_until(lambda: "Datanectar is up" in log.read_text())  # said once the workers are started
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=120) == 0, log.read_text()
    return [line.partition("stopping ")[2] for line in log.read_text().splitlines() if "stopping " in line]


def test_a_serve_given_a_scheduler_url_says_it_stops_no_luigid(
    settings: Settings, processes: Processes, luigid: str, tmp_path: Path
) -> None:
    """Given ``--scheduler-url``, serve starts no luigid: its stop line said "...; luigid last" all the same."""
    env = base_env() | settings_env(settings)
    served = processes.nectar_serve(env, tmp_path, ["--scheduler-url", luigid])

    assert stops_said(processes, served) == ["workers, api"]


def test_a_serve_stops_its_luigid_last_and_says_so(settings: Settings, processes: Processes, tmp_path: Path) -> None:
    env = base_env() | settings_env(settings)
    served = processes.nectar_serve(env, tmp_path)

    assert stops_said(processes, served) == ["workers, api; luigid last"]


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", ""], env={**os.environ, **lifeline_env()})
    child.wait()
    return child.pid


def test_a_port_held_by_the_api_of_a_serve_gone_is_named_by_what_it_is(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """The API's gunicorn left holding its port by a serve killed -9 (its environment names that serve, gone): the
    next serve's refusal names it shortly, its pid, its role and its serve, not its ``python -c`` prelude."""
    gone = dead_pid()
    api = processes.nectar_api(settings, env={SUPERVISOR_VAR: str(gone)})
    argv = [*NECTAR, "serve", "--port", str(api.port), "--scheduler-port", str(free_port())]
    env = base_env() | settings_env(settings) | lifeline_env()

    second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert second.returncode == 2, second.stdout + second.stderr
    holder = f"pid {api.proc.pid} (an API process (gunicorn) of a nectar serve (pid {gone}, gone))"
    assert second.stderr == f"nectar: port {api.port} (the API, --port) is in use by {holder}\n"


#: the last pid the kernel handed out in this pid namespace: the next process gets the first free pid above it
NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")
#: the inode of the machine's own pid namespace (the kernel's ``PROC_PID_INIT_INO``), not a container's
INIT_PID_NS = 0xEFFFFFFC
MACHINES = "this is the machine's own pid namespace: its processes' pids are not the test's to rewind"


def why_no_pid_is_taken_again() -> str | None:
    """Why this test may not set the kernel's last pid here, or None where it may: it rewinds the pids every process
    of the namespace is handed next, which a container's own namespace (CI's) bears for the few forks the test makes,
    and the machine's own (a developer's root shell) is not the test's to rewind."""
    try:
        machines = os.stat("/proc/self/ns/pid").st_ino == INIT_PID_NS
    except OSError:
        return "this process's pid namespace cannot be told"
    if machines:
        return MACHINES
    if not os.access(NS_LAST_PID, os.W_OK):
        return "the kernel's last pid cannot be set here (not root): no pid can be taken again at will"
    return None


def a_process_given_pid(pid: int) -> subprocess.Popen[bytes]:
    """A process (``sleep``, on this test's lifeline) on ``pid``, a pid that was another's: the kernel is told the
    pid before it was the last handed out (as CRIU restores a process), and a process started then; again where
    another process of the namespace was started between the two and took it. The last pid is set back as it was
    (or to the one handed out since, higher) once done: the namespace's next pids are new ones again, not those just
    freed above ``pid`` (a test beside this one, holding a pid that ended as gone, keeps it gone)."""
    before = int(NS_LAST_PID.read_text())
    try:
        for _ in range(1000):
            NS_LAST_PID.write_text(str(pid - 1))
            child = subprocess.Popen(["sleep", "600"], env={**os.environ, **lifeline_env()})
            if child.pid == pid:
                return child
            child.kill()
            child.wait()
    finally:
        NS_LAST_PID.write_text(str(max(before, int(NS_LAST_PID.read_text()))))
    raise AssertionError(f"pid {pid} was never handed out again")


def test_a_serve_gone_whose_pid_another_process_took_is_named_gone(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """The serve an API part names is gone though its pid is taken again: by a process started after the part, which
    can be no supervisor of it (before, a pid there was the serve there, and the refusal said it was not gone)."""
    if (why := why_no_pid_is_taken_again()) is not None:
        pytest.skip(why)
    gone = dead_pid()
    api = processes.nectar_api(settings, env={SUPERVISOR_VAR: str(gone)})
    taker = a_process_given_pid(gone)
    try:
        argv = [*NECTAR, "serve", "--port", str(api.port), "--scheduler-port", str(free_port())]
        env = base_env() | settings_env(settings) | lifeline_env()
        second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        taker.kill()
        taker.wait()

    assert second.returncode == 2, second.stdout + second.stderr
    holder = f"pid {api.proc.pid} (an API process (gunicorn) of a nectar serve (pid {gone}, gone))"
    assert second.stderr == f"nectar: port {api.port} (the API, --port) is in use by {holder}\n"


def test_a_serve_gone_whose_pid_was_taken_again_in_a_pid_namespace_of_its_own() -> None:
    """The test above, where it may not rewind pids (the machine's own pid namespace), run in a pid namespace of its
    own (``unshare``, as root): its last pid set there rewinds no process of the machine's, and every process the test
    started ends as the namespace's first does."""
    if why_no_pid_is_taken_again() != MACHINES:
        pytest.skip("the test above runs where it is, or cannot run")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("no pid namespace can be made here (not root, or no unshare)")
    made = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if made.returncode != 0:  # a container without the right to make namespaces
        pytest.skip(f"no pid namespace can be made here: {made.stderr.strip()}")
    node = f"{Path(__file__).resolve()}::test_a_serve_gone_whose_pid_another_process_took_is_named_gone"
    pytest_argv = [sys.executable, "-m", "pytest", node, "-q", "-n0", "-p", "no:cacheprovider", "-rs"]
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    argv = ["unshare", "--pid", "--fork", "--mount-proc", *pytest_argv]
    ran = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    assert ran.returncode == 0 and ran.stdout.splitlines()[-1].startswith("1 passed"), ran.stdout + ran.stderr


def test_a_serve_killed_and_not_yet_reaped_is_named_gone(settings: Settings, processes: Processes) -> None:
    """A serve killed -9 whose parent has not yet waited for it (a zombie: its pid held, nothing of it running) is
    gone to the part it left holding the port (before: its pid was there, so the serve was named as not gone)."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for until the end: a zombie meanwhile
    try:
        wait_until(lambda: Path(f"/proc/{ended.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z")
        api = processes.nectar_api(settings, env={SUPERVISOR_VAR: str(ended.pid)})

        named = name_of(api.proc.pid)
    finally:
        ended.wait()

    assert named == f"an API process (gunicorn) of a nectar serve (pid {ended.pid}, gone)"
