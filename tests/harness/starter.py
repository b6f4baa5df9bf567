"""A process that starts luigid and moto (from a thread that then ends), an API and a worker through the harness,
prints their pids (one JSON line) and waits to be killed: what ``test_lifeline`` kills.

``python -m tests.harness.starter <folder>``, with the settings of the API and the worker in its environment and the
harness token of the test that starts it (its parts carry it too, so that the test's own stop finds them).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from harness import TOKEN_VAR, Processes, Served, base_env, settings_env
from nectar.config import Settings


def main(folder: Path) -> None:
    processes = Processes(folder / "logs", token=os.environ[TOKEN_VAR])
    started: dict[str, int] = {}
    luigid: list[Served] = []

    def start_services() -> None:  # a thread that ends long before this process dies
        luigid.append(processes.luigid(None, folder / "luigid"))
        started["luigid"] = luigid[0].proc.pid
        started["moto"] = processes.moto().proc.pid

    services = threading.Thread(target=start_services)
    services.start()
    services.join()
    settings = Settings.from_env().replace(scheduler_url=f"http://127.0.0.1:{luigid[0].port}")
    started["api"] = processes.nectar_api(settings).proc.pid
    started["worker"] = processes.worker({**base_env(), **settings_env(settings)}, folder, workers=1).pid
    print(json.dumps(started), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
