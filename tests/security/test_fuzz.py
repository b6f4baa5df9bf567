"""Schemathesis against a real server: every documented operation fuzzed over HTTP, every answer checked.

The API runs under gunicorn in a subprocess, as in production, on temporary settings holding a
copy of the example chains; no worker runs (a POST only queues). Before fuzzing, a few real runs
are queued over HTTP and one of them is given an output and logs, so that besides the random
values schemathesis generates from the OpenAPI document, part of the cases reach real chains,
tasks and their parameters, real run ids, real keys and a correctly signed download URL (where
the interesting code is, behind the 404s).

Each case's answer goes through schemathesis' checks (no 5xx, the documented status codes, content
types and response schemas) and two of ours: a JSON answer's envelope repeats the HTTP status, and
an error answer does not disclose the server's folders. Failures do not stop the generation: every
distinct failure is kept with its first case (a curl line) and the server's traceback, and the
operation's test fails at its end listing them all, so the counts cover every case. The run is
bounded and derandomized: the same cases on every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.security.fuzzing import (
    OPERATIONS,
    Server,
    World,
    checks_for,
    fuzz_tests,
    operations,
    validate,
)

if TYPE_CHECKING:  # imported where the fuzz runs (tests/security/fuzzing.py), not as this module is collected
    import schemathesis

#: the runs, chains, files and logs operations (test_fuzz_scheduling.py fuzzes those of schedules and triggers)
FUZZED = operations(scheduling=False)

# --- tests ---------------------------------------------------------------------------------------------


def test_the_served_document_has_these_operations(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    served = {(operation.method.upper(), operation.path) for operation in operations}
    assert served == set(OPERATIONS)


#: each of them fuzzed, then their cases counted
test_fuzz_operation, test_enough_cases_ran = fuzz_tests(FUZZED)


# --- hostile requests the generator is unlikely to build -----------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HELLO = {"chain_type": "testchains", "chain": "hello_luigiworld_chain", "task": "WithDependencyTask"}
SALES = {"chain_type": "etl", "chain": "sales_chain", "task": "AggregateSalesTask"}
TASK = "/api/chains/{chain_type}/{chain}/{task}"
ZEROS = "0" * 32


@dataclass(frozen=True)
class Hostile:
    id: str
    method: str
    path: str
    path_parameters: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    #: with the key, expires and signature of the seeded download URL, each unless given in ``query``
    signed: bool = False
    expected: range | tuple[int, ...] = range(400, 500)


HOSTILE = [
    Hostile("json body nested 5000 deep", "POST", TASK, HELLO, body=b"[" * 5000),
    Hostile("json body object nested 5000 deep", "POST", TASK, HELLO, body=b'{"aparam": ' + b"[" * 5000 + b"}"),
    Hostile(
        "list parameter nested 600 deep (query)", "POST", TASK, SALES, {"day": "2024-01-31", "metrics": _nested(600)}
    ),
    Hostile(
        "list parameter nested 600 deep (json body)",
        "POST",
        TASK,
        SALES,
        body=('{"day": "2024-01-31", "metrics": ' + _nested(600) + "}").encode(),
    ),
    Hostile("json body not an object", "POST", TASK, HELLO, body=b'"aparam"', expected=(422,)),
    Hostile("json body not utf-8", "POST", TASK, HELLO, body=b"\xff\xfe{", expected=(422,)),
    Hostile("lone surrogate in a json value", "POST", TASK, HELLO, body=b'{"aparam": "\\ud800"}', expected=(202,)),
    Hostile("NUL in a parameter", "POST", TASK, HELLO, query={"aparam": "a\x00b"}, expected=(202,)),
    Hostile("too many parameters", "POST", TASK, HELLO, query={f"p{i}": "x" for i in range(150)}, expected=(413,)),
    # (in the query, gunicorn's request line limit, 4094, answers 414 before the app sees it)
    Hostile(
        "parameter too long (json body)",
        "POST",
        TASK,
        HELLO,
        body=json.dumps({"aparam": "x" * 5000}).encode(),
        expected=(422,),
    ),
    Hostile(
        "non-ascii signature", "GET", "/api/files", query={"signature": "\u00e9" * 64}, signed=True, expected=(403,)
    ),
    Hostile(
        "non-ascii digits in expires",
        "GET",
        "/api/files",
        query={"expires": "\u0661" * 10},
        signed=True,
        expected=(403,),
    ),
    Hostile(
        "signed key with a traversal", "GET", "/api/files", query={"key": "chains/../../data/secret_key"}, signed=True
    ),
    Hostile(
        "status of a traversal", "GET", "/api/chainstatus", query={"chain": "chains/../../etc/passwd"}, expected=(400,)
    ),
    Hostile(
        "status of an encoded separator",
        "GET",
        "/api/chainstatus",
        query={"chain": f"chains%2fa/b/C/{ZEROS}/out.txt"},
        expected=(400,),
    ),
    Hostile(
        "status of a backslash key",
        "GET",
        "/api/chainstatus",
        query={"chain": f"chains\\a\\b\\C\\{ZEROS}\\out.txt"},
        expected=(400,),
    ),
    Hostile(
        "status of a key 2000 long", "GET", "/api/chainstatus", query={"chain": "chains/" + "a" * 2000}, expected=(400,)
    ),
    Hostile(
        "log of a NUL key", "GET", "/api/logs", query={"chain": f"chains/a/b/C/{ZEROS}/out.txt\x00"}, expected=(400,)
    ),
    Hostile(
        "log of a dotted file",
        "GET",
        "/api/logs",
        query={"chain": f"chains/a/b/C/{ZEROS}/log/..", "stream": "stdout"},
        expected=(400,),
    ),
    Hostile("run id with encoded dots", "GET", "/api/runs/{run_id}", {"run_id": "%2E%2E"}, expected=(404,)),
    Hostile("cancel of a run id with NUL", "POST", "/api/runs/{run_id}/cancel", {"run_id": "%00"}, expected=(404,)),
    Hostile(
        "chain type __pycache__", "GET", "/api/chains/{chain_type}", {"chain_type": "__pycache__"}, expected=(404,)
    ),
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.id for h in HOSTILE])
def test_hostile_request(hostile: Hostile, api_schema: schemathesis.BaseSchema, server: Server, world: World) -> None:
    """A crafted request gets a documented client error (or the stated answer), never a 5xx."""
    operation = api_schema[hostile.path][hostile.method]
    query = {**world.signed, **hostile.query} if hostile.signed else hostile.query
    body: dict[str, Any] = {} if hostile.body is None else {"body": hostile.body, "media_type": "application/json"}
    case = operation.Case(path_parameters=hostile.path_parameters, query=query, **body)
    log_start = server.log_size()
    response = case.call(base_url=server.base, timeout=60)
    findings = validate(case, response, checks_for(server), server, log_start)
    if findings:
        pytest.fail("\n".join(finding.render(key) for key, finding in findings.items()), pytrace=False)
    assert response.status_code in hostile.expected, (response.status_code, response.content[:500])
