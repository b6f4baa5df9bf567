"""A property made once per instance under a lock: ``functools.cached_property`` as it was before Python 3.12."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast, overload

from nectar import forks

T = TypeVar("T")
#: what an instance's ``__dict__`` answers for a value not made yet (a value may be None: a service without luigid)
_MISSING = object()
#: held while a value is made: one making at a time in the process, made anew in every forked child (a fork while
#: another thread held it would leave the child's held). Not re-entrant: a making reads no other such property
_making = forks.lock_made_anew_in_children(globals(), "_making")


class made_once(Generic[T]):
    """``functools.cached_property`` whose value is made under a lock, once per instance. From Python 3.12 on
    ``cached_property`` holds no lock while it makes the value: threads that asked at once (an app's first requests)
    each made one, and all but the last were dropped (a registry left unclosed, a luigid client with the connections
    its thread opened). Kept in the instance's ``__dict__`` under its name, as ``cached_property`` keeps it: a read
    after the first finds it there without a call (this is no data descriptor); ``del`` makes it again."""

    def __init__(self, make: Callable[[Any], T]) -> None:
        self.make = make
        self.name = make.__name__
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> made_once[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | made_once[T]:
        if instance is None:
            return self
        with _making:
            found = instance.__dict__.get(self.name, _MISSING)  # made by a thread that asked first
            if found is _MISSING:
                found = instance.__dict__[self.name] = self.make(instance)
            return cast(T, found)
