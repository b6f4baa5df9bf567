"""``nectar serve`` stops its parts together: a part slow to stop (the API, the workers and their clock) holds no
other up."""

from __future__ import annotations

import signal
from pathlib import Path

from harness import alive, children, cmdline, descendants, pending, send, waitfor
from tests.nectar.test_serve import _serve


def test_the_api_and_the_workers_with_the_clock_are_asked_to_stop_together(tmp_path: Path) -> None:
    """Both frozen (SIGSTOP: neither can stop until thawed, and a SIGTERM sent to one stays pending, to be read in
    /proc), serve is asked to stop: both are sent SIGTERM before either is killed. One part after the other, the
    second was sent nothing until the first had stopped or been killed after its stop timeout (20 s for the API,
    the drain grace, here 600 s, and 20 s for the workers): never were both pending at once."""
    served = _serve(tmp_path, {"NECTAR_DRAIN_GRACE": "600"})
    info = next(served)
    try:
        parts = {pid: cmdline(pid) for pid in children(info.proc.pid)}
        (api,) = [pid for pid, line in parts.items() if "gunicorn" in line]  # its master
        (workers,) = [pid for pid, line in parts.items() if "nectar.cli worker --clock" in line]  # the clock is in it
        for pid in (api, workers):
            send(pid, signal.SIGSTOP)

        info.proc.send_signal(signal.SIGTERM)

        def asked(pid: int) -> bool:
            return alive(pid) and signal.SIGTERM in pending(pid)

        waitfor(lambda: asked(api) and asked(workers), 60, "SIGTERM sent to the API and the workers, neither killed")
        for pid in (api, workers):
            send(pid, signal.SIGCONT)
        waitfor(lambda: info.proc.poll() is not None, 60, "serve to stop once its parts could")
        assert info.proc.returncode == 0, info.log.read_text()
    finally:
        for pid in descendants(info.proc.pid):
            send(pid, signal.SIGCONT)
        next(served, None)
