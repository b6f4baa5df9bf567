"""Liveness of the run registry, the target store and the scheduler."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import nectar
from api.envelope import answer
from api.schemas import HealthEnvelope

blp = Blueprint("health", __name__, description="Health of Datanectar's dependencies.")


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, HealthEnvelope, description="Every dependency answers.")
    @blp.alt_response(503, schema=HealthEnvelope, description="Some dependency is down; each is named.")
    def get(self):
        """Each dependency, named, with whether it answers"""
        checks = nectar().health()
        data = {check.name: {"ok": check.ok, "detail": check.detail} for check in checks}
        down = [check.name for check in checks if not check.ok]
        if down:
            return answer(data, 503, f"unavailable: {', '.join(down)}")
        return answer(data, 200, "ok")
