"""Each test's CPU, its own and its waited children's, summed by file: ``pytest -p tests.helpers.suiteB_cpu``.

Not loaded by default. A test's figure is ``getrusage`` of the pytest process (``RUSAGE_SELF``: every thread of it,
the test client's and in-process servers' too) and of the children it reaped (``RUSAGE_CHILDREN``: the processes a
test started and waited for), taken around its setup, call and teardown. A module's fixtures count in the test that
made them and the test that tore them down; the session's luigid, moto and PostgreSQL in the session's last test:
read those apart. Collection's CPU is the process's own from its configure to its collection's end.

At the session's end the table (files by their own CPU, most first) is printed, and written as tab-separated rows
to ``$SUITEB_CPU_OUT`` if set. Under xdist each worker sends its rows to the controller, which prints them all.
"""

from __future__ import annotations

import os
import resource
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

#: (file, test id, own CPU s, children's CPU s), one per test of this process
_ROWS: list[tuple[str, str, float, float]] = []
_COLLECTION: dict[str, float] = {}
_STARTED: dict[str, float] = {}
#: file or folder -> the process's own CPU s collecting it (its import, a folder's conftest, a parametrization)
_COLLECTED: dict[str, float] = defaultdict(float)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def pytest_configure(config: pytest.Config) -> None:
    _STARTED["self"] = _cpu(resource.RUSAGE_SELF)


def pytest_collection_finish(session: pytest.Session) -> None:
    _COLLECTION[os.environ.get("PYTEST_XDIST_WORKER", "main")] = _cpu(resource.RUSAGE_SELF) - _STARTED["self"]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    before = _cpu(resource.RUSAGE_SELF)
    yield
    _COLLECTED[collector.nodeid.split("::")[0] or "."] += _cpu(resource.RUSAGE_SELF) - before


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, None]:
    own, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    yield
    own_after, children_after = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    _ROWS.append((item.nodeid.split("::")[0], item.nodeid, own_after - own, children_after - children))


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["suiteB_cpu"] = [list(row) for row in _ROWS]
        workeroutput["suiteB_collection"] = dict(_COLLECTION)
        workeroutput["suiteB_collected"] = dict(_COLLECTED)


def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {})
    _ROWS.extend(tuple(row) for row in output.get("suiteB_cpu", []))
    _COLLECTION.update(output.get("suiteB_collection", {}))
    for path, cpu in output.get("suiteB_collected", {}).items():
        _COLLECTED[path] = max(_COLLECTED[path], cpu)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if getattr(config, "workeroutput", None) is not None:
        return
    files: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for path, _test, own, children in _ROWS:
        entry = files[path]
        entry[0] += 1
        entry[1] += own
        entry[2] += children
        entry[3] = max(entry[3], own)
    ranked = sorted(files.items(), key=lambda item: -item[1][1])
    write = terminalreporter.write_line
    write("suiteB_cpu: file, tests, own CPU s, children's CPU s, most own CPU of one test s")
    for path, (count, own, children, most) in ranked:
        write(f"{path}\t{int(count)}\t{own:.2f}\t{children:.2f}\t{most:.2f}")
    heaviest = sorted(_ROWS, key=lambda row: -row[2])[:15]
    write("suiteB_cpu: tests by own CPU s")
    for _path, test, own, children in heaviest:
        write(f"{test}\t{own:.2f}\t{children:.2f}")
    for worker, cpu in sorted(_COLLECTION.items()):
        write(f"suiteB_cpu: collection in {worker}: {cpu:.2f} s")
    write("suiteB_cpu: files by the CPU s of their collection (one process's; each xdist worker collects every file)")
    for path, cpu in sorted(_COLLECTED.items(), key=lambda item: -item[1])[:25]:
        write(f"{path}\t{cpu:.2f}")
    out = os.environ.get("SUITEB_CPU_OUT")
    if out:
        lines = [f"{path}\t{test}\t{own:.3f}\t{children:.3f}" for path, test, own, children in _ROWS]
        lines += [f"#collection\t{worker}\t{cpu:.3f}\t0" for worker, cpu in sorted(_COLLECTION.items())]
        lines += [f"#collected\t{path}\t{cpu:.3f}\t0" for path, cpu in sorted(_COLLECTED.items())]
        Path(out).write_text("\n".join(lines) + "\n")
