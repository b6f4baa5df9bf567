"""A listening socket handed to the server that serves its port (:func:`nectar.ports.hand_over`,
:func:`nectar.ports.take_handed`) lands on descriptor 3 as systemd's socket activation hands one, wherever the starter
had it, and a descriptor handed beside it is kept off 3 (:func:`nectar.ports.off_the_handed_descriptor`)."""

from __future__ import annotations

import subprocess
import sys

#: in a process whose descriptor 3 is the write end of a pipe: that end moved off 3, still the pipe's
OFF_THREE = """
import contextlib, os
from nectar.ports import off_the_handed_descriptor
with contextlib.suppress(OSError):
    os.close(3)
reader, writer = os.pipe()
os.dup2(reader, 9); os.close(reader); reader = 9
os.dup2(writer, 3); os.close(writer)
moved = off_the_handed_descriptor(3)
assert moved > 3, moved
os.write(moved, b"kept")
assert os.read(reader, 4) == b"kept"
try:
    os.fstat(3)
except OSError:
    print("closed")
"""

#: a socket bound on a free port, handed over on a descriptor above 3, then taken as gunicorn's master takes it
TAKEN = """
import contextlib, os, socket
from nectar import ports
with contextlib.suppress(OSError):
    os.close(3)
spare = os.open(os.devnull, os.O_RDONLY)  # 3: the socket lands above it
listener = ports.listen("127.0.0.1", 0, "a test")
port = listener.getsockname()[1]
fd, handed = ports.hand_over(listener)
assert fd > 3, fd
os.close(spare)
os.environ.update(handed)
ports.take_handed()
assert "NECTAR_LISTEN_FD" not in os.environ
assert os.environ["LISTEN_FDS"] == "1" and os.environ["LISTEN_PID"] == str(os.getpid())
taken = socket.socket(fileno=3)
assert taken.getsockname()[1] == port
assert taken.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
print("taken")
"""


def probe(script: str) -> str:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_descriptor_handed_beside_the_socket_is_moved_off_three() -> None:
    assert probe(OFF_THREE) == "closed"


def test_a_socket_handed_above_three_is_taken_on_three() -> None:
    assert probe(TAKEN) == "taken"
