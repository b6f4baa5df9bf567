"""Target stores: where task outputs live, each kind a module of this package named in one table.

A new kind (GCS, Azure) is a module with a :class:`~nectar.stores.base.TargetStore` subclass and one
entry in :data:`STORE_KINDS`; nothing else chooses between kinds. Stores are cached by kind and by
what they are built from (:meth:`~nectar.stores.base.TargetStore.arguments`).

The kinds' modules (luigi's targets under them, ~0.4 s of CPU to import) are imported when a store is first asked
for, not with this package: a process that only reads a prefix (:mod:`nectar.stores.listing`'s ``Location``, as a
registry does for each trigger it reads) imports no luigi.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from nectar.config import Settings, get_settings

if TYPE_CHECKING:
    from nectar.stores.base import TargetStore

    #: every kind of store, by the name settings (``Settings.store_kind``) and task classes (``store_kind``) choose
    #: it by
    STORE_KINDS: dict[str, type[TargetStore]]

__all__ = ["STORE_KINDS", "TargetStore", "get_store", "is_permanent"]


@functools.cache
def _kinds() -> dict[str, type[TargetStore]]:
    from nectar.stores.local import LocalStore
    from nectar.stores.s3 import S3Store

    return {LocalStore.kind: LocalStore, S3Store.kind: S3Store}


def __getattr__(name: str) -> Any:
    """``STORE_KINDS`` and ``TargetStore``, imported on first use (see the module's docstring)."""
    if name == "STORE_KINDS":
        return _kinds()
    if name == "TargetStore":
        from nectar.stores.base import TargetStore

        return TargetStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=16)
def _store(kind: type[TargetStore], arguments: tuple[Hashable, ...]) -> TargetStore:
    return kind(*arguments)


def get_store(settings: Settings | None = None, kind: str | None = None) -> TargetStore:
    """The (cached) store of ``kind``, or the one ``settings`` choose (local when ENV=local)."""
    settings = settings or get_settings()
    name = kind or settings.store_kind
    kinds = _kinds()
    try:
        store_class = kinds[name]
    except KeyError:
        expected = " or ".join(repr(known) for known in kinds)
        raise ValueError(f"unknown store kind {name!r} (expected {expected})") from None
    return _store(store_class, store_class.arguments(settings))


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` is a store error that trying again cannot cure (a missing bucket, refused credentials)."""
    return any(store_class.is_permanent(exc) for store_class in _kinds().values())
