"""A data trigger: which task runs for each object that lands under a prefix, and with which parameters.

:class:`TriggerSpec` is the definition, the same whether it comes from a chain file or from
``POST /api/triggers``; :meth:`TriggerSpec.from_definition` reads the JSON fields and names each bad
one (:class:`~nectar.errors.InvalidParameters`, a 422 in the API). :class:`TriggerRecord` is a
definition with its identity and state as the registry keeps them; :class:`TriggerObject` one object
a trigger claimed and what became of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nectar.errors import InvalidParameters
from nectar.preload import Preload
from nectar.stores.listing import Location, compile_glob

#: which objects a new trigger takes: those already under its prefix too, or only those that land after
EXISTING = ("new", "all")
#: what an object claimed by a trigger became: a run queued (or joined), its output already there, or skipped
OBJECT_STATES = ("queued", "done", "skipped")
DEFAULT_POLL_S = 10.0
#: the shortest and longest poll interval a trigger may ask for, in seconds
POLL_RANGE = (0.1, 86_400.0)
#: the most objects one run may take in batch mode
MAX_BATCH = 10_000
#: the definition's fields, in the order they are shown
FIELDS = ("task", "prefix", "glob", "param", "params", "existing", "batch_size", "poll_s", "preload")


@dataclass(frozen=True)
class TriggerSpec:
    """Which task runs for each new object under a prefix; validated field by field, the task checked by the book."""

    task: str
    prefix: str
    #: the parameter that receives each object's URI (a list of them in batch mode)
    param: str
    glob: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    existing: str = "new"
    #: one run per group of up to this many objects (None: one run per object)
    batch_size: int | None = None
    poll_s: float = DEFAULT_POLL_S
    #: what a claim checks before its run is queued (:mod:`nectar.preload`; None: nothing)
    preload: Preload | None = None

    @property
    def ref(self) -> tuple[str, str, str]:
        chain_type, chain, task = self.task.split("/")
        return chain_type, chain, task

    @property
    def location(self) -> Location:
        return Location.parse(self.prefix)

    def definition(self) -> dict[str, Any]:
        """The JSON fields, as ``POST /api/triggers`` takes them."""
        return {
            "task": self.task,
            "prefix": self.prefix,
            "glob": self.glob,
            "param": self.param,
            "params": dict(self.params),
            "existing": self.existing,
            "batch_size": self.batch_size,
            "poll_s": self.poll_s,
            "preload": self.preload.definition() if self.preload is not None else None,
        }

    def text(self) -> str:
        """The definition as canonical JSON (what the registry stores and compares)."""
        return json.dumps(self.definition(), sort_keys=True)

    @classmethod
    def from_definition(cls, values: Mapping[str, Any]) -> TriggerSpec:
        """Read the JSON fields (unknown ones refused); :class:`InvalidParameters` names every bad field."""
        errors: dict[str, list[str]] = {}

        def checked(name: str, check: Any) -> Any:
            try:
                return check()
            except InvalidParameters as exc:
                errors.update(exc.errors)
                return None

        for name in sorted(set(values) - set(FIELDS) - {"paused"}):
            errors[name] = ["unknown field"]
        task = values.get("task")
        if not isinstance(task, str) or task.count("/") != 2 or not all(task.split("/")):
            errors["task"] = [f"must name a task as <type>/<chain>/<Task>, not {task!r}"]
        prefix = values.get("prefix")
        if not isinstance(prefix, str):
            errors["prefix"] = ["must be an s3://bucket/prefix/ URI or an absolute local folder"]
        else:
            checked("prefix", lambda: Location.parse(prefix, "prefix"))
        glob = values.get("glob")
        if glob is not None and not isinstance(glob, str):
            errors["glob"] = ["must be a glob such as *.csv"]
        elif glob is not None:
            checked("glob", lambda: compile_glob(glob, "glob"))
        param = values.get("param")
        if not isinstance(param, str) or not param:
            errors["param"] = ["must name the parameter of the task that receives each object"]
        params = values.get("params")
        params = {} if params is None else params
        if not isinstance(params, Mapping):
            errors["params"] = ["must be an object of the task's fixed parameters"]
        elif isinstance(param, str) and param in params:
            errors[f"params.{param}"] = ["is the trigger's param: each object sets it"]
        existing = values.get("existing", "new")
        if existing not in EXISTING:
            errors["existing"] = [f"must be one of {', '.join(EXISTING)}, not {existing!r}"]
        batch = values.get("batch_size")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH):
            errors["batch_size"] = [f"must be an integer from 1 to {MAX_BATCH}, not {batch!r}"]
        poll = values.get("poll_s", DEFAULT_POLL_S)
        low, high = POLL_RANGE
        if isinstance(poll, bool) or not isinstance(poll, int | float) or not low <= poll <= high:
            errors["poll_s"] = [f"must be a number of seconds from {low:g} to {high:g}, not {poll!r}"]
        preload = checked("preload", lambda: Preload.from_definition(values.get("preload")))
        if errors:
            raise InvalidParameters(errors)
        return cls(
            task=str(task),
            prefix=str(prefix),
            param=str(param),
            glob=glob,
            params=dict(params),
            existing=str(existing),
            batch_size=batch,
            poll_s=float(poll),
            preload=preload,
        )


def start_cursor(spec: TriggerSpec) -> str | None:
    """A new trigger's cursor: the start of its place (``existing: all``: every object there is taken), or not
    started (``new``: its first poll starts after what is there, see :meth:`nectar.triggers.book.TriggerBook.poll`)."""
    return "" if spec.existing == "all" else None


@dataclass(frozen=True)
class TriggerRecord:
    """A trigger as the registry keeps it: its definition, where it comes from, and how far it has listed."""

    id: str
    source: str
    spec: TriggerSpec
    #: bumped at each change of the definition: an object is claimed under exactly one version
    version: int
    paused: bool
    #: the last key dealt with (listing starts after it); None: not started yet (a file trigger's first poll sets it)
    cursor: str | None
    created_at: float
    updated_at: float
    #: when it was last listed, and what the listing failed with then (None: it did not)
    polled_at: float | None = None
    last_object: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class TriggerObject:
    """One object a trigger claimed (its key and version: an ETag, or a local file's mtime) and what it became."""

    trigger_id: str
    object_key: str
    version: str
    #: one of :data:`OBJECT_STATES`
    state: str
    run_id: str | None
    reason: str | None
    #: when the object was last modified (the store's clock), and when the trigger claimed it (the loop's)
    modified: float | None
    recorded_at: float

    @property
    def lag(self) -> float | None:
        """Seconds from the object's last change to its claim (None if the store did not tell when it changed)."""
        return None if self.modified is None else self.recorded_at - self.modified
