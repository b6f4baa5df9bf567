"""Describe a task's luigi parameters and turn wire values (strings or JSON) into their values.

:func:`parse_values` is the one validator of a submission's parameters (the API, batches and
``nectar run`` alike). Values are parsed by the parameter's own ``parse`` (luigi's command-line parsing), never
evaluated; a bad value raises ``ValueError`` with a message naming what was expected. Numbers are
held to what they say: an int is integral, exact and within its task's ``max_int``, a float finite.
"""

from __future__ import annotations

import enum
import json
import math
import sys
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any

import luigi
from luigi.parameter import OptionalParameterMixin, ParameterVisibility, UnknownParameterException
from luigi.task_register import Register, TaskClassAmbigiousException, TaskClassException

from nectar.errors import InvalidParameters
from nectar.luigi_internals import as_given_to_luigi, choices_of, task_classes, task_params
from nectar.registry.model import PRIVATE

#: luigi parameter class name -> the kind shown to users, most specific first through the MRO
KINDS: dict[str, str] = {
    "IntParameter": "int",
    "FloatParameter": "float",
    "NumericalParameter": "number",
    "BoolParameter": "bool",
    "DateParameter": "date",
    "MonthParameter": "month",
    "YearParameter": "year",
    "DateHourParameter": "datehour",
    "DateMinuteParameter": "dateminute",
    "DateSecondParameter": "datesecond",
    "DateIntervalParameter": "dateinterval",
    "TimeDeltaParameter": "timedelta",
    "ChoiceListParameter": "choicelist",
    "ChoiceParameter": "choice",
    "EnumListParameter": "enumlist",
    "EnumParameter": "enum",
    "TupleParameter": "tuple",
    "ListParameter": "list",
    "DictParameter": "dict",
    "PathParameter": "path",
    "Parameter": "str",
}
JSON_KINDS = {"list", "tuple", "dict"}
#: kinds whose value a query string may give as the parameter repeated, one item each (``?m=a&m=b``)
REPEATABLE_KINDS = {"list", "tuple", "choicelist", "enumlist"}
#: how deeply a list, tuple or dict value may nest (luigi freezes values recursively: no value is unbounded)
MAX_NESTING = 32
#: the largest magnitude an int parameter takes unless its task's ``max_int`` class attribute sets another:
#: a signed 64-bit integer's, what numpy, pandas and SQL's BIGINT hold
MAX_INT = 2**63 - 1
#: a float holds every integer up to this exactly: a JSON float beyond it given for an int has lost digits
EXACT_FLOAT_INTS = 2**53
#: characters of a refused value an error message repeats
SHOWN = 80


def nesting(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), counted without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list | tuple) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:
            todo.extend((child, depth + 1) for child in children)
    return deepest


class NonFiniteNumber(ValueError):
    """JSON text holding NaN, Infinity or -Infinity, which RFC 8259 does not have: ``fields`` names, when the text is
    an object, each of its members holding one (at any depth), with the message."""

    def __init__(self, constant: str, fields: dict[str, list[str]]) -> None:
        super().__init__(non_finite(constant))
        self.fields = fields


def non_finite(constant: str) -> str:
    return f"expected a finite number, got {constant} (JSON has no {constant.lstrip('-')})"


class _Constant(str):
    """Where NaN, Infinity or -Infinity stood in JSON text (found again to name its member)."""


def _constant_in(value: Any) -> _Constant | None:
    """The first NaN, Infinity or -Infinity in ``value`` (walked without recursion)."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, _Constant):
            return item
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return None


def strict_json(text: str | bytes) -> Any:
    """``text`` read as JSON as RFC 8259 has it: NaN, Infinity and -Infinity, which Python's json reads (and
    luigi would write back as no other JSON reader can read), are a :class:`NonFiniteNumber` naming them and the
    members of an object that hold them (a ``json.JSONDecodeError`` for what is not JSON at all)."""
    seen: list[str] = []

    def constant(name: str) -> _Constant:
        seen.append(name)
        return _Constant(name)

    value = json.loads(text, parse_constant=constant)
    if not seen:
        return value
    fields = {}
    if isinstance(value, dict):
        for name, item in value.items():
            found = _constant_in(item)
            if found is not None:
                fields[str(name)] = [non_finite(found)]
    raise NonFiniteNumber(seen[0], fields)


def _shallow(value: Any) -> Any:
    """``value`` unchanged, if it nests at most :data:`MAX_NESTING` deep; else ValueError."""
    if nesting(value) > MAX_NESTING:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels")
    return value


def max_int_of(task_cls: type[luigi.Task]) -> int:
    """The largest magnitude ``task_cls``'s int parameters take: its ``max_int`` class attribute, else
    :data:`MAX_INT` (raised or lowered, as the chain needs)."""
    value = getattr(task_cls, "max_int", None)  # of the class: a luigi parameter named so is no limit
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else MAX_INT


def _shown(text: str) -> str:
    """``text`` as an error message repeats it: quoted, cut after :data:`SHOWN` characters."""
    return repr(text) if len(text) <= SHOWN else f"{text[:SHOWN]!r}... ({len(text)} characters)"


def checked_number(kind: str, value: Any, max_int: int) -> Any:
    """``value`` (a JSON number, a string, or a parsed value), unless it is an absurd ``kind``: ValueError
    for an int that is not integral, was a JSON float past :data:`EXACT_FLOAT_INTS` (1e30 arrives as
    1000000000000000019884624838656), or is beyond ``max_int`` either way (an int string's digits are
    counted before any conversion), and for a float that is NaN or infinite. The one check of numbers the
    API, batches and ``nectar run`` share (through :meth:`ParamInfo.parse`)."""
    if kind == "int" and not isinstance(value, bool):
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            if abs(value) > EXACT_FLOAT_INTS:
                raise ValueError(f"expected an integer, got {value!r} (a float: exact only up to 2**53)")
        if isinstance(value, str):
            # a string of digits alone (a submission's usual int) is its own digits, without a pass per character
            kept = value if value.isdigit() else "".join(c for c in value if c.isdigit())
            digits = len(kept.lstrip("0"))
            too_large = digits > len(str(max_int))
        else:
            too_large = isinstance(value, int | float) and abs(value) > max_int
        if too_large:
            raise ValueError(f"out of range: must be between -{max_int} and {max_int} (the task's max_int)")
    if kind in {"float", "number"} and isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def kind_of(param: luigi.Parameter) -> str:
    for klass in type(param).__mro__:
        if klass.__name__ in KINDS:
            return KINDS[klass.__name__]
    return "str"


def jsonable(param: luigi.Parameter, value: Any) -> Any:
    """A value as JSON shows it: scalars as they are, lists and dicts as JSON, the rest serialized."""
    if value is None or isinstance(value, bool | int | float | str) and not isinstance(value, enum.Enum):
        return value
    serialized = param.serialize(value)
    if kind_of(param) in JSON_KINDS:
        return json.loads(serialized)
    return serialized


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a task, as the catalog shows it."""

    name: str
    kind: str
    required: bool
    default: Any
    description: str | None
    significant: bool
    optional: bool
    choices: list[str] | None
    param: luigi.Parameter = field(repr=False, compare=False)
    #: luigi's private visibility (a password): given as any other, its default never shown
    private: bool = False
    #: the largest magnitude of an int value: the task's ``max_int``
    max_int: int = MAX_INT
    #: the module of the task's class (its chain's): where a ``TaskParameter``'s name is looked for first
    module: str = field(default="", repr=False, compare=False)

    @classmethod
    def of(cls, task_cls: type[luigi.Task], name: str, param: luigi.Parameter) -> ParamInfo:
        family = task_cls.get_task_family()
        has_default = param.has_task_value(family, name)
        private = param.visibility == ParameterVisibility.PRIVATE
        return cls(
            name=name,
            kind=kind_of(param),
            required=not has_default,
            default=jsonable(param, param.task_value(family, name)) if has_default and not private else None,
            description=param.description,
            significant=bool(param.significant),
            optional=isinstance(param, OptionalParameterMixin),
            choices=choices_of(param),
            param=param,
            max_int=max_int_of(task_cls),
            module=task_cls.__module__,
            private=private,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "required": self.required,
            "default": self.default,
            "description": self.description,
            "significant": self.significant,
            "choices": self.choices,
            "private": self.private,
        }

    def from_query(self, given: list[str]) -> Any:
        """The wire value of this parameter's ``name=value`` pairs in a query string, for :meth:`parse`.

        A list or tuple takes one item per pair (``?metrics=a&metrics=b``), or a JSON list in one pair
        (a value starting with ``[``); a choice or enum list its choices repeated, or comma-separated in
        one pair, as luigi writes them; any other kind one pair (ValueError when repeated).
        """
        if self.kind in {"list", "tuple"} and not (len(given) == 1 and given[0].lstrip().startswith("[")):
            return list(given)
        if len(given) == 1:
            return given[0]
        if self.kind in REPEATABLE_KINDS:
            return list(given)
        raise ValueError(f"given {len(given)} times: a {self.kind} parameter takes one value")

    def parse(self, raw: Any) -> Any:
        """The parameter's value for a wire value (a string, or a JSON scalar, list or dict)."""
        if raw is None:
            if self.optional:
                return None
            raise ValueError("must not be null")
        if isinstance(raw, str):
            text = raw
        elif isinstance(raw, bool):
            if self.kind != "bool":
                raise ValueError(f"expected a {self.kind}, got a boolean")
            text = "true" if raw else "false"
        elif isinstance(raw, int | float):
            if self.kind not in {"int", "float", "number", "str", "choice", "timedelta", "year"}:
                raise ValueError(f"expected a {self.kind}, got a number")
            checked_number(self.kind, raw, self.max_int)
            text = str(int(raw)) if self.kind == "int" else str(raw)
        elif isinstance(raw, list | dict):
            wanted = dict if self.kind == "dict" else list
            if self.kind not in JSON_KINDS | {"choicelist", "enumlist"} or not isinstance(raw, wanted):
                raise ValueError(f"expected a {self.kind}, got a JSON {type(raw).__name__}")
            _shallow(raw)
            text = json.dumps(raw) if self.kind in JSON_KINDS else ",".join(map(str, raw))
        else:
            raise ValueError(f"unsupported value of type {type(raw).__name__}")
        if self.kind == "bool" and text.lower() not in {"true", "false"}:
            raise ValueError(f"expected true or false, got {text!r}")
        if self.kind in JSON_KINDS:
            try:
                _shallow(strict_json(text))
            except json.JSONDecodeError:
                pass  # luigi's own parse says what is wrong with it
            except RecursionError:
                raise ValueError(f"nested deeper than {MAX_NESTING} levels") from None
        checked_number(self.kind, text, self.max_int)  # an int's digits counted before int() converts them
        if isinstance(self.param, luigi.TaskParameter):
            return task_named(text, self.module)
        try:
            value = self.param.normalize(self.param.parse(text))
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            detail = f" (one of {', '.join(self.choices)})" if self.choices else ""
            raise ValueError(f"not a valid {self.kind}{detail}: {_shown(text)}") from exc
        except _schema_errors() as exc:  # luigi checked a DictParameter's ``schema``: jsonschema says why not
            raise ValueError(f"not a valid {self.kind}: {_shown(text)} ({getattr(exc, 'message', exc)})") from exc
        return checked_number(self.kind, value, self.max_int)


def task_named(family: str, module: str) -> type[luigi.Task]:
    """The task class ``family`` names, as ``python -m luigi --module <module>`` finds a ``TaskParameter``'s: the one
    of that family ``module`` holds, else the one luigi's registry has of it (which holds every chain this process
    read, where luigi's holds ``module``'s and what it imports), else, where the registry has several, the one of
    them defined in a module ``module`` imports (:func:`imported_by`); a name of no task, or of several chains' and
    none of ``module``'s, a :class:`ValueError` saying so."""
    own = vars(sys.modules[module]).values() if module in sys.modules else ()
    found = {held for held in own if isinstance(held, type) and issubclass(held, luigi.Task)}
    found = {task_cls for task_cls in found if task_cls.get_task_family() == family}
    if len(found) == 1:
        return found.pop()
    try:
        named: type[luigi.Task] = Register.get_task_cls(family)
    except TaskClassAmbigiousException:
        reached = imported_by(module)
        found = {cls for cls in task_classes() if cls.get_task_family() == family and cls.__module__ in reached}
        if len(found) == 1:  # luigi's registry under ``--module <module>`` holds these alone
            return found.pop()
        raise ValueError(f"names a task of several chains: {_shown(family)}") from None
    except TaskClassException:
        raise ValueError(f"names no task: {_shown(family)}") from None
    return named


def imported_by(module: str) -> set[str]:
    """The names of ``module`` and of the modules it imports, as far as its namespace shows them (a module bound in
    it, the module a class or function bound in it was defined in), and theirs in turn: the modules a process that
    imports ``module`` alone has imported, luigi's and the standard library's not walked into (no task of a chain is
    defined there). Asked only where a family is ambiguous."""
    reached: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        held = sys.modules.get(name)
        if name in reached or held is None or name.partition(".")[0] in _NOT_WALKED:
            continue
        reached.add(name)
        for value in vars(held).values():
            if isinstance(value, ModuleType):
                todo.append(value.__name__)
            elif isinstance(value, type | FunctionType) and isinstance(value.__module__, str):
                todo.append(value.__module__)
    return reached


#: the top-level packages :func:`imported_by` does not walk into
_NOT_WALKED = frozenset(sys.stdlib_module_names) | {"luigi", "builtins"}


#: the member of a run's parameters (its ``params`` JSON) naming, comma separated, those given with the text of what
#: luigi would give them anyway (:func:`run_params`); no parameter's name (an identifier) is spelt so
GIVEN = "(given)"
#: where :meth:`~nectar.catalog.model.TaskInfo.instantiate` notes on the task the names of the parameters given
GIVEN_NOTE = "_nectar_given"
#: by task class: its parameters luigi calls private (``ParameterVisibility.PRIVATE``), by name
_PRIVATE_OF: weakref.WeakKeyDictionary[type, tuple[tuple[str, luigi.Parameter], ...]] = weakref.WeakKeyDictionary()


def _private_params(cls: type[luigi.Task]) -> tuple[tuple[str, luigi.Parameter], ...]:
    private = _PRIVATE_OF.get(cls)
    if private is None:
        private = _PRIVATE_OF[cls] = tuple(
            (name, param) for name, param in task_params(cls) if param.visibility == ParameterVisibility.PRIVATE
        )
    return private


def note_given(task: luigi.Task, names: Collection[str]) -> luigi.Task:
    """``task``, noted as made with the parameters ``names`` given where luigi has a value for each without it
    (luigi.cfg's, a default); nothing noted where there are none."""
    if names:
        task.__dict__[GIVEN_NOTE] = names
    return task


def run_params(task: luigi.Task) -> dict[str, str]:
    """A run's parameters for ``task``: luigi's ``to_str_params`` (its defaults written too), and, where a parameter
    noted given (:func:`note_given`) is written as what luigi would give it without it, :data:`GIVEN` naming it, so
    that the run's task keeps it as given (:func:`task_of_text`): ``'None'`` given for ``Parameter(default=None)``
    is the string, as ``python -m luigi --x None`` gives it, where left out it is None. The run's key and luigi's
    ``task_id`` are those text's, the same either way (luigi writes both ``'None'``): one task to luigi."""
    params = task.to_str_params()  # without those luigi calls private: luigi gives them to no one
    private = _private_params(type(task))
    if private:  # the run's task is given them, as luigi's command line gives them to its task
        values = task.param_kwargs
        kept = {name: param.serialize(values[name]) for name, param in private if name in values}
        if kept:
            params.update(kept)
            params[PRIVATE] = ",".join(kept)
    given = task.__dict__.get(GIVEN_NOTE)
    if given:
        texts = {name: params[name] for name in given if name in params}
        same = sorted(texts.keys() - as_given_to_luigi(type(task), texts).keys())
        if same:
            params[GIVEN] = ",".join(same)
    return params


def task_of_text(cls: type[luigi.Task], params: Mapping[str, str]) -> luigi.Task:
    """A task of ``cls`` made from its parameters' text (a run's: ``to_str_params``, its defaults written too) with the
    values luigi gives it (:func:`~nectar.luigi_internals.as_given_to_luigi`), as luigi's ``from_str_params`` makes
    it, but those :data:`GIVEN` names kept as given; and for a ``TaskParameter``'s name, found as ``python -m luigi
    --module <the chain>`` finds it (:func:`task_named`): luigi's registry, where ``from_str_params`` looks, holds
    every chain this process read (a reused attempt process, the API), and a family two chains define is ambiguous
    there."""
    marked = params.get(GIVEN)
    if marked is not None or PRIVATE in params:
        params = {name: text for name, text in params.items() if name not in (GIVEN, PRIVATE)}
    unknown = [name for name in params if not isinstance(getattr(cls, name, None), luigi.Parameter)]
    if unknown:  # a run queued before its chain dropped or renamed them: luigi's from_str_params passed over them
        known = ", ".join(name for name, _ in task_params(cls)) or "none"
        raise UnknownParameterException(
            f"{cls.__name__} has no parameter {', '.join(unknown)} now (its parameters: {known}): its chain changed "
            "since this run was made with it; submit it again with the parameters it has"
        )
    given = as_given_to_luigi(cls, params)
    if marked is not None:
        given.update((name, params[name]) for name in marked.split(",") if name in params)
    named = {  # luigi's parameters are the class's attributes: the given names looked up, no walk of them all
        name: task_named(text, cls.__module__)
        for name, text in given.items()
        if isinstance(getattr(cls, name, None), luigi.TaskParameter)
    }
    if not named:
        return cls.from_str_params(given)
    values = {name: named.get(name) or param.parse(given[name]) for name, param in task_params(cls) if name in given}
    return cls(**values)


def _schema_errors() -> tuple[type[Exception], ...]:
    """jsonschema's refusal of a value, once luigi has loaded jsonschema to check one (evaluated only as an
    exception passes: a process whose chains declare no ``schema`` never imports it)."""
    exceptions = sys.modules.get("jsonschema.exceptions")
    error = getattr(exceptions, "ValidationError", None)
    return (error,) if isinstance(error, type) else ()


def params_of(task_cls: type[luigi.Task]) -> tuple[ParamInfo, ...]:
    """The parameters a client may set: every one, as on luigi's command line (a private one's value never shown)."""
    return tuple(ParamInfo.of(task_cls, name, param) for name, param in task_cls.get_params())


def parse_values(params: Sequence[ParamInfo], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``params`` for wire values, by name; else :class:`InvalidParameters` naming each bad
    field: a missing required parameter, a bad value (:meth:`ParamInfo.parse` says why), an unknown name
    (listing the known). Fields in the order the task declares them, then the unknown ones as given."""
    errors: dict[str, list[str]] = {}
    parsed: dict[str, Any] = {}
    for info in params:
        if info.name not in values:
            if info.required:
                errors[info.name] = ["missing required parameter"]
            continue
        try:
            parsed[info.name] = info.parse(values[info.name])
        except ValueError as exc:
            errors[info.name] = [str(exc)]
    names = {info.name for info in params}
    unknown = [str(name) for name in values if name not in names]
    if unknown:
        message = f"unknown parameter (known: {', '.join(info.name for info in params) or 'none'})"
        errors.update((name, [message]) for name in unknown)
    if errors:
        raise InvalidParameters(errors)
    return parsed
