"""``nectar serve`` stops its parts together: an API slow to stop does not hold the workers and the clock up."""

from __future__ import annotations

import signal
from pathlib import Path

from harness import alive, children, cmdline, descendants, send, waitfor
from tests.nectar.test_serve import _serve


def test_the_workers_and_the_clock_stop_while_the_api_is_still_stopping(tmp_path: Path) -> None:
    """The API frozen (SIGSTOP: it cannot stop until thawed), serve is asked to stop: the workers and the clock end
    meanwhile. One part after the other, they waited for the API's stop timeout (20 s, then SIGKILL)."""
    served = _serve(tmp_path, {})
    info = next(served)
    try:
        parts = {pid: cmdline(pid) for pid in children(info.proc.pid)}
        (api,) = [pid for pid, line in parts.items() if "gunicorn" in line]  # its master
        others = [pid for pid, line in parts.items() if "nectar.cli worker --clock" in line]  # the clock is in it
        assert len(others) == 1, parts
        send(api, signal.SIGSTOP)

        info.proc.send_signal(signal.SIGTERM)

        waitfor(lambda: not any(alive(pid) for pid in others), 60, "the workers and the clock to stop")
        assert alive(api), "the workers and the clock waited for the API to be stopped (killed after its timeout)"
        send(api, signal.SIGCONT)
    finally:
        for pid in descendants(info.proc.pid):
            send(pid, signal.SIGCONT)
        next(served, None)
