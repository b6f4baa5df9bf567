"""Liveness of the run registry, the target store and the scheduler.

Open to anyone (load balancers probe it), but when the API has tokens, what each check found (a
database's host and name, a driver's error) is shown only to a request with a read token.
"""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import nectar
from api.envelope import answer
from api.schemas import HealthEnvelope
from nectar.auth import Forbidden, Scope, Unauthenticated
from nectar.service import ESSENTIAL

blp = Blueprint("health", __name__, description="Health of Datanectar's dependencies.")
HIDDEN = "details for a request with a read token"


def may_see_details() -> bool:
    try:
        current_app.extensions["nectar_tokens"].authorize(request.headers.get("Authorization"), Scope.READ)
    except (Unauthenticated, Forbidden):
        return False
    return True


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, HealthEnvelope, description="All answer ('ok'), or all but luigid ('degraded').")
    @blp.alt_response(503, schema=HealthEnvelope, description="The registry or the store is down; each is named.")
    def get(self):
        """Each dependency, named, with whether it answers

        When the API has tokens, what each check found is shown only with a read token.
        Without luigid the service is *degraded*, not down: it still accepts runs and answers
        statuses, and the runs wait in the queue until luigid is back.
        """
        checks, shown = nectar().health(), may_see_details()
        data = {check.name: {"ok": check.ok, "detail": check.detail if shown else HIDDEN} for check in checks}
        down = [check.name for check in checks if not check.ok]
        if ESSENTIAL.intersection(down):
            return answer(data, 503, f"unavailable: {', '.join(down)}")
        if down:
            message = f"degraded: {', '.join(down)} unavailable; runs are accepted and wait in the queue"
            return answer(data, 200, message)
        return answer(data, 200, "ok")
