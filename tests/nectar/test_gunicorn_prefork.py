"""A preloaded API imports its chains once, in gunicorn's master: its workers, a recycled one too, fork with them."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path

from harness import Processes, base_env, children, free_port, settings_env, waitfor
from nectar.config import Settings

#: a chain that notes the pid of each process that imports it
NOTING_CHAIN = """
import os

import luigi

from nectar import NectarTask

with open(os.environ["PREFORK_LEDGER"], "a") as ledger:
    ledger.write(f"{os.getpid()}\\n")


class NotedTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("noted\\n")
"""
#: requests after which gunicorn replaces a worker (give or take its 10 % jitter)
MAX_REQUESTS = 20


def chains_of(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/api/chains/prefork", headers={"Connection": "close"})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_the_chains_are_imported_in_the_master_and_no_worker_imports_them_again(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    ledger = tmp_path / "imports.txt"
    ledger.touch()
    write_chain("prefork/noting_chain", NOTING_CHAIN)
    env = base_env() | settings_env(settings) | {"PREFORK_LEDGER": str(ledger)}
    env |= {"NECTAR_API_MAX_REQUESTS": str(MAX_REQUESTS), "NECTAR_API_THREADS": "1"}
    processes = Processes(tmp_path / "logs")
    try:
        port = free_port()
        api = processes.api(port, env, workers=1)
        first = children(api.pid)
        for _ in range(3 * MAX_REQUESTS):  # the worker is replaced at least once on the way
            assert chains_of(port) == 200
        waitfor(lambda: set(children(api.pid)) - set(first), 60, "a recycled API worker")
        assert chains_of(port) == 200  # the recycled worker answers about the chain

        importers = ledger.read_text().split()
        assert importers == [str(api.pid)], f"imported by {importers}: the master is {api.pid}, workers {first}"
    finally:
        processes.close()
