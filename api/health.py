"""Liveness of the run registry, the target store and the scheduler.

Open to anyone (load balancers probe it), and to anyone it says only a word per dependency:
``ok``, ``degraded`` (luigid: runs wait for it; the message says when luigid is paused rather
than gone) or ``down`` (the registry or the store). What
each check found (a database's host and name, a driver's error) is shown only to a request with
a valid API token; with no tokens configured it is never sent over HTTP, and the API logs a
failing check's detail instead, once each time it changes.
"""

from __future__ import annotations

import logging

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import facade
from api.envelope import answer
from api.schemas import HealthEnvelope
from nectar.luigid import SchedulerPaused
from nectar.service import ESSENTIAL, Check

blp = Blueprint("health", __name__, description="Health of Datanectar's dependencies.")
HIDDEN = "details for a request with an API token"
HIDDEN_WITHOUT_TOKENS = "details in the API's log (no API tokens are configured, so none are sent)"

logger = logging.getLogger(__name__)
#: the detail last logged per failing check (dropped when it recovers): a probe every second logs a change once
_LOGGED: dict[str, str] = {}


def may_see_details() -> bool:
    """Whether the request carries a valid API token (read or write); with no tokens configured, never."""
    checker = current_app.extensions["nectar_tokens"]
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if not checker.enabled or scheme.lower() != "bearer" or not token.strip():
        return False
    return checker.identify(token.strip()) is not None


def status_word(check: Check) -> str:
    """``ok``; else what its failure does to the service: ``down`` (essential) or ``degraded``."""
    if check.ok:
        return "ok"
    return "down" if check.name in ESSENTIAL else "degraded"


def public_reason(check: Check) -> str:
    """What anyone may be told of a failing check: that luigid is paused, else that the dependency is unavailable."""
    if check.detail.startswith(f"{SchedulerPaused.__name__}:"):
        return "luigid is paused (it grants no task until it is unpaused)"
    return f"{check.name} unavailable"


def log_changes(checks: list[Check]) -> None:
    """Log a failing check's detail when it first fails or its error changes, and its recovery."""
    for check in checks:
        if not check.ok and _LOGGED.get(check.name) != check.detail:
            logger.warning("health check %s failed: %s", check.name, check.detail)
            _LOGGED[check.name] = check.detail
        elif check.ok and _LOGGED.pop(check.name, None) is not None:
            logger.info("health check %s answers again: %s", check.name, check.detail)


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, HealthEnvelope, description="All answer ('ok'), or all but luigid ('degraded').")
    @blp.alt_response(503, schema=HealthEnvelope, description="The registry or the store is down; each is named.")
    def get(self):
        """Each dependency, named, with whether it answers

        Each says `ok`, `degraded` (luigid: runs wait in the queue) or `down` (the registry or the
        store: nothing works). What each check found is shown only with a valid API token; with no
        tokens configured it is never shown over HTTP (the API logs a failing check's detail).
        Without luigid the service is *degraded*, not down: it still accepts runs and answers
        statuses, and the runs wait in the queue until luigid is back.
        """
        checks = facade().health()
        log_changes(checks)
        if may_see_details():
            shown = None
        else:
            shown = HIDDEN if current_app.extensions["nectar_tokens"].enabled else HIDDEN_WITHOUT_TOKENS
        data = {
            check.name: {"ok": check.ok, "status": status_word(check), "detail": shown or check.detail}
            for check in checks
        }
        down = [check.name for check in checks if not check.ok]
        if ESSENTIAL.intersection(down):
            return answer(data, 503, f"unavailable: {', '.join(down)}")
        if down:
            reasons = "; ".join(public_reason(check) for check in checks if not check.ok)
            message = f"degraded: {reasons}; runs are accepted and wait in the queue"
            return answer(data, 200, message)
        return answer(data, 200, "ok")
