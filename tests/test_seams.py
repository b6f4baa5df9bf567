"""A library's private names are read in the one module that adapts it (STYLE.md "Seams"), and nowhere else of the
service: a scan of ``nectar/``, ``api/`` and ``app.py`` for a private name of a module they import."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the modules that adapt a library, each the one place its private names are read (a test beside each names them)
SEAMS = {
    "nectar/luigi_internals.py",  # luigi, and luigid's tornado
    "api/smorest_internals.py",  # flask-smorest
    "api/routing.py",  # werkzeug's URL rules (tests/api/test_lazy_url_builders.py)
    "nectar/gunicorn_ext.py",  # gunicorn
    "nectar/stdlib_internals.py",  # the Python standard library
    "api/metrics.py",  # prometheus_client's multiprocess values, in one function (CONTRIBUTING.md)
}
#: the standard library's public functions whose names begin with an underscore
PUBLIC = {"os._exit", "sys._getframe"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reads(source: str) -> list[str]:
    """Each private name of an imported module ``source`` reads: ``module._name`` (``module.attr._name`` too, and
    through a name given a module or its attribute: ``alias = module``), ``from module import _name``, ``import
    _module``, ``sys.modules["_name"]``, ``vars(...)["_name"]``, ``vars(...).get("_name")``,
    ``module.__dict__["_name"]`` (``.get`` too) and ``getattr(module..., "_name")``."""
    nodes = list(ast.walk(ast.parse(source)))  # walked once (each walk of a module was ~40 % of its parse)
    modules = set()
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            modules |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
            found += [f"import {alias.name}" for alias in node.names if any(map(_private, alias.name.split(".")))]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if (node.module or "").split(".")[0] not in {"nectar", "api", "app"}:
                modules |= {alias.asname or alias.name for alias in node.names}
                found += [
                    f"from {node.module} import {alias.name}"
                    for alias in node.names
                    if _private(alias.name) or any(map(_private, (node.module or "").split(".")))
                ]

    def of_a_module(node: ast.expr) -> bool:
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id in modules

    def private_key(node: ast.expr) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and _private(node.value)

    def a_namespace(node: ast.expr) -> bool:
        """``vars(...)``, ``sys.modules`` or ``module...__dict__``: a mapping of names to read a private one in."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "__dict__":
            return of_a_module(node.value)
        return ast.unparse(node) == "sys.modules"

    assigns = [node for node in nodes if isinstance(node, ast.Assign)]
    aliased = -1
    while aliased < len(modules):  # a name given a module (or one of its attributes), given in turn to another...
        aliased = len(modules)
        for node in assigns:
            if of_a_module(node.value):
                modules |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    for node in nodes:
        if isinstance(node, ast.Attribute) and _private(node.attr) and of_a_module(node.value):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Subscript) and private_key(node.slice) and a_namespace(node.value):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr == "get" and private_key(node.args[0]) and a_namespace(node.func.value):
                found.append(ast.unparse(node))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            if len(node.args) > 1 and private_key(node.args[1]) and of_a_module(node.args[0]):
                found.append(ast.unparse(node))
    return [read for read in found if read not in PUBLIC]


def test_the_scan_finds_each_kind_of_private_read() -> None:
    source = (
        "import os, sys\nimport luigi.worker\nfrom logging import Logger\n"
        'a = sys.modules["_signal"]\nb = vars(os.environ)["_data"]\nc = luigi.worker._is_external\n'
        'd = getattr(Logger, "_x", None)\ne = Logger.manager._y\nos._exit(0)\nself._lock = 1\n'
    )
    assert private_reads(source) == [
        "sys.modules['_signal']",
        "vars(os.environ)['_data']",
        "luigi.worker._is_external",
        "getattr(Logger, '_x', None)",
        "Logger.manager._y",
    ]


def test_the_scan_finds_a_private_name_imported_or_read_through_an_alias_or_a_modules_dict() -> None:
    """Each of these read a library's private name unseen by the scan on main."""
    source = (
        "import logging\nimport _signal\nfrom logging import _lock\nfrom multiprocessing._x import y\n"
        "lg = logging\nroot = lg.root\na = root._cache\nb = vars(logging).get('_lock')\n"
        "c = logging.__dict__['_lock']\nd = logging.__dict__.get('_lock')\ne = self.__dict__['_own']\n"
    )
    assert private_reads(source) == [
        "import _signal",
        "from logging import _lock",
        "from multiprocessing._x import y",
        "root._cache",
        "vars(logging).get('_lock')",
        "logging.__dict__['_lock']",
        "logging.__dict__.get('_lock')",
    ]


def test_no_module_but_a_seam_reads_a_librarys_private_name() -> None:
    found = {}
    for path in [*sorted((REPO / "nectar").rglob("*.py")), *sorted((REPO / "api").rglob("*.py")), REPO / "app.py"]:
        where = str(path.relative_to(REPO))
        if where not in SEAMS and (reads := private_reads(path.read_text())):
            found[where] = reads
    assert found == {}
