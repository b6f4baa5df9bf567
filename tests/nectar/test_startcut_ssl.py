"""A worker, its clock and the registry's commands import luigi's and nectar's modules without ``ssl``
(``WORKER_UNUSED`` in :mod:`nectar.deferred_imports`): http.client and urllib.request import it for HTTPS, which none
of them speaks to luigid; an S3 store, whose boto3 is imported after the deferral, still gets the real module."""

from __future__ import annotations

import subprocess
import sys

from harness import base_env, settings_env
from nectar.config import Settings

#: a worker's imports as ``cmd_worker`` makes them; what of ``ssl`` they left imported; then an S3 store's round trip
#: (its boto3 imported after the deferral, as a chain's first S3 target imports it) and an HTTPS context made through
#: http.client's own ``ssl``, the name the deferral bound there
PROBE = """
import sys
from nectar.cli.local import service_deferral

with service_deferral():
    from nectar.executor import Executor
    from nectar.schedules.clock import Clock
    from nectar.service import Nectar
print(sorted(name for name in ("ssl", "_ssl") if name in sys.modules))

import http.client
from nectar.keys import TargetKey
from nectar.stores import get_store

key = TargetKey("testchains", "hello_luigiworld_chain", "TestS3Task", "0" * 32)
store = get_store()
store.write_text(key, "through the real ssl's boto3", new_folder=True)
print(store.read_text(key), type(store).__name__)
print(type(http.client.ssl.create_default_context()).__name__, sorted(n for n in ("ssl", "_ssl") if n in sys.modules))
"""


def test_a_workers_imports_leave_ssl_out_and_its_s3_store_still_works(
    s3_settings: Settings, s3_env: dict[str, str]
) -> None:
    """Before, the worker's imports loaded ``ssl`` and ``_ssl`` (with libssl and libcrypto: ~2.7 % of their
    instructions) through luigi.rpc's urllib.request, in every worker, clock and command of the registry."""
    env = base_env() | s3_env | settings_env(s3_settings)  # moto's endpoint and keys, as serve passes them on
    ran = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=s3_settings.data_dir.parent, capture_output=True, text=True
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "[]",
        "through the real ssl's boto3 S3Store",
        "SSLContext ['_ssl', 'ssl']",
    ], ran.stdout + ran.stderr
