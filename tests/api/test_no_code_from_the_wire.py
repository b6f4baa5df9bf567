"""No code from the wire: a URL only ever reaches a discovered chain's own tasks, and parameter
values are parsed as data, never evaluated, imported or run through a shell."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from tests.api.conftest import finished
from tests.conftest import REPO

StartWorker = Callable[..., subprocess.Popen[bytes]]

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


INJECTIONS = [
    "__import__('os').system('touch {marker}')",
    "$(touch {marker})",
    "`touch {marker}`",
    "; touch {marker}",
    "{{{{ touch {marker} }}}}",
    "{{aparam.__class__.__init__.__globals__}}",
]


def test_parameter_values_are_data_never_code(
    settings: Settings, client: FlaskClient, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Each value would create ``marker`` if it were evaluated, formatted, imported or run through a shell, by the
    API or by the worker that executes the task: a real worker runs every one of them to the end."""
    marker = tmp_path / "pwned"
    texts = [value.format(marker=marker) for value in INJECTIONS]
    queued = []
    for text in texts:
        as_int = client.post("/api/chains/etl/sales_chain/GenerateSalesTask", query_string={"day": text})
        assert as_int.status_code == 422 and as_int.get_json()["errors"]["day"]
        as_text = client.post(f"{HELLO}/WithDependencyTask", query_string={"aparam": text})
        assert as_text.status_code == 202, as_text.get_json()
        queued.append(as_text.get_json()["data"])
    for text, data in zip(texts, queued, strict=True):
        run = client.get(f"/api/runs/{data['run_id']}").get_json()["data"]
        assert run["params"] == {"aparam": text}  # kept verbatim, as data

    start_worker(settings, workers=2)

    for text, data in zip(texts, queued, strict=True):
        status = finished(client, data["status_url"])
        assert status["job_status"] == "DONE", status
        assert client.get(status["resource_url"]).data == f"hello luigi world, {text}\n".encode()  # used as text
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
    """A guard on our own code: no eval, no shell; exec only where a discovered chain file is loaded, and an
    import by name only of luigi.cfg's ``[worker] task_process_context`` (the operator's setting, loaded as luigi
    loads it, never a value from a request) and of the modules nectar.deferred_imports defers (its constants)."""
    offenders = []
    for path in sorted([*REPO.glob("nectar/**/*.py"), *REPO.glob("api/*.py"), REPO / "app.py"]):
        for name, call in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if name == "import_module" and path.name == "parallel.py":
                continue
            if name == "import_module" and path.name == "deferred_imports.py":  # its own constants' names only
                continue
            if name in {"eval", "system", "popen", "getoutput", "getstatusoutput", "__import__", "import_module"}:
                offenders.append(f"{where} calls {name}")
            if name == "exec" and path != REPO / "nectar/catalog/loader.py":
                offenders.append(f"{where} calls exec outside chain discovery")
            if any(kw.arg == "shell" for kw in call.keywords):
                offenders.append(f"{where} passes shell=")
    assert offenders == []
