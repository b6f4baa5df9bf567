"""A worker loads before its first fork what its attempts would import, for its store: boto3 (through
``luigi.contrib.s3``) where its store is S3, not where it is local (:meth:`nectar.executor.Executor.warm`)."""

from __future__ import annotations

import subprocess
import sys

from nectar.config import Settings

#: a fresh interpreter: a worker of a local store warmed, then one of an S3 store; what each left imported
PROBE = """
import sys
from pathlib import Path
from nectar.config import Settings
from nectar.executor import Executor

S3 = ("boto3", "luigi.contrib.s3")
data = Path(sys.argv[1])
for env in ("local", "test"):
    executor = Executor(Settings(env=env, project_bucket="warm", data_dir=data / env))
    try:
        executor.warm()
    finally:
        executor.close()
    print(env, sorted(name for name in S3 if name in sys.modules))
"""


def test_a_worker_of_a_local_store_forks_its_attempts_without_boto3_and_one_of_s3_with_it(settings: Settings) -> None:
    """A local store's attempt uses no S3 client unless its chain makes one (and a chain that imports
    ``luigi.contrib.s3`` at its top is executed in the worker before its first fork): boto3 in every worker was
    ~0.2 s of CPU at each start (each ``nectar worker`` of the suite) and ~8 MB of its RSS, for nothing."""
    argv = [sys.executable, "-c", PROBE, str(settings.data_dir)]
    said = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()

    assert said == ["local []", "test ['boto3', 'luigi.contrib.s3']"]
