"""What a task class declares for the service beside its code (``schedules``, ``triggers``), read the same way.

A task's attribute holds one declaration or a list of them; each is made into its definition and
checked against the task, and one that does not fit is told (naming the task, its place and the
field) while the others are used: a wrong declaration never breaks the rest of the chain file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import luigi

from nectar.errors import InvalidParameters, NectarError
from nectar.keys import is_name

if TYPE_CHECKING:
    from nectar.catalog import ChainCatalog
    from nectar.catalog.model import ChainInfo, TaskInfo

S = TypeVar("S")


class Declaration:
    """The fields of a definition given in a chain file (those of the API's JSON, but the task), and its name."""

    def __init__(self, *, name: str | None = None, **fields: Any) -> None:
        self.name = name
        self.fields = fields

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{type(self).__name__}({given})"


@dataclass(frozen=True)
class Declared(Generic[S]):
    """A declaration of a chain file, made: its id (``<type>.<chain>.<Task>.<name or place>``) and definition."""

    id: str
    spec: S


def declarations(
    info: TaskInfo, attribute: str, kind: type[Declaration], build: Callable[[dict[str, Any]], S]
) -> tuple[list[Declared[S]], list[str]]:
    """The declarations of ``kind`` a task holds in ``attribute``, each made by ``build`` (its fields and the task's
    ``task`` ref; raising :class:`InvalidParameters` names a bad field), and a message for each that is wrong."""
    given = getattr(info.cls, attribute, None)
    if given is None or isinstance(given, luigi.Parameter):  # a parameter named so is no declaration
        return [], []
    items = [given] if isinstance(given, kind) else given
    if not isinstance(items, list | tuple) or not all(isinstance(item, kind) for item in items):
        return [], [f"{info.name}.{attribute} must be a {kind.__name__} or a list of them, not {given!r}"]
    found: list[Declared[S]] = []
    errors: list[str] = []
    for place, item in enumerate(items):
        name = item.name if item.name is not None else str(place)
        where = f"{info.name}.{attribute}[{place}]"
        if not is_name(name):
            errors.append(f"{where}: name {name!r} must be made of [A-Za-z0-9_]")
            continue
        try:
            spec = build({**item.fields, "task": info.ref})
        except InvalidParameters as exc:
            errors.append(f"{where}: " + "; ".join(f"{f}: {', '.join(m)}" for f, m in sorted(exc.errors.items())))
            continue
        except Exception as exc:  # the task's own code raised as it was made: listed, never fatal
            errors.append(f"{where}: making the task raised {type(exc).__name__}: {exc}")
            continue
        found.append(Declared(f"{info.chain_type}.{info.chain}.{info.name}.{name}", spec))
    ids = [d.id for d in found]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        noun = attribute.rstrip("s")
        errors.extend(f"{info.name}: two {noun}s are named {i.rsplit('.', 1)[1]}" for i in duplicated)
        found = [d for d in found if d.id not in duplicated]
    return found, errors


def declared_in(
    chains: Iterable[ChainInfo], declarations_of: Callable[[ChainInfo], Iterable[Declared[S]]]
) -> tuple[dict[str, tuple[Declared[S], str]], list[str]]:
    """What the chain files declare (``declarations_of`` a chain: its schedules, its triggers) by id, each with the
    file declaring it; and the chains whose files do not import now (what they declare is unknown until they do)."""
    found: dict[str, tuple[Declared[S], str]] = {}
    failing = []
    for info in chains:
        if info.import_failed:
            failing.append(info.ref)
        found.update({declared.id: (declared, str(info.path)) for declared in declarations_of(info)})
    return found, failing


class PrivateNames:
    """The parameters of a task that luigi calls private (``ParameterVisibility.PRIVATE``: a password), by the
    task's ``(type, chain, Task)``: a schedule's or a trigger's answers show no fixed value of one, as a run's do
    not (:func:`nectar.registry.model.shown_params`). Read from the catalog as it last saw the task (its
    ``known_task``: no stat, where a listing has just refreshed it; its parameters, not their defaults: a chain
    executed anew for each run is not executed for it); while the task cannot be read (its chain does not import
    now), as it was last read by this process, else none is known."""

    def __init__(self, catalog: ChainCatalog) -> None:
        self.catalog = catalog
        self._seen: dict[tuple[str, str, str], frozenset[str]] = {}

    def of(self, ref: tuple[str, str, str]) -> frozenset[str]:
        try:
            info = self.catalog.known_task(*ref)
        except NectarError:
            info = None
        if info is None:
            return self._seen.get(ref, frozenset())
        names = self._seen[ref] = frozenset(param.name for param in info.params if param.private)
        return names

    @staticmethod
    def shown(params: dict[str, Any], hidden: frozenset[str]) -> dict[str, Any]:
        """``params`` without the values of ``hidden``."""
        return {name: value for name, value in params.items() if name not in hidden} if hidden else params
