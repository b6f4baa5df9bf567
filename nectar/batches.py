"""A batch's rows made from the objects under a prefix: one parameter set per object, or per group of objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nectar.catalog.model import TaskInfo
from nectar.errors import InvalidParameters, TooLarge
from nectar.stores.listing import Location, compile_glob, list_objects

#: the parameter kinds that take a list: the one a batch of groups (``batch_size``) gives each group to
LIST_KINDS = frozenset({"list", "tuple"})
#: the objects one batch may have the store list (its glob may match few of them), beyond those it keeps
MAX_LISTED = 100_000


@dataclass(frozen=True)
class PrefixBatch:
    """What ``POST /api/batches`` and ``nectar submit --from-prefix`` ask: a run of ``task`` for each object under
    ``from_prefix`` that ``glob`` matches (after ``offset``, at most ``limit``), its URI (or, with ``relative``,
    its path below the prefix) in ``param``, beside the fixed ``params``; with ``batch_size``, a run per group
    of up to that many objects, ``param`` then a list parameter given the group's list."""

    from_prefix: str
    param: str
    params: Mapping[str, Any] = field(default_factory=dict)
    glob: str | None = None
    offset: int = 0
    limit: int | None = None
    batch_size: int | None = None
    relative: bool = False

    def check(self, info: TaskInfo) -> Location:
        """The prefix's location, once every field is known good for ``info``; else InvalidParameters naming each
        bad field (the store's own error for a bucket or folder that cannot be listed)."""
        errors: dict[str, list[str]] = {}
        location = None
        try:
            location = Location.parse(self.from_prefix, field="from_prefix")
        except InvalidParameters as exc:
            errors.update(exc.errors)
        if self.glob is not None:
            try:
                compile_glob(self.glob, field="glob")
            except InvalidParameters as exc:
                errors.update(exc.errors)
        errors.update(self._param_errors(info))
        if errors or location is None:
            raise InvalidParameters(errors)
        location.check()
        return location

    def _param_errors(self, info: TaskInfo) -> dict[str, list[str]]:
        kinds = {param.name: param.kind for param in info.params}
        if self.param not in kinds:
            known = ", ".join(kinds) or "none"
            return {"param": [f"{self.param!r} is not a parameter of {info.ref} (known: {known})"]}
        if self.param in self.params:
            return {"params": [f"{self.param!r} is the parameter each object is given: leave it out of params"]}
        kind = kinds[self.param]
        if self.batch_size is not None and kind not in LIST_KINDS:
            return {"batch_size": [f"{self.param!r} is a {kind} parameter: a group of objects needs a list parameter"]}
        if self.batch_size is None and kind in LIST_KINDS:
            return {"batch_size": [f"{self.param!r} is a {kind} parameter: give batch_size (1: a run per object)"]}
        return {}

    def rows(self, info: TaskInfo, max_rows: int) -> tuple[list[dict[str, Any]], int]:
        """The parameter sets of the batch, at most ``max_rows`` (TooLarge beyond), and how many objects they
        carry. Objects are listed in key order; none at all is InvalidParameters naming ``from_prefix``."""
        location = self.check(info)
        most = max_rows * (self.batch_size or 1)
        wanted = most + 1 if self.limit is None else min(self.limit, most + 1)
        listed = MAX_LISTED + 2 * (self.offset + most)
        objects = list(list_objects(location, self.glob, self.offset, wanted, max_listed=listed))
        if len(objects) > most:
            groups = f" of {self.batch_size} objects" if self.batch_size else ""
            raise TooLarge(
                f"more than {max_rows} rows{groups} from {location}; at most {max_rows} are accepted in one batch: "
                "narrow them with glob, offset and limit"
            )
        if not objects:
            matching = f" matching {self.glob!r}" if self.glob else ""
            after = f" after the first {self.offset}" if self.offset else ""
            raise InvalidParameters({"from_prefix": [f"no objects under {location}{matching}{after}"]})
        values: list[Any] = [item.relative if self.relative else item.uri for item in objects]
        if self.batch_size:
            values = [values[start : start + self.batch_size] for start in range(0, len(values), self.batch_size)]
        return [{**self.params, self.param: value} for value in values], len(objects)
