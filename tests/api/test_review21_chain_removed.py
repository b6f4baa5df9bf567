"""review21 (on main): a chain file renamed or removed (a refactor: ``git mv``) after a plain luigi task of it ran
DONE. Its class is unknown then, and ``nectar.outputs.has_store_output(None)`` answers "as before: by its key's
``out.txt``", a NectarTask's output: the status of the plain task's DONE run reads ``MISSING``, "its output
<local_targets>/chains/.../out.txt no longer exists (run ... made it, DONE) ... submit it again", a file the run
never made, while the task's own output is where it wrote it, and a submission again answers 404 (the chain is
gone). The service cannot know the outputs of a class it no longer has; it knows the run ended DONE."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.api.conftest import finished

CHAIN = '''
"""A plain task writing a file of its own."""

import luigi


class OwnFileTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget({out!r})

    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")
'''


def test_a_done_plain_task_whose_chain_file_was_removed_is_not_said_to_have_lost_an_out_txt(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """DONE, its file made; the chain file removed; a fresh API's status of the key. Fails on main: MISSING, "its
    output .../OwnFileTask/<md5>/out.txt no longer exists (run ... made it, DONE)"."""
    made = tmp_path / "own.txt"
    chain = write_chain("plain/own_chain", CHAIN.format(out=str(made)))
    client = client_for(settings)
    answer = client.post("/api/chains/plain/own_chain/OwnFileTask", json={})
    assert answer.status_code == 202, answer.get_json()
    status_url = answer.get_json()["data"]["status_url"]
    start_worker(settings, workers=1)
    assert finished(client, status_url)["job_status"] == "DONE"
    assert made.read_text() == "made\n"

    chain.unlink()
    status = client_for(settings).get(status_url).get_json()["data"]
    assert status["job_status"] == "DONE", status
    assert not any(output["target"].endswith("/out.txt") for output in status["outputs"]), status["outputs"]
