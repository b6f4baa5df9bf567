"""The HTTP API: flask-smorest blueprints over the ``nectar`` library."""

from __future__ import annotations

from flask_smorest import Api

from api import batch, batches, chains, files, health, logs, runs, schedules, status, triggers, ui

BLUEPRINTS = (
    chains.blp,
    batch.blp,
    batches.blp,
    status.blp,
    runs.blp,
    files.blp,
    logs.blp,
    health.blp,
    schedules.blp,
    triggers.blp,
    ui.blp,
)


def register_blueprints(api: Api) -> None:
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
