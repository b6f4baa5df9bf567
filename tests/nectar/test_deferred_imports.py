"""What luigid and the API import and never use stays unloaded (nectar.deferred_imports), and what uses it still gets
the real module: a deferred module is imported on first use, once, by any thread; a chain file imports it as before;
a chain's parameter ``schema`` is still checked by the API under gunicorn."""

from __future__ import annotations

import http.client
import importlib
import json
import os
import re
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import NECTAR, Processes, base_env, children, settings_env, waitfor
from nectar.config import Settings
from nectar.deferred_imports import (
    API_ABSENT,
    API_UNUSED,
    LUIGID_ABSENT,
    LUIGID_UNUSED,
    WORKER_ABSENT,
    WORKER_UNUSED,
    Deferral,
    DeferredModule,
    DeferredPattern,
)
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState, open_run_store
from nectar.supervisor import luigid_command
from tests.conftest import wait_until

#: seconds that only fail a hung test
PATIENCE = 60.0
#: a compiled library each deferred module loads with it, seen in a process's memory map from outside: requests
#: imports charset_normalizer (its md and cd extensions), jsonschema imports referencing and its rpds, yaml its _yaml,
#: curses its _curses, ssl its _ssl (with libssl and libcrypto)
LIBRARIES = {
    "requests": "/charset_normalizer/",
    "jsonschema": "/rpds/",
    "yaml": "/yaml/_yaml.",
    "tornado": "/tornado/",
    "curses": "/_curses.",
    "ssl": "/_ssl.",
}
#: what a probe module and the test share, as attributes they add to ``sys``: its executions, and a gate it waits at
RUNS, GATE = "deferred_probe_runs", "deferred_probe_gate"


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    """A folder on ``sys.path`` for this test's modules; whatever they were imported as is forgotten after."""
    folder = tmp_path / "modules"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    before = set(sys.modules)
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            if name.startswith("deferred_probe"):
                del sys.modules[name]


def probe(folder: Path, name: str, source: str = "") -> None:
    """Module ``name``: counts its executions in ``sys.deferred_probe_runs`` and has ``value = 42``."""
    counting = f"import sys\nsys.{RUNS} = getattr(sys, {RUNS!r}, 0) + 1\n"
    (folder / f"{name}.py").write_text(f"{counting}{source}\nvalue = 42\n")


def runs() -> int:
    return int(getattr(sys, RUNS, 0))


@pytest.fixture(autouse=True)
def no_runs() -> Iterator[None]:
    setattr(sys, RUNS, 0)
    yield
    delattr(sys, RUNS)


def test_a_deferred_module_is_imported_when_first_used_and_then_is_the_real_one(modules: Path) -> None:
    probe(modules, "deferred_probe")
    with Deferral(["deferred_probe"]):
        import deferred_probe

        assert isinstance(deferred_probe, DeferredModule)
        assert runs() == 0, "the deferred module was executed at its import"

        assert deferred_probe.value == 42
        assert runs() == 1
        assert deferred_probe.value == 42
        assert runs() == 1, "the deferred module was executed twice"
        assert type(sys.modules["deferred_probe"]) is types.ModuleType


def test_after_the_deferral_an_import_gets_the_real_module(modules: Path) -> None:
    probe(modules, "deferred_probe")
    deferral = Deferral(["deferred_probe"])
    deferral.end()

    import deferred_probe

    assert type(deferred_probe) is types.ModuleType
    assert runs() == 1 and deferred_probe.value == 42


#: a module compiling patterns at its top, one of them in the class body of an ABC (whose creation looks at each
#: attribute for ``__isabstractmethod__``), as marshmallow.validate's Email validator does
PATTERNS_SOURCE = """
import abc
import re

ADDRESS = re.compile(r"[a-z]+@example[.]org", re.IGNORECASE)


class Checker(abc.ABC):
    DIGITS = re.compile(r"[0-9]+")
"""


def test_a_modules_patterns_are_compiled_on_first_use_while_its_deferral_is_open(modules: Path) -> None:
    probe(modules, "deferred_probe_patterns", PATTERNS_SOURCE)
    compile_before = re.compile
    with Deferral([], lazy_patterns=["deferred_probe_patterns"]):
        import deferred_probe_patterns as module

        own = re.compile("x+")  # another module's (this one's): compiled at once
    assert re.compile is compile_before, "re.compile was not given back when the deferral ended"
    assert type(own) is re.Pattern
    address, digits = module.ADDRESS, module.Checker.DIGITS
    for lazy in (address, digits):
        assert isinstance(lazy, DeferredPattern) and not lazy.compiled, "a pattern was compiled at the import"

    assert address.match("Someone@EXAMPLE.org") is not None and address.match("someone@example.com") is None
    assert (address.pattern, address.flags & re.IGNORECASE) == (r"[a-z]+@example[.]org", re.IGNORECASE)
    assert address.compiled and not digits.compiled
    assert digits.fullmatch("42") is not None
    assert module.ADDRESS is address, "the module's name was rebound"


def test_a_module_that_cannot_be_found_fails_at_its_import_as_before(modules: Path) -> None:
    with Deferral(["deferred_probe_missing"]), pytest.raises(ModuleNotFoundError):
        import deferred_probe_missing  # noqa: F401


def test_an_absent_module_cannot_be_imported_until_the_deferral_ends(modules: Path) -> None:
    probe(modules, "deferred_probe")
    with Deferral([], absent=["deferred_probe"]):
        with pytest.raises(ImportError):
            import deferred_probe
        assert runs() == 0

    import deferred_probe

    assert deferred_probe.value == 42


def test_a_submodule_of_a_deferred_package_imports_the_package_for_real(modules: Path) -> None:
    package = modules / "deferred_probe_pkg"
    package.mkdir()
    probe(package, "__init__")
    (package / "sub.py").write_text("thing = 'sub'\n")
    with Deferral(["deferred_probe_pkg"]):
        import deferred_probe_pkg.sub

    assert deferred_probe_pkg.sub.thing == "sub"
    assert deferred_probe_pkg.value == 42
    assert runs() == 1


def test_a_submodule_its_deferred_package_imports_itself_runs_once(modules: Path) -> None:
    """``import package.sub`` reads the package's ``__path__``, which imports the package for real, which imports
    ``sub`` itself: the import already under way takes that module, it does not execute ``sub`` a second time."""
    package = modules / "deferred_probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from deferred_probe_pkg import sub\nvalue = sub.value\n")
    probe(package, "sub")
    with Deferral(["deferred_probe_pkg"]):
        import deferred_probe_pkg.sub

        assert runs() == 1, "the submodule was executed twice"
        assert deferred_probe_pkg.sub is sys.modules["deferred_probe_pkg.sub"]
        assert deferred_probe_pkg.value == deferred_probe_pkg.sub.value == 42
        spec = deferred_probe_pkg.sub.__spec__
        assert spec is not None and spec.origin == str(package / "sub.py")
    import deferred_probe_pkg.sub as again

    assert again is deferred_probe_pkg.sub and runs() == 1


def test_a_deferral_ended_twice_leaves_a_later_one_of_the_same_name_whole(modules: Path) -> None:
    """Ending a deferral again (``end()``, then its ``with`` block's end) takes its names from the open deferrals
    once: a later deferral of the same package still keeps its submodules from running twice."""
    package = modules / "deferred_probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from deferred_probe_pkg import sub\nvalue = sub.value\n")
    probe(package, "sub")
    first = Deferral(["deferred_probe_pkg"])
    first.end()
    with Deferral(["deferred_probe_pkg"]):
        first.end()  # again
        import deferred_probe_pkg.sub

        assert runs() == 1, "the submodule was executed twice"
        assert deferred_probe_pkg.value == deferred_probe_pkg.sub.value == 42


def test_threads_using_a_deferred_module_at_once_all_get_it_and_it_runs_once(modules: Path) -> None:
    """The first thread imports it; a thread using it meanwhile waits for that import rather than seeing half."""
    gate = threading.Event()
    entered = threading.Event()
    setattr(sys, GATE, (entered, gate))
    probe(modules, "deferred_probe", f"entered, gate = sys.{GATE}\nentered.set()\ngate.wait()\n")
    try:
        with Deferral(["deferred_probe"]):
            import deferred_probe
        seen: list[int] = []
        readers = [threading.Thread(target=lambda: seen.append(deferred_probe.value)) for _ in range(4)]
        readers[0].start()
        assert entered.wait(PATIENCE), "the first use never began importing the module"
        for reader in readers[1:]:
            reader.start()
        gate.set()
        for reader in readers:
            reader.join(PATIENCE)
        assert seen == [42] * 4
        assert runs() == 1
    finally:
        gate.set()
        delattr(sys, GATE)


def libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def loaded(pid: int, names: tuple[str, ...]) -> list[str]:
    maps = libraries(pid)
    return [name for name in names if LIBRARIES[name] in maps]


def test_the_libraries_are_where_this_test_looks_for_them() -> None:
    """This process imported them (the test suite does): their compiled parts are in its memory map."""
    for name in (*API_UNUSED, *API_ABSENT, *LUIGID_ABSENT, *WORKER_UNUSED):
        importlib.import_module("tornado.gen" if name == "tornado" else name)  # tornado: what tenacity imports of it

    assert loaded(os.getpid(), tuple(LIBRARIES)) == list(LIBRARIES)


def test_luigid_as_serve_starts_it_loads_neither_requests_nor_jsonschema(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "logs")
    try:

        def launch(port: int) -> subprocess.Popen[bytes]:
            argv = luigid_command("127.0.0.1", port, tmp_path / "data")
            return processes.start("luigid", argv, base_env(), tmp_path)

        # on a free port, another if it was taken since its pick
        luigid = processes.serve("luigid", None, False, launch, "/api/worker_list").proc
        assert loaded(luigid.pid, (*LUIGID_UNUSED, *LUIGID_ABSENT)) == []
    finally:
        processes.close(grace=PATIENCE)


#: a chain that notes, when the API imports it (in gunicorn's master, before each fork), which of the deferred
#: modules were imported by then, and imports requests itself: it must get the real module
PROBING_CHAIN = """
import json
import os
import sys
import types

loaded = sorted(name for name in ("requests", "jsonschema", "yaml") if name in sys.modules)

import requests

from nectar import NectarTask

with open(os.environ["DEFERRED_LEDGER"], "a") as ledger:
    ledger.write(json.dumps({"pid": os.getpid(), "real": type(requests) is types.ModuleType,
                             "session": hasattr(requests, "Session"), "loaded": loaded}) + "\\n")


class ProbedTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("probed\\n")
"""
#: a chain whose parameter has a JSON schema, which luigi checks with jsonschema
SHAPED_CHAIN = """
import luigi

from nectar import NectarTask


class ShapedTask(NectarTask):
    options = luigi.DictParameter(schema={"type": "object", "required": ["a"]})

    def run(self):
        with self.output().open("w") as out:
            out.write("shaped\\n")
"""
SHAPED = "/api/chains/deferred/shaped_chain/ShapedTask"


def post(port: int, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        connection.request("POST", SHAPED, json.dumps(body), {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_the_api_loads_what_it_does_not_use_only_when_a_chain_imports_it(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    ledger = tmp_path / "imports.jsonl"
    ledger.touch()
    write_chain("deferred/probing_chain", PROBING_CHAIN)
    processes = Processes(tmp_path / "logs")
    try:
        env = base_env() | settings_env(settings) | {"DEFERRED_LEDGER": str(ledger)}
        api = processes.api(None, env, workers=1).proc
        lines = [json.loads(line) for line in ledger.read_text().splitlines()]
        (noted,) = [line for line in lines if line["pid"] == api.pid]  # the master's (its probe child's before it)
        assert noted == {"pid": api.pid, "real": True, "session": True, "loaded": []}
        assert all(line["real"] and line["session"] for line in lines), lines

        (worker,) = waitfor(lambda: children(api.pid), PATIENCE, "the API worker")
        unused = tuple(name for name in (*API_UNUSED, *API_ABSENT) if name != "requests")  # the chain imports requests
        assert loaded(api.pid, unused) == []
        assert loaded(worker, unused) == []
    finally:
        processes.close(grace=PATIENCE)


def test_the_api_under_gunicorn_still_checks_a_parameters_schema(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """luigi reads jsonschema when a chain declares a ``schema``: deferred in the API, it is imported then."""
    write_chain("deferred/shaped_chain", SHAPED_CHAIN)
    processes = Processes(tmp_path / "logs")
    try:
        port = processes.api(None, base_env() | settings_env(settings), workers=1).port
        status, answer = post(port, {"options": {"b": 1}})
        assert status == 422, answer  # refused by the schema, naming the parameter
        assert answer["errors"] == {"options": ["not a valid dict: '{\"b\": 1}' ('a' is a required property)"]}, answer
        status, answer = post(port, {"options": {"a": 1}})
        assert status in {200, 202}, answer
    finally:
        processes.close(grace=PATIENCE)


def started_worker(processes: Processes, settings: Settings, extra: dict[str, str] | None = None) -> int:
    """``nectar worker --clock``, as serve starts it, once its executor serves (its chains loaded by its clock)."""
    env = base_env() | settings_env(settings) | (extra or {})
    proc = processes.start("worker", [*NECTAR, "worker", "--clock", "--workers", "2"], env, settings.data_dir.parent)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "slot(s), registry" in log.read_text(errors="replace") or proc.poll() is not None)
    assert proc.poll() is None, log.read_text(errors="replace")
    return proc.pid


def test_the_worker_as_serve_starts_it_loads_neither_requests_nor_tornado(
    settings: Settings, processes: Processes
) -> None:
    """Its runs reach luigid through nectar.luigid, not luigi.rpc's requests; no chain of the test's checks a parameter
    by a schema (jsonschema); tenacity's tornado retrier is not made."""
    worker = started_worker(processes, settings)
    assert loaded(worker, (*WORKER_UNUSED, *WORKER_ABSENT)) == []


def test_a_chain_the_worker_loads_imports_the_real_requests(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The deferral ends before the worker's clock loads the chains: a chain file's ``import requests`` is the real
    module, imported there (not before), and tornado is still left out."""
    ledger = tmp_path / "imports.jsonl"
    ledger.touch()
    write_chain("deferred/probing_chain", PROBING_CHAIN)
    worker = started_worker(processes, settings, {"DEFERRED_LEDGER": str(ledger)})
    noted = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert {"pid": worker, "real": True, "session": True, "loaded": []} in noted, noted
    assert loaded(worker, WORKER_ABSENT) == []


def test_the_worker_still_checks_a_parameters_schema(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path], luigid: str
) -> None:
    """luigi reads jsonschema as a run's task is made with a ``schema``'d parameter: deferred in the worker, it is
    imported then, and a value the schema refuses fails the run naming why (the API refuses it first: this run is
    put in the registry directly)."""
    write_chain("deferred/shaped_chain", SHAPED_CHAIN)
    key = TargetKey("deferred", "shaped_chain", "ShapedTask", "0" * 32)
    refused = {"options": '{"b": 1}'}
    run = Run.new(key.path, "deferred", "shaped_chain", "ShapedTask", refused, "x", RetryPolicy(0, 0, 1))
    with open_run_store(settings) as runs:
        run_id = runs.submit(run)[0].id

        def ended() -> Run | None:
            now = runs.get(run_id)
            return now if now is not None and not now.state.active else None

        # a luigid its attempts call through their client; its spares kept while idle
        env = base_env() | settings_env(settings) | {"NECTAR_SCHEDULER_URL": luigid, "NECTAR_SPARE_IDLE": "3600"}
        worker = processes.worker(env, settings.data_dir.parent, workers=1).pid
        wait_until(lambda: ended() is not None, timeout=PATIENCE)
        last = ended()
    assert last is not None and last.state == RunState.FAILED, last
    assert "'a' is a required property" in str(last.error), last.error
    # nor did its attempt process, or the spare set up after it, import requests: their luigid client makes none of
    # luigi's transport (nectar.luigi_internals.RemoteScheduler)
    spares = children(worker)
    assert spares and [pid for pid in [worker, *spares] if loaded(pid, ("requests",))] == []
