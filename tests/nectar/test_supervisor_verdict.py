"""The pipe on which the API's gunicorn master tells ``nectar serve``'s supervisor how it opened the run registry: a
stop ends the supervisor's wait on it, and the master writes to, and closes, only that pipe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import base_env, lifeline_env

#: seconds that only fail a hung test
PATIENCE = 60.0
#: ``serve``'s supervisor, listening for its stops, at its check of the registry on the master's word (the pipe's end
#: its first argument): its patience beyond any test's, so that the pipe, held open by the test, ends it by a stop alone
CHECKING = """
import sys
from nectar.cli import build_parser
from nectar.supervisor import Supervisor

supervisor = Supervisor(build_parser(roles_only=True).parse_args(["serve", "--data-dir", sys.argv[2]]))
supervisor.listen_for_stops()
supervisor._registry_verdict = int(sys.argv[1])
print("checking", flush=True)
supervisor.check_registry(patience=3600)
print("stopped" if supervisor.stop_asked() else "went on", flush=True)
"""


def test_a_stop_ends_the_supervisors_wait_for_the_masters_word(tmp_path: Path) -> None:
    """A copy of the pipe's writing end held on (by a process the master started as it loaded the app), or a
    registry that does not answer the supervisor's own look: a stop meanwhile waited out the patience (30 s) before
    serve stopped its parts. It ends the wait now."""
    reader, writer = os.pipe()
    env = base_env() | lifeline_env()
    argv = [sys.executable, "-c", CHECKING, str(reader), str(tmp_path / "data")]
    proc = subprocess.Popen(argv, env=env, pass_fds=(reader,), stdout=subprocess.PIPE, text=True)
    os.close(reader)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "checking\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=PATIENCE)  # a deadline for a hung test only: it waited 3,600 s before
    finally:
        os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (0, "stopped\n")


#: gunicorn's master, started by ``serve``, whose pipe's descriptor something closed after the configuration was read
#: (``closed``), or put a file in its place (``a file``): its word told then, and the file's content printed
TELL_AFTER = """
import os, sys, nectar.gunicorn_conf as c
fd = int(os.environ["NECTAR_REGISTRY_VERDICT_FD"])
os.close(fd)
if sys.argv[1] == "a file":
    file = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT)
    os.dup2(file, fd)
    os.close(file)
c._tell_supervisor(b"opened")
print("went on", open(sys.argv[2]).read() if sys.argv[1] == "a file" else "", flush=True)
"""


@pytest.mark.parametrize("instead", ["closed", "a file"])
def test_the_master_tells_no_descriptor_that_is_no_longer_the_supervisors_pipe(instead: str, tmp_path: Path) -> None:
    """The master closed the descriptor it was named whatever it had become: one closed since raised out of its
    ``pre_fork`` (gunicorn's master stopped before its first worker); one whose number a file took got the word
    written into it, and was closed under its owner. The master now leaves both alone and goes on."""
    reader, writer = os.pipe()
    env = base_env() | lifeline_env() | {"NECTAR_REGISTRY_VERDICT_FD": str(writer)}
    env["NECTAR_SUPERVISOR_PID"] = str(os.getpid())
    argv = [sys.executable, "-c", TELL_AFTER, instead, str(tmp_path / "file")]
    master = subprocess.run(argv, env=env, pass_fds=(writer,), capture_output=True, text=True, timeout=PATIENCE)
    os.close(writer)
    with open(reader, "rb") as said:
        word = said.read()  # the pipe's end: the master's copy was closed before it told
    assert (master.returncode, master.stdout.split(), word) == (0, ["went", "on"], b""), master.stderr
