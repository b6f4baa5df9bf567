"""review20 (on main): luigi's ``S3FlagTarget`` (``luigi.contrib.s3``), the output of a job that writes a folder of
parts and a ``_SUCCESS`` flag last (Spark's, Hadoop's, luigi's own ``S3FlagTask``): luigi counts it complete once the
flag exists (``exists()`` asks ``<folder>/_SUCCESS``). The status reads its output as any ``S3Target``'s
(``nectar.outputs._describe``, then ``_s3``'s ``head_object`` of the folder's key ``prefix/``, which no object has),
so it is "does not exist", absent, and the DONE run's status turns ``MISSING``: "its output s3://.../ no longer
exists ... submit it again", where the folder and its flag are there and a submission again is answered DONE (its
``complete()`` is true)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from harness import lifeline_env
from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from nectar.stores import get_store
from nectar.stores.s3 import S3Store
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import ended

#: a task writing a folder of parts, then its flag
CHAIN = '''
"""Parts and a _SUCCESS flag under an S3 folder."""

import luigi
from luigi.contrib.s3 import S3FlagTarget, S3Target


class PartsTask(luigi.Task):
    n = luigi.IntParameter(default=2)

    def output(self):
        return S3FlagTarget(f"s3://{bucket}/parts/n={{self.n}}/")

    def run(self):
        folder = self.output().path
        for part in range(self.n):
            with S3Target(f"{{folder}}part-{{part:05d}}").open("w") as out:
                out.write(f"part {{part}}\\n")
        with S3Target(f"{{folder}}_SUCCESS").open("w"):
            pass
'''


def test_a_done_task_whose_output_is_an_s3_flag_target_reads_done(
    client_for: Callable[[Settings], FlaskClient],
    s3_settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """``python -m luigi`` makes the parts and the flag, and counts the task complete (checked first: its second
    command has nothing to run). Through the service the run is DONE, and its status says DONE, its output listed
    with no claim that it is gone. Fails on main: ``job_status`` MISSING, "its output s3://<bucket>/parts/n=3/ no
    longer exists"."""
    write_chain("plain/parts_chain", CHAIN.format(bucket=s3_settings.bucket))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), **lifeline_env()}  # dies with this process (harness/lifeline.py)
    command = [sys.executable, "-m", "luigi", "--module", "chains.plain.parts_chain", "PartsTask", "--local-scheduler"]
    for _ in range(2):
        plain = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert plain.returncode == 0, plain.stderr
    assert "complete ones were encountered" in plain.stdout + plain.stderr, plain.stdout + plain.stderr
    store = get_store(s3_settings)
    assert isinstance(store, S3Store)
    listed = store.boto.list_objects_v2(Bucket=s3_settings.bucket, Prefix="parts/n=2/")
    assert sorted(item["Key"] for item in listed["Contents"]) == [
        "parts/n=2/_SUCCESS",
        "parts/n=2/part-00000",
        "parts/n=2/part-00001",
    ]

    client = client_for(s3_settings)
    answer = client.post("/api/chains/plain/parts_chain/PartsTask", json={"n": 3})
    assert answer.status_code == 202, answer.get_json()
    start_worker(s3_settings)
    run = ended(closed_at_end(Nectar(s3_settings)), answer.get_json()["data"]["run_id"])
    assert run.state == RunState.DONE, run.error
    said = client.get(answer.get_json()["data"]["status_url"])
    assert said.status_code == 200, said.get_json()
    status = said.get_json()["data"]
    assert status["job_status"] == "DONE", status
    assert status["outputs"][0]["target"] == f"s3://{s3_settings.bucket}/parts/n=3/", status
