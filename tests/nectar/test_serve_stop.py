"""``nectar serve`` stops its parts together: a part slow to stop (the API, the workers and their clock) holds no
other up; one that does not stop within ``NECTAR_STOP_TIMEOUT`` is killed."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import alive, children, cmdline, descendants, freeze, pending, send, waitfor
from tests.nectar.test_serve import Served, _serve

#: longer than any wait of these tests' own (60 s): a part is killed only when a test means it to be
NEVER = "600"


@contextmanager
def _stopping_frozen(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Served, int, int]]:
    """``nectar serve`` with ``env``, its API (gunicorn's master) and its workers (the clock is in them) frozen
    (SIGSTOP: neither can stop until thawed, and a signal sent to one stays pending, to be read in /proc), then asked
    to stop; serve, the API's pid and the workers'. Whatever happened, everything is thawed and stopped at the end."""
    served = _serve(tmp_path, env)
    info = next(served)
    try:
        parts = {child: cmdline(child) for child in children(info.proc.pid)}
        (api,) = [child for child, line in parts.items() if "gunicorn" in line]
        (workers,) = [child for child, line in parts.items() if "nectar.cli worker --clock" in line]
        for pid in (api, workers):
            freeze(pid)  # stopped before serve's SIGTERM can reach it: else, not run since, it takes that first
        info.proc.send_signal(signal.SIGTERM)
        yield info, api, workers
    finally:
        for pid in descendants(info.proc.pid):
            send(pid, signal.SIGCONT)
        next(served, None)


def test_the_api_and_the_workers_with_the_clock_are_asked_to_stop_together(tmp_path: Path) -> None:
    """Both frozen, serve is asked to stop: both are sent SIGTERM before either is killed (their stop timeout, here
    600 s, and the drain grace, 600 s, outlast the test's wait). One part after the other, the second was sent
    nothing until the first had stopped or been killed after its stop timeout: never were both pending at once."""
    stopping = _stopping_frozen(tmp_path, {"NECTAR_DRAIN_GRACE": NEVER, "NECTAR_STOP_TIMEOUT": NEVER})
    with stopping as (info, api, workers):

        def asked(pid: int) -> bool:
            return alive(pid) and signal.SIGTERM in pending(pid)

        waitfor(lambda: asked(api) and asked(workers), 60, "SIGTERM sent to the API and the workers, neither killed")
        for pid in (api, workers):
            send(pid, signal.SIGCONT)
        waitfor(lambda: info.proc.poll() is not None, 60, "serve to stop once its parts could")
        assert info.proc.returncode == 0, info.log.read_text()


def test_a_part_that_does_not_stop_within_the_stop_timeout_is_killed(tmp_path: Path) -> None:
    """``NECTAR_STOP_TIMEOUT`` reaches serve: the API, frozen, is killed once it has not stopped within it (1 s here,
    20 s unless set), and serve says so; the workers, frozen too, still have their drain grace beyond it (600 s
    here), and do not hold the API's kill back until they stop (they were awaited first, and it killed only then)."""
    with _stopping_frozen(tmp_path, {"NECTAR_STOP_TIMEOUT": "1", "NECTAR_DRAIN_GRACE": NEVER}) as (info, api, workers):
        waitfor(lambda: not alive(api), 60, "the frozen API killed after its stop timeout, the workers frozen")
        assert "api did not stop within 1s; killing it" in info.log.read_text()
        assert alive(workers) and signal.SIGTERM in pending(workers)  # asked, and still within their drain grace
        send(workers, signal.SIGCONT)
        waitfor(lambda: info.proc.poll() is not None, 60, "serve to stop once its workers could")
        assert "workers did not stop" not in info.log.read_text()
