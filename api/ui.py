"""The web UI: the chain catalog, a form per task, the runs and each run live, as server-rendered pages."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask
from flask import current_app, render_template, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api import links
from api.context import facade, signer
from api.envelope import dumped_answer, error_responses
from api.smorest_internals import add_undocumented_url_rule
from nectar.catalog.model import TaskInfo
from nectar.errors import NotFound
from nectar.keys import PARAMS_FILE, TargetKey
from nectar.params import ParamInfo
from nectar.registry import Run, RunFilter, RunState, Step
from nectar.registry.model import iso_utc, short_id
from nectar.registry.schema import RunStatus, StepStatus
from nectar.status import log_source

blp = Blueprint(
    "ui",
    __name__,
    description="The web UI.",
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)

#: pages allow only this origin's own scripts, styles and requests (no inline script, nothing from elsewhere)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: how many runs the runs page lists
RUNS_SHOWN = 100


def page(rule: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Route an HTML page (or a page's action: ``methods=...``), kept out of the OpenAPI document (flask-smorest
    documents what ``blp.route`` routes)."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        add_undocumented_url_rule(blp, rule, view, **options)
        return view

    return register


#: a run's id as a page shows it among others (:func:`~nectar.registry.model.short_id`)
blp.app_template_filter("short_id")(short_id)


@blp.after_request
def secure(response: flask.Response) -> flask.Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


@blp.errorhandler(NotFound)
def not_found(error: NotFound) -> tuple[str, int] | flask.Response:
    if request.method != "GET":  # a page's action (its script shows the message)
        return dumped_answer(None, 404, str(error))
    return render_template("error.html", title="Not found", message=str(error)), 404


@blp.context_processor
def chrome() -> dict[str, Any]:
    """What every page's header shows: the visualiser's link, and whether the API wants a token."""
    scheduler = facade().settings.visualiser_base
    return {
        "visualiser_url": f"{scheduler}/static/visualiser/index.html" if scheduler else None,
        "tokens_enabled": current_app.extensions["nectar_tokens"].enabled,
    }


# --- shaping data for the templates ----------------------------------------------------------


@dataclass(frozen=True)
class Control:
    """How one kind of parameter is entered: an element, its input type and step, and a hint."""

    element: str  # input, checkbox, select, textarea
    type: str = "text"
    step: str | None = None
    hint: str | None = None


CONTROLS: dict[str, Control] = {
    "int": Control("input", "number", "1"),
    "year": Control("input", "number", "1"),
    "float": Control("input", "number", "any"),
    "number": Control("input", "number", "any"),
    "bool": Control("checkbox"),
    "date": Control("input", "date"),
    "month": Control("input", "month"),
    "datehour": Control("input", hint="YYYY-MM-DDTHH, e.g. 2024-01-31T13"),
    "dateminute": Control("input", hint="YYYY-MM-DDTHHMM, e.g. 2024-01-31T1305"),
    "datesecond": Control("input", hint="YYYY-MM-DDTHHMMSS, e.g. 2024-01-31T130507"),
    "dateinterval": Control("input", hint="a day, week, month or range: 2024-01-31, 2024-W05, 2024-01-01-2024-01-08"),
    "timedelta": Control("input", hint="e.g. 1 day 2 hours, or P1DT2H"),
    "choice": Control("select"),
    "enum": Control("select"),
    "choicelist": Control("select", hint="Ctrl-click (⌘-click) to choose several"),
    "enumlist": Control("select", hint="Ctrl-click (⌘-click) to choose several"),
    "list": Control("textarea", hint='a JSON list, e.g. ["a", "b"]'),
    "tuple": Control("textarea", hint='a JSON list, e.g. ["a", "b"]'),
    "dict": Control("textarea", hint='a JSON object, e.g. {"key": "value"}'),
}
TEXT = Control("input")
#: a parameter luigi calls private (a password): typed unseen
SECRET = Control("input", "password")


@dataclass(frozen=True)
class Field:
    """One parameter's form field."""

    param: ParamInfo
    control: Control
    value: str
    selected: frozenset[str]

    @property
    def multiple(self) -> bool:
        return self.param.kind in ("choicelist", "enumlist")


def form_field(param: ParamInfo) -> Field:
    """The field for ``param``, its default filled in as the control shows it."""
    default = param.default
    if isinstance(default, str) and param.kind in ("choicelist", "enumlist"):
        default = default.split(",") if default else []  # luigi serializes these as "a,b"
    if isinstance(default, list | dict):
        value = json.dumps(default)
        selected = frozenset(map(str, default))
    elif default is None:
        value, selected = "", frozenset()
    else:
        value = "true" if default is True else "false" if default is False else str(default)
        selected = frozenset({value})
    return Field(param, SECRET if param.private else CONTROLS.get(param.kind, TEXT), value, selected)


def clock(stamp: float | None) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if stamp else ""


def took(run: Run) -> str:
    """How long the run's last attempt ran (so far, while RUNNING)."""
    if run.started_at is None or run.state in (RunState.PENDING, RunState.WAITING):
        return ""
    seconds = (run.finished_at or dt.datetime.now(dt.UTC).timestamp()) - run.started_at
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def file_url(key: TargetKey) -> str | None:
    """A download link for a file of the store, if it exists: the store's own URL, else a signed API URL."""
    service = facade()
    store = service.store_of(key)
    if not store.exists(key):
        return None
    expiry = service.settings.url_expiry
    return store.url(key, expiry) or links.external("files.File", signer().sign(key.path, expiry))


def step_out(step: Step | StepStatus) -> dict[str, Any]:
    output = file_url(TargetKey.parse(step.key)) if step.key and step.state == RunState.DONE else None
    return {**links.step_out(step), "output": output}


def made_by(run: Run) -> dict[str, Any] | None:
    """The schedule that made ``run`` and for which fire time (ISO 8601 UTC, as ``/api/runs`` says), if one did."""
    if run.schedule_id is None:
        return None
    url = url_for("ui.schedule_page", schedule_id=run.schedule_id)
    return {"id": run.schedule_id, "url": url, "fire_time": iso_utc(run.fire_time)}


def made_by_trigger(run: Run) -> dict[str, Any] | None:
    """The data trigger that made ``run`` and for which objects (URIs or absolute paths), if one did."""
    if run.trigger_id is None:
        return None
    url = url_for("ui.trigger_page", trigger_id=run.trigger_id)
    return {"id": run.trigger_id, "url": url, "objects": list(run.objects or ())}


def run_row(run: Run) -> dict[str, Any]:
    return {
        "run": run,
        "schedule": made_by(run),
        "trigger": made_by_trigger(run),
        "href": url_for("ui.run_page", run_id=run.id),
        "form": url_for("ui.task_page", chain_type=run.chain_type, chain=run.chain, task=run.task),
        "queued": clock(run.queued_at),
        "took": took(run),
    }


def task_refs() -> list[str]:
    return [info.ref for chain in facade().chains() for info in chain.tasks.values()]


def task_links(info: TaskInfo) -> dict[str, str]:
    return {
        "form": url_for("ui.task_page", chain_type=info.chain_type, chain=info.chain, task=info.name),
        "api": url_for("chains.Task", chain_type=info.chain_type, chain=info.chain, task=info.name),
    }


# --- the pages -------------------------------------------------------------------------------


@blp.route("/")
class Index(MethodView):
    @blp.response(200, {"type": "string"}, content_type="text/html")
    @error_responses(blp)
    def get(self):
        """The web UI's home: every chain type, chain and task, with docs and a form to launch each"""
        types = facade().chain_types()
        none_found = None if types else facade().no_chains_said()
        passed_over = facade().chains_passed_over() if types else None
        page = render_template(
            "catalog.html",
            types=types,
            none_found=none_found,
            passed_over=passed_over,
            task_links=task_links,
            title="Chains",
        )
        return flask.Response(page, mimetype="text/html")  # as is: flask-smorest dumps anything else


@page("/ui/<chain_type>/<chain>/<task>")
def task_page(chain_type: str, chain: str, task: str) -> str:
    info = facade().task(chain_type, chain, task)
    fields = [form_field(param) for param in info.params]
    runs = facade().find_runs(RunFilter(chain_type, chain, task), limit=5)[0]
    return render_template(
        "task.html",
        info=info,
        fields=fields,
        links=task_links(info),
        recent=[run_row(run) for run in runs],
        title=info.name,
    )


@page("/ui/runs")
def runs_page() -> str | tuple[str, int]:
    state = request.args.get("job_status", "")
    task = request.args.get("task", "")
    parts: list[str | None] = list(task.split("/"))
    chain_type, chain, name = parts if len(parts) == 3 else (None, None, None)
    wrong = _filter_wrong(state, task, len(parts) == 3 and all(parts), set(request.args))
    if wrong:  # the API's 422 for a filter it does not know: every run shown would answer another question
        return render_template("error.html", title="Bad filter", message=wrong), 422
    where = RunFilter(chain_type, chain, name, RunState(state) if state else None)
    runs, total = facade().find_runs(where, limit=RUNS_SHOWN)
    return render_template(
        "runs.html",
        rows=[run_row(run) for run in runs],
        total=total,
        states=[s.value for s in RunState],
        tasks=task_refs(),
        state=state,
        task=task,
        title="Runs",
    )


#: the runs page's filters, the query arguments it reads
RUNS_FILTERS = ("job_status", "task")


def _filter_wrong(state: str, task: str, task_whole: bool, names: set[str]) -> str | None:
    """What is wrong with the runs page's filters (a name it does not read, as the API's 422 for ``/api/runs``: a
    ``?status=FAILED`` listed every run; a ``job_status`` that is no run state, a ``task`` that is not
    ``<type>/<chain>/<Task>``), naming it and what it may be; None where nothing is."""
    wrong = [
        f"{name!r} is not a filter of this page (it takes {', '.join(RUNS_FILTERS)})"
        for name in sorted(names - set(RUNS_FILTERS))
    ]
    if state and state not in RunState.__members__:
        wrong.append(f"job_status {state!r} is not one of {', '.join(RunState)}")
    if task and not task_whole:
        wrong.append(f"task {task!r} is not <type>/<chain>/<Task>")
    return "; ".join(wrong) if wrong else None


def as_found(run: Run, found: Run | RunStatus | None) -> bool:
    """Whether ``found`` (a key's status's run) is ``run`` as it was read: the same run, state and attempt."""
    return found is not None and (found.id, found.state, found.attempt) == (run.id, run.state, run.attempt)


@page("/ui/runs/<run_id>")
def run_page(run_id: str) -> str:
    service = facade()
    run = service.run(run_id)
    key = TargetKey.parse(run.key)
    # the key's status (a read: a lost attempt is told, not reclaimed) is this run's own while it is the latest
    status = service.status(key)
    if status.run is not None and status.run.id == run.id and not as_found(run, status.run):
        run = service.run(run_id)  # it moved on between the two reads: shown as the status found it, or later
    current = as_found(run, status.run)  # else its steps read after it, as a run's that is not the latest
    steps = status.steps if current else service.steps(run.id)
    return render_template(
        "run.html",
        row=run_row(run),
        run=run,
        steps=[step_out(step) for step in steps],
        attempts=[{"attempt": a, "ended": clock(a.ended_at)} for a in service.attempts(run.id)],
        retry_at=clock(run.retry_at),
        started=clock(run.started_at),
        finished=clock(run.finished_at),
        waiting_until=clock(run.wait_until),
        output=file_url(key) if run.state == RunState.DONE else None,
        params_file=file_url(key.with_file(PARAMS_FILE)),
        logs=links.log_links(log_source(key, status.job_status if current else run.state.value, run, steps)),
        visualiser=service.visualiser_url(run.task_id),
        status_url=url_for("status.ChainStatus", chain=key.path),
        cancel_url=url_for("runs.CancelRun", run_id=run.id),
        title=f"Run {short_id(run.id)}",
    )


from api import ui_schedules, ui_triggers  # noqa: E402, F401, I001  (schedules' and triggers' pages, on this blueprint)
