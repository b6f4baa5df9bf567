"""Commit fencing: an output is committed only by an attempt that still owns its run.

A worker that was frozen, cut off or cancelled may wake up after its run was given to another
attempt (or ended). Its heartbeat notices within one interval, but a step may finish sooner.
So every atomic write of a store's target asks the *guard* of this process, at the moment of
commit (the rename, or the upload to S3), whether the attempt still holds its lease; the
executing process installs a guard that asks the run registry. Refused, the temporary file is
discarded and :class:`~nectar.errors.LeaseLost` fails the step: nothing that looks done is left.

The window that remains is the commit itself (a rename locally; the final upload to S3), during
which a cancel is noticed by the next heartbeat instead.
"""

from __future__ import annotations

from collections.abc import Callable

from nectar.errors import LeaseLost

#: ``guard(what)`` raises :class:`LeaseLost` unless this process may commit ``what``; None: no run owns it
_guard: Callable[[str], None] | None = None


def install(guard: Callable[[str], None] | None) -> None:
    """Make ``guard`` the one every commit of this process goes through (None: commits are free)."""
    global _guard
    _guard = guard


def check(what: str) -> None:
    """Raise :class:`LeaseLost` if this process may not commit ``what`` now."""
    if _guard is not None:
        _guard(what)


def lease_guard(renew: Callable[[], bool], owner: str) -> Callable[[str], None]:
    """A guard that commits only while ``renew()`` (a synchronous heartbeat) says the lease is ours."""

    def guard(what: str) -> None:
        try:
            held = renew()
        except Exception as exc:  # the registry cannot say: do not commit on a lease we cannot prove
            raise LeaseLost(f"{owner} could not confirm its lease before writing {what}: {exc}") from exc
        if not held:
            raise LeaseLost(f"{owner} no longer owns its run (cancelled or reclaimed): {what} was not written")

    return guard
