"""No code from the wire: a URL only ever reaches a discovered chain's own tasks, and parameter
values are parsed as data, never evaluated, imported or run through a shell."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import REPO

HELLO = "/api/chains/testchains/hello_luigiworld_chain"


@pytest.mark.parametrize(
    "path",
    [
        f"{HELLO}/__class__",
        f"{HELLO}/__dict__",
        f"{HELLO}/__init__",
        f"{HELLO}/time",  # a module the chain imports
        f"{HELLO}/luigi",
        f"{HELLO}/NectarTask",  # a class the chain imports, not one it defines
        f"{HELLO}/TestS3Task.__class__",
        f"{HELLO}/TestS3Task/__globals__",
        "/api/chains/testchains/os/TestS3Task",
        "/api/chains/os/path/TestS3Task",
        "/api/chains/testchains/hello_luigiworld_chain.__builtins__/TestS3Task",
        "/api/chains/testchains/..%2f..%2fapp/create_app",
        "/api/chains/__pycache__/hello_luigiworld_chain/TestS3Task",
        "/api/chains/nectar/service/Nectar",
        "/api/chains/sys/modules/os",
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_url_never_names_anything_but_a_discovered_task(client: FlaskClient, path: str, method: str) -> None:
    assert client.get("/api/chains").status_code == 200  # discovery imports the chain files, and only them
    modules = set(sys.modules)
    answer = getattr(client, method)(path)
    assert answer.status_code in (404, 405), answer.get_json()
    assert set(sys.modules) - modules == set()  # nothing was imported to answer it


@pytest.mark.parametrize(
    "value",
    [
        "__import__('os').system('touch {marker}')",
        "$(touch {marker})",
        "`touch {marker}`",
        "; touch {marker}",
        "{{{{ touch {marker} }}}}",
    ],
)
def test_parameter_values_are_data_never_code(client: FlaskClient, tmp_path: Path, value: str) -> None:
    marker = tmp_path / "pwned"
    text = value.format(marker=marker)
    as_int = client.post("/api/chains/etl/sales_chain/GenerateSalesTask", query_string={"day": text})
    assert as_int.status_code == 422 and as_int.get_json()["errors"]["day"]
    as_text = client.post(f"{HELLO}/WithDependencyTask", query_string={"aparam": text})
    assert as_text.status_code == 202
    run = client.get(f"/api/runs/{as_text.get_json()['data']['run_id']}").get_json()["data"]
    assert run["params"] == {"aparam": text}  # kept verbatim, as data
    assert not marker.exists()


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            found.append((name, node))
    return found


def test_the_service_code_never_evaluates_or_uses_a_shell() -> None:
    """A guard on our own code: no eval, no shell; exec only where a discovered chain file is loaded."""
    offenders = []
    for path in sorted([*REPO.glob("nectar/*.py"), *REPO.glob("api/*.py"), REPO / "app.py"]):
        for name, call in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if name in {"eval", "system", "popen", "getoutput", "getstatusoutput", "__import__", "import_module"}:
                offenders.append(f"{where} calls {name}")
            if name == "exec" and path.name != "discovery.py":
                offenders.append(f"{where} calls exec outside chain discovery")
            if any(kw.arg == "shell" for kw in call.keywords):
                offenders.append(f"{where} passes shell=")
    assert offenders == []
