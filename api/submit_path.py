"""``POST /api/chains/<type>/<chain>/<task>`` answered in front of Flask's dispatch (:mod:`api.fast_path`) when its
answer is a 202 (queued, or an identical run active) or a 200 (done).

A submission is made and answered by the view's own function (:func:`api.submission.submitted`). All that can
refuse it comes before its run is written: the task found, its parameters read and checked, its status URL built (a
link only ``url_for`` can build yet hands it to Flask), so that a refusal is Flask's, as any other. A submission whose
write itself raises (a full queue, a registry that fails) is handed to Flask too, which asks again and answers what
it meets: a run written meanwhile is found active.
"""

from __future__ import annotations

from flask import Flask

from api.fast_path import Answer, Asked
from api.submission import submitted

#: the view's endpoint; a task's URL under PREFIX is its three names (a trailing slash is the same URL:
#: ``strict_slashes`` is off; tests/api/test_submit_path.py asks Flask's routing)
ENDPOINT = "chains.Task"
PREFIX = "/api/chains/"
NAMES = ("chain_type", "chain", "task")


class SubmitPath:
    """The submission's :class:`~api.fast_path.Route`: its 202 or 200, built as the view builds it."""

    method = "POST"

    def __init__(self, app: Flask) -> None:
        (self.rule,) = (rule for rule in app.url_map.iter_rules(ENDPOINT) if "POST" in (rule.methods or ()))

    def match(self, path: str) -> dict[str, str] | None:
        """The three names of a task's URL; None for any other path, or one werkzeug would decode (not ASCII)."""
        if not path.startswith(PREFIX) or not path.isascii():
            return None
        parts = path[len(PREFIX) :].removesuffix("/").split("/")
        if len(parts) != len(NAMES) or not all(parts):
            return None
        return dict(zip(NAMES, parts, strict=True))

    def answer(self, asked: Asked, values: dict[str, str]) -> Answer | None:
        return submitted(asked.request(), values["chain_type"], values["chain"], values["task"])
