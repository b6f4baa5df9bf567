"""Whether a chain file's import makes the same module each time it is executed, and nothing a run could change
unseen: decided from its source, once per compile (:func:`keepable`). Such a module may be kept from one run to the
next (:mod:`nectar.catalog.kept`); any other is executed anew for each run.

The rule (README, "Writing a chain"): top-level statements only of docstrings, ``import`` and ``from ... import``
(absolute, no ``*``), ``def`` (no decorator; defaults only literal constants), ``class`` (no decorator, no keyword;
bases are names or dotted names; a body of docstrings, ``def``\\ s whose only decorators are ``property``,
``staticmethod`` or ``classmethod``, with literal defaults (no ``__init_subclass__`` or ``__class_getitem__``, which
would run as the file is executed), and assignments of literal constants or of a call of a
luigi parameter class with literal arguments), assignments of literal constants, ``logger =
logging.getLogger(__name__)`` (or of a string) and ``if __name__ == "__main__":`` blocks; no ``global`` anywhere.
A literal constant is a number, string, bytes, None, True, False, or a tuple or ``frozenset(...)`` of them. No name
the rule reads as a builtin (:data:`TRUSTED`) may be bound anywhere in the file, and no dunder name (``__name__``...)
by an assignment or an import, nor by a top-level ``def`` or ``class``. What the
source cannot say (that a parameter's callee is luigi's, that each import binds what a fresh import would) is checked
on the executed module (:mod:`nectar.catalog.kept`).
"""

from __future__ import annotations

import ast
from typing import NamedTuple

#: the decorators a method of a kept class may have
_METHOD_DECORATORS = frozenset({"property", "staticmethod", "classmethod"})
#: the methods Python calls as a class is made or subscripted (a subclass in the file, an annotation): code of the
#: file's own that would run as it is executed
_RUN_AS_EXECUTED = frozenset({"__init_subclass__", "__class_getitem__"})
#: the packages whose names an annotation evaluated as the file is executed may subscript or join by ``|``: the
#: standard library's typing ones and the service's (their classes' ``__class_getitem__`` and metaclasses are known)
_ANNOTATING = frozenset({"typing", "collections", "types", "builtins", "luigi", "nectar"})
#: names the rule reads as the builtins they are: none may be bound anywhere in the file, by an assignment, a
#: ``def``, a ``class`` or an import (and :mod:`nectar.catalog.kept` checks that the module finds them in builtins)
TRUSTED = frozenset({"frozenset", "tuple", *_METHOD_DECORATORS})


def _dunder(name: str) -> bool:
    """``__name__``, ``__getattr__``...: a name Python itself reads (a main block's test, a module's hooks)."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


class Keepable(NamedTuple):
    """What a keepable chain file's execution binds that its module alone does not tell, for the checks on the
    executed module: each import's binding, each class attribute made by a call and its callee, each logger."""

    #: (the name bound, the module imported, the attributes read from it): what a fresh import would bind
    imports: tuple[tuple[str, str, tuple[str, ...]], ...]
    #: (class, attribute, the callee's dotted path): a luigi parameter made with literal arguments
    parameters: tuple[tuple[str, str, tuple[str, ...]], ...]
    #: (the name bound, the logger's name; None: the module's ``__name__``)
    loggers: tuple[tuple[str, str | None], ...]


class _NotKeepable(Exception):
    pass


def _require(condition: bool) -> None:
    if not condition:
        raise _NotKeepable


def keepable(tree: ast.Module) -> Keepable | None:
    """What to check of the module that ``tree`` (a chain file's source) makes, if it is one a process may keep
    between runs (the module docstring's rule); None if it is not."""
    try:
        return _Rule(tree).decide()
    except _NotKeepable:
        return None


def _docstring_or_pass(node: ast.Expr | ast.Pass) -> None:
    """A statement that only states a constant (a docstring) or passes; any other expression is not keepable."""
    _require(isinstance(node, ast.Pass) or isinstance(node.value, ast.Constant))


def _dotted(node: ast.expr) -> tuple[str, ...]:
    """``a.b.c`` as ``("a", "b", "c")``; not a dotted name: :class:`_NotKeepable`."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    _require(isinstance(node, ast.Name))
    assert isinstance(node, ast.Name)
    parts.append(node.id)
    return tuple(reversed(parts))


class _Rule:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.imports: list[tuple[str, str, tuple[str, ...]]] = []
        self.parameters: list[tuple[str, str, tuple[str, ...]]] = []
        self.loggers: list[tuple[str, str | None]] = []
        #: names the file binds otherwise than by an import (at its top level, in a class body, in a main block)
        self.bound_otherwise: set[str] = set()
        self.imported: set[str] = set()
        #: by name an import binds: the top-level package it is imported from
        self.origins: dict[str, set[str]] = {}
        #: what an annotation evaluated as the file is executed subscripts or joins by ``|``
        self.operated: list[ast.expr] = []
        self.lazy_annotations = any(
            isinstance(s, ast.ImportFrom) and s.module == "__future__" and any(a.name == "annotations" for a in s.names)
            for s in tree.body
        )

    def decide(self) -> Keepable:
        for node in ast.walk(self.tree):
            _require(not isinstance(node, ast.Global))
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
                _require(not _dunder(node.id))  # `__name__ = "__main__"` before a main block: it would run
                self.bound_otherwise.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.bound_otherwise.add(node.name)
        for statement in self.tree.body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                _require(not _dunder(statement.name))  # a module's `__getattr__`, `__dir__`
            self.top_level(statement)
        _require(not any(map(_dunder, self.imported)))  # `from __main__ import __name__`
        for operand in self.operated:
            while isinstance(operand, ast.Attribute | ast.Subscript):
                operand = operand.value
            if isinstance(operand, ast.Name):
                _require(self.origins.get(operand.id, set()) <= _ANNOTATING)
        # names bound inside functions are their locals: only the top level's and class bodies' count, but a name
        # bound anywhere (an import too) is refused for the builtins the rule reads and the roots of callees
        # (conservative)
        _require(not ((self.bound_otherwise | self.imported) & TRUSTED))
        for _, _, path in self.parameters:
            _require(path[0] in self.imported and path[0] not in self.bound_otherwise)
        if self.loggers:
            _require("logging" in self.imported and "logging" not in self.bound_otherwise)
        return Keepable(tuple(self.imports), tuple(self.parameters), tuple(self.loggers))

    def bind_import(self, bound: str, module: str, attrs: tuple[str, ...]) -> None:
        """An import binds ``bound`` to ``module``'s ``attrs``: noted for the checks, and its package as its origin."""
        self.imports.append((bound, module, attrs))
        self.imported.add(bound)
        self.origins.setdefault(bound, set()).add(module.split(".")[0])

    def top_level(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Expr | ast.Pass):
            _docstring_or_pass(node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname is None:  # `import a.b`: `a`
                    root = alias.name.split(".")[0]
                    self.bind_import(root, root, ())
                else:  # `import a.b as c`: a's b
                    first, *rest = alias.name.split(".")
                    self.bind_import(alias.asname, first, tuple(rest))
        elif isinstance(node, ast.ImportFrom):
            _require(node.level == 0 and node.module is not None)
            assert node.module is not None
            for alias in node.names:
                _require(alias.name != "*")
                self.bind_import(alias.asname or alias.name, node.module, (alias.name,))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            _require(not node.decorator_list)
            self.function(node)
        elif isinstance(node, ast.ClassDef):
            self.klass(node)
        elif isinstance(node, ast.Assign):
            _require(all(isinstance(target, ast.Name) for target in node.targets))
            if not self.literal(node.value):
                logger = self.logger_name(node.value)
                self.loggers.extend((target.id, logger) for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign):
            _require(isinstance(node.target, ast.Name) and node.simple == 1)
            self.annotation(node.annotation)
            _require(node.value is None or self.literal(node.value))
        elif isinstance(node, ast.If):
            _require(self.main_block(node))
        else:
            raise _NotKeepable

    @staticmethod
    def main_block(node: ast.If) -> bool:
        """``if __name__ == "__main__":`` (no ``else``): never run in a chain's module."""
        test = node.test
        return (
            not node.orelse
            and isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__"
        )

    @staticmethod
    def logger_name(value: ast.expr) -> str | None:
        """The name of ``logging.getLogger(__name__)`` (None) or ``logging.getLogger("x")``; else not keepable."""
        _require(isinstance(value, ast.Call) and not value.keywords and len(value.args) == 1)
        assert isinstance(value, ast.Call)
        _require(_dotted(value.func) == ("logging", "getLogger"))
        arg = value.args[0]
        if isinstance(arg, ast.Name) and arg.id == "__name__":
            return None
        _require(isinstance(arg, ast.Constant) and isinstance(arg.value, str))
        assert isinstance(arg, ast.Constant)
        return str(arg.value)

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        _require(all(map(self.literal, args.defaults)))
        _require(all(default is None or self.literal(default) for default in args.kw_defaults))
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None and arg.annotation is not None:
                self.annotation(arg.annotation)
        if node.returns is not None:
            self.annotation(node.returns)

    def klass(self, node: ast.ClassDef) -> None:
        _require(not node.decorator_list and not node.keywords)
        for base in node.bases:
            _dotted(base)
        for statement in node.body:
            if isinstance(statement, ast.Expr | ast.Pass):
                _docstring_or_pass(statement)
            elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                _require(statement.name not in _RUN_AS_EXECUTED)
                for decorator in statement.decorator_list:
                    _require(isinstance(decorator, ast.Name) and decorator.id in _METHOD_DECORATORS)
                self.function(statement)
            elif isinstance(statement, ast.Assign | ast.AnnAssign):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                _require(all(isinstance(target, ast.Name) for target in targets))
                if isinstance(statement, ast.AnnAssign):
                    self.annotation(statement.annotation)
                value = statement.value
                if value is not None and not self.literal(value):
                    path = self.parameter_call(value)
                    _require(not self.bound_in(node, path[0]))
                    self.parameters.extend((node.name, t.id, path) for t in targets if isinstance(t, ast.Name))
            else:
                raise _NotKeepable

    @staticmethod
    def bound_in(node: ast.ClassDef, name: str) -> bool:
        """Whether the class body binds ``name`` (its lookups there would find that binding first)."""
        for statement in node.body:
            for sub in ast.walk(statement):
                if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Store | ast.Del):
                    return True
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name == name:
                return True
        return False

    def parameter_call(self, value: ast.expr) -> tuple[str, ...]:
        """The callee of a call with literal arguments only (a luigi parameter class, checked on the executed
        module); else not keepable."""
        _require(isinstance(value, ast.Call))
        assert isinstance(value, ast.Call)
        _require(all(map(self.literal, value.args)))
        _require(all(keyword.arg is not None and self.literal(keyword.value) for keyword in value.keywords))
        return _dotted(value.func)

    def literal(self, node: ast.expr) -> bool:
        """A number, string, bytes, None, True or False, a negated number, or a tuple or ``frozenset(...)`` of them."""
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int | float | complex)
        if isinstance(node, ast.Tuple):
            return all(map(self.literal, node.elts))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "frozenset":
            if node.keywords or len(node.args) > 1:
                return False
            return not node.args or (
                isinstance(node.args[0], ast.Set | ast.Tuple) and all(map(self.literal, node.args[0].elts))
            )
        return False

    def annotation(self, node: ast.expr) -> None:
        """An annotation evaluated as the file is executed (no ``from __future__ import annotations``) only of
        names, dotted names, constants, subscripts, tuples, lists and ``|``: no call; and what is subscripted or
        joined by ``|`` not imported from a module of the user's own (its ``__class_getitem__``, its metaclass's
        ``__getitem__`` or ``__or__`` would run the user's code: :meth:`decide` checks, once every import is
        seen). The file's own classes are checked on the executed module (:mod:`nectar.catalog.kept`)."""
        if self.lazy_annotations:
            return
        for sub in ast.walk(node):
            if isinstance(sub, ast.Subscript):
                self.operated.append(sub.value)
            elif isinstance(sub, ast.BinOp):
                self.operated.extend((sub.left, sub.right))
        for sub in ast.walk(node):
            _require(
                isinstance(
                    sub,
                    ast.Name
                    | ast.Attribute
                    | ast.Constant
                    | ast.Subscript
                    | ast.Tuple
                    | ast.List
                    | ast.BinOp
                    | ast.BitOr
                    | ast.Load,
                )
            )
            if isinstance(sub, ast.BinOp):
                _require(isinstance(sub.op, ast.BitOr))
