"""The chain catalog (types, chains, tasks with their parameters) and task submission."""

from __future__ import annotations

from typing import NoReturn

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from api import links
from api.context import facade
from api.envelope import answer, doc_only, dumped_answer, error_responses
from api.schemas import ChainEnvelope, ChainTypeEnvelope, ChainTypesEnvelope, SubmissionEnvelope, TaskEnvelope
from api.smorest_internals import add_undocumented_url_rule
from api.submission import submitted
from nectar.catalog.model import ChainInfo, TaskInfo
from nectar.errors import ChainNotFound, NotFound, TaskNotFound

blp = Blueprint("chains", __name__, url_prefix="/api/chains", description="The chains and tasks, and running them.")

SUBMISSION_DOC = {
    "description": "Task parameters come from the query string (`?day=2024-01-31`) or a JSON object body, "
    "or both (the body wins). The parameters each task takes are listed by GET on the same URL. "
    "In the query string a list or tuple parameter is repeated, one item each (`?metrics=quantity&metrics=revenue`), "
    'or given once as a JSON list (`metrics=["revenue"]`); a choice list repeated or comma-separated (`pick=a,c`); '
    "a dict as a JSON object; any other kind once (repeated, a 422 naming it). "
    'In a JSON body each value is JSON (`["a"]`, `{"k": 1}`, `7`, `true`) or the query string\'s text.',
    "parameters": [
        {
            "name": "params",
            "in": "query",
            "required": False,
            "style": "form",
            "explode": True,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            "description": "Task parameters by name; a list, tuple or choice list parameter may be repeated.",
        }
    ],
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    },
}
#: a submission's two answers: queued (or joined), and done
QUEUED_DOC = "Queued, or an identical run is already queued or running."
DONE_DOC = "The output exists: nothing is run."


def task_out(info: TaskInfo) -> dict:
    return {**info.to_dict(), "api_href": links.task_href(info.chain_type, info.chain, info.name)}


def chain_out(info: ChainInfo) -> dict:
    return {
        **info.to_dict(),
        "tasks": [task_out(t) for t in info.tasks.values()],
        "api_href": links.chain_href(info.chain_type, info.name),
    }


def type_out(chain_type: str, chains: list[ChainInfo]) -> dict:
    return {"name": chain_type, "chains": [chain_out(c) for c in chains], "api_href": links.type_href(chain_type)}


@blp.route("")
class ChainTypes(MethodView):
    @blp.response(200, ChainTypesEnvelope)
    @error_responses(blp)
    def get(self):
        """Every chain type with its chains and their tasks (none: the message says where they were looked for; a
        chain type folder that cannot be read: the message names it)"""
        types = [type_out(name, chains) for name, chains in facade().chain_types().items()]
        if not types:
            return answer(types, message=facade().no_chains_said())
        return answer(types, message=facade().chains_passed_over() or "success")


@blp.route("/<chain_type>")
class ChainType(MethodView):
    @blp.response(200, ChainTypeEnvelope)
    @error_responses(blp, 404)
    def get(self, chain_type):
        """The chains of one type"""
        chains = facade().chain_types().get(chain_type)
        if chains is None:
            raise ChainNotFound(f"no chain type {chain_type} in {facade().chains_folder}/")
        return answer(type_out(chain_type, chains))


@blp.route("/<chain_type>/<chain>")
class Chain(MethodView):
    @blp.response(200, ChainEnvelope)
    @error_responses(blp, 404)
    def get(self, chain_type, chain):
        """One chain: its tasks and the luigi tasks it does not expose (with why), or why it failed to import"""
        return answer(chain_out(facade().chain(chain_type, chain)))


@blp.route("/<chain_type>/<chain>/<task>")
class Task(MethodView):
    @blp.response(200, TaskEnvelope)
    @error_responses(blp, 404)
    def get(self, chain_type, chain, task):
        """One task (by its name or an alias): its doc, parameters, upstream tasks and aliases"""
        return answer(task_out(facade().task(chain_type, chain, task)))

    @doc_only(
        blp.response(202, SubmissionEnvelope, description=QUEUED_DOC),
        blp.alt_response(200, schema=SubmissionEnvelope, description=DONE_DOC, success=True),
    )
    @error_responses(blp, 404, 413, 422, 503)
    @doc_only(blp.doc(**SUBMISSION_DOC))
    def post(self, chain_type, chain, task):
        """Run a task (unless its output exists or an identical run is active)"""
        # shaped as SubmissionEnvelope dumps it (tests/api/test_chains.py holds it to that): sent without a dump
        return dumped_answer(*submitted(request, chain_type, chain, task))


#: the URL of a task, as a 404 for any other URL under /api/chains tells it
TASK_URL = "/api/chains/<type>/<chain>/<Task>"


def not_a_task(path: str = "") -> NoReturn:
    """404 for a URL under /api/chains that names no task (``POST /api/chains/<type>/<Task>``, one more
    segment): what was not found, what is there, and the form a task's URL takes."""
    parts = [part for part in path.split("/") if part]
    service = facade()
    if len(parts) > 3:
        elsewhere = methods_elsewhere()
        if elsewhere:  # e.g. GET of a batch URL: the URL is there, for POST
            raise MethodNotAllowed(valid_methods=elsewhere)
        raise NotFound(f"no such URL /api/chains/{'/'.join(parts)}: a task's URL is {TASK_URL}")
    if not parts:
        missing = "no task named"
    elif parts[0] not in service.chain_types():
        missing = f"no chain type {parts[0]} (types: {', '.join(service.chain_types()) or 'none'})"
    elif len(parts) == 1:
        missing = f"no chain or task named after chain type {parts[0]}"
    else:
        try:
            chain = service.chain(parts[0], parts[1])
        except ChainNotFound:
            known = ", ".join(info.name for info in service.chain_types()[parts[0]]) or "none"
            missing = f"no chain {parts[0]}/{parts[1]} (chains of {parts[0]}: {known})"
        else:
            missing = f"no task named in chain {chain.ref} (tasks: {', '.join(chain.tasks) or 'none'})"
    raise TaskNotFound(f"{missing}; a task is run by POST {TASK_URL}")


def methods_elsewhere() -> list[str]:
    """The methods another rule than :func:`not_a_task`'s takes at the request's URL."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    found = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint not in NOT_A_TASK:
            found.append(method)
    return found


#: plain Flask rules, kept out of the OpenAPI document: a POST under /api/chains to anything but a task's
#: URL, and a GET of a URL longer than a task's
NOT_A_TASK = {"chains.post_without_task": ("", ["POST"]), "chains.not_a_task": ("/<path:path>", ["GET", "POST"])}
for endpoint, (rule, methods) in NOT_A_TASK.items():
    add_undocumented_url_rule(blp, rule, not_a_task, endpoint.split(".")[1], methods=methods)
