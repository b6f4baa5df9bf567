"""review21 (on main): the data folder's disk full, an operator's everyday fault (README *Deploying*: the registry
is SQLite in ``./nectar_data``). SQLite answers ``database or disk is full`` (``SQLITE_FULL``) to the submission's
write; nothing in the API maps it (``api/errors.py`` maps a ``NectarError``; ``nectar/registry/sqlite.py`` turns
no ``sqlite3.OperationalError`` into ``Unavailable``), so the client gets flask's bare ``500 Internal Server
Error`` and the API's log the traceback, where the rules say a failure names its real cause, and the README's
PostgreSQL-down and S3-down cases answer ``503`` naming the part (a client retries a 503, as it is told).

A worker meets the same fault as its attempt ends: the attempt cannot record its step, its process ends, and the
worker's own write of that end (``executor._ended``: ``runs.fail``) raises ``sqlite3.OperationalError`` out of
``serve_forever``: the worker exits 1 with a traceback, and ``nectar serve``'s supervisor then stops everything
("workers exited with code 1; stopping everything"): the API's reads go too, and nothing says the disk is full but
a traceback's last line. A worker waits for PostgreSQL to come back (README, *PostgreSQL down*); it should wait for
its disk the same way, and the run end once there is room.

The disk is made full for real: a tmpfs of 4 MB as the data folder (root only: a machine where ``mount`` is refused
skips the test), filled by a file of the test's own."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

GATE_CHAIN = '''
"""A task that waits for its gate file, then writes its out.txt."""

import os
import time

from nectar import NectarTask


class GateTask(NectarTask):
    def run(self):
        while not os.path.exists({gate!r}):
            time.sleep(0.05)
        with self.output().open("w") as out:
            out.write("made\\n")
'''


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test, unmounted after it."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path) -> None:
    """Write a file into ``folder`` until its disk is full."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_a_submission_with_the_registrys_disk_full_answers_503_naming_it(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    small_disk: Path,
) -> None:
    """A first submission 202 (the registry made on the small disk), the disk filled, then a new one. Fails on main:
    500, message "Internal Server Error: The server encountered an internal error ..." (the traceback's
    ``sqlite3.OperationalError: database or disk is full`` in the log alone)."""
    client = client_for(settings.replace(data_dir=small_disk / "data"))
    client.application.config["PROPAGATE_EXCEPTIONS"] = False  # answered as a served app answers, not raised here
    first = client.post("/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask", json={"aparam": "a"})
    assert first.status_code == 202, first.get_json()
    fill(small_disk)
    answers = [
        client.post("/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask", json={"aparam": f"b{n}"})
        for n in range(50)  # the WAL's pages already there take a few writes before SQLite needs a new one
    ]
    status = client.get(first.get_json()["data"]["status_url"])
    assert status.status_code == 200, status.get_json()  # a read needs no new page
    refused = [answer for answer in answers if answer.status_code != 202]
    assert refused, "every submission was written: the disk never filled under the registry"
    said = refused[0].get_json()
    assert (refused[0].status_code, refused[0].headers.get("Retry-After")) == (503, "5"), said
    assert "disk is full" in said["message"], said


def test_a_worker_whose_registry_disk_fills_under_a_run_lives_and_ends_the_run_once_there_is_room(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    small_disk: Path,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A run held in ``run()`` by its gate, the disk filled, the gate opened: the attempt's end cannot be written.
    The worker must live through it; the disk emptied, the run ends. Fails on main: the worker exited 1
    (``sqlite3.OperationalError: database or disk is full`` from ``executor._ended``'s ``runs.fail``)."""
    gate = tmp_path / "gate"
    write_chain("full/gate_chain", GATE_CHAIN.format(gate=str(gate)))
    on_small = settings.replace(data_dir=small_disk / "data")
    client = client_for(on_small)
    answer = client.post("/api/chains/full/gate_chain/GateTask", json={})
    assert answer.status_code == 202, answer.get_json()
    run_id = answer.get_json()["data"]["run_id"]
    worker = start_worker(on_small, workers=1)
    nectar = closed_at_end(Nectar(on_small))
    status_url = answer.get_json()["data"]["status_url"]
    wait_until(lambda: [step["state"] for step in client.get(status_url).get_json()["data"]["steps"]] == ["RUNNING"])
    fill(small_disk)
    gate.touch()
    log = tmp_path / "worker-0.log"
    # the attempt's failed write, then the worker's own (its end of the attempt), each saying so, or the worker gone
    wait_until(lambda: log.read_text().count("disk is full") >= 2 or worker.poll() is not None)
    assert worker.poll() is None, log.read_text()[-3000:]
    (small_disk / "filler").unlink()
    wait_until(lambda: worker.poll() is not None or not state(nectar, run_id).active)
    assert worker.poll() is None, log.read_text()[-3000:]
    assert state(nectar, run_id) in {RunState.DONE, RunState.FAILED}


def state(nectar: Nectar, run_id: str) -> RunState:
    run = nectar.runs.get(run_id)
    assert run is not None
    return run.state
