"""The fuzz run's machinery: the server, the real values cases aim at, the case strategies, the checks.

``tests/security/test_fuzz.py`` (the runs, chains, files and logs operations, and the hostile requests) and
``tests/security/test_fuzz_scheduling.py`` (the schedules and triggers operations) each fuzz their share of the
documented operations against a server of their own (the fixtures here are per module), so that the two halves run
in two pytest-xdist workers at once. What is fuzzed, and how, is described in ``test_fuzz.py``.
"""

from __future__ import annotations

import fcntl
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from flask import Flask
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from api import register_blueprints
from api.errors import NectarApi
from app import DEFAULTS
from harness import REPO, STOP_TIMEOUT, Processes, base_env, settings_env
from nectar.config import Settings
from tests.helpers.fuzzstats import STATS, OperationStats, stats_of
from tests.helpers.module_api import local_settings

# schemathesis (~0.27 s of CPU to import) is imported by the functions that run a fuzz, not with this module: every
# pytest-xdist worker collects the fuzz modules (their operations are their tests' parameters), and most never fuzz
if TYPE_CHECKING:
    import schemathesis
    from schemathesis import Case, GenerationMode

#: cases per operation; an operation without parameters has 1 case, each other this many. Measured (round 68): each
#: fix the fuzz found reverted in turn, the derandomized cases find it at every count tried, 60 to 125: the chains
#: folder in a 404 (c60a32b) at the first case of 4 operations; a non-ASCII signature's 500 (c60a32b) at GET
#: /api/files' case 14 at 60, 70, 80 and 90 examples, 66 at 100, 67 at 125 (the cases differ with the count: hypothesis
#: sizes its first, small cases from it). The JSON nested 5,000 deep (c60a32b) is found by test_hostile_request alone,
#: and a NaN in a body (9116cf6, a fault of the test) is drawn at no count tried, 125 included
MAX_EXAMPLES = 80
#: cases each fuzz module (test_fuzz.py, test_fuzz_scheduling.py) sends at least, counted one by one: two thirds of
#: those of test_fuzz.py's 12 operations with parameters and 3 without (963), as 1,000 was of 1,503 at 125 examples
MIN_TOTAL_CASES = 640
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=False,
)


def documented_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation of the OpenAPI document, built as create_app builds it.

    Collection needs them before any server runs; test_the_served_document_has_these_operations
    checks that the served document has exactly these.
    """
    app = Flask("openapi")
    app.config.update(DEFAULTS)
    api = NectarApi(app)
    register_blueprints(api)
    paths = api.spec.to_dict()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item if method in HTTP_METHODS]


OPERATIONS = documented_operations()
#: the paths of the operations :file:`test_fuzz_scheduling.py` fuzzes; :file:`test_fuzz.py` fuzzes the others
SCHEDULING = ("/api/schedules", "/api/triggers")


def operations(scheduling: bool) -> list[tuple[str, str]]:
    """The documented operations of schedules and triggers (``scheduling``), or every other."""
    return [(method, path) for method, path in OPERATIONS if path.startswith(SCHEDULING) == scheduling]


# --- the server ------------------------------------------------------------------------------------


@dataclass
class Server:
    base: str
    log: Path
    settings: Settings

    def log_text(self, start: int = 0) -> str:
        with open(self.log, "rb") as handle:
            handle.seek(start)
            return handle.read().decode("utf-8", errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size


@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Local-store settings in temporary folders, with a copy of the example chains.

    tests/conftest.py's ``settings``, built the same way, is per test; one server serves every operation here.
    """
    return local_settings(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def server(fuzz_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API under gunicorn (one worker), answering before this yields."""
    processes = Processes(tmp_path_factory.mktemp("gunicorn"))
    try:
        served = processes.api(None, base_env() | settings_env(fuzz_settings), workers=1, status=200)
        yield Server(f"http://127.0.0.1:{served.port}", processes.log_of[served.proc.pid], fuzz_settings)
    finally:
        processes.close(grace=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    import schemathesis

    # reports show every value sent (schemathesis would hide a query parameter named "key")
    config = schemathesis.Config.from_dict({"output": {"sanitization": {"enabled": False}}})
    return schemathesis.openapi.from_url(f"{server.base}/api/openapi.json", config=config)


# --- real values to aim part of the cases at ---------------------------------------------------------


@dataclass(frozen=True)
class TaskRef:
    chain_type: str
    chain: str
    name: str
    params: tuple[str, ...]

    @property
    def path(self) -> dict[str, str]:
        return {"chain_type": self.chain_type, "chain": self.chain, "task": self.name}


@dataclass
class World:
    """What exists on the server: tasks, runs (queued, cancelled), keys, one done target and its signed URL."""

    tasks: list[TaskRef]
    run_ids: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    signed: dict[str, str] = field(default_factory=dict)


def _submit(base: str, task: TaskRef, params: dict[str, str]) -> dict[str, Any]:
    answer = requests.post(f"{base}/api/chains/{task.chain_type}/{task.chain}/{task.name}", params=params, timeout=60)
    assert answer.status_code == 202, answer.text
    return answer.json()["data"]


#: the lock the fuzz modules of a session take in turn to make hypothesis' tables of the characters utf-8 encodes
UNICODE_TABLES_LOCK = Path(tempfile.gettempdir()) / "nectar-fuzz-unicode-tables.lock"


def unicode_tables_made() -> None:
    """hypothesis' tables of the characters utf-8 encodes (what schemathesis draws text from), made by one of the fuzz
    modules running at once and read from the file it wrote (``.hypothesis/unicode_data``) by the others. On a clean
    clone there is no such file, and the two fuzz modules, started at once in two xdist workers, each made them: ~3.7 s
    of CPU each, where reading them is milliseconds."""
    with open(UNICODE_TABLES_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as it is closed
        find(st.characters(codec="utf-8"), lambda _: True, settings=settings(database=None))


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    unicode_tables_made()  # before any case is drawn
    base = server.base
    catalog = requests.get(f"{base}/api/chains", timeout=60).json()["data"]
    tasks = [
        TaskRef(chain["chain_type"], chain["name"], task["name"], tuple(p["name"] for p in task["params"]))
        for chain_type in catalog
        for chain in chain_type["chains"]
        for task in chain["tasks"]
    ]
    by_name = {task.name: task for task in tasks}
    assert {"TestS3Task", "WithDependencyTask", "GenerateSalesTask", "AggregateSalesTask"} <= set(by_name), tasks
    found = World(tasks)
    for name, params in [
        ("TestS3Task", {}),
        ("WithDependencyTask", {"aparam": "fuzz"}),
        ("AggregateSalesTask", {"day": "2024-01-31", "metrics": '["revenue"]'}),
    ]:
        data = _submit(base, by_name[name], params)
        found.run_ids.append(data["run_id"])
        found.keys.append(data["key"])
    # a done target, with its logs: queue it, cancel the run, then write what a worker would have
    done = _submit(base, by_name["GenerateSalesTask"], {"day": "2024-02-29", "rows": "3"})
    cancelled = requests.post(f"{base}/api/runs/{done['run_id']}/cancel", timeout=60)
    assert cancelled.status_code == 200, cancelled.text
    folder = (server.settings.local_targets_dir / done["key"]).parent
    (folder / "log").mkdir(parents=True)
    (folder / "out.txt").write_text("day,region,product,quantity,unit_price\n")
    (folder / "log" / "stdout.log").write_text("generated 3 lines\n")
    (folder / "log" / "stderr.log").write_text("")
    status = requests.get(f"{base}/api/chainstatus", params={"chain": done["key"]}, timeout=60).json()["data"]
    assert status["job_status"] == "DONE" and status["resource_url"], status
    found.run_ids.append(done["run_id"])
    found.keys += [done["key"], done["key"].replace("out.txt", "log/stdout.log")]
    found.signed = dict(parse_qsl(urlsplit(status["resource_url"]).query))
    assert requests.get(status["resource_url"], timeout=60).status_code == 200
    return found


# --- cases ---------------------------------------------------------------------------------------------

#: wire values for a task parameter: anything, and what its kinds look like (dates, numbers, JSON lists)
QUERY_VALUES = st.one_of(
    st.text(max_size=40),
    st.dates().map(str),
    st.integers().map(str),
    st.floats().map(str),
    st.lists(st.text(max_size=8), max_size=3).map(json.dumps),
    st.sampled_from(["region", "product", "true", "null", "[]", "{}", "..", "%00", "1_000", "٣"]),
)
#: (JSON has no NaN or infinity: requests refuses to send them, so a drawn one failed the test, not the server)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.dates().map(str),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _names(params: Any) -> set[str]:
    return {param.name for param in params}


def _modes(operation: Any, fixed_query: set[str]) -> list[GenerationMode]:
    """Negative cases only where a query parameter or a body is left to break; schemathesis has no invalid
    value for a path parameter (any string) and cannot make a negative case without one."""
    from schemathesis import GenerationMode

    breakable = bool(_names(operation.query) - fixed_query) or len(operation.body) > 0
    return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if breakable else [GenerationMode.POSITIVE]


def _generated(operation: Any, **fixed: Any) -> st.SearchStrategy[Case]:
    modes = _modes(operation, set(fixed.get("query", {})))
    return st.one_of([operation.as_strategy(generation_mode=mode, **fixed) for mode in modes])


def _with_task_params(operation: Any, task: TaskRef) -> st.SearchStrategy[Case]:
    """A submission to a real task, with some of its real parameters set to arbitrary wire values."""
    from schemathesis import GenerationMode

    names = st.sampled_from(task.params)
    query = st.dictionaries(names, QUERY_VALUES, max_size=len(task.params)) if task.params else st.just({})
    body: st.SearchStrategy[Any] = st.none()
    if task.params:
        body |= st.dictionaries(names, JSON_VALUES, min_size=1, max_size=len(task.params))

    def merge(drawn: tuple[Case, dict[str, str], dict[str, Any] | None]) -> Case:
        case, values, json_body = drawn
        case.query = {**(case.query or {}), **values}
        if json_body is not None:
            case.body = json_body
            case.media_type = "application/json"
        return case

    generated = operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=task.path)
    return st.tuples(generated, query, body).map(merge)


SIGNED_SUBSETS = [
    ("key",),
    ("key", "expires"),
    ("key", "signature"),
    ("expires", "signature"),
    ("key", "expires", "signature"),
]


def aimed(operation: Any, found: World) -> list[st.SearchStrategy[Case]]:
    """Cases aimed at what exists: real chains, tasks, runs, keys, the signed download."""
    path_names = _names(operation.path_parameters)
    query_names = _names(operation.query)
    fixed: list[dict[str, Any]] = []
    if path_names == {"chain_type"}:
        fixed += [{"path_parameters": {"chain_type": t}} for t in sorted({t.chain_type for t in found.tasks})]
    elif path_names == {"chain_type", "chain"}:
        fixed += [{"path_parameters": {"chain_type": t.chain_type, "chain": t.chain}} for t in found.tasks]
    elif path_names == {"chain_type", "chain", "task"}:
        fixed += [{"path_parameters": t.path} for t in found.tasks]
    elif path_names == {"run_id"}:
        fixed += [{"path_parameters": {"run_id": run_id}} for run_id in found.run_ids]
    if "chain" in query_names:
        fixed += [{"query": {"chain": key}} for key in found.keys]
    if {"key", "expires", "signature"} <= query_names:
        # each part of a correct signed URL kept, the others generated
        signed = found.signed
        fixed += [{"query": {name: signed[name] for name in kept}} for kept in SIGNED_SUBSETS]
    strategies = [_generated(operation, **kwargs) for kwargs in fixed]
    if operation.method.upper() == "POST" and path_names == {"chain_type", "chain", "task"}:
        strategies += [_with_task_params(operation, task) for task in found.tasks]
    return strategies


def case_strategy(operation: Any, found: World) -> st.SearchStrategy[Case]:
    """Half the cases from the document alone, half aimed at what exists (when anything can be aimed)."""
    plain = _generated(operation)
    targets = aimed(operation, found)
    return st.one_of(plain, st.one_of(targets)) if targets else plain


# --- checks --------------------------------------------------------------------------------------------


def envelope_status(ctx: Any, response: Any, case: Case) -> None:
    """A JSON answer is the envelope {data, message, status} whose status is the HTTP status."""
    content_type = response.headers.get("content-type", [""])[0]
    if not content_type.startswith("application/json"):
        return None
    if case.operation.path == "/api/files" and response.status_code == 200:
        return None  # a downloaded JSON file is the task's own document
    body = response.json()
    assert isinstance(body, dict) and {"data", "message", "status"} <= set(body), f"not the envelope: {body!r}"
    assert body["status"] == response.status_code, f"envelope status {body['status']} != HTTP {response.status_code}"
    return None


def make_no_folder_disclosure(folders: list[str]) -> Callable[..., None]:
    def no_folder_disclosure(ctx: Any, response: Any, case: Case) -> None:
        """An error answer does not tell the client where the server keeps its files."""
        if response.status_code < 400:
            return None
        text = response.content.decode("utf-8", errors="replace")
        leaked = [folder for folder in folders if folder in text]
        assert not leaked, f"the error answer discloses the server folder(s) {leaked}: {text[:300]}"
        return None

    return no_folder_disclosure


def checks_for(server: Server) -> list[Callable[..., Any]]:
    """Schemathesis' checks, then ours; each is run on its own so that a failure is put down to its check."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    folders = [str(server.settings.chains_dir), str(server.settings.data_dir), str(server.settings.local_targets_dir)]
    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        envelope_status,
        make_no_folder_disclosure(folders),
    ]


@dataclass
class Finding:
    """One distinct failure: its first case's report (with a curl line) and what the server logged for it; in a fuzz
    run, the number of that case in its operation's derandomized sequence (``first``, from 1)."""

    report: str
    server_log: str
    count: int = 0
    first: int = 0

    def render(self, key: str) -> str:
        seen = f": {self.count} case(s); the first (case {self.first} of the operation)" if self.count else ""
        text = f"--- {key}{seen}:\n{shorten(self.report.strip())}\n"
        return text + (f"server log for that request:\n{self.server_log}\n" if self.server_log else "")


def shorten(text: str, width: int = 400) -> str:
    """``text`` with each overlong line (a curl with a huge body) cut in its middle."""
    return "\n".join(
        line if len(line) <= width else f"{line[: width - 100]} ...[{len(line)} characters]... {line[-60:]}"
        for line in text.splitlines()
    )


def request_log(server: Server, start: int) -> str:
    """What the server logged since ``start`` (the app logs a traceback per 5xx): the frames down to our code's
    last one and a few below it, then the exception; a deep recursion's repeated frames are left out."""
    lines = [line for line in server.log_text(start).splitlines() if line.strip(" ^~")]
    ours = [i for i, line in enumerate(lines) if line.lstrip().startswith(f'File "{REPO}/') and "/.venv/" not in line]
    cut = (ours[-1] if ours else 20) + 6
    if len(lines) > cut + 4:
        lines = [*lines[:cut], f"  ... {len(lines) - cut - 3} lines ...", *lines[-3:]]
    return shorten("\n".join(lines))


def validate(
    case: Case, response: Any, checks: list[Callable[..., Any]], server: Server, log_start: int, number: int = 0
) -> dict[str, Finding]:
    """The failures of ``response`` to ``case``, by a key naming the check, the failure and the status.

    Every check is run in one call first (each call builds schemathesis' whole check context: six calls a case were
    ~7 % of a fuzz module's CPU); only an answer that fails one is checked again one check a call, to name the check
    of each failure."""
    from schemathesis.errors import FailureGroup

    try:
        case.validate_response(response, checks=checks)
    except FailureGroup:
        pass
    else:
        return {}
    found: dict[str, Finding] = {}
    for check in checks:
        try:
            case.validate_response(response, checks=[check])
        except FailureGroup as group:
            kinds = "/".join(sorted({type(failure).__name__ for failure in group.exceptions}))
            key = f"{check.__name__}: {kinds} (HTTP {response.status_code})"
            found[key] = Finding(str(group), request_log(server, log_start), first=number)
    return found


# --- the fuzz of one operation, and the count of a module's cases ---------------------------------------


def fuzz_operation(method: str, path: str, api_schema: schemathesis.BaseSchema, server: Server, world: World) -> None:
    operation = api_schema[path][method]
    stats: OperationStats = stats_of(operation.label)
    checks = checks_for(server)
    findings: dict[str, Finding] = {}
    session = requests.Session()
    # the server is on loopback: no proxy or .netrc applies, and requests would look for them in the environment and
    # the home folder before each of the ~1,600 requests of a module (~0.45 ms of this process's CPU a request)
    session.trust_env = False

    @FUZZ_SETTINGS
    @given(case=case_strategy(operation, world))
    def fuzz(case: Case) -> None:
        stats.cases += 1
        log_start = server.log_size()
        response = case.call(base_url=server.base, session=session, timeout=60)
        stats.statuses[response.status_code] += 1
        stats.server_errors += response.status_code >= 500
        for key, finding in validate(case, response, checks, server, log_start, stats.cases).items():
            if key.startswith("response_schema_conformance"):
                stats.schema_violations += 1
            elif not key.startswith("not_a_server_error"):
                stats.other_failures += 1
            findings.setdefault(key, finding).count += 1

    with session:  # its kept-alive connection closed now, not left open to the server until the collector's turn
        fuzz()
    if findings:
        reports = "\n".join(finding.render(key) for key, finding in findings.items())
        pytest.fail(f"{operation.label}: {len(findings)} distinct failure(s)\n{reports}", pytrace=False)


def fuzz_tests(fuzzed: list[tuple[str, str]]) -> tuple[Callable[..., None], Callable[..., None]]:
    """The two tests of a fuzz module over the operations ``fuzzed``: each operation fuzzed, then their cases
    counted."""

    @pytest.mark.parametrize(("method", "path"), fuzzed, ids=[f"{m} {p}" for m, p in fuzzed])
    def test_fuzz_operation(
        method: str, path: str, api_schema: schemathesis.BaseSchema, server: Server, world: World
    ) -> None:
        fuzz_operation(method, path, api_schema, server, world)

    def test_enough_cases_ran(request: pytest.FixtureRequest) -> None:
        """The fuzz run above sent at least MIN_TOTAL_CASES requests, counted one by one."""
        assert_enough_cases(request, fuzzed)

    return test_fuzz_operation, test_enough_cases_ran


def assert_enough_cases(request: pytest.FixtureRequest, fuzzed: list[tuple[str, str]]) -> None:
    """The fuzz of the operations ``fuzzed`` in the calling module sent at least MIN_TOTAL_CASES requests, counted one
    by one (skipped unless every one of them was fuzzed in this session)."""
    items = [
        item
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_fuzz_operation" and item.path == request.path
    ]
    if len(items) < len(fuzzed):
        pytest.skip("the total is only meaningful when every operation is fuzzed in this session")
    labels = {f"{method} {path}" for method, path in fuzzed}
    cases = sum(STATS[label].cases for label in labels if label in STATS)
    assert cases >= MIN_TOTAL_CASES, f"{cases} cases ran, fewer than {MIN_TOTAL_CASES}"
