"""ruff (lint and format, README's Python blocks included) and mypy, configured in pyproject.toml, are clean:
the suite fails otherwise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from fnmatch import fnmatchcase

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness import lifeline_env
from tests.conftest import REPO
from tests.helpers import background_mypy


@pytest.mark.parametrize(
    "tool",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_tool_is_clean(tool: list[str], request: pytest.FixtureRequest) -> None:
    """mypy's answer is the one of the run the session started at its beginning, if it did (tests/helpers/
    background_mypy.py); the same command either way."""
    answer = background_mypy.started_in_background(request.config) if tool == ["mypy"] else None
    if answer is None:
        env = {**os.environ, **lifeline_env()}  # dies with this process, even SIGKILLed (harness/lifeline.py)
        argv = [sys.executable, "-m", *tool]
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        answer = background_mypy.Answer(result.returncode, result.stdout + result.stderr)
    assert answer.returncode == 0, answer.output


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    test_command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "pytest" in line)
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == test_command
    assert "-c requirements/constraints.txt" in test_command  # installs from the lock


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    """requirements/constraints.txt is refreshed when pyproject.toml's dependencies change (see CONTRIBUTING.md)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(text) for text in project["dependencies"]]
    wanted += [Requirement(text) for extra in project["optional-dependencies"].values() for text in extra]
    pinned = {}
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith(("#", " ")):
            pinned[canonicalize_name(name)] = version.strip()
    unpinned = [str(r) for r in wanted if canonicalize_name(r.name) not in pinned]
    outside = [
        f"{r} (locked {pinned[canonicalize_name(r.name)]})"
        for r in wanted
        if canonicalize_name(r.name) in pinned and pinned[canonicalize_name(r.name)] not in r.specifier
    ]
    assert (unpinned, outside) == ([], []), "refresh the lock: see CONTRIBUTING.md"


def test_a_built_package_holds_every_subpackage() -> None:
    """A wheel (what the Dockerfile installs) holds every package folder of ``nectar`` and ``api``: a subpackage
    left out of pyproject's package list works in the editable install of a checkout and is missing in the image."""
    found = pyproject_packages()
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("nectar", "api")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert on_disk <= found, f"not in the built package: {sorted(on_disk - found)}"
    assert found <= find_packages(), "pyproject names a package that is not on disk"


def pyproject_packages() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    if "packages" in config and isinstance(config["packages"], list):
        return set(config["packages"])
    rules = config["packages"]["find"]
    assert rules.get("namespaces") is False, "a namespace package (a folder without __init__.py) is not read here"

    def matches(package: str, key: str, default: list[str]) -> bool:
        return any(fnmatchcase(package, rule) for rule in rules.get(key, default))

    return {p for p in find_packages() if matches(p, "include", ["*"]) and not matches(p, "exclude", [])}


def find_packages() -> set[str]:
    """The packages under the repository's root as setuptools' ``find_packages`` finds them (``namespaces = false``):
    each folder with an ``__init__.py`` under packages only, no dot in its name; setuptools is not installed in a
    Python 3.12+ venv, and pyproject's rules are its ``fnmatchcase`` patterns on the dotted name."""
    found: set[str] = set()
    folders = [(REPO, "")]
    while folders:
        folder, prefix = folders.pop()
        for child in folder.iterdir():
            if child.is_dir() and "." not in child.name and (child / "__init__.py").is_file():
                found.add(prefix + child.name)
                folders.append((child, f"{prefix}{child.name}."))
    return found


def test_every_documented_install_into_the_service_uses_the_lock() -> None:
    """Each ``pip install`` the docs give either installs from the lock (``-c requirements/constraints.txt``) or into
    an environment of its own (a tool's venv in /tmp): none moves the service's pins (before, the README's audit
    advice was ``pip install pip-audit`` in the service's environment)."""
    outside = []
    for doc in ("README.md", "CONTRIBUTING.md", "Dockerfile"):
        text = re.sub(r"\s+", " ", (REPO / doc).read_text())  # a command wrapped over two lines is one
        for install in re.findall(r"([^\s`]*pip install .*?)(?:&&|`|$)", text):
            if "-c requirements/constraints.txt" not in install and not install.startswith("/tmp/"):
                outside.append(f"{doc}: {install.strip()}")
    assert outside == []
