"""A stop that reaches a process of ``nectar serve`` (or ``nectar api``, ``nectar scheduler``) before any handler of
ours is set, even while its interpreter starts, ends it with status 0 and nothing started, as a stop after does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import NECTAR, base_env, free_port, lifeline_env, waitfor
from nectar import supervisor
from nectar.cli import build_parser

#: seconds that only fail a hung test
PATIENCE = 60.0
#: a ``sitecustomize`` that holds a process (once: an ``exec`` keeps its pid) until the file ``HOLD_GATE`` exists,
#: saying so with the file ``<HOLD_GATE>.<pid>``: as its interpreter starts (``HOLD_AT=start``), as the interpreter a
#: role command became starts (``exec``: ``-c``, where the command ran as ``-m``), at its first bind of a socket
#: (``bind``: a role command's check of its ports, before its own handlers) or as it starts its first process
#: (``popen``: serve's API)
HOLD = """
import os, sys, time

def _hold():
    held = f"{os.environ['HOLD_GATE']}.{os.getpid()}"
    if os.path.exists(held):
        return
    open(held, "w").close()
    while not os.path.exists(os.environ["HOLD_GATE"]):
        time.sleep(0.02)

def _at(event, args):
    if event == {"bind": "socket.bind", "popen": "subprocess.Popen"}[os.environ["HOLD_AT"]]:
        _hold()

_where = os.environ.get("HOLD_AT")
if _where == "start" or (_where == "exec" and sys.argv[:1] == ["-c"]):
    _hold()
elif _where in ("bind", "popen"):
    sys.addaudithook(_at)
"""


def holding(tmp_path: Path, at: str) -> tuple[dict[str, str], Path]:
    """The variables that have a process started with them held by :data:`HOLD` at ``at``, and the gate."""
    hooks, gate = tmp_path / "hooks", tmp_path / "gate"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOLD)
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "HOLD_GATE": str(gate), "HOLD_AT": at}, gate


def held(gate: Path, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, f"exited with code {proc.returncode} before it was held"
    return Path(f"{gate}.{proc.pid}").exists()


def stopped_once_held(proc: subprocess.Popen[bytes], gate: Path) -> int:
    """``proc``'s exit status after a SIGTERM while it is held, the gate opened then."""
    try:
        waitfor(lambda: held(gate, proc), PATIENCE, "the process to be held")
        proc.send_signal(signal.SIGTERM)
        gate.touch()
        return proc.wait(PATIENCE)
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def part_argv(part: str, data_dir: Path) -> list[str]:
    """What ``serve`` starts as ``part``."""
    if part == "api":
        return supervisor.GUNICORN
    if part == "luigid":
        return supervisor.luigid_command("127.0.0.1", free_port(), data_dir)
    return [sys.executable, "-m", "nectar.cli", "worker", "--clock", "--workers", "1"]


@pytest.mark.parametrize("part", ["api", "luigid", "workers"])
def test_a_part_stopped_while_its_interpreter_starts_exits_0(
    part: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` stopped just after it started a part (Ctrl-C as it starts, or a part that died meanwhile) sends
    it SIGTERM while its interpreter starts, before any code of ours runs: it was killed by the signal (-15). The
    supervisor starts each part with a stop held, which the part's prelude takes once it handles it."""
    variables, gate = holding(tmp_path, "start")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    data_dir = tmp_path / "data"
    args = build_parser(roles_only=True).parse_args(["serve", "--data-dir", str(data_dir)])
    started = supervisor.Supervisor(args)._start(part, part_argv(part, data_dir))
    assert stopped_once_held(started.proc, gate) == 0


@pytest.mark.parametrize("role", ["serve", "api", "scheduler"])
def test_a_role_command_stopped_before_its_handlers_exits_0_having_started_nothing(role: str, tmp_path: Path) -> None:
    """``nectar serve``, ``api`` or ``scheduler`` stopped while it checks its ports (before serve's handlers, or
    before the others become gunicorn or luigid): killed by the signal (-15) before; now status 0, nothing started."""
    variables, gate = holding(tmp_path, "bind")
    ports = ["--port", str(free_port())] if role != "scheduler" else ["--scheduler-port", str(free_port())]
    if role == "serve":
        ports += ["--scheduler-port", str(free_port())]
    argv = [*NECTAR, role, *ports]
    env = base_env() | lifeline_env() | variables | {"NECTAR_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    assert stopped_once_held(proc, gate) == 0
    assert proc.stderr is not None
    said = proc.stderr.read().decode()
    proc.stderr.close()
    assert said == "", said


@pytest.mark.parametrize("role", ["api", "scheduler"])
def test_a_role_command_stopped_as_the_interpreter_it_became_starts_exits_0(role: str, tmp_path: Path) -> None:
    """``nectar api`` becomes gunicorn (``nectar scheduler``, luigid) by ``exec``: a stop while the new interpreter
    starts, before its prelude handles it, killed it (-15); it is held until then, and ends it with status 0."""
    variables, gate = holding(tmp_path, "exec")
    port = ["--port" if role == "api" else "--scheduler-port", str(free_port())]
    env = base_env() | lifeline_env() | variables | {"NECTAR_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([*NECTAR, role, *port], cwd=tmp_path, env=env)
    assert stopped_once_held(proc, gate) == 0


def test_serve_stopped_as_it_starts_its_api_starts_nothing_more(tmp_path: Path) -> None:
    """A stop while ``serve`` starts its API: it went on to start luigid (``serve`` then stopped both); it starts
    nothing more, stops the API and exits 0."""
    variables, gate = holding(tmp_path, "popen")
    argv = [*NECTAR, "serve", "--port", str(free_port()), "--scheduler-port", str(free_port())]
    env = base_env() | lifeline_env() | variables | {"NECTAR_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=out)
    assert stopped_once_held(proc, gate) == 0, log.read_text()
    said = log.read_text()
    stops = [line.partition("stopping ")[2] for line in said.splitlines() if "stopping " in line]
    assert stops == ["api"], said  # no luigid started, none named
