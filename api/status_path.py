"""``GET /api/chainstatus`` answered in front of Flask's dispatch (:mod:`api.fast_path`) when its answer is a 200.

The status poll is the hottest request. Its 200 is built by the view's own function (:func:`api.status.status_data`);
anything else (a missing or bad ``chain``, a key nothing knows, a store or registry that fails, a link only
``url_for`` can build yet) is handed to Flask untouched, which answers it as it answers every request.
"""

from __future__ import annotations

from flask import Flask

from api.context import FACADE, SIGNER
from api.fast_path import Answer, Asked
from api.status import status_body, status_data
from nectar.keys import TargetKey

#: the view's endpoint, and the paths that reach it (a trailing slash is the same URL: ``strict_slashes`` is off;
#: tests/api/test_status_path.py asks Flask's routing)
ENDPOINT = "status.ChainStatus"
PATHS = frozenset({"/api/chainstatus", "/api/chainstatus/"})


class StatusPath:
    """The status lookup's :class:`~api.fast_path.Route`: its 200, built as the view builds it."""

    method = "GET"
    #: a status answer's objects are made with their keys in order (:func:`api.status.status_data`,
    #: tests/api/test_status_order.py)
    in_order = True
    #: its answer reads nothing of the app's context: the service and signer are handed in, the links' service is
    #: :func:`api.links.answering`'s (tests/api/test_status_path.py)
    app_context = False
    #: its answer's body, written field by field (:func:`api.status.status_body`: compact_envelope's bytes)
    write = staticmethod(status_body)

    def __init__(self, app: Flask) -> None:
        (self.rule,) = app.url_map.iter_rules(ENDPOINT)
        #: the app's extensions, read directly: ``facade()`` and ``signer()`` each reach them through Flask's
        #: ``current_app`` proxy (~2.5-3 us a call), and this answers in the app's context anyway
        self.extensions = app.extensions

    def match(self, path: str) -> dict[str, str] | None:
        return {} if path in PATHS else None

    def answer(self, asked: Asked, values: dict[str, str]) -> Answer | None:
        chain = query_value(asked, "chain")
        if chain is None:
            return None
        extensions = self.extensions
        return status_data(extensions[FACADE], TargetKey.parse(chain), extensions[SIGNER]), 200, "success"


def query_value(asked: Asked, name: str) -> str | None:
    """``request.args.get(name)``: the first value of ``name`` in the query, None without one.

    Read from the raw query when it has nothing to decode (ASCII, no '%' or '+': each name and value is the text
    between '&', '=' and '&', as ``parse_qsl`` splits it), without the request object nor the MultiDict of every
    argument; else by the request's ``args`` itself."""
    query: str = asked.environ.get("QUERY_STRING", "")
    if not query.isascii() or "%" in query or "+" in query:
        return asked.request().args.get(name)
    for pair in query.split("&"):
        found, _, value = pair.partition("=")
        if found == name:
            return value
    return None
