"""A task's submission read from a request (query string, JSON body, limits) and answered, single or batch.

What it reads of the request is handed in (:func:`submitted`: its query's names and values, its body): the path in
front of Flask (:mod:`api.submit_path`) reads them from the WSGI environ, without Flask's request object or
context."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import Request, request

from api import links
from api.context import facade
from api.fast_path import has_body
from nectar.catalog.model import TaskInfo
from nectar.config import Settings
from nectar.errors import InvalidParameters, TooLarge
from nectar.params import MAX_NESTING, NonFiniteNumber, nesting, strict_json
from nectar.service import Nectar, Submission
from nectar.signing import UrlSigner

#: the endpoint of the status URL every answer holds
STATUS_ENDPOINT = "status.ChainStatus"
#: a query's names, each with its values in the order given (as ``MultiDict.lists()`` gives them)
QueryLists = Iterable[tuple[str, list[str]]]


def json_body() -> Any:
    """The current request's body as JSON (see :func:`parsed_json`)."""
    return parsed_json(request.get_data())


def parsed_json(data: bytes) -> Any:
    """A request's body ``data`` as JSON, whatever its content type; None if it is not JSON; a 422 naming the members
    (else ``_body``) that hold a number JSON does not have (NaN, Infinity), which Python's json would read."""
    try:
        return strict_json(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    except NonFiniteNumber as exc:
        raise InvalidParameters(exc.fields or {"_body": [str(exc)]}) from None
    except RecursionError:  # json's decoder recurses once per level
        return None


def json_object(what: str) -> dict[str, Any]:
    """The request's JSON object body (a 422 naming ``_body`` for anything else, saying it should hold ``what``)."""
    body = json_body()
    if not isinstance(body, dict):
        raise InvalidParameters({"_body": [f"the body must be a JSON object of {what}"]})
    return body


def check_limits(values: dict, settings: Settings) -> None:
    """Raise unless ``values`` keeps to the number, length and depth of parameters ``settings`` configure (its two
    callers, a submission's and a batch row's, hold the settings already)."""
    if len(values) > settings.max_params:
        raise TooLarge(f"{len(values)} parameters sent; at most {settings.max_params} are accepted")
    longest = settings.max_param_length
    deep: list[str] = []
    too_long: list[str] = []
    for name, value in values.items():  # one pass: a text (a query's every value) neither nests nor is dumped
        if not isinstance(value, str):
            if nesting(value) > MAX_NESTING:
                deep.append(str(name))
                continue
            value = json.dumps(value)
        if len(value) > longest:
            too_long.append(str(name))
    if deep:  # those nested too deeply named first, alone, as the length of one is not asked
        raise InvalidParameters({name: [f"nested deeper than {MAX_NESTING} levels"] for name in deep})
    if too_long:
        raise InvalidParameters({name: [f"longer than {longest} characters"] for name in too_long})


def query_values(info: TaskInfo, args: QueryLists) -> dict:
    """The query string's parameters ``args`` of ``info``, as :meth:`ParamInfo.from_query` reads a name given
    once or repeated; a repeated one that takes one value is a 422 naming it."""
    params = {param.name: param for param in info.params}
    values, repeated = {}, {}
    for name, given in args:
        param = params.get(name)
        try:
            values[name] = param.from_query(given) if param else given[0]  # an unknown one: parse_values names it
        except ValueError as exc:
            repeated[name] = [str(exc)]
    if repeated:
        raise InvalidParameters(repeated)
    return values


def request_body(current: Request) -> bytes:
    """The body of ``current`` (b"" without one); beyond MAX_CONTENT_LENGTH, werkzeug answers 413 here. Without a
    body, its stream is not made (~3 µs)."""
    return current.get_data() if has_body(current.environ) else b""


def submitted_values(info: TaskInfo, args: QueryLists, body: Callable[[], bytes], settings: Settings) -> dict:
    """Parameters from the query string's ``args``, overridden by those of a JSON object ``body`` (read after the
    query: a repeated parameter is a 422 before a body too large is a 413), within the limits of ``settings``."""
    values = query_values(info, args)
    data = body()
    if data:
        parsed = parsed_json(data)
        if not isinstance(parsed, dict):
            raise InvalidParameters({"_body": ["the body must be a JSON object of task parameters"]})
        values.update(parsed)
    check_limits(values, settings)
    return values


def submitted(current: Request, chain_type: str, chain: str, task: str) -> tuple[dict, int, str]:
    """The view's submission of the task, read from Flask's request ``current`` (:func:`submission`)."""
    return submission(current.args.lists(), lambda: request_body(current), (chain_type, chain, task))


def submission(
    args: QueryLists,
    body: Callable[[], bytes],
    names: tuple[str, str, str],
    service: Nectar | None = None,
    signing: UrlSigner | None = None,
) -> tuple[dict, int, str]:
    """The submission of the task ``names`` (its chain type, chain and name) read from a request (the names and
    values of its query, ``args``; its ``body``, read when asked), made and answered (:func:`submission_out`): the
    view's, and the path's in front of Flask (:mod:`api.submit_path`), which hands in the app's ``service`` and
    ``signing`` (else each is looked up through Flask's context-local proxy: ~1.5 µs). All that can refuse it comes
    before its run is written, the status URL's base too (a link only ``url_for`` can build yet raises there, and
    Flask answers it)."""
    service = service or facade()
    info = service.task(*names)
    instance = info.instantiate(submitted_values(info, args, body, service.settings))
    links.external(STATUS_ENDPOINT)
    return submission_out(service.submit_task(info, instance), service.settings, service, signing)


def submission_out(
    submission: Submission,
    settings: Settings | None = None,
    service: Nectar | None = None,
    signing: UrlSigner | None = None,
) -> tuple[dict, int, str]:
    """A submission's answer: its data, HTTP status (200 done, 202 queued or active) and message (its links'
    expiry from ``settings``, a done task's downloads found in ``service`` and signed by ``signing``: else the
    app's)."""
    key, created = submission.key, submission.created
    expiry = (settings or facade().settings).url_expiry
    if submission.status is not None:
        status = submission.status
        run_id = status.run.id if status.run else None
        downloads = links.downloads(status, service, signing=signing)
        data = {"key": key.path, "status_url": links.status_url(key), "created": created, "expires_in": expiry}
        return {**data, "job_status": status.job_status, "run_id": run_id, **downloads}, 200, "success"
    run = submission.run
    assert run is not None
    message = "queued" if created else "an identical run is already active"
    # one dict, its state's text read as the member's own (``_value_``: Enum's ``value`` is a Python property, a
    # call each read): where it was the four shared names' dict merged into another (~5k instructions fewer)
    queued = {
        "key": key.path,
        "status_url": links.status_url(key),
        "created": created,
        "expires_in": expiry,
        "job_status": run.state._value_,
        "run_id": run.id,
        "resource_url": None,
    }
    return queued, 202, message
