"""Target stores: where task outputs live, each kind a module of this package named in one table.

A new kind (GCS, Azure) is a module with a :class:`~nectar.stores.base.TargetStore` subclass and one
entry in :data:`STORE_KINDS`; nothing else chooses between kinds. Stores are cached by kind and by
what they are built from (:meth:`~nectar.stores.base.TargetStore.arguments`).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable

from nectar.config import Settings, get_settings
from nectar.stores.base import TargetStore
from nectar.stores.local import LocalStore
from nectar.stores.s3 import S3Store

__all__ = ["STORE_KINDS", "TargetStore", "get_store", "is_permanent"]

#: every kind of store, by the name settings (``Settings.store_kind``) and task classes (``store_kind``) choose it by
STORE_KINDS: dict[str, type[TargetStore]] = {
    LocalStore.kind: LocalStore,
    S3Store.kind: S3Store,
}


@functools.lru_cache(maxsize=16)
def _store(kind: type[TargetStore], arguments: tuple[Hashable, ...]) -> TargetStore:
    return kind(*arguments)


def get_store(settings: Settings | None = None, kind: str | None = None) -> TargetStore:
    """The (cached) store of ``kind``, or the one ``settings`` choose (local when ENV=local)."""
    settings = settings or get_settings()
    name = kind or settings.store_kind
    try:
        store_class = STORE_KINDS[name]
    except KeyError:
        expected = " or ".join(repr(known) for known in STORE_KINDS)
        raise ValueError(f"unknown store kind {name!r} (expected {expected})") from None
    return _store(store_class, store_class.arguments(settings))


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` is a store error that trying again cannot cure (a missing bucket, refused credentials)."""
    return any(store_class.is_permanent(exc) for store_class in STORE_KINDS.values())
