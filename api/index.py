"""The home page: a plain HTML list of the chains and tasks, with links to the API and luigi."""

from __future__ import annotations

from html import escape

from flask import Response, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api import links
from api.context import nectar
from api.envelope import error_responses
from nectar.discovery import ChainInfo

blp = Blueprint("index", __name__, description="The home page.")


def _link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _chain_item(chain: ChainInfo) -> str:
    head = _link(links.chain_href(chain.chain_type, chain.name), chain.ref)
    if chain.error:
        return f"<li>{head} <em>failed to import: {escape(chain.error)}</em></li>"
    tasks = "".join(
        f"<li>{_link(links.task_href(t.chain_type, t.chain, t.name), t.name)} {escape(t.doc or '')}</li>"
        for t in chain.tasks.values()
    )
    return f"<li>{head}<ul>{tasks}</ul></li>"


@blp.route("/")
class Index(MethodView):
    @blp.response(200, {"type": "string"}, content_type="text/html")
    @error_responses(blp)
    def get(self):
        """The chains and tasks, as an HTML page"""
        service = nectar()
        chains = "".join(_chain_item(chain) for chain in service.catalog.chains()) or "<li>no chains</li>"
        extra = [_link(url_for("api-docs.openapi_swagger_ui"), "API documentation")]
        if service.settings.scheduler_url:
            extra.append(_link(f"{service.settings.scheduler_url}/static/visualiser/index.html", "luigi visualiser"))
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Datanectar</title></head><body>"
            f"<h1>Datanectar</h1><p>{' · '.join(extra)}</p><h2>Chains</h2><ul>{chains}</ul></body></html>"
        )
        return Response(page, mimetype="text/html")
