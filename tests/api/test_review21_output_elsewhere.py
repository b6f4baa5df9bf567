"""review21 (on main): a plain luigi task's output outside the folders the service serves (luigi's own examples
write under ``/tmp`` and ``/var/tmp``), deleted after its run ended DONE. luigi counts the task not complete and
``python -m luigi`` runs it again; the README (*What a status says*) promises ``MISSING`` for "a task whose run ended
``DONE`` but one of whose outputs was deleted since". ``nectar.outputs._local`` asks whether the file is under an
allowed folder before whether it exists, and answers "not under a folder the service serves" without ``absent``,
so ``unmade`` leaves the status ``DONE``: a client polling until DONE takes the task as made, while a submission
of it queues a run (its ``complete()`` is false)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.api.conftest import finished

CHAIN = '''
"""A plain task writing where luigi's examples write: outside the service's folders."""

import luigi


class ElsewhereTask(luigi.Task):
    day = luigi.Parameter(default="d1")

    def output(self):
        return luigi.LocalTarget({elsewhere!r} + f"/{{self.day}}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")
'''


def test_a_done_task_whose_output_outside_the_served_folders_was_deleted_reads_missing(
    client: FlaskClient,
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The run DONE, its file there, listed without a URL (not served); the file deleted: a submission again is a
    new run (202: luigi's ``complete()`` is false), and the status must say so. Fails on main: ``job_status`` DONE
    after the delete, its output's note "not under a folder the service serves"."""
    elsewhere = tmp_path / "elsewhere"
    write_chain("plain/elsewhere_chain", CHAIN.format(elsewhere=str(elsewhere)))
    answer = client.post("/api/chains/plain/elsewhere_chain/ElsewhereTask", json={})
    assert answer.status_code == 202, answer.get_json()
    queued = answer.get_json()["data"]
    start_worker(settings, workers=1)
    assert finished(client, queued["status_url"])["job_status"] == "DONE"
    made = elsewhere / "d1.txt"
    assert made.read_text() == "made\n"

    made.unlink()
    status = client.get(queued["status_url"]).get_json()["data"]
    again = client.post("/api/chains/plain/elsewhere_chain/ElsewhereTask", json={})
    assert again.status_code == 202, again.get_json()  # not complete, as luigi counts it: a new run is queued
    client.post(f"/api/runs/{again.get_json()['data']['run_id']}/cancel")  # a run the test does not need
    assert (status["job_status"], status["resource_url"]) == ("MISSING", None), status
    assert str(made) in status["error"], status
