"""review18 (about wt64-plaingaps, mended on main by 930a28b): a key's status says ``PENDING`` only while a run of
it waits in the queue, as the README's *What a status says* defines it (``PENDING`` = queued), which clients
polling until ``DONE`` or ``FAILED`` (the README's own loop) rely on."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.api.conftest import finished
from tests.api.test_plain_tasks import shapes, submit  # noqa: F401 (shapes: the fixture)


def test_a_status_reading_pending_has_a_run_queued(
    client: FlaskClient,
    settings: Settings,
    shapes: dict[str, Path],  # noqa: F811
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A plain task's run DONE, then its own output deleted (by hand, a cleanup job): nothing is queued. Failed on
    wt64-plaingaps (2295886): the status read ``PENDING`` with the DONE run's ``run_id`` and "no run is queued to
    make it again", so the README's polling loop, waiting for ``DONE`` or ``FAILED``, waited for ever; passes on main
    since the lead's 930a28b (``MISSING``, a state of its own)."""
    queued = submit(client, "WordCountTask", text="r e v")
    start_worker(settings)
    assert finished(client, queued["status_url"])["job_status"] == "DONE"
    (shapes["out"] / "wordcount" / "r_e_v.txt").unlink()

    status = client.get(queued["status_url"]).get_json()["data"]
    run = client.get(f"/api/runs/{status['run_id']}").get_json()["data"]

    assert status["job_status"] != "PENDING" or run["job_status"] == "PENDING", (status, run["job_status"])
