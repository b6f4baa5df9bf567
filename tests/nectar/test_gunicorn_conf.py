"""gunicorn's configuration (:mod:`nectar.gunicorn_conf`) takes a blank variable as unset, as the settings do: an env
file's ``NECTAR_API_THREADS=`` starts the API with its default, not with ``invalid literal for int()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import lifeline_env

BLANK_ONES = (
    "NECTAR_API_WORKERS",
    "NECTAR_API_THREADS",
    "NECTAR_RETRY_AFTER",
    "NECTAR_API_MAX_REQUESTS",
    "NECTAR_LOG_LEVEL",
)
READ = (
    "import json, nectar.gunicorn_conf as c; "
    "print(json.dumps([c.workers, c.threads, c.keepalive, c.max_requests, c.loglevel]))"
)


def configured(env: dict[str, str]) -> list[object]:
    clean = {k: v for k, v in os.environ.items() if k not in BLANK_ONES}
    result = subprocess.run(
        [sys.executable, "-c", READ],
        env={**clean, **env, **lifeline_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_a_blank_variable_is_gunicorns_default(blank: str) -> None:
    assert configured({name: blank for name in BLANK_ONES}) == configured({})


def test_a_set_variable_is_taken() -> None:
    values = {
        "NECTAR_API_WORKERS": "3",
        "NECTAR_API_THREADS": "4",
        "NECTAR_RETRY_AFTER": "7",
        "NECTAR_API_MAX_REQUESTS": "100",
        "NECTAR_LOG_LEVEL": "ERROR",
    }
    assert configured(values) == [3, 4, 12, 100, "error"]


def test_a_hangup_gunicorn_queued_before_its_ready_hook_stops_the_api_instead_of_reloading_it() -> None:
    """gunicorn listens on its port, then calls ``when_ready``: a SIGHUP in between (a closed terminal, or a
    readiness check that saw the port held) is already queued for gunicorn's loop as a reload; it is a stop now, and
    the other queued signals keep their order (read in a fresh interpreter: the module defers imports)."""
    probe = (
        "import queue, signal as s, nectar.gunicorn_conf as c; q = queue.SimpleQueue(); "
        "[q.put_nowait(n) for n in (s.SIGCHLD, s.SIGHUP, s.SIGTTIN)]; c.hangups_queued_as_terminate(q); "
        "print([s.Signals(q.get_nowait()).name for _ in range(q.qsize())], q.empty())"
    )
    env = {k: v for k, v in os.environ.items() if k not in BLANK_ONES} | lifeline_env()
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['SIGCHLD', 'SIGTERM', 'SIGTTIN'] True"
