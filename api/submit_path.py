"""``POST /api/chains/<type>/<chain>/<task>`` answered in front of Flask's dispatch (:mod:`api.fast_path`) when its
answer is a 202 (queued, or an identical run active) or a 200 (done).

A submission is made and answered by the view's own function (:func:`api.submission.submission`), its parameters
read from the environ's query (Flask's request object made only for a query with something to decode), without the
app's context: its service is handed in, its links' base is :func:`api.links.answering`'s. All that can
refuse it comes before its run is written: the task found, its parameters read and checked, its status URL built (a
link only ``url_for`` can build yet hands it to Flask), so that a refusal is Flask's, as any other. A submission whose
write itself raises (a full queue, a registry that fails) is handed to Flask too, which asks again and answers what
it meets: a run written meanwhile is found active.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api.context import FACADE, SIGNER
from api.envelope import compact_envelope
from api.fast_path import Answer, Asked
from api.submission import QueryLists, submission

#: the view's endpoint; a task's URL under PREFIX is its three names (a trailing slash is the same URL:
#: ``strict_slashes`` is off; tests/api/test_submit_path.py asks Flask's routing)
ENDPOINT = "chains.Task"
PREFIX = "/api/chains/"
NAMES = ("chain_type", "chain", "task")
#: the names of a queued run's answer's data (:func:`api.submission.submission_out`)
QUEUED_NAMES = frozenset(("created", "expires_in", "job_status", "key", "resource_url", "run_id", "status_url"))


class SubmitPath:
    """The submission's :class:`~api.fast_path.Route`: its 202 or 200, built as the view builds it."""

    method = "POST"
    #: its answer reads nothing of the app's context: the service is handed in, the links' base is
    #: :func:`api.links.answering`'s, a done task's downloads are signed by the signer handed in
    #: (tests/api/test_submit_path.py)
    app_context = False

    def __init__(self, app: Flask) -> None:
        (self.rule,) = (rule for rule in app.url_map.iter_rules(ENDPOINT) if "POST" in (rule.methods or ()))
        self.extensions = app.extensions

    def match(self, path: str) -> dict[str, str] | None:
        """The three names of a task's URL; None for any other path, or one werkzeug would decode (not ASCII)."""
        if not path.startswith(PREFIX) or not path.isascii():
            return None
        parts = path[len(PREFIX) :].removesuffix("/").split("/")
        if len(parts) != 3:  # (NAMES: each one's value, none empty)
            return None
        chain_type, chain, task = parts
        if not (chain_type and chain and task):
            return None
        return {"chain_type": chain_type, "chain": chain, "task": task}

    def answer(self, asked: Asked, values: dict[str, str]) -> Answer | None:
        names = (values["chain_type"], values["chain"], values["task"])
        extensions = self.extensions  # no body: Flask reads one (api.fast_path.has_body)
        return submission(query_lists(asked), bytes, names, extensions[FACADE], extensions[SIGNER])

    @staticmethod
    def written(provider: DefaultJSONProvider, data: Any, status: int, message: str) -> str | None:
        """The envelope of a queued (or active) run's answer, as :func:`api.envelope.compact_envelope` writes it with
        ``provider`` (sorted keys: a newline after, no spaces), its values put in place, each one JSON writes as
        itself (:func:`plain`; ~3x fewer instructions than the encoder's); None for any other answer (a done task's, a
        value JSON would escape, an app that does not sort keys): the encoder writes it (tests/api/test_submit_path.py
        holds the two to the same bytes). An f-string, where it was ``str.format`` of a template with seven names:
        the template's parse at each call was ~15k instructions of a POST's ~660k (callgrind), the f-string's ~4k."""
        if status != 202 or type(data) is not dict or data.keys() != QUEUED_NAMES or not provider.sort_keys:
            return None
        created, expiry = data["created"], data["expires_in"]
        state, key, run_id, url = data["job_status"], data["key"], data["run_id"], data["status_url"]
        if type(created) is not bool or type(expiry) is not int or data["resource_url"] is not None:
            return None
        if not (type(state) is type(key) is type(run_id) is type(url) is type(message) is str):
            return None
        if not plain(f"{state}{key}{run_id}{url}{message}"):  # each one plain: their text together is, once
            return None
        text = "true" if created else "false"
        return (
            f'{{"data":{{"created":{text},"expires_in":{expiry},"job_status":"{state}","key":"{key}",'
            f'"resource_url":null,"run_id":"{run_id}","status_url":"{url}"}},"message":"{message}","status":202}}\n'
        )

    @staticmethod
    def write(provider: DefaultJSONProvider, data: Any, status: int, message: str, in_order: bool = False) -> str:
        """Its answer's body: :meth:`written`'s where it writes it, else :func:`api.envelope.compact_envelope`'s."""
        written = SubmitPath.written(provider, data, status, message)
        return compact_envelope(provider, data, status, message, in_order) if written is None else written


def query_lists(asked: Asked) -> QueryLists:
    """``request.args.lists()``: each name of the query with its values, in the order given.

    Split from the raw query when it has nothing to decode (ASCII, no '%' or '+': names and values are the text
    between '&', '=' and '&', an empty piece skipped and a piece without '=' a name with an empty value, as
    ``parse_qsl(keep_blank_values=True)`` splits it), without the request object; else by the request's ``args``."""
    query: str = asked.environ.get("QUERY_STRING", "")
    if not query.isascii() or "%" in query or "+" in query:
        return asked.request().args.lists()
    lists: dict[str, list[str]] = {}
    for piece in query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            lists.setdefault(name, []).append(value)
    return lists.items()


def plain(value: Any) -> bool:
    """Whether JSON writes ``value`` as the text itself between quotes: a str of printable ASCII without a quote or a
    backslash (each other character is escaped: a control character, DEL by ``ensure_ascii``, anything past it)."""
    return type(value) is str and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value
