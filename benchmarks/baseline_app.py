"""The baselines served under the service's gunicorn configuration: a hello world, and the seed's status lookup.

``gunicorn -c python:nectar.gunicorn_conf 'benchmarks.baseline_app:create_app()'``
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import requests
from flask import Flask, jsonify, request

from nectar.keys import TargetKey, param_digest

#: the seed looked in each of these task lists in turn, fetching every one whole
SEED_STATUSES = ("RUNNING", "PENDING", "FAILED", "DONE")


def seed_lookup(session: requests.Session, scheduler_url: str, key: TargetKey) -> str:
    """The seed's status: fetch luigid's whole task list per status and match the class name (and parameters)."""
    found = "UNKNOWN"
    for status in SEED_STATUSES:
        data = json.dumps({"status": status, "upstream_status": "", "search": ""})
        tasks = session.get(f"{scheduler_url}/api/task_list", params={"data": data}, timeout=60).json()["response"]
        for task in tasks.values():
            if task["name"].rpartition(".")[2] == key.task and param_digest(task["params"]) == key.digest:
                found = status
    return found


def create_app() -> Flask:
    app = Flask(__name__)
    scheduler_url = os.environ.get("NECTAR_SCHEDULER_URL", "")
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    @app.get("/hello")
    def hello() -> Any:
        return jsonify({"data": "hello world", "message": "success", "status": 200})

    @app.get("/seed/chainstatus")
    def seed_status() -> Any:
        key = TargetKey.parse(request.args["chain"])
        return jsonify({"data": {"job_status": seed_lookup(session(), scheduler_url, key)}, "status": 200})

    @app.get("/healthz")
    def health() -> Any:
        return jsonify({"status": 200})

    return app
