"""Liveness of the run registry, the target store and the scheduler."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import nectar
from api.envelope import answer
from api.schemas import HealthEnvelope
from nectar.service import ESSENTIAL

blp = Blueprint("health", __name__, description="Health of Datanectar's dependencies.")


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, HealthEnvelope, description="All answer ('ok'), or all but luigid ('degraded').")
    @blp.alt_response(503, schema=HealthEnvelope, description="The registry or the store is down; each is named.")
    def get(self):
        """Each dependency, named, with whether it answers

        Without luigid the service is *degraded*, not down: it still accepts runs and answers
        statuses, and the runs wait in the queue until luigid is back.
        """
        checks = nectar().health()
        data = {check.name: {"ok": check.ok, "detail": check.detail} for check in checks}
        down = [check.name for check in checks if not check.ok]
        if ESSENTIAL.intersection(down):
            return answer(data, 503, f"unavailable: {', '.join(down)}")
        if down:
            message = f"degraded: {', '.join(down)} unavailable; runs are accepted and wait in the queue"
            return answer(data, 200, message)
        return answer(data, 200, "ok")
