"""The baselines served under the service's gunicorn configuration: a hello world, and the seed's status lookup;
and the floor probe, the service's own app answering a status lookup's bytes without looking anything up.

The module imports Flask and nothing of the service's: the cold start's hello world (:mod:`benchmarks.coldstart`)
runs it under gunicorn's own configuration, importing what a hello world needs (the seed's lookup imports
``requests`` and ``nectar.keys`` when it is first asked, the floor probe the service's app).

``gunicorn -c python:nectar.gunicorn_conf 'benchmarks.baseline_app:create_app()'``
``NECTAR_FLOOR_ANSWER=<file> gunicorn -c python:nectar.gunicorn_conf 'benchmarks.baseline_app:floor_app()'``
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request

if TYPE_CHECKING:
    import requests

    from nectar.keys import TargetKey

#: the file holding the answer the floor probe gives: a real lookup's body, as the API sent it
FLOOR_ANSWER = "NECTAR_FLOOR_ANSWER"
#: the floor probe's two paths: through Flask and every guard, and a bare WSGI callable in front of Flask
FLOOR_FLASK, FLOOR_WSGI = "/floor/flask", "/floor/wsgi"

#: the seed looked in each of these task lists in turn, fetching every one whole
SEED_STATUSES = ("RUNNING", "PENDING", "FAILED", "DONE")


def seed_lookup(session: requests.Session, scheduler_url: str, key: TargetKey) -> str:
    """The seed's status: fetch luigid's whole task list per status and match the class name (and parameters)."""
    from nectar.keys import param_digest

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
            import requests

            local.session = requests.Session()
        return local.session

    @app.get("/hello")
    def hello() -> Any:
        return jsonify({"data": "hello world", "message": "success", "status": 200})

    @app.get("/seed/chainstatus")
    def seed_status() -> Any:
        from nectar.keys import TargetKey

        key = TargetKey.parse(request.args["chain"])
        return jsonify({"data": {"job_status": seed_lookup(session(), scheduler_url, key)}, "status": 200})

    @app.get("/healthz")
    def health() -> Any:
        return jsonify({"status": 200})

    return app


def floor_app() -> Flask:
    """The service's app (``app.create_app()``: every guard, hook and route) with the floor probe's two paths.

    ``/floor/flask`` answers the bytes of ``$NECTAR_FLOOR_ANSWER`` (a real lookup's JSON) through Flask and the
    guards, without the lookup: beside the lookup, what its own work costs (the registry read, the output check,
    links, JSON); beside a hello world, what Flask, the guards and an answer of that size cost. ``/floor/wsgi``
    answers the same bytes and headers from a bare WSGI callable in front of Flask: the most that a lookup route
    outside Flask could save.
    """
    from app import create_app

    body = Path(os.environ[FLOOR_ANSWER]).read_bytes()
    app = create_app()
    app.add_url_rule(FLOOR_FLASK, "floor", lambda: Response(body, content_type="application/json"))
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    flask_wsgi: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]] = app.wsgi_app

    def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == FLOOR_WSGI:
            start_response("200 OK", headers)
            return [body]
        return flask_wsgi(environ, start_response)

    app.wsgi_app = bare  # type: ignore[method-assign]
    return app
